local fold = require('perf_manual.fold')
local speedscope = require('perf_manual.report.speedscope')
local cjson = require('cjson')

describe('perf_manual.report.speedscope', function()
  it('exports a sampled profile with shared frames that adds up to the folded counts', function()
    local p = assert(fold.from_perf_script(test_helpers.fixture('perf/calltree_user.perf.txt')))
    local doc = cjson.decode(speedscope.encode(p, { name = 'calltree' }))
    assert.equal('https://www.speedscope.app/file-format-schema.json', doc['$schema'])
    assert.equal(0, doc.activeProfileIndex)
    assert.equal(1, #doc.profiles)
    local prof = doc.profiles[1]
    assert.equal('sampled', prof.type)
    assert.equal('none', prof.unit)
    assert.equal('calltree', prof.name)
    assert.equal(#prof.samples, #prof.weights)
    assert.equal(p:unique(), #prof.samples)
    -- frames are shared: each name once
    local seen = {}
    for _, f in ipairs(doc.shared.frames) do
      assert.is_nil(seen[f.name]); seen[f.name] = true
    end
    -- rebuilding the folded text from the file gives the profile back
    local total, rebuilt = 0, fold.new()
    for i, s in ipairs(prof.samples) do
      local names = {}
      for j, idx in ipairs(s) do
        assert.truthy(idx >= 0 and idx < #doc.shared.frames)
        names[j] = doc.shared.frames[idx + 1].name
      end
      rebuilt:add(table.concat(names, ';'), prof.weights[i])
      total = total + prof.weights[i]
    end
    assert.equal(p:folded(), rebuilt:folded())
    assert.equal(0, prof.startValue)
    assert.equal(total, prof.endValue)
    assert.equal(p:total(), total)
  end)

  it('writes broken UTF-8 in frame names as ?', function()
    local doc = cjson.decode(speedscope.encode(fold.from_table({ ['app;caf\195\169;bad\255'] = 2 })))
    local names = {}
    for _, f in ipairs(doc.shared.frames) do names[#names + 1] = f.name end
    assert.same({ 'app', 'caf\195\169', 'bad?' }, names)
  end)

  it('keeps an empty profile valid and checks its unit', function()
    local json = speedscope.encode(fold.new(), { unit = 'microseconds' })
    local doc = cjson.decode(json)
    assert.equal(0, #doc.shared.frames)
    assert.truthy(json:find('"samples":[]', 1, true))
    assert.truthy(json:find('"frames":[]', 1, true))
    assert.equal('microseconds', doc.profiles[1].unit)
    assert.has_error(function() speedscope.encode(fold.new(), { unit = 'parsecs' }) end,
      '[perf_manual.report.speedscope] unknown unit: parsecs')
  end)
end)
