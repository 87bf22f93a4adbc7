-- false-sharing replayed: the cost of packed counters measured on this VM,
-- and the runs of a machine where the threads did not run at once.
local util = require('perf_manual.util')
local stats = require('perf_manual.analyzers.stats')
local h = test_helpers

local function fixture(name) return h.root .. '/tests/fixtures/runbooks/' .. name end

describe('false-sharing replay', function()
  it('says perf c2c cannot run on a VM without a PMU, and measures 1.59x for packed counters', function()
    local out, err, st = h.pm('false-sharing --replay ' .. fixture('false_sharing_vm'))
    assert.equal(0, st, err)
    assert.matches('^perf c2c cannot run here: no CPU PMU at all', out)
    assert.matches('\n  packed %(one cache line%)     0%.83 ns per add', out)
    assert.matches('\nverdict: false sharing costs 1%.59x per add here: 0%.83 ns packed against 0%.52 padded %(median '
      .. '%+59%%, 95%% CI', out)
  end)

  it('--json: the medians are those of the recorded runs', function()
    local out, err, st = h.pm('false-sharing --replay ' .. fixture('false_sharing_vm') .. ' --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    local rec = util.json_decode(util.readfile(fixture('false_sharing_vm') .. '/false-sharing.json'))
    for _, mode in ipairs({ 'packed', 'padded' }) do
      local wall = {}
      for i, run in ipairs(rec.runs[mode]) do wall[i] = run.wall_ns end
      assert.near(stats.median(wall), r[mode].wall_ns, 1e-4)
    end
    assert.is_false(r.c2c.available)
    assert.equal(5, r.rounds)
    assert.is_true(r.padded.parallel >= 1.3)
  end)

  it('threads that seldom ran at once: not measurable, said so', function()
    local out, err, st = h.pm('false-sharing --replay ' .. fixture('false_sharing_serial'))
    assert.equal(0, st, err)
    assert.matches('\nverdict: not measurable here: the 2 threads ran in parallel only 0%.80x', out)
  end)
end)
