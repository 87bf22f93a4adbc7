-- Pure parts of thread-state accounting: /proc parsing, closing the books
-- at the window's edges, and naming and classifying waits, on recorded data.
local ffi = require('ffi')
local tsa_t = require('perf_manual.tracers.tsa')
local mt = require('perf_manual.measure.tsa')
local report = require('perf_manual.report.tsa')
local waits = require('perf_manual.waits')

local S = 1e9
-- syscall numbers of x86_64 used below
local NAMES = { [0] = 'read', [202] = 'futex', [230] = 'clock_nanosleep', [74] = 'fsync', [61] = 'wait4' }

local function ctx(fds)
  return { names = NAMES, frames = function() return { 'io_schedule', 'folio_wait_bit_common' } end,
    fd = function(_, fd) local l = fds and fds[fd]; return l, l and waits.fd_kind(l) end }
end

local function wait(sc, a0, state, extra)
  local w = { syscall = sc, arg0 = a0 or 0, arg1 = 0, kstack = -1, state = state or 'S', iowait = false,
    in_syscall = sc ~= nil }
  for k, v in pairs(extra or {}) do w[k] = v end
  return w
end

describe('perf_manual.measure.tsa', function()
  it('mirrors the BPF structs byte for byte', function()
    local bpf = require('perf_manual.bpf')
    local sz = tsa_t.sizeof()
    assert.equal(assert(bpf.btf_type('tsa', 'struct tsa_wait')).size, sz.wait)
    assert.equal(assert(bpf.btf_type('tsa', 'struct tsa_thread')).size, sz.thread)
    assert.equal(assert(bpf.btf_type('tsa', 'struct tsa_wkey')).size, sz.wkey)
    assert.equal(assert(bpf.btf_type('tsa', 'struct tsa_wval')).size, sz.wval)
    assert.equal(192, sz.thread)
  end)

  it('decodes a thread and a wait entry from map bytes', function()
    local th = ffi.new('struct pm_tsa_thread')
    th.cpu_ns, th.runq_ns, th.ts, th.first_ts, th.tgid, th.cur, th.events = 5, 6, 100, 50, 42, 3, 9
    th.exec, th.rdelay, th.first_exec, th.first_rdelay, th.start_time = 70, 20, 40, 10, 7
    th.wait.syscall, th.wait.arg0, th.wait.kstack, th.wait.state = 0, 3, -1, 1
    ffi.copy(th.comm, 'app')
    local key = ffi.new('uint32_t[1]', 43)
    local d = tsa_t.decode_thread(ffi.string(key, 4), ffi.string(th, ffi.sizeof(th)))
    assert.same({ 43, 42, 'blocked', 'app', 0, 3, 'S', true }, { d.tid, d.pid, d.cur, d.comm,
      d.wait.syscall, d.wait.arg0, d.wait.state, d.wait.in_syscall })
    assert.same({ 70, 20, 40, 10, 7, 9 }, { d.exec, d.rdelay, d.first_exec, d.first_rdelay, d.start_time, d.events })
    local k = ffi.new('struct pm_tsa_wkey')
    k.tid, k.wait.syscall, k.wait.state, k.wait.kstack = 43, -1, 0x102, 7
    local v = ffi.new('struct pm_tsa_wval', { 900, 3, 500 })
    local e = tsa_t.decode_wait_entry(ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v)))
    assert.same({ 43, 900, 3, 'D', true, false, 7 }, { e.tid, e.ns, e.count, e.wait.state, e.wait.iowait,
      e.wait.in_syscall, e.wait.kstack })
    k.wait.syscall = -2
    e = tsa_t.decode_wait_entry(ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v)))
    assert.is_true(e.wait.kthread)
    assert.is_nil(e.wait.in_syscall)
  end)

  it('closes the books at both edges with the kernel counters, so every thread sums to its life', function()
    local t0, t1 = 1000 * S, 1010 * S
    local B = 50 * S -- a thread's counters at t0
    local books = { t0_ns = t0, t1_ns = t1, stacks = {}, counters = {},
      threads = {
        -- asleep on a pipe at t0; first switch-out at t0+2s after 0.2 s on CPU and 0.1 s
        -- runnable; asleep on the pipe again at its last switch-out, t1-1s
        { tid = 10, pid = 10, comm = 'reader', cpu_ns = 1 * S, runq_ns = 0.5 * S, ts = t1 - 1 * S,
          first_ts = t0 + 2 * S, first_exec = B + 0.2 * S, first_rdelay = B + 0.1 * S,
          exec = B + 1.2 * S, rdelay = B + 0.6 * S, start_time = S, cur = 'blocked', wait = wait(0, 3) },
        -- born at t0+4s, first switch-out at t0+4.5s, exited at t0+6s
        { tid = 11, pid = 10, comm = 'worker', cpu_ns = 1.2 * S, runq_ns = 0.3 * S, ts = t0 + 6 * S,
          first_ts = t0 + 4.5 * S, first_exec = 0.3 * S, first_rdelay = 0.1 * S, exec = 1.5 * S,
          rdelay = 0.4 * S, start_time = t0 + 4 * S, cur = 'dead', wait = wait(nil) },
        -- on CPU from t0 to its first switch-out; preempted at t1-0.5s
        { tid = 12, pid = 10, comm = 'spin', cpu_ns = 7 * S, runq_ns = 1.5 * S, ts = t1 - 0.5 * S,
          first_ts = t0 + 1 * S, first_exec = B + 1 * S, first_rdelay = B, exec = B + 8 * S,
          rdelay = B + 1.5 * S, start_time = S, cur = 'runq', wait = wait(nil) },
      },
      waits = {
        { tid = 10, wait = wait(0, 3), ns = 5.5 * S, count = 9, max_ns = S },
        { tid = 10, wait = wait(230, 0), ns = 0 * S, count = 0, max_ns = 0 },
      } }
    local snap0 = { [10] = { tid = 10, pid = 10, state = 'S', syscall = { nr = 0, args = { 3, 0, 1 } },
      frames = { 'anon_pipe_read', 'vfs_read' }, schedstat = { run_ns = B, wait_ns = B } },
      [12] = { tid = 12, pid = 10, state = 'R', schedstat = { run_ns = B, wait_ns = B } },
      -- a thread with no event in the window: from /proc
      [13] = { tid = 13, pid = 10, comm = 'idle', state = 'S', syscall = { nr = 230, args = { 0, 0 } },
        schedstat = { run_ns = 100, wait_ns = 0 } } }
    local snap1 = { [10] = { schedstat = { run_ns = B + 1.3 * S, wait_ns = B + 0.6 * S } },
      [12] = { schedstat = { run_ns = B + 8.3 * S, wait_ns = B + 1.5 * S } },
      [13] = { schedstat = { run_ns = 100 + 0.1 * S, wait_ns = 0.05 * S } } }
    local threads, total = mt.finish(mt.build(books, snap0, snap1, ctx({ [3] = 'pipe:[77]' })))
    local by = {}
    for _, th in ipairs(threads) do by[th.tid] = th end
    -- reader: head 0.2 CPU + 0.1 runnable + 1.7 on the pipe (named from /proc at t0),
    -- 5.5 s closed, tail 0.1 CPU + 0.9 on the pipe (its last key)
    assert.near(10, by[10].life_s, 1e-9)
    assert.near(8.1, by[10].states.ipc, 1e-9)
    assert.near(1.3, by[10].states.cpu, 1e-9)
    assert.near(0.6, by[10].states.runq, 1e-9)
    assert.equal('read', by[10].waits[1].syscall)
    assert.equal('pipe', by[10].waits[1].fd_kind)
    assert.equal('pipe:[77]', by[10].waits[1].fd_link)
    assert.near(81, by[10].waits[1].share, 1e-9)
    -- worker: its life is its 2 s, counted from zero at its birth
    assert.near(2, by[11].life_s, 1e-9)
    assert.near(4, by[11].born_s, 1e-9)
    assert.near(6, by[11].exited_s, 1e-9)
    assert.near(1.5, by[11].states.cpu, 1e-9)
    assert.near(0.4, by[11].states.runq, 1e-9)
    -- spin: 1 s head on CPU + 7 + 0.3 of the tail; runnable 1.5 + the tail's other 0.2
    assert.near(8.3, by[12].states.cpu, 1e-9)
    assert.near(1.7, by[12].states.runq, 1e-9)
    -- idle: schedstat deltas, the rest asleep in clock_nanosleep
    assert.equal('/proc', by[13].source)
    assert.near(0.1, by[13].states.cpu, 1e-9)
    assert.near(0.05, by[13].states.runq, 1e-9)
    assert.near(9.85, by[13].states.sleep, 1e-9)
    for _, th in ipairs(threads) do
      local sum = 0
      for _, k in ipairs(waits.STATES) do sum = sum + th.shares[k] end
      assert.near(100, sum, 1e-6, 'tid ' .. th.tid)
    end
    assert.near(32, total.life_s, 1e-9)
  end)

  it('clamps counters that disagree with the clock, and a thread without a T0 snapshot keeps its head blocked',
    function()
    local t0, t1 = 1000 * S, 1002 * S
    local raw = { threads = {
      -- counters ran ahead of the interval (read after T1): clamped to the tail
      { tid = 20, pid = 20, comm = 'a', cpu_ns = 0, runq_ns = 0, ts = t0 + 1 * S, first_ts = t0 + 1 * S,
        first_exec = 10 * S, first_rdelay = 0, exec = 10 * S, rdelay = 0, start_time = 1, cur = 'runq',
        wait = wait(nil) },
      -- no T0 snapshot and born before T0
      { tid = 21, pid = 20, comm = 'b', cpu_ns = 0, runq_ns = 0, ts = t0 + 1 * S, first_ts = t0 + 0.5 * S,
        first_exec = 5 * S, first_rdelay = 0, exec = 5 * S, rdelay = 0, start_time = 1, cur = 'blocked',
        wait = wait(0, 3) },
    }, waits = {} }
    local e0 = { [20] = { run_ns = 9.5 * S, wait_ns = 0 } }
    local e1 = { [20] = { run_ns = 13 * S, wait_ns = 0 }, [21] = { run_ns = 5 * S, wait_ns = 0 } }
    local by = {}
    for _, a in ipairs(tsa_t.account(raw, t0, t1, e0, e1)) do by[a.tid] = a end
    assert.equal(1.5 * S, by[20].cpu_ns) -- 0.5 s of the head + the whole 1 s tail, not 3 s
    assert.equal(0.5 * S, by[20].head.blocked_ns)
    assert.equal(2 * S, by[20].life_ns)
    assert.is_true(by[21].head.unknown)
    assert.equal(0.5 * S, by[21].head.blocked_ns)
    assert.equal(1 * S, by[21].tail and by[21].tail.ns or by[21].blocked[1].ns)
  end)

  it('names waits: futex address and op, fsync as io, D-state frames, page faults, kernel threads', function()
    local c = ctx({ [5] = '/var/tmp/x.dat' })
    local f = mt.describe(1, { syscall = 202, arg0 = 0x7f0010, arg1 = 128, state = 'S' }, c)
    assert.same({ 'lock', 'futex', 0x7f0010, 'wait' }, { f.reason, f.syscall, f.addr, f.futex_op })
    local io = mt.describe(1, { syscall = 74, arg0 = 5, state = 'D', iowait = true }, c)
    assert.same({ 'io', 5, 'file' }, { io.reason, io.fd, io.fd_kind })
    local pf = mt.describe(1, { in_syscall = false, state = 'D' }, c)
    assert.equal('memory', pf.reason)
    local kt = mt.describe(1, { kthread = true, state = 'S' }, c)
    assert.equal('other', kt.reason)
    local d = mt.describe(1, { syscall = 0, arg0 = 9, state = 'D', frames = { 'io_schedule' } }, c)
    assert.equal('io', d.reason)
  end)

  it('parses /proc syscall, stack, schedstat and the socket tables', function()
    assert.same({ running = true }, mt.parse_syscall('running\n'))
    assert.same({ nr = -1, args = {} }, mt.parse_syscall('-1 0x7ffd1 0x401000\n'))
    local s = mt.parse_syscall('0 0x3 0x7ffc 0x1 0x0 0x0 0x0 0x7ffd1 0x401000\n')
    assert.same({ 3, 0x7ffc, 1, 0, 0, 0 }, s.args)
    assert.same({ 'do_nanosleep', 'hrtimer_nanosleep' },
      mt.parse_stack('[<0>] do_nanosleep+0x6b/0x1b0\n[<0>] hrtimer_nanosleep+0x9a/0x150\n'))
    assert.same({ run_ns = 123, wait_ns = 45, slices = 6 }, mt.parse_schedstat('123 45 6\n'))
    assert.equal('D', mt.parse_state('12 (a b) D 1 2'))
    local socks = mt.socket_table(test_helpers.root .. '/tests/fixtures/tsa/proc')
    assert.equal('tcp', socks[4242])
    assert.equal('unix', socks[5151])
  end)

  it('draws a bar per thread that adds up to its width, and the wait line', function()
    local bar = report.bar({ ipc = 74.7, sleep = 25.2, cpu = 0.1 }, 50)
    assert.equal(50, #bar)
    assert.equal(string.rep('P', 37) .. string.rep('S', 13), bar)
    assert.equal('waits on pid 4242 (feeder) via pipe: 75% of wall time',
      report.wait_line({ text = 'pid 4242 (feeder) via pipe', share = 74.7, reason = 'ipc' }))
    assert.equal('waits on pipe: read(fd 3 pipe:[9]): 75% of wall time',
      report.wait_line({ reason = 'ipc', syscall = 'read', fd = 3, fd_link = 'pipe:[9]', share = 75 }))
  end)
end)
