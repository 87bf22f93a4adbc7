local store = require('perf_manual.store')
local util = require('perf_manual.util')
local kb = require('perf_manual.kb')
local sys = require('perf_manual._c.sys')
local h = test_helpers

local function tmpdir()
  local d = os.tmpname(); os.remove(d)
  assert(store.mkdir_p(d))
  return d
end

local function rm(d) os.execute('rm -rf ' .. d) end

local function user_err(fn)
  local ok, e = pcall(fn)
  assert.is_false(ok)
  assert.is_true(util.is_user_error(e), tostring(e))
  return e.user_error
end

describe('perf_manual.store', function()
  it('makes folder names from dates and symptoms', function()
    assert.equal('slow-api-after-deploy', store.slug('Slow API after deploy!'))
    assert.equal('investigation', store.slug('!!!'))
    assert.is_true(#store.slug(string.rep('word ', 40)) <= 48)
  end)

  it('creates YYYY-MM-DD_<slug> with raw_data/ and analysis/, unique per name', function()
    local root = tmpdir()
    local a = store.create(root, 'Disk is slow', { date = '2026-01-02' })
    local b = store.create(root, 'Disk is slow', { date = '2026-01-02' })
    assert.equal('2026-01-02_disk-is-slow', a.id)
    assert.equal('2026-01-02_disk-is-slow-2', b.id)
    assert.is_true(store.is_dir(a.dir .. '/raw_data'))
    assert.is_true(store.is_dir(a.dir .. '/analysis'))
    assert.same({ '2026-01-02_disk-is-slow', '2026-01-02_disk-is-slow-2' }, store.list(root))
    a:unlock(); b:unlock()
    rm(root)
  end)

  it('round-trips metadata through YAML, tricky strings included', function()
    local meta = {
      name = 'x', symptom = 'p99: 180ms (was 50ms) # since Monday', status = 'complete',
      tool_version = '0.1.0', kernel = '6.18.44', answer_yes = 'yes', number_text = '123', empty = '',
      multiline = 'line one\nkey: value\n  indented', unicode = 'latence élevée ✓', quote = "it's",
      params = { duration = 2.5, workload = '1234', flags = { 'a', 'b' } },
      checklist = { { key = 'when', question = 'When?', answer = 'Monday 10:00', answered = true } },
      timeline = { { t = '2026-01-02T10:00:00.000Z', kind = 'note', what = 'null' } },
      hypotheses = {}, big = 1e20, small = 1.25e-7, neg = -3,
    }
    local text = store.yaml_dump(meta)
    local back = assert(store.parse_metadata(text, 'm.yaml'))
    assert.same(meta, back)
    -- the reader-facing fields come first
    assert.truthy(text:find('name:', 1, true) < text:find('timeline:', 1, true))
  end)

  it('names the file, line and field of a YAML syntax error and keeps what is readable', function()
    local text = 'name: x\nsymptom: slow\nparams:\n  duration: [1, 2\nstatus: running\n'
    local meta, err, partial = store.parse_metadata(text, '/s/metadata.yaml')
    assert.is_nil(meta)
    assert.matches("^/s/metadata%.yaml:%d+: field 'params", err)
    assert.equal('x', partial.name)
    assert.equal('slow', partial.symptom)
    assert.equal('running', partial.status)
  end)

  it('names a field of the wrong type', function()
    local meta, err, partial = store.parse_metadata('name: x\nsymptom: y\ntimeline: 12\n', 'm.yaml')
    assert.is_nil(meta)
    assert.equal("m.yaml:3: field 'timeline': expected a list or mapping, got number", err)
    assert.equal('y', partial.symptom)
  end)

  it('refuses paths that leave the investigation folder', function()
    local root = tmpdir()
    local inv = store.create(root, 'confined')
    for _, bad in ipairs({ '../escape', '/etc/passwd', 'raw_data/../../x', '.lock', 'metadata.yaml', '' }) do
      assert.matches('refusing to write', user_err(function() inv:write(bad, 'x') end))
    end
    assert.equal('raw_data/sub/ok.txt', inv:write('raw_data/./sub/ok.txt', 'fine'))
    assert.equal('fine', inv:read('raw_data/sub/ok.txt'))
    assert.is_nil(io.open(root .. '/escape', 'r'))
    inv:unlock()
    rm(root)
  end)

  it('lists close matches for an unknown id', function()
    local root = tmpdir()
    store.create(root, 'disk latency', { date = '2026-01-02', no_lock = true })
    store.create(root, 'cpu burn', { date = '2026-01-03', no_lock = true })
    local msg = user_err(function() store.open(root, 'disk-latncy') end)
    assert.equal("no investigation 'disk-latncy' in " .. root .. '; close matches: 2026-01-02_disk-latency', msg)
    assert.equal('2026-01-03_cpu-burn', store.open(root, 'cpu').id)
    assert.equal('2026-01-02_disk-latency', store.open(root, 'disk-latency').id)
    rm(root)
  end)

  it('gives a clear error for a store it cannot write', function()
    local msg = user_err(function() store.create('/proc/perf_manual_store', 'x') end)
    assert.matches('^store /proc/perf_manual_store: cannot create /proc/perf_manual_store', msg)
  end)

  it('stops a second run from writing a locked investigation', function()
    local root = tmpdir()
    local inv = store.create(root, 'locked')
    -- fcntl locks are per process: the second writer is another process
    local script = os.tmpname()
    local f = io.open(script, 'w')
    f:write(string.format([[
      local store = require('perf_manual.store')
      local ok, e = pcall(function() store.open(%q, %q):lock() end)
      io.stdout:write(ok and 'locked' or e.user_error)
    ]], root, inv.id))
    f:close()
    local out = io.popen(h.root .. '/bin/perf_manual --lua ' .. script):read('*a')
    assert.matches('is being written by another run %(pid ' .. sys.getpid() .. '%)', out)
    inv:unlock()
    out = io.popen(h.root .. '/bin/perf_manual --lua ' .. script):read('*a')
    assert.equal('locked', out)
    os.remove(script)
    rm(root)
  end)

  it('removes the lock file when a finished run releases it, and only then', function()
    local root = tmpdir()
    local inv = store.create(root, 'released')
    local lockfile = inv.dir .. '/.lock'
    assert.is_true(store.exists(lockfile))
    -- a handle that does not hold the lock leaves the holder's file alone
    store.open(root, inv.id):release()
    assert.is_true(store.exists(lockfile))
    inv:release()
    assert.is_false(store.exists(lockfile))
    -- and the folder locks again afterwards
    local again = store.open(root, inv.id)
    again:lock()
    assert.is_true(store.exists(lockfile))
    again:release()
    assert.is_false(store.exists(lockfile))
    rm(root)
  end)

  it('leaves the old or the new file after kill -9 mid-write, never a torn one', function()
    local root = tmpdir()
    local inv = store.create(root, 'atomic', { no_lock = true })
    local a = string.rep('A', 8 * 1024 * 1024)
    inv:write('raw_data/big.bin', a)
    local script = os.tmpname()
    local f = io.open(script, 'w')
    -- a writer that rewrites the file forever, alternating its content
    f:write(string.format([[
      local store = require('perf_manual.store')
      local inv = store.open(%q, %q)
      local a, b = string.rep('A', 8 * 1024 * 1024), string.rep('B', 8 * 1024 * 1024 + 4096)
      local i = 0
      while true do i = i + 1; inv:write('raw_data/big.bin', i %% 2 == 0 and a or b) end
    ]], root, inv.id))
    f:close()
    math.randomseed(42)
    local seen = {}
    -- 8 kills at random points, then more (each later) until the writer has
    -- replaced the file once: on a slow disk one 8 MiB fsync outlasts 0.4 s
    local round = 0
    while round < 8 or (not seen.B and round < 40) do
      round = round + 1
      local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', '--lua', script }))
      sys.sleep(0.05 + math.random() * 0.4 + (round > 8 and (round - 8) * 0.1 or 0))
      sys.kill(pid, 9)
      sys.wait(pid)
      local data = assert(util.readfile(inv.dir .. '/raw_data/big.bin'))
      local whole = data == a or data == string.rep('B', 8 * 1024 * 1024 + 4096)
      assert.is_true(whole, string.format('round %d: torn file of %d bytes', round, #data))
      seen[data:sub(1, 1)] = true
    end
    -- the writer got far enough to replace the file at least once
    assert.is_true(seen.B or false)
    -- leftover temp files are not data: files() skips them
    for _, fi in ipairs(inv:files()) do assert.is_nil(fi.path:match('%.tmp%.')) end
    os.remove(script)
    rm(root)
  end)

  it('lists data files with sizes without reading them', function()
    local root = tmpdir()
    local inv = store.create(root, 'files', { no_lock = true })
    inv:write('raw_data/a.jsonl', '{"x":1}\n')
    inv:write_json('analysis/findings.json', { { severity = 'high' } })
    local files = inv:files()
    assert.same({ { path = 'raw_data/a.jsonl', bytes = 8 }, { path = 'analysis/findings.json',
      bytes = #util.json_encode({ { severity = 'high' } }, true) + 1 } }, files)
    rm(root)
  end)
  describe('reading a folder for the other modules', function()
    local fixture_dir = h.root .. '/tests/fixtures/datadirs/fsync_writer'

    it('lists the artifacts of a recorded data dir and reads them by name', function()
      local dir, prefix = store.data_dir(fixture_dir)
      assert.equal(fixture_dir .. '/raw_data', dir)
      assert.equal('raw_data/', prefix)
      local names = {}
      for _, a in ipairs(store.artifacts(fixture_dir)) do
        names[#names + 1] = a.path
        assert.is_true(a.bytes > 0)
      end
      assert.same({ 'raw_data/quantify.json', 'raw_data/trace-io.json', 'raw_data/trace-syscall.json',
        'raw_data/use-check.json' }, names)
      local text, path = store.read_artifact(fixture_dir, 'quantify.json')
      assert.equal(fixture_dir .. '/raw_data/quantify.json', path)
      assert.is_table(util.json_decode(text))
      local none, why = store.read_artifact(fixture_dir, 'trace-lock.json')
      assert.is_nil(none)
      assert.matches('not in the recorded data', why)
    end)

    it('reads the results by kind, each tagged with its artifact path', function()
      local res = store.results(fixture_dir)
      assert.equal('raw_data/use-check.json', res.use.artifact)
      assert.same({ 'io', 'syscall' }, util.keys(res.traces))
      assert.equal('raw_data/trace-io.json', res.traces.io.artifact)
      assert.equal('vm', res.manifest.host)
      assert.equal(4, #res.files)
      -- a collect output dir holds its files at the top
      local flat = tmpdir()
      assert(util.write_atomic(flat .. '/trace-io.json', (store.read_artifact(fixture_dir, 'trace-io.json'))))
      assert.equal(flat, (store.data_dir(flat)))
      assert.equal('trace-io.json', store.results(flat).traces.io.artifact)
      rm(flat)
      assert.equal('no data dir /nonexistent/x', user_err(function() store.results('/nonexistent/x') end))
    end)

    it('reads metadata and analysis files, and discards an empty new folder', function()
      local root = tmpdir()
      local inv = store.create(root, 'layout', { date = '2026-01-02' })
      assert.same({ nil, nil }, { store.read_metadata(inv.dir) })
      inv:save_metadata({ name = 'layout', status = 'running' }, { index = false })
      assert.equal('layout', store.read_metadata(inv.dir).name)
      inv:write_analysis_json('findings.json', { { severity = 'high' } })
      assert.equal('high', util.json_decode(store.read_analysis(inv.dir, 'findings.json'))[1].severity)
      assert.equal(inv.dir .. '/report.md', store.report_path(inv.dir))
      assert.equal('raw_data/x.json', store.artifact_rel('x.json'))
      assert.equal('x.json', store.artifact_name('raw_data/x.json'))
      local log = inv:append_log('one\n')
      inv:append_log('two\n')
      assert.equal('one\ntwo\n', util.readfile(log))
      os.remove(log)
      os.remove(store.analysis_path(inv.dir, 'findings.json'))
      inv:discard()
      assert.is_false(store.is_dir(inv.dir))
      rm(root)
    end)

    it('rebuilds the search index by walking the store', function()
      local root = tmpdir()
      for _, name in ipairs({ 'disk slow', 'lock wait' }) do
        local inv = store.create(root, name, { date = '2026-01-02' })
        inv:save_metadata({ name = name, symptom = name .. ' after deploy', status = 'complete' }, { index = false })
        inv:unlock()
      end
      local res = store.reindex(root)
      assert.equal(2, res.indexed)
      assert.same({}, res.unreadable)
      assert.equal('2026-01-02_lock-wait', kb.search(root, 'lock')[1].id)
      rm(root)
    end)
  end)
end)
