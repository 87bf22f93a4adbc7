-- Benchmark of the syscall tracer against bpftrace, measured in the same run
-- on the same workload (tests/workloads/syscall_loop.c):
--   1. start -> probes attached (median), and a whole short session
--      (start, attach, detach, exit) of `perf_manual trace` vs a bpftrace one-liner;
--   2. added cost per getppid() over 2,000,000 calls: count only and
--      latency histogram, vs untraced and vs bpftrace;
--   3. peak RSS while tracing.
-- Run: tests/bench/run.sh trace   (takes the machine lock), or
--      flock /tmp/perf_manual-machine.lock bin/perf_manual --lua tests/bench/trace.lua
-- Env: PM_BENCH_ROUNDS (default 5), PM_BENCH_CALLS (default 2000000).
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local root = require('perf_manual._host').root
local syscall = require('perf_manual.tracers.syscall')

if sys.geteuid() ~= 0 then
  io.stderr:write('bench trace: needs root (BPF)\n')
  os.exit(2)
end

local ROUNDS = tonumber(os.getenv('PM_BENCH_ROUNDS')) or 5
local CALLS = tonumber(os.getenv('PM_BENCH_CALLS')) or 2000000
local PM = root .. '/bin/perf_manual'
local LOOP = root .. '/build/workloads/syscall_loop'
local have_bpftrace = os.execute('command -v bpftrace >/dev/null 2>&1') == 0

package.path = root .. '/tests/?.lua;' .. package.path
local median = require('bench.common').median

local function tmpfile()
  local p = os.tmpname()
  return p
end

-- syscall_loop waiting for SIGUSR1 (sleeping in sigwait)
local function start_loop(n, out)
  local pid = assert(sys.spawn({ LOOP, tostring(n), 'wait' }, { stdout = out }))
  for _ = 1, 1000 do
    if (util.readfile('/proc/' .. pid .. '/wchan') or ''):match('sigtimedwait') then return pid end
    sys.sleep(0.005)
  end
  sys.kill(pid, 9); sys.wait(pid)
  error('syscall_loop never got ready')
end

local function run_loop(pid, out)
  sys.kill(pid, 10)
  sys.wait(pid)
  local text = util.readfile(out) or ''
  local ns = tonumber(text:match('([%d%.]+) ns/call'))
  assert(ns, 'no figure from syscall_loop: ' .. text)
  return ns
end

