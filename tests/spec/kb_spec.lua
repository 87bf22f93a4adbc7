-- The knowledge base: FTS5 ranking on a small corpus of past
-- investigations, index updates on every save, reindex, corrupt metadata.
local store = require('perf_manual.store')
local kb = require('perf_manual.kb')
local h = test_helpers

local CORPUS = {
  { date = '2025-03-01', name = 'checkout latency', symptom = 'checkout p99 latency tripled after the deploy',
    root_cause = 'N+1 query pattern in fetch_related', findings = { { resource = 'cpu',
      summary = 'db_query holds 62% of samples', severity = 'high' } } },
  { date = '2025-04-11', name = 'ingest stalls', symptom = 'ingest workers stall every few seconds',
    root_cause = 'fsync after every record on a saturated disk', findings = { { resource = 'disk',
      summary = 'vda aqu-sz 4.2, await 38 ms', severity = 'high' } },
    notes = { 'moved the WAL to its own device' } },
  { date = '2025-05-20', name = 'batch slow', symptom = 'nightly batch runs twice as long',
    root_cause = 'lock contention on the global queue mutex', findings = { { resource = 'lock',
      summary = '77% of thread-time in futex waits', severity = 'high' } } },
  { date = '2025-06-02', name = 'api oom', symptom = 'API pods restart with OOM kills',
    root_cause = 'memory leak in the session cache', findings = { { resource = 'memory',
      summary = 'cgroup limit hits 12/s', severity = 'high' } } },
  { date = '2025-07-15', name = 'report slow', symptom = 'reports are slow to render',
    notes = { 'someone mentioned fsync once but the disk was idle' },
    root_cause = 'single-threaded PDF rendering is CPU-bound' },
  { date = '2025-08-30', name = 'db writes', symptom = 'database write latency spikes during backups',
    root_cause = 'backup reads saturate the shared disk; writes queue behind them (fsync latency)',
    findings = { { resource = 'disk', summary = 'I/O latency p99 120 ms', severity = 'high' } } },
}

local function build(root)
  for _, c in ipairs(CORPUS) do
    local inv = store.create(root, c.name, { date = c.date, no_lock = true })
    inv:save_metadata({ name = c.name, symptom = c.symptom, status = 'complete', root_cause = c.root_cause,
      findings = c.findings or {}, notes = c.notes or {}, hypotheses = {}, checklist = {}, timeline = {} })
  end
end

local function ids(hits)
  local out = {}
  for i, x in ipairs(hits) do out[i] = x.id end
  return out
end

