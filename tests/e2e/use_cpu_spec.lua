-- use-check and CPU saturation as the workload feels it: a single hot thread
-- on an otherwise idle machine, a CPU quota that throttles, a process pinned
-- to one CPU, and an idle control. Ground truth is read by the test itself:
-- per-thread run time from /proc/PID/task/TID/schedstat, affinity from
-- /proc/PID/task/TID/status, throttling from the cgroup's own cpu.stat.
local h = test_helpers
local W = require('e2e.workload')
local Q = require('e2e.cpu_quota')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

local U = require('e2e.use')
local use_check, row, explain = U.check, U.row, U.explain

-- { [tid] = { run_ns=, wait_ns=, comm= } } of a process, and when
local function threads(pid)
  local out = { time = sys.now(), tids = {} }
  for _, n in ipairs(require('posix.dirent').dir('/proc/' .. pid .. '/task')) do
    local tid = tonumber(n)
    local s = tid and util.readfile('/proc/' .. pid .. '/task/' .. n .. '/schedstat')
    if s then
      local run, wait = s:match('^(%d+) (%d+)')
      out.tids[tid] = { run_ns = tonumber(run), wait_ns = tonumber(wait),
        comm = (util.readfile('/proc/' .. pid .. '/task/' .. n .. '/comm') or ''):gsub('\n$', '') }
    end
  end
  return out
end

-- per thread: % of one core on CPU and waiting for one, between two reads
local function truth(a, b)
  local e, out = b.time - a.time, {}
  for tid, t in pairs(b.tids) do
    local p = a.tids[tid]
    if p then
      out[tid] = { comm = t.comm, pct = (t.run_ns - p.run_ns) / e / 1e7, wait_pct = (t.wait_ns - p.wait_ns) / e / 1e7 }
    end
  end
  return out
end

local function tid_named(tr, comm)
  for tid, t in pairs(tr) do if t.comm == comm then return tid, t end end
end

