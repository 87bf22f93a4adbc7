-- red-check vs wrk over https, on the same private nginx (TLS 1.3, a
-- certificate from a CA made for the run), in the same run:
--   keep-alive, 10 connections, as fast as they go;
--   a new connection (and TLS handshake) per request, 10 connections;
--   a fixed 2000 req/s over 10 connections: p50 side by side.
-- red-check verifies the certificate (--cacert); wrk does not verify.
--   tests/bench/run.sh red_https
local root = require('perf_manual._host').root
package.path = root .. '/tests/?.lua;' .. package.path
local nginx = require('e2e.nginx')
local http = require('perf_manual.http')
local util = require('perf_manual.util')
local common = require('bench.common')

local DURATION = tonumber(os.getenv('BENCH_SECONDS') or '5')
local CONNS, RATE = 10, 2000

if not io.open('/usr/bin/wrk') then
  print('red_https bench: wrk is not installed (apt-get install wrk): nothing to compare with')
  os.exit(0)
end

local function line(name, r, extra)
  print(string.format('  %-22s %9.0f req/s   p50 %-9s p90 %-9s p99 %-9s%s', name, r.rps or 0,
    util.fmt_duration(r.p50), util.fmt_duration(r.p90), util.fmt_duration(r.p99), extra or ''))
end

-- three alternating rounds per tool (the machine is shared): the median round by rate counts
local function median(list)
  table.sort(list, function(a, b) return a.rps < b.rps end)
  return list[math.ceil(#list / 2)]
end

local n = nginx.start { tls = true }
local tmp = common.tmpdir()
local ok, err = pcall(function()
  local url = n.https_url('/ok', 'localhost')
  print(string.format('red-check vs wrk over https, nginx %s (1 worker, TLS 1.3), %ds each, 2 CPUs shared by '
    .. 'server and client; median of 3 alternating rounds', url, DURATION))
  local function ours(o)
    local res = assert(http.load { url = url, cacert = n.cacert, connections = CONNS, duration = DURATION,
      headers = o.header and { o.header }, rate = o.rate })
    assert(res.errors.tls == 0 and res.responses > 0, 'red-check: TLS errors')
    return { rps = res.responses / res.issue_time, p50 = res.latency.p50, p90 = res.latency.p90,
      p99 = res.latency.p99, handshakes = res.tls.handshakes_ok, resumed = res.tls.resumed }
  end
  -- wrk has no rate: each connection waits its share of the interval after every answer
  local paced = tmp .. '/paced.lua'
  local f = assert(io.open(paced, 'w'))
  f:write(string.format('function delay() return %g end\n', 1000 * CONNS / RATE))
  f:close()
  local cases = {
    { 'keep-alive, 10 connections', {}, {} },
    { 'new connection per request (Connection: close), 10 connections', { header = 'Connection: close' },
      { header = 'Connection: close' } },
  }
  for _, c in ipairs(cases) do
    print(c[1] .. ':')
    local m, w1, w2 = {}, {}, {}
    for _ = 1, 3 do
      m[#m + 1] = ours(c[2])
      w1[#w1 + 1] = common.wrk(url, DURATION, { threads = 1, connections = CONNS, header = c[3].header })
      w2[#w2 + 1] = common.wrk(url, DURATION, { threads = 2, connections = CONNS, header = c[3].header })
    end
    local a, b, d = median(m), median(w1), median(w2)
    line('red-check (1 thread)', a, c[2].header and string.format('   %d handshakes, %d resumed', a.handshakes,
      a.resumed) or '')
    line('wrk -t1', b)
    line('wrk -t2', d)
    print(string.format('  ratio red-check / wrk -t1: %.2f   / wrk -t2: %.2f', a.rps / b.rps, a.rps / d.rps))
    if c[2].header then
      print('  (red-check counts the connect and the handshake in each latency; wrk starts its clock after them)')
    end
  end
  print(string.format('fixed rate %d req/s, 10 connections (red-check: open loop; wrk: each connection waits '
    .. '%g ms after every answer, so its rate is a little lower):', RATE, 1000 * CONNS / RATE))
  local m, w = {}, {}
  for _ = 1, 3 do
    m[#m + 1] = ours { rate = RATE }
    w[#w + 1] = common.wrk(url, DURATION, { threads = 1, connections = CONNS, script = paced })
  end
  local a, b = median(m), median(w)
  line('red-check', a)
  line('wrk -t1 (paced)', b)
  print(string.format('  p50 red-check / wrk: %.2f', a.p50 / b.p50))
end)
n.stop()
common.sh('rm -rf ' .. tmp)
if not ok then error(err, 0) end