describe('perf_manual.kb', function()
  local root
  before_each(function()
    root = os.tmpname(); os.remove(root)
    build(root)
  end)
  after_each(function() os.execute('rm -rf ' .. root) end)

  it('ranks symptom and root-cause matches above passing mentions', function()
    local hits = kb.search(root, 'fsync')
    -- the two investigations whose root cause is fsync come before the one
    -- whose notes merely mention it
    local top2 = { hits[1].id, hits[2].id }
    table.sort(top2)
    assert.same({ '2025-04-11_ingest-stalls', '2025-08-30_db-writes' }, top2)
    assert.equal('2025-07-15_report-slow', hits[3].id)
    assert.is_true(hits[2].score > hits[3].score)
    -- both words beat one word
    assert.equal('2025-08-30_db-writes', kb.search(root, 'fsync latency')[1].id)
    assert.equal('2025-05-20_batch-slow', kb.search(root, 'mutex contention')[1].id)
    assert.equal('2025-06-02_api-oom', kb.search(root, 'out of memory OOM kills')[1].id)
  end)

  it('treats user text as words, not FTS syntax', function()
    assert.same({}, kb.search(root, 'NEAR( "unbalanced'))
    assert.is_nil(kb.fts_query('the and of'))
    assert.equal('"disk" OR "saturated"', kb.fts_query('the disk is saturated, is it?'))
    assert.equal('2025-04-11_ingest-stalls', kb.search(root, 'ingest-stalls: "stall"')[1].id)
  end)

  it('updates the index on every save, replacing the old entry', function()
    local inv = store.open(root, 'report-slow')
    local meta = assert(inv:load_metadata())
    meta.root_cause = 'a spinlock in the font cache'
    inv:save_metadata(meta)
    assert.equal('2025-07-15_report-slow', kb.search(root, 'spinlock font')[1].id)
    assert.same({}, kb.search(root, 'PDF'))
    assert.equal(#CORPUS, kb.count(root))
  end)

  it('rebuilds the same ranking with reindex, and indexes what it can of corrupt metadata', function()
    local before = ids(kb.search(root, 'disk latency'))
    os.remove(root .. '/' .. kb.FILE)
    assert.same({}, (kb.search(root, 'disk latency')))
    local path = root .. '/2025-06-02_api-oom/metadata.yaml'
    local text = require('perf_manual.util').readfile(path)
    local f = io.open(path, 'w')
    f:write((text:gsub('\nstatus: complete\n', '\nstatus: [complete\n')))
    f:close()
    local res = store.reindex(root)
    assert.equal(#CORPUS, res.indexed)
    assert.equal(1, #res.unreadable)
    assert.matches("api%-oom/metadata%.yaml:%d+: field 'status'", res.unreadable[1].err)
    assert.same(before, ids(kb.search(root, 'disk latency')))
    -- the readable part of the broken one is still searchable
    assert.equal('2025-06-02_api-oom', kb.search(root, 'session cache leak')[1].id)
  end)

  -- issue 17: on a full disk, reindex leaves no temporary index behind,
  -- and a run whose index cannot be updated says so once, not per save
  it('on a full disk: reindex fails without leftovers; the index warning is printed once', function()
    if not h.need_root('mounts a tiny tmpfs to fill') then return end
    local mnt = root .. '-full'
    os.execute('mkdir -p ' .. mnt)
    assert.is_true(os.execute('mount -t tmpfs -o size=512k tmpfs ' .. mnt) == 0)
    local ok, err = pcall(function()
      local sroot = mnt .. '/store'
      build(sroot)
      os.remove(sroot .. '/' .. kb.FILE)
      os.execute('dd if=/dev/zero of=' .. mnt .. '/fill bs=4k count=1000 2>/dev/null')
      local _, e, st = h.pm('reindex --store ' .. sroot)
      assert.is_true(st ~= 0, 'reindex succeeded on a full disk')
      assert.matches('^perf_manual: ', e)
      local left = io.popen('ls -a ' .. sroot):read('*a')
      assert.not_matches('%.tmp%.', left)
    end)
    os.execute('umount ' .. mnt)
    os.execute('rmdir ' .. mnt)
    if not ok then error(err, 0) end
    -- an index that cannot be updated (full, read-only): one warning per run
    local saved, real = io.stderr, kb.update
    local lines = {}
    io.stderr = { write = function(_, ...) lines[#lines + 1] = table.concat({ ... }) end } -- luacheck: ignore 122
    kb.update = function() error('search index: database or disk is full', 0) end
    local sok, serr = pcall(function()
      local inv = store.open(root, store.list(root)[1])
      for _ = 1, 5 do inv:save_metadata({ name = 'x', symptom = 'y', status = 'running' }) end
    end)
    io.stderr, kb.update = saved, real -- luacheck: ignore 122
    assert(sok, serr)
    assert.equal(1, #lines, table.concat(lines))
    assert.matches('search index not updated', lines[1])
  end)

  it('search, reindex and list-investigations work from the command line', function()
    local out, err, st = h.pm('search --store ' .. root .. ' "fsync on a saturated disk"')
    assert.equal(0, st, err)
    assert.matches('^ 1%. 2025%-0[48]%-%d%d_[a-z-]+ +complete', out)
    assert.matches('\n 2%. 2025%-0[48]%-%d%d_', out)
    assert.matches('ingest%-stalls', out)
    local _
    out, _, st = h.pm('search --store ' .. root .. ' --json --limit 2 disk')
    assert.equal(0, st)
    local hits = require('perf_manual.util').json_decode(out)
    assert.equal(2, #hits)
    out, _, st = h.pm('search --store ' .. root .. ' "quantum entanglement"')
    assert.equal(1, st)
    assert.matches('no investigation matches', out)
    out, _, st = h.pm('reindex --store ' .. root)
    assert.equal(0, st)
    assert.matches('^indexed 6 investigations', out)
    -- $PERF_MANUAL_STORE names the store when --store is not given
    out, _, st = h.pm('list-investigations', 'PERF_MANUAL_STORE=' .. root)
    assert.equal(0, st)
    assert.matches('2025%-08%-30_db%-writes', out)
    out, _, st = h.pm('list-investigations --store ' .. root)
    assert.equal(0, st)
    assert.matches('^ID%s+STATUS%s+VERDICT%s+SYMPTOM\n2025%-08%-30_db%-writes', out)
    local _, err2, st2 = h.pm('search --store /nonexistent/store disk')
    assert.equal(2, st2)
    assert.equal('perf_manual: no investigation store at /nonexistent/store\n', err2)
  end)
end)
