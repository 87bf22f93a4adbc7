--- The USE method (Utilization, Saturation, Errors) for CPU, memory, each
--- disk, each network interface, and locks: a complete checklist (idle disks
--- and interfaces get an 'idle' row).
---
---   local r = use.analyze(m)   -- m: the measures perf_manual.measure.use collected
---   r.rows     -- { Row, ... } in table order
---   r.verdict  -- { resource = 'cpu'|'memory'|'disk'|'network'|'lock'|nil, name=, status=, text=,
---                 reason= (cpu: 'single-thread'|'quota'|'capacity'|'run-queue'|'irq') }
---   r.cpu_reason -- = r.verdict.reason when the verdict is the CPU
---   use.render(r) -- the text table
---
--- Row = { resource=, name=, status = 'ok'|'idle'|'warn'|'HIGH'|'not measured', score=,
---   utilization = Cell, saturation = Cell, errors = Cell, why = { text, ... },
---   notes = { text, ... } }
--- The CPU row also carries what a playbook prints: reason=, hot_thread =
--- { tid=, pid=, comm=, process=, pct= (of one core) }, hot_threads = { ... },
--- capacity = { cpus=, limited_by = 'online'|'affinity'|'cpuset'|'quota',
--- online=, affinity=, affinity_list=, cpuset=, cpuset_list=, quota=, used_pct= },
--- quota_cores=, throttled_pct=, nr_throttled=, nr_periods=,
--- imbalance = { busy = { id=, busy_pct=, irq_pct=, softirq_pct= }, idle = { id=, busy_pct= } }.
--- Cell = { text=, source=, value= } or { missing = why, text = 'not measured (why)', source= }
---
--- Everything a team may want to tune sits at the top: thresholds, what is
--- not a disk, and the "trap" rules that keep a symptom from being named as
--- the cause. The measurement (perf_manual.measure.use) only gathers numbers;
--- this module is pure (numbers in, rows out), so the rules are tested on
--- recorded data.
local util = require('perf_manual.util')
local time = require('perf_manual.analyzers.time')
local netuse = require('perf_manual.analyzers.netuse')

local M = {}

