local template = require('perf_manual.report.template')
local report = require('perf_manual.report')

local function render(text, data, esc)
  return template.render(template.compile(text, 't.md'), data, { escape = esc })
end

local function err_of(fn)
  local ok, e = pcall(fn)
  assert.is_false(ok)
  return tostring(e)
end

describe('perf_manual.report.template', function()
  it('fills values, escaped, and raw values as they are', function()
    local esc = function(s) return (s:gsub('<', '&lt;')) end
    assert.equal('a &lt;b> c <i>', render('a {{ x }} c {{{y}}}', { x = '<b>', y = '<i>' }, esc))
    assert.equal('n=3 deep=ok', render('n={{n}} deep={{a.b.c}}', { n = 3, a = { b = { c = 'ok' } } }))
  end)

  it('repeats lists with the item, its index and the outer scope', function()
    local t = '{{#each rows}}{{@index}}:{{name}}/{{unit}} {{/each}}|{{#each plain}}[{{.}}]{{/each}}'
    assert.equal('1:a/ms 2:b/s |[x][y]', render(t, { unit = 'ms', rows = { { name = 'a' }, { name = 'b', unit = 's' } },
      plain = { 'x', 'y' } }))
  end)

  it('chooses branches; missing, false, empty string and empty list are false', function()
    local t = '{{#if x}}yes{{else}}no{{/if}}'
    for _, case in ipairs({ { {}, 'no' }, { { x = false }, 'no' }, { { x = '' }, 'no' }, { { x = {} }, 'no' },
                            { { x = 0 }, 'yes' }, { { x = { 1 } }, 'yes' }, { { x = 'a' }, 'yes' } }) do
      assert.equal(case[2], render(t, case[1]))
    end
  end)

  it('takes block tags alone on their line with the whole line, so tables stay tables', function()
    local t = '| a |\n|---|\n{{#each r}}\n| {{v}} |\n{{/each}}\n{{! note }}\nend\n'
    assert.equal('| a |\n|---|\n| 1 |\n| 2 |\nend\n', render(t, { r = { { v = 1 }, { v = 2 } } }))
  end)

  it('names the template, the line and the field for an unknown field', function()
    local t = 'line 1\n{{#each rows}}\n  {{name}} {{nmae}}\n{{/each}}\n'
    assert.equal("[perf_manual.report.template] t.md:3: unknown field 'nmae'", err_of(function()
      render(t, { rows = { { name = 'a' } } })
    end))
    assert.equal("[perf_manual.report.template] t.md:1: unknown field 'a.b'",
      err_of(function() render('{{a.b}}', { a = {} }) end))
    assert.equal("[perf_manual.report.template] t.md:1: field 'a' is a table, not text",
      err_of(function() render('{{a}}', { a = {} }) end))
    assert.equal("[perf_manual.report.template] t.md:1: unknown field 'rows'", err_of(function() render('{{#each ' ..
      'rows}}{{/each}}', {}) end))
  end)

  it('rejects broken templates with the line', function()
    local cases = {
      { 'a\n{{#if x}}\nb', "t.md:2: {{#if x}} is never closed" },
      { '{{/each}}', "t.md:1: '{{/each}}' does not close any block" },
      { '{{#each a}}\n{{/if}}', "t.md:2: '{{/if}}' does not close the {{#each}} of line 1" },
      { '{{else}}', "t.md:1: '{{else}}' outside an {{#if}}" },
      { 'x {{ a b }}', "t.md:1: bad field name 'a b'" },
      { '\n\n{{ a', "t.md:3: unclosed '{{'" },
    }
    for _, c in ipairs(cases) do
      assert.equal('[perf_manual.report.template] ' .. c[2], err_of(function() template.compile(c[1], 't.md') end))
    end
  end)

  it('renders every shipped template from real data and from an empty data dir', function()
    local root = test_helpers.root
    local empty = os.tmpname(); os.remove(empty); os.execute("mkdir -p '" .. empty .. "'")
    for _, dir in ipairs({ root .. '/tests/fixtures/report/before', root .. '/tests/fixtures/report/after',
                           root .. '/tests/fixtures/report/collect', empty }) do
      local ds = assert(report.load(dir))
      for _, f in ipairs({ { 'technical', 'md' }, { 'executive', 'md' }, { 'technical', 'html' },
        { 'executive', 'html' }, { 'slides', 'html' } }) do
        local text = report.render(ds, { format = f[1], output = f[2], assets = 'a' })
        assert.is_true(#text > 200, f[1] .. '.' .. f[2] .. ' on ' .. dir)
      end
    end
    os.execute("rm -rf '" .. empty .. "'")
  end)
end)

describe('perf_manual.report.load', function()
  it('reads a collect data dir: ISO times, nested numbers as dotted series, noise left out', function()
    local ds = assert(report.load(test_helpers.root .. '/tests/fixtures/report/collect'))
    local busy = assert(ds.series['cpu.rates.total.busy_pct'])
    assert.equal(3, #busy.points)
    -- seconds from the first sample, from "2026-...T..Z" stamps one second apart
    assert.equal(0, busy.points[1][1])
    assert.is_true(math.abs(busy.points[2][1] - 1) < 0.1, busy.points[2][1])
    assert.is_nil(ds.series['cpu.rates.elapsed'])
    for name in pairs(ds.series) do assert.is_nil(name:find('loop%d'), name) end
    assert.is_table(ds.use)
    -- the CPU chart shows the total first, labelled at its end by its name
    local v = report.view(ds)
    assert.equal('cpu', v.charts[1].key)
    assert.matches('<text[^>]*>CPU busy [%d.]+%%</text>', v.charts[1].svg)
    assert.matches('<text[^>]*>CPU 0 busy [%d.]+%%</text>', v.charts[1].svg)
    assert.is_nil(v.charts[1].svg:find('busy_pct', 1, true))
  end)

  it('parses ISO-8601 times with Z or an offset', function()
    assert.equal(0, report.parse_time('1970-01-01T00:00:00Z'))
    assert.equal(1795326257.703, report.parse_time('2026-11-22T05:44:17.703Z'))
    assert.equal(951868800, report.parse_time('2000-03-01T01:00:00+01:00'))
    assert.is_nil(report.parse_time('yesterday'))
  end)
end)
