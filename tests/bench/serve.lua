-- `perf_manual serve` against Debian's prometheus-node-exporter, both
-- started here and measured in the same run:
--   scrape cost: wall time of a whole GET /metrics from this process
--     (connect to last byte), median of interleaved scrapes 0.6 s apart;
--   idle cost: each exporter's CPU time (/proc/PID/stat) while scraped
--     every 15 s on a quiet machine, in % of one CPU;
--   CPU-busy gauge: ours (perf_manual_use_utilization{resource="cpu"})
--     against node's (1 - idle+iowait share of node_cpu_seconds_total) over
--     the same window, with cpu_burn keeping one CPU busy.
-- Targets: scrape < 5 ms for the built-in set, idle < 0.5% of one CPU.
-- Run: tests/bench/run.sh serve  (or bin/perf_manual --lua tests/bench/serve.lua [idle_s] [scrapes] [warm-up scrapes])
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root
package.path = root .. '/tests/?.lua;' .. package.path
local common = require('bench.common')
local socket = require('posix.sys.socket')
local unistd = require('posix.unistd')
local httpd = require('perf_manual.serve.httpd')
local prom = require('perf_manual.report.prometheus')

local IDLE_S = tonumber(arg and arg[1]) or 90
local SCRAPES = tonumber(arg and arg[2]) or 60
local WARM = tonumber(arg and arg[3]) or 20
local NODE = '/usr/bin/prometheus-node-exporter'

local lock
if os.getenv('PM_MACHINE_LOCK_HELD') ~= '1' then lock = assert(sys.flock('/tmp/perf_manual-machine.lock')) end

local function free_port()
  local s = assert(httpd.listen('127.0.0.1:0'))
  local p = s.port
  s:close()
  return p
end

