-- Benchmark: what the lock-hold tracer adds to every uncontended
-- pthread_mutex_lock+unlock pair (lock_loop, which times its own pairs),
-- beside the same program alone and under bpftrace placing the same three
-- probes (lock entry and return, unlock) and summing hold time per lock.
-- All in one run, on the same machine.
--   tests/bench/run.sh lockhold   (takes the machine lock)
-- The tracer is started through its API (perf_manual.tracers.lockhold), as
-- `trace --events lockhold` and `use-check --lock-hold` start it, with no
-- session around it: no budget check detaches it at its call-rate limit
-- mid-run. Each tool attaches to the waiting program's pid, then a gate
-- file lets the timed loop start, so every pair of it is traced.
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root
package.path = root .. '/tests/?.lua;' .. package.path
local common = require('bench.common')
local lockhold = require('perf_manual.tracers.lockhold')
local memory = require('perf_manual.profilers.memory')
local util = require('perf_manual.util')

if sys.geteuid() ~= 0 then
  io.stderr:write('lockhold bench: needs root (uprobes)\n')
  os.exit(2)
end

local PAIRS = tonumber(os.getenv('PM_BENCH_PAIRS') or '') or 100000
local RUNS = tonumber(os.getenv('REPS') or '') or 3
local LOOP = root .. '/build/workloads/lock_loop'
local dir = common.tmpdir()

local function result(path)
  local t = util.readfile(path)
  os.remove(path)
  return t and tonumber(t:match('ns_per_pair ([%d.]+)'))
end

-- one run: the program waits at its gate; attach(pid) places the tool and
-- returns a function that removes it; the gate opens; ns per pair
local function once(i, pairs, attach)
  local res, gate = string.format('%s/res-%d', dir, i), string.format('%s/gate-%d', dir, i)
  os.remove(gate)
  local pid = assert(sys.spawn({ LOOP, tostring(pairs), res, gate }, { stdout = 'null', stderr = 'null' }))
  -- its C library mapped before a tracer looks for it
  for _ = 1, 200 do
    if memory.libc_path(util.readfile('/proc/' .. pid .. '/maps') or '') then break end
    sys.sleep(0.01)
  end
  local detach = attach and attach(pid)
  local f = assert(io.open(gate, 'w')); f:close()
  sys.wait(pid)
  local extra
  if detach then extra = detach() end
  os.remove(gate)
  return result(res), extra
end

local function measure(pairs, attach)
  local xs, extras = {}, {}
  for i = 1, RUNS do
    local ns, extra = once(i, pairs, attach)
    if ns then xs[#xs + 1] = ns end
    extras[#extras + 1] = extra
  end
  return common.median(xs), extras
end

local function ours(opts)
  return function(pid)
    local o = { pid = pid, max_call_rate = 1e12 }
    for k, v in pairs(opts or {}) do o[k] = v end
    local t = assert(lockhold.start(o))
    return function()
      local r = t:read()
      t:close()
      return r
    end
  end
end

local function bpftrace(pid)
  local libc = memory.libc_path(util.readfile('/proc/' .. pid .. '/maps') or '')
  local prog = string.format([==[
BEGIN { printf("bpftrace ready\n"); }
uprobe:%s:pthread_mutex_lock /pid == %d/ { @a[tid] = arg0; }
uretprobe:%s:pthread_mutex_lock /pid == %d/ { if (retval == 0) { @t[tid, @a[tid]] = nsecs; } delete(@a[tid]); }
uprobe:%s:pthread_mutex_unlock /pid == %d && @t[tid, arg0]/ {
  @held[arg0] = sum(nsecs - @t[tid, arg0]); @holds[arg0] = count(); delete(@t[tid, arg0]);
}
]==], libc, pid, libc, pid, libc, pid)
  local log = dir .. '/bt.log'
  local bt = assert(sys.spawn({ 'bpftrace', '-e', prog }, { stdout = log, stderr = log }))
  for _ = 1, 600 do
    if (util.readfile(log) or ''):find('bpftrace ready') then break end
    sys.sleep(0.02)
  end
  return function()
    sys.kill(bt, 2)
    sys.wait(bt)
    local holds = 0
    for n in (util.readfile(log) or ''):gmatch('@holds%[%d+%]: (%d+)') do holds = holds + tonumber(n) end
    os.remove(log)
    return { holds = holds }
  end
end

local rows = {}
local function row(name, ns, base, note)
  rows[#rows + 1] = { name = name, ns = ns, added = ns and base and ns - base, note = note }
end

local base = measure(PAIRS)
row('alone', base, base)
local function holds_note(extras, what)
  local hs = {}
  for _, r in ipairs(extras) do
    local n = 0
    for _, l in ipairs(r.locks or {}) do n = n + (l.count or 0) end
    hs[#hs + 1] = r.holds or n
  end
  return string.format('%s; holds counted %s', what, table.concat(hs, ', '))
end
local pm, e1 = measure(PAIRS, ours())
row('lockhold, every call', pm, base, holds_note(e1, 'holder stacks from CFI (default)'))
local pmfp, e2 = measure(PAIRS, ours { unwind = 'fp' })
row('lockhold, every call, --unwind fp', pmfp, base, holds_note(e2, 'frame-pointer holder stacks'))
local pm16, e3 = measure(PAIRS, ours { sample_every = 16 })
row('lockhold, 1 call in 16', pm16, base, holds_note(e3, 'weighted estimates'))
local bt
if common.sh('command -v bpftrace >/dev/null 2>&1') then
  local e4
  bt, e4 = measure(PAIRS, bpftrace)
  row('bpftrace, the same three probes', bt, base, holds_note(e4, 'hold sum per lock'))
else
  row('bpftrace, the same three probes', nil, nil, 'bpftrace not installed')
end
common.sh('rm -rf ' .. dir)

print(string.format('lock-hold tracer overhead on lock_loop (%d uncontended lock+unlock pairs, median of %d runs)',
  PAIRS, RUNS))
print(string.format('%-34s %12s %12s  %s', 'tool', 'ns/pair', 'added ns', 'note'))
for _, r in ipairs(rows) do
  print(string.format('%-34s %12s %12s  %s', r.name, r.ns and string.format('%.1f', r.ns) or 'n/a',
    r.added and string.format('%.1f', r.added) or '-', r.note or ''))
end
-- one line per figure, a number with its unit (what perf_manual regress records)
local function added(label, ns)
  if ns and base then print(string.format('%s added: %.1f ns per pair', label, ns - base)) end
end
added('lockhold (every call)', pm)
added('lockhold --unwind fp (every call)', pmfp)
added('lockhold (1 in 16)', pm16)
added('bpftrace lock-hold', bt)
if pm and bt and base then
  print(string.format('ratio bpftrace/perf_manual added cost: %.2f (goal: per-event cost <= bpftrace\'s: %s)',
    (bt - base) / (pm - base), pm <= bt and 'met' or 'missed'))
end
