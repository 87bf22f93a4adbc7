-- Benchmark of `perf_manual probe` against bpftrace, measured in the same run
-- on the same program (tests/workloads/probe_calls.c, which times its own
-- loop of calls to pm_probe_work):
--   1. start -> attached: from starting the tool with `-- CMD` (bpftrace -c
--      CMD) to the command's first line of output (both launch the command
--      once their probes are in place), and the whole session start..exit;
--   2. added cost per probed call: count, log2 histogram of an argument,
--      user stacks, vs the same program untraced, each traced run paired
--      with an untraced run just before it (the median of the differences).
-- Run: tests/bench/run.sh probe   (takes the machine lock), or
--      flock /tmp/perf_manual-machine.lock bin/perf_manual --lua tests/bench/probe.lua
--   3. the same on a tracepoint (syscalls:sys_enter_getppid, counted by
--      thread name, on tests/workloads/syscall_loop.c), where the trap is
--      cheap and the programs' own cost shows.
--   The API's start -> attached too: `perf_manual --lua` running
--   probe.start, against bpftrace's "Attaching" line (printed before it attaches).
-- Env: PM_BENCH_ROUNDS (default 5), PM_BENCH_CALLS (default 1000000),
-- PM_BENCH_STARTUP_ONLY=1 (part 1 only).
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local root = require('perf_manual._host').root

if sys.geteuid() ~= 0 then
  io.stderr:write('bench probe: needs root (BPF)\n')
  os.exit(2)
end

package.path = root .. '/tests/?.lua;' .. package.path
local median = require('bench.common').median

local ROUNDS = tonumber(os.getenv('PM_BENCH_ROUNDS')) or 5
local CALLS = tonumber(os.getenv('PM_BENCH_CALLS')) or 1000000
local PM = root .. '/bin/perf_manual'
local W = root .. '/build/workloads/probe_calls'
local POINT = 'uprobe:' .. W .. ':pm_probe_work'
local have_bpftrace = os.execute('command -v bpftrace >/dev/null 2>&1') == 0

-- Runs argv, reading its output; ms from start to the first line matching
-- `pattern` (nil: no watching, so the bench does not compete with the run),
-- ms to its end, and the whole output.
local function timed(argv, pattern)
  local out = os.tmpname()
  local t0 = sys.now()
  local pid = assert(sys.spawn(argv, { stdout = out, stderr = out }))
  local t_match
  if pattern then
    while sys.wait(pid, true) == 'running' do
      if not t_match and (util.readfile(out) or ''):match(pattern) then t_match = sys.now() end
      sys.sleep(0.0005)
    end
  else
    sys.wait(pid)
  end
  local t_end = sys.now()
  local text = util.readfile(out) or ''
  if pattern and not t_match and text:match(pattern) then t_match = t_end end
  os.remove(out)
  return t_match and (t_match - t0) * 1e3, (t_end - t0) * 1e3, text
end

local OURS = {
  count = { '--count' },
  hist = { '--hist', 'arg0' },
  stacks = { '--stacks' }, -- user stacks walked from CFI (--unwind auto)
  stacks_fp = { '--stacks', '--unwind', 'fp' },
}
local BT = {
  count = 'uprobe:%s:pm_probe_work { @ = count(); }',
  hist = 'uprobe:%s:pm_probe_work { @ = hist(arg0); }',
  stacks = 'uprobe:%s:pm_probe_work { @[ustack, kstack] = count(); }',
}

