-- The catalogue's thin runbooks (runqlat, biosnoop, lock-contention,
-- request-trace, syscall-dashboard) on workloads of their kind, each checked
-- against a measurement that does not come from our BPF programs.
local h = test_helpers
local sys = require('perf_manual._c.sys')
local W = require('e2e.workload')
local util = require('perf_manual.util')

-- the time the threads of pid spent runnable but waiting for a CPU
-- (schedstat's run_delay, ns), summed over its threads
local function run_delay_ns(pid)
  local sum = 0
  for _, tid in ipairs(util.split(h.sh('ls /proc/' .. pid .. '/task'), '\n')) do
    if tid ~= '' then
      local s = util.readfile('/proc/' .. pid .. '/task/' .. tid .. '/schedstat')
      if s then sum = sum + tonumber(s:match('^%d+ (%d+)')) end
    end
  end
  return sum
end

describe('catalogue runbooks e2e #priv', function()
  it('runqlat: the wait it measures for cpu_burn agrees with schedstat run_delay', function()
    if not h.need_root() then return end
    h.with_machine_lock(function()
      local n = sys.info().ncpu * 3
      W.with('cpu_burn', { tostring(n), '8' }, {}, function(w)
        W.wait_until(function() return #util.split(h.sh('ls /proc/' .. w.pid .. '/task'), '\n') > n end, 5)
        local t0, before = sys.now(), run_delay_ns(w.pid)
        local out, err, st = h.pm('runqlat --pid ' .. w.pid .. ' --per process --duration 2 --json')
        local t1, after = sys.now(), run_delay_ns(w.pid)
        assert.equal(0, st, err)
        local r = assert(util.json_decode(out))
        assert.equal('process', r.per)
        assert.equal(w.pid, r.groups[1].pid)
        assert.equal('cpu_burn', r.groups[1].comm)
        -- the tracer's total wait (usecs) against schedstat's over a slightly
        -- longer window (the command's start and attach around it)
        -- waiting per second: the tracer's over its window, schedstat's over
        -- the command's whole run (start and BPF load included; the burn is
        -- steady, so the rates compare)
        local traced = r.groups[1].total / 1e6 / r.quality.elapsed_s
        local proc = (after - before) / 1e9 / (t1 - t0)
        assert.is_true(traced > 0.8 * proc and traced < 1.2 * proc,
          string.format('runqlat %.2f s waiting per second, schedstat %.2f', traced, proc))
        assert.is_true(r.saturated)
        assert.matches('^CPU saturation', r.verdict)
      end)
    end)
  end)

  it('biosnoop: every direct write of dd to a loop device, as /proc/diskstats counts them', function()
    if not h.need_root() then return end
    local img = os.tmpname()
    h.sh('truncate -s 32M ' .. img)
    local dev = h.sh('losetup -f --show ' .. img):match('(/dev/loop%d+)')
    local ok, err = pcall(function()
      assert(dev, 'losetup gave no device')
      local name = dev:match('loop%d+')
      local function writes()
        return tonumber(util.readfile('/proc/diskstats'):match('%s' .. name .. ' %d+ %d+ %d+ %d+ (%d+)'))
      end
      local before = writes()
      local out, perr, st = h.pm(string.format('biosnoop --device %s --json -- dd if=/dev/zero of=%s bs=4k count=300 '
        .. 'oflag=direct', name, dev))
      assert.equal(0, st, perr)
      local r = assert(util.json_decode(out))
      assert.equal(300, writes() - before)
      assert.equal(300, #r.requests)
      for i, e in ipairs(r.requests) do
        assert.same({ name, 'dd', 4096, (i - 1) * 8 }, { e.device, e.comm, e.bytes, e.sector })
        assert.matches('^W', e.rwbs)
      end
      assert.same({ 'dd', 300, 300 * 4096 }, { r.processes[1].comm, r.processes[1].count, r.processes[1].bytes })
      assert.equal(300, r.devices[1].count)
    end)
    if dev then h.sh('losetup -d ' .. dev) end
    os.remove(img)
    assert(ok, err)
  end)

  it('lock-contention: the waits on the mutex of mutex_contention are those bpftrace counts', function()
    if not h.need_root() then return end
    if not h.sh('command -v bpftrace'):match('bpftrace') then
      return h.skip_unless_required('PM_REQUIRE_BPF', 'skipped: bpftrace is not installed')
    end
    local out = os.tmpname()
    -- FUTEX_WAIT (private flag masked) per address, for the whole life of the
    -- workload; ends when its main thread exits
    local prog = 'BEGIN { printf("bpftrace ready\\n"); } '
      .. 'tracepoint:syscalls:sys_enter_futex /comm == "mutex_contentio" && (args->op & 127) == 0/ '
      .. '{ @waits[args->uaddr] = count(); } '
      .. 'tracepoint:sched:sched_process_exit /comm == "mutex_contentio" && pid == tid/ { exit(); }'
    local bt = tonumber((h.sh(string.format("bpftrace -e '%s' >%s 2>&1 & echo $!", prog, out))))
    local ok, err = pcall(function()
      assert(W.wait_until(function() return (util.readfile(out) or ''):find('bpftrace ready') end, 60),
        'bpftrace did not start: ' .. tostring(util.readfile(out)))
      local res, perr, st = h.pm('lock-contention --json --max-overhead 100 -- ' .. h.workload('mutex_contention')
        .. ' 8 1')
      assert.equal(0, st, perr)
      local r = assert(util.json_decode(res))
      assert(W.wait_until(function() return (util.readfile(out) or ''):find('\n@waits%[') end, 30), 'no bpftrace map')
      local top = r.futex[1]
      local counted = tonumber(util.readfile(out):match(string.format('@waits%%[0x%x%%]: (%%d+)', top.uaddr)))
      assert.equal(counted, top.count, util.readfile(out) .. string.format(" top 0x%x", top.uaddr))
      assert.is_true(top.count > 100, 'waits ' .. top.count)
      assert.is_true(r.contention)
      assert.matches('^lock contention: the threads wait', r.verdict)
    end)
    if bt then os.execute('kill ' .. bt .. ' 2>/dev/null') end
    os.remove(out)
    assert(ok, err)
  end)

  it('request-trace: counts the requests wrk had answered by fixval_http, and finds its 2 ms sleep', function()
    if not h.need_root() then return end
    if not h.sh('command -v wrk'):match('wrk') then
      return h.skip_unless_required('PM_REQUIRE_BPF', 'skipped: wrk is not installed')
    end
    local conf, out = os.tmpname(), os.tmpname()
    local f = assert(io.open(conf, 'w')); f:write('2000\n'); f:close()
    local port = 20000 + sys.getpid() % 20000
    -- the load: once the server answers (one probe request), wrk for 1 s on 4 connections
    -- (up to 30 s for the server to answer: the tracers load first, slowly on a busy machine).
    -- Started with spawn, so it inherits none of this process's files (wrk's event
    -- loop has room for 22 descriptors with 4 connections: with inherited files
    -- taking the low numbers, all 4 connects failed)
    local load = assert(sys.spawn({ 'sh', '-c', string.format('for i in $(seq 600); do '
      .. 'curl -s -o /dev/null http://127.0.0.1:%d/ && break; sleep 0.05; done; exec wrk -t2 -c4 -d1s '
      .. 'http://127.0.0.1:%d/', port, port) }, { stdout = out, stderr = out }))
    -- the server lives 4 s, time for the load to start once the tracers are
    -- attached; its main thread sleeps all along, and a longer sleep falls in
    -- a wider log2 bucket, loosening the per-request bounds below
    local res, err, st = h.pm(string.format('request-trace --json -- %s %d %s 4', h.workload('fixval_http'), port,
      conf))
    sys.wait(load)
    local wrk = util.readfile(out) or ''
    os.remove(conf)
    os.remove(out)
    assert.equal(0, st, err)
    local r = assert(util.json_decode(res))
    local answered = tonumber(wrk:match('(%d+) requests in'))
    assert(answered, 'wrk said: ' .. wrk)
    -- the load really ran against the server (else nothing below is about requests)
    assert.is_true(answered >= 100, 'wrk said: ' .. wrk)
    -- the server also answered the probe, and up to one request per
    -- connection that wrk sent but stopped waiting for at its end
    local extra = r.requests - answered - 1
    assert.is_true(extra >= 0 and extra <= 4, string.format('traced %d, wrk %d', r.requests, answered))
    -- the server-side latency: at least the 2 ms sleep, at most what wrk saw
    local wrk_avg, unit = wrk:match('Latency%s+([%d.]+)(%a+)')
    wrk_avg = tonumber(wrk_avg) * (unit == 'us' and 1e-3 or unit == 's' and 1e3 or 1)
    -- (wrk prints 0.00us when its latency sampler kept nothing: then only the floor is checked)
    assert.is_true(r.latency.p50 * 1000 >= 2 and (wrk_avg == 0 or r.latency.mean * 1000 <= wrk_avg),
      string.format('traced p50 %.3f ms mean %.3f ms, wrk avg %.3f ms', r.latency.p50 * 1000, r.latency.mean * 1000,
        wrk_avg))
    -- the first call inside a request (a read waiting for the next request
    -- on a keep-alive connection is time between requests, and may be longer)
    local sleep
    for _, row in ipairs(r.per_request) do
      if not row.between then sleep = row break end
    end
    assert.equal('clock_nanosleep', sleep and sleep.name, util.json_encode(r.per_request))
    -- the launched server's main thread sleeps for its whole life: that one
    -- call is left out, and the per-request time is a lower bound then
    assert.matches('clock_nanosleep takes [a-z ]*[%d.]+ ms per request', r.verdict)
    -- each request sleeps 2 ms (and a little more: the timer's slack)
    assert.is_true(sleep.ms <= 2.3 and (sleep.ms_upper or sleep.ms) >= 2.0,
      string.format('clock_nanosleep per request %.3f .. %s ms', sleep.ms, tostring(sleep.ms_upper)))
  end)

  it('syscall-dashboard: serves, and reads back from serve the getppid calls syscall_loop makes', function()
    if not h.need_root() then return end
    local N = 100000
    local port = 20000 + (sys.getpid() + 7) % 20000
    local addr = '127.0.0.1:' .. port
    local log = os.tmpname()
    local srv = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'syscall-dashboard', '--serve', '--listen', addr,
      '--duration', '120' }, { stdout = log, stderr = log }))
    local ok, err = pcall(function()
      local scrape = require('perf_manual.serve.scrape')
      assert(W.wait_until(function() return scrape.fetch(addr) ~= nil end, 60), 'serve did not start: '
        .. tostring(util.readfile(log)))
      -- the loop starts a second into the 4 s between the two scrapes and
      -- makes exactly N getppid calls (it says how long they took)
      local loop_out = os.tmpname()
      os.execute(string.format('(sleep 1; %s %d >%s 2>&1) &', h.workload('syscall_loop'), N, loop_out))
      local out, perr, st = h.pm('syscall-dashboard --from ' .. addr .. ' --interval 4 --json')
      local said = util.readfile(loop_out) or ''
      os.remove(loop_out)
      assert.equal(0, st, perr)
      assert.matches('^getppid ' .. N .. ' calls', said)
      local r = assert(util.json_decode(out))
      local row
      for _, x in ipairs(r.syscalls) do if x.syscall == 'getppid' then row = x end end
      assert(row, 'no getppid row')
      -- other processes of the machine call getppid too, rarely
      assert.is_true(row.calls >= N and row.calls <= N * 1.01, 'getppid calls ' .. row.calls)
      assert.is_true(row.p50_s > 0 and row.p50_s < 1e-4 and row.p99_s >= row.p50_s)
    end)
    sys.kill(srv, 2)
    sys.wait(srv)
    os.remove(log)
    assert(ok, err)
  end)

  it('numa: the memory of mem_pressure per node is its RSS, and the node counters move as /proc/vmstat does', function()
    W.with('mem_pressure', { '8', W.scratch(), '8', '64' }, {}, function(w)
      W.wait_until(function()
        local r = util.readfile('/proc/' .. w.pid .. '/smaps_rollup') or ''
        return (tonumber(r:match('\nRss:%s+(%d+)')) or 0) > 64 * 1024
      end, 10)
      local function vm_hit() return tonumber(util.readfile('/proc/vmstat'):match('\nnuma_hit (%d+)')) end
      local hit0 = vm_hit()
      local out, err, st = h.pm('numa --pid ' .. w.pid .. ' --duration 1 --json')
      local hit1 = vm_hit()
      local rss = tonumber(util.readfile('/proc/' .. w.pid .. '/smaps_rollup'):match('\nRss:%s+(%d+)'))
      assert.equal(0, st, err)
      local r = assert(util.json_decode(out))
      -- the kernel's resident pages, counted per node from numa_maps
      assert.is_true(math.abs(r.process.total_kb - rss) <= rss * 0.02,
        string.format('numa_maps %d kB, smaps_rollup Rss %d kB', r.process.total_kb, rss))
      -- /proc/vmstat's numa_hit is the sum of the nodes' counters: over the
      -- command's run it saw at least what the 1 s window saw
      local window = 0
      for _, n in ipairs(r.nodes) do window = window + n.numa_hit_per_s * 1 end
      assert.is_true(window > 0 and window <= (hit1 - hit0) * 1.01,
        string.format('window %.0f hits, vmstat %d over the command', window, hit1 - hit0))
      local dirs = h.sh('ls -d /sys/devices/system/node/node[0-9]* | wc -l')
      assert.equal(tonumber(dirs), r.node_count)
      if r.node_count == 1 then
        assert.is_true(r.single_node)
        assert.matches('^one NUMA node', r.verdict)
      end
    end)
  end)

  it('false-sharing: c2c support as perf itself finds it, CPU time as perf stat counts it', function()
    if not h.sh('command -v perf'):match('perf') then
      return h.skip_unless_required('PM_REQUIRE_BPF', 'skipped: perf is not installed')
    end
    h.with_machine_lock(function()
      local out, err, st = h.pm('false-sharing --rounds 2 --iterations 50000000 --json')
      assert.equal(0, st, err)
      local r = assert(util.json_decode(out))
      -- perf c2c record works exactly where memory-access sampling exists
      local data = os.tmpname()
      local _, _, c2c_st = h.sh('perf c2c record -o ' .. data .. ' true')
      os.remove(data)
      assert.equal(c2c_st == 0, r.c2c.available, r.c2c.why)
      -- the workload's own CPU time against perf's task-clock for one run
      local csv = os.tmpname()
      local line = h.sh(string.format('perf stat -x, -e task-clock -o %s %s padded 2 50000000', csv,
        h.workload('false_sharing')))
      local task_ms = tonumber(util.readfile(csv):match('\n?([%d.]+),msec,task%-clock'))
      os.remove(csv)
      local cpu_ms = tonumber(line:match('cpu_s ([%d.]+)')) * 1000
      -- perf also counts the process's start and exit
      assert.is_true(task_ms >= cpu_ms and task_ms <= cpu_ms + 30,
        string.format('workload %.1f ms of CPU, perf task-clock %.1f ms', cpu_ms, task_ms))
      if r.padded.parallel < 1.3 then
        assert.matches('^not measurable here', r.verdict)
      else
        assert.is_not.matches('^not measurable', r.verdict)
      end
    end)
  end)
end)
