--- RED (Rate, Errors, Duration) from a load run (perf_manual.http) or from
--- a process's own syscalls (passive mode). Plain tables in, a summary and
--- findings out; rendering for the terminal.
local util = require('perf_manual.util')
local report_tracers = require('perf_manual.report.tracers')
local findings = require('perf_manual.analyzers.findings')

local M = {}

M.percentiles = { 'p50', 'p90', 'p99', 'p99.9', 'max' }

--- What counts as an error: transport failures and 5xx answers. 4xx are
--- the client's fault and are listed by class but not counted.
M.error_classes = findings.error_classes   -- one table: the findings count the same errors

local function sum(t, keys)
  local s = 0
  for _, k in ipairs(keys) do s = s + (t[k] or 0) end
  return s
end

--- Summarizes a raw load result.
function M.summarize(res)
  util.validate('res', res, 'table')
  local transport = res.errors or {}
  local tkeys = { 'connect', 'tls', 'timeout', 'read', 'closed', 'parse' }
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
    tls = res.tls,                 -- https: handshakes, resumed, version, cipher, verified, last_error
  }
  s.unreachable = (res.connects_ok or 0) == 0 and (res.responses or 0) == 0
  -- connected, but never through TLS (a certificate not trusted, say)
  s.tls_failed = not s.unreachable and res.tls ~= nil and (res.tls.handshakes_ok or 0) == 0
    and (res.responses or 0) == 0 or nil
  return s
end

--- The kinds of errors of a summary, most first (perf_manual.analyzers.findings.error_kinds).
M.error_kinds = findings.error_kinds

--- Findings for the investigation store (perf_manual.analyzers.findings.from_red:
--- one rule for a live run and a recorded one).
function M.findings(s)
  return findings.from_red(s)
end

local function ms(v)
  if v == nil then return 'not measured' end
  return util.fmt_duration(v)
end

