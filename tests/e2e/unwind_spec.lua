-- User stacks without frame pointers, end to end: nofp_tree is built -O2
-- -fomit-frame-pointer and calls through glibc (qsort with a callback,
-- rand, read), as distributions build programs. Ground truth: `perf record
-- --call-graph dwarf` on the same process over the same seconds (it copies
-- 8 KiB of stack per sample and unwinds them afterwards with libdw); our
-- profile must reach the root as often and give every function the same
-- inclusive share within sampling noise.
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local h = test_helpers

local FUNCS = { 'main', 'work.constprop.0', 'hasher.constprop.0', 'mix', 'sorter.constprop.0', 'qsort_r',
  'msort_with_tmp.part.0', 'by_value', 'reader.constprop.0', 'read' }
-- glibc's aliases of one address: perf and we pick different names
local ALIAS = { __GI___qsort_r = 'qsort_r', ___qsort_r = 'qsort_r', __qsort_r = 'qsort_r', __libc_read = 'read',
  __read = 'read', __GI___libc_read = 'read' }

-- perf script --no-inline: a header line per sample, then "\t addr name" frames
local function perf_shares(text)
  local total, rooted, hits = 0, 0, {}
  for block in (text .. '\n\n'):gmatch('(.-)\n\n') do
    local names = {}
    for name in block:gmatch('\n%s+%x+ ([^\n]+)') do
      name = name:gsub('@@?GLIBC[%w_.]*$', '')
      names[ALIAS[name] or name] = true
    end
    if next(names) then
      total = total + 1
      if names._start then rooted = rooted + 1 end
      for n in pairs(names) do hits[n] = (hits[n] or 0) + 1 end
    end
  end
  return total, rooted, hits
end

local function folded_shares(text)
  local total, rooted, hits = 0, 0, {}
  for line in text:gmatch('[^\n]+') do
    local stack, c = line:match('^(.*) (%d+)$')
    c = tonumber(c)
    local names = {}
    for f in stack:gmatch('[^;]+') do names[ALIAS[f] or f] = true end
    total = total + c
    if names._start then rooted = rooted + c end
    for n in pairs(names) do hits[n] = (hits[n] or 0) + c end
  end
  return total, rooted, hits
end

-- Under the machine lock: a scratch directory, then the workload argv(dir)
-- gives; fn(pid, dir) runs; the workload and the directory are gone after.
local function with_workload(argv, fn)
  h.with_machine_lock(function()
    local dir = h.tmpdir()
    local pid = assert(sys.spawn(argv(dir), { stdout = 'null' }))
    local ok, err = pcall(fn, pid, dir)
    sys.kill(pid, 9)
    sys.wait(pid)
    h.rmrf(dir)
    assert(ok, err)
  end)
end

local function folded_of(dir) return assert(util.readfile(dir .. '/profile.folded')) end

