-- `perf_manual probe` on programs that know their own counts
-- (tests/workloads/probe_calls.c, probe_usdt.c), checked against what
-- they print and against bpftrace counting the same events of the same
-- program (bpftrace -c launches it after attaching, as `probe -- CMD` does).
local h = test_helpers
local util = require('perf_manual.util')

local CALLS = h.workload('probe_calls')
local USDT = h.workload('probe_usdt')

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- the workload's own account: "calls 12000", "size 2^3 1000", "tag 1 3000" ...
local function own(text)
  local t = { size = {}, tag = {}, tick_mod = {} }
  for line in text:gmatch('[^\n]+') do
    local k, n = line:match('^(%a+) (%-?%d+)$')
    if k then t[k] = tonumber(n) end
    local s, c = line:match('^size 2%^(%d+) (%d+)$')
    if s then t.size[tonumber(s)] = tonumber(c) end
    local kind, key, cnt = line:match('^(%a[%a_]*) (%d+) (%d+)$')
    if kind == 'tag' or kind == 'tick_mod' then t[kind][tonumber(key)] = tonumber(cnt) end
  end
  return t
end

-- runs `probe ... --json -- CMD`: the decoded document and what the
-- command printed (to a file: with --json the tool's stdout is the document)
local function probe(args, cmd)
  local file = os.tmpname()
  local out, err, st = h.pm(string.format('probe %s --json -- /bin/sh -c %s', args, q('exec ' .. cmd .. ' >' .. file)))
  local printed = util.readfile(file) or ''
  os.remove(file)
  assert.equal(0, st, err)
  local doc = assert(util.json_decode(out), out)
  return doc, printed
end

-- bpftrace's maps after `bpftrace -e PROG -c CMD`: { ['@c'] = n, ['@k[3]'] = n }
local function bpftrace(prog, cmd)
  local out, err, st = h.sh(string.format('bpftrace -e %s -c %s', q(prog), q(cmd)))
  assert.equal(0, st, err)
  local maps = {}
  for name, n in out:gmatch('\n(@[%w_]*%[?[^%]\n]*%]?): (%d+)') do maps[name] = tonumber(n) end
  return maps, out
end

local function by_key(rows)
  local t = {}
  for _, r in ipairs(rows) do t[r.key] = r.count end
  return t
end

describe('probe e2e #priv', function()
  it('counts every call of a function and histograms its size argument, as the program and bpftrace count',
    function()
      if not h.need_root() or not h.have_bpftrace() then return end
      local point = 'uprobe:' .. CALLS .. ':pm_probe_work'
      local doc, printed = probe(q(point) .. ' --hist arg0', CALLS .. ' 12000')
      local truth = own(printed)
      assert.equal(12000, truth.calls)
      assert.equal(truth.calls, doc.total.count)
      assert.equal('uprobe', doc.quality.attach_path)
      assert.equal(0, doc.quality.events_lost)
      -- size = 2^k: one log2 bucket per k, holding what the program says it passed
      assert.equal(12, #doc.buckets)
      for k = 0, 11 do
        local b = doc.buckets[k + 1]
        assert.is_true(b.lo <= 2 ^ k and 2 ^ k <= b.hi, 'bucket ' .. k)
        assert.equal(truth.size[k], b.count, 'size 2^' .. k)
      end
      local sum = 0
      for k = 0, 11 do sum = sum + 2 ^ k * truth.size[k] end
      assert.equal(sum, doc.total.sum)
      local bt = bpftrace('uprobe:' .. CALLS .. ':pm_probe_work { @c = count(); }', CALLS .. ' 12000')
      assert.equal(doc.total.count, bt['@c'])
    end)

  it('keys by an argument and filters on another, with the counts bpftrace gives', function()
    if not h.need_root() or not h.have_bpftrace() then return end
    local point = 'uprobe:' .. CALLS .. ':pm_probe_work'
    local doc, printed = probe(q(point) .. ' --by arg1:s32', CALLS .. ' 12000')
    local truth = own(printed)
    local got = by_key(doc.rows)
    local bt = bpftrace('uprobe:' .. CALLS .. ':pm_probe_work { @k[arg1] = count(); }', CALLS .. ' 12000')
    for tag = 0, 3 do
      assert.equal(truth.tag[tag], got[tag], 'tag ' .. tag)
      assert.equal(bt['@k[' .. tag .. ']'], got[tag], 'bpftrace tag ' .. tag)
    end
    -- size >= 1024: k = 10, 11, that is i % 12 in {10, 11}: tags 2 and 3 only
    local f = probe(q(point) .. " --by arg1 --filter 'arg0 >= 1024'", CALLS .. ' 12000')
    assert.same({ [2] = 1000, [3] = 1000 }, by_key(f.rows))
  end)

  it('reads USDT probes from the note, arguments included, and sets their semaphores', function()
    if not h.need_root() or not h.have_bpftrace() then return end
    local doc, printed = probe(q('usdt:' .. USDT .. ':pmtest:tick') .. ' --by arg1', USDT .. ' 5000')
    local truth = own(printed)
    assert.equal(5000, truth.ticks)
    assert.equal(truth.ticks, doc.total.count)
    local bt = bpftrace('usdt:' .. USDT .. ':pmtest:tick { @k[arg1] = count(); }', USDT .. ' 5000')
    for m = 0, 4 do
      assert.equal(truth.tick_mod[m], by_key(doc.rows)[m], 'arg1 ' .. m)
      assert.equal(bt['@k[' .. m .. ']'], by_key(doc.rows)[m], 'bpftrace arg1 ' .. m)
    end
    -- a signed argument (-i): every value but i = 0 is negative
    local neg = probe(q('usdt:' .. USDT .. ':pmtest:tick') .. ' --hist arg2', USDT .. ' 5000')
    assert.is_true(neg.buckets[1].neg)
    assert.equal(4999, neg.buckets[1].count)
    -- pmtest:gated fires only while the semaphore is set: the program counts those
    local g, gprinted = probe(q('usdt:' .. USDT .. ':pmtest:gated'), USDT .. ' 5000')
    assert.equal(5000, own(gprinted).gated)
    assert.equal(5000, g.total.count)
  end)

  it('measures entry -> return time per thread', function()
    if not h.need_root() then return end
    local doc = probe(q('uprobe:' .. CALLS .. ':pm_probe_nap') .. ' --latency', CALLS .. ' 0 20 2000')
    assert.equal(20, doc.total.count)
    assert.equal('ns', doc.unit)
    -- each call sleeps 2 ms: no time below that, and not a hundred times more
    for _, b in ipairs(doc.buckets) do
      if b.count > 0 then assert.is_true(b.hi >= 2e6 and b.lo < 2e8, util.json_encode(b)) end
    end
    assert.is_true(doc.total.mean >= 2e6, tostring(doc.total.mean))
    assert.equal(0, doc.quality.events_missed)
    -- the return value, from the return probe alone (pm_probe_work returns 2*size + tag)
    local r = probe(q('uretprobe:' .. CALLS .. ':pm_probe_work') .. ' --hist retval --linear 0,24,4', CALLS .. ' 12')
    -- i = 0..11: 2*2^i + i%4 = 2, 5, 10, 19, 32 ...: 0-3: 1, 4-7: 1, 8-11: 1, 16-19: 1, and 8 at 24 or above
    local counts = {}
    for _, b in ipairs(r.buckets) do counts[#counts + 1] = b.count end
    assert.same({ 1, 1, 1, 0, 1, 0, 8 }, counts)
  end)

  it('names the stacks of the calls', function()
    if not h.need_root() then return end
    -- the naps keep the process alive while its maps are read
    local doc = probe(q('uprobe:' .. CALLS .. ':pm_probe_work') .. ' --stacks', CALLS .. ' 300 30 10000')
    assert.equal(300, doc.total.count)
    local top = doc.rows[1]
    assert.equal(300, top.count)
    assert.equal('pm_probe_work', top.stack[#top.stack])
  end)

  it('walks user stacks of a program without frame pointers to main and _start; fp stops in glibc', function()
    if not h.need_root() then return end
    -- nofp_tree (-O2 -fomit-frame-pointer) calls read() in one place only:
    -- main -> work -> reader -> read, work's call of reader a tail call at
    -- -O2 (so work may be gone from the stack); Debian's glibc keeps no
    -- frame pointers either
    local W = require('e2e.workload')
    W.with('nofp_tree', { '30' }, {}, function(w)
      -- after its exec: the uprobe goes on the C library it maps
      assert(W.wait_until(function()
        local maps = util.readfile('/proc/' .. w.pid .. '/maps') or ''
        return maps:find('nofp_tree') and maps:find('libc%.so') end, 10), 'workload did not start')
      local got = {}
      for _, spec in ipairs { { 'uprobe:libc:read', 'auto' }, { 'uprobe:libc:read', 'fp' },
                              { 'tracepoint:syscalls:sys_enter_read', 'auto' } } do
        local out, err, st = h.pm(string.format('probe %s --count --by ustack --pid %d --duration 1 --unwind %s --json',
          q(spec[1]), w.pid, spec[2]))
        assert.equal(0, st, out .. err)
        local doc = assert(util.json_decode(out), out)
        local total, rooted, tree, lines = 0, 0, 0, {}
        for _, r in ipairs(doc.rows) do
          local text = table.concat(r.stack or {}, ';')
          lines[#lines + 1] = r.count .. ' ' .. text
          total = total + r.count
          if text:match('^_start;') and text:find(';main;', 1, true) then rooted = rooted + r.count end
          -- the program's own chain, leaf last (the tracepoint's stack ends in glibc's read)
          if text:match(';main;[%w._;]-reader[%w._]*;[_%w]*read$') then tree = tree + r.count end
        end
        assert.is_true(total > 100, table.concat(lines, '\n'))
        got[#got + 1] = { spec = spec, total = total, rooted = rooted / total, tree = tree / total,
          text = table.concat(lines, '\n'), quality = doc.quality.unwind }
      end
      local auto, fp, tp = got[1], got[2], got[3]
      local why = string.format('auto: %.2f rooted, %.2f main..read\n%s\nfp: %.2f rooted\n%s\ntracepoint: %.2f\n%s',
        auto.rooted, auto.tree, auto.text, fp.rooted, fp.text, tp.tree, tp.text)
      assert.is_true(auto.rooted >= 0.99, why)
      assert.is_true(auto.tree >= 0.99, why)
      assert.equal('auto', auto.quality.mode)
      assert.is_true(auto.quality.ends.root >= 0.99 * auto.quality.samples, why)
      -- the registers saved at the syscall: the same chain from glibc's read
      assert.is_true(tp.tree >= 0.99, why)
      assert.equal(0, fp.rooted, why)
      assert.equal(0, fp.tree, why)
      assert.is_nil(fp.quality)
    end)
  end)

  it('counts exec tracepoints by thread name, as bpftrace does', function()
    if not h.need_root() or not h.have_bpftrace() then return end
    -- a script file: bpftrace -c splits its command at spaces, quotes and all
    local script = os.tmpname()
    assert(util.write_atomic(script, 'for i in 1 2 3 4 5 6 7; do /bin/true; done\n'))
    local loop = '/bin/sh ' .. script
    local doc = probe("'tracepoint:sched:sched_process_exec' --by comm", loop)
    local mine
    for _, r in ipairs(doc.rows) do if r.comm == 'true' then mine = r.count end end
    assert.equal(7, mine)
    local bt = bpftrace('tracepoint:sched:sched_process_exec /comm == "true"/ { @c = count(); }', loop)
    assert.equal(bt['@c'], mine)
    -- a field of the tracepoint, by name: the pid of each exec is the process's own
    local f = probe("'tracepoint:sched:sched_process_exec' --filter 'args.pid > 0' --by comm", loop)
    os.remove(script)
    local filtered
    for _, r in ipairs(f.rows) do if r.comm == 'true' then filtered = r.count end end
    assert.equal(7, filtered)
  end)

  it('says what is wrong with a spec, in one line, with exit status 2', function()
    if not h.need_root() then return end
    local cases = {
      { "'uprobe:" .. CALLS .. ":no_such_function'",
        "perf_manual: probe: unknown symbol 'no_such_function' in " .. CALLS },
      { "'tracepoint:sched:no_such_tracepoint'", "perf_manual: probe: unknown tracepoint 'sched:no_such_tracepoint'" },
      { "'usdt:" .. USDT .. ":pmtest:nope'", 'perf_manual: probe: no USDT probe pmtest:nope in ' .. USDT },
      { "'uprobe:libc:malloc' --count --latency", 'perf_manual: probe: choose one action: count, or hist' },
      { "'uprobe:libc:malloc' --hist bogus", "perf_manual: probe: unknown hist 'bogus'" },
      { "'tracepoint:sched:sched_process_exec' --hist args.filename",
        "perf_manual: probe: field 'filename' (__data_loc char[] filename) is not a number" },
      { "'uprobe:libc:malloc' --by ustack --unwind frames",
        "perf_manual: probe: bad value for --unwind 'frames': expected one of: auto, fp, dwarf" },
    }
    for _, c in ipairs(cases) do
      local out, err, st = h.pm('probe ' .. c[1] .. ' --duration 0.2')
      assert.equal(2, st, c[1] .. ': ' .. out .. err)
      assert.equal(1, select(2, err:gsub('\n', '')), err)
      assert.equal(c[2], err:sub(1, #c[2]))
    end
  end)

  it('runs the example playbook: who calls fsync, and how long it takes', function()
    if not h.need_root() then return end
    local W = require('e2e.workload')
    W.with('fsync_writer', { '30', W.scratch(), '2' }, {}, function(w)
      local out, err, st = h.pm(string.format(
        'run %s/playbooks/examples/who-calls-fsync.lua --pid %d --duration 1 --slow-ms 1e6', h.root, w.pid))
      assert.equal(0, st, err)
      local n = tonumber(out:match('^fsync: (%d+) calls in'))
      assert.is_true(n and n > 0, out)
      -- fsync_writer's threads call fsync from writer(); they never call fdatasync
      assert.matches('\n    writer\n    start_thread\n', out)
      assert.matches('fsync: the slowest caller, writer, takes [%d.]+ ms on average %(' .. n .. ' calls%)', out)
      assert.matches('\nfdatasync: 0 calls in', out)
    end)
    W.cleanup_scratch()
  end)

  it('runs the example playbook: who allocates, ranked by bytes, against the counts leaky keeps', function()
    if not h.need_root() then return end
    local W = require('e2e.workload')
    local counter = W.scratch() .. '/leaky.count'
    W.with('leaky', { '30', '32768', counter }, {}, function(w)
      assert(W.wait_until(function() return util.readfile(counter) end, 10), 'leaky wrote no count')
      local _, a0 = util.readfile(counter):match('(%d+) (%d+)')
      local out, err, st = h.pm(string.format('run %s/playbooks/examples/who-allocates.lua --pid %d --duration 2 '
        .. '--top 2', h.root, w.pid))
      local _, a1 = util.readfile(counter):match('(%d+) (%d+)')
      assert.equal(0, st, err)
      -- leaky leaks 16 KiB entries from cache_put (32 MiB/s asked: 2048 a second)
      -- and churns 20,000 mallocs a second of 16..2063 bytes: cache_put's bytes lead
      local pct, n, mean = out:match('\n%s*([%d.]+)%% of the bytes  cache_put%s+(%d+) calls  mean (%d+) bytes')
      assert(pct, out)
      assert.matches('^malloc: %d+ calls in [%d.]+s\n%s*[%d.]+%% of the bytes  cache_put ', out)
      assert.equal(16384, tonumber(mean))
      -- the calls it counted in its window, within the leak's own count around it
      local outer = tonumber(a1) - tonumber(a0)
      assert.is_true(tonumber(n) <= outer and tonumber(n) >= outer * 0.5, n .. ' of ' .. outer .. '\n' .. out)
      local cm = tonumber(out:match('%% of the bytes  churn%s+%d+ calls  mean (%d+) bytes'))
      assert.is_true(cm and cm >= 16 and cm <= 2063, out)
      assert.matches('\ncache_put allocates the most: [%d.]+M/s in ' .. n .. ' calls of 16384 bytes on average', out)
    end)
    W.cleanup_scratch()
  end)

  it('prints text with the quality line', function()
    if not h.need_root() then return end
    local out, err, st = h.pm(string.format('probe %s --by arg1 -- %s 400', q('uprobe:' .. CALLS .. ':pm_probe_work'),
      CALLS))
    assert.equal(0, st, err)
    assert.matches('pm_probe_work count by arg1: 400 events', out, 1, true)
    assert.matches('\nARG1%s+COUNT%s+PER_S\n', out)
    assert.matches('\n%s*0%s+100%s', out)
    assert.matches('\nquality: attach uprobe, events 400, lost 0, ', out)
    assert.matches('tool cpu', out)
  end)
end)
