-- list-investigations on a store of investigations replayed from the
-- recorded workloads.
local util = require('perf_manual.util')
local h = test_helpers

describe('list-investigations', function()
  local root, ids
  setup(function() root, ids = h.replay_store({ 'cpu_burn', 'fsync_writer', 'mutex_contention' }) end)
  teardown(function() h.rmrf(root) end)

  it('lists every investigation newest first with status, verdict and symptom', function()
    local out, err, st = h.pm('list-investigations --store ' .. root)
    assert.equal(0, st, err)
    local lines = util.split(out, '\n')
    assert.matches('^ID +STATUS +VERDICT +SYMPTOM$', lines[1])
    assert.equal(5, #lines)  -- header, three rows, the final newline
    -- ids sort by date then name; newest first means the reverse of that
    local sorted = { ids[1], ids[2], ids[3] }
    table.sort(sorted)
    for i = 1, 3 do
      local id = sorted[4 - i]
      assert.matches('^' .. id:gsub('%p', '%%%0') .. ' +complete +%a+ +%S+ is slow$', lines[i + 1])
    end
    assert.matches(' cpu +cpu_burn is slow', out)
    assert.matches(' disk +fsync_writer is slow', out)
    assert.matches(' lock +mutex_contention is slow', out)
  end)

  it('keeps to --limit and prints JSON with --json', function()
    local out, _, st = h.pm('list-investigations --limit 2 --json --store ' .. root)
    assert.equal(0, st)
    local rows = assert(util.json_decode(out))
    assert.equal(2, #rows)
    for _, r in ipairs(rows) do
      assert.equal('complete', r.status)
      assert.matches(' is slow$', r.symptom)
    end
  end)

  it('marks an investigation whose metadata cannot be read as unreadable, and lists the rest', function()
    local r2, ids2 = h.replay_store({ 'cpu_burn', 'fsync_writer' })
    local f = io.open(r2 .. '/' .. ids2[1] .. '/metadata.yaml', 'w'); f:write('symptom: [broken\n'); f:close()
    local out, err, st = h.pm('list-investigations --json --store ' .. r2)
    h.rmrf(r2)
    assert.equal(0, st, err)
    local by = {}
    for _, r in ipairs(util.json_decode(out)) do by[r.id] = r end
    assert.equal('unreadable', by[ids2[1]].status)
    assert.matches('metadata%.yaml', by[ids2[1]].error)
    assert.equal('disk', by[ids2[2]].verdict)
  end)

  it('says so for an empty store and refuses a missing one', function()
    local empty = h.tmpdir()
    local out, _, st = h.pm('list-investigations --store ' .. empty)
    h.rmrf(empty)
    assert.equal(0, st)
    assert.equal('no investigations in ' .. empty .. '\n', out)
    local _, err, st2 = h.pm('list-investigations --store /no/such/store')
    assert.equal(2, st2)
    assert.equal('perf_manual: no investigation store at /no/such/store\n', err)
  end)
end)
