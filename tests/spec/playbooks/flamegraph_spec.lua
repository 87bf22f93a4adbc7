-- The flamegraph playbook on a recorded folded profile and, through fold,
-- on a recorded perf capture.
local h = test_helpers

local FOLDED = h.root .. '/tests/fixtures/profile/system_3s.folded'

local function titles(svg)
  local out = {}
  for t in svg:gmatch('<title>([^<]*)</title>') do out[#out + 1] = t end
  return out
end

describe('flamegraph', function()
  it('draws the fold of a perf capture piped into it, with the totals of the capture', function()
    local out, err, st = h.sh(string.format("%s/bin/perf_manual fold %s/tests/fixtures/perf/calltree_user.perf.txt "
      .. "| %s/bin/perf_manual flamegraph --title 'calltree on-CPU'", h.root, h.root, h.root))
    assert.equal(0, st, err)
    assert.matches('^<%?xml', out)
    assert.matches('data%-total="80160320"', out)
    assert.matches('>calltree on%-CPU<', out)
    local t = table.concat(titles(out), '\n')
    assert.matches('alpha %(54,108,216 samples, 67%.50%%%)', t)
  end)

  it('takes width, minimum width, palette and count name, and says what it pruned on stderr', function()
    local out, err, st = h.pm('flamegraph --width 300 --minwidth 5% --countname us --colors offcpu ' .. FOLDED)
    assert.equal(0, st, err)
    assert.matches('<svg [^>]*width="300"', out)
    assert.matches('data%-unit="us"', out)
    assert.matches('data%-total="423"', out)
    assert.equal('perf_manual: flamegraph: 236 frames narrower than 14 px not drawn (46 us)\n', err)
    -- the off-CPU palette is blues
    local blue = 0
    for r, g, b in out:gmatch('fill="rgb%((%d+),(%d+),(%d+)%)"') do
      if tonumber(b) > tonumber(r) and tonumber(b) > tonumber(g) then blue = blue + 1 end
    end
    assert.is_true(blue >= 5, 'blue frames: ' .. blue)
    assert.truthy(table.concat(titles(out), '\n'):find('alpha (60 us, 14.18%)', 1, true))
  end)

  it('rejects a width out of range and an unknown palette with exit 2', function()
    local _, err, st = h.pm('flamegraph --width 50 ' .. FOLDED)
    assert.equal(2, st)
    assert.equal('perf_manual: flamegraph: --width must be between 100 and 100000\n', err)
    _, err, st = h.pm('flamegraph --colors neon ' .. FOLDED)
    assert.equal(2, st)
    assert.matches("bad value for %-%-colors 'neon': expected one of: kind, hot, offcpu, mem", err)
  end)
end)
