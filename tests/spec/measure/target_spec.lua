local T = require('perf_manual.measure.target')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

-- the one line a user error prints, or nil when fn did not raise one
local function user_err(fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then return nil end
  assert(util.is_user_error(e), 'expected a user error, got: ' .. tostring(e))
  return e.user_error
end

describe('perf_manual.measure.target', function()
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
    assert.equal("no process, service or command named 'no-such-unit'", user_err(T.resolve, 'no-such-unit'))
    assert.equal("no systemd service 'no-such-unit' (no cgroup for no-such-unit.service)",
      user_err(T.resolve, 'service:no-such-unit'))
    assert.equal('no cgroup /no/such/cgroup', user_err(T.resolve, 'cgroup:/no/such/cgroup'))
    assert.equal('no cgroup or program /no/such/cgroup', user_err(T.resolve, '/no/such/cgroup'))
    assert.equal("bad target 'a$b': expected system, a PID, a service, a cgroup path, a process name or a command",
      user_err(T.resolve, 'a$b'))
    assert.equal("cannot run 'no-such-program' (not an executable file, nor on PATH)",
      user_err(T.resolve, 'no-such-program --flag'))
    assert.equal("no process named 'no-such-name'", user_err(T.resolve, 'process:no-such-name'))
    assert.equal("bad pid 'x1': expected a process id", user_err(T.resolve, 'pid:x1'))
  end)

  it('resolves a cgroup by its full path or by its path inside the hierarchies', function()
    local own = assert(require('perf_manual.collectors.cgroup').resolve({ pid = sys.getpid() }))
    local dir = own.memory or own.v2 or own.cpu
    assert.is_string(dir)
    local t = T.resolve(dir)
    assert.equal('cgroup', t.kind)
    assert.equal(dir, t.dirs.memory or t.dirs.v2 or t.dirs.cpu)
    local rel = t.cgroup
    local t2 = T.resolve(rel)
    assert.equal(rel, t2.cgroup)
    -- this process lives in it, so its pids include us
    local found = false
    for _, p in ipairs(T.pids(t)) do if p == sys.getpid() then found = true end end
    assert.is_true(found)
  end)

  it('resolves a systemd service to its cgroup', function()
    if not test_helpers.need_root('creating a cgroup') then return end
    local cg = require('perf_manual.collectors.cgroup')
    local m = cg.mounts()
    local tree = m.v1['name=systemd'] or m.v2
    if not tree then pending('no systemd or v2 cgroup tree'); return end
    local unit = 'perf-manual-spec-' .. sys.getpid() .. '.service'
    local dir = tree.dir .. '/' .. unit
    assert(require('posix.sys.stat').mkdir(dir))
    local ok, err = pcall(function()
      local t = T.resolve('perf-manual-spec-' .. sys.getpid())
      assert.equal('service', t.kind)
      assert.equal(unit, t.unit)
      assert.equal('/' .. unit, t.cgroup)
      assert.same({}, T.pids(t))
      assert.is_true(T.alive(t))
    end)
    require('posix.unistd').rmdir(dir)
    assert(ok, err)
  end)

  it('sees a process exit', function()
    local pid = assert(sys.spawn({ 'true' }))
    sys.wait(pid)
    assert.is_false(T.alive({ kind = 'pid', pid = pid }))
  end)

  it('finds a running process by name, the oldest first, and says how many more there are', function()
    local w = test_helpers.workload('sleeper')
    local a = assert(sys.spawn({ w, '30' }, { stdout = 'null', stderr = 'null' }))
    local b = assert(sys.spawn({ w, '30' }, { stdout = 'null', stderr = 'null' }))
    sys.sleep(0.2)
    local ok, err = pcall(function()
      local t = T.resolve('sleeper')
      assert.equal('pid', t.kind)
      assert.equal(math.min(a, b), t.pid)
      assert.equal(string.format('sleeper (pid %d, 1 more)', math.min(a, b)), t.label)
      assert.same(t.pid, T.resolve('process:sleeper').pid)
    end)
    for _, p in ipairs({ a, b }) do sys.kill(p, 9); sys.wait(p) end
    assert(ok, err)
  end)

  it('launches a command target and stops it again, and only that one', function()
    local t = T.resolve(test_helpers.workload('sleeper') .. ' 30')
    assert.equal('command', t.kind)
    assert.is_nil(t.pid)
    T.launch(t)
    assert.equal('pid', t.kind)
    assert.is_true(t.launched)
    assert.equal('running', (sys.wait(t.pid, true)))
    assert.equal('sleeper', t.comm)
    T.stop(t)
    assert.is_nil(io.open('/proc/' .. t.pid .. '/stat'))
    -- a command that exits at once is not a target
    local e = select(2, pcall(T.launch, T.resolve('cmd:false')))
    assert.equal('false exited at once', e.user_error)
    -- a process the resolver found is never stopped
    local found = T.resolve(tostring(sys.getpid()))
    T.stop(found)
    assert.is_true(T.alive(found))
  end)

  it('gives the BPF filter of each kind', function()
    assert.same({}, T.bpf_filter({ kind = 'system' }))
    assert.same({ pid = 7 }, T.bpf_filter({ kind = 'pid', pid = 7 }))
    assert.same({ cgroup = 42 }, T.bpf_filter(T.resolve('cgroup:42')))
    local none, why = T.bpf_filter({ kind = 'cgroup', dirs = { path = '/x', memory = '/sys/fs/cgroup/memory/x' } })
    assert.is_nil(none)
    assert.matches('no cgroup v2 directory', why)
  end)
end)
