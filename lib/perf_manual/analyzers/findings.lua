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
      out[#out + 1] = { resource = 'memory', metric = 'memory_culprit', severity = SEV[r.status],
        value = c.refault_per_s,
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
            summary = string.format('socket %s:%s -> %s:%s (%s, via %s): send-q %s, recv-q %s, %d unrecovered ' ..
              'retransmits',
              tostring(x.local_addr), tostring(x.local_port), tostring(x.remote_addr), tostring(x.remote_port),
              tostring(x.state), tostring(x.iface or '?'), util.fmt_bytes(x.tx_queue or 0),
              util.fmt_bytes(x.rx_queue or 0),
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
  elseif kind == 'net' then
    -- the fault of the target's TCP, named with its 4-tuple (analyzers.netuse)
    local c = require('perf_manual.analyzers.netuse').culprit(t)
    if c then
      out[#out + 1] = { resource = 'network', metric = 'tcp_' .. c.kind, value = c.per_s or c.count or 0,
        severity = (c.kind == 'listener' or c.kind == 'loss') and 'high' or 'medium', summary = c.text,
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

-- CPU and disk culprits ------------------------------------------------------

local function is_kernel(f) return f:sub(-4) == '_[k]' end
local function bare(f) return (f:gsub('_%[k%]$', '')) end

--- folded text -> { {frames = {comm, root..leaf}, n = samples}, ... }, total
local function parse_folded(folded)
  local stacks, total = {}, 0
  if type(folded) ~= 'string' then return stacks, 0 end
  for line in folded:gmatch('[^\n]+') do
    local st, n = line:match('^(.*) (%d+)$')
    if st then
      local frames = {}
      for f in st:gmatch('[^;]+') do frames[#frames + 1] = f end
      stacks[#stacks + 1] = { frames = frames, n = tonumber(n) }
      total = total + tonumber(n)
    end
  end
  return stacks, total
end
M.parse_folded = parse_folded

--- User vs kernel split of on-CPU samples (folded stacks; a sample is
--- kernel time when its leaf frame is a kernel one, `_[k]`), and the
--- heaviest kernel path: the run of kernel frames most samples end in, as
--- its last `n` frames (default 5), root side first. Returns
--- { samples=, user=, kernel=, kernel_share=, kernel_path = {frames}, kernel_path_share= } or nil.
function M.cpu_split(folded, n)
  local stacks, total = parse_folded(folded)
  if total == 0 then return nil end
  local kernel, by, order = 0, {}, {}
  for _, s in ipairs(stacks) do
    local fr = s.frames
    if is_kernel(fr[#fr]) then
      kernel = kernel + s.n
      local from = #fr
      while from > 2 and is_kernel(fr[from - 1]) do from = from - 1 end
      local kp = {}
      for i = from, #fr do kp[#kp + 1] = bare(fr[i]) end
      local key = table.concat(kp, ';')
      if not by[key] then by[key] = { n = 0, frames = kp }; order[#order + 1] = key end
      by[key].n = by[key].n + s.n
    end
  end
  local best
  for _, k in ipairs(order) do if not best or by[k].n > best.n then best = by[k] end end
  local res = { samples = total, kernel = kernel, user = total - kernel, kernel_share = kernel / total }
  if best then
    n = n or 5
    local fr = {}
    for i = math.max(1, #best.frames - n + 1), #best.frames do fr[#fr + 1] = best.frames[i] end
    res.kernel_path, res.kernel_path_share = fr, best.n / total
  end
  return res
end

--- The hot path into function `name`: from `name` up, the caller holding
--- the most of its samples at each step (the comm root frame left out), at
--- most `n` frames (default 4), root side first; and the share of all
--- samples that run through that path.
function M.hot_path(folded, name, n)
  local stacks, total = parse_folded(folded)
  if total == 0 or not name then return nil end
  n = n or 4
  local live = {}
  for _, s in ipairs(stacks) do
    for i = #s.frames, 2, -1 do
      if s.frames[i] == name then live[#live + 1] = { s = s, at = i } break end
    end
  end
  if #live == 0 then return nil end
  local path, weight = { name }, 0
  for _, x in ipairs(live) do weight = weight + x.s.n end
  for depth = 1, n - 1 do
    local by, order = {}, {}
    for _, x in ipairs(live) do
      local i = x.at - depth
      local f = i >= 2 and x.s.frames[i] or nil
      if f then
        if not by[f] then by[f] = { n = 0, list = {} }; order[#order + 1] = f end
        by[f].n = by[f].n + x.s.n
        by[f].list[#by[f].list + 1] = x
      end
    end
    local best
    for _, f in ipairs(order) do if not best or by[f].n > by[best].n then best = f end end
    if not best then break end
    table.insert(path, 1, best)
    live, weight = by[best].list, by[best].n
  end
  return path, weight / total
end

--- The threads of an accounting result by time on a CPU, most first:
--- { {tid, comm, cpu (% of its wall time = % of one CPU)}, ... } (at most n).
function M.hot_threads(t, n)
  local list = {}
  if type(t) ~= 'table' or type(t.threads) ~= 'table' then return list end
  for _, th in ipairs(t.threads) do
    local c = type(th.shares) == 'table' and tonumber(th.shares.cpu) or 0
    list[#list + 1] = { tid = th.tid, comm = th.comm, cpu = c }
  end
  table.sort(list, function(a, b)
    if a.cpu ~= b.cpu then return a.cpu > b.cpu end
    return (a.tid or 0) < (b.tid or 0)
  end)
  while #list > (n or 3) do list[#list] = nil end
  return list
end

--- The CPU culprit of an on-CPU profile and an accounting result: the hot
--- function, its path, the user/kernel split, the kernel path when kernel
--- time is over 30%, the hottest threads; `text` says it in one sentence.
--- Returns a table (fields nil when not measured) or nil when neither was.
function M.cpu_culprit(p, t)
  local c = {}
  local hot = M.hot_function(p)
  local folded = type(p) == 'table' and p.folded or nil
  if hot and hot.name then
    c.hot, c.hot_share = tostring(hot.name), hot.share
    local path, share = M.hot_path(folded, c.hot)
    if path then c.path, c.path_share = table.concat(path, ' > '), share end
  end
  local sp = M.cpu_split(folded)
  if sp then
    c.samples, c.user_pct, c.kernel_pct = sp.samples, sp.user / sp.samples * 100, sp.kernel_share * 100
    if sp.kernel_share > 0.3 and sp.kernel_path then c.kernel_path = table.concat(sp.kernel_path, ' > ') end
  end
  local th = M.hot_threads(t, 3)
  if #th > 0 then c.threads = th end
  if not c.hot and not sp and not c.threads then return nil end
  local parts = {}
  if c.hot and c.hot_share then
    parts[#parts + 1] = string.format('%s holds %.0f%% of on-CPU samples%s', c.hot, c.hot_share * 100,
      c.path and c.path ~= c.hot and (' (hot path ' .. c.path .. ')') or '')
  end
  if c.user_pct then
    parts[#parts + 1] = string.format('%.0f%% user / %.0f%% kernel', c.user_pct, c.kernel_pct)
      .. (c.kernel_path and (' (kernel path ' .. c.kernel_path .. ')') or '')
  end
  if c.threads then
    local ts = {}
    for i, x in ipairs(c.threads) do
      ts[i] = string.format('%s (%s) %.0f%%', tostring(x.tid), tostring(x.comm), x.cpu)
    end
    parts[#parts + 1] = (#ts == 1 and 'hottest thread ' or 'hottest threads ') .. table.concat(ts, ', ')
      .. ' of one CPU'
  end
  c.text = table.concat(parts, '; ')
  return c
end

-- the bucket holding the median of a bucket list: {lo, hi} or nil
local function median_bucket(buckets)
  local total = 0
  for _, b in ipairs(type(buckets) == 'table' and buckets or {}) do total = total + (tonumber(b.count) or 0) end
  if total == 0 then return nil end
  local acc = 0
  for _, b in ipairs(buckets) do
    acc = acc + (tonumber(b.count) or 0)
    if acc >= total / 2 then return b end
  end
end

local function kib(b)
  if b >= 1024 then return string.format('%g KiB', util.round(b / 1024, 1)) end
  return string.format('%d B', b)
end

--- The disk culprit of an accounting result (the threads blocked on block
--- I/O and the files, fd -> path, they wait on), a syscall trace (sync and
--- write calls: rate and mean latency) and an io trace (the busiest device,
--- its latency, write size, sync share, cache flushes, time queued before
--- issue; traces recorded before the io tracer counted sync and queue time
--- leave those out). Returns a table with `text`, or nil.
--- "(device time; N ms queued before issue)", or what is not measured.
function M.queue_phrase(c)
  if not c.queue_ms then return '(issue to completion; queue time not measured)' end
  return string.format('(issue to completion; %.3f ms queued before issue)', c.queue_ms)
end

function M.disk_culprit(t, io, sc)
  local c = {}
  -- the files the threads wait on in block I/O, by time waited
  if type(t) == 'table' and type(t.threads) == 'table' then
    local by, order, threads = {}, {}, {}
    for _, th in ipairs(t.threads) do
      for _, w in ipairs(th.waits or {}) do
        if w.reason == 'io' and (tonumber(w.share) or 0) >= 1 then
          local key = tostring(w.fd_link or w.path or w.object or w.text or '?')
          if not by[key] then
            by[key] = { path = key, seconds = 0, share = 0, threads = 0, syscall = w.syscall, device = w.device }
            order[#order + 1] = key
          end
          local f = by[key]
          f.seconds, f.share, f.threads = f.seconds + (tonumber(w.seconds) or 0), f.share + (tonumber(w.share) or 0),
            f.threads + 1
          threads[th.tid or th] = true
        end
      end
    end
    table.sort(order, function(a, b) if by[a].seconds ~= by[b].seconds then return by[a].seconds > by[b].seconds end
      return a < b end)
    if #order > 0 then
      local files, nthreads, share = {}, 0, 0
      for _, k in ipairs(order) do
        files[#files + 1] = by[k]; share = share + by[k].share; nthreads = nthreads + by[k].threads
      end
      for _ in pairs(threads) do c.threads = (c.threads or 0) + 1 end
      c.files, c.file = files, files[1].path
      c.syscall, c.device = files[1].syscall, files[1].device and tostring(files[1].device):gsub('^/dev/', '')
      c.io_pct = share / nthreads   -- mean share of wall time a waiting thread spends on these files
    end
  end
  if type(sc) == 'table' and type(sc.syscalls) == 'table' then
    local calls = {}
    for _, s in ipairs(sc.syscalls) do
      local name = tostring(s.name or s.syscall or '?')
      if (tonumber(s.count) or 0) > 0 and (name:match('sync') or name:match('write')) then
        calls[#calls + 1] = { name = name, rate = tonumber(s.rate), avg_ms = tonumber(s.avg_ns) and s.avg_ns / 1e6,
          count = s.count, total_ns = tonumber(s.total_ns) or 0 }
      end
    end
    -- the sync calls first: they are what a writer waits on
    table.sort(calls, function(a, b)
      local sa, sb = a.name:match('sync') ~= nil, b.name:match('sync') ~= nil
      if sa ~= sb then return sa end
      return a.total_ns > b.total_ns
    end)
    if #calls > 0 then c.calls = calls end
  end
  if type(io) == 'table' then
    local dev
    for _, d in ipairs(io.devices or {}) do if not dev or (d.count or 0) > (dev.count or 0) then dev = d end end
    if dev then
      c.device = c.device or dev.device or dev.name or dev.dev
      c.p50_ms, c.p99_ms = tonumber(dev.p50_us) and dev.p50_us / 1e3, p99_ms(dev)
      c.inflight = tonumber(dev.inflight_mean)
      c.queue_ms = tonumber(dev.queue_mean_ns) and dev.queue_mean_ns / 1e6
    end
    for _, r in ipairs(io.rows or {}) do
      if dev and r.dev == dev.dev then
        if r.op == 'write' and (r.count or 0) > 0 then
          local b = median_bucket(r.size_buckets)
          c.write_size = b and (b.hi - b.lo > 1 and string.format('%s-%s', kib(b.lo):gsub(' KiB$', ''), kib(b.hi + 1))
            or kib(b.lo))
          c.write_mean = (r.bytes or 0) / r.count
          c.writes_per_s = tonumber(r.iops)
          c.sync_pct = tonumber(r.sync_pct)
        elseif r.op == 'flush' and (r.count or 0) > 0 then
          c.flushes_per_s = tonumber(r.iops)
        end
      end
    end
  end
  if not c.file and not c.calls and not c.device then return nil end
  local parts = {}
  if c.file then
    parts[#parts + 1] = string.format('%d thread%s wait%s in %s of %s%s%s %.0f%% of their time', c.threads,
      c.threads == 1 and '' or 's', c.threads == 1 and 's' or '', tostring(c.syscall or 'I/O'), c.file,
      #c.files > 1 and string.format(' (and %d other file%s)', #c.files - 1, #c.files == 2 and '' or 's') or '',
      c.device and (' on ' .. c.device) or '', c.io_pct)
  end
  if c.calls then
    local cs = {}
    for i, x in ipairs(c.calls) do
      if i > 2 then break end
      cs[#cs + 1] = string.format('%s %.0f calls/s, %.2f ms each', x.name, x.rate or 0, x.avg_ms or 0)
    end
    parts[#parts + 1] = table.concat(cs, ', ')
  end
  if c.write_size then
    parts[#parts + 1] = string.format('block writes %s (mean %s)%s%s', c.write_size,
      kib(math.floor(c.write_mean + 0.5)),
      c.sync_pct and string.format(', %.0f%% sync', c.sync_pct) or '',
      c.flushes_per_s and string.format(', %.0f cache flushes/s', c.flushes_per_s) or '')
  end
  if c.p99_ms then
    parts[#parts + 1] = string.format('%s latency p50 %.2f ms, p99 %.2f ms, %.1f requests in flight %s',
      tostring(c.device), c.p50_ms or 0, c.p99_ms, c.inflight or 0, M.queue_phrase(c))
  end
  c.text = table.concat(parts, '; ')
  return c
end

--- Findings from an on-CPU profile (and the accounting, for the threads):
--- a hot function, named with its path, the user/kernel split and the
--- hottest threads.
function M.from_profile(p, t)
  local out = {}
  local hot = M.hot_function(p)
  if hot and hot.share and hot.share >= M.thresholds.hot_function_share then
    local c = M.cpu_culprit(p, t)
    out[#out + 1] = { resource = 'cpu', metric = 'hot_function', value = hot.share, severity = 'medium',
      name = tostring(hot.name), path = c and c.path, kernel_pct = c and c.kernel_pct,
      summary = c and c.text ~= '' and c.text
        or string.format('%s holds %.0f%% of on-CPU samples', tostring(hot.name), hot.share * 100),
      evidence = p.artifact }
  end
  return out
end

--- Findings from the disk culprit (accounting, io and syscall traces): who
--- waits on which file, in which call, when block I/O holds the threads
--- up for a good share of their time.
function M.from_disk(t, io, sc)
  local out = {}
  local c = M.disk_culprit(t, io, sc)
  if c and c.file and c.io_pct and c.io_pct >= M.thresholds.wait_share_medium then
    out[#out + 1] = { resource = 'disk', metric = 'io_wait_culprit', value = c.io_pct,
      severity = c.io_pct >= M.thresholds.wait_share_high and 'high' or 'medium', file = c.file, syscall = c.syscall,
      summary = c.text, evidence = t.artifact }
  end
  return out
end

-- RED results and collected series -------------------------------------------

-- what red-check counts as an error (perf_manual.analyzers.red): 5xx answers and transport failures
M.error_classes = { '5xx' }
local TRANSPORT = { { 'connect', 'connect failed' }, { 'tls', 'TLS handshake failed' }, { 'timeout', 'timeout' },
  { 'read', 'reset/read error' },
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
      severity = ratio >= T.error_ratio_high and 'high' or 'medium', errors = e.total, requests = e.attempts,
      kinds = kinds,
      summary = string.format('%.1f%% of requests failed (%s of %s%s)', ratio * 100, tostring(e.total),
        tostring(e.attempts),
        #words > 0 and (': ' .. table.concat(words, ', ')) or ''), evidence = r.artifact }
  end
  local lat = type(r.latency) == 'table' and r.latency
  local p99 = lat and tonumber(lat.p99)
  if p99 and p99 * 1e3 >= T.latency_p99_ms_medium then
    out[#out + 1] = { resource = 'service', metric = 'latency_p99_ms', value = p99 * 1e3,
      severity = p99 * 1e3 >= T.latency_p99_ms_high and 'high' or 'medium',
      summary = string.format('requests take %s at p99 (p50 %s, p90 %s), above the %g ms threshold',
        util.fmt_duration(p99),
        util.fmt_duration(tonumber(lat.p50)), util.fmt_duration(tonumber(lat.p90)), T.latency_p99_ms_medium),
      evidence = r.artifact }
  end
  local rate = type(r.rate) == 'table' and r.rate or {}
  if rate.asked and rate.sent and rate.sent < 0.95 * rate.asked then
    out[#out + 1] = { resource = 'service', metric = 'achieved_rate', value = rate.sent, severity = 'high',
      summary = string.format('only %.0f of the asked %.0f req/s could be sent: the service (or its connections) ' ..
        'saturate',
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
  { key = 'memory_pressure', resource = 'memory', label = 'memory pressure (PSI some: tasks stalled on memory)',
    unit = '%',
    medium = 10, high = 30, match = { 'psi%.rates%.memory%.some_pct$', 'memory%.rates%.psi%.some_pct$',
      'psi%.memory%.some_pct$' } },
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
        summary = string.format('%s%s %s%s at the median of %d samples (max %s%s)', rule.label,
          w.what and (' of ' .. w.what) or '',
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
  if data.profiles.cpu then add(M.from_profile(data.profiles.cpu, data.tsa)) end
  add(M.from_disk(data.tsa, data.traces.io, data.traces.syscall))
  add(M.from_red(data.red))
  add(M.from_series(data.series, data.series_artifact))
  return out
end

return M
