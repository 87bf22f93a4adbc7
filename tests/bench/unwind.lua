-- Benchmark: user stacks without frame pointers. On a busy system (every
-- CPU runs nofp_tree, built -O2 -fomit-frame-pointer, calling through
-- glibc), at 99 Hz on every CPU:
--   - cost while sampling of `profile --unwind fp` (the kernel's frame-pointer
--     walk), `--unwind auto` (the DWARF walker) and `perf record --call-graph
--     dwarf` (8 KiB of stack copied per sample), and perf's `perf script`
--     time afterwards (where its unwinding happens);
--   - completeness: the share of nofp_tree's samples whose stack reaches _start;
--   - stop -> SVG of the auto profile, and the tables it built;
--   - the BPF cost per event of the off-CPU profiler (pingpong) and of the
--     lock tracer's waiter stacks (nofp_convoy), frame pointers against CFI.
--   tests/bench/run.sh unwind
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local root = require('perf_manual._host').root
package.path = root .. '/tests/?.lua;' .. package.path
local common = require('bench.common')

local WINDOW = tonumber(os.getenv('PM_BENCH_WINDOW') or '') or 10
local WARMUP = 2

if sys.geteuid() ~= 0 then
  io.stderr:write('unwind bench: needs root (BPF, perf record of every CPU)\n')
  os.exit(2)
end

local old_stats = util.trim(util.readfile('/proc/sys/kernel/bpf_stats_enabled') or '0')
local function write_stat(v)
  local f = io.open('/proc/sys/kernel/bpf_stats_enabled', 'w'); if f then f:write(v); f:close() end
end
write_stat('1')

local ncpu = sys.info().ncpu
local tmp = common.tmpdir()
local pm = root .. '/bin/perf_manual'
local capture = WARMUP + WINDOW + 1

-- share of nofp_tree's samples reaching _start, from folded text
local function folded_reach(text)
  local total, hit = 0, 0
  for line in text:gmatch('[^\n]+') do
    local stack, n = line:match('^(.*) (%d+)$')
    if stack and stack:match('^nofp_tree;') then
      total = total + n
      if stack:find(';_start;', 1, true) then hit = hit + n end
    end
  end
  return total, hit
end

local function perf_reach(text)
  local total, hit = 0, 0
  for block in (text .. '\n\n'):gmatch('(.-)\n\n') do
    if block:match('^%s*nofp_tree') then
      total = total + 1
      if block:find(' _start\n', 1, true) or block:match(' _start$') then hit = hit + 1 end
    end
  end
  return total, hit
end

-- BPF ns per run of the given program types over `secs` while fn's tool runs
local function per_event(types, argv, secs)
  local pid = assert(sys.spawn(argv, { stdout = 'null', stderr = 'null' }))
  sys.sleep(1.5)
  local b0 = common.bpf_progs(types)
  sys.sleep(secs)
  local b1 = common.bpf_progs(types)
  sys.wait(pid)
  local ns, cnt = common.bpf_delta(b0, b1)
  return cnt > 0 and ns / cnt or nil, cnt
end

