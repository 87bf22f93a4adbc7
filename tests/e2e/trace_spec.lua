-- The syscall and sched tracers and `perf_manual trace` against real
-- workloads (tests/workloads/syscall_loop.c, cpu_burn.c).
local h = test_helpers
local sys = require('perf_manual._c.sys')
local W = require('e2e.workload')
local util = require('perf_manual.util')

-- syscall_loop "wait" blocks SIGUSR1 then sleeps in sigwait: signal it only
-- once it sleeps there (before, SIGUSR1 would kill it)
local function wait_blocked_usr1(pid)
  for _ = 1, 1000 do
    if (util.readfile('/proc/' .. pid .. '/wchan') or ''):match('sigtimedwait') then return true end
    sys.sleep(0.01)
  end
  error('syscall_loop never got ready')
end

-- getppid() calls made by the test process itself (outside the target)
local ffi = require('ffi')
pcall(ffi.cdef, 'int getppid(void);')
local function getppid_burst()
  for _ = 1, 1000 do ffi.C.getppid() end
end

local function getppid_row(res)
  for _, r in ipairs(res.syscalls) do
    if r.name == 'getppid' then return r end
  end
end

describe('trace e2e #priv', function()
  it('counts the getppid calls of syscall_loop, in latency and count modes', function()
    if not h.need_root() then return end
    local syscall = require('perf_manual.tracers.syscall')
    for _, mode in ipairs({ 'latency', 'count' }) do
      local N = 100000
      W.with('syscall_loop', { tostring(N), 'wait' }, {}, function(w)
        local t = assert(syscall.start { pid = w.pid, mode = mode })
        wait_blocked_usr1(w.pid)
        sys.kill(w.pid, 10)
        assert.equal('exited', w:wait(30))
        local res = t:stop()
        local row = assert(getppid_row(res), 'no getppid row')
        -- every call is seen: the tracer attached before the loop started
        assert.is_true(math.abs(row.count - N) <= N * 0.001, mode .. ': counted ' .. row.count)
        assert.equal('raw_tp', res.quality.attach_path)
        assert.equal(0, res.quality.events_lost)
        -- no loop drives the sampling windows here: run time was counted all along
        assert.is_true(res.quality.bpf_runs_sampled >= N)
        assert.is_true(res.quality.bpf_stats_coverage > 0.99)
        if mode == 'latency' then
          assert.equal(0, row.errors)
          assert.is_true(row.avg_ns > 0 and row.avg_ns < 1e6)
          local sum = 0
          for _, b in ipairs(row.buckets) do sum = sum + b.count end
          assert.equal(row.count, sum)
        else
          assert.is_nil(row.avg_ns) -- not measured in count mode, not 0
        end
      end)
    end
  end)

  it('filters by cgroup: counts the getppid calls of a process in it, not ours', function()
    if not h.need_root() then return end
    local syscall = require('perf_manual.tracers.syscall')
    local root = require('perf_manual.tracers.base').cgroup2_root()
    assert(root, 'no cgroup v2 hierarchy mounted')
    local dir = root .. '/pm_trace_test_' .. sys.getpid()
    assert(os.execute('mkdir ' .. dir) == 0, 'cannot make ' .. dir)
    local out = os.tmpname()
    local ok, err = pcall(function()
      local pid = assert(sys.spawn({ h.workload('syscall_loop'), '20000', 'wait' },
        { join = dir .. '/cgroup.procs', stdout = out }))
      local t = assert(syscall.start { cgroup = dir, mode = 'count' })
      getppid_burst()
      wait_blocked_usr1(pid)
      sys.kill(pid, 10)
      sys.wait(pid)
      local res = t:stop()
      local row = assert(getppid_row(res))
      assert.equal(20000, row.count) -- exactly the workload's: ours are outside the cgroup
    end)
    os.remove(out)
    for _ = 1, 50 do
      if os.execute('rmdir ' .. dir .. ' 2>/dev/null') == 0 then break end
      sys.sleep(0.02)
    end
    if not ok then error(err, 0) end
  end)

  it('run-queue latency grows with more runnable threads than cores', function()
    if not h.need_root() then return end
    local sched = require('perf_manual.tracers.sched')
    local ncpu = sys.info().ncpu
    h.with_machine_lock(function()
      local res = {}
      for _, n in ipairs({ 1, ncpu * 3 }) do
        W.with('cpu_burn', { tostring(n), '4' }, {}, function(w)
          sys.sleep(0.2) -- threads started
          local t = assert(sched.start { pid = w.pid })
          sys.sleep(1.5)
          res[n] = t:stop()
        end)
      end
      local lo, hi = res[1], res[ncpu * 3]
      assert.is_true(hi.count > 50, 'wakeups ' .. hi.count)
      local lo_avg = lo.avg or 0
      assert.is_true(hi.avg > 3 * lo_avg and hi.avg > 500,
        string.format('avg run-queue latency: 1 thread %.1f us, %d threads %.1f us', lo_avg, ncpu * 3, hi.avg))
      -- run-queue length is system-wide (other load counts too): with 3 spinning
      -- threads per CPU every CPU holds at least 3 runnable tasks
      assert.is_true(hi.runqlen.mean > 2.5, 'run-queue length mean ' .. hi.runqlen.mean)
    end)
  end)

  it('measures run-queue latency through the raw_tp fallback too', function()
    if not h.need_root() then return end
    local sched = require('perf_manual.tracers.sched')
    W.with('cpu_burn', { tostring(sys.info().ncpu * 2), '3' }, {}, function(w)
      local t = assert(sched.start { pid = w.pid, attach = 'raw_tp', per = 'process' })
      sys.sleep(0.5)
      local res = t:stop()
      assert.equal('raw_tp', res.quality.attach_path)
      assert.is_true(res.count > 0)
      assert.equal(w.pid, res.groups[1].pid)
      assert.equal('cpu_burn', res.groups[1].comm)
    end)
  end)

  it('trace stops cleanly with what it had when the traced process exits', function()
    if not h.need_root() then return end
    W.with('syscall_loop', { '50000', 'wait' }, {}, function(w)
      local out, err = os.tmpname(), os.tmpname()
      local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'trace', '--events', 'syscalls', '--pid',
        tostring(w.pid), '--duration', '60' }, { stdout = out, stderr = err }))
      local ok, cerr = pcall(function()
        for _ = 1, 1000 do
          if (util.readfile(out) or ''):match('Hit Ctrl%-C') then break end
          sys.sleep(0.01)
        end
        wait_blocked_usr1(w.pid)
        sys.kill(w.pid, 10)
        local how, code = sys.wait(pid) -- --duration 60: it ends because the target exited
        assert.same({ 'exited', 0 }, { how, code })
      end)
      if not ok then sys.kill(pid, 9); sys.wait(pid) end
      local text, etext = util.readfile(out), util.readfile(err)
      os.remove(out); os.remove(err)
      if not ok then error(cerr, 0) end
      assert.matches('getppid%s+50000%s', text)
      assert.matches('process ' .. w.pid .. ' exited after', etext)
      assert.matches('quality: attach raw_tp', text)
    end)
  end)

  it('Ctrl-C prints the final histograms and flushes the JSON', function()
    if not h.need_root() then return end
    local out, err = os.tmpname(), os.tmpname()
    local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'trace', '--events', 'syscalls', '--duration', '120',
      '--json' }, { stdout = out, stderr = err }))
    -- attached once the process holds a BPF link (its fdinfo names a link_type)
    local dirent = require('posix.dirent')
    local attached = false
    for _ = 1, 1000 do
      for _, fd in ipairs(dirent.dir('/proc/' .. pid .. '/fdinfo') or {}) do
        if (util.readfile('/proc/' .. pid .. '/fdinfo/' .. fd) or ''):match('link_type') then attached = true end
      end
      if attached then break end
      sys.sleep(0.01)
    end
    sys.kill(pid, 2)
    local how, code = sys.wait(pid)
    local text = util.readfile(out)
    os.remove(out); os.remove(err)
    assert.is_true(attached)
    assert.same({ 'exited', 0 }, { how, code })
    local doc = assert(util.json_decode(text))
    assert.equal('interrupted', doc.ended_by)
    assert.is_number(doc.intervals[1].results.syscalls.total.count)
  end)

  it('trace --json gives every tracer with its quality and detaches over budget', function()
    if not h.need_root() then return end
    local out, err, st = h.pm('trace --events syscalls,sched --duration 1.5 --max-overhead 0.00001 --json')
    assert.equal(0, st, err)
    local doc = assert(util.json_decode(out))
    local res = doc.intervals[1].results
    assert.equal('raw_tp', res.syscalls.quality.attach_path)
    -- raw_tp when the build's cut-down BTF fits this kernel, else tp_btf
    local want = require('perf_manual.tracers.base').prefer_raw_tp() and 'raw_tp' or 'tp_btf'
    assert.matches('^' .. want, res.sched.quality.attach_path)
    assert.is_number(res.syscalls.quality.events_lost)
    assert.is_number(res.sched.quality.bpf_run_time_ns)
    assert.matches('syscall tracer detached: its BPF programs used', table.concat(doc.notes, '\n'))
    assert.is_string(res.syscalls.quality.detached)
  end)
