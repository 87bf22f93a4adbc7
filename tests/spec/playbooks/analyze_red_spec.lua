-- analyze reads every artifact of a data dir: RED results recorded from real
-- red-check runs of nginx (tests/fixtures/report/after: /err10 for 3 s, 36 of
-- 300 answers 500; tests/fixtures/gates: /err10 and /delay50 for 6 s), a real
-- `collect` dir's *.jsonl series, and folded profiles; RED findings become
-- hypotheses at the service level.
local util = require('perf_manual.util')
local h = test_helpers

local function copy(rel)
  local d = h.tmpdir()
  os.execute(string.format("cp -r '%s/tests/fixtures/%s/.' '%s/'", h.root, rel, d))
  return d
end

describe('analyze on RED results, series and folded profiles', function()
  it('turns a RED run with 12% errors into an error finding and a service-level hypothesis', function()
    local d = copy('report/after')
    local red = util.json_decode(util.readfile(d .. '/red-check.json'))
    assert.equal(36, red.errors.status['5xx'])   -- the recorded run: 36 of 300 answers were 500
    local out, err, st = h.pm(string.format("analyze --data '%s' --output '%s/r.md'", d, d))
    assert.equal(0, st, err)
    assert.matches('\n  HIGH     12%.0%% of requests failed %(36 of 300: 5xx 36%)\n', out)
    assert.matches('\nhypotheses worth testing [^\n]*\n  SUPPORTED    the service fails requests: 12%.0%% errors ' ..
      '%(5xx 36%)\n', out)
    local found = util.json_decode(util.readfile(d .. '/analysis/findings.json'))
    local e
    for _, f in ipairs(found) do if f.metric == 'error_ratio' then e = f end end
    assert.same({ 'service', 'high', 0.12, 36, 300, 'red-check.json' },
      { e.resource, e.severity, e.value, e.errors, e.requests, e.evidence })
    assert.same({ { kind = '5xx', count = 36 } }, e.kinds)
    -- the report has a section for the service
    assert.matches('\n## Service %(RED%)\n', util.readfile(d .. '/r.md'))
    -- and root-cause weighs the same evidence
    out, err, st = h.pm(string.format("root-cause --hypothesis 'the service fails requests' --evidence '%s'", d))
    assert.equal(0, st, err)
    assert.matches('Verdict: +SUPPORTED', out)
    assert.matches('supports +36 of 300 requests failed %(12%.0%%: 5xx 36%)  %[red%-check%.json%]', out)
    h.rmrf(d)
  end)

  it('refutes a failing service where no request failed, and flags latency past a threshold a team sets', function()
    local d = copy('gates/slow')   -- /delay50: every answer after ~50 ms, no error
    local out, err, st = h.pm(string.format("root-cause --hypothesis 'the service fails requests' --evidence '%s'", d))
    assert.equal(0, st, err)
    assert.matches('Verdict: +REFUTED', out)
    assert.matches('refutes +0 of 478 requests failed %(0%.0%%%)', out)
    out, err, st = h.pm(string.format("analyze --data '%s' --output '%s/r.md'", d, d))
    assert.equal(0, st, err)
    -- the folded profile of calltree alone: spin is on every stack
    assert.matches('\n  MEDIUM   spin holds 100%% of on%-CPU samples %(hot path [^\n]*> spin%); 100%% user / 0%% ' ..
      'kernel\n', out)
    assert.is_nil(out:find('requests failed', 1, true))
    assert.is_nil(out:find('p99', 1, true))          -- 52 ms is under the default 100 ms
    h.rmrf(d)
    -- the threshold is data: a 20 ms SLO makes the same run slow
    local F = require('perf_manual.analyzers.findings')
    local red = util.json_decode(h.fixture('gates/slow/red-check.json'))
    local saved = F.thresholds.latency_p99_ms_medium
    F.thresholds.latency_p99_ms_medium = 20
    local f = F.from_red(red)
    local rc = require('perf_manual.analyzers.root_cause')
    local texts = rc.candidates({ red = red }, f)
    F.thresholds.latency_p99_ms_medium = saved
    assert.equal(1, #f)
    assert.equal('latency_p99_ms', f[1].metric)
    assert.matches('^requests take 52%.%dms at p99 %(p50 50%.4ms, p90 50%.%dms%), above the 20 ms threshold$',
      f[1].summary)
    assert.matches('^the service answers slowly: p99 latency 52%.%dms$', texts[1])
  end)

  it('finds what the series of a real collect run say', function()
    local d = copy('report/collect')
    local out, err, st = h.pm(string.format("analyze --data '%s' --output '%s/r.md' --json", d, d))
    assert.equal(0, st, err)
    local found = util.json_decode(out)
    local busy
    for _, f in ipairs(found) do if f.metric == 'cpu_busy' then busy = f end end
    -- the recorded cpu.jsonl: every CPU 100% busy while cpu_burn ran
    local vals = {}
    for line in util.readfile(d .. '/raw_data/cpu.jsonl'):gmatch('[^\n]+') do
      vals[#vals + 1] = util.json_decode(line).rates.total.busy_pct
    end
    table.sort(vals)
    assert.same({ 'cpu', 'high', 'raw_data/cpu.jsonl', 'cpu.rates.total.busy_pct' },
      { busy.resource, busy.severity, busy.evidence, busy.series })
    assert.equal(vals[math.floor((#vals + 1) / 2)], busy.value)
    assert.matches('^CPU busy 100%% at the median of ' .. #vals .. ' samples', busy.summary)
    h.rmrf(d)
  end)

  it('names the kinds of errors of a passive RED result too', function()
    local F = require('perf_manual.analyzers.findings')
    local f = F.from_red({ errors = { total = 30, attempts = 200, ratio = 0.15, closed_without_response = 10,
      by_errno = { ['read ECONNRESET'] = 20 } } })
    assert.equal('15.0% of requests failed (30 of 200: read ECONNRESET 20, closed without response 10)', f[1].summary)
    -- red-check's own findings are the same rule
    assert.same(f, require('perf_manual.analyzers.red').findings({ errors = { total = 30, attempts = 200, ratio = 0.15,
      closed_without_response = 10, by_errno = { ['read ECONNRESET'] = 20 } } }))
  end)
end)
