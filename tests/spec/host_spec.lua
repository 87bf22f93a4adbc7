local h = test_helpers

local function tmpdir()
  local d = os.tmpname(); os.remove(d); assert(os.execute('mkdir -p ' .. d) == 0)
  return d
end

local function write(path, s)
  local f = assert(io.open(path, 'w')); f:write(s); f:close()
end

-- a playbook that collects until asked to stop, then "flushes"
local LOOPER = [[
local sys = require('perf_manual._c.sys')
return playbook { name = 'looper', summary = 'collects until stopped',
  step 'collect' { function(inv)
    io.stdout:write('started\n'); io.stdout:flush()
    local n = 0
    while sys.sleep(0.05) do n = n + 1 end
    inv:print('flushed after stop, samples>0=' .. tostring(n > 0))
  end } }
]]

describe('perf_manual host', function()
  it('stops a collection on the first SIGINT and lets it flush', function()
    local d = tmpdir()
    write(d .. '/looper.lua', LOOPER)
    local out = d .. '/out'
    local cmd = string.format('%s/bin/perf_manual --playbooks %s looper > %s 2>&1 & pid=$!; ' ..
      'while ! grep -q started %s 2>/dev/null; do sleep 0.05; done; sleep 0.2; kill -INT $pid; wait $pid; echo ' ..
        '"rc=$?" >> %s',
      h.root, d, out, out, out)
    os.execute(cmd)
    local s = assert(io.open(out)):read('*a')
    os.execute('rm -rf ' .. d)
    assert.matches('flushed after stop, samples>0=true', s)
    assert.matches('rc=0', s)
  end)

  it('exits at once on a second signal', function()
    local d = tmpdir()
    -- ignores the stop flag: only the second signal can end it
    write(d .. '/stubborn.lua', [[
local sys = require('perf_manual._c.sys')
return playbook { name = 'stubborn', summary = 'x', step 's' { function()
  io.stdout:write('started\n'); io.stdout:flush()
  while true do sys.sleep(0.05) end end } }]])
    local out = d .. '/out'
    local cmd = string.format('%s/bin/perf_manual --playbooks %s stubborn > %s 2>&1 & pid=$!; ' ..
      'while ! grep -q started %s 2>/dev/null; do sleep 0.05; done; kill -TERM $pid; sleep 0.2; kill -TERM $pid; ' ..
        'wait $pid; echo "rc=$?" >> %s',
      h.root, d, out, out, out)
    os.execute(cmd)
    local s = assert(io.open(out)):read('*a')
    os.execute('rm -rf ' .. d)
    assert.matches('rc=143', s)  -- 128 + SIGTERM
  end)

  it('installs a working tool that finds its Lua files relative to itself', function()
    local d = tmpdir()
    local rc = os.execute(string.format('make -s -C %s install PREFIX=%s/usr >/dev/null 2>&1', h.root, d))
    assert.equal(0, rc)
    local p = io.popen(string.format('cd / && %s/usr/bin/perf_manual --version && %s/usr/bin/perf_manual list', d, d))
    local s = p:read('*a'); p:close()
    local exists = io.open(d .. '/usr/share/perf_manual/lib/perf_manual/cli.lua')
    os.execute('rm -rf ' .. d)
    assert.truthy(exists)
    assert.matches('^perf_manual %d', s)
    assert.matches('/usr/share/perf_manual/playbooks/', s)
  end)

  it('loads a module or playbook from the build\'s bytecode while it is not older than its source', function()
    local d = tmpdir()
    os.execute('mkdir -p ' .. d .. '/lib/perf_manual ' .. d .. '/build/lj/lib ' .. d .. '/playbooks')
    write(d .. '/lib/perf_manual/cli.lua', 'return {}')
    write(d .. '/lib/pm_bc_probe.lua', "return 'source'")
    write(d .. '/playbooks/pb.lua', "return 'source playbook'")
    -- the cache as `make` writes it, with other contents to tell them apart
    local cached = d .. '/build/lj/lib/pm_bc_probe.lua'
    write(d .. '/cached.lua', "return 'cached'")
    write(d .. '/cached_pb.lua', "return 'cached playbook'")
    local compile = "local f = io.open(%q, 'wb'); f:write(string.dump(assert(loadfile(%q)))); f:close()"
    write(d .. '/compile.lua', string.format(compile, cached, d .. '/cached.lua') .. '\n'
      .. "os.execute('mkdir -p " .. d .. "/build/lj/playbooks')\n"
      .. string.format(compile, d .. '/build/lj/playbooks/pb.lua', d .. '/cached_pb.lua'))
    write(d .. '/show.lua', "print(require('pm_bc_probe'), require('perf_manual._host').loadfile(arg[1])())")
    local function show()
      local out, err, st = h.pm('--lua ' .. d .. '/show.lua -- ' .. d .. '/playbooks/pb.lua',
        'PERF_MANUAL_ROOT=' .. d)
      assert.equal(0, st, err)
      return out
    end
    -- sources written first, the cache after them: the cache is fresh
    os.execute('sleep 0.05')
    local _, cerr, cst = h.pm('--lua ' .. d .. '/compile.lua', 'PERF_MANUAL_ROOT=' .. d)
    assert.equal(0, cst, cerr)
    local fresh = show()
    -- an edited source is newer than its copy: the source is loaded
    os.execute('sleep 0.05; touch ' .. d .. '/lib/pm_bc_probe.lua ' .. d .. '/playbooks/pb.lua')
    local edited = show()
    -- a cache file that is not bytecode is passed over, not an error
    write(cached, 'not bytecode'); os.execute('touch -d "2000-01-01" ' .. d .. '/lib/pm_bc_probe.lua')
    local broken = show()
    os.execute('rm -rf ' .. d)
    assert.equal('cached\tcached playbook\n', fresh)
    assert.equal('source\tsource playbook\n', edited)
    assert.equal('source\tsource playbook\n', broken)
  end)

  it('runs a Lua file inside the host with --lua, native modules present', function()
    local p = os.tmpname()
    write(p, "local sys = require('perf_manual._c.sys'); print(arg[1], type(sys.now()), sys.info().ncpu > 0)")
    local out, _, st = h.pm('--lua ' .. p .. ' -- hello')
    os.remove(p)
    assert.equal(0, st)
    assert.equal('hello\tnumber\ttrue\n', out)
  end)
end)

describe('perf_manual._c.sys', function()
  local sys = require('perf_manual._c.sys')
  it('spawns a program, joins it to a file before exec, and reaps it', function()
    local d = tmpdir()
    local pid = assert(sys.spawn({ 'sh', '-c', 'exit 3' }, { join = d .. '/procs' }))
    local how, code = sys.wait(pid)
    local joined = assert(io.open(d .. '/procs')):read('*a')
    os.execute('rm -rf ' .. d)
    assert.equal('exited', how)
    assert.equal(3, code)
    assert.equal(tostring(pid) .. '\n', joined)
  end)

  it('reports a program that cannot start as an error, not a pid', function()
    local pid, err = sys.spawn({ '/nonexistent/prog' })
    assert.is_nil(pid)
    assert.equal('cannot start /nonexistent/prog: No such file or directory', err)
  end)

  it('measures a monotonic clock and its own rusage', function()
    local t0 = sys.now()
    local x = 0
    for i = 1, 2e6 do x = x + i % 7 end
    assert.is_true(sys.now() > t0)
    local ru = sys.rusage()
    assert.is_true(ru.utime > 0)
    assert.is_true(ru.maxrss_kb > 1000)
  end)
end)
