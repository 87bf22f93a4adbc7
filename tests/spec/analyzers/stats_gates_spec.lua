-- The grammar of diff's expectations and the tests on counts behind them
-- (reference values: the textbook formulas computed separately in Python).
local stats = require('perf_manual.analyzers.stats')

describe('perf_manual.analyzers.stats gates', function()
  it('parses every kind of expectation, changes and bounds', function()
    local function p(t) return assert(stats.parse_expect(t)) end
    assert.same({ kind = 'latency', stat = 'p99', change = -0.2, text = 'p99 -20%' }, p('p99 -20%'))
    assert.same({ kind = 'latency', stat = 'median', op = '<', bound = 0.005, text = 'p50 < 5ms' }, p('p50 < 5ms'))
    assert.same({ kind = 'latency', stat = 'median', change = -0.1, text = 'latency median -10%' },
      p('  latency median -10% '))
    assert.same({ kind = 'errors', stat = 'ratio', op = '<', bound = 0.01, text = 'errors < 1%' }, p('errors < 1%'))
    assert.same({ kind = 'errors', stat = 'ratio', change = -0.5, text = 'error ratio -50%' }, p('error ratio -50%'))
    assert.same({ kind = 'throughput', stat = 'rate', change = 0.1, text = 'throughput +10%' }, p('throughput +10%'))
    assert.same({ kind = 'throughput', stat = 'rate', op = '>=', bound = 1000, text = 'rps >= 1000' }, p('rps >= 1000'))
    assert.same({ kind = 'profile', metric = 'spin', stat = 'share', change = -0.3, text = 'profile spin -30%' },
      p('profile spin -30%'))
    assert.same({ kind = 'profile', metric = 'Foo::bar', stat = 'share', op = '<', bound = 0.1,
      text = 'function Foo::bar share < 10%' }, p('function Foo::bar share < 10%'))
    assert.same({ kind = 'metric', metric = 'collect-cpu.cpu.busy_pct', stat = 'p90', change = -0.25,
      text = 'collect-cpu.cpu.busy_pct p90 -25%' }, p('collect-cpu.cpu.busy_pct p90 -25%'))
    assert.same({ kind = 'latency', stat = 'p99.9', op = '<=', bound = 0.2, text = 'p99.9<=200ms' }, p('p99.9<=200ms'))
  end)

  it('splits a list at commas and semicolons and names the bad one', function()
    local l = assert(stats.parse_expects({ 'p99 -20%, errors < 1%', 'throughput +10%; profile spin -30%' }))
    local kinds = {}
    for i, e in ipairs(l) do kinds[i] = e.kind end
    assert.same({ 'latency', 'errors', 'throughput', 'profile' }, kinds)
    assert.same({ nil, 'bad --expect "p99 20%": the change must be signed with a %, like -20% or +5%' },
      { stats.parse_expects({ 'errors < 1%, p99 20%' }) })
    assert.same({ nil, "bad --expect \"p50 < 5\": a latency bound needs a unit: '5' (ns, us, ms, s)" },
      { stats.parse_expects('p50 < 5') })
    assert.same({ nil, "bad --expect \"errors < 5x\": a share is a % (like 1%) or a ratio from 0 to 1: '5x'" },
      { stats.parse_expects('errors < 5x') })
    assert.same({ nil, 'bad --expect "p99 -120%": a change below -100% cannot happen' },
      { stats.parse_expects('p99 -120%') })
    assert.same({ nil, "bad --expect \"profile -30%\": name the function: 'profile FUNC -30%' or 'function FUNC " ..
      "share < 10%'" },
      { stats.parse_expects('profile -30%') })
    assert.matches("^bad %-%-expect \"faster\": expected 'SUBJECT", select(2, stats.parse_expects('faster')))
    assert.same({ nil, 'bad --expect: no expectation given' }, { stats.parse_expects(' , ') })
  end)

  it('tests two proportions and gives the interval of their ratio', function()
    local r = stats.two_proportions(20, 100, 10, 100)
    assert.near(-1.980295, r.z, 1e-5)
    assert.near(0.0476704, r.p, 1e-5)
    assert.near(-0.5, r.rel, 1e-12)
    assert.near(-0.753359, r.rel_lo, 1e-5)
    assert.near(0.013620, r.rel_hi, 1e-5)
    -- a count of 0: 0.5 added to every cell for the interval
    r = stats.two_proportions(36, 300, 0, 300)
    assert.near(6.07288e-10, r.p, 1e-13)
    assert.near(-0.999155, r.rel_lo, 1e-5)
    assert.near(-0.777829, r.rel_hi, 1e-5)
    -- nothing before: no relative change
    assert.is_nil(stats.two_proportions(0, 300, 36, 300).rel)
    local lo, hi = stats.wilson(36, 300)
    assert.near(0.0879508, lo, 1e-6)
    assert.near(0.1616578, hi, 1e-6)
  end)

  it('judges met only when significant and the interval clears the amount; a bound on the whole interval', function()
    local function ds(errors, attempts)
      return { samples = {}, red = { duration_s = 10, rate = { completed = attempts / 10 },
        errors = { total = errors, attempts = attempts } } }
    end
    local exps = assert(stats.parse_expects('error ratio -40%, error ratio -60%, errors < 15%, errors < 11%'))
    local r = stats.judge(exps, ds(20, 100), ds(10, 100))
    -- -50% measured, but the interval reaches +1.4%: it does not clear -40%; 10 of 100 has
    -- a Wilson interval of 5.5% .. 17.4%, above 15% at its top
    assert.same({ 'not met', 'not met', 'not met', 'not met' }, { r[1].status, r[2].status, r[3].status, r[4].status })
    assert.near(0.174, r[3].ci_hi, 1e-3)
    r = stats.judge(exps, ds(200, 1000), ds(50, 1000))
    assert.same({ 'met', 'met', 'met', 'met' }, { r[1].status, r[2].status, r[3].status, r[4].status })
    assert.equal('two-proportion z-test on the request counts, log risk-ratio CI', r[1].method)
    assert.matches('^MET: error ratio %-40%%: error ratio 20%.00%% → 5%.00%% '
      .. '%(200 of 1000 → 50 of 1000%), %-75%.0%% %(95%% CI ', r[1].line)
    -- no data for it: not judged, and says why
    r = stats.judge(assert(stats.parse_expects('throughput +10%, p99 -20%, profile spin -30%')), { samples = {} },
      { samples = {} })
    for _, x in ipairs(r) do
      assert.equal('not judged', x.status)
      assert.is_false(x.met)
    end
    assert.equal('NOT JUDGED: throughput +10%: no request rate on both sides (a red-check.json, or a requests_per_s ' ..
      'series)', r[1].line)
    assert.equal('NOT JUDGED: p99 -20%: no latency metric with samples on both sides', r[2].line)
    assert.equal('NOT JUDGED: profile spin -30%: no folded profile on both sides', r[3].line)
  end)
end)
