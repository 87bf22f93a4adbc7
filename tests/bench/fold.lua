-- Benchmark: folding `perf script` text (`perf_manual fold`) on a ~100 MB
-- input made in the run — a `perf record -a -g` capture of the calltree
-- workload, repeated with shifted pids — against a peer measured on the same
-- file: stackcollapse-perf.pl when it is installed ($FLAMEGRAPH_DIR or PATH),
-- else a plain awk folder as a stand-in. Target: >= 630 MB/s (20x the 31.6
-- MB/s the Perl script did on this kind of machine).
--   tests/bench/run.sh fold      (or bin/perf_manual --lua tests/bench/fold.lua)
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root
local MB = tonumber(os.getenv('PM_BENCH_FOLD_MB') or '') or 100
local RUNS = 3

package.path = root .. '/tests/?.lua;' .. package.path
local common = require('bench.common')
local sh = common.sh

-- `--measure OUT cmd...` (internal): runs cmd with stdout to OUT in a fresh
-- process whose only child is cmd, so its peak RSS is cmd's own
common.measure_child(arg)

-- best of RUNS: wall seconds, peak RSS KB, exit status of the last run
local function measure(argv, out)
  return common.measure('tests/bench/fold.lua', argv, out, RUNS)
end

if sys.geteuid() ~= 0 then
  io.stderr:write('fold bench: needs root (perf record -a)\n')
  os.exit(2)
end
local tmp = common.tmpdir()
local function cleanup() sh('rm -rf ' .. tmp) end

local ok, err = xpcall(function()
  -- 1. a real capture of a busy workload
  io.write('capturing: perf record -a -g -F 997 of calltree burn for 3 s ...\n')
  assert(sh(string.format('perf record -q -a -g -F 997 -o %s/p.data -- %s/build/workloads/calltree burn 3 >/dev/null 2>&1',
    tmp, root)), 'perf record failed')
  assert(sh(string.format('perf script -i %s/p.data > %s/base.txt 2>/dev/null', tmp, tmp)), 'perf script failed')
  local base = assert(io.open(tmp .. '/base.txt', 'rb')):read('*a')
  assert(#base > 10000, 'the capture is too small: ' .. #base .. ' bytes')

  -- 2. repeated to ~MB, pids shifted per copy so --pid sees more stacks
  local out = assert(io.open(tmp .. '/big.txt', 'wb'))
  local size, copies = 0, 0
  while size < MB * 1e6 do
    copies = copies + 1
    local shift = copies * 7
    local copy = base:gsub('\n([^\t\n][^\n]-) +(%d+)(/?)(%d*) ', function(comm, a, slash, b)
      return '\n' .. comm .. ' ' .. (tonumber(a) + shift) .. slash .. (b ~= '' and tostring(tonumber(b) + shift) or '') .. ' '
    end)
    out:write(copy)
    size = size + #copy
  end
  out:close()
  io.write(string.format('input: %.1f MB (%d copies of a %.1f MB capture)\n', size / 1e6, copies, #base / 1e6))
  local file = tmp .. '/big.txt'
  sh('cat ' .. file .. ' > /dev/null') -- warm the page cache for everyone

  -- 3. perf_manual fold
  local rows = {}
  for _, opts in ipairs({ {}, { '--all', '--pid' } }) do
    local argv = { root .. '/bin/perf_manual', 'fold' }
    for _, o in ipairs(opts) do argv[#argv + 1] = o end
    argv[#argv + 1] = file
    local t, rss, st = measure(argv, tmp .. '/ours.folded')
    assert(st == 0, 'perf_manual fold failed')
    rows[#rows + 1] = { 'perf_manual fold ' .. table.concat(opts, ' '), t, rss }
  end

  -- 4. the peer
  local peer_name, peer_argv
  local script = common.flamegraph_script('stackcollapse-perf.pl')
  if script then
    peer_name, peer_argv = 'stackcollapse-perf.pl', { script, file }
  else
    -- stand-in: the minimum a script must do (comm root, frames reversed,
    -- offsets stripped, counts summed); far less than stackcollapse does
    local awk = [[
/^#/ { next }
/^[^ \t]/ { comm = $1; n = 0; next }
/^$/ { if (comm != "") { s = comm; for (i = n; i >= 1; i--) s = s ";" f[i]; c[s]++ } comm = ""; next }
{ sym = $2; sub(/\+0x[0-9a-f]+$/, "", sym); f[++n] = sym }
END { for (s in c) print s, c[s] }]]
    local af = assert(io.open(tmp .. '/fold.awk', 'w')); af:write(awk); af:close()
    peer_name, peer_argv = 'awk stand-in (stackcollapse-perf.pl not installed)', { 'awk', '-f', tmp .. '/fold.awk', file }
  end
  local pt, prss, pst = measure(peer_argv, tmp .. '/peer.folded')
  rows[#rows + 1] = { peer_name, pst == 0 and pt or nil, prss }

  io.write(string.format('\n%-58s %9s %10s %9s\n', 'folder', 'seconds', 'MB/s', 'RSS MB'))
  for _, r in ipairs(rows) do
    if r[2] then
      io.write(string.format('%-58s %9.3f %10.1f %9.1f\n', r[1], r[2], size / 1e6 / r[2], r[3] / 1024))
    else
      io.write(string.format('%-58s %9s %10s %9s\n', r[1], 'failed', '-', '-'))
    end
  end
  local ours = size / 1e6 / rows[1][2]
  if rows[3][2] then io.write(string.format('\nperf_manual fold / peer: %.1fx\n', rows[3][2] / rows[1][2])) end
  io.write(string.format('reference (issue 4): stackcollapse-perf.pl 31.6 MB/s on this kind of machine: %.1fx\n', ours / 31.6))
  io.write(string.format('target >= 630 MB/s: %s (%.0f MB/s, best of %d)\n', ours >= 630 and 'met' or 'NOT met', ours, RUNS))
end, debug.traceback)
cleanup()
if not ok then io.stderr:write('fold bench: ', tostring(err), '\n'); os.exit(1) end
