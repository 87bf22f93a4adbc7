-- bundle: investigations replayed from the recorded workloads, packed,
-- checked with Debian's tar, gzip and sha256sum, and read back by the
-- commands with the store pointed elsewhere.
local bundle = require('perf_manual.bundle')
local store = require('perf_manual.store')
local util = require('perf_manual.util')
local h = test_helpers

local function q(s) return (s:gsub('%p', '%%%0')) end
local function sh_ok(line)
  local out, err, st = h.sh(line)
  assert(st == 0, line .. ': ' .. err)
  return out
end

-- the commands run where no store is: a bundle must be enough
local function pm_away(args, tmp)
  return h.pm(args, string.format("PERF_MANUAL_STORE='%s/nostore' TMPDIR='%s'", tmp, tmp))
end

describe('perf_manual.bundle', function()
  local root, ids, tmp
  setup(function()
    root, ids = h.replay_store({ 'cpu_burn', 'mutex_contention' })
    tmp = h.tmpdir()
    -- secrets where real runs put them: the workload's command line (params,
    -- timeline), a recorded target label, the workload's own output
    local inv = store.open(root, ids[1])
    inv:update_metadata(function(meta)
      meta.params.workload = './server --db-password hunter2 --port 80'
      meta.timeline[#meta.timeline + 1] = { t = store.iso(), kind = 'workload',
        what = 'launched ./server --db-password hunter2 --port 80 as pid 42' }
    end)
    local q1 = util.json_decode(util.readfile(inv.dir .. '/raw_data/quantify.json'))
    q1.target = './server --db-password hunter2 --port 80 (pid 42, launched)'
    inv:write_json('raw_data/quantify.json', q1)
    inv:write('raw_data/workload.log', 'listening on :80\nAPI_TOKEN=tok-9f8e7d connecting to '
      .. 'postgres://app:s3cr3t@db:5432/app\n')
  end)
  teardown(function()
    if root then h.rmrf(root) end
    if tmp then h.rmrf(tmp) end
  end)

  it('gzip and SHA-256 agree with Debian gzip and sha256sum', function()
    local data = string.rep('0123456789abcdef\n', 50000) .. '\0\1\2 tail'
    local f = tmp .. '/blob'
    assert(util.write_atomic(f .. '.gz', bundle.gzip(data)))
    assert(util.write_atomic(f, data))
    assert.equal(sh_ok(string.format("sha256sum < '%s'", f)):match('^(%x+)'), bundle.sha256(data))
    -- ours read by gzip, gzip's read by ours
    assert.equal(sh_ok(string.format("sha256sum < '%s'", f)), sh_ok(string.format("gzip -dc '%s.gz' | sha256sum", f)))
    sh_ok(string.format("gzip -9c '%s' > '%s.2.gz'", f, f))
    assert.equal(data, bundle.gunzip(util.readfile(f .. '.2.gz')))
    local gz = util.readfile(f .. '.2.gz')
    local none, why = bundle.gunzip(gz:sub(1, #gz - 100))
    assert.is_nil(none)
    assert.equal('truncated', why)
    none, why = bundle.gunzip(gz, 1000)
    assert.is_nil(none)
    assert.matches('^unpacks to more than', why)
  end)

  it('writes long member names GNU tar reads, and reads GNU and pax long names', function()
    local long = 'x/' .. string.rep('b', 120) .. '/' .. string.rep('c', 90) .. '.json'
    assert(util.write_atomic(tmp .. '/long.tar.gz', bundle.gzip(bundle.tar({ { path = long, data = 'ok\n' } }))))
    assert.equal(long .. '\n', sh_ok(string.format("tar tzf '%s/long.tar.gz'", tmp)))
    local name = string.rep('a', 150) .. '.json'
    sh_ok(string.format("mkdir -p '%s/lt/d' && echo hi > '%s/lt/d/%s'", tmp, tmp, name))
    for _, format in ipairs({ 'gnu', 'pax' }) do
      sh_ok(string.format("cd '%s/lt' && tar --format=%s -czf ../lt.tar.gz d", tmp, format))
      local members = assert(bundle.untar(assert(bundle.gunzip(util.readfile(tmp .. '/lt.tar.gz')))))
      local files = {}
      for _, m in ipairs(members) do if m.data then files[#files + 1] = m end end
      assert.equal(1, #files, format)
      assert.equal('d/' .. name, files[1].path, format)
      assert.equal('hi\n', files[1].data, format)
    end
  end)

  it('redacts JSON strings in place, keeping the layout and the stack frames', function()
    local text = '{\n  "command": "./app --password hunter2",\n  "api_key": "k-123",\n'
      .. '  "frames": ["main", "Session::login --password"],\n  "n": [1, 2],\n  "folded": "a;b 3\\n"\n}\n'
    local out, n = bundle.redact_json(text)
    assert.equal(2, n)
    assert.equal('{\n  "command": "./app --password [REDACTED]",\n  "api_key": "[REDACTED]",\n'
      .. '  "frames": ["main", "Session::login --password"],\n  "n": [1, 2],\n  "folded": "a;b 3\\n"\n}\n', out)
    -- nothing to hide: the very same text
    local clean = '{"a": "b", "c": [{"d": "e"}]}'
    assert.equal(clean, (bundle.redact_json(clean)))
  end)

  it('packs an investigation that Debian tar lists and unpacks, checksums as sha256sum says', function()
    local out = tmp .. '/cpu.tar.gz'
    local so, err, st = h.pm(string.format("bundle %s --store '%s' -o '%s'", ids[1], root, out))
    assert.equal(0, st, err)
    assert.matches('^wrote ' .. q(out) .. ': investigation ' .. q(ids[1]) .. ' %(complete%), %d+ files', so)
    assert.matches('\n  redacted: 5 secrets hidden in 3 files\n', so)
    assert.matches('\n  profiles: 1, %d+ distinct frames named at record time %(0 without a symbol%)\n', so)
    local listing = sh_ok(string.format("tar tzf '%s'", out))
    assert.matches('^' .. q(ids[1]) .. '/\n' .. q(ids[1]) .. '/bundle%.json\n', listing)
    for _, m in ipairs({ 'metadata.yaml', 'report.md', 'raw_data/profile-cpu.folded', 'raw_data/use-check.json',
      'raw_data/workload.log', 'analysis/' }) do
      assert.matches('\n' .. q(ids[1] .. '/' .. m) .. '\n', listing)
    end
    assert.is_nil(listing:find('.lock', 1, true))
    local x = tmp .. '/x'
    sh_ok(string.format("mkdir -p '%s' && tar xzf '%s' -C '%s'", x, out, x))
    local manifest = util.json_decode(util.readfile(x .. '/' .. ids[1] .. '/bundle.json'))
    assert.equal('perf_manual-bundle', manifest.format)
    assert.equal(ids[1], manifest.id)
    -- every file but bundle.json is listed, with sha256sum's checksum
    local files = {}
    for _, f in ipairs(manifest.files) do files[f.path] = f end
    local nfiles = 0
    for line in sh_ok(string.format("cd '%s/%s' && find . -type f ! -name bundle.json -printf '%%P\\n' "
      .. "| sort | xargs sha256sum", x, ids[1])):gmatch('[^\n]+') do
      local sum, path = line:match('^(%x+)%s+(.+)$')
      nfiles = nfiles + 1
      assert.is_table(files[path], path)
      assert.equal(sum, files[path].sha256, path)
    end
    assert.equal(#manifest.files, nfiles)
    -- the replayed profile kept its stacks only in its JSON: the bundle
    -- carries them as the folded file the report draws, frames as recorded
    assert.is_nil(io.open(root .. '/' .. ids[1] .. '/raw_data/profile-cpu.folded'))
    local rec = util.json_decode(util.readfile(root .. '/' .. ids[1] .. '/raw_data/profile-cpu.json'))
    assert.equal(rec.folded, util.readfile(x .. '/' .. ids[1] .. '/raw_data/profile-cpu.folded'))
    assert.equal(1, #manifest.symbols.profiles)
    local sp = manifest.symbols.profiles[1]
    assert.equal('raw_data/profile-cpu.folded', sp.profile)
    assert.is_true(sp.written_from_json)
    assert.equal(select(2, rec.folded:gsub('\n', '')), sp.stacks)
    assert.equal(#rec.binaries, #sp.binaries)
    assert.equal(rec.binaries[1].build_id, sp.binaries[1].build_id)
  end)

  it('hides the secrets of every file it packs', function()
    local x = tmp .. '/x/' .. ids[1]
    local found = h.sh(string.format("grep -rlE 'hunter2|tok-9f8e7d|s3cr3t' '%s'", x))
    assert.equal('', found)
    assert.matches('%-%-db%-password %[REDACTED%] %-%-port 80', util.readfile(x .. '/metadata.yaml'))
    assert.equal('listening on :80\nAPI_TOKEN=[REDACTED] connecting to postgres://[REDACTED]@db:5432/app\n',
      util.readfile(x .. '/raw_data/workload.log'))
    local meta = assert(store.parse_metadata(util.readfile(x .. '/metadata.yaml')))
    assert.equal(ids[1], meta.id)
    assert.equal('complete', meta.status)
    local manifest = util.json_decode(util.readfile(x .. '/bundle.json'))
    local per = {}
    for _, f in ipairs(manifest.redaction.files) do per[f.path] = f.hidden end
    assert.equal(2, per['raw_data/workload.log'])
    assert.equal(1, per['raw_data/quantify.json'])
    assert.is_true(per['metadata.yaml'] >= 2)
  end)

  it('is read by show, report, present and diff with no store, removing what it unpacked', function()
    local b = tmp .. '/cpu.tar.gz'
    local out, err, st = pm_away(string.format("show '%s'", b), tmp)
    assert.equal(0, st, err)
    assert.matches('^Investigation: ' .. q(ids[1]) .. '\nBundle: +' .. q(b) .. ' %(made ', out)
    assert.matches('checksums verified%)\n', out)
    assert.matches('\nStatus: +complete\n', out)
    assert.matches('raw_data/profile%-cpu%.folded', out)
    -- the report from the bundle draws the recorded profile: its top
    -- functions are the recorded frames, the hottest first
    local rec = util.json_decode(util.readfile(root .. '/' .. ids[1] .. '/raw_data/profile-cpu.json'))
    local frames = {}
    for line in rec.folded:gmatch('[^\n]+') do
      for f in (line:match('^(.*) %d+$') .. ';'):gmatch('(.-);') do frames[f] = true end
    end
    local md
    md, err, st = pm_away(string.format("report '%s'", b), tmp)
    assert.equal(0, st, err)
    local table_text = md:match('\n| Function | Self | Total |\n|[-|]+|\n(.-)\n\n')
    assert.is_string(table_text)
    local n = 0
    for row in table_text:gmatch('[^\n]+') do
      local name = row:match('^| (.-) |')
      n = n + 1
      assert.is_true(frames[(name:gsub('\\', ''))], name)
    end
    assert.is_true(n >= 3)
    assert.matches('^| burn | 100%.0%% |', table_text)
    assert.is_nil(md:find('hunter2', 1, true))
    out, err, st = pm_away(string.format("present --slides --data '%s' --output '%s/s.html'", b, tmp), tmp)
    assert.equal(0, st, err)
    assert.matches('<section class="slide', util.readfile(tmp .. '/s.html'))
    assert.matches("^wrote .*s%.html %(%d+ slides", out)
    out, err, st = pm_away(string.format("diff --before '%s' --after '%s'", b, b), tmp)
    assert.equal(0, st, err)
    assert.matches('# Before / after: ' .. q(ids[1]:gsub('_', '\\_')), out)
    assert.matches('## Hotspot shift', out)
    assert.equal('', sh_ok(string.format("ls -d '%s'/perf_manual-bundle-* 2>/dev/null || true", tmp)))
  end)

  it('imports into a store for search, once, and under another name when the id is taken', function()
    local b = tmp .. '/cpu.tar.gz'
    local other = tmp .. '/other-store'
    local out, err, st = h.pm(string.format("search --store '%s' --import '%s' burn", other, b))
    assert.equal(0, st, err)
    assert.matches('^imported ' .. q(ids[1]) .. ' from ', out)
    assert.matches('\n 1%. ' .. q(ids[1]), out)
    out, err, st = h.pm(string.format("search --store '%s' --import '%s'", other, b))
    assert.equal(0, st, err)
    assert.equal('already in the store: ' .. ids[1] .. ' from ' .. b .. '\n', out)
    -- the same id from another host: kept apart
    out, err, st = h.pm(string.format("search --store '%s' --import '%s' burn", root, b))
    assert.equal(0, st, err)
    local id2 = out:match('^imported (%S+) from')
    assert.is_string(id2)
    assert.not_equal(ids[1], id2)
    assert.equal(ids[1], id2:sub(1, #ids[1]))
    local meta = assert(store.open(root, id2):load_metadata())
    assert.equal(id2, meta.imported_as)
    h.rmrf(root .. '/' .. id2)
  end)

  it('refuses a bundle whose file does not match its checksum, or with a member not in the manifest', function()
    local x = tmp .. '/x'
    local f = x .. '/' .. ids[1] .. '/raw_data/quantify.json'
    local orig = util.readfile(f)
    assert(util.write_atomic(f, (orig:gsub('1', '2', 1))))
    sh_ok(string.format("cd '%s' && tar czf '%s/bad.tar.gz' '%s'", x, tmp, ids[1]))
    assert(util.write_atomic(f, orig))
    local _, err, st = pm_away(string.format("show '%s/bad.tar.gz'", tmp), tmp)
    assert.equal(2, st)
    assert.equal(string.format('perf_manual: %s/bad.tar.gz: checksum mismatch for raw_data/quantify.json '
      .. '(the bundle was changed or damaged)\n', tmp), err)
    assert(util.write_atomic(x .. '/' .. ids[1] .. '/raw_data/extra.json', '{}'))
    sh_ok(string.format("cd '%s' && tar czf '%s/extra.tar.gz' '%s'", x, tmp, ids[1]))
    os.remove(x .. '/' .. ids[1] .. '/raw_data/extra.json')
    _, err, st = pm_away(string.format("report '%s/extra.tar.gz'", tmp), tmp)
    assert.equal(2, st)
    assert.matches('extra%.tar%.gz: raw_data/extra%.json is not in the manifest\n$', err)
    -- repacked by GNU tar with the files unchanged: read as ever
    sh_ok(string.format("cd '%s' && tar czf '%s/repacked.tar.gz' '%s'", x, tmp, ids[1]))
    _, err, st = pm_away(string.format("show '%s/repacked.tar.gz'", tmp), tmp)
    assert.equal(0, st, err)
  end)

  it('refuses damaged and hostile files with one line, exit 2', function()
    local good = util.readfile(tmp .. '/cpu.tar.gz')
    local cases = {
      { 'cut.tar.gz', good:sub(1, math.floor(#good / 2)), 'not a readable bundle %(truncated%)' },
      { 'plain.tar.gz', bundle.gzip(bundle.tar({ { path = 'x/a.txt', data = 'hello' } })),
        'not a perf_manual bundle %(no <id>/bundle%.json%)' },
    }
    -- a member that climbs out of the folder, beside a manifest that lists it
    local evil = { format = 'perf_manual-bundle', version = 1, id = 'x',
      files = { { path = 'metadata.yaml', bytes = 3, sha256 = bundle.sha256('a: 1') } } }
    cases[#cases + 1] = { 'climb.tar.gz', bundle.gzip(bundle.tar({ { path = 'x/' },
      { path = 'x/bundle.json', data = util.json_encode(evil) }, { path = 'x/../../etc/evil', data = 'x' } })),
      "member x/%.%./%.%./etc/evil refused %(" }
    for _, c in ipairs(cases) do
      assert(util.write_atomic(tmp .. '/' .. c[1], c[2]))
      local _, err, st = pm_away(string.format("show '%s/%s'", tmp, c[1]), tmp)
      assert.equal(2, st, c[1])
      assert.matches('^perf_manual: ' .. q(tmp .. '/' .. c[1]) .. ': ' .. c[3], err)
      assert.equal(1, select(2, err:gsub('\n', '')), err)
    end
    assert.is_nil(io.open('/etc/evil'))
    -- a file that is no bundle at all
    assert(util.write_atomic(tmp .. '/notes.txt', 'just text\n'))
    local _, nerr, nst = pm_away(string.format("show '%s/notes.txt'", tmp), tmp)
    assert.equal(2, nst)
    assert.equal(string.format('perf_manual: %s/notes.txt is not a folder (an investigation or data dir is one) '
      .. 'nor a bundle (`perf_manual bundle ID -o FILE` makes one)\n', tmp), nerr)
    _, nerr, nst = pm_away(string.format("search --import '%s/notes.txt'", tmp), tmp)
    assert.equal(2, nst)
    assert.equal(string.format('perf_manual: %s/notes.txt: not a readable bundle (incorrect header check)\n', tmp),
      nerr)
    -- a symbolic link inside a tar made by GNU tar
    local lx = tmp .. '/lx'
    local d = lx .. '/' .. ids[1]
    sh_ok(string.format("mkdir -p '%s' && cp '%s/x/%s/bundle.json' '%s/' && ln -s /etc/passwd '%s/metadata.yaml' "
      .. "&& cd '%s' && tar czf '%s/link.tar.gz' '%s'", d, tmp, ids[1], d, d, lx, tmp, ids[1]))
    local _, err, st = pm_away(string.format("show '%s/link.tar.gz'", tmp), tmp)
    assert.equal(2, st)
    assert.matches('is a link or a device %(type .2.%): refused', err)
  end)

  it('refuses bad input to bundle with exit 2: unknown id, unfinished run, a folder as output', function()
    local _, err, st = h.pm(string.format("bundle nosuch --store '%s' -o '%s/n.tar.gz'", root, tmp))
    assert.equal(2, st)
    assert.matches("^perf_manual: no investigation 'nosuch' in ", err)
    _, err, st = h.pm(string.format("bundle %s --store '%s' -o '%s'", ids[2], root, tmp))
    assert.equal(2, st)
    assert.equal('perf_manual: bundle: -o ' .. tmp .. ' is a folder; give a file name\n', err)
    local inv = store.open(root, ids[2])
    inv:update_metadata(function(meta) meta.status = 'interrupted' end)
    _, err, st = h.pm(string.format("bundle %s --store '%s' -o '%s/u.tar.gz'", ids[2], root, tmp))
    assert.equal(2, st)
    assert.equal(string.format('perf_manual: bundle: investigation %s is not finished (status interrupted): '
      .. '`perf_manual investigate --resume %s` finishes it, or --partial bundles it as it is\n', ids[2], ids[2]), err)
    assert.is_nil(io.open(tmp .. '/u.tar.gz'))
    local out
    out, err, st = h.pm(string.format("bundle %s --store '%s' -o - --partial > '%s/u.tar.gz'", ids[2], root, tmp))
    assert.equal(0, st, err)
    assert.equal('', out)
    assert.matches('^wrote stdout: investigation ' .. q(ids[2]) .. ' %(interrupted%)', err)
    out = pm_away(string.format("show '%s/u.tar.gz'", tmp), tmp)
    assert.matches('\nStatus: +interrupted\n', out)
    -- a folder that is not an investigation
    sh_ok(string.format("mkdir -p '%s/plain/raw_data'", tmp))
    _, err, st = h.pm(string.format("bundle '%s/plain' -o '%s/p.tar.gz'", tmp, tmp))
    assert.equal(2, st)
    assert.matches('is not an investigation %(no metadata%.yaml%)\n$', err)
  end)

  it('leaves no lock file behind a finished run, and refuses one being written', function()
    for _, id in ipairs(ids) do assert.is_nil(io.open(root .. '/' .. id .. '/.lock')) end
    local inv = store.open(root, ids[1])
    inv:lock()
    finally(function() inv:release() end)
    local _, err, st = h.pm(string.format("bundle %s --store '%s' -o '%s/l.tar.gz'", ids[1], root, tmp))
    assert.equal(2, st)
    assert.matches('is being written by another run %(pid %d+%)', err)
  end)
end)
