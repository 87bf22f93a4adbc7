--- Findings from recorded results: a USE check, tracer and profiler
--- results, collector series. Plain tables in, findings out
--- ({resource=, metric=, value=, severity=, summary=, evidence=}).
--- The results come from perf_manual.store.results(dir) through `prepare`.
local hist = require('perf_manual.hist')
local util = require('perf_manual.util')
local use = require('perf_manual.analyzers.use')
local time = require('perf_manual.analyzers.time')

local M = {}

-- thresholds a team may tune
M.thresholds = {
  io_p99_ms_fast = 1,        -- below this the disk answers fast: evidence against a disk problem
  io_p99_ms_medium = 10,     -- block I/O latency p99 worth a look
  io_p99_ms_high = 50,
  lock_wait_share_medium = 0.2,
  lock_wait_share_high = 0.5,
  hot_function_share = 0.3,  -- one function holding this share of on-CPU samples
  wait_share_medium = 25,    -- % of the target's wall time blocked on one kind of wait
  wait_share_high = 50,
  runq_share_medium = 20,    -- % of wall time runnable but not running
  hot_thread_pct = 90,       -- % of one CPU: a thread that cannot go faster
  error_ratio_medium = 0.01, -- share of a service's requests that failed (5xx, transport errors)
  error_ratio_high = 0.05,
  latency_p99_ms_medium = 100, -- a service's p99 that users notice; set it to the SLO
  latency_p99_ms_high = 500,
}

-- the thread-state judgements live in analyzers.time
M.idle_wait, M.dominant_wait, M.wait_phrase = time.idle_wait, time.dominant_wait, time.wait_phrase

--- The hottest thread of an accounting result: {tid, comm, cpu} (cpu in %
--- of its wall time on a CPU, i.e. % of one CPU), or nil.
function M.hot_thread(t)
  if type(t) ~= 'table' or type(t.threads) ~= 'table' then return nil end
  local best
  for _, th in ipairs(t.threads) do
    local c = type(th.shares) == 'table' and tonumber(th.shares.cpu) or 0
    if not best or c > best.cpu then best = { tid = th.tid, comm = th.comm, cpu = c } end
  end
  return best
end

--- Findings from thread-state accounting: where the target's time goes.
function M.from_tsa(t)
  local out = {}
  if type(t) ~= 'table' or t.available == false or type(t.total) ~= 'table' then return out end
  local T = M.thresholds
  local d = M.dominant_wait(t)
  if d and d.share >= T.wait_share_medium then
    out[#out + 1] = { resource = 'wait', reason = d.reason, metric = 'wait_share', value = d.share,
      severity = d.share >= T.wait_share_high and 'high' or 'medium',
      summary = string.format('the target waits %.0f%% of its wall time on %s%s', d.share, d.label,
        d.object and (': ' .. tostring(d.object)) or ''), evidence = t.artifact }
  end
  local rq = tonumber((t.total.shares or {}).runq) or 0
  if rq >= T.runq_share_medium then
    out[#out + 1] = { resource = 'cpu', metric = 'runq_share', value = rq, severity = rq >= 50 and 'high' or 'medium',
      summary = string.format('the target is runnable but not running %.0f%% of its wall time (waiting for a CPU)', rq),
      evidence = t.artifact }
  end
  local h = M.hot_thread(t)
  if h and h.cpu >= T.hot_thread_pct then
    out[#out + 1] = { resource = 'cpu', metric = 'hot_thread', value = h.cpu, severity = 'high',
      summary = string.format('thread %s (%s) is on a CPU %.0f%% of its wall time: single-thread bound',
        tostring(h.tid), tostring(h.comm), h.cpu), evidence = t.artifact }
  end
  return out
end

local SEV = { HIGH = 'high', warn = 'medium' }

