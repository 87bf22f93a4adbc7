--- RED (Rate, Errors, Duration) from a load run (perf_manual.http) or from
--- a process's own syscalls (passive mode). Plain tables in, a summary and
--- findings out; rendering for the terminal.
local util = require('perf_manual.util')

local M = {}

M.percentiles = { 'p50', 'p90', 'p99', 'p99.9', 'max' }

--- What counts as an error: transport failures and 5xx answers. 4xx are
--- the client's fault and are listed by class but not counted.
M.error_classes = { '5xx' }

local function sum(t, keys)
  local s = 0
  for _, k in ipairs(keys) do s = s + (t[k] or 0) end
  return s
end

--- Summarizes a raw load result.
function M.summarize(res)
  util.validate('res', res, 'table')
  local transport = res.errors or {}
  local tkeys = { 'connect', 'timeout', 'read', 'closed', 'parse' }
  local n_transport = sum(transport, tkeys)
  local n_http = sum(res.status or {}, M.error_classes)
  local attempts = (res.responses or 0) + n_transport
  local s = {
    mode = 'active',
    url = res.url,
    duration_s = res.issue_time,
    connections = res.connections,
    rate = {
      asked = (res.asked_rate or 0) > 0 and res.asked_rate or nil,
      sent = res.issue_time and res.issue_time > 0 and res.sent / res.issue_time or nil,
      completed = res.issue_time and res.issue_time > 0 and res.responses / res.issue_time or nil,
      due = res.due, sent_n = res.sent, backlog = res.backlog, unfinished = res.unfinished,
    },
    errors = {
      total = n_transport + n_http,
      ratio = attempts > 0 and (n_transport + n_http) / attempts or nil,
      attempts = attempts,
      status = res.status, transport = transport,
      connects = res.connects, connects_ok = res.connects_ok, last_error = res.last_error,
    },
    latency = res.latency,         -- nil when not one response came back
    histogram = res.histogram,
    series = res.series,
    open_loop = (res.asked_rate or 0) > 0,
  }
  s.unreachable = (res.connects_ok or 0) == 0 and (res.responses or 0) == 0
  return s
end

--- Findings for the investigation store.
function M.findings(s)
  local out = {}
  if s.errors.ratio and s.errors.ratio > 0.01 then
    out[#out + 1] = { resource = 'service', metric = 'error ratio', value = s.errors.ratio,
      severity = s.errors.ratio > 0.05 and 'high' or 'medium',
      summary = string.format('%.1f%% of requests failed', s.errors.ratio * 100) }
  end
  if s.rate.asked and s.rate.sent and s.rate.sent < 0.95 * s.rate.asked then
    out[#out + 1] = { resource = 'service', metric = 'achieved rate', value = s.rate.sent,
      severity = 'high', summary = string.format('only %.0f of the asked %.0f req/s could be sent: the service (or its connections) saturate',
        s.rate.sent, s.rate.asked) }
  end
  return out
end

local function ms(v)
  if v == nil then return 'not measured' end
  return util.fmt_duration(v)
end