--- The RED table as text.
function M.render(s, opts)
  opts = opts or {}
  if s.mode == 'passive' then return M.render_passive(s, opts) end
  local charts = opts.charts
  local L = {}
  local function add(fmt, ...) L[#L + 1] = string.format(fmt, ...) end
  add('RED check: %s  (%s, %d connections, %s)', s.url or ('pid ' .. tostring(s.pid)),
    s.mode == 'passive' and 'passive, from syscalls' or (s.open_loop and 'open loop'
      or 'closed loop: latency from send time'),
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
    add('  not sent   %10d (due, no free connection)   unfinished at end %d', s.rate.backlog or 0,
      s.rate.unfinished or 0)
  end
  add('')
  add('Errors     %d of %d (%s)', s.errors.total, s.errors.attempts,
    s.errors.ratio and string.format('%.2f%%', s.errors.ratio * 100) or 'no requests')
  local st = s.errors.status or {}
  add('  by status  1xx %d  2xx %d  3xx %d  4xx %d  5xx %d', st['1xx'] or 0, st['2xx'] or 0, st['3xx'] or 0,
    st['4xx'] or 0, st['5xx'] or 0)
  local tr = s.errors.transport or {}
  add('  transport  connect %d  %stimeout %d  reset/read %d  closed %d  bad response %d',
    tr.connect or 0, s.tls and string.format('tls %d  ', tr.tls or 0) or '', tr.timeout or 0, tr.read or 0,
    tr.closed or 0, tr.parse or 0)
  if s.errors.last_error and (tr.connect or 0) > 0 then add('  last socket error: %s', s.errors.last_error) end
  if s.tls and s.tls.last_error and (tr.tls or 0) > 0 then add('  last TLS error: %s', s.tls.last_error) end
  if s.tls then
    local t = s.tls
    if (t.handshakes_ok or 0) == 0 then
      add('  TLS        no handshake completed')
    else
      add('  TLS        %s %s, %d %s (%d resumed)%s', t.version or '-', t.cipher or '', t.handshakes_ok,
        t.handshakes_ok == 1 and 'handshake' or 'handshakes', t.resumed or 0,
        t.verified and '' or ', certificate not verified (--insecure)')
    end
  end
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
--
-- The request tracer (perf_manual.tracers.red, bpf/red.bpf.c) pairs, per
-- connection, the read that brings a request with the first write that
-- answers it. Duration is that time as the server spends it; Rate is paired
-- requests per second; Errors are failed calls on connections (and accept
-- errors) plus requests whose connection closed before any answer.

M.passive_duration_note = 'server time per request: end of its read -> start of the first write back'

--- RED of a running server from its own syscalls. Pure part: a request
--- tracer result (tracers/red.lua) in, a summary of the active mode's shape
--- out (latency in seconds: p50 p75 p90 p99 p99.9 p99.99 min max mean).
function M.summarize_passive(res, pid, seconds)
  util.validate('res', res, 'table')
  local secs = seconds or res.seconds
  local function per(n) return secs and secs > 0 and n / secs or nil end
  local by_errno, n_sys = {}, 0
  for k, n in pairs(res.errors and res.errors.by or {}) do
    by_errno[k] = n
    n_sys = n_sys + n
  end
  local closed = res.closed_without_response or 0
  local total = n_sys + closed
  local attempts = res.requests + total
  local groups = {}
  for _, kind in ipairs({ 'accept', 'read', 'write', 'close' }) do
    local g = { count = res.calls[kind] or 0, errors = 0, errnos = {} }
    for k, n in pairs(res.errors and res.errors.by or {}) do
      local kk, name = k:match('^(%S+) (.+)$')
      if kk == kind then g.errors = g.errors + n; g.errnos[name] = n end
    end
    groups[kind] = g
  end
  local s = {
    mode = 'passive', pid = pid, processes = res.processes, duration_s = secs, open_loop = false,
    rate = {
      completed = per(res.requests),
      accepts = per(res.accepted or 0),
      reads = per(res.calls.read or 0),
      writes = per(res.calls.write or 0),
    },
    errors = {
      total = total, attempts = attempts, ratio = attempts > 0 and total / attempts or nil,
      by_errno = by_errno, closed_without_response = closed, benign = res.errors and res.errors.benign,
      status = {}, transport = {},
    },
    latency = res.latency,         -- nil when no request was answered
    histogram = res.histogram,
    duration_note = M.passive_duration_note,
    requests = {
      paired = res.requests,
      started = res.started,
      closed_without_response = closed,
      in_flight_at_end = res.conns and res.conns.pending,
      unpaired_writes = res.unpaired_writes,
      connections_at_start = res.conns and res.conns.at_start,
      connections_accepted = res.accepted,
      connections_evicted = res.conns and res.conns.evicted,
    },
    syscalls = groups,
    other_fd = res.other_fd,
    quality = res.quality,
  }
  return s
end

local function plural(n, one, many) return n == 1 and one or many end

function M.render_passive(s, opts)
  opts = opts or {}
  local L = {}
  local function add(fmt, ...) L[#L + 1] = string.format(fmt, ...) end
  local procs = s.processes or { s.pid }
  local kids = {}
  for i = 2, #procs do kids[#kids + 1] = tostring(procs[i]) end
  add('RED check (passive, from syscalls): pid %d%s over %s', s.pid,
    #kids > 0 and string.format(' and its %s %s', plural(#kids, 'child', 'children'), table.concat(kids, ' ')) or '',
    util.fmt_duration(s.duration_s or 0))
  add('')
  add('Rate')
  add('  requests   %10.1f req/s   (%d answered: a read on a connection, then the first write back)',
    s.rate.completed or 0, s.requests.paired)
  add('  accepts    %10.1f /s      reads %.1f /s   writes %.1f /s', s.rate.accepts or 0, s.rate.reads or 0,
    s.rate.writes or 0)
  add('')
  add('Errors     %d of %d (%s)', s.errors.total, s.errors.attempts,
    s.errors.ratio and string.format('%.2f%%', s.errors.ratio * 100) or 'no requests seen')
  add('  closed without response  %d', s.errors.closed_without_response or 0)
  for _, k in ipairs(util.keys(s.errors.by_errno)) do add('  %-24s %d', k, s.errors.by_errno[k]) end
  add('')
  add('Duration (%s)', s.duration_note)
  if s.latency then
    local parts = {}
    for _, k in ipairs(M.percentiles) do parts[#parts + 1] = string.format('%s %s', k, ms(s.latency[k])) end
    add('  %s', table.concat(parts, '  '))
    if opts.charts and s.histogram then
      add('')
      for _, line in ipairs(opts.charts.log2_bars(s.histogram)) do add('  %s', line) end
    end
  else
    add('  not measured (no request was answered)')
  end
  add('')
  local r = s.requests
  add('Not counted: %s in flight at the end, %d %s with no request pending '
    .. '(the rest of a response, or the answer to a request read before tracing)',
    r.in_flight_at_end and tostring(r.in_flight_at_end) or '?', r.unpaired_writes or 0,
    plural(r.unpaired_writes or 0, 'write', 'writes'))
  add('Connections: %d open at start, %d accepted, %d evicted from the table; calls on other fds: read %d, write %d',
    r.connections_at_start or 0, r.connections_accepted or 0, r.connections_evicted or 0,
    s.other_fd and s.other_fd.read or 0, s.other_fd and s.other_fd.write or 0)
  if s.quality then add('quality: %s', report_tracers.quality_line(s.quality)) end
  return table.concat(L, '\n') .. '\n'
end

return M
