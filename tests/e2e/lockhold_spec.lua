-- The lock hold tracer on a real convoy (lock_convoy: 8 threads take the
-- global g_lock in critical_section() and work ~50-100 us inside it),
-- judged against an independent measurement: bpftrace uprobes on the same
-- C library calls summing the same per-lock hold times, nm for the lock's
-- symbol, and the workload's source for the holder.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')

local function shell(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read('*a')
  f:close()
  return out
end

describe('lockhold tracer: hold time of a convoy #priv', function()
  it('measures what bpftrace measures on g_lock and names critical_section as the holder', function()
    if not h.need_root() then return end
    if shell('command -v bpftrace') == '' then
      h.skip_unless_required('PM_REQUIRE_BPF', 'bpftrace is not installed')
      return
    end
    local lockhold = require('perf_manual.tracers.lockhold')
    local memory = require('perf_manual.profilers.memory')
    local bin = h.root .. '/build/workloads/lock_convoy'
    local dir = W.scratch()
    local gate, out = dir .. '/lockhold.gate', dir .. '/lockhold.bpftrace'
    os.remove(gate)
    h.with_machine_lock(function()
      W.with('lock_convoy', { '8', '1.5', gate, '5' }, {}, function(w)
        -- the uprobes go on the C library the process maps: after its exec
        local sys = require('perf_manual._c.sys')
        assert(W.wait_until(function() return (sys.readlink and sys.readlink('/proc/' .. w.pid .. '/exe')
          or shell('readlink /proc/' .. w.pid .. '/exe'):gsub('\n$', '')) == bin end, 10), 'workload did not start')
        local t = assert(lockhold.start { pid = w.pid })
        local libc = assert(memory.libc_path(util.readfile('/proc/' .. w.pid .. '/maps')))
        -- the same holds, independently: lock return (0) -> unlock, per
        -- (thread, lock); ends when the process does. bpftrace prints
        -- "Attaching" before it attaches; its BEGIN fires once all are in
        -- luacheck: push no max line length
        local prog = string.format([==[
BEGIN { printf("bpftrace ready\n"); }
uprobe:%s:pthread_mutex_lock /pid == %d/ { @a[tid] = arg0; }
uretprobe:%s:pthread_mutex_lock /pid == %d/ { if (retval == 0) { @t[tid, @a[tid]] = nsecs; } delete(@a[tid]); }
uprobe:%s:pthread_mutex_unlock /pid == %d && @t[tid, arg0]/ { @held[arg0] = sum(nsecs - @t[tid, arg0]); @holds[arg0] = count(); delete(@t[tid, arg0]); }
tracepoint:sched:sched_process_exit /tid == %d/ { exit(); }]==], libc, w.pid, libc, w.pid, libc, w.pid, w.pid)
        -- luacheck: pop
        local bt = tonumber(shell(string.format("bpftrace -e '%s' >%s 2>&1 & echo $!", prog, out)))
        local ok, err = pcall(function()
          assert(W.wait_until(function() return (util.readfile(out) or ''):find('bpftrace ready') end, 60),
            'bpftrace did not start: ' .. tostring(util.readfile(out)))
          t:read { clear = true }
          assert(io.open(gate, 'w')):close()
          -- the convoy runs 1.5 s; the workers are joined, the process lingers
          local function nthreads()
            local n = 0
            for _, e in ipairs(require('posix.dirent').dir('/proc/' .. w.pid .. '/task')) do
              if e:match('^%d+$') then n = n + 1 end
            end
            return n
          end
          assert(W.wait_until(function() return nthreads() > 1 end, 30), 'workers did not start')
          assert(W.wait_until(function() return nthreads() == 1 end, 30), 'workers did not finish')
          local res = t:stop()
          local top = assert(res.locks[1], 'no lock measured: ' .. util.json_encode(lockhold.to_json(res)))

          -- 1. the lock by name, and the address nm gives g_lock
          local maps = util.readfile('/proc/' .. w.pid .. '/maps')
          local base = tonumber(maps:match('(%x+)%-%x+ %S+ 00000000 %S+ %d+%s+' .. bin:gsub('%p', '%%%0')), 16)
          local nm = tonumber(shell('nm ' .. bin):match('(%x+) %a g_lock\n'), 16)
          assert.equal(nm, top.addr - base)
          assert.equal('g_lock (lock_convoy .bss)', top.name)
          assert.equal('mutex', top.kind)
          -- 2. the holder: critical_section takes g_lock (the source)
          assert.equal('critical_section', top.holder)
          assert.is_true(top.holder_share > 0.99)
          assert.equal('g_lock (lock_convoy .bss) held ' .. string.format('%.0f', 100 * math.min(1, top.share))
            .. '% of the time by `critical_section`', lockhold.sentence(top))

          -- 3. the same holds and hold time as bpftrace on the same address
          assert(w:wait(30), 'the workload did not exit')
          assert(W.wait_until(function() return (util.readfile(out) or ''):find('@holds') end, 30), 'no bpftrace maps')
          local text = util.readfile(out)
          local bt_sum = tonumber(text:match('@held%[' .. string.format('%d', top.addr) .. '%]: (%d+)'))
          local bt_count = tonumber(text:match('@holds%[' .. string.format('%d', top.addr) .. '%]: (%d+)'))
          assert(bt_sum and bt_count, 'bpftrace saw no hold of g_lock: ' .. text)
          io.stderr:write(string.format('lockhold: %d holds (bpftrace %d), held %.3f s (bpftrace %.3f s), '
            .. 'p50 %.0f us\n', top.count, bt_count, top.total_ns / 1e9, bt_sum / 1e9, top.p50_us))
          assert.equal(bt_count, top.count)
          assert.equal(top.count, top.sampled)
          local nslots = 0
          for _, c in ipairs(top.slots) do nslots = nslots + c end
          assert.equal(top.count, nslots)
          assert.is_true(math.abs(top.total_ns - bt_sum) <= 0.03 * bt_sum,
            string.format('held %.3f s, bpftrace %.3f s', top.total_ns / 1e9, bt_sum / 1e9))
          -- 4. what the workload is built to do: a convoy keeps its lock
          -- held most of the 1.5 s, ~50-100 us (plus probe cost) at a time
          local convoy_share = bt_sum / 1.5e9
          assert.is_true(convoy_share > 0.5 and convoy_share <= 1.02, 'bpftrace share ' .. convoy_share)
          assert.is_true(math.abs(top.share * res.seconds / 1.5 - convoy_share) <= 0.03)
          assert.is_true(top.p50_us >= 16 and top.p50_us <= 512, 'p50 ' .. top.p50_us)
          assert.is_true(top.max_ns >= top.mean_ns)
          -- 5. its cost is reported like every tracer's
          assert.is_true(res.quality.events_seen >= top.count)
        end)
        if bt then os.execute('kill ' .. bt .. ' 2>/dev/null') end
        os.remove(gate)
        os.remove(out)
        if not ok then error(err, 0) end
      end)
    end)
  end)

  it('holder stacks without frame pointers reach the thread root with --unwind auto, not with fp', function()
    if not h.need_root() then return end
    local lockhold = require('perf_manual.tracers.lockhold')
    local sys = require('perf_manual._c.sys')
    local dir = W.scratch()
    local gate = dir .. '/lockhold_nofp.gate'
    assert(io.open(gate, 'w')):close()
    h.with_machine_lock(function()
      -- nofp_convoy: lock_convoy built -O2 -fomit-frame-pointer; worker ->
      -- critical_section (inlined) -> pthread_mutex_lock on g_lock, in
      -- threads started by pthread_create (start_thread, clone3)
      W.with('nofp_convoy', { '4', '30', gate, '1' }, {}, function(w)
        assert(W.wait_until(function()
          local maps = util.readfile('/proc/' .. w.pid .. '/maps') or ''
          return maps:find('nofp_convoy') and maps:find('libc%.so') end, 10),
          'workload did not start')
        local got = {}
        for _, mode in ipairs { 'fp', 'auto' } do
          local t = assert(lockhold.start { pid = w.pid, unwind = mode, stats = false })
          sys.sleep(1)
          local res = t:stop()
          local top = assert(res.locks[1], 'no lock measured (' .. mode .. ')')
          assert.equal('g_lock (nofp_convoy .bss)', top.name)
          -- the return address is in worker either way: the holder is named
          assert.equal('worker', top.holder)
          local whole, lines = 0, {}
          for _, site in ipairs(top.sites) do
            local text = table.concat(site.frames or {}, ';')
            lines[#lines + 1] = string.format('%.3f %s', site.share or 0, text)
            if text:match('^worker;start_thread;[_]*clone3$') then whole = whole + (site.share or 0) end
          end
          got[mode] = { whole = whole, text = table.concat(lines, '\n'), unwind = res.quality.unwind }
        end
        local why = 'fp:\n' .. got.fp.text .. '\nauto:\n' .. got.auto.text
        assert.is_true(got.auto.whole >= 0.99, why)
        assert.equal(0, got.fp.whole, why)
        assert.equal('auto', got.auto.unwind.mode)
        assert.is_true(got.auto.unwind.ends.root >= 0.99 * got.auto.unwind.samples, why)
        assert.is_nil(got.fp.unwind)
      end)
    end)
    os.remove(gate)
  end)

  it('use-check --lock-hold: the Mutex row says g_lock is held most of the time by critical_section, for a pid '
    .. 'and a command', function()
    if not h.need_root('the lock tracers load BPF') then return end
    local U = require('e2e.use')
    local dir = W.scratch()
    local gate = dir .. '/lockhold_use.gate'
    os.remove(gate)
    h.with_machine_lock(function()
      W.with('lock_convoy', { '8', '30', gate, '1' }, {}, function(w)
        assert(io.open(gate, 'w')):close()
        local d = U.check(w.pid, 3, '--lock-hold')
        local row = assert(U.row(d, 'lock'), U.explain(d))
        -- the convoy keeps g_lock held more than half of the window
        local pct = tonumber(row.utilization.text:match('g_lock %(lock_convoy %.bss%) held (%d+)%% of the time by '
          .. '`critical_section`'))
        assert(pct, row.utilization.text)
        assert.is_true(pct > 50 and pct <= 100, row.utilization.text)
        local hold = assert(d.measures and d.measures.lock and d.measures.lock.hold, 'no hold in the measures')
        assert.equal('critical_section', hold.holder)
        assert.near(pct, hold.share_pct, 0.5)
        assert.matches('lockhold tracer', row.utilization.source)
      end)
      -- the same for a command use-check launches: its cgroup's processes are traced
      local out, err, st = h.pm(string.format('use-check --lock-hold --duration 3 --interval 1 --json -- %s 8 30 %s 1',
        h.root .. '/build/workloads/lock_convoy', gate))
      assert.equal(0, st, err)
      local d = assert(util.json_decode(out), out)
      local row = assert(U.row(d, 'lock'), U.explain(d))
      local pct = tonumber(row.utilization.text:match('g_lock %(lock_convoy %.bss%) held (%d+)%% of the time by '
        .. '`critical_section`'))
      assert(pct, row.utilization.text)
      assert.is_true(pct > 50 and pct <= 100, row.utilization.text)
    end)
    os.remove(gate)
  end)

  it('trace --events lockhold -- COMMAND: every hold of the launched convoy from its first one, as bpftrace counts '
    .. 'them, named after the command has exited', function()
    if not h.need_root() then return end
    if not h.have_bpftrace() then return end
    local memory = require('perf_manual.profilers.memory')
    local bin = h.root .. '/build/workloads/lock_convoy'
    local dir = W.scratch()
    local gate, out = dir .. '/lockhold_cmd.gate', dir .. '/lockhold_cmd.bpftrace'
    assert(io.open(gate, 'w')):close()
    -- the C library every process here maps: the command's too
    local libc = assert(memory.libc_path(util.readfile('/proc/self/maps')))
    -- luacheck: push no max line length
    local prog = string.format([==[
BEGIN { printf("bpftrace ready\n"); }
uprobe:%s:pthread_mutex_lock /comm == "lock_convoy"/ { @a[tid] = arg0; }
uretprobe:%s:pthread_mutex_lock /comm == "lock_convoy"/ { if (retval == 0) { @t[tid, @a[tid]] = nsecs; } delete(@a[tid]); }
uprobe:%s:pthread_mutex_unlock /comm == "lock_convoy" && @t[tid, arg0]/ { @held[arg0] = sum(nsecs - @t[tid, arg0]); @holds[arg0] = count(); delete(@t[tid, arg0]); }]==],
      libc, libc, libc)
    -- luacheck: pop
    h.with_machine_lock(function()
      local bt = tonumber(shell(string.format("bpftrace -e '%s' >%s 2>&1 & echo $!", prog, out)))
      local ok, err = pcall(function()
        assert(W.wait_until(function() return (util.readfile(out) or ''):find('bpftrace ready') end, 60),
          'bpftrace did not start: ' .. tostring(util.readfile(out)))
        -- 4 threads for 1.5 s, then it exits at once (linger 0): names must be taken while it runs
        local text, e, st = h.pm(string.format('trace --events lockhold --json -- %s 4 1.5 %s 0', bin, gate))
        assert.equal(0, st, text .. e)
        os.execute('kill -INT ' .. bt)
        assert(W.wait_until(function() return (util.readfile(out) or ''):find('@holds') end, 30),
          'no bpftrace maps: ' .. tostring(util.readfile(out)))
        local doc = assert(util.json_decode(text), text)
        assert.equal('target exited', doc.ended_by)
        local res = doc.intervals[1].results.lockhold
        assert.is_table(res, text)
        local top = assert((res.locks or {})[1], 'no lock measured: ' .. text)
        local addr = string.format('%d', assert(tonumber(top.addr:match('^0x(%x+)$'), 16)))
        local bt_text = util.readfile(out)
        local bt_sum = tonumber(bt_text:match('@held%[' .. addr .. '%]: (%d+)'))
        local bt_count = tonumber(bt_text:match('@holds%[' .. addr .. '%]: (%d+)'))
        assert(bt_sum and bt_count, 'bpftrace saw no hold at ' .. top.addr .. ': ' .. bt_text)
        io.stderr:write(string.format('\nlockhold -- COMMAND: %d holds (bpftrace %d), held %.3f s (bpftrace %.3f s)\n',
          top.count, bt_count, top.total_ns / 1e9, bt_sum / 1e9))
        -- the uprobes were on before the command's first instruction: not one hold missed
        assert.equal(bt_count, top.count)
        assert.is_true(math.abs(top.total_ns - bt_sum) <= 0.03 * bt_sum,
          string.format('held %.3f s, bpftrace %.3f s', top.total_ns / 1e9, bt_sum / 1e9))
        assert.equal('g_lock (lock_convoy .bss)', top.name)
        assert.equal('critical_section', top.holder)
      end)
      if bt then os.execute('kill ' .. bt .. ' 2>/dev/null') end
      os.remove(out)
      if not ok then error(err, 0) end
    end)
    os.remove(gate)
  end)

  it('refuses the whole host as target with status 2, naming what to give instead', function()
    if not h.need_root() then return end
    local _, err, st = h.pm('trace --events sched,lockhold --duration 1')
    assert.equal(2, st)
    assert.matches('lockhold needs a target %(%-%-pid, %-%-cgroup, %-%-target or %-%- COMMAND%)', err)
    local _, uerr, ust = h.pm('use-check --lock-hold --duration 1')
    assert.equal(2, ust)
    assert.matches('^perf_manual: use%-check: %-%-lock%-hold needs a target', uerr)
  end)
end)
