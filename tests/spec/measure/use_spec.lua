-- USE measurement: the collectors over a session window (/proc side here;
-- the BPF sources are judged by the e2e tests), and how tracer results
-- become measures.
local measure_use = require('perf_manual.measure.use')
local use = require('perf_manual.analyzers.use')

local function row(r, resource)
  for _, x in ipairs(r.rows) do
    if x.resource == resource then return x end
  end
end

-- a session whose tracers have already stopped with these results
local function session_of(results)
  return { errors = {}, detached = {}, stop_tracers = function() return results end }
end

describe('perf_manual.measure.use', function()
  describe('BPF results as measures', function()
    it('counts a timed-out lock wait as an error, a timed-out condition variable wait not', function()
      local fake = { stop = function()
        return { seconds = 1, futex_traced = true, kernel_traced = true, kernel = {}, kernel_wait_ns = 0,
          use = { utilisation = 0.1, utilisation_basis = '4 threads of the target',
            saturation = { mean_waiters = 0.4 } },
          futex = {
            { uaddr = 0x1000, tgid = 1, kind = 'wait', count = 9, total_ns = 3e8, results = { etimedout = 7 } },
            { uaddr = 0x2000, tgid = 1, kind = 'lock', count = 5, total_ns = 1e8,
              results = { etimedout = 2, edeadlk = 1 } },
          } }
      end }
      local b = measure_use.bpf_finish(session_of({ lock = fake:stop() }), {}, { elapsed = 1 })
      assert.equal(3, b.lock.errors.total)
      assert.equal(2, b.lock.errors.by_kind.etimedout)
      assert.equal('0x2000', b.lock.hot.uaddr)
      assert.equal('0x1000', b.lock.hot_wait.uaddr)
      assert.is_true(math.abs(b.lock.cond_share_pct - 7.5) < 1e-9) -- 0.3 s of 4 thread-seconds
    end)
  end)

  describe('collection on this machine', function()
    it('never gives a RAM-backed or loop device a disk row', function()
      local m = measure_use.collect { target = 'system', duration = 0.3, interval = 0.3, bpf = false }
      for _, d in ipairs(m.disks) do
        assert.is_nil(d.name:match('^zram') or d.name:match('^loop') or d.name:match('^ram%d'), d.name)
      end
      local f = io.open('/sys/block/zram0/size')
      if f then
        f:close()
        local seen = false
        for _, d in ipairs(m.not_disks) do if d.name == 'zram0' then seen = true end end
        assert.is_true(seen, 'zram0 should be listed as not a disk')
      end
    end)

    it('shows an unreadable source as not measured, never as 0', function()
      local memory = require('perf_manual.collectors.memory')
      local saved = memory.paths
      memory.paths = { meminfo = '/nonexistent/meminfo', vmstat = '/nonexistent/vmstat', psi = '/nonexistent/memory' }
      local ok, m = pcall(measure_use.collect, { target = 'system', duration = 0.3, interval = 0.3, bpf = false })
      memory.paths = saved
      assert(ok, m)
      local r = use.analyze(m)
      local mem = row(r, 'memory')
      assert.equal('not measured', mem.status)
      assert.matches('^not measured %(.*/nonexistent/', mem.utilization.text)
      assert.matches('^not measured %(', mem.saturation.text)
      assert.is_nil(mem.utilization.value)
      assert.is_nil(m.memory.psi_some_pct)
    end)

    it('shows unreadable disk and network statistics as rows that are not measured', function()
      local disk, net = require('perf_manual.collectors.disk'), require('perf_manual.collectors.network')
      local sd, sn = disk.paths, net.paths
      disk.paths = { diskstats = '/nonexistent/diskstats', psi = sd.psi, sys = sd.sys }
      net.paths = { dev = '/nonexistent/dev', snmp = sn.snmp, netstat = sn.netstat, sys = sn.sys }
      local ok, m = pcall(measure_use.collect, { target = 'system', duration = 0.3, interval = 0.3, bpf = false })
      disk.paths, net.paths = sd, sn
      assert(ok, m)
      local r = use.analyze(m)
      local d, n = row(r, 'disk'), row(r, 'network')
      assert.equal('Disks', d.name)
      assert.equal('not measured', d.status)
      assert.matches('^not measured %(.*/nonexistent/diskstats', d.utilization.text)
      assert.equal('Network', n.name)
      assert.matches('^not measured %(.*/nonexistent/dev', n.utilization.text)
    end)
  end)

  it('gives every disk and interface measured a row, the quiet ones an idle row with their figures', function()
    local m = measure_use.collect { target = 'system', duration = 0.3, interval = 0.3, bpf = false }
    assert.is_true(#m.nets > 0, 'loopback at least is an interface')
    local r = use.analyze(m)
    local rows = {}
    for _, x in ipairs(r.rows) do rows[x.resource .. ':' .. x.name] = x end
    for _, d in ipairs(m.disks) do
      local x = rows['disk:' .. d.name]
      assert.is_table(x, d.name)
      if x.status == 'idle' then
        assert.is_true((d.util_pct or 0) < use.thresholds.disk.busy_util, d.name)
        assert.equal(d.util_pct, x.utilization.value)
      end
    end
    for _, n in ipairs(m.nets) do
      local x = rows['network:' .. n.name]
      assert.is_table(x, n.name)
      if (n.rx_bytes_per_s or 0) + (n.tx_bytes_per_s or 0) < use.thresholds.network.active_bytes_per_s
        and (n.rx_drop_per_s or 0) + (n.tx_drop_per_s or 0) == 0
          and (n.rx_errs_per_s or 0) + (n.tx_errs_per_s or 0) == 0 then
        assert.equal('idle', x.status, n.name)
        assert.is_string(x.saturation.text)
      end
    end
  end)

  it('ends early with the stop flag, covering what it collected', function()
    local sys = require('perf_manual.sys')
    sys.request_stop()
    local ok, m = pcall(measure_use.collect, { target = 'system', duration = 5, interval = 1, bpf = false })
    sys.clear_stop()
    assert(ok, m)
    assert.is_true(m.stopped)
    assert.is_true(m.partial)
    assert.is_true(m.elapsed < 1, 'elapsed ' .. tostring(m.elapsed))
    assert.matches('^stopped early %(Ctrl%-C%) after', m.notes[#m.notes])
  end)
end)
