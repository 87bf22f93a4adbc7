local fold = require('perf_manual.fold')
local fg = require('perf_manual.report.flamegraph')
local palettes = require('perf_manual.report.palettes')

-- name -> {r, g, b} of every frame drawn (the root as "all")
local function fills(svg)
  local out = {}
  local pat = '<g><title>(.-) %([%d,]+ [^)]*%)</title><rect [^>]*fill="rgb%((%d+),(%d+),(%d+)%)"'
  for name, r, g, b in svg:gmatch(pat) do
    out[name] = { tonumber(r), tonumber(g), tonumber(b) }
  end
  return out
end

local function profile()
  return fold.from_table({
    ['app;checkout::pay;sys_write_[k]'] = 30,
    ['app;checkout::cart;lookup'] = 20,
    ['app;jitted_[j]'] = 10,
    ['app;wait_[o]'] = 5,
  })
end

describe('perf_manual.report.palettes', function()
  it('holds the built-in palettes as data the flame graph accepts', function()
    for _, name in ipairs(fg.COLORS) do
      assert.is_table(palettes[name], name)
      assert.is_table(assert(fg.compile_palette(palettes[name])).rules, name)
    end
    assert.is_table(assert(fg.compile_palette(palettes.diff)).diff)
  end)

  it('colours frames by the data: changing a range changes the graph', function()
    local p = profile()
    local kind = fills(fg.render(p, { colors = 'kind' }))
    local k = kind['sys_write_[k]']
    assert.truthy(k[1] >= 225 and k[2] >= 160 and k[2] <= 210 and k[3] <= 40) -- the kernel rule's ranges
    assert.same({ 200, 200, 200 }, kind.all)
    -- the same palette with the kernel rule made a fixed colour
    local mine = { rules = {} }
    for i, r in ipairs(palettes.kind.rules) do mine.rules[i] = r end
    mine.rules[2] = { kind = 'kernel', r = 1, g = 2, b = 3 }
    local got = fills(fg.render(p, { colors = mine }))
    assert.same({ 1, 2, 3 }, got['sys_write_[k]'])
    assert.same(kind.lookup, got.lookup) -- other frames unchanged
  end)

  it('takes a team palette: name substrings, kind lists, first match wins, root colour', function()
    local team = {
      root = { 10, 20, 30 },
      rules = {
        { contains = { 'checkout::', 'lookup' }, r = 120, g = 60, b = { 200, 255, 1 } },
        { kind = { 'kernel', 'jit' }, r = 0, g = 0, b = 0 },
        { kind = 'user', r = 250, g = 250, b = 250 },
      },
    }
    local f = fills(fg.render(profile(), { colors = team }))
    assert.same({ 10, 20, 30 }, f.all)
    assert.same({ 120, 60 }, { f['checkout::pay'][1], f['checkout::pay'][2] })
    assert.truthy(f['checkout::pay'][3] >= 200 and f['checkout::pay'][3] <= 255)
    assert.same({ 120, 60 }, { f.lookup[1], f.lookup[2] })
    assert.same({ 0, 0, 0 }, f['sys_write_[k]'])
    assert.same({ 0, 0, 0 }, f['jitted_[j]'])
    assert.same({ 250, 250, 250 }, f.app)
    -- off-CPU frames match no rule: the root colour
    assert.same({ 10, 20, 30 }, f['wait_[o]'])
  end)

  it('rejects a bad palette with what is wrong', function()
    local function err(colors)
      local ok, e = pcall(fg.render, profile(), { colors = colors })
      assert.is_false(ok)
      return tostring(e)
    end
    assert.truthy(err('plaid'):find('unknown colors: plaid', 1, true))
    assert.truthy(err({ rules = { { kind = 'gpu', r = 1, g = 1, b = 1 } } }):find('rule 1: unknown kind gpu', 1, true))
    assert.truthy(err({ rules = { { r = 300, g = 1, b = 1 } } }):find('rule 1 r: expected a value 0..255', 1, true))
    assert.truthy(err({ rules = { { r = { 0, 10, 4 }, g = 1, b = 1 } } }):find('n = 1, 2 or 3', 1, true))
    assert.truthy(err({ rules = { { contains = '', r = 1, g = 1, b = 1 } } }):find('contains', 1, true))
    assert.truthy(err({}):find('expected rules', 1, true))
    assert.truthy(err({ diff = { grow = { 1, 2 } } }):find('diff.grow', 1, true))
  end)
end)
