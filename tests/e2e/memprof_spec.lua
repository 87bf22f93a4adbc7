-- perf_manual profile --memory, end to end: the real CLI against leaky, a
-- workload that leaks from cache_put (16 KiB entries, never freed, each page
-- touched) beside malloc/free, calloc/realloc churn, and keeps its own count
-- of what it leaked. Ground truths: that count, /proc/PID/status, and
-- heaptrack (an LD_PRELOAD allocation tracer) on the same program.
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local h = test_helpers

local ENTRY = 16384 -- leaky's entry size

local function counter(path)
  local t = util.readfile(path)
  local bytes, allocs = tostring(t or ''):match('^(%d+) (%d+)')
  return tonumber(bytes), tonumber(allocs)
end

local function rss(pid)
  local t = util.readfile('/proc/' .. pid .. '/status')
  return tonumber(t:match('\nVmRSS:%s+(%d+) kB')) * 1024
end

local function stack_of(doc, frame)
  for _, s in ipairs(doc.stacks) do
    if (';' .. s.stack .. ';'):find(';' .. frame .. ';', 1, true) then return s end
  end
end

-- bytes and allocations of every stack through frame (a launched command's
-- first allocations, before its unwind tables are read, are walked by frame
-- pointers: a stack of their own)
local function site_total(doc, frame)
  local bytes, allocs = 0, 0
  for _, s in ipairs(doc.stacks) do
    if (';' .. s.stack .. ';'):find(';' .. frame .. ';', 1, true) then
      bytes, allocs = bytes + s.count, allocs + s.allocs
    end
  end
  return bytes, allocs
end