local function ours(action, n)
  local argv = { PM, 'probe', POINT }
  for _, a in ipairs(OURS[action]) do argv[#argv + 1] = a end
  for _, a in ipairs { '--max-overhead', '10000', '--', W, tostring(n) } do argv[#argv + 1] = a end
  return argv
end

local function bpftrace(action, n)
  return { 'bpftrace', '-e', string.format(BT[action], W), '-c', W .. ' ' .. n }
end

-- the workloads' own figure: probe_calls "ns_per_call X", syscall_loop "X ns/call"
local function ns_per_call(text)
  return tonumber(text:match('ns_per_call ([%d.]+)') or text:match('([%d.]+) ns/call'))
end

-- a tracepoint, where the probe itself is cheap and the program's cost shows
local LOOP = root .. '/build/workloads/syscall_loop'
local TP = 'tracepoint:syscalls:sys_enter_getppid'
local function ours_tp(n)
  return { PM, 'probe', TP, '--by', 'comm', '--max-overhead', '10000', '--', LOOP, tostring(n) }
end
local function bpftrace_tp(n)
  return { 'bpftrace', '-e', TP .. ' { @[comm] = count(); }', '-c', LOOP .. ' ' .. n }
end

-- 1. start -> attached -----------------------------------------------------------

-- Reads argv's output through a pipe (blocking reads: nothing polls beside
-- the run); ms to the first line matching `pattern`, ms to the end, output.
local function piped(argv, pattern)
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local t0 = sys.now()
  local p = assert(io.popen(table.concat(quoted, ' ') .. ' 2>&1', 'r'))
  local t_match, lines = nil, {}
  for line in p:lines() do
    if not t_match and line:match(pattern) then t_match = sys.now() end
    lines[#lines + 1] = line
  end
  p:close()
  return t_match and (t_match - t0) * 1e3, (sys.now() - t0) * 1e3, table.concat(lines, '\n') .. '\n'
end

-- The API: a script that places the probe and says so (what a playbook's
-- inv:probe does before its window), against bpftrace's "Attaching N
-- probe" line, which it prints before it attaches.
local script = os.tmpname() .. '.lua'
do
  local f = assert(io.open(script, 'w'))
  f:write(string.format([[
local t = assert(require('perf_manual.probe').start { %q })
io.stdout:write('attached\n'); io.stdout:flush()
t:close()
]], POINT))
  f:close()
end

local function startup()
  local r = { ours = {}, ours_s = {}, bt = {}, bt_s = {}, api = {}, bt_line = {} }
  for _ = 1, math.max(ROUNDS * 2, 9) do
    r.api[#r.api + 1] = assert(piped({ PM, '--lua', script }, '^attached$'), 'the probe script did not attach')
    if have_bpftrace then
      r.bt_line[#r.bt_line + 1] = piped(bpftrace('count', 1), '^Attaching')
    end
    local a, s, text = piped(ours('count', 1), '^calls 1$')
    assert(a, 'probe: no output from the workload\n' .. text)
    assert(text:match('count: 1 events'), 'probe did not count the call\n' .. text)
    r.ours[#r.ours + 1], r.ours_s[#r.ours_s + 1] = a, s
    if have_bpftrace then
      local ba, bs, btext = piped(bpftrace('count', 1), '^calls 1$')
      assert(ba, 'bpftrace: no output from the workload\n' .. btext)
      r.bt[#r.bt + 1], r.bt_s[#r.bt_s + 1] = ba, bs
    end
  end
  os.remove(script)
  return median(r.ours), median(r.ours_s), median(r.bt), median(r.bt_s), median(r.api), median(r.bt_line)
end

-- 2. cost per call -----------------------------------------------------------------

local function run_ns(argv, want)
  local _, _, text = timed(argv)
  local ns = ns_per_call(text)
  assert(ns, 'no ns_per_call from ' .. table.concat(argv, ' ') .. '\n' .. text)
  if want then assert(text:match(want), 'missed calls: ' .. table.concat(argv, ' ') .. '\n' .. text:sub(-2000)) end
  return ns
end

io.write(string.format('probe benchmark: %d rounds, %d calls of pm_probe_work per run, %d CPUs, kernel %s\n',
  ROUNDS, CALLS, sys.info().ncpu, (util.readfile('/proc/sys/kernel/osrelease') or '?'):gsub('\n', '')))
if not have_bpftrace then io.write('bpftrace: not installed, peer figures not measured\n') end

local a, s, ba, bs, api, bline = startup()
if os.getenv('PM_BENCH_STARTUP_ONLY') == '1' then CALLS, ROUNDS = 0, 0 end

local diffs, base = {}, {}
local function add(key, v, u) diffs[key] = diffs[key] or {}; table.insert(diffs[key], v - u) end
local tp_base = {}
for _ = 1, ROUNDS do
  local lu = run_ns({ LOOP, tostring(CALLS) })
  tp_base[#tp_base + 1] = lu
  add('tp', run_ns(ours_tp(CALLS), 'syscall_loop%s+' .. CALLS), lu)
  if have_bpftrace then
    lu = run_ns({ LOOP, tostring(CALLS) })
    tp_base[#tp_base + 1] = lu
    add('bt_tp', run_ns(bpftrace_tp(CALLS)), lu)
  end
  for _, action in ipairs { 'count', 'hist', 'stacks', 'stacks_fp' } do
    local u = run_ns({ W, tostring(CALLS) })
    base[#base + 1] = u
    -- every call counted, or the figure is not the cost of counting them (a
    -- walked stack's first calls, before the launched program's tables, are
    -- a second row: the header's total, not one row's)
    local want = ': ' .. CALLS .. ' events'

    add(action, run_ns(ours(action, CALLS), want), u)
    if have_bpftrace and BT[action] then
      u = run_ns({ W, tostring(CALLS) })
      base[#base + 1] = u
      add('bt_' .. action, run_ns(bpftrace(action, CALLS)), u)
    end
  end
end
local function added(k) return diffs[k] and median(diffs[k]) end

local function f(v, fmt) return v and string.format(fmt or '%.1f', v) or 'not measured' end
local function ratio(x, y) return (x and y and y > 0) and string.format('%.1fx', x / y) or '' end
local rows = {
  { 'start -> attached, command running (ms, median)', f(a), f(ba), ratio(ba, a) .. ' faster' },
  { 'whole session start..exit (ms, median)', f(s), f(bs), ratio(bs, s) .. ' faster' },
  { 'start -> attached, API script / bpftrace "Attaching" line', f(api), f(bline), ratio(bline, api) .. ' faster' },
  { 'pm_probe_work untraced (ns/call)', f(median(base)), '', '' },
  { 'added, count (ns/call)', f(added('count')), f(added('bt_count')), ratio(added('count'), added('bt_count')) },
  { 'added, log2 hist of arg0 (ns/call)', f(added('hist')), f(added('bt_hist')),
    ratio(added('hist'), added('bt_hist')) },
  { 'added, user+kernel stacks (ns/call)', f(added('stacks')), f(added('bt_stacks')),
    ratio(added('stacks'), added('bt_stacks')) },
  { 'added, the same, --unwind fp (ns/call)', f(added('stacks_fp')), f(added('bt_stacks')),
    ratio(added('stacks_fp'), added('bt_stacks')) },
  { 'getppid() untraced (ns/call)', f(median(tp_base)), '', '' },
  { 'added, tracepoint count by comm (ns/call)', f(added('tp')), f(added('bt_tp')),
    ratio(added('tp'), added('bt_tp')) },
}
local w = { 0, 12, 12 }
for _, r in ipairs(rows) do for i = 1, 3 do w[i] = math.max(w[i], #r[i]) end end
io.write(string.format('%-' .. w[1] .. 's  %' .. w[2] .. 's  %' .. w[3] .. 's  %s\n', 'measure', 'perf_manual',
  'bpftrace', 'ours vs bpftrace'))
for _, r in ipairs(rows) do
  io.write(string.format('%-' .. w[1] .. 's  %' .. w[2] .. 's  %' .. w[3] .. 's  %s\n', r[1], r[2], r[3], r[4]))
end
io.write('(cost per call = the workload\'s own ns/call traced minus untraced, paired runs, median; a uprobe\'s\n'
  .. ' trap into the kernel is most of it for both tools. Ours includes its run-time sampling windows.)\n')
if a and ba then
  io.write(string.format('goal: attach >= 10x faster: %s; cost per event <= bpftrace\'s: count %s, hist %s, '
    .. 'stacks %s, tracepoint %s\n',
    ba / a >= 10 and 'met' or 'MISSED',
    added('count') and added('bt_count') and (added('count') <= added('bt_count') and 'met' or 'MISSED') or '?',
    added('hist') and added('bt_hist') and (added('hist') <= added('bt_hist') and 'met' or 'MISSED') or '?',
    added('stacks') and added('bt_stacks') and (added('stacks') <= added('bt_stacks') and 'met' or 'MISSED') or '?',
    added('tp') and added('bt_tp') and (added('tp') <= added('bt_tp') and 'met' or 'MISSED') or '?'))
end
