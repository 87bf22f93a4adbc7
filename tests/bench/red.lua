-- red-check vs wrk on the same private nginx endpoint, same connections:
-- requests per second and latency percentiles side by side.
--   tests/bench/run.sh red        (or: flock /tmp/perf_manual-machine.lock bin/perf_manual --lua tests/bench/red.lua)
local root = require('perf_manual._host').root
package.path = root .. '/tests/?.lua;' .. package.path
local nginx = require('e2e.nginx')
local http = require('perf_manual.http')
local util = require('perf_manual.util')
local common = require('bench.common')

local DURATION = tonumber(os.getenv('BENCH_SECONDS') or '5')
local CONNS = { 10, 50 }

if not io.open('/usr/bin/wrk') then
  print('red bench: wrk is not installed (apt-get install wrk): nothing to compare with')
  os.exit(0)
end

local function wrk(url, threads, conns)
  return common.wrk(url, DURATION, { threads = threads, connections = conns })
end

local function line(name, r)
  print(string.format('  %-24s %10.0f req/s   p50 %-9s p90 %-9s p99 %-9s', name, r.rps or 0,
    util.fmt_duration(r.p50), util.fmt_duration(r.p90), util.fmt_duration(r.p99)))
end

local n = nginx.start()
local ok, err = pcall(function()
  print(string.format('red-check vs wrk, nginx %s, %ds each, 1 nginx worker, 2 CPUs shared by server and client', n.url('/ok'), DURATION))
  -- three alternating rounds per tool (the machine is shared): the median round counts
  local function median(list)
    table.sort(list, function(a, b) return a.rps < b.rps end)
    return list[math.ceil(#list / 2)]
  end
  for _, c in ipairs(CONNS) do
    print(string.format('connections %d (median of 3 alternating rounds):', c))
    local mine, w1, w2 = {}, {}, {}
    for _ = 1, 3 do
      local res = assert(http.load { url = n.url('/ok'), connections = c, duration = DURATION })
      mine[#mine + 1] = { rps = res.responses / res.issue_time, p50 = res.latency.p50, p90 = res.latency.p90, p99 = res.latency.p99 }
      w1[#w1 + 1] = wrk(n.url('/ok'), 1, c)
      w2[#w2 + 1] = wrk(n.url('/ok'), 2, c)
    end
    local m, a, b = median(mine), median(w1), median(w2)
    line('red-check (1 thread)', m)
    line('wrk -t1', a)
    line('wrk -t2', b)
    print(string.format('  ratio red-check / wrk -t1: %.2f   / wrk -t2: %.2f', m.rps / a.rps, m.rps / b.rps))
  end
  -- open loop at a rate both can hold: what coordinated omission hides
  print('open loop, 50 ms endpoint at 400 req/s over 20 connections (each connection can do at most 20 req/s):')
  local res = assert(http.load { url = n.url('/delay50'), rate = 400, connections = 20, duration = DURATION })
  print(string.format('  red-check asked 400/s, sent %.0f/s, p50 %s p99 %s  (latency counted from the intended send time)',
    res.sent / res.issue_time, util.fmt_duration(res.latency.p50), util.fmt_duration(res.latency.p99)))
  local w = wrk(n.url('/delay50'), 1, 20)
  print(string.format('  wrk -t1 -c20 (closed loop): %.0f req/s, p50 %s p99 %s  (waits for each answer: the queue never shows)',
    w.rps, util.fmt_duration(w.p50), util.fmt_duration(w.p99)))
end)
n.stop()
if not ok then error(err, 0) end
