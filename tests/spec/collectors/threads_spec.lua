local threads = require('perf_manual.collectors.threads')
local measure_threads = require('perf_manual.measure.threads')
local sys = require('perf_manual._c.sys')
local h = test_helpers

-- Starts tests/workloads/threads100 (N threads, mode) and waits until all
-- threads exist; returns its pid.
local function start(n, mode)
  local pid = assert(sys.spawn({ h.workload('threads100'), tostring(n), mode, '20' }, { stdout = '/dev/null' }))
  for _ = 1, 200 do
    local ok, list = pcall(require('posix.dirent').dir, '/proc/' .. pid .. '/task')
    if ok and #list >= n + 3 then break end
    sys.sleep(0.01)
  end
  sys.sleep(0.1)
  return pid
end

local function stop(pid) sys.kill(pid, 9); sys.wait(pid) end

describe('perf_manual.collectors.threads', function()
  it('sees threads queued on one mutex as futex waits, many at once', function()
    local pid = start(20, 'mutex')
    local r, err = measure_threads.sample(pid, { duration = 0.5 })
    stop(pid)
    assert(r, err)
    assert.equal('wchan', r.source)
    assert.equal(21, r.threads_seen)
    assert.is_true(r.samples >= 20)
    assert.is_true(r.futex_share > 0.7, 'futex share ' .. r.futex_share)
    assert.is_true(r.futex_waiting_max >= 15)
    assert.is_true(r.futex_waiting_mean >= 12)
    assert.equal(5, #r.top_futex)
    assert.is_true(r.cost.cpu_s > 0 and r.cost.cpu_pct > 0)
  end)

  it('tells mutex waits from condition-variable waits in real syscall files', function()
    if jit.arch ~= 'x64' then pending('fixtures are x86_64 syscall numbers') return end
    assert.same({ nr = 202, futex = 'lock', uaddr = '0x558b8c972160' },
      threads.parse_syscall(fixture('proc/edge/task_syscall_mutex_wait')))
    assert.same({ nr = 202, futex = 'wait', uaddr = '0x55cfe9670148' },
      threads.parse_syscall(fixture('proc/edge/task_syscall_cond_wait')))
    assert.same({ nr = 230 }, threads.parse_syscall(fixture('proc/edge/task_syscall_nanosleep')))
    assert.is_nil(threads.parse_syscall('running\n'))
  end)

  it('puts mutex queueing on one lock address and an idle pool in condition waits', function()
    local pid = start(20, 'mutex')
    local r = assert(measure_threads.sample(pid, { duration = 0.5 }))
    stop(pid)
    assert.is_true(r.futex_lock_share > 0.7, 'lock share ' .. tostring(r.futex_lock_share))
    assert.equal('lock', r.top_futex_addrs[1].kind)
    assert.is_true(r.top_futex_addrs[1].max_waiters >= 15)
    assert.is_true(r.futex_lock_waiting_max >= 15)
    pid = start(20, 'cond')
    r = assert(measure_threads.sample(pid, { duration = 0.5 }))
    stop(pid)
    assert.is_true(r.futex_share > 0.9)
    assert.is_true(r.futex_wait_share > 0.9, 'wait share ' .. tostring(r.futex_wait_share))
    assert.is_true(r.futex_lock_share < 0.05)
    assert.equal('wait', r.top_futex_addrs[1].kind)
    assert.equal(20, r.top_futex_addrs[1].max_waiters)
  end)

  it('sees sleeping threads as sleeping, not futex', function()
    local pid = start(20, 'sleep')
    local r = assert(measure_threads.sample(pid, { duration = 0.5 }))
    stop(pid)
    assert.is_true(r.futex_share < 0.05, 'futex share ' .. r.futex_share)
    assert.is_true(r.shares.sleeping > 0.9)
    local sum = 0
    for _, v in pairs(r.shares) do sum = sum + v end
    assert.near(1, sum, 1e-9)
  end)

  it('falls back to stat + syscall and still finds the futex waits', function()
    local pid = start(20, 'mutex')
    local r = assert(measure_threads.sample(pid, { duration = 0.5, mode = 'stat' }))
    stop(pid)
    assert.equal('stat+syscall', r.source)
    assert.is_true(r.futex_share > 0.7, 'futex share ' .. r.futex_share)
  end)

  it('counts a CPU-bound thread as running or runnable', function()
    local pid = assert(sys.spawn({ 'sh', '-c', 'while :; do :; done' }))
    sys.sleep(0.05)
    local r = assert(measure_threads.sample(pid, { duration = 0.4 }))
    stop(pid)
    assert.is_true(r.shares.running + r.shares.runnable > 0.9)
  end)

  it('reads the state from stat when a thread sleeps somewhere else than futex (stopped: T)', function()
    local pid = start(4, 'sleep')
    sys.kill(pid, 19) -- SIGSTOP
    sys.sleep(0.1)
    local r = assert(measure_threads.sample(pid, { duration = 0.3 }))
    sys.kill(pid, 18)
    stop(pid)
    assert.is_true(r.shares.other > 0.9, 'other ' .. r.shares.other)
    assert.equal(0, r.futex_share)
  end)

  it('stops with what it has when the process exits', function()
    local pid = assert(sys.spawn({ h.workload('threads100'), '4', 'sleep', '1' }, { stdout = '/dev/null' }))
    sys.sleep(0.2)
    -- unreaped, it turns into a zombie: that is an exit too
    local r = measure_threads.sample(pid, { duration = 3 })
    sys.wait(pid)
    assert.is_true(r.exited)
    assert.is_true(r.samples > 10)
    assert.is_true(r.samples < 140) -- stopped at the exit, not after the 3 s asked for
  end)

  it('stops cleanly when Ctrl-C asked to stop, keeping what it sampled', function()
    local pid = start(4, 'sleep')
    sys.request_stop()
    local r = measure_threads.sample(pid, { duration = 5 })
    sys.clear_stop()
    stop(pid)
    assert.is_true(r.stopped)
    assert.is_true(r.samples <= 1) -- at most the first tick
  end)

  it('accounts its cost when driven tick by tick from a caller\'s loop', function()
    local pid = start(10, 'sleep')
    local s = assert(threads.sampler(pid))
    for _ = 1, 10 do s:tick(); sys.sleep(0.02) end
    local r = s:result()
    s:close()
    stop(pid)
    assert.equal(10, r.samples)
    assert.is_true(r.duration_s > 0)
    assert.is_true(r.cost.cpu_s > 0)
    assert.is_number(r.cost.cpu_pct)
  end)

  it('returns "no process N" for a vanished pid', function()
    local r, err = measure_threads.sample(4194305)
    assert.is_nil(r)
    assert.equal('no process 4194305', err)
  end)
end)