end)

describe('trace CLI bad input', function()
  it('lists the valid events for an unknown one, exit 2', function()
    local out, err, st = h.pm('trace --events syscalls,bogus --duration 1')
    assert.equal(2, st)
    assert.equal('', out)
    assert.matches("^perf_manual: trace: unknown event 'bogus'; valid events: [%w, ]*sched[%w, ]*syscalls", err)
  end)

  it('rejects a missing process, --pid with --cgroup and a zero duration', function()
    local _, err, st = h.pm('trace --pid 4194303 --duration 1')
    assert.equal(2, st)
    assert.equal('perf_manual: trace: no process 4194303\n', err)
    _, err, st = h.pm('trace --pid 1 --cgroup x --duration 1')
    assert.equal(2, st)
    assert.equal('perf_manual: trace: give --pid or --cgroup, not both\n', err)
    _, err, st = h.pm('trace --cgroup no/such/group --duration 1')
    assert.equal(2, st)
    assert.equal('perf_manual: trace: no cgroup no/such/group\n', err)
    _, err, st = h.pm('trace --duration 0')
    assert.equal(2, st)
    assert.equal('perf_manual: trace: --duration must be more than 0\n', err)
    _, err, st = h.pm('trace --per thread')
    assert.equal(2, st)
    assert.matches("bad value for %-%-per 'thread'", err)
  end)
end)
