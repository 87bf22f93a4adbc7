-- profile --replay: a profile directory a live run wrote (calltree burn:
-- main → alpha/beta → burn), summarised again and its flame graph redrawn.
local h = test_helpers
local util = require('perf_manual.util')
local DIR = h.root .. '/tests/fixtures/replay/profile'

describe('profile playbook (replay)', function()
  it('summarises the recorded stacks with the recorded quality', function()
    local out, err, st = h.pm('profile --replay ' .. DIR .. ' --output /tmp/pm-replay-profile --top 5')
    assert.equal(0, st, err)
    assert.matches('^on%-CPU profile of .*calltree burn 3 %(pid %d+, launched%) for [%d.]+s via BPF at 99 Hz', out)
    assert.matches('top functions by inclusive samples:', out)
    assert.matches('%%%s+%d+%s+spin\n', out)
    local svg = util.readfile('/tmp/pm-replay-profile/profile.svg')
    assert.truthy(svg and svg:find('<svg', 1, true))
    -- the redrawn folded stacks are the recorded ones
    assert.equal(h.fixture('replay/profile/profile.folded'), util.readfile('/tmp/pm-replay-profile/profile.folded'))
    os.execute('rm -rf /tmp/pm-replay-profile')
  end)

  it('gives the recorded totals as JSON', function()
    local out, err, st = h.pm('profile --replay ' .. DIR .. ' --output /tmp/pm-replay-profile2 --json')
    os.execute('rm -rf /tmp/pm-replay-profile2')
    assert.equal(0, st, err)
    local doc = assert(util.json_decode(out))
    local rec = assert(util.json_decode(h.fixture('replay/profile/profile.json')))
    assert.equal(rec.total, doc.total)
    assert.equal('bpf', doc.source)
  end)
end)
