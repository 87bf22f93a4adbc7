-- The lock tracer's culprit on a real convoy (lock_convoy: 8 threads on the
-- global g_lock, taken and released in critical_section()), judged against
-- independent measurements: nm for the lock's symbol, a bpftrace count of
-- the futex waits and wakes on the same address, /proc for the threads, the
-- workload's source for the call site.
local h = test_helpers
local sys = require('perf_manual._c.sys')
local W = require('e2e.workload')
local util = require('perf_manual.util')

local function shell(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read('*a')
  f:close()
  return out
end

-- the address nm gives a symbol of the binary
local function nm_addr(bin, name)
  local v = shell('nm ' .. bin):match('(%x+) %a ' .. name .. '\n')
  return v and tonumber(v, 16)
end

local function tids(pid)
  local out = {}
  for _, n in ipairs(require('posix.dirent').dir('/proc/' .. pid .. '/task')) do
    if n:match('^%d+$') then out[tonumber(n)] = true end
  end
  return out
end

describe('lock tracer: the culprit of a convoy #priv', function()
  it('names g_lock, its waiters, its holders and critical_section, and counts what bpftrace counts', function()
    if not h.need_root() then return end
    local lock = require('perf_manual.tracers.lock')
    local bin = h.root .. '/build/workloads/lock_convoy'
    local dir = W.scratch()
    local gate, out = dir .. '/lock_convoy.gate', dir .. '/lock_convoy.bpftrace'
    os.remove(gate)
    h.with_machine_lock(function()
      W.with('lock_convoy', { '8', '1.5', gate, '5' }, {}, function(w)
        local t = assert(lock.start { pid = w.pid, stacks = true, kernel = false })
        -- independent count: FUTEX_WAIT and FUTEX_WAKE (private flag masked)
        -- per address, wakes per thread; ends when the process does
        -- luacheck: push no max line length
        local prog = string.format([[
BEGIN { printf("bpftrace ready\n"); }
tracepoint:syscalls:sys_enter_futex /pid == %d && (args->op & 127) == 0/ { @waits[args->uaddr] = count(); }
tracepoint:syscalls:sys_enter_futex /pid == %d && (args->op & 127) == 1/ { @wakes[args->uaddr] = count(); @wakers[tid] = count(); }
tracepoint:sched:sched_process_exit /tid == %d/ { exit(); }]], w.pid, w.pid, w.pid)
        -- luacheck: pop
        local bt = tonumber(shell(string.format("bpftrace -e '%s' >%s 2>&1 & echo $!", prog, out)))
        local ok, err = pcall(function()
          assert(W.wait_until(function() return (util.readfile(out) or ''):find('bpftrace ready') end, 60),
            'bpftrace did not start: ' .. tostring(util.readfile(out)))
          t:read { clear = true }   -- the window starts with the convoy
          assert(io.open(gate, 'w')):close()
          -- the workers run; their tids, then wait until they are joined
          sys.sleep(0.5)
          local workers = tids(w.pid)
          assert(W.wait_until(function()
            local n = 0
            for _ in pairs(tids(w.pid)) do n = n + 1 end
            return n == 1
          end, 30), 'workers did not finish')
          local res = t:stop()   -- the process lingers: names are read now
          local top = res.futex[1]
          assert.equal('lock', top.kind)

          -- 1. the lock by name, as nm says for its address
          local maps = shell('cat /proc/' .. w.pid .. '/maps')
          local base = tonumber(maps:match('(%x+)%-%x+ %S+ 00000000 %S+ %d+%s+' .. bin:gsub('%p', '%%%0')), 16)
          assert.equal(nm_addr(bin, 'g_lock'), top.uaddr - base)
          assert.equal('g_lock', top.symbol)
          assert.equal('.bss', top.section)
          assert.equal('g_lock (lock_convoy .bss)', top.name)

          -- 2. the wake side: workload threads, from critical_section (the
          -- source: it calls pthread_mutex_unlock)
          assert.is_true(#top.wakers >= 7, 'wakers ' .. #top.wakers)
          for _, wk in ipairs(top.wakers) do
            assert.is_true(workers[wk.pid], 'waker ' .. wk.pid .. ' is a thread of the workload')
            assert.is_true(wk.pid ~= w.pid, 'the main thread never takes the lock')
          end
          assert.equal('critical_section', top.holder_site)
          assert.equal('critical_section', top.waiter_site)

          -- 3. the wait histogram, against bpftrace's count on the same address
          assert(w:wait(30), 'the workload did not exit')
          assert(W.wait_until(function() return (util.readfile(out) or ''):find('@wakers') end, 30), 'no bpftrace maps')
          local text = util.readfile(out)
          local function at(map, key)
            return tonumber(text:match('@' .. map .. '%[' .. key .. '%]: (%d+)'))
          end
          local hex = string.format('0x%x', top.uaddr)
          local nslots = 0
          for _, c in ipairs(top.slots) do nslots = nslots + c end
          assert.equal(at('waits', hex), top.count)
          assert.equal(top.count, nslots)
          assert.equal(at('wakes', hex), top.wakes)
          for _, wk in ipairs(top.wakers) do assert.is_true(at('wakers', wk.pid) >= wk.count) end
          assert.is_true(top.p99_us >= top.p50_us and top.p50_us > 0)

          -- 4. the root cause sentence and 5. the drill-down lines
          local rc = require('perf_manual.analyzers.root_cause')
          local ev = rc.facts { traces = { lock = util.json_decode(util.json_encode(lock.to_json(res))) } }
          local e = require('perf_manual.catalogue').get('lock-convoy')
          local c = e.culprit(ev)
          assert.equal('g_lock (lock_convoy .bss)', c.lock)
          assert.equal('critical_section', c.holder)
          local cause = rc.fill_first(e.says, c)
          -- (without thread-state accounting: no per-thread share of the wait)
          assert.matches('threads queue on g_lock %(lock_convoy %.bss%), [%d.]+ waiters on average, '
            .. 'held from critical_section$', cause)
          local lines = require('perf_manual.report.drill').lock(res)
          assert.matches('^hottest lock: g_lock %(lock_convoy %.bss%) at 0x%x+, %d+ waits, [%d.]+ s waited, '
            .. 'wait p50 [%d.]+ ms, p99 [%d.]+ ms$', lines[1])
          assert.equal('waiters call it from: critical_section', lines[2])
          assert.matches('^holders: %d threads release it %(%d+ wakes%), from critical_section$', lines[3])
        end)
        if bt then os.execute('kill ' .. bt .. ' 2>/dev/null') end
        os.remove(gate)
        os.remove(out)
        if not ok then error(err, 0) end
      end)
    end)
  end)
end)
