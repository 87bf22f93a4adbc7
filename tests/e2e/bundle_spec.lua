-- bundle end to end: real investigations of a workload with a known call
-- tree (launched with a password on its command line), bundled, then read
-- by another copy of the tool in another folder with the original store
-- moved away. The flame graph drawn there must name the same functions,
-- with the same counts, as the one drawn from the store, and every user
-- function in it must be a symbol `nm` finds in the workload's binary.
local h = test_helpers
local store = require('perf_manual.store')
local util = require('perf_manual.util')

local function q(s) return (s:gsub('%p', '%%%0')) end

local function ok_sh(line)
  local out, err, st = h.sh(line)
  assert(st == 0, line .. ': ' .. err)
  return out
end

-- the frames of the report's flame graph, in drawing order: "name (N samples"
local function flame_frames(html)
  local out = {}
  for name, n in html:gmatch('<title>([^<]-) %((%d+) samples, [%d.]+%%%)</title>') do
    out[#out + 1] = name:gsub('&lt;', '<'):gsub('&gt;', '>'):gsub('&amp;', '&') .. ' ' .. n
  end
  return out
end

describe('bundle end to end', function()
  it('is read on another checkout with the store moved away; the flame graph names the same functions', function()
    if not h.need_root('the investigation profiles with BPF') then return end
    local work = h.tmpdir()
    local copy, remove_copy
    finally(function()
      if remove_copy then remove_copy() end
      h.rmrf(work)
    end)
    local root = work .. '/store'
    local calltree = h.workload('calltree')
    -- two runs of one playbook, as on two hosts
    h.with_machine_lock(function()
      for _, name in ipairs({ 'web1', 'web2' }) do
        local out, err, st = h.pm(string.format("investigate --workload '%s burn 30 --password hunter2' "
          .. "--symptom 'checkout is slow' --name %s --batch --duration 2 --store '%s'", calltree, name, root))
        assert.equal(0, st, out .. err)
      end
    end)
    local ids = store.list(root)
    assert.equal(2, #ids)
    for _, id in ipairs(ids) do
      local meta = assert(store.open(root, id):load_metadata())
      assert.equal('complete', meta.status)
      -- a finished run leaves no lock file
      assert.is_nil(io.open(root .. '/' .. id .. '/.lock'))
    end
    -- the flame graph as the original store draws it
    local _, err, st = h.pm(string.format("report %s --store '%s' --output '%s/orig.html'", ids[1], root, work))
    assert.equal(0, st, err)
    local orig = flame_frames(util.readfile(work .. '/orig.html'))
    assert.is_true(#orig >= 6, 'no flame graph in the original report')
    for i, id in ipairs(ids) do
      local so
      so, err, st = h.pm(string.format("bundle %s --store '%s' -o '%s/web%d.tar.gz'", id, root, work, i))
      assert.equal(0, st, err)
      assert.matches('redacted: %d+ secrets? hidden', so)
    end

    -- elsewhere: another copy of the tool, another folder, no store
    copy, remove_copy = h.readable_copy()
    local there = work .. '/there'
    ok_sh(string.format("mkdir -p '%s' && cp '%s'/web1.tar.gz '%s'/web2.tar.gz '%s/'", there, work, work, there))
    ok_sh(string.format("mv '%s' '%s.away'", root, root))
    local env = string.format("cd '%s' && PERF_MANUAL_STORE='%s/empty' TMPDIR='%s'", there, there, there)
    local function pm(args) return h.pm_at(copy, args, env) end

    local out
    out, err, st = pm('show web1.tar.gz')
    assert.equal(0, st, err)
    assert.matches('^Investigation: ' .. q(ids[1]) .. '\nBundle: +web1%.tar%.gz ', out)
    assert.matches('\nStatus: +complete\n', out)
    assert.matches('\nBottleneck: +cpu\n', out)

    _, err, st = pm('report web1.tar.gz --output r.html')
    assert.equal(0, st, err)
    local html = util.readfile(there .. '/r.html')
    assert.is_nil(html:find('hunter2', 1, true))
    assert.matches('%-%-password %[REDACTED%]', html)
    -- its evidence links point into the folder `tar xzf` makes beside it
    ok_sh(string.format("cd '%s' && tar xzf web1.tar.gz", there))
    local links = 0
    for href in html:gmatch('<a href="([^"#]+)"') do
      if not href:match('^%a+:') then
        links = links + 1
        assert.matches('^' .. q(ids[1]) .. '/', href)
        assert.is_string(util.readfile(there .. '/' .. href), href)
      end
    end
    assert.is_true(links > 0)
    local bundled = flame_frames(html)
    assert.same(orig, bundled)
    -- every user function drawn is a symbol of the binary (binutils' nm as
    -- the independent reader); the rest are the process name, libc's entry,
    -- kernel frames (a timer interrupt caught mid-sample) and the root
    local syms = {}
    for name in ok_sh(string.format("nm '%s'", calltree)):gmatch('%x+ [TtWw] ([%w_.]+)') do syms[name] = true end
    local user = {}
    for _, f in ipairs(bundled) do
      local name = f:match('^(.*) %d+$')
      if not (name == 'all' or name == 'calltree' or name:match('^__libc') or name:match('_%[k%]$')) then
        assert.is_true(syms[name], name .. ' is not a symbol of calltree')
        user[name] = true
      end
    end
    for _, fn in ipairs({ 'main', 'alpha', 'beta', 'gamma_', 'delta', 'spin' }) do assert.is_true(user[fn], fn) end

    _, err, st = pm('present --slides --data web1.tar.gz --output deck.html')
    assert.equal(0, st, err)
    local deck = util.readfile(there .. '/deck.html')
    assert.same(orig, flame_frames(deck))
    for href in deck:gmatch('<a href="([^"#:]+)"') do assert.is_string(util.readfile(there .. '/' .. href), href) end

    _, err, st = pm('diff --before web1.tar.gz --after web2.tar.gz --output d.md')
    assert.equal(0, st, err)
    local d = util.readfile(there .. '/d.md')
    assert.matches('# Before / after: ' .. q(ids[1]:gsub('_', '\\_')) .. ' → ' .. q(ids[2]:gsub('_', '\\_')), d)
    assert.matches('\n## Hotspot shift\n', d)
    -- its rows name functions of the two profiles: kernel frames, or calltree's own
    local rows = d:match('\n| Function | Before | After | Change |\n|[-|]+|\n(.-)\n\n')
    assert.is_string(rows)
    for row in rows:gmatch('[^\n]+') do
      local name = row:match('^| (.-) |'):gsub('\\', '')
      assert.is_true(name:match('_%[k%]$') ~= nil or syms[name] or name:match('^__libc') ~= nil, name)
    end
    -- the differential flame graph draws the functions of both sides
    local fd = util.readfile(there .. '/d.flamediff.svg')
    for _, fn in ipairs({ 'main', 'alpha', 'beta', 'gamma_', 'delta', 'spin' }) do
      assert.matches('<title>' .. fn .. ' ', fd)
    end

    out, err, st = pm('search --import web1.tar.gz --import web2.tar.gz "checkout slow"')
    assert.equal(0, st, err)
    assert.matches('^imported ' .. q(ids[1]) .. ' from web1%.tar%.gz\nimported ' .. q(ids[2])
      .. ' from web2%.tar%.gz\n', out)
    assert.matches('\n 1%. ', out)
    assert.matches(q(ids[1]), out)
    assert.matches(q(ids[2]), out)
    -- the imported copy reads as any stored investigation, by id
    out, err, st = pm('show ' .. ids[2])
    assert.equal(0, st, err)
    assert.matches('\nFolder: +' .. q(there .. '/empty/' .. ids[2]) .. '\n', out)
    -- nothing unpacked is left behind
    assert.equal('', ok_sh(string.format("ls -d '%s'/perf_manual-bundle-* 2>/dev/null || true", there)))
  end)
end)
