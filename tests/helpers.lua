-- Helpers for specs and e2e tests (loaded by tests/spec/preload.lua).
local M = {}
local host = require('perf_manual._host')
M.root = host.root

--- Contents of tests/fixtures/<rel>.
function M.fixture(rel)
  local f = assert(io.open(M.root .. '/tests/fixtures/' .. rel, 'rb'))
  local s = f:read('*a'); f:close()
  return s
end

--- Path of ../shared (conformance data), read at test time, never copied.
function M.shared(rel)
  return M.root .. '/../shared/' .. rel
end

-- busted's pending() lives in the spec file's environment, not in _G (nor
-- in this module's): take it from the spec function `level` calls up.
local function spec_pending(level)
  return getfenv(level).pending or error('no pending() in the calling spec', level)
end

--- Path of ../shared/<rel> when it exists there, else nil and the reason.
--- ../shared sits beside this project's own CI checkout only, so a plain
--- clone skips what needs it.
function M.shared_if_present(rel)
  local path = M.shared(rel)
  local f = io.open(path, 'r')
  if f then f:close(); return path end
  return nil, path .. ' is not there (it exists only beside the project\'s own checkout)'
end

--- Marks the running test pending with why, or fails it when the env
--- variable env_name is 1 (CI sets it, so a skip there is a failure).
function M.skip_unless_required(env_name, why)
  if os.getenv(env_name) == '1' then error(why .. ' (' .. env_name .. '=1: a skip is a failure)', 2) end
  spec_pending(3)(why)
end

--- For tests that need root/BPF: returns true when they may run; otherwise
--- marks the test pending with the reason, or fails it when PM_REQUIRE_BPF=1.
function M.need_root(reason)
  local sys = require('perf_manual._c.sys')
  if sys.geteuid() == 0 then return true end
  local why = 'needs root: ' .. (reason or 'BPF and perf_event_open')
  if os.getenv('PM_REQUIRE_BPF') == '1' then error(why .. ' (PM_REQUIRE_BPF=1: a skip is a failure)', 2) end
  spec_pending(3)(why)
  return false
end

--- Runs bin/perf_manual with args (a string, already shell-quoted); returns
--- stdout, stderr, exit status.
function M.pm(args, env)
  return M.pm_at(M.root, args, env)
end

--- M.pm for the copy of the tool under root (see M.readable_copy).
function M.pm_at(root, args, env)
  return M.sh(string.format('%s %s/bin/perf_manual %s', env or '', root, args))
end

--- Runs a shell command line (a pipeline of the tool, say); returns
--- stdout, stderr (of the whole line), exit status.
function M.sh(line)
  local out, err = os.tmpname(), os.tmpname()
  local cmd = string.format('{ %s; } >%s 2>%s', line, out, err)
  local ok, _, code = os.execute(cmd)
  -- LuaJIT 5.1: os.execute returns the raw wait status
  local status = type(ok) == 'number' and math.floor(ok / 256) or code
  local function slurp(p) local f = io.open(p); local s = f:read('*a'); f:close(); os.remove(p); return s end
  return slurp(out), slurp(err), status
end

--- A world-readable copy of the tool (binary, lib/, playbooks/, templates/:
--- what runtime/main.c looks for beside the binary) and of the named
--- workloads (under build/workloads/), for tests that run it as an
--- unprivileged user: the checkout itself may sit in a directory only root
--- can enter. Returns the copy's root and a function that removes it.
local copies = 0
function M.readable_copy(workloads)
  local sys = require('perf_manual._c.sys')
  copies = copies + 1
  local dir = string.format('/tmp/pm-readable-%d-%d', sys.getpid(), copies)
  local cmds = {
    string.format("mkdir -p '%s/bin' '%s/build/workloads'", dir, dir),
    string.format("cp '%s/bin/perf_manual' '%s/bin/'", M.root, dir),
    string.format("cp -r '%s/lib' '%s/playbooks' '%s/templates' '%s/'", M.root, M.root, M.root, dir),
  }
  for _, w in ipairs(workloads or {}) do
    cmds[#cmds + 1] = string.format("cp '%s' '%s/build/workloads/'", M.workload(w), dir)
  end
  cmds[#cmds + 1] = string.format("chmod -R a+rX '%s'", dir)
  for _, c in ipairs(cmds) do
    local ok = os.execute(c)
    if ok ~= 0 and ok ~= true then
      os.execute("rm -rf '" .. dir .. "'")
      error('readable_copy: ' .. c .. ' failed', 2)
    end
  end
  return dir, function() os.execute("rm -rf '" .. dir .. "'") end
end

--- A fresh empty directory under /tmp.
--- A temp store holding recorded investigations copied from
--- tests/fixtures/<dir>/<name> (each with an empty analysis/); returns the
--- store's root and the ids, in the order of names.
function M.fixture_store(dir, names)
  local store = require('perf_manual.store')
  local root = M.tmpdir()
  local ids = {}
  for i, n in ipairs(names) do
    local meta = assert(store.parse_metadata(M.fixture(dir .. '/' .. n .. '/metadata.yaml')))
    ids[i] = meta.id
    assert(os.execute(string.format("cp -r '%s/tests/fixtures/%s/%s' '%s/%s' && mkdir -p '%s/%s/analysis'", M.root,
      dir, n, root, meta.id, root, meta.id)) == 0)
  end
  return root, ids
end

function M.tmpdir()
  local d = os.tmpname(); os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'") == 0)
  return d
end

function M.rmrf(path) os.execute("rm -rf '" .. path .. "'") end

--- A copy of tests/fixtures/datadirs/<name> to write into.
function M.copy_datadir(name)
  local d = os.tmpname(); os.remove(d)
  assert(os.execute(string.format("cp -r '%s/tests/fixtures/datadirs/%s' '%s'", M.root, name, d)) == 0)
  return d
end

--- A temp investigation store holding one investigation per recorded data
--- dir in `names` (tests/fixtures/datadirs), made by the real investigate
--- playbook in replay mode, symptom "<name> is slow". Returns the store's
--- root and the ids in the order of `names`.
function M.replay_store(names)
  local store = require('perf_manual.store')
  local root = M.tmpdir()
  local ids = {}
  for _, name in ipairs(names) do
    local before = {}
    for _, id in ipairs(store.list(root)) do before[id] = true end
    local _, err, st = M.pm(string.format("investigate --replay '%s/tests/fixtures/datadirs/%s' --symptom '%s is slow' "
      .. "--batch --store '%s'", M.root, name, name, root))
    assert(st == 0, err)
    for _, id in ipairs(store.list(root)) do if not before[id] then ids[#ids + 1] = id end end
  end
  return root, ids
end

M.lock_path = '/tmp/perf_manual-machine.lock'

function M.workload(name) return M.root .. '/build/workloads/' .. name end

--- Runs fn while holding the machine lock, so tests that judge the machine
--- never overlap each other, a benchmark or a build.
function M.with_machine_lock(fn)
  -- tests/bench/run.sh already holds it for the whole benchmark
  if os.getenv('PM_MACHINE_LOCK_HELD') == '1' then return fn() end
  local sys = require('perf_manual._c.sys')
  local fd = assert(sys.flock(M.lock_path))
  local ok, err = xpcall(fn, debug.traceback)
  sys.unlock(fd)
  if not ok then error(err, 0) end
  return err
end

--- True when bpftrace (a peer several e2e tests measure against) is
--- installed; otherwise the test is marked pending, or fails in CI.
function M.have_bpftrace()
  if os.execute('command -v bpftrace >/dev/null 2>&1') == 0 then return true end
  M.skip_unless_required('PM_REQUIRE_BPF', 'bpftrace is not installed')
  return false
end

--- Runs fn(dir) with a fresh cgroup v2 directory named after name and this
--- process, removed afterwards (once what fn left in it has been reaped).
function M.with_cgroup(name, fn)
  local sys = require('perf_manual._c.sys')
  local v2 = require('perf_manual.collectors.cgroup').mounts().v2
  assert(v2, 'no cgroup2 mount')
  local cg = string.format('%s/%s_%d', v2.dir, name, sys.getpid())
  assert(os.execute('mkdir ' .. cg) == 0, 'cannot make ' .. cg)
  local ok, e = xpcall(fn, debug.traceback, cg)
  for _ = 1, 50 do
    if os.execute('rmdir ' .. cg .. ' 2>/dev/null') == 0 then break end
    sys.sleep(0.05)
  end
  if not ok then error(e, 0) end
end

return M
