-- The fix verdict (analyzers/validate.lua) on data recorded from real runs:
-- tests/fixtures/fixval (record.lua: three investigations of fixval_http,
-- 20 ms per request, then 0, then 20 ms again), tests/fixtures/gates (nginx
-- /delay50 and /err10) and tests/fixtures/datadirs (quantify only).
local report = require('perf_manual.report')
local util = require('perf_manual.util')
local vz = require('perf_manual.analyzers.validate')
local h = test_helpers

local F = h.root .. '/tests/fixtures/'
local function load(rel) return assert(report.load(F .. rel)) end
local function red(rel)
  local text = util.readfile(F .. rel .. '/raw_data/red-check.json') or h.fixture(rel .. '/red-check.json')
  return util.json_decode(text)
end

local function row(v, key)
  for _, r in ipairs(v.metrics) do if r.key == key then return r end end
end

describe('fix verdict', function()
  local opts = { symptom = 'requests are slow', iterations = 500 }

  it('says fixed when the slow service (20 ms a request) answers at once after the fix', function()
    local v = vz.validation(load('fixval/slow'), load('fixval/fast'), opts)
    assert.equal('fixed', v.verdict)
    -- about 290 requests before: p99 would rest on 3 of them, p90 on 29
    assert.equal('red.latency.p90', v.primary)
    assert.equal('red.latency.p90', v.metrics[1].key)
    assert.matches('^fixed: p90 %-99%%, 95%% CI %[%-99%%, %-99%%%], U test p < 0%.001$', v.summary)
    local p90 = v.metrics[1]
    assert.equal('mann-whitney', p90.test)
    assert.equal('ms', p90.unit)
    assert.is_true(p90.p < 0.001 and p90.ci_hi < -10)
    -- the figures against what the red check recorded from its exact histogram
    local before, after = red('fixval/slow'), red('fixval/fast')
    assert.near(before.latency.p90 * 1000, p90.before, before.latency.p90 * 1000 * 0.03)
    assert.near(after.latency.p90 * 1000, p90.after, after.latency.p90 * 1000 * 0.05)
    -- and against the server's own delay: it sleeps 20000 us before each answer
    assert.is_true(row(v, 'red.latency.p50').before >= 20 and row(v, 'red.latency.p50').before < 25)
    assert.is_true(row(v, 'red.latency.p50').after < 1)
    assert.near((p90.after / p90.before - 1) * 100, p90.change_pct, 1e-9)
    -- throughput: requests per second the red check counted, both sides
    local tp = row(v, 'red.throughput')
    assert.near(before.rate.completed, tp.before, 0.01 * before.rate.completed)
    assert.near(after.rate.completed, tp.after, 0.01 * after.rate.completed)
    -- the quantify figures come along, one value per side
    assert.equal('one value per side', row(v, 'quantify.system.busy_pct').test)
    assert.is_nil(row(v, 'quantify.system.busy_pct').p)
  end)

  it('does not say fixed when nothing changed (the same slow service measured again)', function()
    local v = vz.validation(load('fixval/slow'), load('fixval/slow2'), opts)
    assert.equal('not fixed', v.verdict)
    -- the U test finds the two runs differ (hundreds of values), but by less than the margin
    assert.is_true(v.metrics[1].p < 0.05)
    assert.is_true(v.metrics[1].ci_lo > -vz.MARGIN and v.metrics[1].ci_hi < vz.MARGIN)
    assert.matches('within 10%% of no change', v.summary)
  end)

  it('says worse when the change made it slower', function()
    local v = vz.validation(load('fixval/fast'), load('fixval/slow'), opts)
    assert.equal('worse', v.verdict)
  end)

  it('judges a symptom about errors on the error ratio (nginx /err10 before, /delay50 after)', function()
    local v = vz.validation(load('gates/errs'), load('gates/slow'), { symptom = '10% of requests fail with 500',
      iterations = 500 })
    assert.equal('red.error_ratio', v.primary)
    assert.equal('fixed', v.verdict)
    local e = v.metrics[1]
    assert.near(red('gates/errs').errors.ratio * 100, e.before, 1)
    assert.equal(0, e.after)
    -- the other way round the ratio has no relative change from 0: no verdict is invented
    local back = vz.validation(load('gates/slow'), load('gates/errs'), { symptom = 'errors', iterations = 500 })
    assert.equal('inconclusive', back.verdict)
    assert.matches('before is 0', back.summary)
  end)

  it('is inconclusive with one value per side (quantify figures, no RED data)', function()
    local v = vz.validation(load('datadirs/cpu_burn'), load('datadirs/mutex_contention'), opts)
    assert.equal('inconclusive', v.verdict)
    assert.equal('quantify.process.cpu_pct', v.primary)
    assert.equal('one value per side', v.metrics[1].test)
    assert.matches('^inconclusive: workload cpu %+3%%, one value per side', v.summary)
  end)

  describe('the rule', function()
    local function r(p, lo, hi, lower_better)
      return { p = p, ci_lo = lo, ci_hi = hi, change_pct = (lo + hi) / 2, lower_better = lower_better ~= false,
        test = 'mann-whitney' }
    end
    it('needs the test significant and the whole interval beyond the margin on the better side', function()
      assert.equal('fixed', (vz.verdict(r(0.001, -41, -35))))
      assert.equal('inconclusive', (vz.verdict(r(0.001, -27, -1))))     -- reaches within the margin
      assert.equal('not fixed', (vz.verdict(r(0.001, -9, -5))))        -- significant, but small
      assert.equal('not fixed', (vz.verdict(r(0.4, -3, 4))))           -- nothing
      assert.equal('inconclusive', (vz.verdict(r(0.2, -60, 5))))       -- too little data to tell
      assert.equal('worse', (vz.verdict(r(0.001, 20, 50))))
      assert.equal('inconclusive', (vz.verdict(r(0.06, -50, -20))))    -- interval clear, test not significant
    end)
    it('reads throughput the other way: higher is better', function()
      assert.equal('fixed', (vz.verdict(r(0.001, 20, 50, false))))
      assert.equal('worse', (vz.verdict(r(0.001, -41, -35, false))))
    end)
    it('is inconclusive without a test', function()
      local one = { before = 1, after = 2, change_pct = 100, test = 'one value per side' }
      assert.equal('inconclusive', (vz.verdict(one)))
      assert.equal('inconclusive', (vz.verdict(nil)))
    end)
    it('judges latency at the highest percentile the sample sizes support', function()
      local rows = {
        { key = 'red.latency.p50', n_before = 5000, n_after = 150 },
        { key = 'red.latency.p90', n_before = 5000, n_after = 150 },
        { key = 'red.latency.p99', n_before = 5000, n_after = 150 },
      }
      assert.equal('red.latency.p90', vz.primary(rows, 'slow').key)
      rows[1].n_after, rows[2].n_after, rows[3].n_after = 1000, 1000, 1000
      assert.equal('red.latency.p99', vz.primary(rows, 'slow').key)
      rows[1].n_after, rows[2].n_after, rows[3].n_after = 40, 40, 40
      assert.equal('red.latency.p50', vz.primary(rows, 'slow').key)
    end)
  end)
end)
