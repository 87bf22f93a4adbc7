-- The CPU row as the workload feels it, on measures recorded from real runs
-- (tests/fixtures/use/record_cpu.lua): a single hot thread, a CPU quota, a
-- process pinned to one CPU, an idle control; and the per-CPU imbalance.
local use = require('perf_manual.analyzers.use')
local util = require('perf_manual.util')

local function recorded(name)
  return assert(util.json_decode(test_helpers.fixture('use/' .. name .. '.json')))
end

local function row(r, resource)
  for _, x in ipairs(r.rows) do
    if x.resource == resource then return x end
  end
end

describe('perf_manual.analyzers.use: CPU saturation as the workload feels it', function()
  it('names one thread at a core\'s worth as single-thread bound although a core idles', function()
    local m = recorded('hot_thread_pid')
    assert.is_true(m.cpu.busy_pct < use.thresholds.cpu.util_high, 'recorded on an otherwise idle machine')
    local r = use.analyze(m)
    assert.equal('cpu', r.verdict.resource)
    assert.equal('single-thread', r.verdict.reason)
    assert.equal('single-thread', r.cpu_reason)
    local cpu = row(r, 'cpu')
    local hot = m.threads_cpu.top[1]
    assert.equal('hot0', hot.comm)
    assert.are_not.equal(m.target.pid, hot.tid)
    assert.equal(hot.tid, cpu.hot_thread.tid)
    assert.matches(string.format('single%%-thread bound: thread %d %%(hot0%%) at %d%%%% of one CPU', hot.tid,
      math.floor(hot.pct + 0.5)), r.verdict.text)
    assert.matches('hottest thread %d+ %(hot0%) %d+%% of one CPU', cpu.utilization.text)
    -- the same numbers with the thread rule turned off: what the tool used to say
    local T = {}
    for k, v in pairs(use.thresholds) do
      T[k] = {}
      for k2, v2 in pairs(v) do T[k][k2] = v2 end
    end
    T.cpu.thread_high = 101
    assert.is_nil(use.analyze(m, { thresholds = T }).verdict.resource)
  end)

  it('names the hot thread and its process from the machine-wide view', function()
    local r = use.analyze(recorded('hot_thread_system'))
    assert.equal('cpu', r.verdict.resource)
    assert.equal('single-thread', r.verdict.reason)
    assert.matches('thread %d+ %(hot0%) of pid %d+ %(hot_thread%)', r.verdict.text)
  end)

  it('names a throttling quota as CPU saturation, in those words', function()
    local m = recorded('quota_pid')
    local r = use.analyze(m)
    assert.equal('cpu', r.verdict.resource)
    assert.equal('quota', r.verdict.reason)
    local cpu = row(r, 'cpu')
    assert.equal(0.25, cpu.quota_cores)
    assert.equal(m.cgroup_cpu.throttled_pct, cpu.throttled_pct)
    assert.same({ 0.25, 'quota' }, { cpu.capacity.cpus, cpu.capacity.limited_by })
    assert.matches("CPU is the most saturated resource: its cgroup's quota of 0%.25 CPU throttled it in 100%% of "
      .. 'periods$', r.verdict.text)
    assert.matches('= 100%% of its 0%.25 CPU %(cgroup quota%)', cpu.utilization.text)
    assert.matches('quota 0%.25 CPU, throttled in 100%% of periods', cpu.saturation.text)
    -- a quota it never hits is no saturation
    m.cgroup_cpu.throttled_pct, m.cgroup_cpu.nr_throttled = 0, 0
    m.task.runq_wait_pct, m.bpf.runq = 0, nil
    assert.is_nil(use.analyze(m).verdict.resource)
  end)

  it('judges a process pinned to one CPU against that CPU, not the machine', function()
    local m = recorded('pinned_pid')
    local r = use.analyze(m)
    assert.equal('cpu', r.verdict.resource)
    assert.equal('capacity', r.verdict.reason)
    assert.same({ 1, 'affinity', '0' }, { row(r, 'cpu').capacity.cpus, row(r, 'cpu').capacity.limited_by,
      row(r, 'cpu').capacity.affinity_list })
    assert.matches('of its 1 CPU %(affinity 0%)', r.verdict.text)
    -- its CPU crowded by others: still its capacity that runs out
    m.capacity.used_pct, m.capacity.allowed_busy_pct = 60, 100
    r = use.analyze(m)
    assert.equal('capacity', r.verdict.reason)
    assert.matches('its 1 CPU %(affinity 0%) is 100%% busy, 60%% of it by the target', r.verdict.text)
  end)

  it('names nothing for threads that only sleep', function()
    local r = use.analyze(recorded('idle_pid'))
    assert.is_nil(r.verdict.resource)
    assert.is_nil(r.cpu_reason)
    assert.are_not.equal('HIGH', row(r, 'cpu').status)
  end)

  describe('per-CPU imbalance', function()
    local function pinned_by_softirq(m)
      m.cpu.cpus = { { id = 0, busy_pct = 3, softirq_pct = 0, irq_pct = 0 },
        { id = 1, busy_pct = 95, softirq_pct = 80, irq_pct = 2, system_pct = 10, user_pct = 3 } }
      m.cpu.busy_pct = 49
      m.threads_cpu = nil
      return m
    end

    it('says which CPU is pinned and by what, in the CPU row', function()
      local r = use.analyze(pinned_by_softirq(recorded('hot_thread_system')))
      local cpu = row(r, 'cpu')
      assert.matches('cpu1 95%% busy %(softirq 80%%%) while cpu0 is 3%%', cpu.utilization.text)
      -- interrupt work the scheduler cannot spread is the machine's bottleneck
      assert.equal('cpu', r.verdict.resource)
      assert.equal('irq', r.verdict.reason)
      assert.same({ 1, 0 }, { cpu.imbalance.busy.id, cpu.imbalance.idle.id })
    end)

    it('is worth a look, not a verdict, for a process target', function()
      local m = pinned_by_softirq(recorded('idle_pid'))
      local r = use.analyze(m)
      assert.equal('warn', row(r, 'cpu').status)
      assert.is_nil(r.verdict.resource)
      assert.matches('cpu1 95%% busy %(softirq 80%%%) while cpu0 is 3%%', table.concat(row(r, 'cpu').why, '; '))
    end)

    it('says nothing when the CPUs are evenly loaded', function()
      local m = recorded('hot_thread_system')
      m.cpu.cpus = { { id = 0, busy_pct = 60 }, { id = 1, busy_pct = 55 } }
      local cpu = row(use.analyze(m), 'cpu')
      assert.is_nil(cpu.imbalance)
      assert.is_nil(cpu.utilization.text:find('while cpu', 1, true))
    end)
  end)

  it('exposes the CPU details where a playbook reads them (use.cpu after normalize)', function()
    local r = use.analyze(recorded('quota_pid'))
    r = use.normalize(r)
    assert.equal('cpu', r.verdict)
    assert.equal('quota', r.verdict_detail.reason)
    assert.equal('quota', r.cpu.reason)
    assert.equal(0.25, r.cpu.quota_cores)
    assert.equal(100, r.cpu.throttled_pct)
    assert.equal('hot0', r.cpu.hot_thread.comm)
    assert.equal(0.25, r.cpu.capacity.cpus)
    -- and in JSON, as the rows are printed
    local back = util.json_decode(util.json_encode(r.rows))
    assert.equal(0.25, back[1].capacity.quota)
  end)

  it('renders the capacity and the busiest threads under the table', function()
    local m = recorded('pinned_pid')
    local r = use.analyze(m)
    r.measures, r.target, r.elapsed, r.samples = m, m.target, m.elapsed, m.samples
    local text = use.render(r)
    assert.matches('\nCPU capacity of the target: 1 CPU %(online 2, affinity 0, no quota%), 100%% of it used\n', text)
    assert.matches('\nbusiest threads %(%% of one CPU, of the target%): thread %d+ %(hot%d%) %d+%%', text)
  end)
end)
