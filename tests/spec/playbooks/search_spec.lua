-- search over a store of investigations replayed from the recorded workloads.
local util = require('perf_manual.util')
local h = test_helpers

describe('search', function()
  local root, ids
  setup(function() root, ids = h.replay_store({ 'cpu_burn', 'fsync_writer', 'mutex_contention' }) end)
  teardown(function() h.rmrf(root) end)

  it('finds the investigation whose words match, with its bottleneck', function()
    local out, err, st = h.pm("search --store " .. root .. " 'fsync_writer'")
    assert.equal(0, st, err)
    assert.matches('^ 1%. ' .. ids[2]:gsub('%p', '%%%0') .. ' +complete +fsync_writer is slow\n', out)
    assert.matches('%[bottleneck: disk%]', out)
  end)

  it('ranks by relevance and keeps to --limit; --json gives the hits', function()
    local out, _, st = h.pm("search --store " .. root .. " --json --limit 2 'is slow'")
    assert.equal(0, st)
    local hits = assert(util.json_decode(out))
    assert.equal(2, #hits)
    for _, x in ipairs(hits) do assert.matches(' is slow$', x.symptom) end
    out = h.pm("search --store " .. root .. " --json 'futex lock'")
    local top = util.json_decode(out)[1]
    assert.equal(ids[3], top.id)
    assert.equal('lock', top.verdict)
  end)

  it('exits 1 when nothing matches and 2 on nothing to search for or no store', function()
    local out, _, st = h.pm("search --store " .. root .. " 'zebra'")
    assert.equal(1, st)
    assert.equal('no investigation matches "zebra"\n', out)
    local _, err
    _, err, st = h.pm("search --store " .. root .. " '()'")
    assert.equal(2, st)
    assert.equal('perf_manual: search: nothing to search for in "()"\n', err)
    _, err, st = h.pm("search --store /no/such/store x")
    assert.equal(2, st)
    assert.equal('perf_manual: no investigation store at /no/such/store\n', err)
  end)
end)