-- Runs fn(dir, start) under the machine lock in a fresh directory;
-- start(argv) spawns a program (stdout discarded) that is stopped and reaped
-- afterwards, whatever happens, and the directory removed.
local function scene(fn)
  h.with_machine_lock(function()
    local dir, pids = h.tmpdir(), {}
    local function start(argv)
      local pid = assert(sys.spawn(argv, { stdout = 'null' }))
      pids[#pids + 1] = pid
      return pid
    end
    local ok, e = pcall(fn, dir, start)
    for _, pid in ipairs(pids) do sys.kill(pid, 15) sys.wait(pid) end
    h.rmrf(dir)
    assert(ok, e)
  end)
end

local function profile(args)
  local out, err, status = h.pm('profile --memory --json ' .. args)
  assert.equal(0, status, err)
  return assert(util.json_decode(out)), err
end

describe('perf_manual profile --memory', function()
  it('finds the leak of a launched command to the byte, with its stack, faults and flame graphs', function()
    if not h.need_root() then return end
    scene(function(dir)
      local cnt = dir .. '/leaked'
      local doc = profile(string.format('--output %s/prof -- %s 2 2048 %s', dir, h.workload('leaky'), cnt))
      local leaked, allocs = counter(cnt)
      assert.is_true(leaked > 0)
      -- the window is the command's whole life: every leaked entry is outstanding, nothing else from cache_put
      local top = doc.stacks[1]
      -- walked from CFI (the default): the whole stack, the caller once
      assert.matches('^leaky;_start;[^;]+;__libc_start_call_main;main;cache_put;malloc$', top.stack)
      assert.equal(leaked, (site_total(doc, 'cache_put')))
      assert.equal(allocs, select(2, site_total(doc, 'cache_put')))
      assert.equal(leaked / ENTRY, allocs)
      assert.is_true(top.count >= 0.9 * leaked, top.count .. ' of ' .. leaked .. ' in the walked stack')
      assert.equal('auto', doc.quality.unwind.mode)
      -- the churn (malloc/free, calloc/realloc/free) is all freed: not outstanding
      assert.is_nil(stack_of(doc, 'churn'))
      assert.is_nil(stack_of(doc, 'grow_buffer'))
      local v = doc.memory.verdict
      assert.is_true(v.leaking)
      assert.equal('cache_put', v['function'])
      assert.matches('allocated from `cache_put` and never freed', v.text)
      -- the faults: the pages cache_put touched, in the heap
      local faults = doc.faults.top.inclusive
      local hit
      for _, f in ipairs(faults) do if f.name == 'cache_put' then hit = f end end
      assert.is_not_nil(hit, 'cache_put among the faulting functions')
      -- the first touch of a page faults once (fewer when huge pages back the heap): the program's
      -- stacks are where it touched the leaked memory, and the faults are counted, not invented
      assert.is_true(hit.count > 0 and hit.count <= doc.faults.total)
      assert.equal('[heap]', doc.memory.fault_mappings[1].mapping)
      -- every frame was named; all calls recorded
      local q = doc.memory.quality
      assert.equal(1, q.sample_every)
      assert.equal(q.calls, q.sampled)
      -- (a launched command probes every process's C library: on a busy machine other
      -- programs' stacks can fill the stack map, and theirs are the ones lost)
      assert.is_true(q.lost_stacks <= 0.05 * q.calls, q.lost_stacks .. ' of ' .. q.calls .. ' stacks lost')
      for _, name in ipairs({ 'profile.svg', 'profile.folded', 'faults.svg', 'faults.folded' }) do
        assert.is_not_nil(util.readfile(dir .. '/prof/' .. name), name)
      end
      assert.matches('cache_put', util.readfile(dir .. '/prof/profile.svg'))
      local folded = util.readfile(dir .. '/prof/profile.folded')
      assert.matches(top.stack .. ' ' .. top.count .. '\n', folded, 1, true)
      local in_folded = 0
      for n in folded:gmatch(';cache_put;malloc (%d+)\n') do in_folded = in_folded + tonumber(n) end
      assert.equal(leaked, in_folded)
      -- shown again from the files: the same verdict and counts
      local again, err, st = h.pm(string.format('profile --replay %s/prof --output %s/again', dir, dir))
      assert.equal(0, st, err)
      assert.matches('verdict: ' .. v.text, again, 1, true)
      assert.matches(string.format('%d allocs  [^\n]*;__libc_start_call_main;main;cache_put;malloc\n', top.allocs),
        again)
    end)
  end)

  it('measures a running process: outstanding bytes within its own count, RSS growth within /proc', function()
    if not h.need_root() then return end
    scene(function(dir, start)
      local cnt = dir .. '/leaked'
      local pid = start({ h.workload('leaky'), '60', '2048', cnt })
      sys.sleep(0.5)
      local b0, rss0 = counter(cnt), rss(pid)
      local doc, err = profile(string.format('--pid %d --duration 3 --output %s/prof --format folded', pid, dir))
      local b1, rss1 = counter(cnt), rss(pid)
      local s = assert(stack_of(doc, 'cache_put'), err)
      -- what it leaked while we watched, bracketed by its counter read before and after the command
      assert.is_true(s.count <= b1 - b0, s.count .. ' > ' .. (b1 - b0))
      assert.is_true(s.count >= (b1 - b0) * 0.5, s.count .. ' < half of ' .. (b1 - b0))
      assert.equal(0, s.count % ENTRY)
      local r = doc.memory.rss
      assert.is_true(r.first >= rss0 and r.last <= rss1, string.format('%d..%d outside %d..%d', r.first, r.last,
        rss0, rss1))
      assert.is_true(r.growth > 0)
      -- leaked pages are touched: RSS grows at least by most of what was leaked
      assert.is_true(r.growth >= s.count * 0.7, r.growth .. ' vs ' .. s.count)
      assert.equal('cache_put', doc.memory.verdict['function'])
    end)
  end)

  it('estimates the leak from every 8th allocation', function()
    if not h.need_root() then return end
    scene(function(dir)
      local cnt = dir .. '/leaked'
      local doc = profile(string.format('--sample-every 8 --output %s/prof --format folded -- %s 3 2048 %s',
        dir, h.workload('leaky'), cnt))
      local leaked = counter(cnt)
      assert.near(leaked, (site_total(doc, 'cache_put')), leaked * 0.35)
      local q = doc.memory.quality
      assert.equal(8, q.sample_every)
      assert.near(q.calls / 8, q.sampled, q.calls * 0.01 + 8)
    end)
  end)

  it('names the same leaking function as heaptrack, each matching the program\'s own count', function()
    if not h.need_root() then return end
    if not h.sh('command -v heaptrack_print'):match('heaptrack') then
      return pending('skipped: heaptrack is not installed')
    end
    scene(function(dir)
      -- heaptrack slows every allocation a lot: the same number of rounds, not of seconds
      local _, err, status = h.sh(string.format('heaptrack -o %s/ht %s 1 2048 %s/ht.cnt', dir,
        h.workload('leaky'), dir))
      assert.equal(0, status, err)
      local text = h.sh(string.format('heaptrack_print -f %s/ht.zst --print-leaks 1', dir))
      local leaks = text:match('MEMORY LEAKS\n(.*)')
      assert.is_not_nil(leaks, text)
      local size, unit, fn = leaks:match('^([%d.]+)(%a*) leaked over %d+ calls from\n(%S+)')
      assert.equal('cache_put', fn)
      local ht_leaked = counter(dir .. '/ht.cnt')
      local mult = ({ [''] = 1, K = 1e3, M = 1e6, G = 1e9 })[unit]
      assert.near(ht_leaked, tonumber(size) * mult, ht_leaked * 0.01 + 10)
      local doc = profile(string.format('--output %s/prof --format folded -- %s 1 2048 %s/pm.cnt', dir,
        h.workload('leaky'), dir))
      assert.equal('cache_put', doc.memory.verdict['function'])
      assert.equal(counter(dir .. '/pm.cnt'), (site_total(doc, 'cache_put')))
    end)
  end)

  it('the memory-leak example playbook concludes on the leaking function, live and replayed', function()
    if not h.need_root() then return end
    scene(function(dir, start)
      local pid = start({ h.workload('leaky'), '60', '2048' })
      sys.sleep(0.3)
      local store = require('perf_manual.store')
      local function run(extra, root)
        local out, err, st = h.pm(string.format('run %s/playbooks/examples/memory-leak.lua --batch --store %s %s',
          h.root, root, extra))
        assert.equal(0, st, out .. err)
        local inv = store.open(root, store.list(root)[1])
        return assert(inv:load_metadata()), out, inv
      end
      local meta, out, inv = run(string.format('--pid %d --duration 2', pid), dir .. '/live')
      assert.matches('allocated from `cache_put` and never freed', out)
      assert.equal('supported', meta.hypotheses[1].status)
      assert.matches('^leak from cache_put: RSS %+[%d.]+ MB/min', meta.root_cause)
      local f = meta.findings[1]
      assert.same({ 'memory', 'warning' }, { f.resource, f.severity })
      -- judged again from what was recorded: the same conclusion
      local meta2 = run(string.format('--pid %d --replay %s', pid, inv.dir), dir .. '/replay')
      assert.equal(meta.root_cause, meta2.root_cause)
    end)
  end)

  it('walks the stacks of a program built without frame pointers from CFI; frame pointers stop at the caller',
    function()
    if not h.need_root() then return end
    scene(function(dir)
      local function run(mode)
        local cnt = dir .. '/leaked.' .. mode
        local doc = profile(string.format('--unwind %s --output %s/%s --format folded -- %s 2 2048 %s', mode, dir,
          mode, h.workload('nofp_leak'), cnt))
        return doc, counter(cnt)
      end
      local doc, leaked, allocs = run('auto')
      local top = doc.stacks[1]
      assert.matches('^nofp_leak;_start;[^;]+;__libc_start_call_main;main;cache_put;malloc$', top.stack)
      assert.is_true(top.count >= 0.9 * leaked, top.count .. ' of ' .. leaked .. ' in the walked stack')
      assert.same({ leaked, allocs }, { site_total(doc, 'cache_put') })
      assert.equal('cache_put', doc.memory.verdict['function'])
      local uw = doc.quality.unwind
      assert.equal('auto', uw.mode)
      assert.is_true(uw.dwarf >= 0.9 * uw.samples, uw.dwarf .. ' of ' .. uw.samples .. ' bytes walked by CFI alone')
      assert.same(uw, doc.memory.quality.unwind)
      -- the page faults too (walked from the registers saved at the fault): through cache_put to main,
      -- but for those before the tables were ready
      local incl = {}
      for _, f in ipairs(doc.faults.top.inclusive) do incl[f.name] = f.count end
      assert.is_true((incl.cache_put or 0) > 0)
      assert.is_true((incl.main or 0) >= 0.9 * incl.cache_put, tostring(incl.main) .. ' vs ' .. incl.cache_put)

      doc, leaked = run('fp')
      assert.equal('fp', doc.quality.unwind.mode)
      local seen = 0
      for _, s in ipairs(doc.stacks) do
        if s.stack:find(';cache_put;malloc$') then
          seen = seen + s.count
          assert.is_nil(s.stack:find(';main;', 1, true), s.stack)
        end
      end
      -- (a frame-pointer walk through code without them can also fail outright: [missing user stack])
      assert.is_true(seen >= 0.9 * leaked and seen <= leaked, seen .. ' vs ' .. leaked)
    end)
  end)

  it('counts what is kept from mmap(2) and from mallocs glibc serves with mmap, once each, to the byte', function()
    if not h.need_root() then return end
    scene(function(dir)
      local cnt = dir .. '/kept'
      local doc = profile(string.format('--output %s/prof --format folded -- %s 2 %s', dir, h.workload('map_leak'),
        cnt))
      local t = util.readfile(cnt)
      local map_bytes, maps, big_bytes, bigs = t:match('^(%d+) (%d+) (%d+) (%d+)')
      map_bytes, maps, big_bytes, bigs = tonumber(map_bytes), tonumber(maps), tonumber(big_bytes), tonumber(bigs)
      assert.is_true(maps > 10 and bigs > 10, t)
      -- the window is the command's life: every kept map and block is outstanding, once (a malloc
      -- that glibc serves with its own mmap is the malloc's, not counted again as a map)
      assert.same({ map_bytes, maps }, { site_total(doc, 'map_keep') })
      assert.same({ big_bytes, bigs }, { site_total(doc, 'big_keep') })
      for _, s in ipairs(doc.stacks) do
        if s.stack:find(';map_keep;', 1, true) or s.stack:find(';map_keep$') then
          assert.is_nil(s.stack:find('malloc', 1, true), s.stack)
        end
        if s.stack:find(';big_keep;', 1, true) then assert.matches(';big_keep;malloc$', s.stack) end
      end
      -- what was unmapped or freed is not outstanding
      assert.is_nil(stack_of(doc, 'map_churn'))
      assert.is_nil(stack_of(doc, 'big_churn'))
      assert.equal('big_keep', doc.memory.verdict['function'])
    end)
  end)

  it('refuses a system-wide memory profile and --memory with --off-cpu', function()
    local _, err, status = h.pm('profile --memory --duration 1')
    assert.equal(2, status)
    assert.matches('%-%-memory profiles one program', err)
    _, err, status = h.pm('profile --memory --off-cpu --pid 1 --duration 1')
    assert.equal(2, status)
    assert.matches('give one of %-%-memory, %-%-off%-cpu', err)
  end)
end)