local results, reach, extra = {}, {}, {}
local ok, err = pcall(function()
  local burners = {}
  for i = 1, ncpu do
    burners[i] = assert(sys.spawn({ root .. '/build/workloads/nofp_tree', tostring(capture * 4 + 30) },
      { stdout = 'null', stderr = 'null' }))
  end
  local bok, berr = pcall(function()
    for _, mode in ipairs({ 'fp', 'auto' }) do
      local dir = tmp .. '/pm_' .. mode
      results[#results + 1] = common.tool_cost('profile --unwind ' .. mode, { pm, 'profile', '--all', '--duration',
        tostring(capture), '--freq', '99', '--unwind', mode, '--output', dir, '--json' },
        { warmup = WARMUP, window = WINDOW, stdout = tmp .. '/pm_' .. mode .. '.json', errdir = tmp })
      reach[mode] = { folded_reach(util.readfile(dir .. '/profile.folded') or '') }
    end
    results[#results + 1] = common.tool_cost('perf --call-graph dwarf', { 'perf', 'record', '-q', '-F', '99', '-a',
      '--call-graph', 'dwarf', '-o', tmp .. '/perf.data', '--', 'sleep', tostring(capture) },
      { warmup = WARMUP, window = WINDOW, errdir = tmp })
    local t0 = sys.now()
    local text = io.popen('perf script --no-inline -F comm,ip,sym -i ' .. tmp .. '/perf.data 2>/dev/null'):read('*a')
    extra.perf_script_s = sys.now() - t0
    extra.perf_data_mb = (tonumber(io.popen('stat -c %s ' .. tmp .. '/perf.data'):read('*l')) or 0) / 1048576
    reach.perf = { perf_reach(text) }
  end)
  for _, b in ipairs(burners) do sys.kill(b, 9) sys.wait(b) end
  assert(bok, berr)

  -- per event: off-CPU (sched_switch) on pingpong, lock waits on a convoy
  local pp = assert(sys.spawn({ root .. '/build/workloads/pingpong', '100000000' }, { stdout = 'null' }))
  local sched = { tracing = true, raw_tracepoint = true }
  for _, mode in ipairs({ 'fp', 'auto' }) do
    extra['offcpu_' .. mode] = { per_event(sched, { pm, 'profile', '--off-cpu', '--pid', tostring(pp), '--duration',
      '5', '--unwind', mode, '--output', tmp .. '/off_' .. mode }, 3) }
  end
  sys.kill(pp, 9) sys.wait(pp)
  local gate = tmp .. '/gate'
  assert(common.sh('touch ' .. gate))
  local lockt = { tracepoint = true, raw_tracepoint = true, tracing = true }
  for _, mode in ipairs({ 'fp', 'auto' }) do
    local cv = assert(sys.spawn({ root .. '/build/workloads/nofp_convoy', '4', '8', gate, '0' }, { stdout = 'null' }))
    extra['lock_' .. mode] = { per_event(lockt, { pm, 'lock-contention', '--pid', tostring(cv), '--duration', '5',
      '--unwind', mode, '--max-overhead', '1000' }, 3) }
    sys.kill(cv, 9) sys.wait(cv)
  end

  -- peak RSS while profiling a process with many mapped objects: python3
  -- loading 60 of the system's libraries through ctypes
  if common.sh('command -v python3 >/dev/null && test -x /usr/bin/time') then
    local py = assert(sys.spawn({ 'python3', '-c', [[
import ctypes, glob, time
n = 0
for l in sorted(glob.glob('/usr/lib/x86_64-linux-gnu/*.so.*')):
    try:
        ctypes.CDLL(l); n += 1
    except OSError:
        pass
    if n >= 60:
        break
t = time.time()
while time.time() - t < 30:
    pass
]] }, { stdout = 'null', stderr = 'null' }))
    sys.sleep(4)
    local maps = util.readfile('/proc/' .. py .. '/maps') or ''
    local objs = {}
    for path in maps:gmatch(' r%-xp [^\n]- (/[^\n]+)') do objs[path] = true end
    local n = 0
    for _ in pairs(objs) do n = n + 1 end
    local p = io.popen(string.format('/usr/bin/time -f %%M %s profile --pid %d --duration 4 --json --output %s/rss '
      .. '2>&1 >%s/rss.json', pm, py, tmp, tmp))
    local rss = tonumber((p:read('*a') or ''):match('(%d+)%s*$'))
    p:close()
    sys.kill(py, 9) sys.wait(py)
    local j = util.json_decode(util.readfile(tmp .. '/rss.json') or '') or {}
    local q = j.quality and j.quality.unwind or {}
    extra.rss = { kb = rss, objects = n, rows = q.tables and q.tables.rows, root = q.ends and q.samples and
      q.samples > 0 and (q.ends.root or 0) / q.samples }
  end
end)
write_stat(old_stats)
if not ok then common.sh('rm -rf ' .. tmp) error(err, 0) end

