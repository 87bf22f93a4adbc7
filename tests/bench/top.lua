-- What `perf_manual top` costs at a 1 s refresh, beside procps top and htop
-- in the same run: all of them run side by side for DURATION seconds (after
-- WARM seconds of start-up, which is not counted), and each one's own CPU
-- (utime + stime from /proc/PID/stat) is taken as % of one CPU.
--   perf_manual top --batch            (text frames to /dev/null; BPF tracers on)
--   perf_manual top --batch --no-bpf   (the /proc columns only)
--   perf_manual top (live screen)      in a tmux pane, 120x40
--   top -b -d 1                        (procps, text frames to /dev/null)
--   htop -d 10                         in a tmux pane, 120x40 (it needs a tty)
-- perf_manual's BPF programs run in the traced tasks' context, so their
-- time is not in its process: it is printed apart, from the kernel's BPF run
-- time statistics as `top --json` reports them (cost.bpf_cpu_pct).
-- Target: perf_manual top at most 1% of one CPU at a 1 s refresh.
-- Run: tests/bench/run.sh top   (root for the BPF columns; about 30 s)
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local root = require('perf_manual._host').root
local D = tonumber(os.getenv('DURATION') or '') or 20
local WARM = tonumber(os.getenv('WARM') or '') or 3

package.path = root .. '/tests/?.lua;' .. package.path
local common = require('bench.common')

local pm = root .. '/bin/perf_manual'
local have_tmux = common.sh('command -v tmux >/dev/null 2>&1')
local have_htop = common.sh('command -v htop >/dev/null 2>&1')
local bpf = sys.geteuid() == 0
local tmp = common.tmpdir()
local sessions = {}

local function cpu_s(pid)
  local st = util.readfile('/proc/' .. pid .. '/stat')
  local rest = st and st:match('%) (.*)$')
  if not rest then return nil end
  local f = {}
  for x in rest:gmatch('%S+') do f[#f + 1] = x end
  return (tonumber(f[12]) + tonumber(f[13])) / sys.info().clk_tck
end

local function spawn(argv, stdout)
  return assert(sys.spawn(argv, { stdout = stdout or 'null', stderr = 'null', stdin = 'null' }))
end

-- a command in a detached 120x40 tmux pane; its pid is the pane's (exec)
local function in_tmux(name, cmd)
  local s = 'pm_bench_top_' .. name .. '_' .. sys.getpid()
  assert(common.sh(string.format("tmux new-session -d -s %s -x 120 -y 40 'exec %s'", s, cmd)))
  sessions[#sessions + 1] = s
  local f = io.popen(string.format("tmux display -p -t %s '#{pane_pid}'", s))
  local pid = tonumber(f:read('*a'):match('%d+'))
  f:close()
  return pid
end

local tools = {}
local function add(name, pid, note) tools[#tools + 1] = { name = name, pid = pid, note = note } end

local json_out = tmp .. '/top.jsonl'
add('perf_manual top --batch', spawn({ pm, 'top', '--batch', '--json', '--interval', '1' }, json_out),
  bpf and 'BPF tracers on' or 'not root: /proc columns only')
add('perf_manual top --batch --no-bpf', spawn({ pm, 'top', '--batch', '--interval', '1', '--no-bpf' }))
add('top -b -d 1 (procps)', spawn({ 'top', '-b', '-d', '1' }))
if have_tmux then
  add('perf_manual top (live, tmux)', in_tmux('pm', pm .. ' top --interval 1'))
  if have_htop then add('htop -d 10 (tmux)', in_tmux('htop', 'htop -d 10')) end
end

local nprocs = 0
for _, n in ipairs(require('posix.dirent').dir('/proc')) do if n:match('^%d+$') then nprocs = nprocs + 1 end end

sys.sleep(WARM)
local t0 = sys.now()
for _, t in ipairs(tools) do t.c0 = cpu_s(t.pid) end
sys.sleep(D)
local t1 = sys.now()
for _, t in ipairs(tools) do
  local c1 = cpu_s(t.pid)
  t.pct = t.c0 and c1 and (c1 - t.c0) / (t1 - t0) * 100
end

for _, t in ipairs(tools) do
  if t.pid then sys.kill(t.pid, 15) end
end
for _, s in ipairs(sessions) do common.sh('tmux kill-session -t ' .. s .. ' 2>/dev/null') end
for _, t in ipairs(tools) do if t.pid then sys.wait(t.pid) end end

-- the BPF programs' run time, from the last frame perf_manual printed
local bpf_pct, bpf_parts
for line in (util.readfile(json_out) or ''):gmatch('[^\n]+') do
  local ok, doc = pcall(util.json_decode, line)
  if ok and doc and doc.cost then
    bpf_pct = doc.cost.bpf_cpu_pct
    bpf_parts = {}
    for _, b in ipairs(doc.cost.bpf or {}) do
      bpf_parts[#bpf_parts + 1] = string.format('%s %s', b.name, b.cpu_pct and string.format('%.3f%%', b.cpu_pct)
        or 'n/a')
    end
  end
end
common.sh('rm -rf ' .. tmp)

print(string.format('top: %d s at a 1 s refresh after %d s of start-up, %d processes, %d CPUs', D, WARM, nprocs,
  sys.info().ncpu))
local by = {}
for _, t in ipairs(tools) do
  by[t.name] = t.pct
  print(string.format('  %-34s %6s of one CPU%s', t.name, t.pct and string.format('%.2f%%', t.pct) or 'n/a',
    t.note and ('  (' .. t.note .. ')') or ''))
end
if bpf_pct then
  print(string.format('  %-34s %6.3f%% of one CPU  (%s; in the traced tasks, not in top\'s process)',
    'perf_manual BPF programs', bpf_pct, table.concat(bpf_parts, ', ')))
end
local ours = by['perf_manual top --batch']
local function ratio(peer)
  local p = by[peer]
  return (ours and p and p > 0) and string.format('%.2fx', ours / p) or 'n/a'
end
print(string.format('  ratio perf_manual top --batch / top -b: %s; / htop: %s; live screen / htop: %s',
  ratio('top -b -d 1 (procps)'), ratio('htop -d 10 (tmux)'),
  (by['perf_manual top (live, tmux)'] and by['htop -d 10 (tmux)'] and by['htop -d 10 (tmux)'] > 0)
    and string.format('%.2fx', by['perf_manual top (live, tmux)'] / by['htop -d 10 (tmux)']) or 'n/a'))
if ours then
  print(string.format('  target <= 1%% of one CPU (the process): %s (%.2f%%)%s', ours <= 1 and 'met' or 'NOT met', ours,
    bpf_pct and string.format('; with its BPF programs %.2f%%', ours + bpf_pct) or ''))
end
if not have_tmux then print('  (tmux is not installed: no live-screen or htop figures)') end
if have_tmux and not have_htop then print('  (htop is not installed: make deps installs it)') end
