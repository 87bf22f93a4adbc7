-- perf_manual.measure.top: the numbers behind `top`, on real /proc files
-- and on recorded tracer reads.
local mt = require('perf_manual.measure.top')
local process = require('perf_manual.collectors.process')
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')

describe('perf_manual.measure.top', function()
  it('reads /proc/PID/stat as the process collector does, for every process', function()
    local dirent = require('posix.dirent')
    local n = 0
    for _, name in ipairs(dirent.dir('/proc')) do
      local text = name:match('^%d+$') and util.readfile('/proc/' .. name .. '/stat')
      if text then
        local want, got = process.parse_stat(text), mt.parse_stat(text)
        assert.equal(want.pid, got.pid)
        assert.equal(want.comm, got.comm)
        assert.equal(want.state, got.state)
        assert.equal(want.utime + want.stime, got.ticks)
        assert.equal(want.num_threads, got.threads)
        assert.equal(want.starttime, got.starttime)
        assert.equal(want.rss, got.rss_pages)
        n = n + 1
      end
    end
    assert.is_true(n > 5)
  end)

  it('takes a command name with spaces and parentheses to the last paren', function()
    local text = '4242 (a) (b c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 2 0 12345 1000000 300 '
      .. '18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n'
    local st = mt.parse_stat(text)
    assert.same({ pid = 4242, comm = 'a) (b c', state = 'S', ticks = 10, threads = 2, starttime = 12345,
      rss_pages = 300 }, st)
    assert.is_nil(mt.parse_stat('not a stat line'))
    assert.is_nil(mt.parse_stat(nil))
  end)

  it('samples every process, keeping their files open between samples', function()
    local fds = { n = 0 }
    local a = mt.sample_procs(nil, fds)
    local me = sys.getpid()
    assert.is_truthy(a[me])
    assert.equal(a[me].threads, tonumber(util.readfile('/proc/self/stat'):match('^%d+ %b() %a' .. (' %S+'):rep(16)
      .. ' (%d+)')))
    assert.is_true(fds.n > 0)
    local kept = fds[tostring(me)]
    local b = mt.sample_procs(nil, fds)
    assert.equal(kept, fds[tostring(me)])
    assert.is_true(b[me].ticks >= a[me].ticks)
    mt.close_procs(fds)
  end)

  it('turns two samples into CPU% of one CPU; a new process counts all its ticks, a reused pid restarts', function()
    local prev = { [1] = { pid = 1, comm = 'a', ticks = 100, starttime = 5 },
                   [2] = { pid = 2, comm = 'b', ticks = 50, starttime = 6 } }
    local cur = { [1] = { pid = 1, comm = 'a', ticks = 150, starttime = 5, rss_pages = 2 },
                  [2] = { pid = 2, comm = 'b2', ticks = 20, starttime = 99 },
                  [3] = { pid = 3, comm = 'c', ticks = 10, starttime = 100 } }
    local rows = mt.proc_rows(prev, cur, 2, 100, 4096)
    local by = {}
    for _, r in ipairs(rows) do by[r.pid] = r end
    assert.equal(25, by[1].cpu_pct)      -- 50 ticks of 1/100 s in 2 s
    assert.equal(8192, by[1].rss_bytes)
    assert.equal(10, by[2].cpu_pct)      -- pid reused: its 20 ticks are all new
    assert.equal(5, by[3].cpu_pct)
    assert.is_nil(mt.proc_rows(nil, cur, 2, 100, 4096)[1].cpu_pct)
  end)

  it('makes per-second figures per process from the tracers\' reads', function()
    local per = mt.per_process(2, {
      sched = { unit = 'usecs', groups = { { pid = 7, total = 40000 } } },
      offcpu = { tasks = { { tgid = 7, pid = 7, total_us = 500000 }, { tgid = 7, pid = 8, total_us = 300000 },
        { tgid = 7, pid = 8, total_us = 200000 },
        -- a block that began long before the interval: held to the interval
        { tgid = 9, pid = 9, total_us = 60e6 } } },
      io = { { tgid = 7, lat_ns = 1e6 }, { tgid = 7, lat_ns = 3e6 } },
      syscalls = { [7] = 1000, [9] = 4 },
    })
    assert.equal(20, per[7].runq_ms)          -- 40 ms over 2 s
    assert.equal(500, per[7].offcpu_ms)       -- 1 s over 2 s, two threads
    assert.equal(1000, per[9].offcpu_ms)      -- at most the whole interval per thread
    assert.equal(2, per[7].iolat_ms)
    assert.equal(1, per[7].iops)
    assert.equal(500, per[7].sysc)
    assert.equal(2, per[9].sysc)
  end)

  it('leaves a column unmeasured when its tracer is missing, 0 when it saw nothing', function()
    local rows = mt.merge({ { pid = 1 }, { pid = 2 } }, { [1] = { runq_ms = 3, sysc = 9 } },
      { sched = true, syscalls = true })
    assert.equal(3, rows[1].runq_ms)
    assert.equal(0, rows[2].runq_ms)
    assert.equal(0, rows[2].sysc)
    assert.is_nil(rows[1].offcpu_ms)
    assert.is_nil(rows[1].iolat_ms)
  end)

  it('without BPF, measures the /proc columns and names the others as missing', function()
    local notes = {}
    local s = mt.start{ bpf = false, note = function(t) notes[#notes + 1] = t end }
    sys.sleep(0.2)
    local f = s:tick()
    s:stop()
    assert.equal('not asked (--no-bpf)', f.missing.runq)
    assert.equal('not asked (--no-bpf)', f.missing.sysc)
    assert.equal(4, #notes)
    local me
    for _, r in ipairs(f.procs) do if r.pid == sys.getpid() then me = r end end
    assert.is_truthy(me)
    assert.is_number(me.cpu_pct)
    assert.is_nil(me.runq_ms)
    local cpu
    for _, r in ipairs(f.use.rows) do if r.resource == 'cpu' then cpu = r end end
    assert.is_truthy(cpu.utilization.text)
    assert.is_number(f.cost.self_cpu_pct)
  end)

  it('with BPF, counts its own syscalls and its own blocked time', function()
    if not test_helpers.need_root('BPF tracers') then return end
    local s = mt.start{}
    s:tick() -- the first interval holds the tracers' start-up
    local t0 = sys.now()
    -- blocked in nanosleep for about 0.3 s
    sys.sleep(0.3)
    local f = s:tick()
    local el = sys.now() - t0
    s:stop()
    assert.same({}, f.missing)
    local me
    for _, r in ipairs(f.procs) do if r.pid == sys.getpid() then me = r end end
    assert.is_truthy(me)
    -- the sleep, the /proc reads and the map reads are syscalls of this process
    assert.is_true(me.sysc > 0, 'syscalls/s ' .. tostring(me.sysc))
    assert.is_true(me.offcpu_ms * f.elapsed >= 250 and me.offcpu_ms * f.elapsed <= el * 1e3 + 50,
      string.format('blocked %.0f ms of a %.0f ms interval', me.offcpu_ms * f.elapsed, el * 1e3))
    assert.is_number(me.runq_ms)
    for _, b in ipairs(f.cost.bpf) do assert.is_string(b.name) end
  end)
end)
