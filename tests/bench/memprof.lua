-- Benchmark: what the memory profiler adds to every malloc/free pair of an
-- allocation-heavy program (alloc_loop, which times its own pairs), beside
-- the same program alone, under bpftrace doing the same accounting (uprobes
-- on malloc entry and return and on free, a user stack per allocation,
-- outstanding bytes by stack: what BCC memleak does; memleak-bpfcc itself
-- needs kernel headers this machine lacks), and under heaptrack (LD_PRELOAD,
-- a stack unwound per call). All in one run, on the same machine.
--   tests/bench/run.sh memprof   (takes the machine lock), or
--   flock /tmp/perf_manual-machine.lock bin/perf_manual --lua tests/bench/memprof.lua
-- Every tool attaches before the program starts (a command launched by the
-- tool), so every pair of the timed loop is traced.
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root
package.path = root .. '/tests/?.lua;' .. package.path
local common = require('bench.common')

if sys.geteuid() ~= 0 then
  io.stderr:write('memprof bench: needs root (uprobes)\n')
  os.exit(2)
end

local PAIRS = tonumber(os.getenv('PM_BENCH_PAIRS') or '') or 100000
local RUNS = 3
local PM = root .. '/bin/perf_manual'
local LOOP = root .. '/build/workloads/alloc_loop'
local LIBC = '/usr/lib/x86_64-linux-gnu/libc.so.6'
local dir = common.tmpdir()

local function result(path)
  local f = io.open(path)
  if not f then return nil end
  local t = f:read('*a'); f:close()
  os.remove(path)
  return tonumber(t:match('ns_per_pair ([%d.]+)'))
end

-- median ns per pair of `pairs` pairs run under the command line `wrap`
-- (%s = the program's argv)
local function measure(wrap, pairs)
  local xs = {}
  for i = 1, RUNS do
    local res = string.format('%s/res-%d', dir, i)
    local argv = string.format('%s %d %s', LOOP, pairs, res)
    local ok = common.sh(string.format(wrap, argv) .. ' >/dev/null 2>&1')
    local ns = result(res)
    if ok and ns then xs[#xs + 1] = ns end
  end
  return common.median(xs)
end

local bt_script = dir .. '/memleak.bt'
do
  local f = assert(io.open(bt_script, 'w'))
  f:write(string.format([==[
uprobe:%s:malloc /pid == cpid/ { @size[tid] = arg0; @stk[tid] = ustack; }
uretprobe:%s:malloc /@size[tid]/ {
  @asize[retval] = @size[tid]; @astk[retval] = @stk[tid];
  @bytes[@stk[tid]] = @bytes[@stk[tid]] + @size[tid];
  delete(@size[tid]); delete(@stk[tid]);
}
uprobe:%s:free /@asize[arg0]/ {
  @bytes[@astk[arg0]] = @bytes[@astk[arg0]] - @asize[arg0];
  delete(@asize[arg0]); delete(@astk[arg0]);
}
END { clear(@size); clear(@stk); clear(@asize); clear(@astk); clear(@bytes); }
]==], LIBC, LIBC, LIBC))
  f:close()
end

local rows = {}
local function row(name, ns, base, note)
  rows[#rows + 1] = { name = name, ns = ns, added = ns and base and ns - base, note = note }
end

local base = measure('%s', PAIRS)
row('alone', base, base)
local pm = measure(PM .. ' profile --memory --output ' .. dir .. '/prof --format folded -- %s', PAIRS)
row('perf_manual profile --memory', pm, base, 'every call recorded, stacks from CFI (defaults)')
-- the stack walk's share: the same with frame pointers (bpf_get_stackid)
local pmfp = measure(PM .. ' profile --memory --unwind fp --output ' .. dir .. '/prof --format folded -- %s', PAIRS)
row('perf_manual profile --memory --unwind fp', pmfp, base, 'every call recorded, frame-pointer stacks')
local pm64 = measure(PM .. ' profile --memory --sample-every 64 --output ' .. dir .. '/prof --format folded -- %s',
  PAIRS)
row('perf_manual profile --memory --sample-every 64', pm64, base, 'every 64th, weighted')
local bt
if common.sh('command -v bpftrace >/dev/null 2>&1') then
  bt = measure('bpftrace ' .. bt_script .. ' -c "%s"', PAIRS)
  row('bpftrace memleak-like', bt, base, 'same probes, ustack per allocation')
else
  row('bpftrace memleak-like', nil, nil, 'bpftrace not installed')
end
local ht
if common.sh('command -v heaptrack >/dev/null 2>&1') then
  -- a tenth of the pairs: it unwinds every call in the process
  ht = measure('heaptrack -o ' .. dir .. '/ht %s', math.floor(PAIRS / 10))
  row('heaptrack', ht, base, 'LD_PRELOAD, unwinds every call; ' .. math.floor(PAIRS / 10) .. ' pairs')
else
  row('heaptrack', nil, nil, 'not installed')
end
common.sh('rm -rf ' .. dir)

print(string.format('memory profiler overhead on alloc_loop (%d malloc/free pairs, median of %d runs)', PAIRS, RUNS))
print(string.format('%-48s %12s %12s  %s', 'tool', 'ns/pair', 'added ns', 'note'))
for _, r in ipairs(rows) do
  print(string.format('%-48s %12s %12s  %s', r.name, r.ns and string.format('%.1f', r.ns) or 'n/a',
    r.added and string.format('%.1f', r.added) or '-', r.note or ''))
end
local function ratio(a, b)
  return a and b and a > 0 and string.format('%.2f', b / a) or 'n/a'
end
-- one line per figure, a number with its unit (what perf_manual regress records)
local function added(label, ns)
  if ns and base then print(string.format('%s added: %.1f ns per pair', label, ns - base)) end
end
added('perf_manual --memory (every call)', pm)
added('perf_manual --memory --unwind fp (every call)', pmfp)
added('perf_manual --memory --sample-every 64', pm64)
added('bpftrace memleak-like', bt)
added('heaptrack', ht)
if pm and base then
  print('ratio bpftrace/perf_manual added cost: ' .. ratio(pm - base, bt and bt - base))
  print('ratio heaptrack/perf_manual added cost: ' .. ratio(pm - base, ht and ht - base))
end
