-- tsa end to end on workloads whose time goes to known states, judged by
-- the kernel's own accounting (/proc/PID/task/TID/schedstat: on-CPU and
-- run-queue nanoseconds) and by the sleeps the workloads are built with.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

local STATES = require('perf_manual.waits').STATES
local DURATION = 3

local function schedstat(pid)
  local out = {}
  local dirent = require('posix.dirent')
  for _, n in ipairs(dirent.dir('/proc/' .. pid .. '/task') or {}) do
    local tid = tonumber(n)
    local s = tid and util.readfile('/proc/' .. pid .. '/task/' .. n .. '/schedstat')
    if s then
      local run, wait = s:match('^(%d+)%s+(%d+)')
      out[tid] = { run = tonumber(run), wait = tonumber(wait) }
    end
  end
  return out
end

-- runs `tsa --json` on pid; returns the document and the schedstat shares
-- (percent of the wall time around the run) per tid
local function tsa(pid, extra)
  local s0, t0 = schedstat(pid), sys.now()
  local out, err, st = h.pm(string.format('tsa --target %d --duration %d --json %s', pid, DURATION, extra or ''))
  local s1, t1 = schedstat(pid), sys.now()
  assert.equal(0, st, 'tsa failed: ' .. err)
  local doc = assert(util.json_decode(out), 'tsa printed no JSON:\n' .. out)
  local truth = {}
  for tid, a in pairs(s0) do
    local b = s1[tid]
    if b then
      truth[tid] = { cpu = (b.run - a.run) / 1e9 / (t1 - t0) * 100, runq = (b.wait - a.wait) / 1e9 / (t1 - t0) * 100,
        cpu_s = (b.run - a.run) / 1e9, runq_s = (b.wait - a.wait) / 1e9, outer_s = t1 - t0 }
    end
  end
  return doc, truth
end