print(string.format('profiler cost at 99 Hz on all %d CPUs, each busy with nofp_tree (-O2 -fomit-frame-pointer), '
  .. '%ds steady window', ncpu, WINDOW))
print('(tool threads on CPU + its BPF programs\' run time, as a share of one CPU)')
local auto
for _, r in ipairs(results) do
  if r.name == 'profile --unwind auto' then auto = r end
end
for _, r in ipairs(results) do
  print(string.format('  %-26s %6.2f%%  (process %.2f%%, BPF %.2f%% over %d runs, %.1f us/run)%s%s', r.name,
    r.share * 100, r.proc_share * 100, r.bpf_share * 100, r.bpf_runs,
    r.bpf_runs > 0 and r.bpf_share * WINDOW / r.bpf_runs * 1e6 or 0,
    r ~= auto and auto and auto.share > 0 and string.format('  = %.2fx --unwind auto', r.share / auto.share) or '',
    r.ok and '' or '  FAILED: ' .. tostring(r.err):gsub('\n', ' ')))
end
print(string.format('  perf script afterwards: %.2f s for %.0f MB of perf.data (the unwinding perf defers)',
  extra.perf_script_s or 0, extra.perf_data_mb or 0))
print(string.format('target: --unwind auto <= 0.5%% of one CPU: %s', auto and auto.ok and
  (auto.share <= 0.005 and 'met' or 'NOT met') or 'not measured'))
print('nofp_tree samples whose stack reaches _start:')
for _, k in ipairs({ { 'fp', 'profile --unwind fp' }, { 'auto', 'profile --unwind auto' },
  { 'perf', 'perf --call-graph dwarf' } }) do
  local t, h = unpack(reach[k[1]] or { 0, 0 })
  print(string.format('  %-26s %s', k[2], t > 0 and string.format('%.1f%% of %d', 100 * h / t, t) or 'no samples'))
end
local j = util.json_decode(util.readfile(tmp .. '/pm_auto.json') or '') or {}
if j.stop_to_svg_s then
  print(string.format('stop -> SVG written (auto): %.0f ms for a %.0f s capture of %d samples; target < 300 ms: %s',
    j.stop_to_svg_s * 1000, j.duration_s or 0, j.total or 0, j.stop_to_svg_s < 0.3 and 'met' or 'NOT met'))
end
local tb = j.quality and j.quality.unwind and j.quality.unwind.tables
if tb then
  print(string.format('tables: %d objects (%d compiled, %d from the cache), %d rows, %d processes, %.0f ms in all',
    tb.objects, tb.compiled, tb.cached, tb.rows, tb.processes, tb.build_s * 1000))
end
print('BPF cost per event, frame pointers against the DWARF walker:')
for _, k in ipairs({ { 'offcpu', 'off-CPU profile (sched_switch, pingpong)' },
  { 'lock', 'lock waiters with stacks (nofp_convoy)' } }) do
  local fp, auto_ = extra[k[1] .. '_fp'], extra[k[1] .. '_auto']
  if fp and auto_ and fp[1] and auto_[1] then
    print(string.format('  %-42s fp %.2f us, auto %.2f us per run (%d / %d runs) = %.2fx; target <= 2x: %s', k[2],
      fp[1] / 1e3, auto_[1] / 1e3, fp[2], auto_[2], auto_[1] / fp[1], auto_[1] / fp[1] <= 2 and 'met' or 'NOT met'))
  else
    print('  ' .. k[2] .. ': not measured')
  end
end
if extra.rss and extra.rss.kb then
  print(string.format('peak RSS profiling a process with %d mapped objects: %.1f MB (target < 64 MB: %s); %s rows, '
    .. 'stacks reaching the root %.1f%%', extra.rss.objects, extra.rss.kb / 1024, extra.rss.kb < 65536 and 'met' or
    'NOT met', tostring(extra.rss.rows), (extra.rss.root or 0) * 100))
else
  print('peak RSS with many mapped objects: not measured (needs python3 and /usr/bin/time)')
end
common.sh('rm -rf ' .. tmp)
