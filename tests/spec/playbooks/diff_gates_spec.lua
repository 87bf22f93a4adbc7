-- diff --expect as a CI gate, through the real CLI, on data recorded from real
-- runs (tests/fixtures/gates/record.lua): red-check of nginx /delay50 (slow,
-- no errors, ~80 req/s) and of /err10 (fast, ~10% 500s, ~21000 req/s), with
-- on-CPU profiles of calltree alone and of calltree beside cpu_burn.
local util = require('perf_manual.util')
local h = test_helpers

local G = h.root .. '/tests/fixtures/gates'
local R = h.root .. '/tests/fixtures/report'

local function gate(before, after, expects)
  local args = {}
  for _, e in ipairs(expects) do args[#args + 1] = string.format("--expect '%s'", e) end
  local out, err, st = h.pm(string.format("diff --before '%s' --after '%s' --iterations 300 --json %s", before, after,
    table.concat(args, ' ')))
  local d = st ~= 2 and util.json_decode(out) or nil
  return d, st, err
end

local function statuses(d)
  local s = {}
  for i, e in ipairs(d.expectations) do s[i] = e.status end
  return s
end

local ALL = { 'p99 -20%', 'p50 < 5ms', 'errors < 1%', 'error ratio -50%', 'throughput +10%', 'rps >= 1000',
  'profile spin -30%', 'function gamma_ share < 20%', 'red-check.latency p90 -50%' }

describe('diff --expect gates', function()
  it('judges each kind of expectation on recorded RED runs and profiles, met one way and not the other', function()
    -- slow -> errs: faster and more throughput, but errors appear
    local d, st, err = gate(G .. '/slow', G .. '/errs', ALL)
    assert.equal(1, st, err)
    assert.same({ 'met', 'met', 'not met', 'not judged', 'met', 'met', 'met', 'met', 'met' }, statuses(d))
    local e = d.expectations
    assert.equal('red-check.latency', e[1].metric)
    assert.is_true(e[1].met)
    assert.is_true(e[1].p < 0.05 and e[1].ci_hi <= -0.2)
    assert.matches('^NOT MET: errors < 1%%: error ratio mean after 10%.%d+%% %(95%% CI ', e[3].line)
    assert.matches('per%-second error ratios of the RED runs %(6 and 6 intervals%)', e[3].method)
    assert.equal('NOT JUDGED: error ratio -50%: no relative change: the value before is 0', e[4].line)
    assert.is_false(e[4].judged)
    assert.matches('^MET: throughput %+10%%: throughput mean 79%.7/s → %d+%.%d/s', e[5].line)
    -- calltree had the CPU to itself, then shared it with cpu_burn: spin's share about halves
    assert.matches("^MET: profile spin %-30%%: spin share 100%.00%% → 5%d%.%d+%% %(998 of 998 → %d+ of 1043%)",
      e[7].line)
    assert.equal('two-proportion z-test on the samples with the function on the stack, log risk-ratio CI', e[7].method)
    -- errs -> slow: the same expectations, the other way round
    d, st = gate(G .. '/errs', G .. '/slow', ALL)
    assert.equal(1, st)
    assert.same({ 'not met', 'not met', 'met', 'met', 'not met', 'not met', 'not met', 'not met', 'not met' },
      statuses(d))
    assert.matches('^MET: error ratio %-50%%: error ratio mean 10%.%d+%% → 0%.00%%, %-100%.0%%', d.expectations[4].line)
  end)

  it('exits 0 when every expectation is met, and prints each verdict line', function()
    local out, err, st = h.pm(string.format("diff --before '%s/slow' --after '%s/errs' --iterations 300 "
      .. "--expect 'p99 -20%%, p50 < 5ms' --expect 'throughput +10%%; profile spin -30%%'", G, G))
    assert.equal(0, st, err)
    assert.matches('\n%- MET: p99 %-20%%: Request latency p99 52%.5ms → 1%.2ms', out)
    assert.matches('\n%- MET: p50 < 5ms: Request latency median after ', out)
    -- with --output the verdicts still reach the terminal
    local dir = h.tmpdir()
    out, err, st = h.pm(string.format("diff --before '%s/errs' --after '%s/slow' --iterations 300 --output '%s/d.md' "
      .. "--expect 'errors < 1%%'", G, G, dir))
    assert.equal(0, st, err)
    assert.matches('^wrote [^\n]*d%.md[^\n]*\nMET: errors < 1%%: ', out)
    assert.matches('\n%- MET: errors < 1%%: ', util.readfile(dir .. '/d.md'))
    h.rmrf(dir)
  end)

  it('uses the request counts when a run has too few intervals, and says so', function()
    -- the report fixtures: 3 s RED runs (3 intervals a side), 0 then 36 of 300 errors
    local d, st = gate(R .. '/after', R .. '/before', { 'error ratio -50%', 'throughput +10%', 'rps > 90' })
    assert.equal(1, st)
    assert.same({ 'met', 'not met', 'not met' }, statuses(d))
    local e = d.expectations
    assert.equal('two-proportion z-test on the request counts, log risk-ratio CI', e[1].method)
    assert.near(6.07288e-10, e[1].p, 1e-13)
    assert.equal('Poisson rate test on the answered requests, log rate-ratio CI', e[2].method)
    assert.equal('Poisson interval of the after rate', e[3].method)
    d, st = gate(R .. '/before', R .. '/after', { 'errors < 1%' })
    assert.equal(1, st)
    assert.matches('^NOT MET: errors < 1%%: error ratio after 12%.00%% %(36 of 300, 95%% CI 8%.80%% .. 16%.17%%',
      d.expectations[1].line)
  end)

  it('says NOT JUDGED, and exits 1, when the data does not hold the metric', function()
    local d, st = gate(R .. '/collect', R .. '/collect', { 'p99 -20%', 'errors < 1%', 'profile spin -30%',
      'nosuch +5%' })
    assert.equal(1, st)
    assert.same({ 'not judged', 'not judged', 'not judged', 'not judged' }, statuses(d))
    assert.equal('NOT JUDGED: errors < 1%: no error counts on both sides (a red-check.json, or an error_ratio series)',
      d.expectations[2].line)
    assert.equal("NOT JUDGED: nosuch +5%: no metric 'nosuch' on both sides", d.expectations[4].line)
    -- two folded profiles alone: the profile share is judged, the rest is not
    d, st = gate(G .. '/slow/profile-cpu.folded', G .. '/errs/profile-cpu.folded',
      { 'profile gamma_ -30%', 'p99 -20%' })
    assert.equal(1, st)
    assert.same({ 'met', 'not judged' }, statuses(d))
  end)

  it('exits 2 with a one-line error naming an expectation that does not parse', function()
    local _, st, err = gate(G .. '/slow', G .. '/errs', { 'p99 -20%', 'errors < 1% ; latency fast' })
    assert.equal(2, st)
    assert.equal(1, select(2, err:gsub('\n', '')))
    assert.matches('^perf_manual: diff: bad %-%-expect "latency fast": ', err)
    _, st, err = gate(G .. '/slow', G .. '/errs', { 'rps >= lots' })
    assert.equal(2, st)
    assert.equal("perf_manual: diff: bad --expect \"rps >= lots\": 'lots' is not a number\n", err)
  end)
end)