local function explain(doc, truth)
  local lines = {}
  for _, th in ipairs(doc.threads) do
    local parts = {}
    for _, k in ipairs(STATES) do
      if th.shares[k] >= 0.5 then parts[#parts + 1] = string.format('%s %.1f', k, th.shares[k]) end
    end
    local t = truth and truth[th.tid]
    lines[#lines + 1] = string.format('  tid %d %s: %s%s', th.tid, th.comm, table.concat(parts, ', '),
      t and string.format(' | schedstat cpu %.1f runq %.1f', t.cpu, t.runq) or '')
  end
  return table.concat(lines, '\n')
end

-- every thread's states sum to 100 +- 2, and on-CPU and run-queue shares
-- agree with schedstat within 5 points
local function check_threads(doc, truth)
  assert.is_true(#doc.threads > 0, 'no thread accounted')
  for _, th in ipairs(doc.threads) do
    local sum = 0
    for _, k in ipairs(STATES) do sum = sum + th.shares[k] end
    assert.is_true(math.abs(sum - 100) <= 2, string.format('tid %d: states sum to %.2f%%', th.tid, sum))
    local t = truth[th.tid]
    -- a thread that lived through the whole window
    -- (schedstat is read around the whole command, whose window lies
    -- inside: in the seconds outside it a thread adds at most that much)
    if t and th.life_s > DURATION * 0.95 then
      local extra, slack = t.outer_s - doc.window_s, 0.05 * doc.window_s
      for _, k in ipairs({ 'cpu', 'runq' }) do
        local got, outer = th.states[k], t[k .. '_s']
        assert.is_true(got <= outer + slack and got >= outer - extra - slack, string.format(
          '%s: tsa %.3f s, schedstat %.3f s over %.2f s around a %.2f s window\n', k, got, outer, t.outer_s,
          doc.window_s) .. explain(doc, truth))
      end
    end
  end
end

local function mean(doc, key)
  local s = 0
  for _, th in ipairs(doc.threads) do s = s + th.shares[key] end
  return s / #doc.threads
end

describe('tsa end to end #priv', function()
  teardown(function() W.cleanup_scratch() end)

  it('a spinning thread is on CPU', function()
    if not h.need_root('BPF thread-state accounting') then return end
    h.with_machine_lock(function()
      W.with('tsa_states', { 'spin' }, {}, function(w)
        sys.sleep(0.2)
        local doc, truth = tsa(w.pid)
        check_threads(doc, truth)
        assert.equal(1, #doc.threads, explain(doc, truth))
        -- it never blocks: on CPU, or waiting for one when the machine is busy
        -- (schedstat above judges the split)
        local th = doc.threads[1]
        assert.is_true(th.shares.cpu + th.shares.runq > 98, explain(doc, truth))
        assert.equal(0, doc.quality.events_lost)
      end)
    end)
  end)

  it('a reader of a pipe fed by a slow peer: 75% pipe, 25% sleep, named', function()
    if not h.need_root('BPF thread-state accounting') then return end
    h.with_machine_lock(function()
      W.with('tsa_states', { 'pipe' }, {}, function(w)
        sys.sleep(0.3)
        local doc, truth = tsa(w.pid)
        check_threads(doc, truth)
        local th = doc.threads[1]
        assert.is_true(math.abs(th.shares.ipc - 75) <= 5, explain(doc, truth))
        assert.is_true(math.abs(th.shares.sleep - 25) <= 5, explain(doc, truth))
        local top = doc.waits[1]
        assert.equal('ipc', top.reason)
        assert.equal('read', top.syscall)
        assert.equal('pipe', top.fd_kind)
        assert.matches('^pipe:%[%d+%]$', top.fd_link)
        assert.equal('sleep', doc.waits[2].reason)
        assert.equal('clock_nanosleep', doc.waits[2].syscall)
        -- the text names the wait and its share
        local text = assert(h.pm(string.format('tsa --target %d --duration 1', w.pid)))
        assert.matches('waits on [^\n]*pipe[^\n]*: 7%d%% of wall time', text)
      end)
    end)
  end)

  it('a mutex convoy waits on a futex lock', function()
    if not h.need_root('BPF thread-state accounting') then return end
    h.with_machine_lock(function()
      W.with('tsa_states', { 'convoy', 4 }, {}, function(w)
        sys.sleep(0.3)
        local doc, truth = tsa(w.pid)
        check_threads(doc, truth)
        -- the four workers (the main thread only waits in pause)
        -- a worker's blocked time is the lock (its CPU and runnable shares
        -- depend on how busy the machine is; schedstat judges those)
        -- (glibc's mutex is not fair: one worker may re-take it for most of
        -- the window, so the convoy is judged on the workers together: with
        -- one lock among four, most of their time goes to waiting for it)
        local lock_s, life_s = 0, 0
        for _, th in ipairs(doc.threads) do
          if th.tid ~= w.pid then
            lock_s, life_s = lock_s + th.states.lock, life_s + th.life_s
            for _, k in ipairs(require('perf_manual.waits').BLOCKED) do
              if k ~= 'lock' then assert.is_true(th.shares[k] < 2, k .. '\n' .. explain(doc, truth)) end
            end
          end
        end
        assert.is_true(lock_s / life_s > 0.5, explain(doc, truth))
        -- the main thread sleeps in pause(); a worker's top wait is the mutex
        local top
        for _, e in ipairs(doc.waits) do if e.tid ~= w.pid then top = e break end end
        assert.equal('lock', top.reason, explain(doc, truth))
        assert.equal('futex', top.syscall)
        assert.is_number(top.addr)
        assert.equal('wait', top.futex_op)
      end)
    end)
  end)

  it('an fsync writer waits on block I/O', function()
    if not h.need_root('BPF thread-state accounting') then return end
    h.with_machine_lock(function()
      W.with('tsa_states', { 'fsync', W.scratch() }, {}, function(w)
        sys.sleep(0.3)
        local doc, truth = tsa(w.pid)
        check_threads(doc, truth)
        assert.is_true(doc.threads[1].shares.io > 50, explain(doc, truth))
        assert.equal('io', doc.waits[1].reason)
      end)
    end)
  end)

  it('three spinners on two CPUs wait for a CPU', function()
    if not h.need_root('BPF thread-state accounting') then return end
    if sys.info().ncpu ~= 2 then
      return h.skip_unless_required('PM_REQUIRE_TSA_2CPU', 'the runnable share is computed for 2 CPUs')
    end
    h.with_machine_lock(function()
      W.with('tsa_states', { 'spinners', 3 }, {}, function(w)
        sys.sleep(0.3)
        local doc, truth = tsa(w.pid)
        check_threads(doc, truth)
        assert.equal(3, #doc.threads)
        -- a third of the time on an idle machine, more when others run
        -- beside the test (schedstat above is the judge of the exact figure)
        assert.is_true(mean(doc, 'runq') > 25, explain(doc, truth))
        assert.is_true(mean(doc, 'cpu') + mean(doc, 'runq') > 98, explain(doc, truth))
      end)
    end)
  end)

  -- on-CPU and runnable time come from the kernel's counters (the same ones
  -- schedstat shows): this checks the bookkeeping (edges, exits, the split
  -- of each interval); the workloads' built-in shares above are the check
  -- that does not lean on the kernel's counters
  it('the books agree with schedstat read at the window\'s edges (spinners, a convoy)', function()
    if not h.need_root('BPF thread-state accounting') then return end
    local tracer = require('perf_manual.tracers.tsa')
    for _, args in ipairs({ { 'spinners', 3 }, { 'convoy', 4 } }) do
      h.with_machine_lock(function()
        W.with('tsa_states', args, {}, function(w)
          sys.sleep(0.3)
          local t = assert(tracer.start { pid = w.pid })
          local s0 = schedstat(w.pid)
          sys.sleep(2)
          t:detach('window ended')
          local s1 = schedstat(w.pid)
          local tids = {}
          for tid in pairs(s1) do tids[#tids + 1] = tid end
          local raw = t:read(tids)
          t:stop(tids)
          local win = (raw.t1_ns - raw.t0_ns) / 1e9
          local n = 0
          -- the edges' counters as measure.tsa passes them (a thread's first
          -- switch-out can come late: a convoy worker may keep the mutex and
          -- its CPU for 0.4 s)
          local function edge(ss)
            local e = {}
            for tid, v in pairs(ss) do e[tid] = { run_ns = v.run, wait_ns = v.wait } end
            return e
          end
          -- schedstat counts a run-queue wait when it ends: a wait in progress
          -- at T1 is not in it yet (tsa counts it), and one in progress at T0
          -- is all in it (tsa counts the part after T0); on a busy machine
          -- such a wait is 100 ms
          local raw_by = {}
          for _, th in ipairs(raw.threads) do raw_by[th.tid] = th end
          for _, a in ipairs(tracer.account(raw, raw.t0_ns, raw.t1_ns, edge(s0), edge(s1))) do
            local x, y, th = s0[a.tid], s1[a.tid], raw_by[a.tid]
            if x and y then
              n = n + 1
              for _, k in ipairs({ { 'cpu_ns', 'run' }, { 'runq_ns', 'wait' } }) do
                local got, want = a[k[1]] / 1e9, (y[k[2]] - x[k[2]]) / 1e9
                local over, under = 0.05 * win, 0.05 * win
                if k[1] == 'runq_ns' and th then
                  if th.cur == 'runq' then over = over + (raw.t1_ns - th.ts) / 1e9 end
                  under = under + math.max(0, th.first_rdelay - x.wait) / 1e9
                end
                assert.is_true(got - want <= over and want - got <= under, string.format('%s %s tid %d: tsa %.4f s, '
                  .. 'schedstat %.4f s over %.3f s', args[1], k[1], a.tid, got, want, win))
              end
            end
          end
          assert.is_true(n >= 3, 'threads compared: ' .. n)
        end)
      end)
    end
  end)

  it('--top sums the other threads in one line, and a bad target is a user error', function()
    if not h.need_root('BPF thread-state accounting') then return end
    h.with_machine_lock(function()
      W.with('tsa_states', { 'convoy', 4 }, {}, function(w)
        sys.sleep(0.2)
        local text, _, st = h.pm(string.format('tsa --target %d --duration 1 --top 2', w.pid))
        assert.equal(0, st)
        assert.matches('\n  %+%s+%(3 more%)', text)
        assert.matches('legend: C cpu', text)
      end)
    end)
    local _, err, st = h.pm('tsa --target 999999999 --duration 1')
    assert.equal(2, st)
    assert.matches('999999999', err)
  end)

  -- pipe_waiter is built 75% read() on a slow pipe, 25% nanosleep: the
  -- shares it is built with are the independent measure
  local function waiter_shares(doc)
    local w
    for _, th in ipairs(doc.threads) do
      if th.comm == 'pipe_waiter' and th.shares.ipc > 20 then w = th end
    end
    assert.is_not_nil(w, 'no waiting thread:\n' .. explain(doc))
    assert.is_true(math.abs(w.shares.ipc - 75) <= 5, explain(doc))
    assert.is_true(math.abs(w.shares.sleep - 25) <= 5, explain(doc))
    for _, th in ipairs(doc.threads) do
      local sum = 0
      for _, k in ipairs(STATES) do sum = sum + th.shares[k] end
      assert.is_true(math.abs(sum - 100) <= 2, string.format('tid %d: states sum to %.2f%%', th.tid, sum))
    end
    return w
  end

  it('a command launched after -- is accounted over its life', function()
    if not h.need_root('BPF thread-state accounting') then return end
    h.with_machine_lock(function()
      local out, err, st = h.pm(string.format("tsa --json -- '%s' 3", h.workload('pipe_waiter')))
      assert.equal(0, st, 'tsa failed: ' .. err)
      local doc = assert(util.json_decode(out), out)
      -- the window is the command's life (3 s as built)
      assert.is_true(doc.window_s > 2.7 and doc.window_s < 3.5, 'window ' .. doc.window_s)
      local w = waiter_shares(doc)
      assert.is_true(w.life_s > 2.7, explain(doc))
      -- the forked feeder sleeps between writes
      local feeder
      for _, th in ipairs(doc.threads) do if th.pid ~= w.pid then feeder = th end end
      assert.is_not_nil(feeder, explain(doc))
      assert.is_true(feeder.shares.sleep > 90, explain(doc))
    end)
  end)

  it('a cgroup v2 target accounts the tasks inside it, and on-CPU agrees with schedstat', function()
    if not h.need_root('BPF thread-state accounting') then return end
    local root = require('perf_manual.tracers.base').cgroup2_root()
    if not root then return pending('no cgroup v2 hierarchy mounted') end
    h.with_machine_lock(function()
      -- the BPF filter is a v2 id: a plain v2 directory, no controller needed
      local dir = string.format('%s/perf_manual_e2e_tsa_%d', root, sys.getpid())
      assert(require('posix.sys.stat').mkdir(dir, 493), 'cannot create cgroup ' .. dir)
      local cg = { dir = dir, procs = dir .. '/cgroup.procs' }
      local ok, e = xpcall(function()
        W.with('pipe_waiter', { 30 }, { join = cg }, function(w)
          sys.sleep(0.3)
          local s0, t0 = schedstat(w.pid), sys.now()
          local out, err, st = h.pm(string.format("tsa --target 'cgroup:%s' --duration %d --json", cg.dir, DURATION))
          local s1, t1 = schedstat(w.pid), sys.now()
          assert.equal(0, st, 'tsa failed: ' .. err)
          local doc = assert(util.json_decode(out), out)
          local th = waiter_shares(doc)
          assert.equal(w.pid, th.pid)
          -- only the cgroup's tasks: the waiter and its feeder
          for _, x in ipairs(doc.threads) do
            assert.equal('pipe_waiter', x.comm, explain(doc))
          end
          -- on-CPU seconds inside what schedstat saw around the command
          local a, b = s0[w.pid], s1[w.pid]
          local outer = (b.run - a.run) / 1e9
          local slack = 0.05 * doc.window_s
          assert.is_true(th.states.cpu <= outer + slack and th.states.cpu >= outer - (t1 - t0 - doc.window_s) - slack,
            string.format('cpu: tsa %.4f s, schedstat %.4f s', th.states.cpu, outer))
        end)
      end, debug.traceback)
      -- the workload is gone when W.with returns; rmdir may race its exit
      local rmdir = require('posix.unistd').rmdir
      for _ = 1, 50 do if rmdir(dir) then break end sys.sleep(0.1) end
      assert.is_nil(require('posix.sys.stat').stat(dir), 'cannot remove cgroup ' .. dir)
      assert(ok, e)
    end)
  end)

  -- A second witness for the blocked states: bpftrace summing, per thread,
  -- the time from a sleeping switch-out to the next switch-in, by the
  -- syscall the thread was in, over its own window around tsa's (the
  -- workloads are steady, so shares compare). Its window ends at the last
  -- switch-in it could attribute: on SIGINT it detaches sys_enter first, and
  -- the syscalls entered after that have no number
  it('blocked shares agree with the off-CPU time bpftrace sees in the syscalls they block in #bpftrace', function()
    if not h.need_root('BPF thread-state accounting') then return end
    if not h.have_bpftrace() then return end
    -- syscall numbers (x86-64) of each state's syscalls
    local cases = {
      { args = { 'pipe' }, states = { ipc = { 0 }, sleep = { 230, 35 } } },
      { args = { 'convoy', 4 }, states = { lock = { 202 } }, workers = true },
      { args = { 'fsync', W.scratch() }, states = { io = { 74, 75 } } },
    }
    local report, details = {}, {}
    h.with_machine_lock(function()
      for _, c in ipairs(cases) do
        W.with('tsa_states', c.args, {}, function(w)
          sys.sleep(0.3)
          local out = W.scratch() .. '/tsa.bpftrace'
          -- luacheck: push no max line length
          local prog = string.format([==[
BEGIN { @t0 = nsecs; printf("bpftrace ready\n"); }
tracepoint:raw_syscalls:sys_enter /pid == %d/ { @nr[tid] = args->id + 1; }
tracepoint:raw_syscalls:sys_exit /pid == %d/ { delete(@nr[tid]); }
tracepoint:sched:sched_switch /pid == %d && args->prev_state != 0/ { @off[args->prev_pid] = nsecs; @in[args->prev_pid] = @nr[args->prev_pid]; }
tracepoint:sched:sched_switch /@off[args->next_pid]/ { @ns[args->next_pid, @in[args->next_pid]] = sum(nsecs - @off[args->next_pid]); if (@in[args->next_pid]) { @tl = nsecs; } delete(@off[args->next_pid]); delete(@in[args->next_pid]); }
END { printf("window %%d us\n", (@tl - @t0) / 1000); clear(@off); clear(@in); clear(@nr); clear(@t0); clear(@tl); }]==], w.pid, w.pid, w.pid)
          -- luacheck: pop
          local bt = tonumber((h.sh(string.format("bpftrace -e '%s' >%s 2>&1 & echo $!", prog, out))))
          local ok, err = pcall(function()
            assert(W.wait_until(function() return (util.readfile(out) or ''):find('bpftrace ready') end, 60),
              'bpftrace did not start: ' .. tostring(util.readfile(out)))
            local doc = tsa(w.pid)
            os.execute('kill -INT ' .. bt)
            -- its maps are printed after END: wait for it to be gone
            assert(W.wait_until(function() return not sys.kill(bt, 0) end, 30),
              'bpftrace did not end: ' .. tostring(util.readfile(out)))
            bt = nil
            local text = util.readfile(out)
            local window = tonumber(text:match('window (%d+) us')) / 1e6
            local ns = {}
            for tid, nr, v in text:gmatch('@ns%[(%d+), (%d+)%]: (%d+)') do
              tid, nr = tonumber(tid), tonumber(nr)
              ns[tid] = ns[tid] or {}
              -- the key is the syscall number + 1; 0: outside any syscall
              ns[tid][nr - 1] = (ns[tid][nr - 1] or 0) + tonumber(v)
            end
            -- a convoy's workers are judged together: glibc's mutex is not fair,
            -- so which worker runs moves between tsa's window and bpftrace's
            local groups = {}
            for _, th in ipairs(doc.threads) do
              if not c.workers then groups[#groups + 1] = { label = 'tid ' .. th.tid, threads = { th } }
              elseif th.tid ~= w.pid then
                groups[1] = groups[1] or { label = 'workers', threads = {} }
                table.insert(groups[1].threads, th)
              end
            end
            for _, g in ipairs(groups) do
              for state, nrs in pairs(c.states) do
                local got, life, inside = 0, 0, 0
                for _, th in ipairs(g.threads) do
                  got, life = got + th.states[state], life + th.life_s
                  for _, nr in ipairs(nrs) do inside = inside + ((ns[th.tid] or {})[nr] or 0) end
                end
                local mine, witness = got / life * 100, inside / 1e9 / (window * #g.threads) * 100
                local line = string.format('%-6s %-8s %-5s tsa %5.1f%%  bpftrace %5.1f%%', c.args[1], g.label, state,
                  mine, witness)
                report[#report + 1] = line .. (math.abs(mine - witness) <= 5 and '' or '  <- differs by more than 5')
                details[#details + 1] = explain(doc)
              end
            end
          end)
          if bt then os.execute('kill ' .. bt .. ' 2>/dev/null') end
          os.remove(out)
          if not ok then error(err, 0) end
        end)
      end
    end)
    local text = table.concat(report, '\n')
    io.stderr:write('\n[tsa vs bpftrace]\n' .. text .. '\n')
    assert.is_true(#report >= 4, text)
    assert.is_nil(text:find('differs by more', 1, true), text .. '\n' .. table.concat(details, '\n'))
  end)
end)
