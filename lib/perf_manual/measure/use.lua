--- USE measurement: numbers from the /proc collectors (system, the
--- target process, its cgroups), the thread-state sampler and, when BPF
--- can be used, the sched, io and lock tracers, sampled over one session
--- window. Returns the measures perf_manual.analyzers.use judges; judges
--- nothing itself.
---
---   local m = require('perf_manual.measure.use').collect { target = 'system', duration = 5, interval = 1 }
local util = require('perf_manual.util')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local cpu = require('perf_manual.collectors.cpu')
local memory = require('perf_manual.collectors.memory')
local disk = require('perf_manual.collectors.disk')
local network = require('perf_manual.collectors.network')
local process = require('perf_manual.collectors.process')
local threads = require('perf_manual.collectors.threads')
local cgc = require('perf_manual.collectors.cgroup')
local sys = require('perf_manual.sys')
local sched = require('perf_manual.tracers.sched')
local iot = require('perf_manual.tracers.io')
local lock = require('perf_manual.tracers.lock')
local lockhold = require('perf_manual.tracers.lockhold')
local tsa = require('perf_manual.measure.tsa')
local memnet = require('perf_manual.measure.memnet')
local netuse = require('perf_manual.measure.netuse')
local kmsg = require('perf_manual.collectors.kmsg')
local oncpu = require('perf_manual.profilers.oncpu')
local profilers = require('perf_manual.profilers')
local findings = require('perf_manual.analyzers.findings')
local pstat = require('posix.sys.stat')

local M = {}

local function first_missing(...)
  for i = 1, select('#', ...) do
    local t = select(i, ...)
    local _, why = next(t and t.missing or {})
    if why then return why end
  end
end

--- System-wide measures between two snapshot sets.
local function system_measures(m, a, b, gauges)
  if a.cpu and b.cpu then
    local r = cpu.rates(a.cpu, b.cpu)
    local t = r.total or {}
    m.ncpu = r.ncpu or m.ncpu
    m.cpu = { busy_pct = t.busy_pct, user_pct = t.user_pct, system_pct = t.system_pct, iowait_pct = t.iowait_pct,
      steal_pct = t.steal_pct, psi_some_pct = r.psi and r.psi.some_pct, ctxt_per_s = r.ctxt_per_s,
      load1 = r.load1 }
    -- per CPU: one CPU pinned (an IRQ, a pinned task) hides in the average
    m.cpu.cpus = util.array()
    for _, c in ipairs(r.cpus or {}) do
      m.cpu.cpus[#m.cpu.cpus + 1] = { id = c.id, busy_pct = c.busy_pct, user_pct = c.user_pct,
        system_pct = c.system_pct, irq_pct = c.irq_pct, softirq_pct = c.softirq_pct }
    end
    if gauges.running_n > 0 then m.cpu.runnable_avg = gauges.running_sum / gauges.running_n end
    if not t.busy_pct then m.cpu.missing_stat = (r.missing or {}).stat or 'no /proc/stat' end
    if not m.cpu.psi_some_pct then m.cpu.missing_psi = (r.missing or {}).psi end
  end
  if a.memory and b.memory then
    local r = memory.rates(a.memory, b.memory)
    m.memory = { used_pct = r.used_pct, available_bytes = r.available_bytes, total_bytes = r.total_bytes,
      psi_some_pct = r.psi and r.psi.some_pct, psi_full_pct = r.psi and r.psi.full_pct,
      pgscan_direct_per_s = r.pgscan_direct_per_s, pgscan_kswapd_per_s = r.pgscan_kswapd_per_s,
      pswpin_per_s = r.pswpin_per_s, pswpout_per_s = r.pswpout_per_s, refault_per_s = r.refault_per_s,
      pgmajfault_per_s = r.pgmajfault_per_s, oom_kill = r.oom_kill }
    local miss = r.missing or {}
    if not r.used_pct then m.memory.missing_meminfo = miss.meminfo or miss.used_pct end
    if not m.memory.psi_some_pct then m.memory.missing_psi = miss.psi end
    if r.oom_kill == nil then m.memory.missing_oom = miss.oom_kill or miss.vmstat end
  end
  if a.disk and b.disk then
    local r = disk.rates(a.disk, b.disk)
    m.io = { psi_some_pct = r.psi and r.psi.some_pct, psi_full_pct = r.psi and r.psi.full_pct }
    m.disks, m.not_disks = {}, {}
    if r.missing and r.missing.devices then m.disks_missing = r.missing.devices end
    for _, d in ipairs(r.devices or {}) do
      if d.skip_reason or not d.is_disk then
        -- RAM-backed and virtual devices are not disks: never a USE row
        if d.whole_disk ~= false then
          m.not_disks[#m.not_disks + 1] = { name = d.name,
            why = d.skip_reason or ('not a disk (' .. tostring(d.kind) .. ')') }
        end
      elseif d.whole_disk ~= false then
        m.disks[#m.disks + 1] = { name = d.name, util_pct = d.util_pct, aqu_sz = d.aqu_sz, r_s = d.r_s, w_s = d.w_s,
          rkB_s = d.rkB_s, wkB_s = d.wkB_s, r_await = d.r_await, w_await = d.w_await, f_s = d.f_s }
      end
    end
  end
  if a.network and b.network then
    local r = network.rates(a.network, b.network)
    m.nets = {}
    if r.missing and r.missing.interfaces then m.nets_missing = r.missing.interfaces end
    for _, n in ipairs(r.interfaces or {}) do
      m.nets[#m.nets + 1] = { name = n.name, rx_bytes_per_s = n.rx_bytes_per_s, tx_bytes_per_s = n.tx_bytes_per_s,
        rx_drop_per_s = n.rx_drop_per_s, tx_drop_per_s = n.tx_drop_per_s, rx_errs_per_s = n.rx_errs_per_s,
        tx_errs_per_s = n.tx_errs_per_s, speed_bytes_per_s = n.speed_mbps and n.speed_mbps * 1e6 / 8,
        virtual = n.virtual }
    end
    local tcp, ext = r.tcp or {}, r.tcpext or {}
    m.tcp = { retrans_per_s = tcp.retrans_segs_per_s, retrans_pct = tcp.retrans_pct,
      listen_overflows = ext.listen_overflows, listen_drops = ext.listen_drops,
      -- CLOCK_MONOTONIC bounds of the rates, so another counter can be read over the same window
      window = { a.network.time, b.network.time } }
  end
