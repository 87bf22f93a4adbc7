-- use-check against workloads of known behaviour: the verdict must name the
-- resource each one saturates, and none for the sleeping control.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

local MiB = 1024 * 1024

-- runs the real CLI with --json; returns the decoded document
local U = require('e2e.use')
local use_check, row, explain = U.check, U.row, U.explain

describe('use-check end to end', function()
  teardown(function() W.cleanup_scratch() end)

  it('names the CPU for more runnable threads than cores (pid and system)', function()
    h.with_machine_lock(function()
      W.with('cpu_burn', { 4, 12 }, {}, function(w)
        sys.sleep(0.3)
        -- a busy machine (a build beside the test) makes the system-wide sched
        -- tracer dear: the budget has its own tests, this one is about the CPU
        local d = use_check(w.pid, 3, '--max-overhead 20')
        assert.equal('cpu', d.verdict.resource, explain(d))
        assert.equal('HIGH', row(d, 'cpu').status)
        assert.is_true(d.measures.task.runq_wait_pct > 50, explain(d))
        local s = use_check('system', 3, '--max-overhead 20')
        assert.equal('cpu', s.verdict.resource, explain(s))
        if h.need_root('BPF run-queue latency') then
          -- the pid's saturation came from BPF run-queue latency, and agrees
          -- with the kernel's own schedstat accounting of the same waits
          assert.equal('bpf', d.sources.cpu_saturation.source, util.json_encode(d.sources.cpu_saturation))
          assert.equal('sched', d.sources.cpu_saturation.tracer)
          assert.matches('^BPF run%-queue latency %(sched tracer', row(d, 'cpu').saturation.source)
          local rq = d.measures.bpf.runq
          -- 4 spinning threads on 2 cores: about 2 of them wait at any time
          assert.is_true(rq.waiting_avg > 1.2 and rq.waiting_avg < 3, explain(d))
          assert.is_true(math.abs(100 * rq.waiting_avg - d.measures.task.runq_wait_pct) < 40,
            string.format('BPF %.0f%% vs schedstat %.0f%%', 100 * rq.waiting_avg, d.measures.task.runq_wait_pct))
          assert.is_true(rq.p99_ns > 1e6, 'p99 run-queue latency ' .. rq.p99_ns .. ' ns')
          assert.equal('bpf', s.sources.cpu_saturation.source, util.json_encode(s.sources.cpu_saturation))
          assert.is_true(s.measures.bpf.runq.waiting_avg / s.measures.ncpu >= 0.5, explain(s))
          assert.matches('run%-queue latency avg', row(s, 'cpu').saturation.text)
        end
      end)
    end)
  end)

  it('names memory, not CPU or disk, for reclaim inside a 64 MiB cgroup', function()
    if not h.need_root('memory cgroups') then return end
    h.with_machine_lock(function()
      W.with('mem_pressure', { 15, W.scratch(), 96, 40 }, { memory_limit = 64 * MiB }, function(w)
        -- wait until it has written its file and re-reads it under the limit
        assert(W.wait_until(function() return (W.io(w.pid, 'rchar') or 0) > 128 * MiB end, 20),
          'mem_pressure did not start re-reading its file')
        local d = use_check(w.pid, 4)
        assert.equal('memory', d.verdict.resource, explain(d))
        assert.are_not.equal('HIGH', row(d, 'cpu').status)
        local cg = d.measures.cgroup_memory
        assert.is_table(cg, 'no cgroup memory measures')
        assert.equal(64 * MiB, cg.limit_bytes)
        assert.is_true(cg.limit_hits_per_s > 0, explain(d))
      end)
    end)
  end)

  it('counts an OOM kill in a cgroup target and names memory', function()
    if not h.need_root('memory cgroups') then return end
    h.with_machine_lock(function()
      -- a quiet process keeps the 64 MiB cgroup alive and is the target's tenant
      W.with('sleeper', { 15 }, { memory_limit = 64 * MiB }, function(quiet)
        local out = os.tmpname()
        local pm = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'use-check', '--target', quiet.cgroup.dir,
          '--duration', '4', '--json' }, { stdout = out, stderr = 'null' }))
        local ok, err = pcall(function()
          sys.sleep(1)
          -- 100 MiB of anonymous memory cannot fit: the OOM killer takes it
          local hog = W.start('mem_pressure', { 10, W.scratch(), 1, 100 }, { join = quiet.cgroup })
          local how, sig = hog:wait(10)
          assert.equal('signaled', how)
          assert.equal(9, sig)
          local st, code = sys.wait(pm)
          assert.equal('exited', st)
          assert.equal(0, code)
          local d = assert(util.json_decode(assert(util.readfile(out))))
          assert.equal('cgroup', d.target.kind)
          assert.equal('memory', d.verdict.resource, explain(d))
          assert.is_true(d.measures.cgroup_memory.oom_kills >= 1, explain(d))
          assert.matches('cgroup %d+ OOM kills?', row(d, 'memory').errors.text)
          -- the victim by pid and name, as the kernel log has it
          assert.matches('killed: pid ' .. hog.pid .. ' %(mem_pressure%)', row(d, 'memory').errors.text)
        end)
        if not ok then sys.kill(pm, 9); sys.wait(pm) end
        os.remove(out)
        assert(ok, err)
      end)
    end)
  end)

  it('names the disk for an fsync-heavy writer', function()
    h.with_machine_lock(function()
      W.with('fsync_writer', { 12, W.scratch() }, {}, function(w)
        sys.sleep(0.5)
        -- ~7,000 requests/s put the io tracer near the default 5% budget; the
        -- budget has its own tests, this one is about naming the disk
        local d = use_check(w.pid, 4, '--max-overhead 20')
        assert.equal('disk', d.verdict.resource, explain(d))
        assert.is_nil(d.verdict.name:match('^zram') or d.verdict.name:match('^loop'))
        assert.are_not.equal('HIGH', row(d, 'cpu').status)
        if h.need_root('BPF block I/O latency') then
          local disk = row(d, 'disk')
          assert.equal('bpf', d.sources.disk_saturation.source, util.json_encode(d.sources.disk_saturation))
          assert.matches('^block latency p50 ', disk.saturation.text)
          assert.matches('^BPF block I/O latency %(io tracer', disk.saturation.source)
          assert.matches('^%d+ I/O errors?$', disk.errors.text)
          local dev = d.measures.bpf.io.devices[d.verdict.name]
          assert.is_table(dev, 'no BPF figures for ' .. d.verdict.name)
          assert.is_true(dev.count > 100, 'requests ' .. dev.count)
          -- the culprit: the files its threads sync, as its own fd table names them, on that device
          local c = d.culprits.disk
          assert.is_table(c, explain(d))
          local open = {}
          for link in h.sh('readlink /proc/' .. w.pid .. '/fd/*'):gmatch('[^\n]+') do open[link] = true end
          assert.is_true(open[c.file], c.file .. ' is not open in pid ' .. w.pid)
          assert.equal(4, c.files, c.text)
          assert.equal(d.verdict.name, c.device)
          assert.equal('fsync', c.syscall)
        end
      end)
    end)
  end)

  it('names the lock, not the CPU, for 8 threads on one mutex', function()
    h.with_machine_lock(function()
      W.with('mutex_contention', { 8, 12 }, {}, function(w)
        sys.sleep(0.3)
        local d = use_check(w.pid, 3)
        assert.equal('lock', d.verdict.resource, explain(d))
        assert.are_not.equal('HIGH', row(d, 'cpu').status)
        assert.is_true(d.measures.lock.waiters_avg >= 2, explain(d))
        if h.need_root('BPF lock tracer') then
          assert.equal('bpf', d.sources.locks.source)
          assert.equal('bpf', d.measures.lock.source)
          assert.matches('^BPF futex waits %(lock tracer', row(d, 'lock').saturation.source)
          -- the one mutex all 8 threads share is the hot lock, of the lock kind
          assert.equal(w.pid, d.measures.lock.hot.tgid)
          assert.is_true(d.measures.lock.hot.mean_waiters >= 2, explain(d))
          assert.is_true(d.measures.lock.lock_share_pct > 50, explain(d))
          assert.equal(0, d.measures.lock.errors.total)
        end
      end)
    end)
  end)

  it('names a process queued on its own lock from a system-wide check (BPF)', function()
    if not h.need_root('BPF lock tracer') then return end
    h.with_machine_lock(function()
      W.with('mutex_contention', { 8, 12 }, {}, function(w)
        sys.sleep(0.3)
        local s = use_check('system', 3)
        local lock = row(s, 'lock')
        assert.equal('bpf', s.sources.locks.source)
        assert.equal(w.pid, s.measures.lock.hot.tgid, explain(s))
        assert.matches('hottest user lock 0x%x+ in pid ' .. w.pid .. ' %(mutex_contentio%)', lock.saturation.text)
        assert.equal('warn', lock.status, explain(s))
        assert.matches('run use%-check %-%-target ' .. w.pid, lock.notes[1])
      end)
    end)
  end)

  it('falls back to /proc, PSI and schedstat with --no-bpf, and says so', function()
    h.with_machine_lock(function()
      W.with('cpu_burn', { 4, 12 }, {}, function(w)
        sys.sleep(0.3)
        local d = use_check(w.pid, 2, '--no-bpf')
        assert.equal('cpu', d.verdict.resource, explain(d))
        assert.equal('schedstat, PSI, /proc/stat', d.sources.cpu_saturation.source)
        assert.equal('turned off (--no-bpf)', d.sources.cpu_saturation.why)
        assert.equal('thread states in /proc/PID/task', d.sources.locks.source)
        assert.is_nil(d.measures.bpf.runq)
        assert.matches('schedstat', row(d, 'cpu').saturation.source)
        local out = h.pm('use-check --target ' .. w.pid .. ' --duration 1 --no-bpf')
        assert.matches('\nsource: CPU saturation from schedstat, PSI, /proc/stat; disk saturation from '
          .. '/proc/diskstats, PSI; locks from thread states in /proc/PID/task; network saturation and errors from '
          .. '/proc/net/snmp and netstat counters %(BPF not used: turned off %(%-%-no%-bpf%)%)', out)
      end)
    end)
  end)

  it('names nothing for the sleeping control', function()
    h.with_machine_lock(function()
      W.with('sleeper', { 12 }, {}, function(w)
        local d = use_check(w.pid, 3)
        assert.is_nil(d.verdict.resource, explain(d))
        assert.matches('^no resource saturated', d.verdict.text)
        for _, r in ipairs(d.rows) do assert.are_not.equal('HIGH', r.status, explain(d)) end
      end)
    end)
  end)

  it('covers the time a target was alive when it exits mid-collection', function()
    W.with('sleeper', { 1 }, {}, function(w)
      -- nobody reaps it while use-check runs: it turns into a zombie, which
      -- has exited all the same
      local d = use_check(w.pid, 4)
      assert.is_true(d.exited)
      assert.is_true(d.partial)
      assert.is_true(d.elapsed < 3, 'elapsed ' .. tostring(d.elapsed))
      local found = false
      for _, n in ipairs(d.notes) do if n:match('exited within') then found = true end end
      assert.is_true(found, 'no note about the exit')
    end)
  end)

  it('prints what it collected when interrupted (Ctrl-C)', function()
    local out = os.tmpname()
    local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'use-check', '--duration', '20', '--json' },
      { stdout = out, stderr = 'null' }))
    local ok, err = pcall(function()
      sys.sleep(2.5)
      assert(sys.kill(pid, 2))
      local how, code = sys.wait(pid)
      assert.equal('exited', how)
      assert.equal(0, code)
      local d = assert(util.json_decode(assert(util.readfile(out))))
      assert.is_true(d.stopped)
      assert.is_true(d.partial)
      assert.is_true(d.samples >= 1 and d.elapsed < 10)
      assert.is_string(row(d, 'cpu').utilization.text)
      assert.is_number(row(d, 'cpu').utilization.value)
    end)
    if not ok then sys.kill(pid, 9); sys.wait(pid) end
    os.remove(out)
    assert(ok, err)
  end)

  it('rejects a service that has no cgroup, and a name that is nothing at all', function()
    local out, err, st = h.pm('use-check --target service:no-such-service-x --duration 1')
    assert.equal(2, st)
    assert.equal('', out)
    assert.equal("perf_manual: use-check: no systemd service 'no-such-service-x' (no cgroup for " ..
      "no-such-service-x.service)\n",
      err)
    out, err, st = h.pm('use-check --target no-such-service-x --duration 1')
    assert.equal(2, st)
    assert.equal('', out)
    assert.equal("perf_manual: use-check: no process, service or command named 'no-such-service-x'\n", err)
  end)

  it('rejects a pid that does not exist with one line and exit 2', function()
    local out, err, st = h.pm('use-check --target 4194303 --duration 1')
    assert.equal(2, st)
    assert.equal('', out)
    assert.equal('perf_manual: use-check: no process 4194303\n', err)
  end)

  it('rejects a zero or malformed duration with exit 2', function()
    local out, err, st = h.pm('use-check --duration 0')
    assert.equal(2, st)
    assert.equal('', out)
    assert.equal('perf_manual: use-check: --duration must be more than 0\n', err)
    out, err, st = h.pm('use-check --duration soon')
    assert.equal('', out)
    assert.equal(2, st)
    assert.matches("^perf_manual: use%-check: bad value for %-%-duration 'soon'", err)
  end)

  it('documents its flags in --help', function()
    local out, _, st = h.pm('use-check --help')
    assert.equal(0, st)
    for _, flag in ipairs({ '--target', '--duration', '--interval', '--json', '--save', '--no-bpf',
      '--max-overhead' }) do
      assert.is_truthy(out:find(flag, 1, true), flag)
    end
  end)

  it('rejects an unknown flag with one line pointing at --help and exit 2', function()
    local out, err, st = h.pm('use-check --bogus 1')
    assert.equal(2, st)
    assert.equal('', out)
    assert.matches('^perf_manual: .*%-%-bogus', err)
    assert.matches('^perf_manual: use%-check: unknown option .--bogus. %(see .perf_manual use%-check %-%-help.%)\n$',
      err)
  end)
end)
