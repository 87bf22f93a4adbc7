-- What several benchmarks share: shell calls, a scratch directory, the
-- median of repeated runs, finding a FlameGraph script to compare with,
-- timing a command alone in a fresh process so its peak RSS is its own, and
-- running wrk.
--   package.path = root .. '/tests/?.lua;' .. package.path
--   local common = require('bench.common')
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root

local M = {}

--- Runs a shell command; true when it exited 0.
function M.sh(cmd)
  local ok = os.execute(cmd)
  return ok == 0 or ok == true
end

--- A new empty directory under the temporary directory (remove it with
--- M.sh('rm -rf ' .. dir)).
function M.tmpdir()
  local tmp = os.tmpname(); os.remove(tmp)
  assert(M.sh('mkdir -p ' .. tmp))
  return tmp
end

--- Median of a list of numbers (the mean of the two middle ones for an
--- even count), nil for an empty list; the list is left as it was.
function M.median(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  table.sort(t)
  if #t == 0 then return nil end
  if #t % 2 == 1 then return t[(#t + 1) / 2] end
  return (t[#t / 2] + t[#t / 2 + 1]) / 2
end

--- The FlameGraph script `name` (flamegraph.pl, stackcollapse-perf.pl) from
--- $FLAMEGRAPH_DIR, else from PATH, or nil when it is not installed.
function M.flamegraph_script(name)
  local fgdir = os.getenv('FLAMEGRAPH_DIR')
  if fgdir and M.sh('test -x ' .. fgdir .. '/' .. name) then return fgdir .. '/' .. name end
  if M.sh('command -v ' .. name .. ' >/dev/null 2>&1') then return name end
  return nil
end

--- The child side of M.measure: when the script runs as `--measure OUT
--- cmd...`, runs cmd with stdout to OUT (spawn options in `spawn_opts`, e.g.
--- stderr = 'null'), prints "how code seconds maxrss_kb" and exits. cmd is
--- this process's only child, so the peak RSS from rusage is cmd's own.
function M.measure_child(argv, spawn_opts)
  if argv[1] ~= '--measure' then return end
  local cmd = {}
  for i = 3, #argv do cmd[#cmd + 1] = argv[i] end
  local o = { stdout = argv[2] }
  for k, v in pairs(spawn_opts or {}) do o[k] = v end
  local t0 = sys.now()
  local pid = assert(sys.spawn(cmd, o))
  local how, code = sys.wait(pid)
  local t = sys.now() - t0
  io.write(string.format('%s %s %.4f %d\n', how, tostring(code), t, sys.rusage('children').maxrss_kb))
  os.exit(0)
end

--- Best of `runs` runs of argv (stdout to `out`, default /dev/null), each
--- through `script --measure` (a bench that calls M.measure_child first).
--- Returns wall seconds, peak RSS KB, exit status of the last run.
function M.measure(script, argv, out, runs)
  local best, rss, status = math.huge, 0, nil
  for _ = 1, runs do
    local q = {}
    for i, a in ipairs(argv) do q[i] = "'" .. a .. "'" end
    local p = io.popen(string.format('%s/bin/perf_manual --lua %s/%s --measure %s %s',
      root, root, script, out or '/dev/null', table.concat(q, ' ')))
    local line = p:read('*l') or ''
    p:close()
    local how, code, t, kb = line:match('^(%S+) (%S+) (%S+) (%S+)$')
    status = how == 'exited' and tonumber(code) or -1
    if tonumber(t) and tonumber(t) < best then best, rss = tonumber(t), tonumber(kb) end
  end
  return best, rss, status
end

--- Runs wrk against url for `seconds` (opts: threads, connections, header,
--- script) and reads its --latency report: { rps=, p50=, p90=, p99=
--- (seconds), errors= (non-2xx/3xx) }, and wrk's text.
function M.wrk(url, seconds, opts)
  opts = opts or {}
  local cmd = string.format("wrk -t%d -c%d -d%ds --latency%s%s '%s' 2>&1", opts.threads or 1, opts.connections or 10,
    seconds, opts.header and (" -H '" .. opts.header .. "'") or '', opts.script and (' -s ' .. opts.script) or '', url)
  local p = io.popen(cmd)
  local text = p:read('*a')
  p:close()
  local function dur(v)
    local n, u = v:match('([%d.]+)(%a+)')
    return tonumber(n) * ({ us = 1e-6, ms = 1e-3, s = 1, m = 60 })[u]
  end
  local r = { rps = tonumber(text:match('Requests/sec:%s+([%d.]+)')) }
  for _, q in ipairs({ '50', '90', '99' }) do
    local v = text:match('%s' .. q .. '%%%s+([%d.]+%a+)')
    r['p' .. q] = v and dur(v)
  end
  r.errors = tonumber(text:match('Non%-2xx or 3xx responses: (%d+)')) or 0
  return r, text
end

--- CPU time of every thread of pid so far, in ns (/proc/PID/task/*/schedstat).
function M.task_ns(pid)
  local total = 0
  local p = io.popen('cat /proc/' .. pid .. '/task/*/schedstat 2>/dev/null')
  for line in p:lines() do total = total + (tonumber(line:match('^(%d+)')) or 0) end
  p:close()
  return total
end

--- Run time and run count so far of the loaded BPF programs of one type,
--- or of a set of types ({tracing = true, ...}) (kernel.bpf_stats_enabled
--- must be on), by id.
function M.bpf_progs(ptype)
  local want = type(ptype) == 'table' and ptype or { [ptype] = true }
  local p = io.popen('bpftool prog show --json 2>/dev/null')
  local text = p:read('*a'); p:close()
  local list = require('perf_manual.util').json_decode(text) or {}
  local out = {}
  for _, prog in ipairs(list) do
    if want[prog.type] then out[prog.id] = { ns = prog.run_time_ns or 0, cnt = prog.run_cnt or 0 } end
  end
  return out
end

--- What ran between two M.bpf_progs readings: ns, runs.
function M.bpf_delta(a, b)
  local ns, cnt = 0, 0
  for id, v in pairs(b) do
    local u = a[id] or { ns = 0, cnt = 0 }
    ns = ns + v.ns - u.ns
    cnt = cnt + v.cnt - u.cnt
  end
  return ns, cnt
end

--- A tool's cost while it runs: starts argv, lets it warm up, then over a
--- steady window adds its threads' CPU time and the run time of BPF programs
--- of type opts.bpf_type (default perf_event); waits for it to exit. Returns
--- {name, share, proc_share, bpf_share (of one CPU), bpf_runs, ok, err}.
--- opts: warmup, window (s), stdout (a file), errdir.
function M.tool_cost(name, argv, opts)
  local util = require('perf_manual.util')
  local errf = (opts.errdir or '/tmp') .. '/' .. name:gsub('%W', '_') .. '.err'
  local pid = assert(sys.spawn(argv, { stdout = opts.stdout or 'null', stderr = errf }))
  sys.sleep(opts.warmup)
  local ptype = opts.bpf_type or 'perf_event'
  local b0, t0, w0 = M.bpf_progs(ptype), M.task_ns(pid), sys.now()
  sys.sleep(opts.window)
  local b1, t1, w1 = M.bpf_progs(ptype), M.task_ns(pid), sys.now()
  local how, code = sys.wait(pid)
  local wall = w1 - w0
  local bpf_ns, bpf_cnt = M.bpf_delta(b0, b1)
  local r = { name = name, proc_share = (t1 - t0) / 1e9 / wall, bpf_share = bpf_ns / 1e9 / wall,
              bpf_runs = bpf_cnt, ok = how == 'exited' and code == 0 }
  r.share = r.proc_share + r.bpf_share
  if not r.ok then r.err = util.readfile(errf) end
  os.remove(errf)
  return r
end

return M