describe('user stacks without frame pointers', function()
  -- nofp_tree as distributions build; fp_tree the same code with frame
  -- pointers, whose stacks still cross glibc's qsort and read, which have none
  for _, wl in ipairs({ 'nofp_tree', 'fp_tree' }) do
    it(wl .. ': profile --unwind auto reaches main as perf --call-graph dwarf does, with the same inclusive shares',
      function()
      if not h.need_root('perf_event sampling') then return end
      with_workload(function() return { h.workload(wl), '60' } end, function(pid, dir)
        local pdata = dir .. '/perf.data'
        sys.sleep(0.3)
        -- perf over the same seconds: started first, stopped after our profile
        local perf = assert(sys.spawn({ 'perf', 'record', '-q', '--call-graph', 'dwarf', '-F', '499', '-p',
          tostring(pid), '-o', pdata }, { stdout = 'null', stderr = 'null' }))
        sys.sleep(0.3)
        local out, e, st = h.pm(string.format('profile --pid %d --duration 6 --freq 499 --unwind auto '
          .. '--format folded --output %s/p', pid, dir))
        sys.kill(perf, 2)
        sys.wait(perf)
        assert.equal(0, st, out .. e)
        local script = io.popen('perf script --no-inline -F comm,ip,sym -i ' .. pdata .. ' 2>/dev/null'):read('*a')
        local pt, pr, ph = perf_shares(script)
        local ot, orr, oh = folded_shares(folded_of(dir .. '/p'))
        local diag = { string.format('samples: ours %d, perf %d; reach _start: ours %.1f%%, perf %.1f%%', ot, pt,
          100 * orr / ot, 100 * pr / pt) }
        for _, f in ipairs(FUNCS) do
          diag[#diag + 1] = string.format('  %-24s ours %5.1f%%  perf %5.1f%%', f, 100 * (oh[f] or 0) / ot,
            100 * (ph[f] or 0) / pt)
        end
        local text = table.concat(diag, '\n')
        io.stderr:write('\n[unwind] ' .. wl .. ': ' .. text .. '\n')
        assert.is_true(ot >= 1000 and pt >= 1000, text)
        assert.is_true(orr / ot >= 0.95, text)
        assert.is_true(orr / ot >= pr / pt - 0.02, text)
        for _, f in ipairs(FUNCS) do
          -- two samplings of ~2000 each: a share differs by ~1.5 points (one sigma)
          assert.is_true(math.abs((oh[f] or 0) / ot - (ph[f] or 0) / pt) <= 0.05, f .. '\n' .. text)
        end
        -- the stack-quality line says how they were unwound
        assert.matches('user stacks unwound %(%-%-unwind auto%): CFI [%d.]+%%', out)
      end)
    end)
  end

  it('--unwind fp stops at the first function without a frame pointer; dwarf and auto do not', function()
    if not h.need_root('perf_event sampling') then return end
    with_workload(function() return { h.workload('nofp_tree'), '60' } end, function(pid, dir)
      sys.sleep(0.3)
      local reach = {}
      for _, mode in ipairs { 'fp', 'dwarf', 'auto' } do
        local out, e, st = h.pm(string.format('profile --pid %d --duration 1.5 --freq 299 --unwind %s '
          .. '--format folded --output %s', pid, mode, dir))
        assert.equal(0, st, out .. e)
        local t, r = folded_shares(folded_of(dir))
        reach[mode] = r / t
        if mode == 'fp' then
          -- the kernel's frame-pointer walk, as before: no line about the unwinder
          assert.is_nil(out:find('user stacks unwound', 1, true))
        else
          assert.matches('user stacks unwound %(%-%-unwind ' .. mode .. '%)', out)
        end
      end
      local text = string.format('reach _start: fp %.1f%%, dwarf %.1f%%, auto %.1f%%', 100 * reach.fp,
        100 * reach.dwarf, 100 * reach.auto)
      io.stderr:write('\n[unwind modes] ' .. text .. '\n')
      assert.is_true(reach.fp < 0.2, text)
      assert.is_true(reach.dwarf >= 0.95 and reach.auto >= 0.95, text)
    end)
  end)

  it('code dlopen()ed during the capture gets its tables and its names: zlib under main', function()
    if not h.need_root('perf_event sampling') then return end
    -- nofp_dlopen: warm_up for 2 s, then dlopen("libz.so.1") and compress in a loop
    with_workload(function() return { h.workload('nofp_dlopen'), '8' } end, function(pid, dir)
      sys.sleep(0.2)
      local maps = util.readfile('/proc/' .. pid .. '/maps') or ''
      assert.is_nil(maps:find('libz.so', 1, true), 'zlib was mapped before the capture')
      local out, e, st = h.pm(string.format('profile --pid %d --duration 5 --freq 199 --format folded --output %s',
        pid, dir))
      assert.equal(0, st, out .. e)
      local folded = folded_of(dir)
      local total, zlib, rooted = 0, 0, 0
      for line in folded:gmatch('[^\n]+') do
        local stack, c = line:match('^(.*) (%d+)$')
        c = tonumber(c)
        total = total + c
        if stack:find(';deflate', 1, true) then
          zlib = zlib + c
          if stack:find(';_start;', 1, true) and stack:find(';main;squeeze', 1, true) then rooted = rooted + c end
        end
      end
      local text = string.format('samples %d, in deflate %d, of them through main to _start %d\n%s', total, zlib,
        rooted, out)
      -- about 3 of the 5 seconds are in zlib, named through a symbol snapshot taken after the dlopen
      assert.is_true(zlib >= total * 0.4, text)
      assert.is_true(rooted >= zlib * 0.95, text)
      assert.matches(';compress2;deflate', folded, 1, true)
    end)
  end)

  it('a process in another mount namespace (a container): its binary, not visible here, is read through its root',
    function()
    if not h.need_root('mount namespaces, perf_event sampling') then return end
    -- calltree copied into a tmpfs mounted on DIR/ns only inside the new namespace
    with_workload(function(dir)
      assert(os.execute('mkdir ' .. dir .. '/ns') == 0)
      return { 'unshare', '-m', '--propagation', 'private', 'sh', '-c',
        string.format('mount -t tmpfs none %s/ns && cp %s %s/ns/ && exec %s/ns/calltree burn 20', dir,
          h.workload('calltree'), dir, dir) }
    end, function(pid, dir)
      local comm
      for _ = 1, 100 do
        comm = util.readfile('/proc/' .. pid .. '/comm')
        if comm and comm:match('^calltree') then break end
        sys.sleep(0.02)
      end
      assert.matches('^calltree', tostring(comm))
      assert.is_nil(util.readfile(dir .. '/ns/calltree'), 'the binary is visible outside its namespace')
      local out, e, st = h.pm(string.format('profile --pid %d --duration 2 --freq 199 --format folded --output %s/p',
        pid, dir))
      assert.equal(0, st, out .. e)
      local total, beta, rooted = 0, 0, 0
      for line in folded_of(dir .. '/p'):gmatch('[^\n]+') do
        local stack, c = line:match('^(.*) (%d+)$')
        c = tonumber(c)
        total = total + c
        if stack:find(';alpha;beta', 1, true) then beta = beta + c end
        if stack:find(';_start;', 1, true) then rooted = rooted + c end
      end
      local text = string.format('samples %d, main;alpha;beta %d, reaching _start %d\n%s', total, beta, rooted, out)
      -- calltree's known tree: alpha -> beta 60% of its work
      assert.is_true(total >= 200, text)
      assert.near(0.6, beta / total, 0.1, text)
      assert.is_true(rooted >= total * 0.95, text)
    end)
  end)

  it('lock-contention: a waiter on a glibc mutex, all of it without frame pointers, has its whole stack', function()
    if not h.need_root('BPF') then return end
    -- nofp_convoy: worker -> critical_section (inlined at -O2) -> pthread_mutex_lock on g_lock
    with_workload(function(dir)
      assert(os.execute('touch ' .. dir .. '/gate') == 0)
      return { h.workload('nofp_convoy'), '4', '8', dir .. '/gate', '3' }
    end, function(pid)
      sys.sleep(0.3)
      local out, e, st = h.pm(string.format('lock-contention --pid %d --duration 2 --json --max-overhead 1000', pid))
      assert.equal(0, st, out .. e)
      local doc = assert(util.json_decode(out), out)
      local top = assert(doc.futex and doc.futex[1], out)
      assert.matches('g_lock', tostring(top.name))
      local frames = assert(top.stacks and top.stacks[1] and top.stacks[1].frames, out)
      local text = table.concat(frames, ';')
      -- innermost first: glibc's wait, the mutex, the program, the thread's root
      assert.matches('lll_lock_wait', frames[1], 1, true)
      assert.matches('pthread_mutex_lock;worker;start_thread;[_]*clone3$', text)
      assert.is_true(top.stacks[1].walked, text)
    end)
  end)

  it('off-CPU: blocked in glibc read() and nanosleep(), the callers are there; fp loses them', function()
    if not h.need_root('BPF off-CPU profile') then return end
    -- nofp_pipe: main -> wait_for_peer -> read() on a pipe 75% of the time,
    -- main -> back_off -> nanosleep() 25%, by the workload's own clock
    with_workload(function() return { h.workload('nofp_pipe'), '60' } end, function(pid, dir)
      sys.sleep(0.3)
      local got = {}
      for _, mode in ipairs { 'fp', 'auto' } do
        local out, e, st = h.pm(string.format('profile --off-cpu --pid %d --duration 2 --min-block 1ms --unwind %s '
          .. '--format folded --output %s', pid, mode, dir))
        assert.equal(0, st, out .. e)
        local total, peer, sleep, rooted = 0, 0, 0, 0
        for line in folded_of(dir):gmatch('[^\n]+') do
          local stack, c = line:match('^(.*) (%d+)$')
          c = tonumber(c)
          total = total + c
          if stack:find(';_start;', 1, true) then rooted = rooted + c end
          if stack:match(';main;wait_for_peer[%w._]*;[_%w]*read;') then peer = peer + c end
          if stack:match(';main;back_off[%w._]*;[_%w]*nanosleep;') then sleep = sleep + c end
        end
        got[mode] = { peer = peer / total, sleep = sleep / total, root = rooted / total, out = out }
      end
      local text = string.format('fp: peer %.2f sleep %.2f root %.2f; auto: peer %.2f sleep %.2f root %.2f\n%s',
        got.fp.peer, got.fp.sleep, got.fp.root, got.auto.peer, got.auto.sleep, got.auto.root, got.auto.out)
      io.stderr:write('\n[unwind off-cpu] ' .. text:match('^[^\n]*') .. '\n')
      assert.is_true(got.fp.root < 0.2, text)
      assert.is_true(got.auto.root >= 0.95, text)
      assert.near(0.75, got.auto.peer, 0.08, text)
      assert.near(0.25, got.auto.sleep, 0.08, text)
      -- the call site names the program's frame, not only glibc's
      assert.matches('wait_for_peer[%w._]* %-> [_%w]*read', got.auto.out)
    end)
  end)

  it('trace --events offcpu: the blocked thread\'s user stack reaches _start through glibc\'s read(); fp stops in it',
    function()
    if not h.need_root('BPF off-CPU tracer') then return end
    with_workload(function() return { h.workload('nofp_pipe'), '60' } end, function(pid)
      sys.sleep(0.3)
      local names = {}
      for _, mode in ipairs { 'fp', 'auto' } do
        local out, e, st = h.pm(string.format('trace --events offcpu --pid %d --duration 1.5 --unwind %s --json', pid,
          mode))
        assert.equal(0, st, out .. e)
        local doc = assert(util.json_decode(out), out)
        local res = doc.intervals[#doc.intervals].results.offcpu
        assert.equal(mode, res.unwind)
        -- the main thread's heaviest stack: the pipe read (75% of its time)
        local top
        for _, en in ipairs(res.entries) do if en.pid == pid and not top then top = en end end
        assert(top and top.user_stack, out)
        -- named from the process's own maps, innermost first
        local r = require('perf_manual.sym').new()
        r:snapshot(pid)
        names[mode] = table.concat(r:user_stacks(pid, { top.user_stack })[1], ';')
      end
      local text = 'fp: ' .. names.fp .. '\nauto: ' .. names.auto
      assert.matches('^[_%w]*read;wait_for_peer[%w._]*;main;', names.auto, nil, text)
      assert.matches(';_start$', names.auto, nil, text)
      assert.is_nil(names.fp:find('main', 1, true), text)
    end)
  end)

  it('rejects an unknown --unwind', function()
    local out, err, st = h.pm('profile --unwind frames --duration 1')
    assert.equal(2, st, out .. err)
    assert.matches('unwind', err)
  end)
end)
