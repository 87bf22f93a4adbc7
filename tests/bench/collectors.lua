-- Collector benchmarks:
--  1. one sample() of every system collector (cpu, memory, disk, network, psi):
--     median wall time against the floor of merely reading the same files;
--     target: all four system collectors together < 2 ms.
--  2. the thread-state sampler's CPU cost on tests/workloads/threads100
--     (100 mostly-sleeping threads) at its default 50 Hz, against a naive
--     sampler (open/read/close stat + wchan of every thread every tick);
--     target < 2% of one CPU.
-- Run: tests/bench/run.sh collectors  (or bin/perf_manual --lua tests/bench/collectors.lua [seconds])
local measure_threads = require('perf_manual.measure.threads')
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root
local collectors = require('perf_manual.collectors')
local threads = collectors.threads
local seconds = tonumber(arg and arg[1]) or 5
package.path = root .. '/tests/?.lua;' .. package.path
local helpers = require('helpers') -- machine lock (already held under run.sh)

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

local function time_median(fn, n)
  for _ = 1, 20 do fn() end -- warm up (JIT, page cache, dentries)
  local t = {}
  for i = 1, n do
    local t0 = sys.now()
    fn()
    t[i] = sys.now() - t0
  end
  return median(t)
end

local function slurp(path)
  local f = io.open(path, 'rb')
  if f then f:read('*a'); f:close() end
end

helpers.with_machine_lock(function()
  -- ---------------------------------------------------------------- 1 ------
  local files = {
    cpu = { '/proc/stat', '/proc/loadavg', '/proc/pressure/cpu' },
    memory = { '/proc/meminfo', '/proc/vmstat', '/proc/pressure/memory' },
    disk = { '/proc/diskstats', '/proc/pressure/io' },
    network = { '/proc/net/dev', '/proc/net/snmp', '/proc/net/netstat' },
    psi = { '/proc/pressure/cpu', '/proc/pressure/memory', '/proc/pressure/io' },
  }
  local N = 500
  print(string.format('collectors: median of %d samples each (floor = reading the same /proc files, no parsing)', N))
  for _, name in ipairs({ 'cpu', 'memory', 'disk', 'network', 'psi' }) do
    local c = collectors[name]
    local m = time_median(function() c.sample() end, N)
    local fl = time_median(function() for _, p in ipairs(files[name]) do slurp(p) end end, N)
    print(string.format('  %-8s sample %7.1f us   floor %7.1f us', name, m * 1e6, fl * 1e6))
  end
  local all = time_median(function()
    collectors.cpu.sample(); collectors.memory.sample(); collectors.disk.sample(); collectors.network.sample()
  end, N)
  local all_floor = time_median(function()
    for _, n in ipairs({ 'cpu', 'memory', 'disk', 'network' }) do for _, p in ipairs(files[n]) do slurp(p) end end
  end, N)
  local a, b = collectors.cpu.sample(), collectors.cpu.sample()
  local r = time_median(function()
    collectors.cpu.rates(a, b)
  end, N)
  print(string.format('  all system collectors (cpu+memory+disk+network): %.3f ms median (floor %.3f ms); '
    .. 'target < 2 ms: %s', all * 1e3, all_floor * 1e3, all < 0.002 and 'met' or 'NOT met'))
  print(string.format('  cpu.rates(): %.1f us median', r * 1e6))

  -- ---------------------------------------------------------------- 2 ------
  local thread_cpu = sys.thread_cpu

  -- The peer: what a straightforward sampler does: every tick, list the
  -- threads and open/read/close each one's stat and wchan.
  local function naive(pid, hz, secs)
    local dir = '/proc/' .. pid .. '/task/'
    local dirent = require('posix.dirent')
    local t0, c0 = sys.now(), thread_cpu()
    local k, futex = 0, 0
    while sys.now() - t0 < secs do
      for _, tid in ipairs(dirent.dir(dir)) do
        if tid:byte(1) ~= 46 then
          local f = io.open(dir .. tid .. '/stat'); local st = f and f:read('*a'); if f then f:close() end
          local w = io.open(dir .. tid .. '/wchan'); local ws = w and w:read('*a'); if w then w:close() end
          if st and ws and ws:sub(1, 5) == 'futex' then futex = futex + 1 end
        end
      end
      k = k + 1
      local nxt = t0 + k / hz
      local now = sys.now()
      if nxt > now then sys.sleep(nxt - now) end
    end
    return 100 * (thread_cpu() - c0) / (sys.now() - t0)
  end

  local function with_workload(args, fn)
    local pid = assert(sys.spawn(args, { stdout = 'null' }))
    local n = tonumber(args[2])
    for _ = 1, 300 do
      local ok, list = pcall(require('posix.dirent').dir, '/proc/' .. pid .. '/task')
      if ok and #list >= n + 3 then break end
      sys.sleep(0.01)
    end
    sys.sleep(0.2)
    local ok, res = pcall(fn, pid)
    sys.kill(pid, 9); sys.wait(pid)
    assert(ok, res)
    return res
  end

  local wl = root .. '/build/workloads/threads100'
  print(string.format('thread-state sampler: %.0f s at 50 Hz on threads100 (own CPU time / wall time)', seconds))
  local default = with_workload({ wl, '100', 'sleep', '600' }, function(pid)
    local res = assert(measure_threads.sample(pid, { duration = seconds }))
    local peer = naive(pid, 50, seconds)
    return { res = res, peer = peer }
  end)
  local d = default.res
  print(string.format('  100 threads, 100 ms naps (default): %.2f%% of one CPU (%d ticks, %.0f us/tick); '
    .. 'naive open/read/close sampler %.2f%%; target < 2%%: %s',
    d.cost.cpu_pct, d.samples, d.cost.per_tick_us, default.peer, d.cost.cpu_pct < 2 and 'met' or 'NOT met'))
  local cases = { { 'sleep', '20', '20 ms naps' }, { 'sleep', '1000', '1 s naps' },
    { 'mutex', '100', 'one contended mutex' } }
  for _, case in ipairs(cases) do
    local res = with_workload({ wl, '100', case[1], '600', case[2] }, function(pid)
      return assert(measure_threads.sample(pid, { duration = seconds }))
    end)
    print(string.format('  100 threads, %-20s %.2f%% of one CPU (futex share %.2f)', case[3] .. ':',
      res.cost.cpu_pct, res.futex_share or -1))
  end
end)
