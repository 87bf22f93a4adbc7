--- The hypothesis catalogue: the mechanisms this tool can measure, as data.
--- Each entry says what the mechanism is, which words name it, what evidence
--- it needs, the predicates over that evidence that support or refute it,
--- the culprit fields it fills and the fixes it suggests. The root-cause
--- analyzer (perf_manual.analyzers.root_cause) maps a hypothesis in words
--- onto an entry and runs its predicates over the evidence view `ev` it
--- builds from a data dir (documented in docs/catalogue.md).
---
--- A team adds entries in `hypothesis_catalogue.lua` in a playbook directory (a list
--- of entries in the form below); a team entry with a built-in id replaces it.
---
--- Entry = {
---   id = 'lock-convoy', resource = 'lock', title = 'lock convoy',
---   mechanism = 'one sentence',
---   phrases = { 'lock contention', ... },  -- two or more words: all present → a match
---   terms = { 'convoy' },                  -- single words that name the mechanism alone
---   keywords = { 'lock', 'mutex', ... },   -- two of them (or one with a phrase) → a match
---   needs = { 'tsa', 'lock' },             -- evidence names (see root_cause.EVIDENCE)
---   predicates = { { needs = 'tsa', weight = 2, test = function(ev, T) return stance, note end }, ... },
---   culprit = function(ev) return { lock = ..., ... } end,
---   fills = { 'lock', 'waiters', ... },    -- the culprit fields it may fill
---   says = { 'template with {field}', ... }, -- the root cause; first whose fields are all measured
---   fixes = { 'template with {field}', ... },
--- }
--- A predicate returns 'supports' | 'refutes' and a note, or nil and an
--- optional note (nothing to weigh either way).

local util = require('perf_manual.util')

local M = {}

local function pct(x) return x and string.format('%.0f%%', x) or nil end
local function rate(x) return x and string.format('%.1f/s', x) or nil end
local function mib(b) return b and string.format('%.0f MiB', b / 2 ^ 20) or nil end

-- USE row status as evidence
local function use_row(res, w_high, w_ok)
  return function(ev)
    local row = ev.use and ev.use.rows[res]
    if not row then return nil end
    local line = string.format('USE %s: %s (utilization %s; saturation %s)', row.name, row.status, row.utilization,
      row.saturation)
    if row.status == 'HIGH' then return 'supports', line, w_high end
    if row.status == 'warn' then return 'supports', line, 1 end
    if row.status == 'ok' or row.status == 'idle' then return 'refutes', line, w_ok end
    return nil, 'USE ' .. res .. ' row not measured'
  end
end

-- the USE verdict naming another resource
local function use_other(res)
  return function(ev)
    local v = ev.use and ev.use.verdict
    if v and v ~= res then return 'refutes', 'USE names ' .. v .. ' as the most saturated resource' end
    return nil
  end
end

