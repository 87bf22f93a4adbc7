-- `perf_manual fix` and `investigate --resume ID --fix` through the real CLI,
-- on investigations recorded from real runs (tests/fixtures/fixval/record.lua):
-- the fix and the validation land in metadata.yaml in the shape the reports
-- render, the timeline says both, bad input is one line and exit 2.
local util = require('perf_manual.util')
local store = require('perf_manual.store')
local h = test_helpers

local FV = h.root .. '/tests/fixtures/fixval'

local function fixture_store(names) return h.fixture_store('fixval', names) end

local function meta_of(root, id) return assert(store.open(root, id):load_metadata()) end

local function kinds(meta)
  local out = {}
  for _, e in ipairs(meta.timeline) do out[#out + 1] = e.kind end
  return table.concat(out, ' ')
end

describe('fix', function()
  local root, ids
  before_each(function() root, ids = fixture_store({ 'slow', 'fast', 'slow2' }) end)
  after_each(function() h.rmrf(root) end)

  it('records the fix in the investigation and its timeline', function()
    local out, err, st = h.pm(string.format("fix %s 'serve without the 20 ms sleep' --store '%s'", ids[1], root))
    assert.equal(0, st, err)
    assert.matches('Fix recorded in ' .. ids[1]:gsub('%-', '%%-') .. ': serve without the 20 ms sleep', out)
    assert.matches('fix ' .. ids[1]:gsub('%-', '%%-') .. ' %-%-validate', out)
    local meta = meta_of(root, ids[1])
    assert.equal('serve without the 20 ms sleep', meta.fix.text)
    assert.matches('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$', meta.fix.at)
    assert.matches(' fix$', kinds(meta))
    assert.is_nil(meta.validation)
  end)

  it('validates against an after data dir: fixed, stored in the shape the reports render', function()
    local out, err, st = h.pm(string.format("fix --investigation %s --text 'delay 0 in the config' --after '%s/fast' "
      .. "--iterations 500 --json --store '%s'", ids[1], FV, root))
    assert.equal(0, st, err)
    local res = assert(util.json_decode(out))
    assert.equal('fixed', res.validation.verdict)
    local meta = meta_of(root, ids[1])
    local v = meta.validation
    assert.equal('fixed', v.verdict)
    assert.matches('^fixed: p90 %-99%%, 95%% CI %[%-99%%, %-99%%%], U test p < 0%.001$', v.summary)
    assert.equal(FV .. '/fast', v.after)
    assert.matches('^%d%d%d%d%-%d%d%-%d%dT', v.at)
    local m = v.metrics[1]
    assert.same({ 'after', 'before', 'change_pct', 'ci_hi', 'ci_lo', 'key', 'name', 'p', 'test', 'unit' }, util.keys(m))
    assert.equal('Latency p90', m.name)
    assert.equal('red.latency.p90', m.key)
    assert.equal('mann-whitney', m.test)
    -- before: the investigation's own red check; after: the data dir's
    local b = util.json_decode(h.fixture('fixval/slow/raw_data/red-check.json'))
    local a = util.json_decode(h.fixture('fixval/fast/raw_data/red-check.json'))
    assert.near(b.latency.p90 * 1000, m.before, b.latency.p90 * 1000 * 0.03)
    assert.near(a.latency.p90 * 1000, m.after, a.latency.p90 * 1000 * 0.05)
    for _, r in ipairs(v.metrics) do
      assert.truthy(({ ['mann-whitney'] = 1, ['one value per side'] = 1, ['poisson rate'] = 1,
        ['two-proportion z'] = 1, ['no test'] = 1 })[r.test], r.test)
    end
    assert.matches(' fix validation$', kinds(meta))
    -- the diff of every metric, as `diff --output x.json` writes it
    local d = util.json_decode(assert(store.read_analysis(root .. '/' .. ids[1], 'fix-validation.json')))
    assert.equal('fixed', d.verdict)
    assert.truthy(#d.metrics > 0)
  end)

  it('says not fixed against a re-run of the unchanged slow service (another investigation as after)', function()
    local _, err, st = h.pm(string.format("fix %s 'nothing really' --store '%s'", ids[1], root))
    assert.equal(0, st, err)
    local out
    out, err, st = h.pm(string.format("fix %s --after %s --iterations 500 --store '%s'", ids[1], ids[3], root))
    assert.equal(0, st, err)
    assert.matches('Validation: not fixed: p90 %-8%%', out)
    assert.matches('%* Latency p90 ', out)
    assert.equal('not fixed', meta_of(root, ids[1]).validation.verdict)
    assert.equal(ids[3], meta_of(root, ids[1]).validation.after)
  end)

  it('records a fix from investigate --resume ID --fix, running nothing else', function()
    local before = meta_of(root, ids[2])
    local out, err, st = h.pm(string.format("investigate --resume %s --fix 'pool of 8 workers' --store '%s'", ids[2],
      root))
    assert.equal(0, st, err)
    assert.matches('Fix recorded in', out)
    assert.not_matches('== 1/', out)
    local meta = meta_of(root, ids[2])
    assert.equal('pool of 8 workers', meta.fix.text)
    assert.equal(#before.timeline + 1, #meta.timeline)
    assert.equal(before.status, meta.status)
  end)

  it('refuses bad input in one line, exit 2', function()
    local cases = {
      { "fix nosuchinvestigation 'x'", 'nosuchinvestigation' },
      { 'fix ' .. ids[1], 'say what was changed' },
      { 'fix ' .. ids[1] .. ' --after ' .. FV .. '/fast', 'no fix recorded yet' },
      { 'fix ' .. ids[1] .. " 'x' --target 1", '%-%-target goes with %-%-validate' },
      { 'fix ' .. ids[1] .. " 'x' --validate --after " .. FV .. '/fast', 'not both' },
      { 'fix ' .. ids[1] .. " 'x' --after /nonexistent/dir", 'nonexistent' },
      { "investigate --workload 1 --symptom s --fix 'x'", '%-%-resume' },
      { 'fix', 'name the investigation' },
    }
    for _, c in ipairs(cases) do
      local _, err, st = h.pm(c[1] .. " --store '" .. root .. "'")
      assert.equal(2, st, c[1] .. ': ' .. err)
      assert.matches(c[2], err, 1)
      local _, nl = err:gsub('\n', '')
      assert.equal(1, nl, c[1] .. ': ' .. err)
    end
  end)

  it('has --help', function()
    local out, _, st = h.pm('fix --help')
    assert.equal(0, st)
    assert.matches('%-%-validate', out)
    assert.matches('%-%-after', out)
  end)
end)
