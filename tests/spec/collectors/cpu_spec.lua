local cpu = require('perf_manual.collectors.cpu')
local fx = test_helpers.root .. '/tests/fixtures/proc/'
local INTERVAL = 1.003466 -- tests/fixtures/proc/interval

local function snap(dir, t)
  local s = cpu.sample({ stat = fx .. dir .. '/stat', loadavg = fx .. dir .. '/loadavg',
    psi = fx .. dir .. '/pressure_cpu' })
  s.time = t
  return s
end

describe('perf_manual.collectors.cpu', function()
  it('parses the aggregate and per-CPU lines of a real /proc/stat', function()
    local s = assert(cpu.parse_stat(fixture('proc/t0/stat')))
    assert.same({ user = 1630, nice = 0, system = 1712, idle = 263019, iowait = 425, irq = 0,
      softirq = 39, steal = 15, guest = 0, guest_nice = 0, columns = 10 }, s.total)
    assert.equal(2, #s.cpus)
    assert.equal(0, s.cpus[1].id)
    assert.equal(1155, s.cpus[2].user)
    assert.equal(280593, s.ctxt)
    assert.equal(4787, s.processes)
    assert.equal(2, s.procs_running)
    assert.equal(1, s.procs_blocked)
  end)

  it('leaves the columns an older kernel does not print as nil', function()
    local s = assert(cpu.parse_stat(fixture('proc/edge/stat_8_columns')))
    assert.equal(8, s.total.columns)
    assert.equal(15, s.total.steal)
    assert.is_nil(s.total.guest)
    assert.is_nil(s.cpus[1].guest_nice)
  end)

  it('rejects text that is not /proc/stat', function()
    local s, err = cpu.parse_stat('hello\n')
    assert.is_nil(s)
    assert.equal('not a /proc/stat text', err)
  end)

  it('parses /proc/loadavg and schedstat', function()
    assert.same({ load1 = 0, load5 = 0.01, load15 = 0, runnable = 2, threads = 90, last_pid = 4786 },
      cpu.parse_loadavg(fixture('proc/t0/loadavg')))
    assert.same({ run_ns = 304945097, wait_ns = 2028902, timeslices = 37 },
      cpu.parse_schedstat(fixture('proc/t0/4782/schedstat')))
  end)

  it('computes busy, iowait, steal and context switch rates between two captures', function()
    local r = cpu.rates(snap('t0', 0), snap('t1', INTERVAL))
    -- total deltas: user 83 system 36 idle 1 iowait 52 softirq 19 steal 1 = 192 jiffies
    assert.near(100 * 138 / 192, r.total.busy_pct, 1e-9)
    assert.near(100 * 52 / 192, r.total.iowait_pct, 1e-9)
    assert.near(100 * 1 / 192, r.total.steal_pct, 1e-9)
    assert.near(100 * 83 / 192, r.total.user_pct, 1e-9)
    -- cpu1: user 72 system 3 iowait 4 softirq 20 = 99 jiffies, no idle
    assert.equal(1, r.cpus[2].id)
    assert.near(100 * 95 / 99, r.cpus[2].busy_pct, 1e-9)
    assert.near((302555 - 280593) / INTERVAL, r.ctxt_per_s, 1e-9)
    assert.near(53 / INTERVAL, r.forks_per_s, 1e-9)
    assert.equal(3, r.procs_running)
    assert.equal(0, r.procs_blocked)
    assert.equal(2, r.ncpu)
    assert.near((4074487 - 3978952) / INTERVAL / 1e4, r.psi.some_pct, 1e-9)
    assert.is_nil(r.missing)
  end)

  it('reports missing PSI instead of zero', function()
    local a, b = snap('t0', 0), snap('t1', 1)
    a.psi, b.psi = nil, nil
    b.missing = { psi = 'not present: /proc/pressure/cpu' }
    local r = cpu.rates(a, b)
    assert.is_nil(r.psi)
    assert.equal('not present: /proc/pressure/cpu', r.missing.psi)
  end)

  it('turns task schedstat into CPU % of one core and run-queue wait', function()
    local a = cpu.parse_schedstat(fixture('proc/t0/4782/schedstat')); a.time = 0
    local b = cpu.parse_schedstat(fixture('proc/t1/4782/schedstat')); b.time = INTERVAL
    local r = cpu.task_rates(a, b)
    assert.near((1276460398 - 304945097) / INTERVAL / 1e7, r.cpu_pct, 1e-9)
    assert.near((32628638 - 2028902) / INTERVAL / 1e7, r.runq_wait_pct, 1e-9)
    assert.near((32628638 - 2028902) / 338 / 1e6, r.wait_per_slice_ms, 1e-9)
  end)

  it('samples this machine and a live task', function()
    local s = cpu.sample()
    assert.is_table(s.stat)
    local t = assert(cpu.sample_task(require('perf_manual._c.sys').getpid()))
    assert.is_true(t.threads >= 1 and t.run_ns > 0)
    local none, err = cpu.sample_task(2 ^ 22 + 1)
    assert.is_nil(none)
    assert.equal('no process ' .. (2 ^ 22 + 1), err)
  end)

  describe('per thread (recorded: hot_thread 1 spinner 2 sleepers under taskset -c 0)', function()
    local root = test_helpers.root .. '/tests/fixtures/proc/'
    local interval = tonumber(test_helpers.fixture('proc/threads_interval'))

    it('finds the one thread at a core\'s worth, by tid, and the sleepers near 0', function()
      local a = cpu.sample_threads({ 11420 }, { proc = root .. 'threads_t0' })
      local b = cpu.sample_threads({ 11420 }, { proc = root .. 'threads_t1' })
      assert.equal(4, a.count)
      a.time, b.time = 0, interval
      local r = cpu.thread_rates(a, b)
      assert.equal(11422, r.threads[1].tid)
      assert.equal(11420, r.threads[1].pid)
      -- (1550679432 - 518872720) ns over 1.027 s
      assert.is_true(math.abs(r.threads[1].pct - 100.5) < 1, tostring(r.threads[1].pct))
      assert.is_true(r.threads[2].pct < 1)
      assert.equal('hot0', cpu.thread_comm(11420, 11422, root .. 'threads_t0'))
    end)

    it('counts a thread born in the window from 0 and drops one that died', function()
      local a = { time = 0, threads = { [1] = { pid = 1, run_ns = 5e8 }, [2] = { pid = 1, run_ns = 1e8 } } }
      local b = { time = 1, threads = { [1] = { pid = 1, run_ns = 9e8 }, [3] = { pid = 1, run_ns = 2e8 } } }
      local r = cpu.thread_rates(a, b)
      assert.same({ { tid = 1, pid = 1, pct = 40 }, { tid = 3, pid = 1, pct = 20 } }, r.threads)
    end)

    it('reads the affinity of every thread (taskset -c 0)', function()
      local aff = cpu.affinity(11420, root .. 'threads_t0')
      assert.same({ cpus = { 0 }, count = 1, list = '0' }, aff)
      local none, err = cpu.affinity(4242, root .. 'threads_t0')
      assert.is_nil(none)
      assert.matches('no Cpus_allowed_list', err)
    end)

    it('parses and formats kernel CPU lists', function()
      assert.same({ 0, 1, 2, 3, 6 }, cpu.parse_cpu_list('0-3,6\n'))
      assert.same({}, cpu.parse_cpu_list('\n'))
      assert.is_nil(cpu.parse_cpu_list('zero'))
      assert.equal('0-1,3,5-7', cpu.format_cpu_list({ 0, 1, 3, 5, 6, 7 }))
    end)

    it('samples this machine\'s threads, leaving out the excluded pids', function()
      local me = require('perf_manual.sys').getpid()
      local s = cpu.sample_threads(nil, { exclude = { [me] = true } })
      assert.is_true(s.count > 1)
      for _, t in pairs(s.threads) do assert.are_not.equal(me, t.pid) end
    end)
  end)
end)
