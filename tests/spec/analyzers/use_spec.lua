-- The USE rules on measures recorded from the real workloads
-- (tests/fixtures/use/*.json, recorded by record.lua there), plus the trap rules.
-- The collection is tests/spec/measure/use_spec.lua.
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

local function deep_copy(t)
  if type(t) ~= 'table' then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = deep_copy(v) end
  return c
end

local function has_note(x, pattern)
  for _, n in ipairs(x.notes or {}) do
    if n:match(pattern) then return true end
  end
  return false
end

describe('perf_manual.analyzers.use', function()
  describe('verdicts on recorded workloads', function()
    local cases = {
      { 'cpu_burn_pid', 'cpu' },
      { 'cpu_burn_system', 'cpu' },
      { 'mem_pressure_pid', 'memory' },
      { 'fsync_writer_pid', 'disk' },
      { 'mutex_contention_pid', 'lock' },
      { 'mutex_contention_system', nil },
      { 'sleeper_pid', nil },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. ' -> ' .. tostring(c[2] or 'none'), function()
        local r = use.analyze(recorded(c[1]))
        assert.equal(c[2], r.verdict.resource, r.verdict.text)
        if c[2] then
          assert.equal('HIGH', r.verdict.status)
        else
          assert.matches('^no resource saturated', r.verdict.text)
        end
      end)
    end
  end)

  it('gives every cell a text and a source, and every row a known status', function()
    for _, name in ipairs({ 'cpu_burn_pid', 'mem_pressure_pid', 'fsync_writer_pid', 'mutex_contention_system' }) do
      local r = use.analyze(recorded(name))
      for _, x in ipairs(r.rows) do
        assert.is_not_nil(use.RANK[x.status], x.status)
        for _, col in ipairs({ 'utilization', 'saturation', 'errors' }) do
          assert.is_string(x[col].text, name .. ' ' .. x.name .. ' ' .. col)
          assert.is_string(x[col].source, name .. ' ' .. x.name .. ' ' .. col)
        end
      end
    end
  end)

  it('names the disk for a busy disk in a process that does not reclaim', function()
    local r = use.analyze(recorded('fsync_writer_pid'))
    assert.equal('vda', r.verdict.name)
    assert.matches('/proc/diskstats aqu%-sz', row(r, 'disk').saturation.source)
  end)

  describe('traps', function()
    it('page-cache refaults make the disk busy: memory is named, the disk is lowered', function()
      local m = recorded('mem_pressure_pid')
      local r = use.analyze(m)
      local disk = row(r, 'disk')
      assert.equal('warn', disk.status)
      assert.is_true(has_note(disk, 'refaults'))
      -- the same numbers judged without the memory rules: the disk would win
      local T = deep_copy(use.thresholds)
      T.memory.psi_high, T.memory.limit_hits_high, T.memory.refault_high = 1e9, 1e18, 1e18
      local r2 = use.analyze(recorded('mem_pressure_pid'), { thresholds = T })
      assert.equal('disk', r2.verdict.resource)
    end)

    it('reclaim burning CPU in the kernel is memory pressure, not CPU', function()
      local m = recorded('mem_pressure_pid')
      -- as when reclaim keeps the cores busy: mostly kernel time, queued tasks
      m.cpu.busy_pct, m.cpu.user_pct, m.cpu.system_pct = 100, 10, 90
      m.task.runq_wait_pct, m.task.user_pct, m.task.system_pct = 80, 10, 90
      local r = use.analyze(m)
      assert.equal('memory', r.verdict.resource)
      local cpu = row(r, 'cpu')
      assert.equal('warn', cpu.status)
      assert.is_true(has_note(cpu, 'reclaim'))
      -- user-space burning with memory pressure on the side stays CPU HIGH
      local m2 = recorded('mem_pressure_pid')
      m2.cpu.busy_pct, m2.cpu.user_pct, m2.cpu.system_pct = 100, 90, 10
      m2.task.runq_wait_pct, m2.task.user_pct, m2.task.system_pct = 80, 90, 10
      assert.equal('HIGH', row(use.analyze(m2), 'cpu').status)
    end)

    it('CPU pressure with idle cores is not a CPU shortage', function()
      local m = recorded('mutex_contention_system')
      assert.is_true(m.cpu.psi_some_pct >= use.thresholds.cpu.psi_high)
      assert.is_true(m.cpu.busy_pct < use.thresholds.cpu.util_warn)
      local cpu = row(use.analyze(m), 'cpu')
      assert.are_not.equal('HIGH', cpu.status)
      assert.is_true(has_note(cpu, 'sit idle'))
    end)

    it('threads taking turns on one lock: the lock is named even when the CPUs are busy', function()
      local m = recorded('mutex_contention_pid')
      -- another process keeps the other core busy, so the woken threads queue
      m.cpu.busy_pct, m.task.runq_wait_pct = 97, 236
      local r = use.analyze(m)
      assert.equal('lock', r.verdict.resource)
      assert.is_true(has_note(row(r, 'cpu'), 'take turns on a lock'))
    end)

    it('many threads queued on one hot lock is contention; threads each on their own futex are not', function()
      local m = recorded('mutex_contention_pid')
      assert.is_number(m.lock.lock_share_pct, 'recorded with futex kinds known')
      local r = use.analyze(m)
      local l = row(r, 'lock')
      assert.equal('HIGH', l.status)
      assert.matches('hottest lock 0x%x+: [%d.]+ waiters', l.saturation.text)
      assert.matches('threads queued on one lock', r.verdict.text)
      -- the same futex time spread over threads parked each on its own
      -- futex (joins, private waits): no queue on any one lock
      m.lock.hot = nil
      r = use.analyze(m)
      assert.are_not.equal('HIGH', row(r, 'lock').status)
      assert.are_not.equal('lock', r.verdict.resource)
    end)

    it('workers waiting on a condition variable are waiting for work, not for a lock', function()
      local m = recorded('mutex_contention_pid')
      m.lock.lock_share_pct, m.lock.cond_share_pct, m.lock.hot = 0, 80, nil
      local l = row(use.analyze(m), 'lock')
      assert.equal('ok', l.status)
      assert.is_true(has_note(l, 'condition variables'))
    end)

    it('threads parked in futex waits of an idle process are not contention', function()
      local m = recorded('mutex_contention_pid')
      m.task.cpu_pct = 1
      local r = use.analyze(m)
      assert.are_not.equal('HIGH', row(r, 'lock').status)
      assert.is_true(has_note(row(r, 'lock'), 'idle pool'))
    end)

    it('a busy disk the target does not use is not its bottleneck', function()
      local m = recorded('fsync_writer_pid')
      m.task.io_bytes_per_s, m.task.read_bytes_per_s, m.task.write_bytes_per_s = 0, 0, 0
      local r = use.analyze(m)
      assert.are_not.equal('disk', r.verdict.resource)
      assert.is_true(has_note(row(r, 'disk'), 'did no disk I/O'))
    end)
  end)

  describe('network rows', function()
    local function with_net(n)
      local m = recorded('sleeper_pid')
      n.name = 'eth0'
      m.nets = { n }
      return use.analyze(m)
    end

    it('is saturated when it drops packets or fills its link, fine otherwise', function()
      local r = with_net { rx_bytes_per_s = 5e6, tx_bytes_per_s = 1e6, rx_drop_per_s = 250, speed_bytes_per_s = 125e6 }
      assert.equal('network', r.verdict.resource)
      assert.equal('eth0', r.verdict.name)
      assert.matches('dropped', r.verdict.text)
      r = with_net { rx_bytes_per_s = 120e6, tx_bytes_per_s = 1e6, speed_bytes_per_s = 125e6 }
      assert.equal('network', r.verdict.resource)
      assert.matches('96%% of the link', r.verdict.text)
      r = with_net { rx_bytes_per_s = 5e6, tx_bytes_per_s = 1e6, speed_bytes_per_s = 125e6 }
      assert.equal('ok', row(r, 'network').status)
      assert.is_nil(r.verdict.resource)
    end)

    it('says when a link speed is unknown instead of inventing a utilisation', function()
      local r = with_net { rx_bytes_per_s = 5e6, tx_bytes_per_s = 1e6 }
      local n = row(r, 'network')
      assert.is_nil(n.utilization.value)
      assert.matches('link speed unknown', n.utilization.text)
    end)
  end)

  it('thresholds are plain Lua a team can change', function()
    local T = deep_copy(use.thresholds)
    T.cpu.util_high, T.cpu.task_runq_high = 101, 1e9
    local r = use.analyze(recorded('cpu_burn_system'), { thresholds = T })
    assert.is_nil(r.verdict.resource)
    assert.equal('warn', row(r, 'cpu').status)
  end)

  it('says the Mutex row needs a PID for the system target', function()
    local r = use.analyze(recorded('cpu_burn_system'))
    local l = row(r, 'lock')
    assert.equal('not measured', l.status)
    assert.equal('not measured (needs a PID or the BPF lock tracer)', l.utilization.text)
  end)

  it('renders the table with sources and the verdict', function()
    local r = use.analyze(recorded('fsync_writer_pid'))
    r.target = { label = 'pid 1 (fsync_writer)' }
    r.measures = recorded('fsync_writer_pid')
    local text = use.render(r)
    assert.matches('RESOURCE%s+STATUS%s+UTILIZATION%s+SATURATION%s+ERRORS', text)
    assert.matches('\nvda%s+HIGH', text)
    assert.matches('%[/proc/diskstats %%util%]', text)
    assert.matches('\nverdict: disk vda is the most saturated resource', text)
    assert.matches('not disks %(RAM%-backed or virtual, no row%):', text)
  end)

  describe('with the BPF tracers as sources (recorded with BPF on)', function()
    local cases = {
      { 'cpu_burn_pid_bpf', 'cpu' },
      { 'cpu_burn_system_bpf', 'cpu' },
      { 'fsync_writer_pid_bpf', 'disk' },
      { 'mutex_contention_pid_bpf', 'lock' },
      { 'mutex_contention_system_bpf', nil },
      { 'sleeper_pid_bpf', nil },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. ' -> ' .. tostring(c[2] or 'none'), function()
        local r = use.analyze(recorded(c[1]))
        assert.equal(c[2], r.verdict.resource, r.verdict.text)
      end)
    end

    it('says which source each saturation figure came from', function()
      local src = use.sources(recorded('fsync_writer_pid_bpf'))
      assert.same({ 'bpf', 'sched', 'tp_btf' }, { src.cpu_saturation.source, src.cpu_saturation.tracer,
        src.cpu_saturation.attach })
      assert.same({ 'bpf', 'io' }, { src.disk_saturation.source, src.disk_saturation.tracer })
      assert.same({ 'bpf', 'lock' }, { src.locks.source, src.locks.tracer })
      local old = use.sources(recorded('fsync_writer_pid'))
      assert.equal('schedstat, PSI, /proc/stat', old.cpu_saturation.source)
      assert.equal('thread states in /proc/PID/task', old.locks.source)
      local lines = use.render_sources(old)
      assert.equal(1, #lines)
      assert.matches('^source: CPU saturation from schedstat, PSI, /proc/stat; disk saturation from /proc/diskstats, '
        .. 'PSI; locks from thread states', lines[1])
      local m = recorded('cpu_burn_system_bpf')
      m.bpf.off = 'BPF needs root'
      m.bpf.runq, m.bpf.io, m.bpf.lock = nil, nil, nil
      lines = use.render_sources(use.sources(m))
      assert.matches('locks not measured; network saturation and errors from /proc/net/snmp and netstat counters '
        .. '%(BPF not used: BPF needs root%)$', lines[1])
    end)

    it('judges CPU saturation from run-queue latency alone when PSI and the run queue gauge are missing', function()
      local m = recorded('cpu_burn_system_bpf')
      m.cpu.psi_some_pct, m.cpu.runnable_avg = nil, nil
      local r = use.analyze(m)
      local cpu = row(r, 'cpu')
      assert.equal('HIGH', cpu.status)
      assert.matches('tasks per CPU waiting in the run queue', cpu.why[1])
      assert.matches('^run%-queue latency avg ', cpu.saturation.text)
      -- the same machine with a quiet run queue is not saturated
      m.bpf.runq.waiting_avg = 0.05
      assert.are_not.equal('HIGH', row(use.analyze(m), 'cpu').status)
    end)

    it('uses the BPF run-queue wait of the target, which agrees with schedstat', function()
      local m = recorded('cpu_burn_pid_bpf')
      local r = use.analyze(m)
      assert.equal(100 * m.bpf.runq.waiting_avg, row(r, 'cpu').saturation.value)
      assert.is_true(math.abs(100 * m.bpf.runq.waiting_avg - m.task.runq_wait_pct) < 40)
    end)

    it('shows block latency and I/O errors of the disk, and warns on either', function()
      local m = recorded('fsync_writer_pid_bpf')
      local disk = row(use.analyze(m), 'disk')
      assert.matches('^block latency p50 %S+ p99 %S+ over %d+ requests', disk.saturation.text)
      assert.equal('0 I/O errors', disk.errors.text)
      assert.equal('BPF io tracer (block_rq_complete error)', disk.errors.source)
      m.bpf.io.devices.vda.errors = 3
      disk = row(use.analyze(m), 'disk')
      assert.equal('3 I/O errors', disk.errors.text)
      local found = false
      for _, w in ipairs(disk.why) do if w == '3 I/O errors' then found = true end end
      assert.is_true(found)
      -- a slow tail on an otherwise idle disk is worth a look
      m = recorded('fsync_writer_pid_bpf')
      m.disks[1].util_pct, m.disks[1].aqu_sz, m.io.psi_some_pct, m.lock.disk_share_pct = 10, 0.1, 0, 0
      m.bpf.io.devices.vda.inflight_mean, m.bpf.io.devices.vda.p99_us = 0.1, 120000
      disk = row(use.analyze(m), 'disk')
      assert.equal('warn', disk.status)
      assert.matches('block latency p99 ', table.concat(disk.why, '; '))
    end)

    it('names the process queued on its own lock from the system view, and kernel lock queues as HIGH', function()
      local m = recorded('mutex_contention_system_bpf')
      local lock = row(use.analyze(m), 'lock')
      assert.equal('warn', lock.status)
      assert.matches('hottest user lock 0x%x+ in pid %d+', lock.saturation.text)
      assert.matches('^run use%-check %-%-target %d+', lock.notes[1])
      m.lock.kernel_hot = { addr = '0xffff888100000000', kind = 'rwsem:write', waits = 500, mean_waiters = 3.2 }
      local r = use.analyze(m)
      assert.equal('HIGH', row(r, 'lock').status)
      assert.matches('3%.2 tasks queued on kernel rwsem:write', r.verdict.text)
    end)
  end)
  it('says an unmeasured I/O rate of the target is "not measured", without a unit (issue 17)', function()
    local m = recorded('cpu_burn_pid')
    m.task.read_bytes_per_s, m.task.write_bytes_per_s = nil, nil
    -- the session hands render the measures and the target with the verdict
    local function text()
      local r = use.analyze(m)
      r.measures, r.target = m, { label = 'pid 42' }
      return use.render(r)
    end
    assert.matches('I/O read not measured write not measured', text(), 1, true)
    assert.is_nil(text():find('not measured/s', 1, true))
    m.task.read_bytes_per_s, m.task.write_bytes_per_s = 2048, 0
    assert.matches('I/O read 2.0K/s write 0B/s', text(), 1, true)
  end)
  it('gives the disks and interfaces it checked and found idle an idle row: one line of text, a full row in JSON',
    function()
    local m = recorded('fsync_writer_pid')
    local busy = m.disks[1]
    m.disks[#m.disks + 1] = { name = 'vdz', util_pct = 0.5, aqu_sz = 0, r_s = 0, w_s = 1 }
    m.nets = { { name = 'lo', rx_bytes_per_s = 10, tx_bytes_per_s = 10, virtual = true } }
    local r = use.analyze(m)
    assert.same({ 'vdz' }, r.idle.disks)
    assert.same({ 'lo' }, r.idle.nets)
    local by = {}
    for _, x in ipairs(r.rows) do by[x.name] = x end
    assert.equal('HIGH', by[busy.name].status)
    assert.equal('idle', by.vdz.status)
    assert.equal(0.5, by.vdz.utilization.value)
    assert.equal(0, by.vdz.saturation.value)
    assert.equal('idle', by.lo.status)
    assert.equal(0, by.lo.errors.value)
    -- idle is not a verdict and not worth a look
    assert.equal('disk', r.verdict.resource)
    r.target, r.elapsed, r.samples, r.measures = m.target, 1, 1, m
    local text = use.render(r)
    assert.matches('\nvdz%s+idle%s+1%% busy, 0%.00 r/s 1%.00 w/s', text)
    assert.matches('\nlo%s+idle%s+rx 10B/s tx 10B/s %(virtual, no link speed%)\n', text)
    assert.is_nil(text:find('checked, idle', 1, true))
    -- an idle disk that returns I/O errors is not idle
    m.bpf = m.bpf or {}
    m.bpf.io = { devices = { vdz = { count = 3, errors = 2 } }, attach = 'raw_tp' }
    for _, x in ipairs(use.analyze(m).rows) do
      if x.name == 'vdz' then assert.equal('warn', x.status) end
    end
  end)
end)
