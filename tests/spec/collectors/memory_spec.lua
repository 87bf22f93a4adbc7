local memory = require('perf_manual.collectors.memory')
local fx = test_helpers.root .. '/tests/fixtures/proc/'
local INTERVAL = 0.557018 -- tests/fixtures/proc/mem_interval

local function snap(dir, t)
  local s = memory.sample({ meminfo = fx .. dir .. '/meminfo', vmstat = fx .. dir .. '/vmstat',
    psi = fx .. dir .. '/pressure_memory' })
  s.time = t
  return s
end

describe('perf_manual.collectors.memory', function()
  it('parses /proc/meminfo into bytes, keeping unitless counts', function()
    local m = assert(memory.parse_meminfo(fixture('proc/mem_t1/meminfo')))
    assert.equal(24684084 * 1024, m.MemTotal)
    assert.equal(24309948 * 1024, m.MemAvailable)
    assert.equal(1600 * 1024, m['Active(anon)'])
    assert.equal(0, m.HugePages_Total)
    assert.equal(2048 * 1024, m.Hugepagesize)
  end)

  it('parses /proc/vmstat counters', function()
    local v = assert(memory.parse_vmstat(fixture('proc/mem_t0/vmstat')))
    assert.equal(1, v.oom_kill)
    assert.equal(1920, v.pgmajfault)
    assert.equal(0, v.pgscan_direct_throttle)
  end)

  it('rejects text that is not meminfo', function()
    local m, err = memory.parse_meminfo('cpu 1 2 3\n')
    assert.is_nil(m)
    assert.equal('not a /proc/meminfo text', err)
  end)

  it('computes used %, fault rates and OOM kills between two captures', function()
    local r = memory.rates(snap('mem_t0', 0), snap('mem_t1', INTERVAL))
    assert.near(100 * (24684084 - 24309948) / 24684084, r.used_pct, 1e-9)
    assert.equal((24684084 - 24309948) * 1024, r.used_bytes)
    assert.equal(262712 * 1024, r.dirty_bytes)
    assert.equal(1, r.oom_kill) -- tail /dev/zero killed in its 32 MiB cgroup
    assert.equal(2, r.oom_kill_total)
    assert.near(2 / INTERVAL, r.pgmajfault_per_s, 1e-9)
    assert.near((2184540 - 2174192) / INTERVAL, r.pgfault_per_s, 1e-9)
    assert.near(6 / INTERVAL, r.refault_per_s, 1e-9)
    assert.equal(0, r.pgscan_direct_per_s)
    assert.equal(0, r.allocstall_per_s)
    assert.near((2488678 - 2488058) / INTERVAL / 1e4, r.psi.some_pct, 1e-9)
    -- this VM has no swap: the share is missing, not 0
    assert.equal(0, r.swap_total_bytes)
    assert.is_nil(r.swap_used_pct)
    assert.equal('no swap configured', r.missing.swap_used_pct)
  end)

  it('sums per-zone counters of older kernels without the throttle event', function()
    local v = memory.parse_vmstat('pgscan_kswapd_dma 1\npgscan_kswapd_normal 10\npgscan_direct_normal 5\n'
      .. 'pgscan_direct_throttle 99\n'
      .. 'pgsteal_kswapd_normal 7\npgsteal_direct_normal 2\n')
    local w = memory.parse_vmstat('pgscan_kswapd_dma 3\npgscan_kswapd_normal 30\npgscan_direct_normal 9\n'
      .. 'pgscan_direct_throttle 500\n'
      .. 'pgsteal_kswapd_normal 17\npgsteal_direct_normal 4\n')
    local r = memory.rates({ time = 0, vmstat = v }, { time = 2, vmstat = w })
    assert.equal(11, r.pgscan_kswapd_per_s)
    assert.equal(2, r.pgscan_direct_per_s)
    assert.equal(6, r.pgsteal_per_s)
    assert.is_nil(r.oom_kill)
    assert.matches('kernel < 4.13', r.missing.oom_kill)
    assert.matches('not in /proc/vmstat', r.missing.pswpin_per_s)
  end)

  it('samples this machine', function()
    local a = memory.sample()
    assert.is_true(a.meminfo.MemTotal > 0)
    local r = memory.rates(a, memory.sample())
    assert.is_true(r.used_pct > 0 and r.used_pct < 100)
  end)
end)