--- The RED table as text.
function M.render(s, opts)
  if s.mode == 'passive' then return M.render_passive(s) end
  opts = opts or {}
  local charts = opts.charts
  local L = {}
  local function add(fmt, ...) L[#L + 1] = string.format(fmt, ...) end
  add('RED check: %s  (%s, %d connections, %s)', s.url or ('pid ' .. tostring(s.pid)),
    s.mode == 'passive' and 'passive, from syscalls' or (s.open_loop and 'open loop' or 'closed loop: latency from send time'),
    s.connections or 0, util.fmt_duration(s.duration_s or 0))
  add('')
  add('Rate')
  if s.rate.asked then
    add('  asked      %10.1f req/s', s.rate.asked)
  end
  add('  sent       %10.1f req/s%s', s.rate.sent or 0,
    s.rate.asked and s.rate.sent and s.rate.sent < 0.95 * s.rate.asked and '   << below the asked rate' or '')
  add('  completed  %10.1f req/s', s.rate.completed or 0)
  if charts and s.series and #s.series > 1 then
    local per = {}
    for i, x in ipairs(s.series) do per[i] = x.responses end
    add('  per second %s  (%d .. %d)', charts.sparkline(per, { min = 0 }), math.min(unpack(per)), math.max(unpack(per)))
  end
  if (s.rate.backlog or 0) > 0 or (s.rate.unfinished or 0) > 0 then
    add('  not sent   %10d (due, no free connection)   unfinished at end %d', s.rate.backlog or 0, s.rate.unfinished or 0)
  end
  add('')
  add('Errors     %d of %d (%s)', s.errors.total, s.errors.attempts,
    s.errors.ratio and string.format('%.2f%%', s.errors.ratio * 100) or 'no requests')
  local st = s.errors.status or {}
  add('  by status  1xx %d  2xx %d  3xx %d  4xx %d  5xx %d', st['1xx'] or 0, st['2xx'] or 0, st['3xx'] or 0,
    st['4xx'] or 0, st['5xx'] or 0)
  local tr = s.errors.transport or {}
  add('  transport  connect %d  timeout %d  reset/read %d  closed %d  bad response %d',
    tr.connect or 0, tr.timeout or 0, tr.read or 0, tr.closed or 0, tr.parse or 0)
  if s.errors.last_error and (tr.connect or 0) > 0 then add('  last socket error: %s', s.errors.last_error) end
  add('')
  add('Duration%s', s.open_loop and ' (from the intended send time)' or '')
  if s.latency then
    local parts = {}
    for _, k in ipairs(M.percentiles) do parts[#parts + 1] = string.format('%s %s', k, ms(s.latency[k])) end
    add('  %s', table.concat(parts, '  '))
    if charts and s.histogram then
      add('')
      for _, line in ipairs(charts.log2_bars(s.histogram)) do add('  %s', line) end
    end
  else
    add('  not measured (no response received)')
  end
  return table.concat(L, '\n') .. '\n'
end

-- Passive mode ------------------------------------------------------------------

-- Syscalls that stand for RED events of a network server. A response is one
-- write-side call (nginx: writev/sendfile; others: write/sendto/sendmsg);
-- EAGAIN on non-blocking sockets is normal flow, not an error.
M.passive_calls = {
  accept = { 'accept', 'accept4' },
  read = { 'read', 'readv', 'recvfrom', 'recvmsg', 'recvmmsg' },
  write = { 'write', 'writev', 'sendto', 'sendmsg', 'sendmmsg', 'sendfile', 'sendfile64' },
}
M.passive_benign_errnos = { EAGAIN = true, EWOULDBLOCK = true, EINTR = true }

--- RED of a running server from its own syscalls (H3a's syscall tracer),
--- without sending any load. Pure part: a syscall tracer result in, a
--- summary out.
function M.summarize_passive(res, pid, seconds)
  local groups, member, slots = {}, {}, {}
  for g, names in pairs(M.passive_calls) do
    groups[g] = { count = 0, errors = 0, errnos = {}, buckets = {} }
    member[g], slots[g] = {}, {}
    for _, n in ipairs(names) do member[g][n] = true end
  end
  for _, row in ipairs(res.syscalls or {}) do
    for g in pairs(M.passive_calls) do
      local G = groups[g]
      if member[g][row.name] then
        G.count = G.count + row.count
        for _, e in ipairs(row.errnos or {}) do
          if not M.passive_benign_errnos[e.name] then
            G.errors = G.errors + e.count
            G.errnos[e.name] = (G.errnos[e.name] or 0) + e.count
          end
        end
        -- log2 slots of different syscalls line up by their bounds
        for _, b in ipairs(row.buckets or {}) do
          if b.count == 0 then goto next_bucket end
          local m = slots[g][b.lo]
          if not m then m = { lo = b.lo, hi = b.hi, count = 0 }; slots[g][b.lo] = m; G.buckets[#G.buckets + 1] = m end
          m.count = m.count + b.count
          ::next_bucket::
        end
      end
    end
  end
  for _, G in pairs(groups) do table.sort(G.buckets, function(a, b) return a.lo < b.lo end) end
  local secs = seconds or res.seconds
  local errs = groups.accept.errors + groups.read.errors + groups.write.errors
  local attempts = groups.write.count
  local s = {
    mode = 'passive', pid = pid, duration_s = secs, open_loop = false,
    rate = {
      completed = secs and secs > 0 and groups.write.count / secs or nil,
      accepts = secs and secs > 0 and groups.accept.count / secs or nil,
      reads = secs and secs > 0 and groups.read.count / secs or nil,
    },
    errors = { total = errs, attempts = attempts, ratio = attempts > 0 and errs / attempts or nil,
      by_errno = {}, status = {}, transport = {} },
    syscalls = groups,
    -- request latency needs per-connection events; the aggregate tracer
    -- gives syscall latencies only, so Duration is marked as not measured
    latency = nil,
    duration_note = 'request latency not measured in passive mode (needs per-connection events); '
      .. 'syscall latencies of the write calls are shown instead',
    quality = res.quality,
  }
  for g, G in pairs(groups) do
    for name, n in pairs(G.errnos) do s.errors.by_errno[g .. ' ' .. name] = n end
  end
  return s
end

--- Runs the syscall tracer on pid for `seconds` (Ctrl-C stops early).
function M.passive(pid, seconds, inv)
  local sys = require('perf_manual._c.sys')
  local ok, tracer = pcall(require, 'perf_manual.tracers.syscall')
  if not ok then util.user_error('red-check: --passive needs the syscall tracer (perf_manual.tracers.syscall): ' .. tostring(tracer)) end
  if sys.geteuid() ~= 0 then util.user_error('red-check: --passive needs root (BPF syscall tracing)') end
  if not io.open('/proc/' .. pid .. '/stat') then util.user_error('red-check: no process ' .. pid) end
  local t, err = tracer.start { pid = pid, mode = 'latency' }
  if not t then util.user_error('red-check: cannot trace syscalls of ' .. pid .. ': ' .. tostring(err)) end
  if inv then inv:progress(string.format('red-check: watching pid %d for %s ...', pid, util.fmt_duration(seconds))) end
  local t0 = sys.now()
  sys.sleep(seconds)
  local res = t:stop()
  if inv then inv:progress_done() end
  return M.summarize_passive(res, pid, sys.now() - t0)
end

function M.render_passive(s)
  local L = {}
  local function add(fmt, ...) L[#L + 1] = string.format(fmt, ...) end
  add('RED check (passive, from syscalls): pid %d over %s', s.pid, util.fmt_duration(s.duration_s or 0))
  add('')
  add('Rate')
  add('  responses  %10.1f /s   (write-side calls: %s)', s.rate.completed or 0, table.concat(M.passive_calls.write, ' '))
  add('  accepts    %10.1f /s   reads %.1f /s', s.rate.accepts or 0, s.rate.reads or 0)
  add('')
  add('Errors     %d (%s)', s.errors.total, s.errors.ratio and string.format('%.2f%% of responses', s.errors.ratio * 100) or 'no responses seen')
  for _, k in ipairs(util.keys(s.errors.by_errno)) do add('  %-24s %d', k, s.errors.by_errno[k]) end
  add('')
  add('Duration   %s', s.duration_note)
  local w = s.syscalls.write
  if #w.buckets > 0 then
    local hist = require('perf_manual.report.hist')
    local ok, q = pcall(hist.summary, w.buckets)
    if ok and q then add('  write-side syscall latency p50 %s  p99 %s', util.fmt_duration((q.p50 or 0) / 1e9), util.fmt_duration((q.p99 or 0) / 1e9)) end
  end
  return table.concat(L, '\n') .. '\n'
end

return M
