local cgroup = require('perf_manual.collectors.cgroup')
local fx = test_helpers.root .. '/tests/fixtures/cgroup/'
local THROTTLED_INTERVAL = 1.002955 -- tests/fixtures/cgroup/v1/throttled_interval

local function tdirs(name)
  local d = fx .. 'v1/' .. name
  return { path = '/pm_capture', cpu = d .. '/cpu', cpuacct = d .. '/cpuacct', v2 = d .. '/unified' }
end

describe('perf_manual.collectors.cgroup', function()
  it('finds v1 controllers and the v2 tree in a real hybrid mountinfo', function()
    local m = cgroup.mounts(fixture('proc/edge/mountinfo_hybrid'))
    assert.same({ dir = '/sys/fs/cgroup/unified', root = '/' }, m.v2)
    assert.equal('/sys/fs/cgroup/memory', m.v1.memory.dir)
    assert.equal('/sys/fs/cgroup/cpu', m.v1.cpu.dir)
    assert.equal('/sys/fs/cgroup/systemd', m.v1['name=systemd'].dir)
  end)

  it('reads v1 memory limit, failcnt and OOM kills of an OOM-killed cgroup', function()
    local s = cgroup.sample_dirs({ path = '/pm_fixture', memory = fx .. 'v1/memory' })
    local m = s.memory
    assert.equal('v1', m.version)
    assert.equal(33554432, m.limit_bytes)
    assert.equal(108, m.failcnt)
    assert.equal(108, m.limit_hits)
    assert.equal(1, m.oom_kills)
    assert.same({ oom_kill_disable = 0, under_oom = 0, oom_kill = 1 }, m.oom_control)
    assert.is_number(m.stat.total_rss)
    -- no v2 dir: pressure and cpu are missing with a reason
    assert.equal('no cgroup v2 pressure files', s.missing.pressure_memory)
    assert.equal('no cpu controller for this cgroup', s.missing.cpu)
  end)

  it('reads v2 memory.max, memory.events and cpu.max', function()
    local s = cgroup.sample_dirs({ path = '/system.slice/pm-demo.service', v2 = fx .. 'v2/memory_limited' })
    assert.equal('v2', s.memory.version)
    assert.equal(33554432, s.memory.limit_bytes)
    assert.equal(33476608, s.memory.usage_bytes)
    assert.equal(1412, s.memory.limit_hits)
    assert.equal(2, s.memory.oom_kills)
    assert.equal('v2', s.cpu.version)
    assert.equal(20000, s.cpu.quota_us)
    assert.equal(398, s.cpu.nr_throttled)
    assert.equal(31740211, s.cpu.throttled_us)
    assert.equal(41.2, s.pressure.memory.some.avg10)
  end)

  it('parses single values, "max" and cpu.max', function()
    assert.equal('max', cgroup.parse_value('max\n'))
    assert.equal(-1, cgroup.parse_value('-1\n'))
    assert.same({ period_us = 100000 }, cgroup.parse_cpu_max('max 100000\n'))
    local v, err = cgroup.parse_value('1 2\n')
    assert.is_nil(v)
    assert.equal('not a single value', err)
  end)

  it('computes v1 CPU throttling between two captures', function()
    local a = cgroup.sample_dirs(tdirs('throttled_t0')); a.time = 0
    local b = cgroup.sample_dirs(tdirs('throttled_t1')); b.time = THROTTLED_INTERVAL
    assert.equal('v1', b.cpu.version)
    local r = cgroup.rates(a, b)
    assert.equal(0.2, r.cpu.quota_cores)
    assert.equal(10, r.cpu.nr_throttled)
    assert.equal(100, r.cpu.throttled_pct) -- 10 of 10 periods
    assert.near((1195692189 - 397229046) / 1e6 / THROTTLED_INTERVAL, r.cpu.throttled_ms_per_s, 1e-9)
    assert.near((305712582 - 105990683) / 1e3 / THROTTLED_INTERVAL / 1e4, r.cpu.usage_pct, 1e-9)
    assert.near((1198067 - 399043) / THROTTLED_INTERVAL / 1e4, r.pressure.cpu.some_pct, 1e-9)
  end)

  it('counts OOM kills and limit hits during the interval', function()
    local a = { time = 0, memory = { limit_hits = 100, oom_kills = 0, usage_bytes = 1, limit_bytes = 4 } }
    local b = cgroup.sample_dirs({ memory = fx .. 'v1/memory' }); b.time = 1
    local r = cgroup.rates(a, b)
    assert.equal(8, r.memory.limit_hits)
    assert.equal(1, r.memory.oom_kills)
    assert.near(100 * b.memory.usage_bytes / 33554432, r.memory.usage_pct, 1e-9)
  end)

  it('finds a systemd unit\'s cgroup in a systemd-shaped tree, or says there is none', function()
    local dir = os.tmpname(); os.remove(dir)
    os.execute('mkdir -p ' .. dir .. '/system.slice/pm-demo.service '
      .. dir .. '/user.slice/user-0.slice/pm-user.service')
    io.open(dir .. '/system.slice/pm-demo.service/cgroup.procs', 'w'):close()
    io.open(dir .. '/user.slice/user-0.slice/pm-user.service/cgroup.procs', 'w'):close()
    local m = { v1 = { ['name=systemd'] = { dir = dir, root = '/' } } }
    local a = cgroup.find_unit('pm-demo', m)
    local b = cgroup.find_unit('pm-user.service', m)
    local c = cgroup.find_unit('nope.service', m)
    os.execute('rm -rf ' .. dir)
    assert.equal('/system.slice/pm-demo.service', a)
    assert.equal('/user.slice/user-0.slice/pm-user.service', b)
    assert.is_nil(c)
    local d, err = cgroup.resolve({ service = 'nope.service' }, m)
    assert.is_nil(d)
    assert.equal('no cgroup for service nope.service', err)
  end)

  it('resolves this process and a missing pid', function()
    local d = assert(cgroup.resolve({ pid = require('perf_manual._c.sys').getpid() }))
    assert.is_string(d.path)
    assert.is_truthy(d.v2 or d.memory or d.cpu)
    local s = cgroup.sample_dirs(d)
    assert.is_truthy(s.memory or s.missing.memory)
    local none, err = cgroup.resolve({ pid = 4194305 })
    assert.is_nil(none)
    assert.equal('no process 4194305', err)
    none, err = cgroup.resolve({ path = '/no/such/cgroup' })
    assert.is_nil(none)
    assert.equal('no cgroup /no/such/cgroup', err)
  end)

  it('reads a real memory-limited cgroup created for the test (v1, or v2 with the memory controller)', function()
    if not test_helpers.need_root('creates a cgroup') then return end
    local m = cgroup.mounts()
    local base, limit_file
    if m.v1.memory then
      base, limit_file = m.v1.memory.dir, 'memory.limit_in_bytes'
    elseif m.v2 and (io.open(m.v2.dir .. '/cgroup.subtree_control'):read('*a') or ''):match('memory') then
      base, limit_file = m.v2.dir, 'memory.max'
    else
      pending('no memory controller to create a cgroup under') return
    end
    local dir = base .. '/pm_spec_' .. require('perf_manual._c.sys').getpid()
    assert(os.execute('mkdir ' .. dir) == 0)
    local ok, err = pcall(function()
      local f = assert(io.open(dir .. '/' .. limit_file, 'w')); f:write('16777216'); f:close()
      local d = assert(cgroup.resolve({ path = dir }))
      assert.equal(dir, d.memory or d.v2)
      local s = cgroup.sample_dirs(d)
      assert.equal(16777216, s.memory.limit_bytes)
      assert.equal(0, s.memory.oom_kills)
    end)
    os.execute('rmdir ' .. dir)
    assert(ok, err)
  end)

  it('finds a quota set on an ancestor, with that ancestor\'s throttling (recorded v1 nested cgroups)', function()
    local function snap(t)
      local base = fx .. 'v1/nested_' .. t
      return cgroup.sample_dirs({ path = '/child', cpu = base .. '/cpu/child', cpuset = fx .. 'v1/nested_t0/cpuset',
        mounts = { v1 = { cpu = { dir = base .. '/cpu', root = '/' } } } })
    end
    local a, b = snap('t0'), snap('t1')
    assert.equal(fx .. 'v1/nested_t0/cpu', a.cpu.quota_dir)
    assert.same({ 50000, 100000, 10, 9 }, { a.cpu.quota_us, a.cpu.period_us, a.cpu.nr_periods, a.cpu.nr_throttled })
    assert.same({ 2, '0-1' }, { a.cpuset.count, a.cpuset.list })
    a.time, b.time = 0, tonumber(test_helpers.fixture('cgroup/v1/nested_interval'))
    local r = cgroup.rates(a, b)
    assert.equal(0.5, r.cpu.quota_cores)
    assert.same({ 10, 10 }, { r.cpu.nr_periods, r.cpu.nr_throttled })
    assert.equal(100, r.cpu.throttled_pct)
    assert.equal(2, r.cpuset.count)
  end)
end)
