--- Reading a running `perf_manual serve` back: one scrape of /metrics over
--- plain HTTP (loopback, no TLS), and the per-syscall figures between two
--- scrapes (calls/s, seconds/s, errors/s, p50 and p99) computed from the
--- cumulative histograms the way Prometheus' histogram_quantile does
--- (linear inside the bucket that holds the rank). What the
--- syscall-dashboard runbook prints in a terminal.
local socket = require('posix.sys.socket')
local unistd = require('posix.unistd')
local prom = require('perf_manual.report.prometheus')
local httpd = require('perf_manual.serve.httpd')

local M = {}

--- The text of a shipped file of docs/prometheus/ (the dashboard, the
--- rules), or nil, why.
function M.shipped(name)
  local path = require('perf_manual._host').root .. '/docs/prometheus/' .. name
  local f, err = io.open(path, 'rb')
  if not f then return nil, tostring(err) end
  local body = f:read('*a')
  f:close()
  return body
end

--- Two scrapes of addr `interval` seconds apart: { from, seconds, first,
--- second } or nil, why.
function M.twice(addr, interval)
  local sys = require('perf_manual.sys')
  local t1, err = M.fetch(addr)
  if not t1 then return nil, err end
  local c1 = sys.now()
  sys.sleep(interval)
  local t2, err2 = M.fetch(addr)
  if not t2 then return nil, err2 end
  return { from = addr, seconds = sys.now() - c1, first = t1, second = t2 }
end

--- GET http://HOST:PORT/metrics: the body, or nil, why. addr: 'HOST:PORT'
--- or an http:// URL (its path is ignored).
function M.fetch(addr)
  local hp = addr:match('^http://([^/]+)') or addr
  local host, port = httpd.parse_listen(hp)
  if not host then return nil, tostring(port) end
  local fd, err = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
  if not fd then return nil, err end
  local ok, cerr = socket.connect(fd, { family = socket.AF_INET, addr = host, port = port })
  if not ok then
    unistd.close(fd)
    return nil, string.format('cannot connect to %s:%d: %s', host, port, tostring(cerr))
  end
  socket.send(fd, 'GET /metrics HTTP/1.1\r\nHost: ' .. hp .. '\r\nConnection: close\r\n\r\n')
  local parts = {}
  while true do
    local chunk = socket.recv(fd, 65536)
    if not chunk or chunk == '' then break end
    parts[#parts + 1] = chunk
  end
  unistd.close(fd)
  local resp = table.concat(parts)
  local status, body = resp:match('^HTTP/1%.%d (%d+)[^\n]*\n.-\r?\n\r?\n(.*)$')
  if status ~= '200' then return nil, string.format('%s answered %s', hp, tostring(status or 'nothing')) end
  return body
end

-- per syscall: { count, sum, errors, buckets = { {le, cum} ... } } of one scrape
local function syscalls(text)
  local samples, err = prom.parse(text)
  if not samples then return nil, err end
  local by = {}
  local function row(name)
    by[name] = by[name] or { count = 0, sum = 0, errors = 0, buckets = {} }
    return by[name]
  end
  for _, s in ipairs(samples) do
    local sc = s.labels.syscall
    if sc then
      if s.name == 'perf_manual_syscall_latency_seconds_count' then row(sc).count = s.value
      elseif s.name == 'perf_manual_syscall_latency_seconds_sum' then row(sc).sum = s.value
      elseif s.name == 'perf_manual_syscall_errors_total' then row(sc).errors = s.value
      elseif s.name == 'perf_manual_syscall_latency_seconds_bucket' then
        local b = row(sc).buckets
        b[#b + 1] = { le = s.labels.le == '+Inf' and math.huge or tonumber(s.labels.le), cum = s.value }
      end
    end
  end
  for _, r in pairs(by) do table.sort(r.buckets, function(a, b) return a.le < b.le end) end
  return by
end

--- The q-quantile of cumulative buckets {le, cum} (sorted), as Prometheus
--- computes it: linear between the bucket's lower and upper bound; the
--- +Inf bucket answers with the largest finite bound.
function M.quantile(q, buckets)
  local n = #buckets
  if n == 0 then return nil end
  local total = buckets[n].cum
  if total <= 0 then return nil end
  local rank = q * total
  local prev_le, prev_cum = 0, 0
  for _, b in ipairs(buckets) do
    if b.cum >= rank then
      if b.le == math.huge then return prev_le end
      if b.cum == prev_cum then return b.le end
      return prev_le + (b.le - prev_le) * (rank - prev_cum) / (b.cum - prev_cum)
    end
    prev_le, prev_cum = b.le, b.cum
  end
  return prev_le
end

--- Per syscall between two scrapes `seconds` apart: list of { syscall,
--- calls_per_s, seconds_per_s, errors_per_s, p50_s, p99_s, calls }, busiest
--- first; or nil, why.
function M.between(text1, text2, seconds)
  local a, err = syscalls(text1)
  if not a then return nil, 'first scrape: ' .. err end
  local b, err2 = syscalls(text2)
  if not b then return nil, 'second scrape: ' .. err2 end
  local out = {}
  for name, r2 in pairs(b) do
    local r1 = a[name] or { count = 0, sum = 0, errors = 0, buckets = {} }
    local calls = r2.count - r1.count
    if calls > 0 then
      local before = {}
      for _, x in ipairs(r1.buckets) do before[x.le] = x.cum end
      local d = {}
      for i, x in ipairs(r2.buckets) do d[i] = { le = x.le, cum = x.cum - (before[x.le] or 0) } end
      out[#out + 1] = { syscall = name, calls = calls, calls_per_s = calls / seconds,
        seconds_per_s = (r2.sum - r1.sum) / seconds, errors_per_s = (r2.errors - r1.errors) / seconds,
        p50_s = M.quantile(0.5, d), p99_s = M.quantile(0.99, d) }
    end
  end
  table.sort(out, function(x, y)
    if x.calls ~= y.calls then return x.calls > y.calls end
    return x.syscall < y.syscall
  end)
  return out
end

return M
