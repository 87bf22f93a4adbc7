local psi = require('perf_manual.collectors.psi')
local root = test_helpers.root .. '/tests/fixtures/'

describe('perf_manual.collectors.psi', function()
  it('parses a real /proc/pressure/cpu capture', function()
    local p = assert(psi.parse(fixture('proc/t0/pressure_cpu')))
    assert.same({ avg10 = 0.44, avg60 = 0.31, avg300 = 0.12, total = 3978952 }, p.some)
    assert.same({ avg10 = 0, avg60 = 0, avg300 = 0, total = 0 }, p.full)
  end)

  it('parses a cgroup v2 pressure file with a full line', function()
    local p = assert(psi.parse(fixture('cgroup/v2/unified_child/cpu.pressure')))
    assert.equal(13.58, p.some.avg10)
    assert.equal(1767195, p.full.total)
  end)

  it('accepts the some-only cpu file of kernels before 5.13', function()
    local p = assert(psi.parse(fixture('proc/edge/pressure_cpu_some_only')))
    assert.equal(3723208, p.some.total)
    assert.is_nil(p.full)
  end)

  it('rejects text that is not a pressure file', function()
    local p, err = psi.parse('cpu  1 2 3\n')
    assert.is_nil(p)
    assert.equal('not a pressure file', err)
  end)

  it('turns total deltas into a stall share per second', function()
    local a = assert(psi.sample(root .. 'proc/t0/psi_dir_missing'))
    assert.is_nil(a.cpu)
    assert.matches('^not present: ', a.missing.cpu)
    local p0 = psi.parse(fixture('proc/t0/pressure_io'))
    local p1 = psi.parse(fixture('proc/t1/pressure_io'))
    local r = psi.rate(p0, p1, 1.003466)
    -- (4356677 - 4045288) µs over 1.003466 s
    assert.near(311389 / 1.003466 / 1e4, r.some_pct, 1e-9)
    assert.near((4140026 - 3870980) / 1.003466 / 1e4, r.full_pct, 1e-9)
    assert.equal(0, r.some_avg10)
  end)

  it('marks every resource missing when the pressure directory is absent', function()
    local a = psi.sample('/nonexistent/pressure'); a.time = 0
    local b = psi.sample('/nonexistent/pressure'); b.time = 1
    local r = psi.rates(a, b)
    for _, res in ipairs({ 'cpu', 'memory', 'io' }) do
      assert.is_nil(r[res])
      assert.matches('not present', r.missing[res])
    end
  end)

  it('reads this machine\'s pressure files', function()
    local s = psi.sample()
    if s.missing and s.missing.cpu then pending('no PSI here: ' .. s.missing.cpu) return end
    assert.is_number(s.cpu.some.total)
  end)
end)