-- Waits until `file` contains `pattern` (bpftrace's "Attaching" line).
local function wait_for(file, pattern, timeout)
  local t0 = sys.now()
  while sys.now() - t0 < timeout do
    if (util.readfile(file) or ''):match(pattern) then return true end
    sys.sleep(0.005)
  end
  return false
end

-- 2. cost per syscall ------------------------------------------------------------

local function ns_untraced()
  local out = tmpfile()
  local pid = start_loop(CALLS, out)
  local ns = run_loop(pid, out)
  os.remove(out)
  return ns
end

-- the real command, as a user runs it (run-time sampling windows included);
-- it ends by itself when the traced process exits
local function ns_cli(extra)
  local out, cout = tmpfile(), tmpfile()
  local pid = start_loop(CALLS, out)
  local argv = { PM, 'trace', '--events', 'syscalls', '--pid', tostring(pid), '--duration', '300', '--max-overhead', '10000' }
  for _, a in ipairs(extra) do argv[#argv + 1] = a end
  local cli = assert(sys.spawn(argv, { stdout = cout, stderr = 'null' }))
  assert(wait_for(cout, 'Hit Ctrl%-C', 30), 'trace did not start')
  local ns = run_loop(pid, out)
  sys.wait(cli)
  local text = util.readfile(cout) or ''
  os.remove(out); os.remove(cout)
  local seen = tonumber(text:match('\ngetppid%s+(%d+)'))
  assert(seen and seen >= CALLS, 'trace missed calls: ' .. tostring(seen) .. '\n' .. text)
  return ns
end

local function ns_ours(mode, stats)
  local out = tmpfile()
  local pid = start_loop(CALLS, out)
  local t = assert(syscall.start { pid = pid, mode = mode, stats = stats })
  local ns = run_loop(pid, out)
  local res = t:stop()
  os.remove(out)
  local seen
  for _, r in ipairs(res.syscalls) do if r.name == 'getppid' then seen = r.count end end
  assert(seen and seen >= CALLS, 'tracer missed calls: ' .. tostring(seen))
  return ns
end

local BT_COUNT = 'tracepoint:raw_syscalls:sys_enter /pid == %d/ { @[args->id] = count(); }'
local BT_HIST = 'tracepoint:raw_syscalls:sys_enter /pid == %d/ { @start[tid] = nsecs; } '
  .. 'tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @lat[args->id] = hist(nsecs - @start[tid]); delete(@start[tid]); }'

local function ns_bpftrace(prog)
  local out, btout = tmpfile(), tmpfile()
  local pid = start_loop(CALLS, out)
  local bt = assert(sys.spawn({ 'bpftrace', '-e', string.format(prog, pid) }, { stdout = btout, stderr = 'null' }))
  local ok = wait_for(btout, 'Attaching', 30)
  sys.sleep(0.5) -- bpftrace prints "Attaching" before it attaches
  local ns = ok and run_loop(pid, out) or nil
  if not ok then sys.kill(pid, 9); sys.wait(pid) end
  sys.kill(bt, 2)
  sys.wait(bt)
  os.remove(out); os.remove(btout)
  return ns
end

-- 1. start-up and whole session ---------------------------------------------------

-- A probe script that starts the count-only syscall tracer and says so.
local probe = os.tmpname() .. '.lua'
do
  local f = assert(io.open(probe, 'w'))
  f:write([[
-- as `trace` does: its loop opens the run-time sampling windows afterwards
require('perf_manual.tracers.base').stats_lazy = true
local t = assert(require('perf_manual.tracers.syscall').start { pid = tonumber(arg[1]), mode = 'count' })
io.stdout:write('attached\n'); io.stdout:flush()
t:stop()
]])
  f:close()
end

-- Reads cmd's output lines; returns the time from start to the first line
-- matching `pattern` and to the end, in ms.
local function timed(cmd, pattern)
  local t0 = sys.now()
  local p = assert(io.popen(cmd .. ' 2>&1', 'r'))
  local t_match
  for line in p:lines() do
    if not t_match and line:match(pattern) then t_match = sys.now() end
  end
  p:close()
  local t_end = sys.now()
  return t_match and (t_match - t0) * 1e3, (t_end - t0) * 1e3
end

local idle_pid = assert(sys.spawn({ 'sleep', '600' }))

local function startup()
  local ours_attach, ours_session, bt_attach, bt_session = {}, {}, {}, {}
  for _ = 1, math.max(ROUNDS * 2, 9) do
    local a = timed(string.format('%s --lua %s %d', PM, probe, idle_pid), '^attached')
    ours_attach[#ours_attach + 1] = a
    local _, s = timed(string.format('%s trace --events syscalls --count-only --pid %d --duration 0.001', PM, idle_pid), '^Tracing')
    ours_session[#ours_session + 1] = s
    if have_bpftrace then
      local ba, bs = timed(string.format("bpftrace -e 'tracepoint:raw_syscalls:sys_enter /pid == %d/ { @ = count(); } interval:ms:1 { exit(); }'", idle_pid), 'Attaching')
      bt_attach[#bt_attach + 1] = ba
      bt_session[#bt_session + 1] = bs
    end
  end
  return median(ours_attach), median(ours_session), median(bt_attach), median(bt_session)
end

-- 3. peak RSS -------------------------------------------------------------------

local function peak_rss_kb(argv)
  local pid = assert(sys.spawn(argv, { stdout = 'null', stderr = 'null' }))
  local peak, rss_max = 0, 0
  while sys.wait(pid, true) == 'running' do
    local s = util.readfile('/proc/' .. pid .. '/status') or ''
    local hwm, rss = tonumber(s:match('VmHWM:%s*(%d+)')), tonumber(s:match('VmRSS:%s*(%d+)'))
    if hwm and hwm > peak then peak = hwm end
    if rss and rss > rss_max then rss_max = rss end
    sys.sleep(0.01)
  end
  return peak, rss_max
end

-- run ---------------------------------------------------------------------------

io.write(string.format('trace benchmark: %d rounds, %d getppid() calls per run, %d CPUs, kernel %s\n',
  ROUNDS, CALLS, sys.info().ncpu, (util.readfile('/proc/sys/kernel/osrelease') or '?'):gsub('\n', '')))
if not have_bpftrace then io.write('bpftrace: not installed, peer figures not measured\n') end

local a, s, ba, bs = startup()

-- each traced run is paired with an untraced run just before it, and the
-- added cost is the median of the pairs' differences (the VM's speed drifts)
local cfgs = {
  { key = 'count', fn = function() return ns_cli({ '--count-only' }) end },
  { key = 'latency', fn = function() return ns_cli({}) end },
  { key = 'latency_nostats', fn = function() return ns_ours('latency', false) end },
  { key = 'latency_allstats', fn = function() return ns_ours('latency', true) end },
}
if have_bpftrace then
  cfgs[#cfgs + 1] = { key = 'bt_count', fn = function() return ns_bpftrace(BT_COUNT) end }
  cfgs[#cfgs + 1] = { key = 'bt_hist', fn = function() return ns_bpftrace(BT_HIST) end }
end
local diffs, base_ns = {}, {}
for _ = 1, ROUNDS do
  for _, c in ipairs(cfgs) do
    local u = ns_untraced()
    base_ns[#base_ns + 1] = u
    local ns = c.fn()
    if ns then
      diffs[c.key] = diffs[c.key] or {}
      table.insert(diffs[c.key], ns - u)
    end
  end
end
local med = { untraced = median(base_ns) }
local function added(k) return diffs[k] and median(diffs[k]) end

local rss_ours, rss_ours_now = peak_rss_kb({ PM, 'trace', '--events', 'syscalls', '--pid', tostring(idle_pid), '--duration', '1' })
local rss_both, rss_both_now = peak_rss_kb({ PM, 'trace', '--events', 'syscalls,sched', '--duration', '1' })
-- the same without the build's cut-down kernel BTF: libbpf parses all of it
local rss_full = peak_rss_kb({ 'env', 'PM_NO_MIN_BTF=1', PM, 'trace', '--events', 'syscalls,sched', '--duration', '1' })
local rss_all = peak_rss_kb({ PM, 'trace', '--events', 'syscalls,sched,io,lock,offcpu', '--duration', '1' })
local rss_bt
if have_bpftrace then
  rss_bt = peak_rss_kb({ 'bpftrace', '-e', string.format('tracepoint:raw_syscalls:sys_enter /pid == %d/ { @ = count(); } interval:s:1 { exit(); }', idle_pid) })
end
sys.kill(idle_pid, 9); sys.wait(idle_pid)
os.remove(probe)

local function f(v, fmt) return v and string.format(fmt or '%.1f', v) or 'not measured' end
local function ok(v, target) if not v then return '' end return v <= target and 'ok' or 'MISSED' end
local rows = {
  { 'start -> attached (ms, median)', f(a), f(ba), '< 10', ok(a, 10) },
  { 'whole session start..exit (ms, median)', f(s), f(bs), '< 30', ok(s, 30) },
  { 'getppid untraced (ns/call)', f(med.untraced), '', '', '' },
  { 'added, count only (ns/call)', f(added('count')), f(added('bt_count')), '<= 50', ok(added('count'), 50) },
  { 'added, latency histogram (ns/call)', f(added('latency')), f(added('bt_hist')), '<= 100', ok(added('latency'), 100) },
  { '  programs alone (no run-time sampling)', f(added('latency_nostats')), '', '', '' },
  { '  with BPF_ENABLE_STATS on all along', f(added('latency_allstats')), '', '', '' },
  { 'peak RSS, trace syscalls (MB)', f(rss_ours / 1024), f(rss_bt and rss_bt / 1024), '< 15', ok(rss_ours / 1024, 15) },
  { 'peak RSS, trace syscalls,sched (MB)', f(rss_both / 1024), '', '< 15', ok(rss_both / 1024, 15) },
  { '  same, full kernel BTF (PM_NO_MIN_BTF=1)', f(rss_full / 1024), '', '', '' },
  { 'peak RSS, all five tracers (MB)', f(rss_all / 1024), '', '< 15', ok(rss_all / 1024, 15) },
}
local w = { 0, 0, 0, 0 }
for _, r in ipairs(rows) do for i = 1, 4 do w[i] = math.max(w[i], #r[i]) end end
io.write(string.format('%-' .. w[1] .. 's  %' .. math.max(w[2], 12) .. 's  %' .. math.max(w[3], 12) .. 's  %s\n',
  'measure', 'perf_manual', 'bpftrace', 'target'))
for _, r in ipairs(rows) do
  io.write(string.format('%-' .. w[1] .. 's  %' .. math.max(w[2], 12) .. 's  %' .. math.max(w[3], 12) .. 's  %-6s %s\n',
    r[1], r[2], r[3], r[4], r[5]))
end
io.write(string.format('(VmRSS sampled every 10 ms, largest: %.1f MB syscalls, %.1f MB syscalls,sched; peak RSS is VmHWM;\n'
  .. ' with the full kernel BTF libbpf parses it for CO-RE during load; bpftrace "attached" = its "Attaching N probes" line)\n',
  rss_ours_now / 1024, rss_both_now / 1024))
if ba and bs then
  io.write(string.format('relative to bpftrace in this run: start %.1fx faster, whole session %.1fx faster (target 10x)\n',
    ba / a, bs / s))
end
-- This VM's syscalls cost several times the reference VM's (46.6 ns untraced,
-- bpftrace +89 ns count / +263 ns hist): compare through the peer's ratio.
if added('bt_count') and added('bt_hist') then
  io.write(string.format('relative to bpftrace in this run: count %.2fx, latency %.2fx of its added cost; '
    .. 'at the reference VM\'s bpftrace figures that is %.0f ns (target 50) and %.0f ns (target 100)\n',
    added('count') / added('bt_count'), added('latency') / added('bt_hist'),
    89 * added('count') / added('bt_count'), 263 * added('latency') / added('bt_hist')))
end
