-- reindex: the search index rebuilt from the metadata of replayed
-- investigations.
local h = test_helpers

describe('reindex', function()
  it('rebuilds a lost index so search finds the investigations again', function()
    local root, ids = h.replay_store({ 'cpu_burn', 'fsync_writer' })
    -- lose the index: whatever index files the store keeps beside the folders
    for f in io.popen("find '" .. root .. "' -maxdepth 1 -type f"):lines() do os.remove(f) end
    local _, err0, st0 = h.pm("search --store " .. root .. " 'cpu_burn'")
    assert.equal(2, st0)
    assert.matches('no search index in .*run `perf_manual reindex`', err0)
    local out, err, st = h.pm('reindex --store ' .. root)
    assert.equal(0, st, err)
    assert.matches('^indexed 2 investigations in ' .. root:gsub('%p', '%%%0') .. ' %(%d', out)
    out, err, st = h.pm("search --store " .. root .. " 'cpu_burn'")
    assert.equal(0, st, err)
    assert.matches(ids[1]:gsub('%p', '%%%0'), out)
    h.rmrf(root)
  end)

  it('indexes what it can of unreadable metadata and exits 1', function()
    local root, ids = h.replay_store({ 'cpu_burn', 'mutex_contention' })
    local path = root .. '/' .. ids[1] .. '/metadata.yaml'
    local f = io.open(path, 'a'); f:write('\nplaybook: [unclosed\n'); f:close()
    local out, err, st = h.pm('reindex --store ' .. root)
    assert.equal(1, st)
    assert.matches('^indexed 2 investigations', out)
    assert.matches('^perf_manual: partly indexed %(unreadable metadata%): .*metadata%.yaml', err)
    -- the readable one is still found
    out = h.pm("search --store " .. root .. " 'mutex_contention'")
    assert.matches(ids[2]:gsub('%p', '%%%0'), out)
    h.rmrf(root)
  end)

  it('refuses a store that does not exist', function()
    local _, err, st = h.pm('reindex --store /no/such/store')
    assert.equal(2, st)
    assert.equal('perf_manual: no investigation store at /no/such/store\n', err)
  end)
end)
