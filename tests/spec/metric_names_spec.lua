-- perf_manual.metric_names: every key the tool records has a human name and
-- unit; a key nobody described still reads as words, never as the dotted key.
local names = require('perf_manual.metric_names')
local report = require('perf_manual.report')
local util = require('perf_manual.util')
local h = test_helpers

local FX = h.root .. '/tests/fixtures/report'

-- every metric key a stored real run holds: series, samples, single values,
-- histograms, the baseline comparison's rows
local function keys_of(dir)
  local ds = assert(report.load(dir))
  local out = {}
  for _, t in ipairs({ ds.series, ds.samples, ds.scalars, ds.histograms }) do
    for k in pairs(t) do out[k] = true end
  end
  for _, r in ipairs(ds.baseline and ds.baseline.rows or {}) do out[r.metric] = true end
  return util.keys(out)
end

describe('perf_manual.metric_names', function()
  it('names the keys of the quantify step with their units', function()
    assert.equal('CPU used by the process, % of one CPU', names.label('quantify.process.cpu_pct'))
    assert.equal('CPU busy, % of all CPUs', names.label('quantify.system.busy_pct'))
    assert.equal('Context switches, per second', names.label('quantify.system.ctxt_per_s'))
    assert.equal('Runnable tasks', names.label('quantify.system.procs_running'))
    -- a baseline comparison's row key, without the file name
    assert.equal('CPU used by the process, % of one CPU', names.label('process.cpu_pct'))
  end)

  it('names per-CPU lines by CPU id, devices and interfaces by name, pressure by resource', function()
    assert.equal('CPU 0 in user code, % of that CPU', names.label('cpu.rates.cpus.1.user_pct'))
    assert.equal('Disk vda: busy (utilization), % of time', names.label('disk.rates.by_name.vda.util_pct'))
    assert.equal('Memory pressure: some task stalled (PSI some), % of time', names.label('memory.rates.psi.some_pct'))
    assert.equal('I/O pressure: all tasks stalled (PSI full), % of time', names.label('psi.rates.io.full_pct'))
    assert.equal('Request latency p99.9, seconds', names.label('latency.p99.9'))
  end)

  it('formats values in the unit, scaled where the key stores a ratio', function()
    assert.equal('48.9%', names.format('quantify.system.busy_pct', 48.9104))
    assert.equal('12%', names.format('red-check.error_ratio', 0.12))
    assert.equal('5919/s', names.format('quantify.system.ctxt_per_s', 5919.18))
    assert.equal('12.3k/s', names.format('quantify.system.ctxt_per_s', 12345))
    assert.equal('54.0ms', names.format('red-check.latency', 0.054))
    assert.equal('not measured', names.format('quantify.system.busy_pct', nil))
  end)

  it('derives a readable name for an unknown key, never the dotted key', function()
    for _, k in ipairs({ 'foo-bar.widget.queue_depth_ms', 'a.b.c', 'x', 'tsa.lock_wait_pct', 'svc.cache.hit_ratio',
      'collect-x.rates.total.weird_thing_per_s' }) do
      local r = names.lookup(k)
      assert.is_false(r.known)
      assert.is_nil(r.name:find('%w%.%w'), k .. ' -> ' .. r.name)
      assert.is_nil(r.name:find('_', 1, true), k .. ' -> ' .. r.name)
    end
    assert.equal('Queue depth (widget), ms', names.label('foo-bar.widget.queue_depth_ms'))
    assert.equal('Weird thing, per second', names.label('collect-x.rates.total.weird_thing_per_s'))
  end)

  it('puts names into sentences built around a key', function()
    assert.equal('MET: p99 -20%: Request latency p99 54.0ms',
      names.humanize('MET: p99 -20%: red-check.latency p99 54.0ms', { 'red-check.latency' }))
  end)

  it('has a known name for every key of the stored real runs (investigations, RED, collect, baseline)', function()
    local dirs = { FX .. '/investigations/lock', FX .. '/investigations/cpu', FX .. '/before', FX .. '/after',
      FX .. '/collect',
      FX .. '/collect-full' }
    local n = 0
    for _, dir in ipairs(dirs) do
      for _, k in ipairs(keys_of(dir)) do
        n = n + 1
        local r = names.lookup(k)
        assert.is_true(r.known, dir .. ': ' .. k .. ' has no name (derived: ' .. r.name .. ')')
        assert.is_true(r.unit ~= '' or r.name:find('%a'), k)
      end
    end
    assert.is_true(n > 100, 'only ' .. n .. ' keys read')
  end)
end)