--- USE rows that are not ok.
function M.from_use(res)
  local out = {}
  if type(res) ~= 'table' or res.available == false then return out end
  for _, r in ipairs(res.rows or {}) do
    local sev = SEV[r.status]
    if sev then
      local why = type(r.why) == 'table' and table.concat(r.why, '; ') or ''
      out[#out + 1] = { resource = r.resource, metric = 'use', name = r.name, severity = sev,
        value = type(r.saturation) == 'table' and r.saturation.value or nil,
        summary = (r.name or r.resource) .. ': ' .. (why ~= '' and why or r.status),
        evidence = res.artifact }
    end
  end
  return out
end

local function mib(b) return string.format('%.0f MiB', b / 2 ^ 20) end

--- The memory and network culprits of a USE result (perf_manual.analyzers.use
--- rows' culprit): the cgroup at its limit with its working set, refaults,
--- reclaim and the limit it needs; the target's sockets with full queues.
function M.from_use_culprits(res)
  local out = {}
  if type(res) ~= 'table' or res.available == false then return out end
  for _, r in ipairs(res.rows or {}) do
    local c = type(r.culprit) == 'table' and r.culprit or nil
    if c and r.resource == 'memory' and c.cgroup and c.limit_bytes and (r.status == 'HIGH' or r.status == 'warn') then
      local ws = c.working_set_peak_bytes or c.working_set_bytes
      out[#out + 1] = { resource = 'memory', metric = 'memory_culprit', severity = SEV[r.status], value = c.refault_per_s,
        cgroup = c.cgroup, limit_bytes = c.limit_bytes, need_bytes = c.need_bytes,
        summary = string.format('cgroup %s lives at its %s limit: working set %s, %.0f refaults/s, reclaim %s/s%s',
          c.cgroup, mib(c.limit_bytes), ws and mib(ws) or '?', c.refault_per_s or 0,
          util.fmt_bytes(c.reclaim_bytes_per_s or 0),
          c.need_bytes and string.format('; the workload needs about %s (%s)', mib(c.need_bytes), c.need_method) or ''),
        evidence = res.artifact }
    elseif c and r.resource == 'network' and type(c.sockets) == 'table' then
      for _, x in ipairs(c.sockets) do
        local q = (x.tx_queue or 0) + (x.rx_queue or 0)
        if q >= 65536 or (x.max_retrnsmt or 0) > 0 then
          out[#out + 1] = { resource = 'network', metric = 'socket_queue', severity = 'medium', value = q,
            remote = string.format('%s:%s', tostring(x.remote_addr), tostring(x.remote_port)),
            summary = string.format('socket %s:%s -> %s:%s (%s, via %s): send-q %s, recv-q %s, %d unrecovered retransmits',
              tostring(x.local_addr), tostring(x.local_port), tostring(x.remote_addr), tostring(x.remote_port),
              tostring(x.state), tostring(x.iface or '?'), util.fmt_bytes(x.tx_queue or 0), util.fmt_bytes(x.rx_queue or 0),
              x.max_retrnsmt or 0), evidence = res.artifact }
          break
        end
      end
    end
  end
  return out
end

-- p99 in ms of a row. Its buckets come first (the io tracer's log2 buckets of
-- microseconds, held to the row's max_ns): one rule (perf_manual.hist) for
-- every recording, whatever rule wrote its p99 field; then the p99 fields.
local function p99_ms(row)
  if type(row) ~= 'table' then return nil end
  if type(row.buckets) == 'table' and #row.buckets > 0 then
    local max = hist.fitting_max(row.buckets, row.max_ns and math.floor(row.max_ns / 1e3))
    local v = hist.quantile(row.buckets, 0.99, nil, max)
    if v then return v / 1e3 end
  end
  if row.p99_ms then return row.p99_ms end
  if row.p99_ns then return row.p99_ns / 1e6 end
  if row.p99_us then return row.p99_us / 1e3 end
  return nil
end
M.p99_ms = p99_ms

--- Findings from a tracer result (io, lock, offcpu, syscall).
function M.from_trace(kind, t)
  local out = {}
  if type(t) ~= 'table' or t.available == false then return out end
  local T = M.thresholds
  if kind == 'io' then
    for _, d in ipairs(t.devices or t.rows or {}) do
      local p = p99_ms(d)
      if p and p >= T.io_p99_ms_medium then
        out[#out + 1] = { resource = 'disk', metric = 'io_latency_p99_ms', value = p,
          severity = p >= T.io_p99_ms_high and 'high' or 'medium',
          summary = string.format('%s %s I/O latency p99 %.1f ms', tostring(d.name or d.device or d.dev or '?'),
            tostring(d.op or 'all'), p), evidence = t.artifact }
      end
    end
  elseif kind == 'lock' then
    local u = type(t.use) == 'table' and (t.use.utilisation or t.use.utilization)
    -- system-wide, "threads seen waiting" are mostly idle pools: judge a target only
    local of_target = type(t.use) == 'table' and tostring(t.use.utilisation_basis or ''):match('target')
    if u and of_target and u >= T.lock_wait_share_medium then
      out[#out + 1] = { resource = 'lock', metric = 'futex_wait_share', value = u,
        severity = u >= T.lock_wait_share_high and 'high' or 'medium',
        summary = string.format('threads spend %.0f%% of their time waiting on futexes', u * 100),
        evidence = t.artifact }
    end
  elseif kind == 'syscall' then
    local share = t.share_of_time
    if share and share > 0.5 then
      out[#out + 1] = { resource = 'disk', metric = 'syscall_time_share', value = share, severity = 'medium',
        summary = string.format('%.0f%% of syscall time in the traced calls', share * 100), evidence = t.artifact }
    end
  end
  return out
end

--- The hottest function of a profile result: {name, share} or nil.
function M.hot_function(p)
  if type(p) ~= 'table' or p.available == false then return nil end
  local top = p.top or p.functions
  if type(top) == 'table' and top.self then top = top.self end
  if type(top) == 'table' and top[1] then
    -- the hottest function that has a name
    local f
    for _, x in ipairs(top) do
      local n = tostring(x.name or x.func or x[1] or '')
      if n ~= '' and not n:match('^%[unknown') and not n:match('^bpf_prog_') then f = x break end
    end
    if not f then return nil end
    local share = f.share or (f.pct and f.pct / 100)
      or (f.samples and p.samples and p.samples > 0 and f.samples / p.samples)
    return { name = f.name or f.func or f[1], share = share }
  end
  if type(p.folded) == 'string' then
    -- leaf frames of folded stacks
    local counts, total = {}, 0
    for line in p.folded:gmatch('[^\n]+') do
      local stack, n = line:match('^(.*) (%d+)$')
      if stack then
        n = tonumber(n)
        local leaf = stack:match('([^;]+)$')
        counts[leaf] = (counts[leaf] or 0) + n
        total = total + n
      end
    end
    local best, bn = nil, 0
    for k, v in pairs(counts) do if v > bn then best, bn = k, v end end
    if best then return { name = best, share = total > 0 and bn / total or nil } end
  end
  return nil
end

function M.from_profile(p)
  local out = {}
  local hot = M.hot_function(p)
  if hot and hot.share and hot.share >= M.thresholds.hot_function_share then
    out[#out + 1] = { resource = 'cpu', metric = 'hot_function', value = hot.share, severity = 'medium',
      summary = string.format('%s holds %.0f%% of on-CPU samples', tostring(hot.name), hot.share * 100),
      evidence = p.artifact }
  end
  return out
end

-- RED results and collected series -------------------------------------------

-- what red-check counts as an error (perf_manual.analyzers.red): 5xx answers and transport failures
M.error_classes = { '5xx' }
local TRANSPORT = { { 'connect', 'connect failed' }, { 'timeout', 'timeout' }, { 'read', 'reset/read error' },
  { 'closed', 'closed early' }, { 'parse', 'bad response' } }

--- The kinds of errors of a summary, most first: {{kind = '5xx', count = 36},
--- {kind = 'timeout', count = 2}, ...} (passive: errno by call, and requests
--- whose connection closed without an answer).
function M.error_kinds(s)
  local out = {}
  local e = type(s) == 'table' and s.errors or {}
  for _, c in ipairs(M.error_classes) do
    local n = tonumber(type(e.status) == 'table' and e.status[c]) or 0
    if n > 0 then out[#out + 1] = { kind = c, count = n } end
  end
  for _, t in ipairs(TRANSPORT) do
    local n = tonumber(type(e.transport) == 'table' and e.transport[t[1]]) or 0
    if n > 0 then out[#out + 1] = { kind = t[2], count = n } end
  end
  for k, n in pairs(type(e.by_errno) == 'table' and e.by_errno or {}) do
    if tonumber(n) and n > 0 then out[#out + 1] = { kind = k, count = n } end
  end
  local closed = tonumber(e.closed_without_response) or 0
  if closed > 0 then out[#out + 1] = { kind = 'closed without response', count = closed } end
  table.sort(out, function(a, b) if a.count ~= b.count then return a.count > b.count end return a.kind < b.kind end)
  return out
end


--- Findings from a RED result (red-check's summary, as red-check.json holds
--- it, active or passive): the error ratio with the kinds of errors, the
--- latency percentiles against the thresholds, an asked rate not achieved.
function M.from_red(r)
  local out = {}
  if type(r) ~= 'table' or r.available == false or type(r.errors) ~= 'table' then return out end
  local T = M.thresholds
  local e = r.errors
  local ratio = tonumber(e.ratio)
  if ratio and ratio >= T.error_ratio_medium then
    local kinds = M.error_kinds(r)
    local words = {}
    for i, k in ipairs(kinds) do words[i] = k.kind .. ' ' .. k.count end
    out[#out + 1] = { resource = 'service', metric = 'error_ratio', value = ratio,
      severity = ratio >= T.error_ratio_high and 'high' or 'medium', errors = e.total, requests = e.attempts, kinds = kinds,
      summary = string.format('%.1f%% of requests failed (%s of %s%s)', ratio * 100, tostring(e.total), tostring(e.attempts),
        #words > 0 and (': ' .. table.concat(words, ', ')) or ''), evidence = r.artifact }
  end
  local lat = type(r.latency) == 'table' and r.latency
  local p99 = lat and tonumber(lat.p99)
  if p99 and p99 * 1e3 >= T.latency_p99_ms_medium then
    out[#out + 1] = { resource = 'service', metric = 'latency_p99_ms', value = p99 * 1e3,
      severity = p99 * 1e3 >= T.latency_p99_ms_high and 'high' or 'medium',
      summary = string.format('requests take %s at p99 (p50 %s, p90 %s), above the %g ms threshold', util.fmt_duration(p99),
        util.fmt_duration(tonumber(lat.p50)), util.fmt_duration(tonumber(lat.p90)), T.latency_p99_ms_medium),
      evidence = r.artifact }
  end
  local rate = type(r.rate) == 'table' and r.rate or {}
  if rate.asked and rate.sent and rate.sent < 0.95 * rate.asked then
    out[#out + 1] = { resource = 'service', metric = 'achieved_rate', value = rate.sent, severity = 'high',
      summary = string.format('only %.0f of the asked %.0f req/s could be sent: the service (or its connections) saturate',
        rate.sent, rate.asked), evidence = r.artifact }
  end
  return out
end

--- What a collected series says, judged on its median (sustained, not a
--- spike). The first pattern a series name matches picks its rule; one finding
--- per rule, from its worst series. Teams add rules for their own metrics.
M.series_rules = {
  { key = 'cpu_busy', resource = 'cpu', label = 'CPU busy', unit = '%', medium = 80, high = 95,
    match = { 'total%.busy_pct$', '^[%w_%-]*cpu%.busy_pct$' } },
  { key = 'cpu_pressure', resource = 'cpu', label = 'CPU pressure (PSI some: runnable tasks waiting)', unit = '%',
    medium = 20, high = 50, match = { 'psi%.rates%.cpu%.some_pct$', 'cpu%.rates%.psi%.some_pct$' } },
  { key = 'memory_pressure', resource = 'memory', label = 'memory pressure (PSI some: tasks stalled on memory)', unit = '%',
    medium = 10, high = 30, match = { 'psi%.rates%.memory%.some_pct$', 'memory%.rates%.psi%.some_pct$', 'psi%.memory%.some_pct$' } },
  { key = 'io_pressure', resource = 'disk', label = 'I/O pressure (PSI some: tasks stalled on I/O)', unit = '%',
    medium = 20, high = 50, match = { 'psi%.rates%.io%.some_pct$', 'psi%.io%.some_pct$' } },
  { key = 'disk_util', resource = 'disk', label = 'disk utilization', unit = '%', medium = 60, high = 90,
    match = { 'by_name%.([^.]+)%.util_pct$' } },
  { key = 'major_faults', resource = 'memory', label = 'major page faults', unit = '/s', medium = 100, high = 1000,
    match = { 'pgmajfault_per_s$' } },
  { key = 'swap_in', resource = 'memory', label = 'swap-ins', unit = ' pages/s', medium = 10, high = 100,
    match = { 'pswpin_per_s$' } },
}

local function series_values(s)
  local v = {}
  for _, p in ipairs(s.points or {}) do
    local x = tonumber(p[2])
    if x then v[#v + 1] = x end
  end
  table.sort(v)
  return v
end

--- Findings from time series ({name = {points = {{t, v}, ...}}}, as
--- perf_manual.report.load reads collect's *.jsonl). `artifact(name)` names the
--- file a series came from (default: its first dotted part .. '.jsonl').
function M.from_series(series, artifact)
  local out = {}
  if type(series) ~= 'table' then return out end
  artifact = artifact or function(name) return (name:match('^[^.]+') or name) .. '.jsonl' end
  local names = util.keys(series)
  local worst = {}
  for _, name in ipairs(names) do
    for ri, rule in ipairs(M.series_rules) do
      local hit, cap
      for _, pat in ipairs(rule.match) do
        local m = name:match(pat)
        -- a pattern with a capture names the device the series is about
        if m then hit, cap = true, pat:find('(', 1, true) and m or nil break end
      end
      if hit then
        local v = series_values(series[name])
        if #v > 0 then
          local med = v[math.floor((#v + 1) / 2)]
          if #v % 2 == 0 then med = (v[#v / 2] + v[#v / 2 + 1]) / 2 end
          local w = worst[ri]
          if not w or med > w.median then
            worst[ri] = { name = name, median = med, max = v[#v], n = #v, what = cap }
          end
        end
        break
      end
    end
  end
  for ri, rule in ipairs(M.series_rules) do
    local w = worst[ri]
    if w and w.median >= rule.medium then
      out[#out + 1] = { resource = rule.resource, metric = rule.key, value = w.median, series = w.name,
        severity = w.median >= rule.high and 'high' or 'medium',
        summary = string.format('%s%s %s%s at the median of %d samples (max %s%s)', rule.label, w.what and (' of ' .. w.what) or '',
          util.round(w.median, 1), rule.unit, w.n, util.round(w.max, 1), rule.unit),
        evidence = artifact(w.name) }
    end
  end
  return out
end

--- The results of a data dir as perf_manual.store.results(dir) reads them,
--- ready for the analyzers here and in root_cause (the USE result
--- normalised). Changes `res` in place and returns it.
function M.prepare(res)
  res.traces = res.traces or {}
  res.profiles = res.profiles or {}
  if res.use then use.normalize(res.use) end
  return res
end

--- Every finding from prepared results.
function M.all(data)
  local out = {}
  local function add(list) for _, f in ipairs(list) do out[#out + 1] = f end end
  add(M.from_use(data.use))
  add(M.from_use_culprits(data.use))
  add(M.from_tsa(data.tsa))
  for _, k in ipairs(util.keys(data.traces)) do add(M.from_trace(k, data.traces[k])) end
  if data.profiles.cpu then add(M.from_profile(data.profiles.cpu)) end
  add(M.from_red(data.red))
  add(M.from_series(data.series, data.series_artifact))
  return out
end

return M