-- ---------------------------------------------------------------------------
-- Thresholds. Percentages are 0..100. "warn" means worth a look, "HIGH" means
-- this resource is saturated (a candidate for the verdict).
-- ---------------------------------------------------------------------------
M.thresholds = {
  cpu = {
    util_warn = 70, util_high = 90,   -- share of all CPUs busy (/proc/stat)
    psi_warn = 10, psi_high = 30,     -- PSI cpu some: share of time someone waited for a CPU
    task_runq_warn = 10,              -- target's threads waiting for a CPU, thread-seconds
    task_runq_high = 50,              --   per second in % (50 = half a thread always waiting)
    throttled_warn = 5,               -- share of cgroup CPU periods throttled by the quota, %
    throttled_high = 25,
    thread_high = 90,                 -- one thread at this % of one core: single-thread bound, whatever
                                      --   the other cores do (it cannot use them)
    thread_run_min = 75,              -- ... counting its run-queue wait too once it runs this much
    capacity_high = 90,               -- target's CPU use as % of its capacity (affinity, cpuset, quota)
    percpu_busy = 90,                 -- one CPU this busy ...
    percpu_idle = 30,                 --   ... while another is below this: an imbalance
    percpu_irq_high = 50,             -- irq + softirq % of that CPU: interrupt work pinned to one CPU
    runq_per_cpu_warn = 0.1,          -- BPF run-queue latency: tasks waiting for a CPU on average,
    runq_per_cpu_high = 0.5,          --   per CPU (Little's law over the run-queue wait)
  },
  memory = {
    psi_warn = 2, psi_high = 10,      -- PSI memory some
    direct_scan_warn = 1,             -- pages/s scanned by direct reclaim (allocations stalled)
    limit_near_pct = 90,              -- cgroup usage as % of its limit
    limit_hits_high = 1,              -- cgroup limit hits per second while near the limit
    majflt_warn = 50,                 -- target's major faults per second
    swap_warn = 1,                    -- pages/s swapped in or out
    refault_high = 1000,              -- cgroup refaults per second at its limit: the page cache thrashes
    need_refault_s = 1,               -- the limit estimate adds this many seconds of refaulted bytes
  },
  disk = {
    busy_util = 2,                    -- below this utilisation (and no I/O errors) a disk is idle: no row
    util_warn = 50, util_high = 80,   -- io_ticks share (%util of iostat -x)
    aqu_warn = 1, aqu_high = 4,       -- average queue size (aqu-sz)
    psi_warn = 5, psi_high = 20,      -- PSI io some (system-wide: judged with the device's %util)
    task_wait_warn = 10,              -- share of the target's thread-time in D state (waiting on I/O),
    task_wait_high = 25,              --   judged on the busiest disk when the target does disk I/O
    lat_p99_warn_ms = 50,             -- BPF block I/O latency (queue + device), p99
  },
  network = {
    active_bytes_per_s = 1024,        -- an interface with less traffic than this gets no row
    util_warn = 60, util_high = 90,   -- throughput / link speed
    drops_warn = 1, drops_high = 100, -- packets dropped per second
    errors_warn = 1,                  -- errors per second
    retrans_warn = 10,                -- TCP retransmits per second (system-wide)
    retrans_high = 50,                -- BPF: the target's flows retransmit this many segments per second
    listen_drops_high = 1,            -- BPF: connections a listener of the target drops per second (accept queue full)
  },
  lock = {
    wait_share_warn = 20,             -- share of the target's thread-time blocked in futex waits
    wait_share_high = 50,             --   (when futex kinds are unknown; else lock waits only)
    waiters_high = 2,                 -- threads queued on the hottest lock at once, on average
    min_cpu_pct = 10,                 -- below this the process is idle: waiting threads are a parked pool
  },
}

-- ---------------------------------------------------------------------------
-- Rules per resource. Each takes the measures (see collect) and returns a Row.
-- ---------------------------------------------------------------------------

local function fmt_pct(x) return x and string.format('%.0f%%', x) or nil end
local function fmt_rate(x, unit)
  if not x then return nil end
  if x >= 100 then return string.format('%.0f%s', x, unit or '/s') end
  if x >= 10 then return string.format('%.1f%s', x, unit or '/s') end
  return string.format('%.2f%s', x, unit or '/s')
end
M.fmt_pct = fmt_pct
local function fmt_ns(ns)
  if not ns then return '?' end
  if ns >= 1e9 then return string.format('%.1fs', ns / 1e9) end
  if ns >= 1e6 then return string.format('%.1fms', ns / 1e6) end
  if ns >= 1e3 then return string.format('%.0fus', ns / 1e3) end
  return string.format('%.0fns', ns)
end
M.fmt_ns = fmt_ns

local function cell(text, source, value)
  return { text = text, source = source, value = value }
end

local function missing(why, source)
  return { missing = why or 'not measured', text = 'not measured (' .. (why or 'no data') .. ')', source = source }
end
M.missing_cell = missing

local RANK = { ok = 0, idle = 0, ['not measured'] = 0, warn = 1, HIGH = 2 }
M.RANK = RANK

--- A row under construction: raise(status, score, why) keeps the worst.
local function new_row(resource, name)
  local r = { resource = resource, name = name, status = 'ok', score = 0, why = {}, why_high = {}, notes = {} }
  function r.raise(status, score, why, reason)
    if RANK[status] > RANK[r.status] then r.status = status end
    if status == 'HIGH' and (score or 0) > r.score then r.score = score; r.reason = reason end
    if why then
      r.why[#r.why + 1] = why
      if status == 'HIGH' then r.why_high[#r.why_high + 1] = why end
    end
  end
  return r
end

M.rules = {}

local function fmt_cores(x)
  if not x then return '?' end
  if math.abs(x - math.floor(x + 0.5)) < 0.005 then
    local n = math.floor(x + 0.5)
    return string.format('%d CPU%s', n, n == 1 and '' or 's')
  end
  return string.format('%.2f CPU', x)
end
M.fmt_cores = fmt_cores

local function thread_name(t, scope)
  local s = string.format('thread %d (%s)', t.tid, t.comm or '?')
  if scope == 'system' and t.pid ~= t.tid then s = s .. string.format(' of pid %d (%s)', t.pid, t.process or '?') end
  return s
end
M.thread_name = thread_name

--- The CPU doing the most while another idles, or nil.
local function imbalance(m, T)
  local cpus = m.cpu and m.cpu.cpus
  if not cpus or #cpus < 2 then return nil end
  local hi, lo
  for _, c in ipairs(cpus) do
    if c.busy_pct then
      if not hi or c.busy_pct > hi.busy_pct then hi = c end
      if not lo or c.busy_pct < lo.busy_pct then lo = c end
    end
  end
  if hi and lo and hi ~= lo and hi.busy_pct >= T.percpu_busy and lo.busy_pct <= T.percpu_idle then
    return { busy = { id = hi.id, busy_pct = hi.busy_pct, irq_pct = hi.irq_pct, softirq_pct = hi.softirq_pct },
      idle = { id = lo.id, busy_pct = lo.busy_pct } }
  end
end

local function imbalance_text(im)
  local b = im.busy
  local irq = (b.irq_pct or 0) + (b.softirq_pct or 0)
  local what = ''
  if irq >= 5 then
    what = (b.softirq_pct or 0) >= (b.irq_pct or 0) and string.format(' (softirq %s)', fmt_pct(b.softirq_pct))
      or string.format(' (irq %s)', fmt_pct(b.irq_pct))
  end
  return string.format('cpu%d %s busy%s while cpu%d is %s', b.id, fmt_pct(b.busy_pct), what, im.idle.id,
    fmt_pct(im.idle.busy_pct))
end

function M.rules.cpu(m, T)
  T = T.cpu
  local c, task, cg = m.cpu or {}, m.task, m.cgroup_cpu
  local row = new_row('cpu', 'CPU')
  local cap = m.capacity
  local th = m.threads_cpu
  local hot = th and th.top and th.top[1]
  local im = imbalance(m, T)
  row.capacity, row.hot_thread, row.imbalance = cap, hot, im
  row.hot_threads = th and th.top
  if cg then
    row.quota_cores, row.throttled_pct, row.nr_throttled, row.nr_periods = cg.quota_cores, cg.throttled_pct,
      cg.nr_throttled, cg.nr_periods
  end
  -- capacity below the machine's: say what limits it
  local limited = cap and cap.cpus and cap.online and cap.cpus < cap.online and cap.limited_by ~= 'online'
  local function cap_text()
    local by = cap.limited_by == 'affinity' and ('affinity ' .. tostring(cap.affinity_list))
      or cap.limited_by == 'cpuset' and ('cpuset ' .. tostring(cap.cpuset_list))
      or cap.limited_by == 'quota' and 'cgroup quota' or cap.limited_by
    return string.format('its %s (%s)', fmt_cores(cap.cpus), by)
  end
  -- Utilization
  if c.busy_pct then
    local text = string.format('%s of %d CPUs busy (user %s, sys %s)', fmt_pct(c.busy_pct), m.ncpu or 0,
      fmt_pct(c.user_pct) or '?', fmt_pct(c.system_pct) or '?')
    local used
    if task and task.cpu_pct then
      used = task.cpu_pct
      text = text .. string.format('; target %s of one CPU', fmt_pct(task.cpu_pct))
    elseif cg and cg.usage_pct then
      used = cg.usage_pct
      text = text .. string.format('; cgroup %s of one CPU', fmt_pct(cg.usage_pct))
    end
    if used and limited and cap.used_pct then
      text = text .. string.format(' = %s of %s', fmt_pct(cap.used_pct), cap_text())
    end
    if hot and hot.pct >= T.thread_high / 2 then
      text = text .. string.format('; hottest %s %s of one CPU', thread_name(hot, th.scope), fmt_pct(hot.pct))
    end
    if im then text = text .. '; ' .. imbalance_text(im) end
    local srcs = { '/proc/stat' }
    if task then srcs[#srcs + 1] = '/proc/PID/schedstat' end
    if hot then srcs[#srcs + 1] = '/proc/*/task/*/schedstat' end
    if limited then srcs[#srcs + 1] = cap.limited_by == 'affinity' and 'Cpus_allowed_list' or 'cgroup cpu' end
    row.utilization = cell(text, table.concat(srcs, ', '), c.busy_pct)
  else
    row.utilization = missing(c.missing_stat or 'no /proc/stat', '/proc/stat')
  end
  -- Saturation: BPF run-queue latency first, when it ran
  local sat, src = {}, {}
  local rq = m.bpf and m.bpf.runq
  local bpf_wait -- target's thread-time waiting for a CPU, % (BPF)
  if rq and rq.count and rq.count > 0 then
    if task then bpf_wait = 100 * (rq.waiting_avg or 0) end
    sat[#sat + 1] = string.format('run-queue latency avg %s p99 %s, %.2f tasks waiting', fmt_ns(rq.avg_ns),
      fmt_ns(rq.p99_ns), rq.waiting_avg or 0)
    src[#src + 1] = 'BPF run-queue latency (sched tracer, ' .. tostring(rq.attach) .. ')'
  elseif rq then
    sat[#sat + 1] = 'no run-queue waits'
    src[#src + 1] = 'BPF run-queue latency (sched tracer, ' .. tostring(rq.attach) .. ')'
  end
  if c.psi_some_pct then sat[#sat + 1] = 'PSI some ' .. fmt_pct(c.psi_some_pct); src[#src + 1] = 'PSI cpu some' end
  if c.runnable_avg then
    sat[#sat + 1] = string.format('%.1f runnable', c.runnable_avg); src[#src + 1] = '/proc/stat procs_running'
  end
  if task and task.runq_wait_pct and not bpf_wait then
    sat[#sat + 1] = 'target run-queue wait ' .. fmt_pct(task.runq_wait_pct); src[#src + 1] = 'schedstat'
  end
  local function throttle_text()
    return string.format("its cgroup's quota of %s throttled it in %s of periods", fmt_cores(cg.quota_cores),
      fmt_pct(cg.throttled_pct))
  end
  if cg and cg.throttled_pct and cg.quota_cores then
    sat[#sat + 1] = string.format('quota %s, throttled in %s of periods', fmt_cores(cg.quota_cores),
      fmt_pct(cg.throttled_pct))
      .. (cg.throttled_ms_per_s and string.format(' (%.0f ms/s)', cg.throttled_ms_per_s) or '')
    src[#src + 1] = 'cgroup cpu.stat'
  elseif cg and cg.throttled_pct then
    sat[#sat + 1] = 'throttled ' .. fmt_pct(cg.throttled_pct) .. ' of periods'; src[#src + 1] = 'cgroup cpu.stat'
  end
  if #sat > 0 then
    row.saturation = cell(table.concat(sat, ', '), table.concat(src, ', '),
      task and (bpf_wait or task.runq_wait_pct) or c.psi_some_pct)
  else
    row.saturation = missing(c.missing_psi or 'no PSI and no run queue data', 'PSI cpu some')
  end
  row.errors = cell('-', 'none for CPUs in /proc')
  if not c.busy_pct then row.status = 'not measured'; return row end

  local busy = c.busy_pct
  -- one thread at a core's worth cannot go faster, however idle the others are
  -- (on a busy machine it runs less and waits for a CPU the rest: it never
  -- blocks, so on CPU plus run-queue wait is what it asks of one core)
  -- (mostly on CPU: threads sharing a core half-and-half are not one hot thread)
  local demand = hot and hot.pct + ((hot.pct >= T.thread_run_min) and hot.wait_pct or 0)
  if hot and demand >= T.thread_high then
    row.raise('HIGH', demand / T.thread_high, string.format('single-thread bound: %s at %s of one CPU%s',
      thread_name(hot, th.scope), fmt_pct(hot.pct), hot.pct < T.thread_high
        and string.format(' (and %s waiting for one)', fmt_pct(hot.wait_pct)) or ''), 'single-thread')
  end
  if task then
    -- a process: its own wait for a CPU, with no idle core it may use
    local w = bpf_wait or task.runq_wait_pct
    -- a quota with its throttling counters is named by the quota rule below
    local by_quota = limited and cap.limited_by == 'quota' and cg and cg.throttled_pct ~= nil
    local full = limited and not by_quota and cap.used_pct and cap.used_pct >= T.capacity_high
    local crowded = limited and not by_quota and cap.allowed_busy_pct and cap.allowed_busy_pct >= T.util_high
    -- a target confined to fewer CPUs than the machine's is judged on those
    if w and w >= T.task_runq_high and full then
      row.raise('HIGH', w / T.task_runq_high, string.format('target uses %s of %s and waits for a CPU %s',
        fmt_pct(cap.used_pct), cap_text(), fmt_pct(w)), 'capacity')
    elseif w and w >= T.task_runq_high and crowded then
      row.raise('HIGH', w / T.task_runq_high, string.format('target waits for a CPU %s: %s %s %s busy, %s of it by '
        .. 'the target', fmt_pct(w), cap_text(), cap.cpus == 1 and 'is' or 'are', fmt_pct(cap.allowed_busy_pct),
        fmt_pct(cap.used_pct)), 'capacity')
    elseif w and w >= T.task_runq_high and busy >= T.util_high then
      row.raise('HIGH', w / T.task_runq_high,
        string.format('target waits for a CPU %s with %s busy', fmt_pct(w), fmt_pct(busy)), 'run-queue')
    elseif w and w >= T.task_runq_warn then
      row.raise('warn', nil, 'target waits for a CPU ' .. fmt_pct(w))
    end
  else
    local p = c.psi_some_pct
    local queued = c.runnable_avg and m.ncpu and c.runnable_avg > m.ncpu
    local per_cpu = rq and rq.waiting_avg and m.ncpu and m.ncpu > 0 and rq.waiting_avg / m.ncpu
    if per_cpu and per_cpu >= T.runq_per_cpu_high then queued = true end
    if busy >= T.util_high and ((p and p >= T.psi_high) or queued) then
      row.raise('HIGH', math.max((p or 0) / T.psi_high, busy / T.util_high, (per_cpu or 0) / T.runq_per_cpu_high),
        string.format('%s busy and %s', fmt_pct(busy), p and ('PSI some ' .. fmt_pct(p))
          or per_cpu and string.format('%.2f tasks per CPU waiting in the run queue', per_cpu)
          or 'more runnable than CPUs'), 'run-queue')
    elseif per_cpu and per_cpu >= T.runq_per_cpu_warn then
      row.raise('warn', nil, string.format('%.2f tasks per CPU waiting in the run queue (p99 %s)', per_cpu,
        fmt_ns(rq.p99_ns)))
    end
  end
  if cg and cg.throttled_pct then
    local why = cg.quota_cores and throttle_text()
      or ('cgroup CPU quota throttles ' .. fmt_pct(cg.throttled_pct) .. ' of periods')
    if cg.throttled_pct >= T.throttled_high then
      row.raise('HIGH', cg.throttled_pct / T.throttled_high, why, 'quota')
    elseif cg.throttled_pct >= T.throttled_warn then
      row.raise('warn', nil, why)
    end
  end
  if im then
    local b = im.busy
    local irq = (b.irq_pct or 0) + (b.softirq_pct or 0)
    if irq >= T.percpu_irq_high and not task then
      -- interrupt work the scheduler cannot move: that CPU is the bottleneck
      row.raise('HIGH', irq / T.percpu_irq_high, imbalance_text(im) .. ': interrupt work pinned to one CPU', 'irq')
    elseif not (demand and demand >= T.thread_high) then
      row.raise('warn', nil, imbalance_text(im))
    end
  end
  if busy >= T.util_warn then row.raise('warn', nil, fmt_pct(busy) .. ' busy') end
  local p = c.psi_some_pct
  if p and p >= T.psi_warn then
    if busy < T.util_warn then
      -- the futex trap: wake-ups make tasks wait briefly although cores are idle
      row.raise('warn', nil, 'PSI some ' .. fmt_pct(p))
      -- (a throttled quota stalls tasks with idle cores too: named above)
      if p >= T.psi_high and not (cg and cg.throttled_pct and cg.throttled_pct >= T.throttled_warn) then
        row.notes[#row.notes + 1] = string.format('CPU pressure %s while %s of the CPUs sit idle: short waits after '
          .. 'wake-ups (lock hand-offs), not a CPU shortage', fmt_pct(p), fmt_pct(100 - busy))
      end
    else
      row.raise('warn', nil, 'PSI some ' .. fmt_pct(p))
    end
  end
  return row
end

--- What the workload needs, estimated from the cgroup's memory detail
--- (perf_manual.measure.memnet): { bytes=, method=, refault_bytes_per_s= } or nil.
--- The peak working set (anon + active file) it kept, plus what it had to
--- read again: `need_refault_s` seconds of refaulted bytes (the set it
--- cycles through, if it cycles once a second); when it holds regular files
--- open, that part is capped at its anonymous peak plus those files' sizes
--- (it cannot re-read more than it has open). An order of magnitude, not a
--- measurement: raise the limit to it and check that refaults stop.
function M.memory_need(d, page, T)
  if type(d) ~= 'table' or not d.working_set_peak_bytes then return nil end
  T = T or M.thresholds.memory
  page = page or 4096
  local ws = d.working_set_peak_bytes
  local rb = ((d.refault_file_per_s or 0) + (d.refault_anon_per_s or 0)) * page
  if rb <= 0 then
    return { bytes = ws, refault_bytes_per_s = 0,
      method = 'peak working set (anon + active file): no refaults, what it keeps fits' }
  end
  local need = ws + rb * T.need_refault_s
  local method = string.format('peak working set + %g s of refaulted bytes (%s/s)', T.need_refault_s,
    util.fmt_bytes(rb))
  local cap = d.open_file_bytes and d.anon_peak_bytes and d.anon_peak_bytes + d.open_file_bytes
  if cap and cap >= ws and cap < need then
    need = cap
    method = string.format('anonymous peak %s + the %s of regular files it holds open (%d), which it re-reads; '
      .. 'less than peak working set + %g s of refaults', util.fmt_bytes(d.anon_peak_bytes),
      util.fmt_bytes(d.open_file_bytes), d.open_files or 0, T.need_refault_s)
  end
  return { bytes = need, refault_bytes_per_s = rb, method = method .. '; an estimate: raise the limit and check '
    .. 'that refaults stop' }
end

function M.rules.memory(m, T)
  T = T.memory
  local mm, task, cg = m.memory or {}, m.task, m.cgroup_memory
  local row = new_row('memory', 'Memory')
  -- Utilization
  local u = {}
  if mm.used_pct then u[#u + 1] = fmt_pct(mm.used_pct) .. ' used' end
  if task and task.rss_bytes then u[#u + 1] = 'target RSS ' .. util.fmt_bytes(task.rss_bytes) end
  if cg and cg.limit_bytes and cg.usage_bytes then
    u[#u + 1] = string.format('cgroup %s of %s (%s)', util.fmt_bytes(cg.usage_bytes), util.fmt_bytes(cg.limit_bytes),
      fmt_pct(cg.usage_pct))
  elseif cg and cg.usage_bytes then
    u[#u + 1] = 'cgroup ' .. util.fmt_bytes(cg.usage_bytes) .. ', no limit'
  end
  if #u > 0 then
    row.utilization = cell(table.concat(u, ', '), cg and '/proc/meminfo, cgroup memory' or '/proc/meminfo', mm.used_pct)
  else
    row.utilization = missing(mm.missing_meminfo or 'no /proc/meminfo', '/proc/meminfo')
  end
  -- Saturation
  local s, src = {}, {}
  if mm.psi_some_pct then s[#s + 1] = 'PSI some ' .. fmt_pct(mm.psi_some_pct); src[#src + 1] = 'PSI memory some' end
  if cg and cg.psi_some_pct then
    s[#s + 1] = 'cgroup PSI some ' .. fmt_pct(cg.psi_some_pct); src[#src + 1] = 'cgroup memory.pressure'
  end
  if mm.pgscan_direct_per_s and mm.pgscan_direct_per_s > 0 then
    s[#s + 1] = 'direct reclaim ' .. fmt_rate(mm.pgscan_direct_per_s, ' pages/s'); src[#src + 1] = '/proc/vmstat'
  end
  local swap = (mm.pswpin_per_s or 0) + (mm.pswpout_per_s or 0)
  if swap > 0 then s[#s + 1] = 'swapping ' .. fmt_rate(swap, ' pages/s') end
  if cg and cg.limit_hits_per_s then
    s[#s + 1] = 'cgroup limit hits ' .. fmt_rate(cg.limit_hits_per_s)
    src[#src + 1] = cg.version == 'v1' and 'memory.failcnt' or 'memory.events max'
  end
  if cg and cg.refault_per_s and cg.refault_per_s > 0 then
    s[#s + 1] = 'cgroup refaults ' .. fmt_rate(cg.refault_per_s, ' pages/s'); src[#src + 1] = 'memory.stat'
  end
  if task and task.majflt_per_s then
    s[#s + 1] = 'target major faults ' .. fmt_rate(task.majflt_per_s); src[#src + 1] = '/proc/PID/stat'
  end
  local md = m.cgroup_memory_detail
  local page = m.page_size or 4096
  if md and md.reclaim_pages_per_s and md.reclaim_pages_per_s > 0 then
    s[#s + 1] = 'cgroup reclaim ' .. util.fmt_bytes(md.reclaim_pages_per_s * page) .. '/s'
    src[#src + 1] = md.reclaim_source
  end
  if md then
    local need = M.memory_need(md, page, T)
    row.culprit = { cgroup = md.dir, version = md.version, limit_bytes = md.limit_bytes, high_bytes = md.high_bytes,
      working_set_bytes = md.working_set_bytes, working_set_peak_bytes = md.working_set_peak_bytes,
      formula = md.formula, refault_per_s = (md.refault_file_per_s or 0) + (md.refault_anon_per_s or 0),
      refault_bytes_per_s = need and need.refault_bytes_per_s,
      reclaim_bytes_per_s = md.reclaim_pages_per_s and md.reclaim_pages_per_s * page,
      reclaim_source = md.reclaim_source,
      pgscan_per_s = md.pgscan_per_s, oom_kills = md.oom_kills, need_bytes = need and need.bytes,
      need_method = need and need.method, top_faulters = m.faults and m.faults.top }
  elseif m.faults then
    row.culprit = { top_faulters = m.faults.top }
  end
  if #s > 0 then
    row.saturation = cell(table.concat(s, ', '), table.concat(src, ', '), mm.psi_some_pct)
  else
    row.saturation = missing(mm.missing_psi or 'no PSI and no /proc/vmstat', 'PSI memory some')
  end
  -- Errors: OOM kills
  local e, esrc = {}, {}
  if mm.oom_kill ~= nil then
    e[#e + 1] = string.format('%d OOM kill%s', mm.oom_kill, mm.oom_kill == 1 and '' or 's')
    esrc[#esrc + 1] = '/proc/vmstat oom_kill'
  end
  if cg and cg.oom_kills ~= nil then
    e[#e + 1] = string.format('cgroup %d OOM kill%s', cg.oom_kills, cg.oom_kills == 1 and '' or 's')
    esrc[#esrc + 1] = cg.version == 'v1' and 'memory.oom_control' or 'memory.events oom_kill'
  end
  -- whom the OOM killer took (the kernel log names them)
  local vs = {}
  for i, v in ipairs(type(m.oom_victims) == 'table' and m.oom_victims or {}) do
    if i > 3 then vs[#vs + 1] = '...' break end
    vs[#vs + 1] = string.format('pid %s (%s)%s', tostring(v.pid), tostring(v.comm or '?'),
      v.memcg and (' in ' .. v.memcg) or '')
  end
  if #vs > 0 then
    e[#e + 1] = 'killed: ' .. table.concat(vs, ', ')
    esrc[#esrc + 1] = '/dev/kmsg'
  end
  row.errors = #e > 0
    and cell(table.concat(e, ', '), table.concat(esrc, ', '), math.max(mm.oom_kill or 0, cg and cg.oom_kills or 0))
    or missing(mm.missing_oom or 'no oom_kill counter', '/proc/vmstat oom_kill')
  if not mm.psi_some_pct and not mm.used_pct and not cg then row.status = 'not measured'; return row end

  -- a kill in the cgroup is counted in /proc/vmstat too: take the larger
  local kills = math.max(mm.oom_kill or 0, cg and cg.oom_kills or 0)
  if kills > 0 then row.raise('HIGH', 10 * kills, string.format('%d OOM kill%s', kills, kills > 1 and 's' or '')) end
  -- the cgroup's own pressure (v2) is closer to the target than the system's
  local p = mm.psi_some_pct
  if cg and cg.psi_some_pct and (not p or cg.psi_some_pct > p) then p = cg.psi_some_pct end
  if p and p >= T.psi_high then row.raise('HIGH', p / T.psi_high, 'PSI some ' .. fmt_pct(p))
  elseif p and p >= T.psi_warn then row.raise('warn', nil, 'PSI some ' .. fmt_pct(p)) end
  if cg and cg.limit_hits_per_s and cg.limit_hits_per_s >= T.limit_hits_high
    and cg.usage_pct and cg.usage_pct >= T.limit_near_pct then
    -- the cgroup lives at its limit: every allocation reclaims first
    row.raise('HIGH', math.max(1, math.log10(cg.limit_hits_per_s)),
      string.format('cgroup at %s of its limit, %s limit hits', fmt_pct(cg.usage_pct), fmt_rate(cg.limit_hits_per_s)))
  elseif cg and cg.usage_pct and cg.usage_pct >= T.limit_near_pct and cg.refault_per_s
    and cg.refault_per_s >= T.refault_high then
    -- at the limit and reading back what it just lost: thrashing, counted or not as limit hits
    row.raise('HIGH', math.max(1, math.log10(cg.refault_per_s / T.refault_high) + 1),
      string.format('cgroup at %s of its limit, %s refaults', fmt_pct(cg.usage_pct), fmt_rate(cg.refault_per_s)))
  elseif cg and cg.usage_pct and cg.usage_pct >= T.limit_near_pct then
    row.raise('warn', nil, 'cgroup at ' .. fmt_pct(cg.usage_pct) .. ' of its limit')
  end
  if mm.pgscan_direct_per_s and mm.pgscan_direct_per_s >= T.direct_scan_warn then
    row.raise('warn', nil, 'direct reclaim ' .. fmt_rate(mm.pgscan_direct_per_s, ' pages/s'))
  end
  if swap >= T.swap_warn then row.raise('warn', nil, 'swapping') end
  if task and task.majflt_per_s and task.majflt_per_s >= T.majflt_warn then
    row.raise('warn', nil, 'target major faults ' .. fmt_rate(task.majflt_per_s))
  end
  return row
end

function M.rules.disk(d, m, T, busiest)
  T = T.disk
  local row = new_row('disk', d.name)
  -- a process's own experience: its threads blocked in uninterruptible I/O
  local tw = busiest and m.task and m.task.io_bytes_per_s and m.task.io_bytes_per_s > 0 and m.lock
    and m.lock.disk_share_pct
  if d.util_pct then
    row.utilization = cell(string.format('%s busy, %s r/s %s w/s, %s read %s written', fmt_pct(d.util_pct),
      fmt_rate(d.r_s or 0, ''), fmt_rate(d.w_s or 0, ''), util.fmt_bytes((d.rkB_s or 0) * 1024) .. '/s',
      util.fmt_bytes((d.wkB_s or 0) * 1024) .. '/s'), '/proc/diskstats %util', d.util_pct)
  else
    row.utilization = missing(d.missing or 'no io_ticks', '/proc/diskstats')
  end
  local s = {}
  if d.aqu_sz then s[#s + 1] = string.format('aqu-sz %.2f', d.aqu_sz) end
  local await = d.w_await or d.r_await
  if d.r_await or d.w_await then
    s[#s + 1] = string.format('await r %s w %s', d.r_await and string.format('%.2fms', d.r_await) or '-',
      d.w_await and string.format('%.2fms', d.w_await) or '-')
  end
  local psi_io = m.io and m.io.psi_some_pct
  if psi_io then s[#s + 1] = 'PSI io some ' .. fmt_pct(psi_io) end
  if tw then s[#s + 1] = 'target blocked on I/O ' .. fmt_pct(tw) .. ' of thread-time' end
  local bio = m.bpf and m.bpf.io
  local bd = bio and bio.devices[d.name]
  local bsrc = bio and ('BPF block I/O latency (io tracer, ' .. tostring(bio.attach) .. ')')
  if bd and bd.count > 0 then
    -- queue + device time of every request on the device, from the tracer
    table.insert(s, 1, string.format('block latency p50 %s p99 %s over %d requests, %.2f in flight',
      fmt_ns(bd.p50_us and bd.p50_us * 1e3), fmt_ns(bd.p99_us and bd.p99_us * 1e3), bd.count, bd.inflight_mean or 0))
  end
  local queue = d.aqu_sz
  if bd and bd.inflight_mean and (not queue or bd.inflight_mean > queue) then queue = bd.inflight_mean end
  row.saturation = #s > 0 and cell(table.concat(s, ', '),
    (bd and bsrc .. ', ' or '') .. '/proc/diskstats aqu-sz, PSI io some' .. (tw and ', thread states (D)' or ''), queue)
    or missing('no queue data', '/proc/diskstats aqu-sz')
  if bio then
    local n = bd and bd.errors or 0
    row.errors = cell(string.format('%d I/O error%s', n, n == 1 and '' or 's'),
      'BPF io tracer (block_rq_complete error)', n)
    if n > 0 then row.raise('warn', nil, string.format('%d I/O errors', n)) end
  else
    row.errors = cell('not exposed', 'the kernel counts no I/O errors in /proc/diskstats')
  end
  local ut = d.util_pct or 0
  if queue and queue >= T.aqu_high then
    row.raise('HIGH', queue / T.aqu_high, string.format('queue %.1f deep', queue))
  end
  if bd and bd.p99_us and bd.p99_us / 1e3 >= T.lat_p99_warn_ms then
    row.raise('warn', nil, 'block latency p99 ' .. fmt_ns(bd.p99_us * 1e3))
  end
  if ut >= T.util_high and psi_io and psi_io >= T.psi_warn then
    row.raise('HIGH', ut / T.util_high, string.format('%s busy, tasks stall on I/O %s', fmt_pct(ut), fmt_pct(psi_io)))
  end
  if psi_io and psi_io >= T.psi_high and ut >= T.util_warn then
    row.raise('HIGH', psi_io / T.psi_high,
      string.format('tasks stall on I/O %s with the disk %s busy', fmt_pct(psi_io), fmt_pct(ut)))
  end
  if tw and tw >= T.task_wait_high then
    row.raise('HIGH', tw / T.task_wait_high, string.format('target blocked on I/O %s of its thread-time', fmt_pct(tw)))
  elseif tw and tw >= T.task_wait_warn then
    row.raise('warn', nil, 'target blocked on I/O ' .. fmt_pct(tw))
  end
  if ut >= T.util_warn then row.raise('warn', nil, fmt_pct(ut) .. ' busy') end
  if queue and queue >= T.aqu_warn then row.raise('warn', nil, string.format('queue %.2f deep', queue)) end
  row.await = await
  return row
end

function M.rules.network(n, m, T)
  T = T.network
  local row = new_row('network', n.name)
  -- a target in its own network namespace is measured there
  local pn = type(m.netns) == 'table' and ('/proc/' .. tostring(m.netns.pid) .. '/net') or '/proc/net'
  local bps = (n.rx_bytes_per_s or 0) + (n.tx_bytes_per_s or 0)
  local traffic = string.format('rx %s/s tx %s/s', util.fmt_bytes(n.rx_bytes_per_s or 0),
    util.fmt_bytes(n.tx_bytes_per_s or 0))
  local util_pct
  if n.speed_bytes_per_s and n.speed_bytes_per_s > 0 then
    -- the busier direction: links are full duplex
    util_pct = 100 * math.max(n.rx_bytes_per_s or 0, n.tx_bytes_per_s or 0) / n.speed_bytes_per_s
    row.utilization = cell(fmt_pct(util_pct) .. ' of link, ' .. traffic, pn .. '/dev, /sys/class/net speed',
      util_pct)
  else
    row.utilization = cell(traffic .. (n.virtual and ' (virtual, no link speed)' or ' (link speed unknown)'),
      pn .. '/dev', nil)
  end
  local drops = (n.rx_drop_per_s or 0) + (n.tx_drop_per_s or 0)
  local s = { string.format('drops %s', fmt_rate(drops)) }
  local tcp = m.tcp or {}
  if tcp.retrans_per_s then s[#s + 1] = 'TCP retrans ' .. fmt_rate(tcp.retrans_per_s) end
  if tcp.listen_overflows and tcp.listen_overflows > 0 then
    s[#s + 1] = string.format('%d listen overflows', tcp.listen_overflows)
  end
  local src_extra, sock_text = '', nil
  local so = m.sockets
  local mine = {}
  for _, x in ipairs(so and so.list or {}) do if x.iface == n.name then mine[#mine + 1] = x end end
  if #mine > 0 then
    local tx, rx, re = 0, 0, 0
    for _, x in ipairs(mine) do tx, rx, re = tx + x.tx_queue, rx + x.rx_queue, re + (x.max_retrnsmt or 0) end
    sock_text = string.format('target sockets %d: send-q %s, recv-q %s, %d unrecovered retransmits', #mine,
      util.fmt_bytes(tx), util.fmt_bytes(rx), re)
    s[#s + 1] = sock_text
    row.culprit = { sockets = mine }
    src_extra = ', ' .. pn .. '/tcp by socket inode of /proc/PID/fd'
  end
  local errs = (n.rx_errs_per_s or 0) + (n.tx_errs_per_s or 0)
  if m.bpf and m.bpf.net then
    -- BPF saw every retransmit, drop and listener overflow (with 4-tuples): it judges TCP; /proc/net/dev the link
    local f = netuse.apply(row, n, m, T, string.format('drops %s', fmt_rate(drops))
      .. (sock_text and (', ' .. sock_text) or ''), src_extra, pn)
    if #f.flows + #f.listeners > 0 or f.refused > 0 then
      row.culprit = row.culprit or {}
      row.culprit.flows, row.culprit.listeners, row.culprit.refused = f.flows, f.listeners, f.refused
      row.net_faults = true
    end
    tcp = {}
  else
    row.saturation = cell(table.concat(s, ', '), pn .. '/dev drop, ' .. pn .. '/snmp, ' .. pn .. '/netstat'
      .. src_extra, drops)
    row.errors = cell(string.format('%s errors', fmt_rate(errs)), pn .. '/dev errs', errs)
  end
  if util_pct and util_pct >= T.util_high then
    row.raise('HIGH', util_pct / T.util_high, fmt_pct(util_pct) .. ' of the link')
  elseif util_pct and util_pct >= T.util_warn then row.raise('warn', nil, fmt_pct(util_pct) .. ' of the link') end
  if drops >= T.drops_high then row.raise('HIGH', drops / T.drops_high, fmt_rate(drops) .. ' dropped')
  elseif drops >= T.drops_warn then row.raise('warn', nil, fmt_rate(drops) .. ' dropped') end
  if errs >= T.errors_warn then row.raise('warn', nil, fmt_rate(errs) .. ' errors') end
  if tcp.listen_overflows and tcp.listen_overflows > 0 then row.raise('warn', nil, 'listen queue overflows') end
  if tcp.retrans_per_s and tcp.retrans_per_s >= T.retrans_warn then row.raise('warn', nil, 'TCP retransmits') end
  row.bytes_per_s = bps
  return row
end

function M.rules.lock(m, T)
  T = T.lock
  local row = new_row('lock', 'Mutex/locks')
  local l = m.lock
  if not l or l.missing then
    local why = l and l.missing or 'needs a PID or the BPF lock tracer'
    row.utilization = missing(why, 'thread states')
    -- the reason once is enough on screen; JSON keeps it in every cell
    row.saturation = missing(why, 'thread states'); row.saturation.text = 'not measured'
    row.errors = missing(why, 'thread states'); row.errors.text = 'not measured'
    row.status = 'not measured'
    return row
  end
  if l.system then return M.rules.lock_system(row, l, T) end
  local src = l.source == 'bpf' and ('BPF futex waits (lock tracer, ' .. tostring(l.attach) .. ')')
    or string.format('thread states in /proc/PID/task, %d samples', l.samples or 0)
  row.utilization = cell(string.format('%s of thread-time in futex waits (%d threads)', fmt_pct(l.futex_share_pct),
    l.threads or 0),
    src, l.futex_share_pct)
  if l.hold and l.hold.sentence then
    -- the holder's side, from uprobes on the C library's lock calls
    row.utilization.text = row.utilization.text .. '; ' .. l.hold.sentence
    row.utilization.source = row.utilization.source .. ', pthread lock hold time (lockhold tracer)'
    row.hold = l.hold
  end
  local sat = string.format('%.1f threads waiting at once (max %d)', l.waiters_avg or 0, l.waiters_max or 0)
  if l.hot then
    sat = sat .. string.format('; hottest lock %s: %.1f waiters', l.hot.uaddr, l.hot.mean_waiters)
      .. (l.hot.max_waiters and string.format(' (max %d)', l.hot.max_waiters) or '')
  end
  if l.kernel_hot and l.kernel_hot.mean_waiters >= 0.01 then
    sat = sat .. string.format('; kernel %s %s: %.2f waiters', l.kernel_hot.kind, l.kernel_hot.addr,
      l.kernel_hot.mean_waiters)
  end
  row.saturation = cell(sat, src, l.hot and l.hot.mean_waiters or l.waiters_avg)
  if l.errors then
    local e = l.errors
    row.errors = cell(string.format('%d failed lock waits (timeouts %d, EDEADLK %d, owner died %d)', e.total,
      e.by_kind.etimedout or 0,
      e.by_kind.edeadlk or 0, e.by_kind.eownerdead or 0), 'BPF futex wait results (lock tracer)', e.total)
    if e.total > 0 then row.raise('warn', nil, string.format('%d failed lock waits', e.total)) end
  else
    row.errors = cell('-', 'no lock errors in /proc')
  end
  local busy = m.task and m.task.cpu_pct
  local share, waiters = l.futex_share_pct or 0, l.waiters_avg or 0
  local saturated
  if l.lock_share_pct ~= nil then
    -- futex kinds are known: count mutex-style waits only, and the queue on
    -- the hottest single lock (many threads each parked on their own futex,
    -- or on condition variables waiting for work, are not contention)
    share, waiters = l.lock_share_pct, l.hot and l.hot.mean_waiters or 0
    if (l.cond_share_pct or 0) >= T.wait_share_high then
      row.notes[#row.notes + 1] = string.format('%s of thread-time waits on condition variables or semaphores '
        .. '(workers waiting for work), not on locks', fmt_pct(l.cond_share_pct))
    end
    saturated = waiters >= T.waiters_high
  else
    saturated = share >= T.wait_share_high and waiters >= T.waiters_high
  end
  if saturated then
    if busy and busy < T.min_cpu_pct then
      row.raise('warn', nil, 'threads parked in futex waits while the process is idle')
      row.notes[#row.notes + 1] = string.format('%.1f threads wait on futexes but the process uses %s of a CPU: '
        .. 'an idle pool waiting for work, not contention', waiters, fmt_pct(busy))
    else
      row.raise('HIGH', math.max(share / T.wait_share_high, waiters / T.waiters_high),
        string.format('%.1f threads queued on one lock, %s of thread-time in lock waits', waiters, fmt_pct(share)))
    end
  elseif waiters >= 1 and share >= T.wait_share_warn then
    row.raise('warn', nil, string.format('%.1f threads waiting on a lock', waiters))
  end
  return row
end

--- The Mutex row of the whole machine (BPF only): kernel lock contention
--- judges it; a process queued on one of its own locks is named, for a
--- use-check of that process (whether it is busy or a parked pool is
--- judged there).
function M.rules.lock_system(row, l, T)
  local src = 'BPF kernel lock contention and futex waits (lock tracer, ' .. tostring(l.attach) .. ')'
  local secs = l.seconds or 0
  local kms = secs > 0 and (l.kernel_wait_ns or 0) / secs / 1e6 or 0
  row.utilization = cell(string.format('kernel lock waits %.1f ms/s%s', kms,
    l.kernel_traced == false and ' (not traced)' or ''), src, kms)
  local sat = {}
  local k, u = l.kernel_hot, l.hot
  -- a lock with next to no waiting is not worth a line
  if k and k.mean_waiters < 0.01 then k = nil end
  if u and u.mean_waiters < 0.01 then u = nil end
  if k then sat[#sat + 1] = string.format('hottest kernel lock %s %s: %.2f waiters', k.kind, k.addr, k.mean_waiters) end
  if u then
    sat[#sat + 1] = string.format('hottest user lock %s in pid %d (%s): %.2f waiters', u.uaddr, u.tgid,
      u.comm or '?', u.mean_waiters)
  end
  if #sat == 0 then sat[1] = 'no lock with waiters' end
  row.saturation = cell(table.concat(sat, '; '), src, k and k.mean_waiters or 0)
  local e = l.errors or { total = 0, by_kind = {} }
  row.errors = cell(string.format('%d failed lock waits (timeouts %d, EDEADLK %d, owner died %d)', e.total,
    e.by_kind.etimedout or 0, e.by_kind.edeadlk or 0, e.by_kind.eownerdead or 0),
    'BPF futex wait results (lock tracer)', e.total)
  if k and k.mean_waiters >= T.waiters_high then
    row.raise('HIGH', k.mean_waiters / T.waiters_high,
      string.format('%.1f tasks queued on kernel %s %s', k.mean_waiters, k.kind, k.addr))
  elseif k and k.mean_waiters >= 1 then
    row.raise('warn', nil, string.format('%.1f tasks waiting on kernel %s', k.mean_waiters, k.kind))
  end
  if u and u.mean_waiters >= T.waiters_high then
    row.raise('warn', nil, string.format('pid %d (%s): %.1f threads queued on one lock', u.tgid, u.comm or '?',
      u.mean_waiters))
    row.notes[#row.notes + 1] = string.format('run use-check --target %d to judge that lock against the process\'s '
      .. 'CPU use', u.tgid)
  end
  return row
end

-- ---------------------------------------------------------------------------
-- Trap rules: a symptom must not be named as the cause. Each gets the rows
-- by resource and the measures, and may lower a row, saying why.
-- ---------------------------------------------------------------------------

local function demote(row, to, note)
  if RANK[row.status] > RANK[to] then
    row.status = to
    row.score = 0
    row.notes[#row.notes + 1] = note
    row.demoted = true
  end
end

M.traps = {
  -- A thread doing memory reclaim is on-CPU in the kernel: that is memory
  -- pressure, not a CPU shortage.
  { name = 'reclaim is memory, not CPU', fn = function(rows, m)
    local mem, cpu = rows.memory, rows.cpu
    if not (mem and cpu and mem.status == 'HIGH' and cpu.status == 'HIGH') then return end
    local c = m.task or m.cpu or {}
    local sys, usr = c.system_pct, c.user_pct
    if sys and usr and sys >= usr then
      demote(cpu, 'warn', 'CPU time is mostly kernel time while memory is under pressure: reclaim work, '
        .. 'so memory (not CPU) is the bottleneck')
    end
  end },
  -- Page-cache refaults under memory pressure turn into disk reads: the disk
  -- is busy because memory is short.
  { name = 'refaults are memory, not disk', fn = function(rows, m)
    local mem = rows.memory
    if not (mem and mem.status == 'HIGH') then return end
    local page = m.page_size or 4096
    local refault_pages = (m.cgroup_memory and m.cgroup_memory.refault_per_s)
      or (m.memory and m.memory.refault_per_s) or 0
    local refault_kB = refault_pages * page / 1024
    for _, d in ipairs(rows.disks or {}) do
      local rk = d.measure and d.measure.rkB_s or 0
      if d.status == 'HIGH' and rk > 0 and refault_kB >= 0.5 * rk then
        demote(d, 'warn', string.format('%s/s of its reads are page-cache refaults of memory under pressure: '
          .. 'memory, not the disk, is short', util.fmt_bytes(refault_kB * 1024)))
      end
    end
  end },
  -- Threads queued behind one lock run one at a time: the process cannot use
  -- much more than one CPU, so its wait for a CPU (wake-ups of lock
  -- hand-offs) is the lock's doing, and more CPUs would not help.
  { name = 'serialised on a lock, not short of CPU', fn = function(rows, m)
    local lock, cpu, t = rows.lock, rows.cpu, m.task
    if not (lock and cpu and t and lock.status == 'HIGH' and cpu.status == 'HIGH') then return end
    if t.cpu_pct and t.cpu_pct <= 120 then
      demote(cpu, 'warn', string.format('the target uses %s of one CPU: its threads take turns on a lock, '
        .. 'so the lock (not the CPU) limits it', fmt_pct(t.cpu_pct)))
    end
  end },
  -- For a process: a busy disk it does not use is somebody else's problem.
  { name = 'not this process\'s disk', fn = function(rows, m)
    local t = m.task
    if not t or t.io_bytes_per_s == nil then return end
    if t.io_bytes_per_s > 0 or (t.syscw_per_s or 0) > 0 and (t.write_bytes_per_s or 0) > 0 then return end
    for _, d in ipairs(rows.disks or {}) do
      demote(d, 'warn', 'busy, but the target did no disk I/O during the check')
    end
  end },
}

-- ---------------------------------------------------------------------------
-- Analysis: measures in, rows and verdict out.
-- ---------------------------------------------------------------------------

--- Judges measures (as returned by collect) with the thresholds.
---@param m table measures
---@param opts table? { thresholds = } to override
function M.analyze(m, opts)
  local T = (opts and opts.thresholds) or M.thresholds
  local by = { disks = {}, nets = {} }
  local rows = {}
  by.cpu = M.rules.cpu(m, T); rows[#rows + 1] = by.cpu
  by.memory = M.rules.memory(m, T); rows[#rows + 1] = by.memory
  -- every disk and interface gets a row: a checklist tells "checked, idle"
  -- from "not checked"; an idle one (judged ok) is marked 'idle'
  local idle = { disks = util.array(), nets = util.array() }
  local busiest
  for _, d in ipairs(m.disks or {}) do
    if (d.util_pct or 0) >= T.disk.busy_util and (not busiest or (d.util_pct or 0) > (busiest.util_pct or 0)) then
      busiest = d
    end
  end
  for _, d in ipairs(m.disks or {}) do
    local r = M.rules.disk(d, m, T, d == busiest)
    r.measure = d
    if (d.util_pct or 0) < T.disk.busy_util and r.status == 'ok' then
      r.status = 'idle'
      idle.disks[#idle.disks + 1] = d.name
    end
    by.disks[#by.disks + 1] = r; rows[#rows + 1] = r
  end
  for _, n in ipairs(m.nets or {}) do
    local r = M.rules.network(n, m, T)
    local own = (n.rx_drop_per_s or 0) + (n.tx_drop_per_s or 0) + (n.rx_errs_per_s or 0) + (n.tx_errs_per_s or 0)
    if (n.rx_bytes_per_s or 0) + (n.tx_bytes_per_s or 0) < T.network.active_bytes_per_s and own == 0
      and not r.net_faults then
      -- system-wide TCP figures are not this quiet interface's doing
      r.status, r.why, r.why_high = 'idle', {}, {}
      idle.nets[#idle.nets + 1] = n.name
    end
    by.nets[#by.nets + 1] = r; rows[#rows + 1] = r
  end
  -- a source that could not be read is a row that says so, not an absent row
  for _, gone in ipairs({ { 'disk', 'Disks', m.disks_missing, '/proc/diskstats' },
                          { 'network', 'Network', m.nets_missing, '/proc/net/dev' } }) do
    if gone[3] then
      local r = new_row(gone[1], gone[2])
      r.status = 'not measured'
      r.utilization, r.saturation, r.errors = missing(gone[3], gone[4]), missing(gone[3], gone[4]),
        missing(gone[3], gone[4])
      r.saturation.text, r.errors.text = 'not measured', 'not measured'
      rows[#rows + 1] = r
    end
  end
  by.lock = M.rules.lock(m, T); rows[#rows + 1] = by.lock
  for _, trap in ipairs(M.traps) do trap.fn(by, m) end

  local best
  for _, r in ipairs(rows) do
    if r.status == 'HIGH' and (not best or r.score > best.score) then best = r end
  end
  local verdict
  if best then
    verdict = { resource = best.resource, name = best.name, status = best.status, reason = best.reason,
      text = string.format('%s is the most saturated resource: %s', best.resource == 'disk' and ('disk ' .. best.name)
        or best.resource == 'network' and ('network ' .. best.name) or best.name, table.concat(best.why_high, '; ')) }
  else
    local warns = {}
    for _, r in ipairs(rows) do if r.status == 'warn' then warns[#warns + 1] = r.name end end
    verdict = { text = 'no resource saturated'
      .. (#warns > 0 and (' (worth a look: ' .. table.concat(warns, ', ') .. ')') or '') }
  end
  -- nothing saturated, or the target mostly blocked: where its time goes
  local d = time.dominant_wait(m.tsa)
  if d and d.share >= 25 then
    local busy = (d.shares.cpu or 0) + (d.shares.runq or 0)
    if not best or busy < 50 then
      verdict.waits_on = { reason = d.reason, share = d.share, object = d.object, text = time.wait_phrase(d) }
      local w = type(d.wait) == 'table' and d.wait or {}
      if d.reason == 'net' and w['local'] and w.remote then
        -- the TCP flow by its 4-tuple (the wait names the peer's end only)
        verdict.waits_on.flow = w['local'] .. ' ' .. w.remote
        verdict.waits_on.text = verdict.waits_on.text .. ' on flow ' .. verdict.waits_on.flow
      end
      verdict.text = verdict.text .. '; the target waits on ' .. verdict.waits_on.text
    end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local o = { resource = r.resource, name = r.name, status = r.status, score = r.score,
      utilization = r.utilization, saturation = r.saturation, errors = r.errors,
      why = util.array(r.why), notes = util.array(r.notes) }
    if r.resource == 'memory' or r.resource == 'network' then o.culprit = r.culprit end
    if r.resource == 'cpu' then
      for _, k in ipairs({ 'reason', 'hot_thread', 'hot_threads', 'capacity', 'quota_cores', 'throttled_pct',
        'nr_throttled', 'nr_periods', 'imbalance' }) do o[k] = r[k] end
    end
    out[#out + 1] = o
  end
  return { rows = out, verdict = verdict, idle = idle,
    cpu_reason = verdict.resource == 'cpu' and verdict.reason or nil }
end


--- Where the saturation figures came from: per measure, BPF (tracer,
--- attach path, its own cost) or the /proc fallback and why.
function M.sources(m)
  local b = m.bpf or { errors = {}, detached = {} }
  local out = {}
  local pid = m.target and m.target.kind == 'pid'
  local function one(key, name, what, fallback)
    local x = b[name == 'sched' and 'runq' or name]
    if x then
      local q = x.quality or {}
      out[key] = { source = 'bpf', tracer = name, what = what, attach = x.attach, cost_pct = q.bpf_cpu_pct,
        events = q.events_seen, lost = q.events_lost }
    else
      out[key] = { source = fallback, why = b.off or (b.detached or {})[name] or (b.errors or {})[name]
        or (m.bpf and 'no result' or 'BPF not run') }
    end
  end
  one('cpu_saturation', 'sched', 'run-queue latency', pid and 'schedstat, PSI, /proc/stat' or 'PSI, /proc/stat')
  one('disk_saturation', 'io', 'block I/O latency', '/proc/diskstats, PSI')
  one('locks', 'lock', 'futex and kernel lock waits', pid and 'thread states in /proc/PID/task' or 'not measured')
  one('network', 'net', 'TCP retransmits, drops by reason, listen overflows, refused connects',
    '/proc/net/snmp and netstat counters')
  return out
end

local SOURCE_NAMES = { cpu_saturation = 'CPU saturation', disk_saturation = 'disk saturation', locks = 'locks',
  network = 'network saturation and errors' }

--- The sources as lines of text.
function M.render_sources(src)
  local lines, fallback, whys = {}, {}, {}
  for _, key in ipairs({ 'cpu_saturation', 'disk_saturation', 'locks', 'network' }) do
    local x = src[key]
    if x and x.source == 'bpf' then
      lines[#lines + 1] = string.format('source: %s from BPF %s (%s tracer, %s%s)', SOURCE_NAMES[key], x.what,
        x.tracer, tostring(x.attach), x.cost_pct and string.format(', %.2f%% of a CPU', x.cost_pct) or '')
    elseif x then
      fallback[#fallback + 1] = x.source == 'not measured' and (SOURCE_NAMES[key] .. ' not measured')
        or string.format('%s from %s', SOURCE_NAMES[key], x.source)
      local why = tostring(x.why)
      if not whys[why] then whys[why] = true; whys[#whys + 1] = why end
    end
  end
  if #fallback > 0 then
    -- one reason (BPF unavailable) usually covers them all: say it once
    lines[#lines + 1] = string.format('source: %s (BPF not used: %s)', table.concat(fallback, '; '),
      table.concat(whys, '; '))
  end
  return lines
end

-- ---------------------------------------------------------------------------
-- Text rendering.
-- ---------------------------------------------------------------------------

local function wrap(text, width)
  local lines, line = {}, ''
  for word in tostring(text):gmatch('%S+') do
    if #line > 0 and #line + 1 + #word > width then lines[#lines + 1] = line; line = word
    else line = #line > 0 and (line .. ' ' .. word) or word end
  end
  if #line > 0 or #lines == 0 then lines[#lines + 1] = line end
  return lines
end

local function row_of(r, res)
  for _, row in ipairs(r.rows or {}) do if row.resource == res and row.culprit then return row end end
end

local function endpoint(host, port)
  if tostring(host):find(':', 1, true) then return string.format('[%s]:%s', host, tostring(port)) end
  return string.format('%s:%s', tostring(host), tostring(port))
end

--- The memory and network culprit lines of the target summary.
function M.memnet_lines(r)
  local out = {}
  local mem = row_of(r, 'memory')
  local c = mem and mem.culprit
  -- a cgroup is named when memory is flagged or bounded: an unlimited
  -- cgroup with memory ok is nobody's culprit (its figures stay in --json)
  if c and c.cgroup and (RANK[mem.status or 'ok'] or 0) == 0 and not (c.limit_bytes or c.high_bytes)
    and (c.oom_kills or 0) == 0 then
    c = nil
  end
  if c and c.cgroup then
    local parts = { string.format('limit %s', c.limit_bytes and util.fmt_bytes(c.limit_bytes) or 'none') }
    if c.high_bytes then parts[#parts + 1] = 'high ' .. util.fmt_bytes(c.high_bytes) end
    if c.working_set_bytes then
      parts[#parts + 1] = string.format('working set %s (peak %s%s; %s)', util.fmt_bytes(c.working_set_bytes),
        util.fmt_bytes(c.working_set_peak_bytes or c.working_set_bytes),
        c.limit_bytes and string.format(', %s of the limit', fmt_pct(100 * (c.working_set_peak_bytes
          or c.working_set_bytes) / c.limit_bytes)) or '', c.formula or '?')
    end
    parts[#parts + 1] = string.format('refaults %s pages/s (%s/s)', fmt_rate(c.refault_per_s or 0, ''),
      util.fmt_bytes(c.refault_bytes_per_s or 0))
    if c.reclaim_bytes_per_s then
      parts[#parts + 1] = string.format('reclaim %s/s%s', util.fmt_bytes(c.reclaim_bytes_per_s),
        c.pgscan_per_s and string.format(' (scanned %s pages/s)', fmt_rate(c.pgscan_per_s, '')) or '')
    end
    if c.oom_kills then parts[#parts + 1] = string.format('%d OOM kills', c.oom_kills) end
    out[#out + 1] = string.format('memory culprit: cgroup %s: %s', c.cgroup, table.concat(parts, ', '))
    if c.need_bytes and c.limit_bytes then
      out[#out + 1] = string.format('  the workload needs about %s (%s)', util.fmt_bytes(c.need_bytes), c.need_method)
    end
  end
  local tf = c and c.top_faulters
  if tf and #tf > 0 then
    local list = {}
    for i = 1, math.min(3, #tf) do
      local x = tf[i]
      list[i] = string.format('pid %d (%s) %s major, %s minor', x.pid, tostring(x.comm or '?'),
        fmt_rate(x.majflt_per_s or 0), fmt_rate(x.minflt_per_s or 0))
    end
    out[#out + 1] = 'top faulting processes (/proc/PID/stat): ' .. table.concat(list, '; ')
  end
  local so = r.measures and r.measures.sockets
  if so and so.count > 0 then
    local list = {}
    for i = 1, math.min(3, #so.list) do
      local x = so.list[i]
      list[i] = string.format('%s -> %s %s via %s send-q %s recv-q %s retrans %d', endpoint(x.local_addr, x.local_port),
        endpoint(x.remote_addr, x.remote_port), x.state, tostring(x.iface or '?'), util.fmt_bytes(x.tx_queue),
        util.fmt_bytes(x.rx_queue), x.max_retrnsmt or x.retrnsmt or 0)
    end
    local tcp = r.measures.tcp or {}
    out[#out + 1] = string.format('target sockets (%d TCP, via %s): %s%s', so.count,
      #so.ifaces > 0 and table.concat(so.ifaces, ', ') or '?', table.concat(list, '; '),
      tcp.retrans_per_s and string.format('; TCP retransmits %s %s', fmt_rate(tcp.retrans_per_s),
        type(r.measures.netns) == 'table' and ('in the network namespace of pid ' .. tostring(r.measures.netns.pid))
        or 'system-wide') or '')
  end
  return out
end

-- The name tsa resolved for a futex address (its wait text carries the
-- address and the symbol: "lock g_lock (0x55.., /bin/x .bss)"), if any.
local function lock_name(tsa, uaddr)
  if type(tsa) ~= 'table' or type(tsa.threads) ~= 'table' or not uaddr then return nil end
  for _, th in ipairs(tsa.threads) do
    for _, w in ipairs(th.waits or {}) do
      if type(w.text) == 'string' and w.text:find(tostring(uaddr), 1, true) then return w.text end
    end
  end
end

-- fewer on-CPU samples than this name no hot path: the target was mostly off a CPU
M.HOT_PATH_SAMPLES = 20

--- The culprits measured for the target, one block: the hottest thread,
--- its hot path (the light on-CPU profile), the files its threads sync
--- and their device (tsa and the io tracer), the object it waits on most
--- (tsa), the hottest lock (lock tracer, when the lock row was measured)
--- and the memory and network culprit lines.
--- Returns { lines = { ... }, hot_thread =, cpu =, disk =, waits_on =, lock = }.
function M.culprits(r)
  local m = r.measures or {}
  local c = { lines = {} }
  local th = m.threads_cpu
  if th and th.top and th.top[1] and th.scope ~= 'system' then
    local x = th.top[1]
    c.hot_thread = { tid = x.tid, comm = x.comm, pct = x.pct }
    c.lines[#c.lines + 1] = string.format('hottest thread: %s %s of one CPU', thread_name(x, th.scope), fmt_pct(x.pct))
  end
  -- the hot path, when the target spent enough time on a CPU to have one
  local cp = m.cpu_profile
  if cp and cp.culprit and cp.culprit.text and cp.culprit.text ~= '' and (cp.samples or 0) >= M.HOT_PATH_SAMPLES then
    c.cpu = cp.culprit
    c.lines[#c.lines + 1] = string.format('on CPU (%d samples): %s', cp.samples, cp.culprit.text)
  end
  if m.disk_culprit and m.disk_culprit.text then
    c.disk = m.disk_culprit
    c.lines[#c.lines + 1] = 'disk: ' .. m.disk_culprit.text
  end
  local d = time.dominant_wait(m.tsa)
  if d then
    c.waits_on = { reason = d.reason, object = d.object, share = d.share }
    c.lines[#c.lines + 1] = 'top wait: ' .. time.wait_phrase(d)
  end
  local lrow = r.lock
  if not lrow then for _, row in ipairs(r.rows or {}) do if row.resource == 'lock' then lrow = row end end end
  local l = m.lock
  if l and l.hot and lrow and lrow.status ~= 'not measured' then
    local name = lock_name(m.tsa, l.hot.uaddr)
    c.lock = { uaddr = l.hot.uaddr, name = name, mean_waiters = l.hot.mean_waiters }
    c.lines[#c.lines + 1] = string.format('hottest lock: %s, %.1f waiters on average', name or l.hot.uaddr,
      l.hot.mean_waiters or 0)
  end
  for _, line in ipairs(M.memnet_lines(r)) do c.lines[#c.lines + 1] = line end
  return c
end

--- The USE table as text.
function M.render(r)
  local out = {}
  local head = string.format('USE check of %s over %.1f s (%d samples)', r.target and r.target.label or '?',
    r.elapsed or 0, r.samples or 0)
  if r.partial then head = head .. ' [partial]' end
  out[#out + 1] = head
  local W = 34
  local function pad(s, n) return s .. string.rep(' ', n - #s) end
  out[#out + 1] = string.format('%-12s %-12s %s %s %s', 'RESOURCE', 'STATUS', pad('UTILIZATION', W),
    pad('SATURATION', W), 'ERRORS')
  for _, row in ipairs(r.rows) do
    if row.status == 'idle' then
      -- one line: checked and quiet (JSON keeps the full row)
      out[#out + 1] = (string.format('%-12s %-12s %s', row.name, 'idle', row.utilization.text or '')):gsub('%s+$', '')
      goto continue
    end
    local cols = {}
    for i, c in ipairs({ row.utilization, row.saturation, row.errors }) do
      local lines = wrap(c.text, W)
      if c.source then
        for _, l in ipairs(wrap('[' .. c.source .. ']', W)) do lines[#lines + 1] = l end
      end
      cols[i] = lines
    end
    local n = math.max(#cols[1], #cols[2], #cols[3])
    for i = 1, n do
      out[#out + 1] = (string.format('%-12s %-12s %s %s %s', i == 1 and row.name or '', i == 1 and row.status or '',
        pad(cols[1][i] or '', W), pad(cols[2][i] or '', W), cols[3][i] or '')):gsub('%s+$', '')
    end
    for _, note in ipairs(row.notes or {}) do out[#out + 1] = string.rep(' ', 26) .. 'note: ' .. note end
    ::continue::
  end
  local m = r.measures or {}
  if m.not_disks and #m.not_disks > 0 then
    local names = {}
    for _, d in ipairs(m.not_disks) do names[#names + 1] = d.name end
    out[#out + 1] = 'not disks (RAM-backed or virtual, no row): ' .. table.concat(names, ' ')
  end
  if m.task then
    local t = m.task
    out[#out + 1] = string.format('target %s: CPU %s of one core%s, run-queue wait %s, RSS %s, major faults %s, '
      .. 'I/O read %s write %s%s, %s threads', r.target.label, fmt_pct(t.cpu_pct) or '?',
      t.share_pct and (' (' .. fmt_pct(t.share_pct) .. ' of the busy CPU time)') or '',
      fmt_pct(t.runq_wait_pct) or 'not measured', t.rss_bytes and util.fmt_bytes(t.rss_bytes) or 'not measured',
      fmt_rate(t.majflt_per_s) or 'not measured',
      -- the unit goes with the number: a missing rate reads "not measured", not "not measured/s"
      t.read_bytes_per_s and (util.fmt_bytes(t.read_bytes_per_s) .. '/s') or 'not measured',
      t.write_bytes_per_s and (util.fmt_bytes(t.write_bytes_per_s) .. '/s') or 'not measured',
      t.io_share_pct and (' (' .. fmt_pct(t.io_share_pct) .. ' of the disk traffic)') or '', tostring(t.threads or '?'))
  end
  local cm, cc = m.cgroup_memory, m.cgroup_cpu
  if cm then
    out[#out + 1] = string.format('cgroup memory (%s %s): limit %s, usage %s%s, peak %s, limit hits %s, OOM kills %s',
      cm.version or '?', cm.dir or '?', cm.limit_bytes and util.fmt_bytes(cm.limit_bytes) or 'none',
      cm.usage_bytes and util.fmt_bytes(cm.usage_bytes) or 'not measured',
      cm.usage_pct and (' (' .. fmt_pct(cm.usage_pct) .. ')') or '',
      cm.max_usage_bytes and util.fmt_bytes(cm.max_usage_bytes) or 'not measured',
      cm.limit_hits and string.format('%d (%s)', cm.limit_hits, fmt_rate(cm.limit_hits_per_s or 0)) or 'not measured',
      cm.oom_kills and tostring(cm.oom_kills) or 'not measured')
  end
  local cu = M.culprits(r)
  if #cu.lines > 0 then
    out[#out + 1] = 'culprits:'
    for _, line in ipairs(cu.lines) do out[#out + 1] = '  ' .. line end
  end
  if cc then
    out[#out + 1] = string.format('cgroup cpu (%s %s): %s, usage %s, throttled %s',
      cc.version or '?', cc.dir or '?',
      cc.quota_cores and ('quota ' .. fmt_cores(cc.quota_cores)
        .. (cc.quota_dir and (' (set on ' .. cc.quota_dir .. ')') or ''))
        or 'no quota',
      cc.usage_pct and (fmt_pct(cc.usage_pct) .. ' of one CPU') or 'not measured',
      cc.nr_throttled and string.format('%d periods (%s)', cc.nr_throttled, fmt_pct(cc.throttled_pct or 0))
        or 'not measured')
  end
  local cap, th = m.capacity, m.threads_cpu
  if cap and cap.cpus and m.target and m.target.kind ~= 'system' then
    local parts = { 'online ' .. tostring(cap.online or '?') }
    if cap.affinity_list then parts[#parts + 1] = 'affinity ' .. cap.affinity_list end
    if cap.cpuset_list then parts[#parts + 1] = 'cpuset ' .. cap.cpuset_list end
    parts[#parts + 1] = cap.quota and ('quota ' .. fmt_cores(cap.quota)) or 'no quota'
    out[#out + 1] = string.format('CPU capacity of the target: %s (%s)%s', fmt_cores(cap.cpus),
      table.concat(parts, ', '),
      cap.used_pct and string.format(', %s of it used', fmt_pct(cap.used_pct)) or '')
  end
  if th and th.top and #th.top > 0 then
    local list = {}
    for i = 1, math.min(3, #th.top) do
      local x = th.top[i]
      list[i] = string.format('%s %s', thread_name(x, th.scope), fmt_pct(x.pct))
    end
    out[#out + 1] = string.format('busiest threads (%% of one CPU, %s): %s', th.scope == 'system' and 'machine-wide'
      or 'of the target', table.concat(list, ', '))
  end
  for _, line in ipairs(M.render_sources(r.sources or M.sources(m))) do out[#out + 1] = line end
  for _, note in ipairs(r.notes or {}) do out[#out + 1] = 'note: ' .. note end
  out[#out + 1] = 'verdict: ' .. r.verdict.text
  return table.concat(out, '\n') .. '\n'
end


--- Normalises a USE result (the shape check/analyze return, live or read
--- back from JSON): rows by resource (`r.disk.status`, the worst row when
--- there are several disks), `verdict` as a word ("cpu" | "memory" | "disk" |
--- "network" | "lock" | nil; the analyzer's table stays in `verdict_detail`)
--- and `text`. Changes `r` in place and returns it.
function M.normalize(r)
  if type(r) ~= 'table' or r.available == false then return r end
  if type(r.verdict) == 'table' then
    r.verdict_detail = r.verdict
    r.verdict = r.verdict.resource
  end
  if r.verdict == util.json_null then r.verdict = nil end
  r.rows = r.rows or {}
  for _, row in ipairs(r.rows) do
    local key = row.resource
    if key then
      local cur = r[key]
      if type(cur) ~= 'table' or (row.score or 0) > (cur.score or 0) then r[key] = row end
    end
  end
  if not r.text and r.verdict_detail then
    -- a recorded result from before `text` was stored: render it again
    local ok, text = pcall(M.render, setmetatable({ verdict = r.verdict_detail }, { __index = r }))
    if ok then r.text = text end
  end
  r.table = r.text
  return r
end

return M
