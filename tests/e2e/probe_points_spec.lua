-- `perf_manual probe` probe points and target filters that probe_spec.lua
-- does not reach, live and attached: raw tracepoints, uprobes at an offset
-- (FUNC+OFF and a file offset computed here from objdump/readelf, not by
-- the tool), --tid / --comm / --cgroup, and kernel stacks on tracepoints.
-- Ground truth: the workloads' own counts (probe_calls, probe_threads) and
-- bpftrace's kstack for the same events.
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local h = test_helpers

local CALLS = h.workload('probe_calls')
local THREADS = h.workload('probe_threads')
local SYS_getppid = 110 -- x86-64

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- `probe ARGS --json -- CMD`: the document and what CMD printed
local function probe(args, cmd)
  local file = os.tmpname()
  local out, err, st = h.pm(string.format('probe %s --json -- /bin/sh -c %s', args, q('exec ' .. cmd .. ' >' .. file)))
  local printed = util.readfile(file) or ''
  os.remove(file)
  assert.equal(0, st, err)
  return assert(util.json_decode(out), out), printed
end

-- "hits a 300", "tid b 1234", ... -> t.hits.a = 300
local function own(text)
  local t = {}
  for k, who, n in text:gmatch('(%a+) (%a) (%d+)') do
    t[k] = t[k] or {}
    t[k][who] = tonumber(n)
  end
  return t
end

local function wait_for(pred, timeout)
  local t0 = sys.now()
  while not pred() do
    if sys.now() - t0 > timeout then return false end
    sys.sleep(0.02)
  end
  return true
end

-- reaps pid within timeout seconds (else kills it); true when it exited by itself
local function reap(pid, timeout)
  local done = wait_for(function() return sys.wait(pid, true) ~= 'running' end, timeout)
  if not done then sys.kill(pid, 9) sys.wait(pid) end
  return done
end