-- GET /metrics: body, seconds
local function scrape(port)
  local t0 = sys.now()
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.connect(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = port }))
  assert(socket.send(fd, 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n'))
  local parts = {}
  while true do
    local d = socket.recv(fd, 65536)
    if not d or d == '' then break end
    parts[#parts + 1] = d
  end
  unistd.close(fd)
  local t = sys.now() - t0
  local resp = table.concat(parts)
  assert(resp:match('^HTTP/1%.%d 200'), 'scrape of port ' .. port .. ' failed: ' .. resp:sub(1, 200))
  return resp:match('\r\n\r\n(.*)$'), t
end

local function cpu_seconds(pid)
  local f = io.open('/proc/' .. pid .. '/stat')
  local s = f:read('*a'); f:close()
  local rest = s:match('%) (.*)$')
  local fields = {}
  for x in rest:gmatch('%S+') do fields[#fields + 1] = x end
  -- utime and stime are fields 14 and 15 of stat, 12 and 13 after "(comm) "
  return (tonumber(fields[12]) + tonumber(fields[13])) / sys.info().clk_tck
end

local last_err
local function wait_up(port)
  for _ = 1, 200 do
    local okk, e = pcall(scrape, port)
    if okk then return end
    last_err = e
    sys.sleep(0.05)
  end
  error('exporter on port ' .. port .. ' never answered: ' .. tostring(last_err))
end

local function value(samples, name, want)
  for _, s in ipairs(samples) do
    if s.name == name then
      local ok = true
      for k, v in pairs(want or {}) do if s.labels[k] ~= v then ok = false end end
      if ok then return s.value end
    end
  end
end

local function node_cpu(samples)
  local idle, all = 0, 0
  for _, s in ipairs(samples) do
    if s.name == 'node_cpu_seconds_total' then
      all = all + s.value
      if s.labels.mode == 'idle' or s.labels.mode == 'iowait' then idle = idle + s.value end
    end
  end
  return idle, all
end

-- run time of the BPF programs `pid` holds, from their fdinfo (the kernel
-- fills run_time_ns while kernel.bpf_stats_enabled is 1); each program once
local function bpf_run_ns(pid)
  local util = require('perf_manual.util')
  local seen, ns = {}, 0
  for _, fd in ipairs(require('posix.dirent').dir('/proc/' .. pid .. '/fdinfo') or {}) do
    local info = fd:match('^%d+$') and util.readfile('/proc/' .. pid .. '/fdinfo/' .. fd) or ''
    local id, rt = info:match('prog_id:%s+(%d+)'), info:match('run_time_ns:%s+(%d+)')
    if id and rt and not seen[id] then seen[id] = true; ns = ns + tonumber(rt) end
  end
  return ns
end

local STATS = '/proc/sys/kernel/bpf_stats_enabled'
local stats_before = (require('perf_manual.util').readfile(STATS) or '0'):match('%d') or '0'
local function bpf_stats(on)
  local f = io.open(STATS, 'w')
  if not f then return false end
  f:write(on and '1' or stats_before)
  f:close()
  return true
end

local have_node = common.sh('test -x ' .. NODE)
local sport, nport = free_port(), free_port()
local serve = assert(sys.spawn({ root .. '/bin/perf_manual', 'serve', '--listen', '127.0.0.1:' .. sport },
  { stdout = 'null', stderr = 'null', pdeathsig = 9 }))
local node
if have_node then
  node = assert(sys.spawn({ NODE, '--web.listen-address=127.0.0.1:' .. nport, '--log.level=warn' },
    { stdout = 'null', stderr = 'null', pdeathsig = 9 }))
end

local ok, err = xpcall(function()
  wait_up(sport)
  if node then wait_up(nport) end
  -- a few scrapes first, the same for both (connections, page cache)
  for _ = 1, WARM do scrape(sport); if node then scrape(nport) end end

  -- scrape cost, interleaved so drift hits both alike; 0.6 s apart so
  -- every scrape of ours computes its USE figures afresh (a sooner one
  -- reuses the last: see serve.USE_MIN_WINDOW)
  local ts, tn, inner, size_s, size_n = {}, {}, {}, 0, 0
  local cs0, cn0 = cpu_seconds(serve), node and cpu_seconds(node)
  for i = 1, SCRAPES do
    sys.sleep(0.6)
    local body, t = scrape(sport)
    ts[i], size_s = t, #body
    local own = value(assert(prom.parse(body)), 'perf_manual_scrape_duration_seconds')
    if own then inner[#inner + 1] = own end
    if node then
      body, t = scrape(nport)
      tn[i], size_n = t, #body
    end
  end
  -- CPU time per scrape (ticks of 10 ms: over many scrapes), what a busy
  -- machine's scheduling does not add to
  local cpu_s = (cpu_seconds(serve) - cs0) / SCRAPES * 1e3
  local cpu_n = node and (cpu_seconds(node) - cn0) / SCRAPES * 1e3
  local ms, mn = common.median(ts) * 1e3, node and common.median(tn) * 1e3
  print(string.format('serve: %d scrapes each', SCRAPES))
  print(string.format('  perf_manual serve   median %6.2f ms per /metrics (%d bytes; %.2f ms inside serve)', ms, size_s,
    common.median(inner) * 1e3))
  print(string.format('  CPU per scrape: perf_manual %.2f ms%s', cpu_s,
    node and string.format(', node_exporter %.2f ms', cpu_n) or ''))
  if node then
    print(string.format('  node_exporter       median %6.2f ms per /metrics (%d bytes)', mn, size_n))
    print(string.format('  scrape cost: perf_manual %.2f ms vs node_exporter %.2f ms (%.2fx); target < 5 ms: %s',
      ms, mn, ms / mn, ms < 5 and 'met' or 'NOT met'))
  else
    print(string.format('  scrape cost %.2f ms (node_exporter not installed: no peer); target < 5 ms: %s', ms,
      ms < 5 and 'met' or 'NOT met'))
  end

  -- idle cost at a 15 s scrape interval; serve's BPF programs run in the
  -- traced tasks' context, so their run time is counted apart (statistics
  -- on for this window only)
  local stats = bpf_stats(true)
  local b0 = stats and bpf_run_ns(serve)
  local c0s, c0n, t0 = cpu_seconds(serve), node and cpu_seconds(node), sys.now()
  local next_at = t0
  while sys.now() - t0 < IDLE_S do
    if sys.now() >= next_at then
      scrape(sport)
      if node then scrape(nport) end
      next_at = next_at + 15
    end
    sys.sleep(math.max(0.01, math.min(next_at, t0 + IDLE_S) - sys.now()))
  end
  local el = sys.now() - t0
  local idle_s = (cpu_seconds(serve) - c0s) / el * 100
  local idle_n = node and (cpu_seconds(node) - c0n) / el * 100
  local idle_b = stats and (bpf_run_ns(serve) - b0) / 1e9 / el * 100
  if stats then bpf_stats(false) end
  print(string.format('  idle, scraped every 15 s for %.0f s: perf_manual %.3f%% of one CPU%s; target < 0.5%%: %s',
    el, idle_s, node and string.format(', node_exporter %.3f%%', idle_n) or '', idle_s < 0.5 and 'met' or 'NOT met'))
  if stats then
    print(string.format('  ... and its BPF programs %.3f%% of one CPU in the traced tasks (this machine at rest): '
      .. '%.3f%% in all; target < 0.5%%: %s', idle_b, idle_s + idle_b, idle_s + idle_b < 0.5 and 'met' or 'NOT met'))
  else
    print('  (BPF run time not measured: cannot write /proc/sys/kernel/bpf_stats_enabled)')
  end

  -- the CPU-busy gauge of both over one window, one CPU kept busy
  if node then
    local burn = assert(sys.spawn({ root .. '/build/workloads/cpu_burn', '1', '30' },
      { stdout = 'null', stderr = 'null', pdeathsig = 9 }))
    sys.sleep(1)
    local i0, a0 = node_cpu(assert(prom.parse((scrape(nport)))))
    scrape(sport)
    sys.sleep(5)
    local ours = value(assert(prom.parse((scrape(sport)))), 'perf_manual_use_utilization', { resource = 'cpu' })
    local i1, a1 = node_cpu(assert(prom.parse((scrape(nport)))))
    sys.kill(burn, 15)
    sys.wait(burn)
    local theirs = 100 * (1 - (i1 - i0) / (a1 - a0))
    print(string.format('  CPU busy over 5 s with cpu_burn 1: perf_manual %.2f%%, node_exporter %.2f%% '
      .. '(difference %.2f points)', ours, theirs, ours - theirs))
  end
end, debug.traceback)
bpf_stats(false)
sys.kill(serve, 15)
sys.wait(serve)
if node then sys.kill(node, 15); sys.wait(node) end
if lock then sys.unlock(lock) end
if not ok then error(err, 0) end
