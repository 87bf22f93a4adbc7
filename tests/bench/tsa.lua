-- What thread-state accounting costs at ~20k context switches a second (a
-- paced pipe ping-pong between two threads, tsa_states pingpong), against
-- the usual ways to get the same answer, in the same run (medians of REPS):
--   tsa           our BPF programs' run time (kernel BPF stats, on all along)
--                 and the whole `perf_manual tsa` process's CPU
--   perf sched    `perf sched record` (its own CPU; the kernel side shows in
--                 the machine's busy time)
--   offcputime    BCC's offcputime-bpfcc, or, when BCC cannot build its
--                 programs on this kernel (no kernel headers), bpftrace doing
--                 the same aggregation (blocked time per kernel+user stack)
-- Every tool is also judged by one yardstick: the machine's busy CPU time
-- (/proc/stat) above the untraced baseline, as % of one CPU.
-- Run: tests/bench/run.sh tsa   (root; about a minute)
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local root = require('perf_manual._host').root
local REPS = tonumber(os.getenv('REPS') or '') or 3
-- long enough that the one-off start-up does not dominate the whole-process figure
local D = tonumber(os.getenv('DURATION') or '') or 20
local TARGET_CS = 20000

if sys.geteuid() ~= 0 then print('tsa: needs root (BPF); skipped') return end

package.path = root .. '/tests/?.lua;' .. package.path
local median = require('bench.common').median
local tsa = require('perf_manual.tracers.tsa')

local function stat()
  local s = util.readfile('/proc/stat')
  local f = {}
  for n in s:match('^cpu%s+([^\n]+)'):gmatch('%d+') do f[#f + 1] = tonumber(n) end
  -- user nice system idle iowait irq softirq steal
  local busy = f[1] + f[2] + f[3] + f[6] + f[7] + (f[8] or 0)
  return { busy = busy / sys.info().clk_tck, ctxt = tonumber(s:match('\nctxt (%d+)')), t = sys.now() }
end

local function rate(a, b) return (b.ctxt - a.ctxt) / (b.t - a.t) end
local function busy_pct(a, b) return (b.busy - a.busy) / (b.t - a.t) * 100 end

local function children_cpu()
  local r = sys.rusage('children')
  return r.utime + r.stime
end

local function start_workload(r)
  return assert(sys.spawn({ root .. '/build/workloads/tsa_states', 'pingpong', tostring(r) },
    { stdout = 'null', stderr = 'null' }))
end

local function stop(pid)
  sys.kill(pid, 9)
  sys.wait(pid)
end

-- pace the ping-pong so the machine sees ~TARGET_CS switches a second
local rounds, pid = 5000, nil
for _ = 1, 3 do
  pid = start_workload(rounds)
  sys.sleep(0.5)
  local a = stat(); sys.sleep(2); local b = stat()
  local r = rate(a, b)
  if math.abs(r - TARGET_CS) < TARGET_CS * 0.05 then break end
  stop(pid)
  rounds = math.floor(rounds * TARGET_CS / r)
  pid = nil
end
pid = pid or start_workload(rounds)
sys.sleep(0.5)

-- CPU seconds of the workload (its threads pay for the probes they fire)
local function wl_cpu()
  local st = util.readfile('/proc/' .. pid .. '/stat') or ''
  local rest = st:match('%) (.*)$') or ''
  local f = {}
  for x in rest:gmatch('%S+') do f[#f + 1] = x end
  return (tonumber(f[12] or 0) + tonumber(f[13] or 0)) / sys.info().clk_tck
end

-- BPF programs loaded now: id -> run time (ns), from bpftool
local function progs_now()
  local p = io.popen('bpftool prog show -j 2>/dev/null')
  local progs = util.json_decode(p:read('*a')) or {}
  p:close()
  local out = {}
  for _, pr in ipairs(progs) do out[pr.id] = pr.run_time_ns or 0 end
  return out
end

-- run time of the programs in `now` that were not in `before`
local function new_ns(before, now)
  local ns = 0
  for id, t in pairs(now) do if not before[id] then ns = ns + t end end
  return ns
end

local function window(fn)
  local s0, w0 = stat(), wl_cpu()
  local extra = fn()
  local s1, w1 = stat(), wl_cpu()
  extra = extra or {}
  extra.busy = busy_pct(s0, s1)
  extra.wl = (w1 - w0) / (s1.t - s0.t) * 100
  extra.cs = rate(s0, s1)
  return extra
end

local function spawn_and_wait(argv)
  local c0 = children_cpu()
  local p = assert(sys.spawn(argv, { stdout = 'null', stderr = 'null' }))
  sys.wait(p)
  return children_cpu() - c0
end

-- one offcputime-like peer: BCC if it runs, else bpftrace
local bcc = '/usr/sbin/offcputime-bpfcc'
local peer_name, peer_argv, peer_why
if util.readfile(bcc) then
  local log = os.tmpname()
  local ok = os.execute(string.format('timeout 20 %s -p %d 1 >/dev/null 2>%s', bcc, pid, log))
  local err = util.readfile(log) or ''
  os.remove(log)
  if ok == 0 or ok == true then
    peer_name, peer_argv = 'offcputime-bpfcc', { bcc, '-p', tostring(pid), tostring(D) }
  else
    peer_why = 'offcputime-bpfcc cannot run here: ' ..
      (err:match('chdir%((/lib/modules/[^)]+)%)') and 'BCC compiles its programs against kernel headers, and '
        .. err:match('chdir%((/lib/modules/[^)]+)%)') .. ' does not exist for this kernel'
        or (err:match('Exception: ([^\n]+)') or err:match('[^\n]+') or 'failed'))
  end
else
  peer_why = 'BCC (bpfcc-tools) is not installed'
end
local script
if not peer_name then
  script = os.tmpname()
  local f = assert(io.open(script, 'w'))
  -- what offcputime does: a task of the target that blocks keeps its
  -- kernel and user stacks; when it is switched in, its blocked time is
  -- added under them
  -- (kprobes are not available on every kernel, the tracepoint is; args->
  -- for the bpftrace of Debian 12)
  f:write(string.format([[
tracepoint:sched:sched_switch {
  if (pid == %d && args->prev_state != 0) { @start[tid] = nsecs; @ks[tid] = kstack; @us[tid] = ustack; }
  $s = @start[args->next_pid];
  if ($s) {
    @off[@ks[args->next_pid], @us[args->next_pid], args->next_comm] = sum((nsecs - $s) / 1000);
    delete(@start[args->next_pid]);
  }
}
]], pid))
  f:close()
  peer_name, peer_argv = 'bpftrace offcputime-like', { 'bpftrace', script }
end

local res = { base = {}, tsa = {}, tsa_cli = {}, perf = {}, peer = {} }
local perf_data = os.tmpname()
for _ = 1, REPS do
  res.base[#res.base + 1] = window(function() sys.sleep(D) end)
  res.tsa[#res.tsa + 1] = window(function()
    -- run time counted all along (no sampling windows): the exact cost
    local t = assert(tsa.start { pid = pid })
    local t0 = sys.now()
    sys.sleep(D)
    local q = t:quality()
    local books = t:stop()
    return { bpf = q.bpf_cpu_pct, ns_per_run = q.bpf_ns_per_run, runs = q.bpf_runs_sampled / (sys.now() - t0),
      threads = #books.threads }
  end)
  res.tsa_cli[#res.tsa_cli + 1] = window(function()
    local out = os.tmpname()
    local c0 = children_cpu()
    local p = assert(sys.spawn({ root .. '/bin/perf_manual', 'tsa', '--target', tostring(pid), '--duration',
      tostring(D), '--json' }, { stdout = out, stderr = 'null' }))
    sys.wait(p)
    local cpu = children_cpu() - c0
    local c = ((util.json_decode(util.readfile(out) or '') or {}).cost) or {}
    os.remove(out)
    -- its own split: the window's CPU is the cost of leaving it on
    return { cpu = cpu, on = c.window_cpu_pct, load = c.load_cpu_s, fin = c.end_cpu_s, own_bpf = c.bpf_cpu_pct }
  end)
  res.perf[#res.perf + 1] = window(function()
    return { cpu = spawn_and_wait({ 'perf', 'sched', 'record', '-o', perf_data, '--', 'sleep', tostring(D) }) }
  end)
  res.peer[#res.peer + 1] = window(function()
    if script then
      -- bpftrace: run time of its programs from the kernel's BPF stats
      local log = os.tmpname()
      local c0, before = children_cpu(), progs_now()
      local bp = assert(sys.spawn(peer_argv, { stdout = log, stderr = log }))
      for _ = 1, 500 do
        if (util.readfile(log) or ''):match('Attaching') then break end
        sys.sleep(0.02)
      end
      sys.sleep(0.2)
      local bpfm = require('perf_manual.bpf')
      bpfm.stats_enable(true)
      local n0, t0 = new_ns(before, progs_now()), sys.now()
      sys.sleep(D)
      local n1, t1 = new_ns(before, progs_now()), sys.now()
      bpfm.stats_enable(false)
      sys.kill(bp, 2)
      sys.wait(bp)
      os.remove(log)
      return { cpu = children_cpu() - c0, bpf = (n1 - n0) / ((t1 - t0) * 1e9) * 100 }
    end
    return { cpu = spawn_and_wait(peer_argv) }
  end)
end
local perf_size = (require('posix.sys.stat').stat(perf_data) or {}).st_size
os.remove(perf_data)
if script then os.remove(script) end
stop(pid)

local function med(list, key)
  local xs = {}
  for _, r in ipairs(list) do if r[key] then xs[#xs + 1] = r[key] end end
  return median(xs)
end

local base_busy, base_wl = med(res.base, 'busy'), med(res.base, 'wl')
print(string.format('workload: tsa_states pingpong %d rounds/s: %.0f context switches/s (untraced); workload %.1f%%, machine %.1f%% of one CPU',
  rounds, med(res.base, 'cs'), base_wl, base_busy))
if peer_why then print('peer: ' .. peer_why .. '; bpftrace does the offcputime aggregation instead') end
print('(% of one CPU; "workload +" is the CPU time the traced threads gained over the untraced run: the probes they fire)')
print(string.format('%-26s %9s %9s %11s %11s %10s', '', 'BPF run', 'tool CPU', 'workload +', 'machine +', 'switches/s'))
local function row(label, list, bpf_pct, tool, note)
  print(string.format('%-26s %9s %9s %11.2f %11.2f %10.0f  %s', label, bpf_pct and string.format('%.2f', bpf_pct) or '-',
    tool and string.format('%.2f', tool) or '-', med(list, 'wl') - base_wl, med(list, 'busy') - base_busy,
    med(list, 'cs'), note or ''))
end
local tsa_bpf = med(res.tsa, 'bpf')
row('tsa (tracer)', res.tsa, tsa_bpf, nil, string.format('%.0f ns/run, %.0f runs/s', med(res.tsa, 'ns_per_run'),
  med(res.tsa, 'runs')))
local tsa_cli = med(res.tsa_cli, 'cpu') / D * 100
row('perf_manual tsa (command)', res.tsa_cli, nil, tsa_cli, 'whole process: start-up, BPF load, /proc, report')
local tsa_on = med(res.tsa_cli, 'on')
if tsa_on then
  print(string.format('%-26s %9s %9.2f  while the window runs; one-off: %.3f s CPU to load, %.3f s to read '
    .. '(its own BPF estimate %.2f%%)', 'perf_manual tsa (left on)', '-', tsa_on, med(res.tsa_cli, 'load') or 0,
    med(res.tsa_cli, 'fin') or 0, med(res.tsa_cli, 'own_bpf') or 0))
end
local perf_cpu = med(res.perf, 'cpu') / D * 100
row('perf sched record', res.perf, nil, perf_cpu, util.fmt_bytes(perf_size or 0) .. ' of data')
local peer_cpu = med(res.peer, 'cpu') / D * 100
row(peer_name, res.peer, med(res.peer, 'bpf'), peer_cpu)
print(string.format('tsa BPF cost at %.0f switches/s: %.2f%% of one CPU (budget 1%%: %s)', med(res.tsa, 'cs'), tsa_bpf,
  tsa_bpf <= 1 and 'within' or 'OVER'))
if tsa_on then
  print(string.format('cost of leaving it on (BPF run time + the tool\'s CPU in the window): %.2f%% of one CPU '
    .. '(target 1%%: %s)', tsa_bpf + tsa_on, tsa_bpf + tsa_on <= 1 and 'met' or 'NOT met'))
end
local ours = tsa_bpf + tsa_cli
local function ratio(x) return x and ours > 0 and string.format('%.1fx', x / ours) or '-' end
print(string.format('cost ratios (BPF run time + tool CPU) to perf_manual tsa: perf sched record %s (tool CPU only, '
  .. 'its kernel side is in "workload +"), %s %s', ratio(perf_cpu), peer_name, ratio(peer_cpu + (med(res.peer, 'bpf') or 0))))