-- Runs fn(dir, start) under the machine lock; start(argv, opts) spawns a
-- process that is killed and reaped afterwards, whatever happens.
local function scene(fn)
  h.with_machine_lock(function()
    local dir, pids = h.tmpdir(), {}
    local function start(argv, opts)
      local pid = assert(sys.spawn(argv, opts))
      pids[#pids + 1] = pid
      return pid
    end
    local ok, e = xpcall(function() fn(dir, start) end, debug.traceback)
    for _, pid in ipairs(pids) do
      if sys.wait(pid, true) == 'running' then sys.kill(pid, 9) sys.wait(pid) end
    end
    h.rmrf(dir)
    assert(ok, e)
  end)
end

-- probe_threads A B wait, its output in dir/name: pid and thread ids
local function threads(start, dir, name, a, b, opts)
  opts = opts or {}
  opts.stdout = dir .. '/' .. name
  local pid = start({ THREADS, tostring(a), tostring(b), 'wait' }, opts)
  assert.is_true(wait_for(function()
    local t = own(util.readfile(opts.stdout) or '')
    return t.tid and t.tid.a and t.tid.b
  end, 5), 'probe_threads did not print its thread ids')
  return pid, own(util.readfile(opts.stdout)).tid
end

-- Starts `probe ARGS` (text) in the background and returns its pid once it
-- says it is probing (the probe is attached then), its output file.
local function probe_bg(start, dir, args)
  local out = dir .. '/probe.out'
  local pid = start({ '/bin/sh', '-c', string.format('exec %s/bin/perf_manual probe %s', h.root, args) },
    { stdout = out, stderr = dir .. '/probe.err' })
  assert.is_true(wait_for(function() return (util.readfile(out) or ''):find('Hit Ctrl-C', 1, true) ~= nil end, 15),
    'probe did not start: ' .. tostring(util.readfile(dir .. '/probe.err')))
  return pid, out
end

-- the event total of a text result ("...: 500 events")
local function events(text)
  return tonumber(text:match(': (%d+) events\n'))
end

-- runs a command, returns stdout (asserting it worked)
local function run(cmd)
  local out, err, st = h.sh(cmd)
  assert.equal(0, st, cmd .. ': ' .. err)
  return out
end

describe('probe points and target filters e2e #priv', function()
  it('uprobe at FUNC+OFF and at a file offset counts every call, as the program counts them', function()
    if not h.need_root() then return end
    -- the second instruction of pm_probe_work, from objdump: an instruction boundary every call passes
    local dis = run(string.format("objdump -d --no-show-raw-insn %s | "
      .. "awk '/<pm_probe_work>:/{f=1;next} f&&NF==0{exit} f'", CALLS))
    local addrs = {}
    for a in dis:gmatch('%s*(%x+):') do addrs[#addrs + 1] = tonumber(a, 16) end
    assert.is_true(#addrs >= 2, dis)
    local sym = tonumber(run(string.format("nm %s | awk '$3 == \"pm_probe_work\" {print $1}'", CALLS)), 16)
    assert.equal(sym, addrs[1])
    local off = addrs[2] - sym
    -- the file offset of that instruction, through the LOAD segment holding it (readelf -l)
    local fileoff
    for o, va, fsz in run('readelf -lW ' .. CALLS):gmatch('LOAD%s+0x(%x+)%s+0x(%x+)%s+0x%x+%s+0x(%x+)') do
      o, va, fsz = tonumber(o, 16), tonumber(va, 16), tonumber(fsz, 16)
      if addrs[2] >= va and addrs[2] < va + fsz then fileoff = addrs[2] - va + o end
    end
    assert.is_not_nil(fileoff)
    scene(function()
      for _, point in ipairs({ string.format('pm_probe_work+%d', off), string.format('0x%x', fileoff) }) do
        local doc, printed = probe(q('uprobe:' .. CALLS .. ':' .. point), CALLS .. ' 1200')
        assert.equal(1200, tonumber(printed:match('calls (%d+)')))
        assert.equal(1200, doc.total.count, point)
        assert.equal('uprobe', doc.quality.attach_path)
      end
      -- the same binary's function the run never calls counts nothing: the counts above are
      -- the probed instruction's, not any uprobe's on the file
      local doc = probe(q('uprobe:' .. CALLS .. ':pm_probe_nap'), CALLS .. ' 1200')
      assert.equal(0, doc.total.count)
    end)
  end)

  it('--comm counts only the thread of that name', function()
    if not h.need_root() then return end
    scene(function()
      local doc, printed = probe(q('uprobe:' .. THREADS .. ':pm_thread_hit') .. ' --comm pmthr_b --by tid',
        THREADS .. ' 300 500')
      local t = own(printed)
      assert.same({ a = 300, b = 500 }, t.hits)
      assert.equal(500, doc.total.count)
      assert.equal(1, #doc.rows)
      assert.equal(t.tid.b, doc.rows[1].tid)
      local a = probe(q('uprobe:' .. THREADS .. ':pm_thread_hit') .. ' --comm pmthr_a', THREADS .. ' 300 500')
      assert.equal(300, a.total.count)
    end)
  end)

  it('--tid counts only that thread, on a uprobe and on a raw tracepoint', function()
    if not h.need_root() then return end
    scene(function(dir, start)
      local pid, tid = threads(start, dir, 'w1', 300, 500)
      local p, out = probe_bg(start, dir, string.format("%s --pid %d --tid %d --by tid",
        q('uprobe:' .. THREADS .. ':pm_thread_hit'), pid, tid.a))
      sys.kill(pid, 10) -- SIGUSR1: the threads start calling
      assert.is_true(reap(pid, 20))
      assert.is_true(reap(p, 20), 'probe did not end with its target')
      local text = util.readfile(out)
      assert.equal(300, events(text), text)
      assert.matches('\n%s*' .. tid.a .. '%s+300%s', text)

      -- every system call of thread b: its getppid calls and the few around them (wake-up, exit)
      pid, tid = threads(start, dir, 'w2', 300, 500)
      p, out = probe_bg(start, dir, string.format("'rawtracepoint:sys_enter' --pid %d --tid %d", pid, tid.b))
      sys.kill(pid, 10)
      assert.is_true(reap(pid, 20))
      assert.is_true(reap(p, 20), 'probe did not end with its target')
      text = util.readfile(out)
      local n = events(text)
      assert.is_true(n and n >= 500 and n <= 520, text)
      assert.matches('quality: attach raw_tp,', text, 1, true)
    end)
  end)

  it('a raw tracepoint reads its arguments: sys_enter keyed by syscall id counts every getppid', function()
    if not h.need_root() then return end
    scene(function()
      local doc, printed = probe("'rawtracepoint:sys_enter' --by arg1 --top 1000", THREADS .. ' 300 500')
      local t = own(printed)
      local got
      for _, r in ipairs(doc.rows) do if r.key == SYS_getppid then got = r.count end end
      -- its own calls, plus at most the one getppid() our launcher makes in
      -- the child before exec (checking that its parent lives), counted when
      -- the child is in the cgroup by then
      local want = t.getppid.a + t.getppid.b
      assert.is_true(got == want or got == want + 1, string.format('counted %s, the program made %d', got, want))
      local f = probe(string.format("'rawtracepoint:sys_enter' --filter 'arg1 == %d'", SYS_getppid),
        THREADS .. ' 300 500')
      -- 800 again, the launcher's one call as above
      assert.is_true(f.total.count >= 800 and f.total.count <= 801, tostring(f.total.count))
    end)
  end)

  it('--cgroup counts only the processes of that cgroup', function()
    if not h.need_root() then return end
    h.with_cgroup('pm_probe_points', function(cg)
      scene(function(dir, start)
        local inside = threads(start, dir, 'in', 120, 80, { join = cg .. '/cgroup.procs' })
        local outside = threads(start, dir, 'out', 1000, 1000)
        local p, out = probe_bg(start, dir, string.format('%s --cgroup %s --duration 60 --by pid',
          q('uprobe:' .. THREADS .. ':pm_thread_hit'), cg))
        sys.kill(inside, 10)
        sys.kill(outside, 10)
        assert.is_true(reap(inside, 20))
        assert.is_true(reap(outside, 20))
        assert.same({ a = 1000, b = 1000 }, own(util.readfile(dir .. '/out')).hits)
        sys.kill(p, 2) -- Ctrl-C: the window ends with a result
        assert.is_true(reap(p, 20), 'probe did not end on SIGINT')
        local text = util.readfile(out)
        assert.equal(200, events(text), text)
        assert.matches('\n%s*' .. inside .. '%s+200%s', text)
        assert.is_nil(text:find('\n%s*' .. outside .. '%s'), text)
      end)
    end)
  end)

  it('--by kstack on a tracepoint and a raw tracepoint names the kernel path, as bpftrace does', function()
    if not h.need_root() or not h.have_bpftrace() then return end
    scene(function()
      -- 20 naps of 2 ms: each switches out from nanosleep
      local frames = {}
      for _, point in ipairs({ 'tracepoint:sched:sched_switch', 'rawtracepoint:sched_switch' }) do
        local doc, printed = probe(q(point) .. ' --by kstack --top 1000', CALLS .. ' 0 20 2000')
        assert.equal(20, tonumber(printed:match('naps (%d+)')))
        local top = doc.rows[1]
        local names = {}
        for i, f in ipairs(top.stack) do names[i] = f:gsub('_%[k%]$', '') end
        assert.is_true(top.count >= 20 and top.count <= 22, point .. ': ' .. top.count)
        -- root first: the syscall entry, the sleep, the switch
        local joined = table.concat(names, ';')
        assert.matches(';__x64_sys_clock_nanosleep;.*;do_nanosleep;schedule;__schedule$', joined)
        frames[point] = names
      end
      assert.same(frames['tracepoint:sched:sched_switch'], frames['rawtracepoint:sched_switch'])
      -- bpftrace's kstack of the same events: the same frames from the root (it shows the
      -- tracepoint's own __traceiter_ frame too)
      local out = run(string.format("bpftrace -e %s -c %s 2>/dev/null", q(
        'tracepoint:sched:sched_switch /pid == cpid/ { @[kstack] = count(); }'), q(CALLS .. ' 0 20 2000')))
      local best, bn
      for body, n in out:gmatch('@%[\n(.-)\n%]: (%d+)') do
        if not bn or tonumber(n) > bn then best, bn = body, tonumber(n) end
      end
      assert.is_not_nil(best, out)
      local bt = {}
      for line in best:gmatch('[^\n]+') do table.insert(bt, 1, line:match('^%s*([^+%s]+)')) end
      local ours = frames['tracepoint:sched:sched_switch']
      assert.is_true(bn >= 20 and bn <= 22, tostring(bn))
      assert.same(ours, { unpack(bt, 1, #ours) })
    end)
  end)
end)
