local fold = require('perf_manual.fold')
local flamediff = require('perf_manual.report.flamediff')

local function frame_fills(svg)
  local out = {}
  local pat = '<g><title>(.-)</title><rect [^>]-fill="rgb%((%d+),(%d+),(%d+)%)" data%-n="(%d+)"'
  for title, r, g, b, n in svg:gmatch(pat) do
    out[title:match('^(.-) %(')] = { r = tonumber(r), g = tonumber(g), b = tonumber(b), n = tonumber(n), title = title }
  end
  return out
end

-- the calltree capture, and the same program after fetch_related grew
local function profiles()
  local before = assert(fold.from_perf_script(test_helpers.fixture('perf/calltree_user.perf.txt')))
  local after = fold.new()
  after:merge(before)
  local grown = before:total()
  after:add('calltree;__libc_start_call_main;main;fetch_related', grown) -- new: half of after
  return before, after
end

describe('perf_manual.report.flamediff', function()
  it('draws the after profile, red where self share grew, blue where it shrank', function()
    local before, after = profiles()
    local svg, info = flamediff.render(before, after, { minwidth = 0 })
    assert.truthy(info.frames > 0)
    local f = frame_fills(svg)
    -- widths are the after profile's
    assert.equal(after:total(), f.all.n)
    -- fetch_related: 0% -> 50% self, the largest change: full red
    assert.same({ 255, 45, 45 }, { f.fetch_related.r, f.fetch_related.g, f.fetch_related.b })
    assert.truthy(f.fetch_related.title:find('before 0.00%, +50.00 pts; self +50.00 pts', 1, true))
    -- spin kept its samples but halved its share: blue
    assert.equal(255, f.spin.b)
    assert.truthy(f.spin.r < 255)
    assert.truthy(svg:find('red grew, blue shrank', 1, true))
  end)

  it('colours an unchanged profile white', function()
    local before = assert(fold.from_perf_script(test_helpers.fixture('perf/calltree_user.perf.txt')))
    local f = frame_fills((flamediff.render(before, before, {})))
    for name, c in pairs(f) do
      if name ~= 'all' then assert.same({ 255, 255, 255 }, { c.r, c.g, c.b }) end
    end
  end)

  it('ranks the top changes by self and total share', function()
    local before, after = profiles()
    local ch = flamediff.top_changes(before, after, 3)
    assert.equal('fetch_related', ch.self[1].name)
    assert.near(50, ch.self[1].delta, 1e-9)
    assert.equal(0, ch.self[1].before)
    assert.equal('fetch_related', ch.total[1].name)
    -- main and the root are on every stack before and after: no change
    for _, r in ipairs(ch.total) do assert.truthy(r.name ~= 'main') end
    -- only leaves have self samples: spin lost half its share
    assert.equal(2, #ch.self)
    assert.equal('spin', ch.self[2].name)
    assert.near(-50, ch.self[2].delta, 1e-9)
    local text = flamediff.format_changes(ch)
    assert.matches('Top changes in self share', text)
    assert.matches('%+50%.00  fetch_related', text)
  end)

  it('accepts folded text and rejects other things', function()
    local ch = flamediff.top_changes('a;b 1\n', 'a;c 1\n', 5)
    assert.equal(2, #ch.self)
    assert.has_error(function() flamediff.render(42, 'a 1\n') end,
      '[perf_manual.report.flamediff] before: expected a profile or folded text')
    local svg = flamediff.render('a;b 1\n', '', {})
    assert.truthy(svg:find('No samples in the after profile', 1, true))
  end)
end)
