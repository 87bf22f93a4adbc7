local T = require('perf_manual.target')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

-- the one line a user error prints, or nil when fn did not raise one
local function user_err(fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then return nil end
  assert(util.is_user_error(e), 'expected a user error, got: ' .. tostring(e))
  return e.user_error
end

describe('perf_manual.target', function()
  it('finds v1 controllers and the v2 hierarchy in a captured mountinfo', function()
    local mounts = T.parse_mounts(fixture('target/mountinfo_v1_hybrid'))
    local by = {}
    for _, m in ipairs(mounts) do by[m.dir] = m end
    assert.equal(1, by['/sys/fs/cgroup/memory'].version)
    assert.is_true(by['/sys/fs/cgroup/memory'].controllers.memory)
    assert.is_true(by['/sys/fs/cgroup/systemd'].controllers['name=systemd'])
    assert.equal(2, by['/sys/fs/cgroup/unified'].version)
    -- the tmpfs holding the hierarchies is not a cgroup mount
    assert.is_nil(by['/sys/fs/cgroup'])
    assert.is_nil(by['/proc'])
  end)

  it('parses /proc/PID/cgroup lines, v1 and v2', function()
    local cg = T.parse_proc_cgroup(fixture('target/proc_cgroup_v1_hybrid'))
    local mem, v2
    for _, e in ipairs(cg) do
      if e.controllers[1] == 'memory' then mem = e end
      if e.id == 0 then v2 = e end
    end
    assert.matches('^/process_api/', mem.path)
    assert.equal('/', v2.path)
    assert.same({}, v2.controllers)
  end)

  it('resolves system and a live pid', function()
    assert.same({ kind = 'system', label = 'system' }, T.resolve('system'))
    local me = sys.getpid()
    local t = T.resolve(tostring(me))
    assert.equal('pid', t.kind)
    assert.equal(me, t.pid)
    assert.equal('perf_manual', t.comm)
    assert.is_true(T.alive(t))
  end)

  it('rejects what does not exist with one exact line', function()
    assert.equal('no process 999999999', user_err(T.resolve, '999999999'))
    assert.equal("no systemd service 'no-such-unit' (no cgroup for no-such-unit.service)",
      user_err(T.resolve, 'no-such-unit'))
    assert.equal('no cgroup /no/such/cgroup', user_err(T.resolve, '/no/such/cgroup'))
    assert.equal("bad target 'a b': expected system, a PID, a systemd service or a cgroup path",
      user_err(T.resolve, 'a b'))
  end)

  it('resolves a cgroup by its full path or by its path inside the hierarchies', function()
    local own = assert(T.process_cgroups(sys.getpid()))
    local dir = own.memory or own.unified or own.cpu
    assert.is_string(dir)
    local t = T.resolve(dir)
    assert.equal('cgroup', t.kind)
    assert.equal(dir, t.dirs.memory or t.dirs.unified or t.dirs.cpu)
    local rel = t.cgroup
    local t2 = T.resolve(rel)
    assert.equal(rel, t2.cgroup)
    -- this process lives in it, so its pids include us
    local found = false
    for _, p in ipairs(T.pids(t)) do if p == sys.getpid() then found = true end end
    assert.is_true(found)
  end)

  it('sees a process exit', function()
    local pid = assert(sys.spawn({ 'true' }))
    sys.wait(pid)
    assert.is_false(T.alive({ kind = 'pid', pid = pid }))
  end)
end)
