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

return M
