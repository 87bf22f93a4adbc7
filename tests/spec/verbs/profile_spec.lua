-- The profile verb's pure parts: rebuilding a recorded profile, writing
-- its files, and refusing a bad format (the live path is e2e and
-- tests/spec/measure/profile_spec.lua).
local vp = require('perf_manual.verbs.profile')
local util = require('perf_manual.util')
local h = test_helpers

local function recorded()
  local rec = assert(util.json_decode(h.fixture('replay/profile/profile.json')))
  return rec, h.fixture('replay/profile/profile.folded')
end

describe('perf_manual.verbs.profile', function()
  it('rebuilds a recorded profile with its recorded quality', function()
    local rec, folded = recorded()
    local prof = vp.rebuild(rec, folded)
    assert.equal(rec.total, prof.total)
    assert.equal(rec.kind, prof.kind)
    assert.equal(rec.quality.samples, prof.quality.samples)
    assert.same(rec.quality.without_frame_pointers, prof.quality.without_frame_pointers)
    -- the same stacks come out again
    assert.equal(folded, require('perf_manual.profilers').folded(prof))
  end)

  it('writes the flame graph, the folded stacks and the summary, and refuses a file as the directory', function()
    local rec, folded = recorded()
    local dir = os.tmpname()
    os.remove(dir)
    local files = assert(vp.write(vp.rebuild(rec, folded), dir, { 'folded', 'svg', 'speedscope' }))
    assert.same({ dir .. '/profile.svg', dir .. '/profile.folded', dir .. '/profile.speedscope.json',
      dir .. '/profile.json' }, files)
    assert.equal(folded, util.readfile(dir .. '/profile.folded'))
    assert.truthy(util.readfile(dir .. '/profile.svg'):find('<svg', 1, true))
    os.execute("rm -rf '" .. dir .. "'")
    local f = os.tmpname()
    local ok, err = vp.write(vp.rebuild(rec, folded), f, { 'folded' })
    os.remove(f)
    assert.is_nil(ok)
    assert.matches('exists and is not a directory', err)
  end)

  it('refuses an unknown format naming the command', function()
    local inv = { playbook = { name = 'profile' }, fail = function(_, msg) error(msg, 0) end }
    local ok, err = pcall(vp.check_profile_formats, inv, { 'svg', 'png' })
    assert.is_false(ok)
    assert.equal("profile: unknown --format 'png' (svg, folded, speedscope, pprof)", err)
  end)
end)