describe('use-check: CPU saturation as the workload feels it', function()
  it('names one spinning thread on an idle 2-CPU machine as single-thread bound, with its tid', function()
    h.with_machine_lock(function()
      W.with('hot_thread', { 1, 3, 30 }, {}, function(w)
        sys.sleep(0.3)
        local a = threads(w.pid)
        local d = use_check(w.pid, 3)
        local tr = truth(a, threads(w.pid))
        local tid, t = tid_named(tr, 'hot0')
        assert.is_number(tid, 'no hot0 thread')
        assert.are_not.equal(w.pid, tid)
        -- the machine let it spin (else the scenario did not happen)
        assert.is_true(t.pct >= 90, string.format('hot0 ran only %.0f%% of a core', t.pct))
        assert.equal('cpu', d.verdict.resource, explain(d))
        assert.equal('single-thread', d.verdict.reason, explain(d))
        local cpu = row(d, 'cpu')
        assert.equal('HIGH', cpu.status)
        assert.equal(tid, cpu.hot_thread.tid)
        assert.equal('hot0', cpu.hot_thread.comm)
        assert.is_true(math.abs(cpu.hot_thread.pct - t.pct) < 10,
          string.format('tool %.0f%% vs schedstat %.0f%%', cpu.hot_thread.pct, t.pct))
        assert.matches('single%-thread bound: thread ' .. tid .. ' %(hot0%) at %d+%% of one CPU', d.verdict.text)
        assert.equal(2, cpu.capacity.cpus)
        -- where its CPU time goes: the spinning function, under the thread's start
        local c = d.culprits and d.culprits.cpu
        assert.is_table(c, explain(d))
        assert.equal('spin', c.hot, explain(d))
        assert.is_true(c.hot_share > 0.9, tostring(c.hot_share))
        assert.matches('start_thread > spin$', c.path)
        -- the text says it too
        local out = h.pm('use-check --target ' .. w.pid .. ' --duration 1')
        assert.matches('\nverdict: CPU is the most saturated resource: single%-thread bound: thread ' .. tid, out)
        -- from the machine's view: the hot thread is among the busiest, at its true rate
        local s = use_check('system', 2)
        local found
        for _, x in ipairs(s.measures.threads_cpu.top) do if x.tid == tid then found = x end end
        assert.is_table(found, 'hot0 not among the busiest threads of the machine\n' .. explain(s))
        assert.equal(w.pid, found.pid)
        if found.pct >= 90 then assert.equal('cpu', s.verdict.resource, explain(s)) end
      end)
    end)
  end)

  it('names the CPU quota of a throttled cgroup, checked against its own cpu.stat', function()
    if not h.need_root('cpu cgroups') then return end
    h.with_machine_lock(function()
      local cg = Q.make(0.25)
      local ok, err = xpcall(function()
        W.with('hot_thread', { 1, 1, 30 }, { join = cg }, function(w)
          sys.sleep(0.5)
          local s0 = Q.stat(cg)
          local d = use_check(w.pid, 4)
          local s1 = Q.stat(cg)
          local periods, throttled = s1.nr_periods - s0.nr_periods, s1.nr_throttled - s0.nr_throttled
          assert.is_true(periods > 10, 'the cgroup ran only ' .. periods .. ' periods')
          local share = 100 * throttled / periods
          assert.equal('cpu', d.verdict.resource, explain(d))
          assert.equal('quota', d.verdict.reason, explain(d))
          local cpu = row(d, 'cpu')
          assert.equal(0.25, cpu.quota_cores)
          assert.equal(0.25, cpu.capacity.cpus)
          assert.equal('quota', cpu.capacity.limited_by)
          assert.is_true(math.abs(cpu.throttled_pct - share) < 15,
            string.format('tool %.0f%% vs cpu.stat %.0f%% of periods throttled', cpu.throttled_pct, share))
          assert.matches("its cgroup's quota of 0%.25 CPU throttled it in %d+%% of periods", d.verdict.text)
          -- it used what the quota allows, not a core
          assert.is_true(d.measures.task.cpu_pct < 35, explain(d))
          assert.is_true(cpu.capacity.used_pct > 80, explain(d))
          -- the cgroup itself as the target: the same verdict
          local c = use_check(cg.dir, 3)
          assert.equal('cpu', c.verdict.resource, explain(c))
          assert.equal('quota', c.verdict.reason, explain(c))
          assert.equal(0.25, row(c, 'cpu').quota_cores)
        end)
      end, debug.traceback)
      assert(Q.remove(cg), 'cannot remove cgroup ' .. cg.dir)
      assert(ok, err)
    end)
  end)

  it('judges a process pinned to one CPU against that one CPU', function()
    h.with_machine_lock(function()
      local pid = assert(sys.spawn({ 'taskset', '-c', '0', h.workload('hot_thread'), '2', '0', '30' },
        { stdout = 'null', stderr = 'null' }))
      local ok, err = xpcall(function()
        sys.sleep(0.5)
        -- ground truth of the pinning: every thread's affinity
        for _, n in ipairs(require('posix.dirent').dir('/proc/' .. pid .. '/task')) do
          if n:match('^%d+$') then
            local st = util.readfile('/proc/' .. pid .. '/task/' .. n .. '/status')
            assert.equal('0', st:match('\nCpus_allowed_list:%s*(%S+)'))
          end
        end
        local a = threads(pid)
        local d = use_check(pid, 3)
        local tr = truth(a, threads(pid))
        local run, wait = 0, 0
        for _, t in pairs(tr) do
          run, wait = run + t.pct, wait + t.wait_pct
          assert.is_true(t.pct < 90, 'a thread alone on the CPU: ' .. t.pct)
        end
        -- two threads share one core: one core's worth of run, as much waiting
        assert.is_true(run > 85 and wait > 60, string.format('run %.0f%% wait %.0f%%', run, wait))
        local cpu = row(d, 'cpu')
        assert.equal(1, cpu.capacity.cpus)
        assert.equal('affinity', cpu.capacity.limited_by)
        assert.equal('0', cpu.capacity.affinity_list)
        assert.equal('cpu', d.verdict.resource, explain(d))
        assert.equal('capacity', d.verdict.reason, explain(d))
        assert.is_true(math.abs(cpu.capacity.used_pct - math.min(100, run)) < 10,
          string.format('tool %.0f%% of its CPU vs schedstat %.0f%%', cpu.capacity.used_pct, run))
        assert.matches('of its 1 CPU %(affinity 0%)', d.verdict.text)
      end, debug.traceback)
      sys.kill(pid, 9)
      sys.wait(pid)
      assert(ok, err)
    end)
  end)

  it('names no CPU bottleneck for the idle control, and lists every interface as a row', function()
    h.with_machine_lock(function()
      W.with('hot_thread', { 0, 4, 30 }, {}, function(w)
        sys.sleep(0.3)
        local a = threads(w.pid)
        local d = use_check(w.pid, 3)
        local tr = truth(a, threads(w.pid))
        for _, t in pairs(tr) do assert.is_true(t.pct < 5) end
        assert.are_not.equal('cpu', d.verdict.resource, explain(d))
        local cpu = row(d, 'cpu')
        assert.are_not.equal('HIGH', cpu.status, explain(d))
        assert.is_nil(cpu.reason)
        assert.is_true(cpu.hot_thread == nil or cpu.hot_thread.pct < 5, explain(d))
        -- a target that is hardly ever on a CPU has no hot path
        assert.is_nil(d.culprits and d.culprits.cpu, explain(d))
        -- a complete checklist: every interface of /proc/net/dev has a row
        local names = {}
        for _, r in ipairs(d.rows) do names[r.name] = r end
        for line in util.readfile('/proc/net/dev'):gmatch('[^\n]+') do
          local n = line:match('^%s*([^%s:]+):')
          if n then
            assert.is_table(names[n], 'no row for interface ' .. n)
            assert.is_string(names[n].utilization.text)
          end
        end
      end)
    end)
  end)
end)
