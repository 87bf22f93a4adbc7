-- perf_manual.report: reading an investigation or a data dir into a dataset,
-- the view templates fill, and rendering, on the captured report fixtures.
local report = require('perf_manual.report')
local util = require('perf_manual.util')
local mk = require('spec.report.make_investigation')
local h = test_helpers

local FX = h.root .. '/tests/fixtures/report'

local function keys_matching(t, pat)
  local out = {}
  for _, k in ipairs(util.keys(t)) do if k:match(pat) then out[#out + 1] = k end end
  return out
end

describe('report', function()
  it('loads a data dir: series from JSON lines, the RED check, the USE check, profiles, artifacts', function()
    local ds = assert(report.load(FX .. '/before'))
    assert.equal('data dir', ds.kind)
    assert.equal('before', ds.id)
    assert.same({ 'collect-cpu.cpu.busy_pct', 'collect-cpu.cpu.load1', 'collect-cpu.cpu.procs_running',
      'red-check.errors_per_s', 'red-check.responses_per_s' }, util.keys(ds.series))
    -- times are relative to the first sample; values as recorded
    local busy = ds.series['collect-cpu.cpu.busy_pct'].points
    assert.same({ 0, 99.0196 }, busy[1])
    assert.near(0.5, busy[2][1], 1e-9)
    assert.same({ 'red-check.latency' }, util.keys(ds.histograms))
    assert.equal('http://127.0.0.1:35884/delay50', ds.red.url)
    assert.equal(100, ds.scalars['red-check.rate_completed'])
    assert.equal('cpu', ds.use.verdict)
    assert.equal(1, #ds.profiles)
    assert.same({ path = 'red-check.json', bytes = 2676 }, ds.artifacts[3])
    assert.same({}, ds.warnings)
  end)

  it('loads a collection with raw_data/, leaving out series of no interest', function()
    local ds = assert(report.load(FX .. '/collect'))
    assert.is_true(#keys_matching(ds.series, '^cpu%.rates%.total%.busy_pct$') == 1)
    assert.same({}, keys_matching(ds.series, '%.elapsed$'))
    assert.same({}, keys_matching(ds.series, 'loop%d'))
    assert.equal('raw_data/cpu.jsonl', ds.artifacts[1].path)
    -- a series' values are also samples for diff
    local s = ds.samples['cpu.rates.total.busy_pct']
    assert.is_true(s.from_series)
    assert.equal(#ds.series['cpu.rates.total.busy_pct'].points, #s.values)
  end)

  it('says why a path is not a dataset', function()
    assert.same({ nil, '/no/such: not a directory' }, { report.load('/no/such') })
    local ok, e = pcall(report.open, '/no/such', '/tmp/pm-report-spec-none')
    assert.is_false(ok)
    assert.is_true(util.is_user_error(e))
  end)

  it('parses ISO times with fractions and offsets, and numbers as they are', function()
    assert.equal(0, report.parse_time('1970-01-01T00:00:00Z'))
    -- date -u -d 2026-11-22T05:44:17Z +%s: 1795326257
    assert.near(1795326257.703, report.parse_time('2026-11-22T05:44:17.703Z'), 1e-6)
    assert.equal(3600, report.parse_time('1970-01-01T02:00:00+01:00'))
    assert.equal(42.5, report.parse_time(42.5))
    assert.is_nil(report.parse_time('yesterday'))
  end)

  it('turns histogram buckets into samples at bucket middles, thinned to a cap', function()
    assert.same({ 1, 1, 3 }, report.histogram_samples({ { 0, 2, 2 }, { 2, 4, 1 } }))
    local thin = report.histogram_samples({ { 0, 10, 1000 }, { 10, 20, 1000 } }, 100)
    assert.equal(100, #thin)
    assert.equal(5, thin[1]); assert.equal(15, thin[100])
  end)

  it('builds the view of a data dir: RED numbers, USE rows, charts, the flame graph and top functions', function()
    local v = report.view(assert(report.load(FX .. '/before')))
    assert.equal('Performance Investigation Report: before', v.title)
    assert.equal('RED check of http://127.0.0.1:35884/delay50', v.summary.issue)
    assert.equal('data only', v.summary.status)
    local q = {}
    for _, r in ipairs(v.quantification) do q[r.metric] = r.value end
    assert.equal('100', q['Throughput (requests answered), per second'])
    assert.equal('54.0ms', q['Request latency p99, seconds'])
    assert.equal('0.00%', q['Errors, % of requests'])
    assert.matches('^CPU is the most saturated resource', v.use_verdict)
    local charts = {}
    for _, c in ipairs(v.charts) do charts[#charts + 1] = c.key; assert.matches('^<svg', c.svg) end
    assert.same({ 'cpu', 'runq', 'red_rate', 'hist', 'heatmap' }, charts)
    assert.equal('heatmap', v.key_chart.key)  -- what users feel comes first
    assert.same({ func = 'burn', self_pct = '99.4%', total_pct = '100.0%' }, v.top_functions[1])
    assert.equal('flamegraph.svg', v.flamegraph.file)
    assert.equal('OPEN', v.recommendations[1].status)
  end)

  it('builds the view of an investigation: summary, hypotheses, fix validation, redacted secrets', function()
    local dir = mk.make()
    local ok, e = pcall(function()
      local ds = report.open(dir)
      assert.equal('investigation', ds.kind)
      assert.equal('2026-11-22_slow-api', ds.id)
      assert.equal(2, #ds.profiles)
      local v = report.view(ds)
      assert.equal('all checkout users', v.summary.impact)
      assert.equal('The investigation is complete.', v.summary.status_plain)
      assert.matches('^burn%(%) spins on 3 threads', v.summary.root_cause)
      assert.equal('supported', v.hypotheses[1].status)
      assert.equal('for raw_data/use-check.json: CPU HIGH', v.hypotheses[1].evidence)
      -- the made-up finding names no artifact: nothing to link
      assert.same({ severity = 'HIGH', resource = 'cpu', summary = 'CPU 100% busy, run queue 4 on 2 CPUs', links = {} },
        v.findings[1])
      assert.equal('Address: CPU 100% busy, run queue 4 on 2 CPUs', v.recommendations[1].text)
      assert.is_true(#v.fix_validation > 0)
      assert.is_true(v.has_fix_validation)
      -- two profiles: the hotspot shift between them
      assert.equal('profile-cpu', v.hotspot_from)
      assert.equal('profile-cpu-2', v.hotspot_to)
      assert.is_true(#v.hotspots > 0)
      -- baseline comparison rows
      assert.equal('2026-11-22_batch-job-is-slow-b-since-b-deploy', v.baseline_id)
      -- nothing secret reaches the view
      local all = util.json_encode(v)
      assert.is_nil(all:find('hunter2', 1, true))
      assert.is_nil(all:find('id_rsa', 1, true))
    end)
    mk.remove(dir)
    assert(ok, e)
  end)

  it('finds the functions whose share moved most between two profiles', function()
    local fold = require('perf_manual.fold')
    local before = assert(fold.load(FX .. '/before/profile-cpu.folded'))
    local after = assert(fold.load(FX .. '/after/profile-cpu.folded'))
    local rows = report.hotspot_shift(before, after, 3)
    assert.is_true(#rows >= 1 and #rows <= 3)
    for _, r in ipairs(rows) do
      assert.matches('%%$', r.before); assert.matches('%%$', r.after)
      assert.is_true(r.change == 'new' or r.change == 'gone' or r.change:match('^[+-]%d+%.%d pts$') ~= nil, r.change)
    end
  end)

  it('renders Markdown, HTML and slides from the same dataset', function()
    local ds = assert(report.load(FX .. '/before'))
    local md = report.render(ds, { format = 'technical', output = 'md' })
    assert.matches('^# Performance Investigation Report: before', md)
    assert.truthy(md:find('RED check of http://127.0.0.1:35884/delay50', 1, true))
    local html = report.render(ds, { format = 'technical', output = 'html' })
    assert.matches('<html', html)
    assert.matches('</html>%s*$', html)
    local slides = report.render(ds, { format = 'slides', output = 'html' })
    assert.matches('<section', slides)
  end)

  it('writes the investigation report from metadata as the engine holds it', function()
    local text = report.investigation({ id = 'x', symptom = 'slow checkout', status = 'interrupted' },
      { dir = FX .. '/before' })
    assert.matches('slow checkout', text)
    assert.matches('interrupted before it finished', text)
  end)
end)