M.builtin = {
  {
    id = 'cpu-bound', resource = 'cpu', title = 'CPU-bound code path',
    mechanism = "the workload's own code keeps the CPUs busy: on-CPU work, not waiting, sets its speed",
    phrases = { 'cpu bound', 'hot loop', 'hot path', 'hot function', 'hot code', 'code path', 'cpu saturated',
      'cpu busy', 'compute bound', 'busy loop', 'cpus busy', 'cpu time' },
    terms = {},
    keywords = { 'cpu', 'cpus', 'compute', 'hot', 'loop', 'spin', 'spins', 'busy', 'function', 'code', 'algorithm',
      'saturated', 'bound' },
    needs = { 'tsa', 'use', 'profile' },
    predicates = {
      { needs = 'tsa', weight = 2, test = function(ev, T)
        local h = ev.hot_thread
        if h and h.cpu >= T.hot_thread_pct then
          return 'supports', string.format('thread %s (%s) is on a CPU %.0f%% of its wall time: it cannot go faster',
            tostring(h.tid), tostring(h.comm), h.cpu)
        end
      end },
      { needs = 'tsa', weight = 2, test = function(ev)
        local s = ev.states
        local busy = s.cpu + s.runq
        local line = string.format('the target is on a CPU %.0f%% and runnable %.0f%% of its wall time', s.cpu, s.runq)
        if busy >= 50 then return 'supports', line, 1 end
        if busy < 20 then return 'refutes', line, 2 end
        return nil, line .. ': neither mostly busy nor mostly waiting'
      end },
      { needs = 'use', weight = 1, test = function(ev)
        local c = ev.task and ev.task.cpu_pct
        if not c then return nil, "the workload's CPU use was not measured" end
        local line = string.format('the workload uses %.0f%% of one CPU', c)
        if c < 10 then return 'refutes', line, 2 end
        if c >= 80 then return 'supports', line, 1 end
      end },
      { needs = 'use', test = use_other('cpu') },
      { needs = 'profile', weight = 1, test = function(ev)
        local p = ev.profile
        if p.hot and p.share then
          return 'supports', string.format('on-CPU profile: %s holds %.0f%% of samples', p.hot, p.share * 100)
        end
        return nil, 'the on-CPU profile names no hot function'
      end },
    },
    fills = { 'hot_function', 'hot_share', 'hot_path', 'split', 'kernel_path', 'process', 'cpu_use', 'threads' },
    culprit = function(ev)
      local c = {}
      if ev.profile and ev.profile.hot then
        c.hot_function, c.hot_share, c.hot_path = ev.profile.hot, pct(ev.profile.share and ev.profile.share * 100),
          ev.profile.path
      end
      if ev.profile then c.split, c.kernel_path = ev.profile.split, ev.profile.kernel_path end
      c.process = ev.process
      c.cpu_use = ev.task and ev.task.cpu_pct and string.format('%.0f%% of one CPU', ev.task.cpu_pct)
      c.threads = ev.busy_threads
      return c
    end,
    says = {
      'the workload is CPU-bound: {hot_function} holds {hot_share} of on-CPU samples (hot path {hot_path}), {split} ' ..
        '(kernel path {kernel_path}); hottest threads {threads} of one CPU',
      'the workload is CPU-bound: {hot_function} holds {hot_share} of on-CPU samples (hot path {hot_path}), ' ..
        '{split}; hottest threads {threads} of one CPU',
      'the workload is CPU-bound: {hot_function} holds {hot_share} of on-CPU samples (hot path {hot_path}); ' ..
        '{process} uses {cpu_use}',
      'the workload is CPU-bound: {process} uses {cpu_use}, busiest threads {threads}',
      'the workload is CPU-bound: on-CPU work saturates the CPUs',
    },
    fixes = {
      'make {hot_function} cheaper: it holds {hot_share} of on-CPU samples (hot path {hot_path}); less work per ' ..
        'call, a better algorithm, or cache its results',
      'add CPUs or spread the work only once {hot_function} is as cheap as it can be',
    },
  },
  {
    id = 'single-thread', resource = 'cpu', title = 'single-thread bound',
    mechanism = 'one thread does the work and runs flat out on one CPU while the other CPUs idle',
    phrases = { 'single thread', 'one thread', 'main thread', 'single core', 'one core', 'one cpu', 'not parallel',
      'serial work' },
    terms = { 'singlethreaded' },
    keywords = { 'thread', 'single', 'serial', 'serialised', 'serialized', 'core', 'parallel' },
    needs = { 'tsa', 'use' },
    predicates = {
      { needs = 'tsa', weight = 2, test = function(ev, T)
        local h = ev.hot_thread
        if not h then return nil, 'no thread measured' end
        local line = string.format('the busiest thread, %s (%s), is on a CPU %.0f%% of its wall time', tostring(h.tid),
          tostring(h.comm), h.cpu)
        if h.cpu >= T.hot_thread_pct then return 'supports', line .. ': it cannot go faster' end
        if h.cpu < 60 then return 'refutes', line end
        return nil, line
      end },
      { needs = 'use', weight = 1, test = function(ev)
        local r = ev.use.reason
        if r == 'single-thread' then return 'supports', 'USE: the CPU verdict is one thread at 100% of one CPU' end
        if r and ev.use.verdict == 'cpu' then
          return 'refutes', 'USE: the CPU verdict is ' .. r .. ', not one thread'
        end
      end },
    },
    fills = { 'thread', 'thread_cpu', 'hot_function', 'hot_path', 'split', 'process' },
    culprit = function(ev)
      local c = { process = ev.process }
      if ev.hot_thread then
        c.thread = string.format('%s (%s)', tostring(ev.hot_thread.tid), tostring(ev.hot_thread.comm))
        c.thread_cpu = pct(ev.hot_thread.cpu)
      end
      c.hot_function = ev.profile and ev.profile.hot
      c.hot_path = c.hot_function and ev.profile.path
      c.split = ev.profile and ev.profile.split
      return c
    end,
    says = {
      'single-thread bound: thread {thread} of {process} is on a CPU {thread_cpu} of its wall time, in ' ..
        '{hot_function} (hot path {hot_path}), {split}',
      'single-thread bound: thread {thread} of {process} is on a CPU {thread_cpu} of its wall time, in {hot_function}',
      'single-thread bound: thread {thread} of {process} is on a CPU {thread_cpu} of its wall time',
    },
    fixes = {
      'split the work of thread {thread} across threads or processes so it can use more than one CPU',
      'make {hot_function} cheaper: it runs on the one thread that sets the pace',
    },
  },
  {
    id = 'cpu-quota', resource = 'cpu', title = 'CPU quota throttling',
    mechanism = 'a cgroup CPU quota stops the workload for part of every period, even while CPUs are idle',
    phrases = { 'cpu quota', 'cpu limit', 'cfs quota', 'cgroup quota', 'container limit', 'cpu throttled',
      'quota throttled' },
    terms = { 'throttled', 'throttling', 'throttles', 'quota' },
    keywords = { 'quota', 'throttled', 'limit', 'cgroup', 'container', 'cfs', 'cpu' },
    needs = { 'use' },
    predicates = {
      { needs = 'use', weight = 2, test = function(ev)
        local q = ev.quota
        if not q or not q.throttled_pct then
          if ev.use.rows.cpu then return 'refutes', 'no CPU quota throttles the target (cgroup cpu.stat)' end
          return nil, 'cgroup CPU throttling not measured'
        end
        local line = string.format('the cgroup quota%s throttled the target in %.0f%% of periods',
          q.cores and string.format(' of %.2f CPUs', q.cores) or '', q.throttled_pct)
        if q.throttled_pct >= 25 then return 'supports', line, 2 end
        if q.throttled_pct >= 5 then return 'supports', line, 1 end
        if q.throttled_pct < 1 then return 'refutes', line, 2 end
        return nil, line
      end },
      { needs = 'use', weight = 1, test = function(ev)
        if ev.use.reason == 'quota' then return 'supports', 'USE: the CPU verdict is the cgroup quota' end
      end },
    },
    fills = { 'cgroup', 'quota', 'throttled', 'process' },
    culprit = function(ev)
      local q = ev.quota or {}
      return { cgroup = q.cgroup, quota = q.cores and string.format('%.2f CPUs', q.cores),
        throttled = pct(q.throttled_pct),
        process = ev.process }
    end,
    says = {
      'CPU quota throttling: the quota of {quota} on cgroup {cgroup} throttled {process} in {throttled} of periods',
      'CPU quota throttling: a quota of {quota} throttled {process} in {throttled} of periods',
      'CPU quota throttling: the cgroup quota throttled {process} in {throttled} of periods',
    },
    fixes = {
      'raise the CPU quota of cgroup {cgroup} above {quota} (it throttled {throttled} of periods), or cut the work ' ..
        'so it fits',
      'raise the CPU quota above {quota}: it throttled {throttled} of periods',
      'size the quota from the CPU the workload uses unthrottled, plus headroom for bursts',
    },
  },
  {
    id = 'run-queue', resource = 'cpu', title = 'run-queue contention',
    mechanism = 'more runnable threads than CPUs: threads wait in the run queue for a CPU',
    phrases = { 'run queue', 'cpu contention', 'cpu starvation', 'too many threads', 'scheduler latency',
      'waiting for a cpu', 'noisy neighbour', 'noisy neighbor', 'cpu oversubscribed' },
    terms = { 'runqueue', 'oversubscribed', 'oversubscription' },
    keywords = { 'runqueue', 'queue', 'scheduler', 'runnable', 'starved', 'starvation', 'neighbour', 'neighbor', 'cpu',
      'cpus' },
    needs = { 'tsa', 'use' },
    predicates = {
      { needs = 'tsa', weight = 2, test = function(ev, T)
        local rq = ev.states.runq
        local line = string.format('runnable but waiting for a CPU %.0f%% of its wall time', rq)
        if rq >= 50 then return 'supports', line, 2 end
        if rq >= T.runq_share_medium then return 'supports', line, 1 end
        if rq < 5 then return 'refutes', line, 2 end
        return nil, line
      end },
      { needs = 'use', weight = 2, test = function(ev)
        -- waiting for a CPU while CPUs idle is a quota or affinity, not a crowded run queue
        local q = ev.quota
        if q and q.throttled_pct and q.throttled_pct >= 25 then
          return 'refutes', string.format('the waits for a CPU are the cgroup quota throttling %.0f%% of periods',
            q.throttled_pct)
        end
        local b = ev.cpu_busy_pct
        if b and b < 70 then
          return 'refutes', string.format('the CPUs are %.0f%% busy: a CPU was free most of the time', b)
        end
      end },
      { needs = 'use', weight = 1, test = function(ev)
        local w = ev.task and ev.task.runq_wait_pct
        if not w then return nil end
        local line = string.format('the target\'s threads wait for a CPU %.0f%% (thread-seconds per second, schedstat)',
          w)
        if w >= 50 then return 'supports', line end
        if w < 10 then return 'refutes', line end
      end },
    },
    fills = { 'process', 'runq', 'threads', 'cpus', 'busiest', 'hot_function' },
    culprit = function(ev)
      return { process = ev.process, runq = ev.has.tsa and pct(ev.states.runq) or nil, threads = ev.runnable_threads,
        cpus = ev.cpus and tostring(ev.cpus), busiest = ev.busy_threads, hot_function = ev.profile and ev.profile.hot }
    end,
    says = {
      'run-queue contention: {threads} threads of {process} compete for {cpus} CPUs and wait for one {runq} of ' ..
        'their time; on a CPU: {busiest} of one CPU, in {hot_function}',
      'run-queue contention: {threads} threads of {process} compete for {cpus} CPUs and wait for one {runq} of ' ..
        'their time; on a CPU: {busiest} of one CPU',
      'run-queue contention: {threads} threads of {process} compete for {cpus} CPUs and wait for one {runq} of ' ..
        'their time',
      'run-queue contention: the threads of {process} wait for a CPU {runq} of their time',
    },
    fixes = {
      'run no more busy threads than the {cpus} CPUs ({threads} threads of {process} were runnable), or give the ' ..
        'workload more CPUs',
      'if other processes compete for the CPUs, move them off (cpuset) or lower their priority',
    },
  },
  {
    id = 'lock-convoy', resource = 'lock', title = 'lock convoy',
    mechanism = 'threads queue on one contended lock, so work that could run in parallel runs one at a time',
    phrases = { 'lock contention', 'mutex contention', 'contended lock', 'contended mutex', 'global lock',
      'big lock', 'lock held', 'lock wait', 'waiting on a lock', 'lock convoy', 'shared mutex' },
    terms = { 'convoy', 'futex', 'mutex', 'spinlock' },
    keywords = { 'lock', 'locks', 'mutex', 'futex', 'contention', 'contended', 'spinlock', 'semaphore', 'held',
      'queue' },
    needs = { 'tsa', 'lock', 'use' },
    predicates = {
      { needs = 'tsa', weight = 2, test = function(ev, T)
        local l = ev.states.lock
        local line = string.format('the target waits on locks %.0f%% of its wall time', l)
        if l >= T.wait_share_high then return 'supports', line, 2 end
        if l >= T.wait_share_medium then return 'supports', line, 1 end
        if l < 5 then return 'refutes', line, 2 end
        return nil, line
      end },
      { needs = 'lock', weight = 1, test = function(ev, T)
        local l = ev.lock
        if not l.wait_share then return nil, 'the lock tracer measured no wait share' end
        if not l.of_target then
          return nil, 'the lock tracer ran system-wide: its wait share counts idle thread pools (give a pid)'
        end
        local line = string.format('threads wait on futexes %.0f%% of their time', l.wait_share * 100)
        if l.wait_share >= T.lock_wait_share_medium then return 'supports', line end
        return 'refutes', line
      end },
      { needs = 'use', test = use_row('lock', 2, 1) },
    },
    fills = { 'lock', 'waiters', 'wait_pct', 'queue', 'call_site', 'holder' },
    culprit = function(ev)
      local o = ev.objects.lock
      local c = {}
      if o then c.lock, c.waiters, c.wait_pct = o.name, tostring(o.threads), pct(o.share) end
      if ev.lock then
        c.lock = c.lock or ev.lock.name or ev.lock.addr and ('futex ' .. ev.lock.addr .. ' (symbol not resolved)')
        c.queue = ev.lock.waiters_avg and string.format('%.1f', ev.lock.waiters_avg)
        c.waiters = c.waiters or ev.lock.threads and tostring(ev.lock.threads)
      end
      c.call_site = ev.offcpu and ev.offcpu.path or ev.lock and ev.lock.waiter_site
      c.holder = ev.lock and ev.lock.holder   -- the futex wake side: the releasing threads' call site
      return c
    end,
    says = {
      'lock contention: {waiters} threads queue on {lock}, {wait_pct} of their time waiting, {queue} waiters on ' ..
        'average,'
        .. ' held from {holder}',
      'lock contention: {waiters} threads queue on {lock}, {wait_pct} of their time waiting, {queue} waiters on ' ..
        'average',
      'lock contention: {waiters} threads queue on {lock}, {wait_pct} of their time waiting',
      'lock contention: threads queue on {lock}, {queue} waiters on average, held from {holder}',
      'lock contention: threads queue on {lock}, {queue} waiters on average',
      'lock contention: threads wait on a shared mutex',
    },
    fixes = {
      'shorten the critical section guarded by {lock}: move the work that does not need it out of the lock',
      'shard {lock} or use finer-grained locks, so the {waiters} threads stop queueing on one',
      'shorten what {holder} does while it holds {lock}',
    },
  },
  {
    id = 'fsync-bound', resource = 'disk', title = 'fsync-bound writes',
    mechanism = 'the workload waits on its own synchronous writes (fsync/fdatasync): every write waits for the ' ..
      'device to confirm it',
    phrases = { 'synchronous write', 'sync write', 'durable write', 'write barrier', 'commit latency', 'flush to disk',
      'cache flush' },
    terms = { 'fsync', 'fsyncs', 'fdatasync', 'o_sync', 'o_dsync', 'sync_file_range' },
    keywords = { 'fsync', 'fdatasync', 'sync', 'synchronous', 'flush', 'durable', 'commit', 'write', 'disk' },
    needs = { 'tsa', 'syscall' },
    predicates = {
      { needs = 'tsa', weight = 2, test = function(ev, T)
        local s = ev.states.io
        local o = ev.objects.io
        local line = string.format('the target waits on block I/O %.0f%% of its wall time', s)
        if o and o.syscall then line = line .. ', mostly in ' .. o.syscall end
        local sync = o and tostring(o.syscall):match('sync') ~= nil
        if s >= T.wait_share_medium and sync then return 'supports', line, 2 end
        if s >= T.wait_share_medium and o and o.syscall then
          return 'refutes', line .. ': the I/O waits are not synchronous writes', 1
        end
        if s < 5 then return 'refutes', line, 2 end
        return nil, line
      end },
      { needs = 'syscall', weight = 1, test = function(ev)
        local sc = ev.syscall
        if not sc.share then return nil end
        local line = string.format('%.0f%% of the process\'s syscall time is in %s', sc.share * 100, sc.only)
        if sc.sync_share then
          line = string.format('fsync/fdatasync hold %.0f%% of the traced syscall time', sc.sync_share * 100)
          if sc.sync_share >= 0.5 then return 'supports', line end
          if sc.sync_share < 0.1 then return 'refutes', line end
          return nil, line
        end
        if sc.share > 0.5 then return 'supports', line end
        if sc.share < 0.1 then return 'refutes', line end
      end },
    },
    fills = { 'file', 'syscall', 'device', 'threads', 'io_pct', 'sync_calls', 'block_writes' },
    culprit = function(ev)
      local o = ev.objects.io
      local c = {}
      local d = ev.disk
      if d and d.file then
        c.file, c.syscall, c.device, c.threads, c.io_pct = d.file, d.syscall, d.device, tostring(d.threads),
        pct(d.io_pct)
        if #d.files > 1 then c.file = string.format('%s (and %d other files)', c.file, #d.files - 1) end
      elseif o then
        c.file, c.syscall, c.device, c.threads, c.io_pct = o.path or o.name, o.syscall, o.device,
        tostring(o.reason_threads),
          pct(o.share)
        if o.files and o.files > 1 then c.file = string.format('%s (and %d other files)', c.file, o.files - 1) end
      end
      c.sync_calls = ev.syscall and ev.syscall.sync_text
      if d and d.write_size then
        c.block_writes = string.format('block writes %s (mean %.1f KiB)%s%s', d.write_size, d.write_mean / 1024,
          d.sync_pct and string.format(', %.0f%% sync', d.sync_pct) or '',
          d.flushes_per_s and string.format(', %.0f cache flushes/s', d.flushes_per_s) or '')
      end
      return c
    end,
    says = {
      'synchronous writes: {threads} threads wait in {syscall} of {file} on {device} {io_pct} of their time; ' ..
        '{sync_calls}; {block_writes}',
      'synchronous writes: {threads} threads wait in {syscall} of {file} on {device} {io_pct} of their time; ' ..
        '{sync_calls}',
      'synchronous writes: {threads} threads wait in {syscall} of {file} {io_pct} of their time',
      'synchronous writes: {sync_calls}',
      'synchronous writes: the workload waits on fsync/fdatasync',
    },
    fixes = {
      'batch the writes to {file} and call {syscall} once per batch (group commit), not after every write',
      'if every write must be durable, keep {file} on a device with a fast cache flush ({device} now), or use ' ..
        'fdatasync where metadata need not be flushed',
    },
  },
  {
    id = 'disk-saturation', resource = 'disk', title = 'disk saturation',
    mechanism = 'the block device is saturated: requests queue and every I/O waits longer',
    phrases = { 'disk saturated', 'disk bottleneck', 'disk busy', 'slow disk', 'disk latency', 'io bound', 'i/o bound',
      'storage saturated', 'disk i/o', 'disk io', 'device saturated', 'disk queue', 'disk slow' },
    terms = { 'iops' },
    keywords = { 'disk', 'disks', 'storage', 'device', 'i/o', 'io', 'iops', 'ssd', 'nvme', 'saturated', 'block',
      'bottleneck' },
    needs = { 'use', 'io', 'tsa' },
    predicates = {
      { needs = 'use', weight = 2, test = function(ev)
        local row = ev.use.rows.disk
        if not row then return 'refutes', 'USE: no disk was busy enough to get a row', 1 end
        return use_row('disk', 2, 2)(ev)
      end },
      { needs = 'use', test = use_other('disk') },
      { needs = 'io', weight = 1, test = function(ev, T)
        local io = ev.io
        if not io.p99_ms then return nil, 'no block I/O latency measured' end
        local line = string.format('I/O latency p99 %.1f ms on %s', io.p99_ms, tostring(io.device))
        if io.p99_ms >= T.io_p99_ms_medium then return 'supports', line end
        local row = ev.use and ev.use.rows.disk
        if io.p99_ms < T.io_p99_ms_fast and not (row and row.status == 'HIGH') then
          return 'refutes', line .. ' (fast)'
        end
        return nil, line .. ': neither fast nor slow, no weight either way'
      end },
      { needs = 'tsa', weight = 1, test = function(ev)
        if ev.states.io < 5 then
          return 'refutes', string.format('the target waits on block I/O %.0f%% of its wall time', ev.states.io)
        end
      end },
    },
    fills = { 'device', 'disk_use', 'p99', 'latency', 'process', 'file', 'waiters' },
    culprit = function(ev)
      local row = ev.use and ev.use.rows.disk
      local d = ev.disk or {}
      local c = { device = row and row.name or ev.io and ev.io.device, disk_use = row and row.utilization,
        p99 = ev.io and ev.io.p99_ms and string.format('%.1f ms', ev.io.p99_ms), process = ev.process,
        file = ev.objects.io and (ev.objects.io.path or ev.objects.io.name) }
      if d.p99_ms and d.p50_ms then
        c.latency = string.format('p50 %.2f ms, p99 %.1f ms, %.1f requests in flight', d.p50_ms, d.p99_ms,
          d.inflight or 0)
      end
      if d.file then
        c.waiters = string.format('%d thread%s wait in %s of %s%s %.0f%% of their time', d.threads,
          d.threads == 1 and '' or 's',
          tostring(d.syscall or 'I/O'), d.file, #d.files > 1 and string.format(' (and %d other files)', #d.files - 1)
            or '',
          d.io_pct)
      end
      return c
    end,
    says = {
      'the workload waits on disk I/O: {device} is saturated ({disk_use}; {latency}); {process}: {waiters}',
      'the workload waits on disk I/O: {device} is saturated ({disk_use}; p99 {p99}); {process} waits on {file}',
      'the workload waits on disk I/O: {device} is saturated ({disk_use}), I/O p99 {p99}',
      'the workload waits on disk I/O: {device} is saturated ({disk_use})',
      'the workload waits on disk I/O (synchronous writes or a saturated device)',
    },
    fixes = {
      'move I/O off {device} or spread it over more devices; {process} waits on {file}',
      'issue less I/O to {device}: bigger, fewer requests; cache what is read again',
    },
  },
  {
    id = 'memory-limit', resource = 'memory', title = 'memory limit / reclaim thrash',
    mechanism = 'the cgroup lives at its memory limit: allocations reclaim first, and the page cache the workload ' ..
      'needs is evicted and read again',
    phrases = { 'memory limit', 'memory pressure', 'cgroup limit', 'page cache', 'working set', 'reclaim thrash',
      'out of memory', 'memory leak', 'memory starved' },
    terms = { 'reclaim', 'thrash', 'thrashing', 'refault', 'refaults', 'oom' },
    keywords = { 'memory', 'limit', 'reclaim', 'cgroup', 'cache', 'refault', 'thrash', 'pressure', 'evict', 'oom',
      'rss',
      'leak' },
    needs = { 'use', 'tsa' },
    predicates = {
      { needs = 'use', test = use_row('memory', 2, 2) },
      { needs = 'use', weight = 1, test = function(ev)
        local m = ev.memory
        if not m.limit_bytes then
          if m.cgroup then return 'refutes', 'no memory limit on the target\'s cgroup' end
          return nil, 'the cgroup memory limit was not measured'
        end
        local line = string.format('cgroup at %s of its %s limit', pct(m.usage_pct) or '?', mib(m.limit_bytes))
        if m.usage_pct and m.usage_pct >= 90 then return 'supports', line end
        if m.usage_pct and m.usage_pct < 50 then return 'refutes', line end
      end },
      { needs = 'use', weight = 1, test = function(ev)
        local r = ev.memory.refault_per_s
        if r and r >= 100 then
          return 'supports', string.format('the cgroup refaults %.0f pages/s (evicted, read again)', r)
        end
      end },
      { needs = 'tsa', weight = 1, test = function(ev)
        if ev.states.memory >= 10 then
          return 'supports', string.format('the target stalls on memory (faults, reclaim) %.0f%% of its wall time',
            ev.states.memory)
        end
      end },
    },
    fills = { 'cgroup', 'limit', 'usage', 'refaults', 'limit_hits', 'process', 'working_set', 'reclaim', 'need',
      'need_method', 'faulter' },
    culprit = function(ev)
      local m = ev.memory or {}
      return { cgroup = m.cgroup, limit = mib(m.limit_bytes), usage = m.usage_bytes and mib(m.usage_bytes),
        refaults = m.refault_per_s and string.format('%.0f pages/s', m.refault_per_s),
        limit_hits = rate(m.limit_hits_per_s), process = ev.process or m.top_faulter,
        working_set = mib(m.working_set_bytes),
        reclaim = m.reclaim_bytes_per_s and string.format('%.0f MB/s', m.reclaim_bytes_per_s / 1e6),
        need = mib(m.need_bytes), need_method = m.need_method, faulter = m.top_faulter }
    end,
    says = {
      'memory limit: cgroup {cgroup} lives at its {limit} limit: working set {working_set}, {refaults} refaults, ' ..
        'reclaim {reclaim}; the workload needs about {need} (peak working set + refaulting set)',
      'memory limit: cgroup {cgroup} lives at its {limit} limit ({usage} used, {limit_hits} limit hits, {refaults} ' ..
        'refaults): {process} reclaims and re-reads its page cache',
      'memory limit: cgroup {cgroup} lives at its {limit} limit ({usage} used)',
      'memory pressure: reclaim, swapping or faults stall the workload',
    },
    fixes = {
      'raise the memory limit of cgroup {cgroup} from {limit} to about {need} ({need_method}), then check that ' ..
        'refaults stop',
      'raise the memory limit of cgroup {cgroup} above {limit} (it refaults {refaults}); the working set is ' ..
        '{working_set}',
      'raise the memory limit of cgroup {cgroup} above {limit}: it refaults {refaults} (the working set it needs is ' ..
        'not measured yet: raise in steps until refaults stop)',
      'or shrink what {process} keeps in memory (smaller caches, stream instead of loading)',
    },
  },
  {
    id = 'swapping', resource = 'memory', title = 'swapping',
    mechanism = 'anonymous memory is swapped out and faulted back in: the workload stalls on swap-ins',
    phrases = { 'swap in', 'swap out', 'swap storm', 'paging out', 'swap space' },
    terms = { 'swap', 'swapping', 'swapped', 'swaps' },
    keywords = { 'swap', 'swapping', 'paging', 'swapped', 'memory', 'fault', 'faults', 'zram' },
    needs = { 'use' },
    predicates = {
      { needs = 'use', weight = 2, test = function(ev)
        local s = ev.memory.swap_per_s
        if not s then return nil, 'swap traffic not measured' end
        local line = string.format('swap-ins and swap-outs %.1f pages/s', s)
        if s >= 100 then return 'supports', line, 2 end
        if s >= 1 then return 'supports', line, 1 end
        return 'refutes', line, 2
      end },
      { needs = 'use', weight = 1, test = function(ev)
        local f = ev.task and ev.task.majflt_per_s
        if f and f >= 10 then return 'supports', string.format('the target takes %.0f major faults/s', f) end
      end },
    },
    fills = { 'process', 'swap', 'faults' },
    culprit = function(ev)
      return { process = ev.process, swap = ev.memory and ev.memory.swap_per_s
        and string.format('%.0f pages/s', ev.memory.swap_per_s),
        faults = ev.task and rate(ev.task.majflt_per_s) }
    end,
    says = { 'swapping: {swap} swapped while {process} takes {faults} major faults', 'swapping: {swap} swapped' },
    fixes = {
      'give {process} the memory it touches (or run less beside it), so its pages stay resident; it swaps {swap}',
      'keep latency-critical memory resident (mlock) or lower vm.swappiness',
    },
  },
  {
    id = 'peer-wait', resource = 'wait', title = 'waiting on a peer',
    mechanism = 'the workload is blocked waiting for another process or a remote service to answer, while its own ' ..
      'resources idle',
    phrases = { 'waiting on a peer', 'waits on the peer', 'remote service', 'slow backend', 'slow dependency',
      'downstream service', 'upstream service', 'slow database', 'blocked peer', 'off cpu',
      'slow peer' },
    terms = { 'peer', 'backend', 'upstream', 'downstream', 'rpc' },
    keywords = { 'peer', 'blocked', 'waiting', 'waits', 'wait', 'remote', 'backend', 'upstream', 'downstream',
      'dependency', 'database', 'pipe', 'rpc', 'sleeps', 'sleeping', 'off-cpu', 'idle' },
    needs = { 'tsa' },
    predicates = {
      { needs = 'tsa', weight = 2, test = function(ev, T)
        local d = ev.wait
        local busy = ev.states.cpu + ev.states.runq
        if d and (d.reason == 'ipc' or d.reason == 'net' or d.reason == 'child') then
          local line = string.format('the target waits on %s %.0f%% of its wall time (on a CPU or runnable %.0f%%)',
            d.label, d.share, busy)
          if d.share >= T.wait_share_high then return 'supports', line, 2 end
          if d.share >= T.wait_share_medium then return 'supports', line, 1 end
          return nil, line .. ': no wait holds a large share'
        end
        if busy >= 50 then
          return 'refutes', string.format('the target is on a CPU or runnable %.0f%% of its wall time', busy), 2
        end
        if d then
          return 'refutes', string.format('the target waits on %s (%.0f%%), not on a peer', d.label, d.share), 2
        end
        return 'refutes', 'the target\'s waits are idle ones (poll/epoll, sleep, condition variables): nothing ' ..
          'holds it up', 2
      end },
      -- the flow it waits on loses packets: the network holds it up, not the peer
      { needs = 'tsa', weight = 1, test = function(ev)
        local c = ev.netc
        local w = c and c.wait
        if c and c.kind == 'loss' and w and (w.flow == c.flow or c.flow:sub(-#w.remote - 1) == ' ' .. w.remote) then
          return 'refutes', 'the flow it waits on loses packets: ' .. c.text
        end
      end },
    },
    fills = { 'peer', 'wait_pct', 'also', 'remote', 'queues', 'flow', 'answer' },
    culprit = function(ev)
      local d = ev.wait
      if not d or (d.reason ~= 'ipc' and d.reason ~= 'net' and d.reason ~= 'child') then return {} end
      -- waiting on a remote service: its socket's queues say which side is slow
      local n = d.reason == 'net' and ev.net or {}
      local nc = ev.netc and ev.netc.kind == 'slow_peer' and ev.netc or nil
      return { peer = tostring(d.object or d.label), wait_pct = pct(d.share), wait_phrase = ev.wait_phrase,
        flow = nc and nc.flow, answer = nc and nc.answer and string.format('%.1f ms', nc.answer.ms),
        also = d.also and string.format('%s %.0f%%', d.also.label, d.also.share), remote = n.remote,
        queues = n.send_q and string.format('send-q %s, recv-q %s via %s', util.fmt_bytes(n.send_q),
          util.fmt_bytes(n.recv_q or 0), tostring(n.socket_iface or '?')) }
    end,
    says = {
      'the workload is blocked: it waits on {wait_phrase}; TCP flow {flow} carries it without loss, the peer '
        .. 'takes {answer} to answer',
      'the workload is blocked: it waits on {wait_phrase}; TCP flow {flow} carries it without loss: the peer is slow '
        .. 'to answer',
      'the workload is blocked: it waits on {wait_phrase}; its socket to {remote} holds {queues}',
      'the workload is blocked: it waits on {wait_phrase}',
      'the workload is blocked: it waits on {peer} {wait_pct} of its wall time',
      'the workload is blocked: it waits on a peer',
    },
    fixes = {
      'find out why {peer} answers slowly: investigate it (perf_manual investigate --workload PEER); the target ' ..
        'waits on it {wait_pct} of its wall time',
      'stop waiting on {peer} one request at a time: pipeline or batch the requests, add a timeout and cache answers',
    },
  },
  {
    id = 'net-retransmits', resource = 'network', title = 'network retransmits',
    mechanism = 'packets are lost or queued on the path: TCP retransmits and backs off, so sends and answers stall',
    phrases = { 'packet loss', 'network loss', 'tcp retransmit', 'socket buffer', 'send buffer', 'write buffer',
      'receive buffer', 'network congestion', 'network saturated', 'network bottleneck', 'slow network',
      'network latency',
      'dropped packets' },
    terms = { 'retransmit', 'retransmits', 'retransmission', 'retransmissions', 'retrans' },
    keywords = { 'network', 'tcp', 'socket', 'packet', 'packets', 'retransmit', 'drops', 'dropped', 'bandwidth', 'nic',
      'congestion', 'buffer', 'link', 'interface', 'net' },
    needs = { 'use', 'tsa' },
    predicates = {
      { needs = 'use', weight = 2, test = function(ev)
        local r = ev.net.retrans_per_s
        if not r then return nil, 'TCP retransmits not measured' end
        local line = string.format('TCP retransmits %.1f/s (%s)', r, ev.net.scope or 'system-wide')
        if r >= 10 then return 'supports', line, 2 end
        if r >= 1 then return 'supports', line, 1 end
        -- a lossy flow stalls on the retransmit timer: a quiet window is no proof when the tracer saw loss
        if ev.netc and ev.netc.kind == 'loss' then return nil, line .. ' in the USE window' end
        return 'refutes', line, 2
      end },
      -- the net tracer saw the retransmits, on a flow of the target's
      { needs = 'net', weight = 2, test = function(ev)
        local c = ev.netc
        if c and c.kind == 'loss' then return 'supports', c.text, 2 end
      end },
      { needs = 'use', test = function(ev)
        local row = ev.use.rows.network
        if row and (row.status == 'HIGH' or row.status == 'warn') then
          return 'supports', string.format('USE %s: %s (saturation %s)', row.name, row.status, row.saturation), 1
        end
      end },
      { needs = 'tsa', weight = 1, test = function(ev)
        local s = ev.states.net
        local line = string.format('the target waits on the network %.0f%% of its wall time', s)
        if s >= 25 then return 'supports', line end
        if s < 5 then return 'refutes', line end
      end },
    },
    fills = { 'iface', 'retrans', 'remote', 'queues', 'flow', 'flow_retrans', 'reasons' },
    culprit = function(ev)
      local o = ev.objects.net
      local n = ev.net or {}
      local nc = ev.netc and ev.netc.kind == 'loss' and ev.netc or nil
      return { iface = n.iface, retrans = rate(n.retrans_per_s), remote = n.remote or (o and o.name),
        flow = nc and (nc.flow .. (nc.pid and string.format(' (pid %d %s)', nc.pid, tostring(nc.comm)) or '')),
        flow_retrans = nc and string.format('%d segments (%s)', nc.segs, rate(nc.per_s) or '?'),
        reasons = nc and nc.reasons,
        queues = n.send_q and string.format('send-q %s, recv-q %s, %s unrecovered retransmits on the socket',
          util.fmt_bytes(n.send_q), util.fmt_bytes(n.recv_q or 0), tostring(n.socket_retrans or 0)) }
    end,
    says = {
      'network retransmits: flow {flow} retransmits {flow_retrans}; the kernel drops packets: {reasons}',
      'network retransmits: flow {flow} retransmits {flow_retrans}',
      'network retransmits: {retrans} TCP retransmits while the target sends to {remote} via {iface} ({queues})',
      'network retransmits: {retrans} TCP retransmits while the target waits on {remote}',
      'network retransmits: {retrans} TCP retransmits',
    },
    fixes = {
      'find where the packets of flow {flow} are lost ({reasons}): {flow_retrans} retransmitted',
      'find where the packets to {remote} are lost or queued (interface {iface}, the link, the peer\'s receive ' ..
        'queue): {retrans} retransmits',
      'find where packets are lost or queued: {retrans} retransmits; check interface drops and the peer\'s receive ' ..
        'queue',
    },
  },
  {
    id = 'net-listen-overflow', resource = 'network', title = 'a listener that stops accepting',
    mechanism = 'the server does not accept connections as fast as they come: its accept queue is full, the ' ..
      'kernel drops the new ones and their clients resend the SYN a second or more later (or give up)',
    phrases = { 'accept queue', 'listen queue', 'listen overflow', 'listen overflows', 'listener overflow',
      'stops accepting', 'not accepting', 'connections dropped', 'connection timeouts', 'connect timeouts',
      'syn backlog', 'backlog full' },
    terms = { 'backlog', 'somaxconn', 'listendrops', 'listenoverflows' },
    keywords = { 'listener', 'listen', 'accept', 'accepting', 'backlog', 'connections', 'connect', 'timeouts', 'queue',
      'syn', 'server' },
    needs = { 'use' },
    predicates = {
      { needs = 'use', weight = 2, test = function(ev)
        local c = ev.netc
        if c and c.kind == 'listener' then return 'supports', c.text, 2 end
        if ev.net.bpf then
          return 'refutes', 'no listener of the target dropped a connection (BPF listener drops)', 2
        end
        local o = ev.net.listen_overflows
        if o and o > 0 then return 'supports', string.format('%d listen overflows (%s)', o, ev.net.scope), 1 end
        if o then return 'refutes', 'no listen overflow (' .. ev.net.scope .. ')', 1 end
      end },
    },
    fills = { 'listener', 'dropped', 'queue' },
    culprit = function(ev)
      local c = ev.netc
      if not c or c.kind ~= 'listener' then return {} end
      return { listener = string.format('port %d of pid %s (%s)', c.port, tostring(c.pid or '?'), tostring(c.comm)),
        dropped = string.format('%d (%s)', c.dropped, rate(c.per_s) or '?'),
        queue = string.format('%s queued, backlog %s', tostring(c.queue), tostring(c.backlog)) }
    end,
    says = {
      'a listener that stops accepting: listener {listener} dropped {dropped} connections, its accept queue full '
        .. '({queue})',
      'a listener that stops accepting: its accept queue overflows',
    },
    fixes = {
      'make the server behind listener {listener} accept as fast as connections come (an accept loop that does not '
        .. 'block, more acceptors), then size its backlog (listen() argument, net.core.somaxconn); now {queue}',
      'find the listener whose accept queue overflows (ss -ltn: Recv-Q at Send-Q) and make its server accept',
    },
  },
  {
    id = 'service-errors', resource = 'service', title = 'error burst at the service',
    mechanism = 'the service fails requests: it answers 5xx or drops connections',
    phrases = { 'error burst', 'fails requests', 'failed requests', 'failing requests', 'error rate', 'errors spike',
      'http 500', 'internal server error', 'requests fail', 'service fails', 'service errors' },
    terms = { '5xx', '500s' },
    keywords = { 'errors', 'error', 'fails', 'failing', 'failed', '5xx', '500', 'exceptions', 'requests', 'service',
      'endpoint', 'http' },
    needs = { 'red' },
    predicates = {
      { needs = 'red', weight = 2, test = function(ev, T)
        local r = ev.red
        if not r.error_ratio then return nil, 'no request answered or failed in the RED result' end
        local line = string.format('%s of %s requests failed (%.1f%%%s)', tostring(r.errors), tostring(r.requests),
          r.error_ratio * 100, r.kinds and (': ' .. r.kinds) or '')
        if r.error_ratio >= T.error_ratio_high then return 'supports', line, 2 end
        if r.error_ratio >= T.error_ratio_medium then return 'supports', line, 1 end
        if r.error_ratio < T.error_ratio_medium / 10 then return 'refutes', line, 2 end
        return nil, line .. ': too few to call the service failing'
      end },
    },
    fills = { 'error_pct', 'kinds', 'endpoint' },
    culprit = function(ev)
      local r = ev.red or {}
      return { error_pct = r.error_ratio and string.format('%.1f%%', r.error_ratio * 100), kinds = r.kinds,
        endpoint = r.endpoint }
    end,
    says = {
      'the service fails requests: {error_pct} errors ({kinds})',
      'the service fails requests: {error_pct} errors',
    },
    fixes = {
      'read the service\'s logs for the {kinds} answers of {endpoint} in the measured window: the errors come from ' ..
        'the service, not the load',
      'read the service\'s logs for the {kinds} answers in the measured window',
    },
  },
  {
    id = 'service-latency', resource = 'service', title = 'slow service',
    mechanism = 'the service answers slowly: its latency percentiles are past what users notice',
    phrases = { 'answers slowly', 'slow service', 'slow responses', 'slow requests', 'high latency', 'p99 latency',
      'latency spike', 'tail latency', 'response time' },
    terms = { 'p99', 'p95', 'p999' },
    keywords = { 'slow', 'slowly', 'latency', 'p99', 'p50', 'service', 'requests', 'responses', 'endpoint' },
    needs = { 'red' },
    predicates = {
      { needs = 'red', weight = 2, test = function(ev, T)
        local p99 = ev.red.p99_s
        if not p99 then return nil, 'no latency in the RED result' end
        local line = string.format('requests take %.1f ms at p99 (threshold %g ms)', p99 * 1e3, T.latency_p99_ms_medium)
        if p99 * 1e3 >= T.latency_p99_ms_high then return 'supports', line, 2 end
        if p99 * 1e3 >= T.latency_p99_ms_medium then return 'supports', line, 1 end
        return 'refutes', line, 2
      end },
    },
    fills = { 'p99', 'endpoint' },
    culprit = function(ev)
      return { p99 = ev.red and ev.red.p99_text, endpoint = ev.red and ev.red.endpoint }
    end,
    says = { 'the service answers slowly: p99 latency {p99}' },
    fixes = { 'follow the time of a slow request of {endpoint}: on CPU, waiting on locks, disk or a peer ' ..
      '(perf_manual investigate --workload SERVICE)' },
  },
}

local REQUIRED = { 'id', 'resource', 'mechanism', 'predicates' }

--- Checks an entry's form; returns nil or the reason it is malformed.
function M.check(e)
  if type(e) ~= 'table' then return 'an entry must be a table' end
  for _, k in ipairs(REQUIRED) do
    if e[k] == nil then return 'missing field ' .. k end
  end
  if type(e.id) ~= 'string' or not e.id:match('^[%w_%-]+$') then
    return 'id must be a word (letters, digits, - or _)'
  end
  if type(e.predicates) ~= 'table' then return 'predicates must be a list' end
  for i, p in ipairs(e.predicates) do
    if type(p) ~= 'table' or type(p.test) ~= 'function' or type(p.needs) ~= 'string' then
      return 'predicate ' .. i .. ' must be { needs = "tsa", weight = 1, test = function(ev, T) ... end }'
    end
  end
  for _, k in ipairs({ 'phrases', 'terms', 'keywords', 'says', 'fixes', 'fills', 'needs' }) do
    if e[k] ~= nil and type(e[k]) ~= 'table' then return k .. ' must be a list' end
  end
  if e.culprit ~= nil and type(e.culprit) ~= 'function' then return 'culprit must be a function(ev)' end
  if not (e.phrases or e.terms or e.keywords) then return 'an entry needs phrases, terms or keywords to match text' end
  return nil
end

local team, team_dirs, loaded = {}, {}, true
-- a search path set before this module was loaded (perf_manual.verbs.set_path)
do
  local verbs = package.loaded['perf_manual.verbs']
  if verbs and verbs.team_dirs then team_dirs, loaded = verbs.team_dirs(), false end
end

--- The playbook directories whose `hypothesis_catalogue.lua` (a list of entries)
--- adds to the built-in catalogue; read on first use.
function M.set_path(dirs)
  team_dirs, loaded, team = dirs or {}, false, {}
end

--- Adds team entries (the first directory on the path wins for an id).
function M.extend(list, from)
  for j, e in ipairs(list) do
    local why = M.check(e)
    if why then util.user_error((from or 'hypotheses') .. ': entry ' .. j .. ': ' .. why) end
    e.from = e.from or from
    team[#team + 1] = e
  end
end

--- Drops the team entries (tests).
function M.reset() team = {} end

local function load_team()
  loaded = true
  for _, d in ipairs(team_dirs) do
    local path = d .. '/hypothesis_catalogue.lua'
    local f = io.open(path)
    if f then
      f:close()
      local chunk, err = loadfile(path)
      if not chunk then util.user_error(err) end
      local ok, list = pcall(chunk)
      if not ok then util.user_error(path .. ': ' .. tostring(list)) end
      if type(list) ~= 'table' then util.user_error(path .. ': expected a list of entries ({ { id = ..., ... } })') end
      M.extend(list, path)
    end
  end
end

--- Every entry: the team's first (their ids replace built-in ones), then the built-in ones.
function M.entries()
  if not loaded then load_team() end
  local out, seen = {}, {}
  for _, e in ipairs(team) do
    if not seen[e.id] then seen[e.id] = true; out[#out + 1] = e end
  end
  for _, e in ipairs(M.builtin) do
    if not seen[e.id] then seen[e.id] = true; out[#out + 1] = e end
  end
  return out
end

--- The entry with this id, or nil.
function M.get(id)
  for _, e in ipairs(M.entries()) do if e.id == id then return e end end
  return nil
end

return M