end

--- The system snapshot set system_measures compares (netpaths: a target's
--- network namespace, see network.netns_paths; nil: the host's).
function M.snapshot_system(netpaths)
  return { cpu = cpu.sample(), memory = memory.sample(), disk = disk.sample(), network = network.sample(netpaths) }
end

--- System-wide measures (m.cpu, m.memory, m.io, m.disks, m.nets, m.tcp)
--- between two snapshot sets; gauges = { running_sum =, running_n = }
--- (samples of /proc/stat procs_running, the checker excluded).
M.system_measures = system_measures

--- Measures of one process between two process snapshots.
local function task_measures(m, a, b)
  local r, err = process.rates(a, b)
  if not r then m.notes[#m.notes + 1] = err; return end
  local t = { pid = r.pid, comm = r.comm, cpu_pct = r.cpu_pct, runq_wait_pct = r.runq_wait_pct,
    rss_bytes = r.rss_bytes, majflt_per_s = r.majflt_per_s, read_bytes_per_s = r.read_bytes_per_s,
    write_bytes_per_s = r.write_bytes_per_s, threads = r.threads, vol_ctxt_per_s = r.vol_ctxt_per_s }
  if r.cpu_pct and r.cpu_pct > 0 then
    -- shares of the target's own CPU time, for the reclaim trap
    t.user_pct = 100 * r.user_pct / r.cpu_pct
    t.system_pct = 100 * r.sys_pct / r.cpu_pct
  end
  if r.read_bytes_per_s and r.write_bytes_per_s then t.io_bytes_per_s = r.read_bytes_per_s + r.write_bytes_per_s end
  if m.cpu and m.cpu.busy_pct and m.ncpu and r.cpu_pct then
    local sys_busy = m.cpu.busy_pct * m.ncpu -- in % of one CPU
    t.share_pct = sys_busy > 0 and math.min(100, 100 * r.cpu_pct / sys_busy) or nil
  end
  t.missing = r.missing
  m.task = t
end

--- Cgroup measures (memory limit, usage, limit hits, OOM kills, refaults;
--- CPU quota and throttling) between two cgroup snapshots.
local function cgroup_measures(m, a, b)
  local r = cgc.rates(a, b)
  local e = r.elapsed
  if r.memory and b.memory then
    local rm = r.memory
    local mem = { version = b.memory.version, dir = b.memory.dir, limit_bytes = rm.limit_bytes,
      usage_bytes = rm.usage_bytes, usage_pct = rm.usage_pct, max_usage_bytes = b.memory.max_usage_bytes,
      limit_hits = rm.limit_hits, oom_kills = rm.oom_kills, under_oom = rm.under_oom,
      psi_some_pct = r.pressure and r.pressure.memory and r.pressure.memory.some_pct }
    if rm.limit_hits and e then mem.limit_hits_per_s = rm.limit_hits / e end
    local sa, sb = a.memory and a.memory.stat, b.memory.stat
    if sa and sb and e then
      local function refaults(st)
        local f = st.workingset_refault_file or st.workingset_refault
        return f and (f + (st.workingset_refault_anon or 0))
      end
      local ra, rb = refaults(sa), refaults(sb)
      if ra and rb and rb >= ra then mem.refault_per_s = (rb - ra) / e end
    end
    m.cgroup_memory = mem
  end
  if r.cpu and b.cpu then
    local rc = r.cpu
    m.cgroup_cpu = { version = b.cpu.version, dir = b.cpu.dir, quota_cores = rc.quota_cores, usage_pct = rc.usage_pct,
      throttled_pct = rc.throttled_pct, nr_throttled = rc.nr_throttled, nr_periods = rc.nr_periods,
      throttled_ms_per_s = rc.throttled_ms_per_s, quota_dir = rc.quota_dir }
  end
  if r.cpuset then
    m.cgroup_cpuset = { count = r.cpuset.count, list = r.cpuset.list, dir = b.cpuset and b.cpuset.dir }
  end
  m.cgroup_missing = r.missing
end

--- The busiest threads (of the target, or of the machine) over the window.
local function thread_measures(m, a, b, scope)
  local r = cpu.thread_rates(a, b)
  local top, total = util.array(), 0
  for _, x in ipairs(r.threads) do total = total + x.pct end
  for i = 1, math.min(5, #r.threads) do
    local x = r.threads[i]
    top[i] = { tid = x.tid, pid = x.pid, pct = x.pct, wait_pct = x.wait_pct, comm = cpu.thread_comm(x.pid, x.tid),
      process = targets.comm(x.pid) }
  end
  m.threads_cpu = { scope = scope, elapsed = r.elapsed, threads = b.count, top = top, total_pct = total,
    missing = r.missing and r.missing.threads or nil }
end

--- What the target can use at most, in CPUs: the smallest of the online
--- CPUs, its affinity (taskset), its cpuset and its cgroup's quota.
local function capacity_measures(m, affinity)
  local c = { online = m.ncpu, cpus = m.ncpu, limited_by = 'online' }
  local function lower(n, why)
    if n and (not c.cpus or n < c.cpus) then c.cpus, c.limited_by = n, why end
  end
  if affinity then c.affinity, c.affinity_list = affinity.count, affinity.list; lower(affinity.count, 'affinity') end
  local cs = m.cgroup_cpuset
  if cs then c.cpuset, c.cpuset_list = cs.count, cs.list; lower(cs.count, 'cpuset') end
  local q = m.cgroup_cpu and m.cgroup_cpu.quota_cores
  if q then c.quota = q; lower(q, 'quota') end
  -- how busy the CPUs it may run on were (by anyone): a pinned target
  -- competes for those, whatever the other CPUs do
  local ids = c.limited_by == 'affinity' and affinity.cpus
    or c.limited_by == 'cpuset' and cs.list and cpu.parse_cpu_list(cs.list) or nil
  if ids and m.cpu and m.cpu.cpus then
    local by, sum, n = {}, 0, 0
    for _, x in ipairs(m.cpu.cpus) do by[x.id] = x end
    for _, id in ipairs(ids) do
      if by[id] and by[id].busy_pct then sum, n = sum + by[id].busy_pct, n + 1 end
    end
    if n > 0 then c.allowed_busy_pct = sum / n end
  end
  -- the target's use against what it can use
  local used = m.task and m.task.cpu_pct or m.cgroup_cpu and m.cgroup_cpu.usage_pct
  if used and c.cpus and c.cpus > 0 then c.used_pct = math.min(100, used / c.cpus) end
  m.capacity = c
end

-- ---------------------------------------------------------------------------
-- BPF sources: when the kernel side is available, run-queue latency (sched
-- tracer) judges CPU saturation, block I/O latency (io tracer) disk
-- saturation and errors, and futex/kernel lock waits (lock tracer) the
-- Mutex row. Each measure says where it came from; without BPF the /proc,
-- PSI and thread-state figures stand alone and the reason is given.
-- ---------------------------------------------------------------------------

--- Starts the tracers on the session (under its overhead budget). Returns
--- { off = why BPF is not used at all }.
function M.bpf_start(s, opts)
  local src = { off = measure.bpf_unavailable(opts.bpf == false and 'turned off (--no-bpf)' or nil) }
  if src.off then return src end
  local t = s.target
  local filter, why = targets.bpf_filter(t)
  if not filter then src.off = why; return src end
  if opts.lock_hold and not (filter.pid or filter.cgroup) then
    util.user_error('use-check: --lock-hold needs a target (--target PID, a cgroup, a service or -- COMMAND): '
      .. lockhold.needs_target)
  end
  s:start_tracer('sched', sched, { pid = filter.pid, cgroup = filter.cgroup, ns = true, runqlen = t.kind == 'system' })
  -- devices are shared: their latency is every requester's, whatever the target
  s:start_tracer('io', iot, { queued = true })
  s:start_tracer('lock', lock, { pid = filter.pid, cgroup = filter.cgroup })
  -- hold time: uprobes on the C library of a process, or of a cgroup's (a
  -- launched command's) processes. Asked for only: every lock call of the
  -- target then pays a uprobe trap (about 40 us on this kind of VM)
  if opts.lock_hold then
    s:start_tracer('lockhold', lockhold, { pid = filter.pid, cgroup = not filter.pid and filter.cgroup or nil })
  end
  -- TCP faults (retransmits, drops, listen overflows, refused connects) for the Network row
  netuse.start(s, filter)
  -- where a process's time goes: its thread states over the same window
  if t.kind ~= 'system' and opts.tsa ~= false then
    local st, tsa_why = tsa.start_on(s, {})
    if st then src.tsa = st else src.tsa_why = tsa_why end
  end
  -- where its CPU time goes: the hot path, from a light on-CPU profile
  -- (M.PROFILE_HZ on every CPU: about 0.1% of one CPU here)
  if t.kind ~= 'system' and opts.profile ~= false then
    local f = { pid = filter.pid }
    if not f.pid then
      local cg = filter.cgroup
      if type(cg) == 'string' then
        local st = pstat.stat(cg)
        cg = st and st.st_ino
      end
      f.cgroup_id = cg
    end
    if f.pid or f.cgroup_id then
      -- stats off: run-time accounting is global, and the tracers' sampling
      -- windows must stay the only time it is on
      local p, perr = oncpu.start { pid = f.pid, cgroup_id = f.cgroup_id, freq = M.PROFILE_HZ, stats = false }
      if p then src.prof, src.prof_t = p, sys.now() else src.prof_why = tostring(perr) end
    end
  end
  return src
end

M.PROFILE_HZ = 49

--- Polls the light profile (new processes' mappings) at most every 0.1 s.
function M.bpf_tick(src, now)
  if src.prof and now - src.prof_t >= 0.1 then
    src.prof_t = now
    src.prof:poll()
  end
end

-- The hot path of the target's CPU time: the culprit sentence of the
-- profile and its heaviest stacks (folded, at most 50 lines).
local function cpu_profile(p)
  local lines = {}
  for line in profilers.folded(p):gmatch('[^\n]+') do lines[#lines + 1] = line end
  local function n(l) return tonumber(l:match(' (%d+)$')) or 0 end
  table.sort(lines, function(a, b) return n(a) > n(b) end)
  for i = #lines, 51, -1 do lines[i] = nil end
  local doc = { samples = p.total, freq = p.freq, duration_s = p.duration, bpf_run_time_ns = p.bpf_run_time_ns,
    top = profilers.top(p, 10), folded = table.concat(lines, '\n') .. (#lines > 0 and '\n' or '') }
  -- the culprit from every stack, not only the ones kept
  local c = findings.cpu_culprit({ folded = profilers.folded(p), top = doc.top }, nil)
  if c then
    doc.culprit = { text = c.text, hot = c.hot, hot_share = c.hot_share, path = c.path, user_pct = c.user_pct,
      kernel_pct = c.kernel_pct, kernel_path = c.kernel_path }
  end
  return doc
end

--- Stops the tracers and turns their results into measures (m.bpf).
function M.bpf_finish(s, src, m)
  if src.tsa and not s.detached.tsa then
    m.tsa = tsa.finish_on(s, src.tsa, nil, {})
  elseif src.tsa then
    src.tsa.tr:stop()
    m.tsa = { available = false, why = 'detached: ' .. tostring(s.detached.tsa) }
  elseif src.tsa_why then
    m.tsa = { available = false, why = src.tsa_why }
  end
  local res = s:stop_tracers({ 'sched', 'io', 'lock', 'net', 'lockhold' })
  local b = { off = src.off, errors = s.errors, detached = s.detached }
  m.bpf = b
  if src.prof then
    local ok, p = pcall(src.prof.stop, src.prof)
    if ok and p then
      m.cpu_profile = p.total > 0 and cpu_profile(p) or { samples = 0 }
    else
      src.prof:close()
      m.cpu_profile = { missing = tostring(p) }
    end
  elseif src.prof_why then
    m.cpu_profile = { missing = src.prof_why }
  end
  local elapsed = m.elapsed or 0
  local sres = res.sched
  if sres and not s.detached.sched then
    local secs = sres.seconds or elapsed
    local total = 0
    for _, g in ipairs(sres.groups or {}) do total = total + (g.total or 0) end
    -- percentiles as the tracer computed them (ns: started with ns = true)
    b.runq = { count = sres.count, avg_ns = sres.avg, p50_ns = sres.p50, p90_ns = sres.p90, p99_ns = sres.p99,
      total_ns = total, seconds = secs,
      -- Little's law: total wait over the interval = tasks waiting on average
      waiting_avg = secs > 0 and total / (secs * 1e9) or nil,
      attach = sres.quality and sres.quality.attach_path, quality = sres.quality }
    if sres.runqlen and sres.runqlen.samples and sres.runqlen.samples > 0 then
      b.runq.runqlen_mean, b.runq.runqlen_waiting_pct = sres.runqlen.mean, sres.runqlen.waiting_pct
    end
  end
  local io = res.io
  if io and not s.detached.io then
    b.io = { devices = {}, attach = io.quality and io.quality.attach_path, quality = io.quality, seconds = io.seconds }
    for _, d in ipairs(io.devices or {}) do
      b.io.devices[d.device] = { count = d.count, iops = d.iops, mean_ns = d.mean_ns, max_ns = d.max_ns,
        p50_us = d.p50_us, p99_us = d.p99_us, inflight_mean = d.inflight_mean, errors = d.errors }
    end
  end
  if res.net and not s.detached.net then b.net = netuse.measures(res.net, elapsed, src.netpaths) end
  -- the files the target's threads wait on in block I/O, and the device they go to
  if type(m.tsa) == 'table' and m.tsa.threads then
    local dc = findings.disk_culprit(m.tsa, io and not s.detached.io and io or nil, nil)
    if dc and dc.file then
      m.disk_culprit = { text = dc.text, file = dc.file, files = #dc.files, threads = dc.threads,
        syscall = dc.syscall, device = dc.device, io_pct = dc.io_pct, p50_ms = dc.p50_ms, p99_ms = dc.p99_ms,
        queue_ms = dc.queue_ms, write_size = dc.write_size, writes_per_s = dc.writes_per_s, sync_pct = dc.sync_pct,
        flushes_per_s = dc.flushes_per_s }
    end
  end
  local lk = res.lock
  if lk and not s.detached.lock then
    local secs = lk.seconds or elapsed
    local n = lk.use and lk.use.utilisation_basis and tonumber(lk.use.utilisation_basis:match('^(%d+)'))
    local by_kind = { lock = 0, wait = 0, other = 0 }
    local hot, hot_wait
    local hex = lock.hex
    -- a timed wait on a condition variable that times out is a worker's idle
    -- tick; on a lock (pthread_mutex_timedlock) it is a failed acquisition
    local errors = { total = 0, by_kind = { etimedout = 0, edeadlk = 0, eownerdead = 0, other = 0 } }
    for _, f in ipairs(lk.futex or {}) do
      for name in pairs(errors.by_kind) do
        local c = f.results and f.results[name] or 0
        if name == 'etimedout' and f.kind ~= 'lock' then c = 0 end
        errors.by_kind[name] = errors.by_kind[name] + c
        errors.total = errors.total + c
      end
    end
    for _, f in ipairs(lk.futex or {}) do
      by_kind[f.kind or 'other'] = (by_kind[f.kind or 'other'] or 0) + f.total_ns
      local mw = secs > 0 and f.total_ns / (secs * 1e9) or 0
      if f.kind == 'lock' and (not hot or mw > hot.mean_waiters) then
        hot = { uaddr = hex(f.uaddr), tgid = f.tgid, mean_waiters = mw,
          waits = f.count, mean_ns = f.mean_ns, max_ns = f.max_ns }
      elseif f.kind ~= 'lock' and (not hot_wait or mw > hot_wait.mean_waiters) then
        hot_wait = { uaddr = hex(f.uaddr), tgid = f.tgid, mean_waiters = mw }
      end
    end
    local function share(ns) return (n and n > 0 and secs > 0) and 100 * math.min(1, ns / (n * secs * 1e9)) or nil end
    local k = lk.kernel and lk.kernel[1]
    b.lock = { seconds = secs, threads = n, futex_traced = lk.futex_traced, kernel_traced = lk.kernel_traced,
      futex_share_pct = lk.use and lk.use.utilisation and 100 * lk.use.utilisation,
      lock_share_pct = share(by_kind.lock), cond_share_pct = share(by_kind.wait),
      waiters_avg = lk.use and lk.use.saturation.mean_waiters, waiters_max = lk.use and lk.use.saturation.max_waiters,
      hot = hot, hot_wait = hot_wait, errors = errors, futex_waits = lk.futex_waits,
      kernel_wait_ns = lk.kernel_wait_ns,
      kernel_hot = k and { addr = k.addr, kind = k.kind, waits = k.count,
        mean_waiters = secs > 0 and k.total_ns / (secs * 1e9) or 0, max_ns = k.max_ns } or nil,
      notes = lk.notes, attach = lk.quality and lk.quality.attach_path, quality = lk.quality }
    local held = res.lockhold and not s.detached.lockhold and res.lockhold.locks[1]
    if held then
      b.lock.hold = { share_pct = held.share and 100 * math.min(1, held.share), holder = held.holder,
        lock = held.name or lock.hex(held.addr), holds = held.count, p99_us = held.p99_us,
        sentence = lockhold.sentence(held) }
    end
    if hot then
      local comm = util.readfile('/proc/' .. hot.tgid .. '/comm')
      hot.comm = comm and comm:gsub('\n$', '') or nil
    end
  end
  return b
end

--- Samples the target for opts.duration seconds on a measurement session;
--- returns the measures the rules judge. opts: target (text or resolved),
--- duration, interval, bpf (false: /proc only), max_overhead, progress =
--- function(text), note = function(text), lock_hz.
function M.collect(opts)
  return measure.with_session({ target = opts.target, duration = opts.duration or 5, what = 'use-check',
    max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note, log = opts.log },
    function(s) return M.collect_on(s, opts) end)
end

function M.collect_on(s, opts)
  s:start()
  local t = s.target
  local duration = s.duration
  local interval = math.min(opts.interval or 1, duration)
  local info = sys.info()
  local m = { target = targets.describe(t), duration = duration, interval = interval, ncpu = info.ncpu,
    page_size = info.page_size, notes = s.notes }
  -- the kernel log from here on: it names the OOM killer's victims
  local klog = kmsg.open()

  local is_pid = t.kind == 'pid'
  -- a target in its own network namespace (a container) has its own TCP
  -- counters, interfaces and sockets: read those, not the host's
  local netpaths
  if t.kind ~= 'system' then netpaths = network.netns_paths(is_pid and t.pid or targets.pids(t)[1]) end
  if netpaths then
    m.netns = { pid = netpaths.pid, ns = netpaths.netns }
    m.notes[#m.notes + 1] = string.format('network figures are those of the network namespace of pid %d (%s), '
      .. 'not the host\'s', netpaths.pid, netpaths.netns)
  end
  local function snap_system() return M.snapshot_system(netpaths) end
  local function snap_task()
    if not is_pid then return nil end
    return process.sample(t.pid)
  end

  -- the cgroups the target lives in (a pid's, or the cgroup/service itself)
  local cg_dirs
  if is_pid then cg_dirs = cgc.resolve({ pid = t.pid })
  elseif t.dirs then cg_dirs = t.dirs end
  if cg_dirs then
    -- a hierarchy's root is the whole machine, already in the system rows
    local mounts, roots = cgc.mounts(), {}
    if mounts.v2 then roots[mounts.v2.dir] = true end
    for _, mt in pairs(mounts.v1) do roots[mt.dir] = true end
    local kept, any = { path = cg_dirs.path }, false
    for k, d in pairs(cg_dirs) do
      if k ~= 'path' and not roots[d] then kept[k] = d; any = true end
    end
    cg_dirs = any and kept or nil
  end
  -- memory and network culprits: the cgroup's working set, faulting processes, sockets
  local mn = memnet.new(t, cg_dirs, netpaths)
  local function snap_cgroup()
    if not cg_dirs then return nil end
    return cgc.sample_dirs(cg_dirs)
  end
  -- per-thread run time: the target's threads, or the machine's (not ours)
  local own = sys.getpid()
  local function snap_threads()
    if t.kind == 'system' then return cpu.sample_threads(nil, { exclude = { [own] = true } }) end
    if is_pid then return cpu.sample_threads({ t.pid }) end
    if t.dirs then return cpu.sample_threads(targets.pids(t)) end
  end

  local gauges = { running_sum = 0, running_n = 0 }
  local function gauge(snap)
    local st = snap.cpu and snap.cpu.stat
    if st and st.procs_running then
      -- the checker itself is one of the running tasks
      gauges.running_sum = gauges.running_sum + math.max(0, st.procs_running - 1)
      gauges.running_n = gauges.running_n + 1
    end
  end

  -- tracers first, so they cover the whole interval
  local bsrc = M.bpf_start(s, opts)
  bsrc.netpaths = netpaths
  s:begin()
  local t0 = s.t0
  local first_sys, first_task, first_cg, first_thr = snap_system(), snap_task(), snap_cgroup(), snap_threads()
  mn:sample()
  if is_pid and not first_task then util.user_error('no process ' .. t.pid) end
  local affinity = is_pid and cpu.affinity(t.pid) or nil
  local last_sys, last_task, last_cg, last_thr = first_sys, first_task, first_cg, first_thr
  local sampler, sampler_err, hz
  if is_pid then
    hz = opts.lock_hz or 50
    sampler, sampler_err = threads.sampler(t.pid, { hz = hz })
  end
  local samples = 0
  local function snapshot(now)
    local snap, ts, cs, th = snap_system(), snap_task(), snap_cgroup(), snap_threads()
    mn:sample()
    -- the system stays measurable when the target goes; the target's own
    -- figures keep their last good sample
    last_sys = snap
    gauge(snap)
    samples = samples + 1
    if t.kind ~= 'system' and (m.exited or not targets.alive(t) or is_pid and not ts) then
      m.exited = true
      m.alive_s = m.alive_s or (now - t0)
    else
      last_task, last_cg, last_thr = ts, cs, th
    end
    if t.kind == 'system' then last_thr = th end
  end
  s:progress(string.format('use-check %s: 0/%.0f s', t.label, duration))
  local ended_by = s:run {
    interval = interval,
    poll = sampler and math.min(interval, 1 / hz) or interval,
    tick = function(now)
      if sampler then sampler:tick() end
      M.bpf_tick(bsrc, now)
      if opts.on_tick then opts.on_tick(now) end
    end,
    on_interval = function(now)
      snapshot(now)
      if opts.on_interval then opts.on_interval(now) end
    end,
    label = function(now)
      return string.format('use-check %s: %.0f/%.0f s', t.label, math.min(now - t0, duration), duration)
    end,
  }
  if ended_by == 'interrupted' then m.stopped = true end
  if ended_by == 'target exited' then m.exited = true; m.alive_s = s.exited_after end
  -- a launched command that ended by itself: its exit status
  m.target = targets.describe(t)
  snapshot(sys.now())
  m.elapsed = (last_sys.cpu and first_sys.cpu and last_sys.cpu.time - first_sys.cpu.time) or s:elapsed()
  m.samples = samples
  M.bpf_finish(s, bsrc, m)
  if klog then
    local victims = kmsg.oom_victims(klog)
    kmsg.close(klog)
    if #victims > 0 then m.oom_victims = victims end
  end
  if m.stopped then
    m.partial = true
    m.notes[#m.notes + 1] = string.format(
      'stopped early (Ctrl-C) after %.1f s of %.1f s: results cover what was collected',
      m.elapsed, duration)
  end
  if m.exited then
    m.partial = true
    m.notes[#m.notes + 1] = string.format('the target exited within the first %.1f s: its figures cover the time '
      .. 'it was alive, the system rows the whole %.1f s', m.alive_s or 0, m.elapsed)
  end
  if samples == 0 then
    m.notes[#m.notes + 1] = 'no complete interval was collected'
    return m
  end
  system_measures(m, first_sys, last_sys, gauges)
  if first_task and last_task and last_task ~= first_task then task_measures(m, first_task, last_task) end
  if m.task and m.task.io_bytes_per_s and m.disks then
    local total = 0
    for _, d in ipairs(m.disks) do total = total + ((d.rkB_s or 0) + (d.wkB_s or 0)) * 1024 end
    if total > 0 then m.task.io_share_pct = math.min(100, 100 * m.task.io_bytes_per_s / total) end
  end
  if first_cg and last_cg and last_cg ~= first_cg then cgroup_measures(m, first_cg, last_cg) end
  if first_thr and last_thr and last_thr ~= first_thr then
    thread_measures(m, first_thr, last_thr, t.kind == 'system' and 'system' or 'target')
    local cc = m.cgroup_cpu
    if cc and not cc.usage_pct and t.kind ~= 'system' and not is_pid then
      -- v1 without a cpuacct group of its own: the sum of its threads' run time
      cc.usage_pct, cc.usage_source = m.threads_cpu.total_pct, 'threads'
    end
  end
  capacity_measures(m, affinity)
  mn:finish(m)
  if t.kind == 'pid' then
    if sampler then
      local l = sampler:result()
      sampler:close()
      m.lock = { futex_share_pct = l.futex_share and 100 * l.futex_share, waiters_avg = l.futex_waiting_mean,
        waiters_max = l.futex_waiting_max, runnable_avg = l.runnable_mean, threads = l.threads_seen,
        samples = l.samples, hz = l.hz, source = l.source, top_futex = l.top_futex, cost = l.cost,
        disk_share_pct = l.shares and l.shares.disk and 100 * l.shares.disk, disk_waiting_avg = l.disk_waiting_mean,
        lock_share_pct = l.futex_lock_share and 100 * l.futex_lock_share,
        cond_share_pct = l.futex_wait_share and 100 * l.futex_wait_share }
      -- the futex most threads queue on: one hot lock is contention, many
      -- threads each parked on their own futex are not
      for _, a in ipairs(l.top_futex_addrs or {}) do
        if a.kind == 'lock' and (not m.lock.hot or a.mean_waiters > m.lock.hot.mean_waiters) then
          m.lock.hot = { uaddr = a.uaddr, mean_waiters = a.mean_waiters, max_waiters = a.max_waiters }
        end
      end
      if not l.futex_share then
        m.lock.missing = (l.missing and (l.missing.futex_share or first_missing(l))) or 'no thread samples'
      end
    else
      m.lock = { missing = sampler_err and tostring(sampler_err) or 'no thread samples' }
    end
  end
  local bl = m.bpf.lock
  if bl then
    -- BPF sees every wait, not samples of them: it judges the Mutex row;
    -- the thread states still tell how much of the time went to disk waits
    local sampled = m.lock
    m.lock = { source = 'bpf', attach = bl.attach, system = t.kind == 'system' or nil,
      futex_share_pct = bl.futex_share_pct, lock_share_pct = bl.lock_share_pct, cond_share_pct = bl.cond_share_pct,
      waiters_avg = bl.waiters_avg, waiters_max = bl.waiters_max, threads = bl.threads, hot = bl.hot,
      errors = bl.errors, kernel_hot = bl.kernel_hot, kernel_wait_ns = bl.kernel_wait_ns, seconds = bl.seconds,
      kernel_traced = bl.kernel_traced, hold = bl.hold }
    if sampled and not sampled.missing then
      m.lock.disk_share_pct, m.lock.disk_waiting_avg = sampled.disk_share_pct, sampled.disk_waiting_avg
      m.lock_sampled = sampled
    end
  elseif t.kind ~= 'pid' then
    m.lock = { missing = 'needs a PID or the BPF lock tracer' .. (m.bpf.off and (': ' .. m.bpf.off)
      or m.bpf.errors.lock and (': ' .. m.bpf.errors.lock) or '') }
  end
  return m
end

return M
