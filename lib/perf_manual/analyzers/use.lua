--- The USE method (Utilization, Saturation, Errors) for CPU, memory, each
--- busy disk, each network interface with traffic, and locks.
---
---   local use = require('perf_manual.analyzers.use')
---   local r = use.check { target = 'system' | pid | 'svc' | '/cgroup', duration = 5, interval = 1 }
---   r.rows     -- { Row, ... } in table order
---   r.verdict  -- { resource = 'cpu'|'memory'|'disk'|'network'|'lock'|nil, name=, status=, text= }
---   use.render(r) -- the text table
---
--- Row = { resource=, name=, status = 'ok'|'warn'|'HIGH'|'not measured', score=,
---   utilization = Cell, saturation = Cell, errors = Cell, why = { text, ... },
---   notes = { text, ... } }
--- Cell = { text=, source=, value= } or { missing = why, text = 'not measured (why)', source= }
---
--- Everything a team may want to tune sits at the top: thresholds, what is
--- not a disk, and the "trap" rules that keep a symptom from being named as
--- the cause. The collection (`collect`) only gathers numbers; `analyze` is
--- pure (numbers in, rows out), so the rules are tested on recorded data.
local util = require('perf_manual.util')

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

local RANK = { ok = 0, ['not measured'] = 0, warn = 1, HIGH = 2 }
M.RANK = RANK

--- A row under construction: raise(status, score, why) keeps the worst.
local function new_row(resource, name)
  local r = { resource = resource, name = name, status = 'ok', score = 0, why = {}, why_high = {}, notes = {} }
  function r.raise(status, score, why)
    if RANK[status] > RANK[r.status] then r.status = status end
    if status == 'HIGH' and (score or 0) > r.score then r.score = score end
    if why then
      r.why[#r.why + 1] = why
      if status == 'HIGH' then r.why_high[#r.why_high + 1] = why end
    end
  end
  return r
end

M.rules = {}

function M.rules.cpu(m, T)
  T = T.cpu
  local c, task, cg = m.cpu or {}, m.task, m.cgroup_cpu
  local row = new_row('cpu', 'CPU')
  -- Utilization
  if c.busy_pct then
    local text = string.format('%s of %d CPUs busy (user %s, sys %s)', fmt_pct(c.busy_pct), m.ncpu or 0,
      fmt_pct(c.user_pct) or '?', fmt_pct(c.system_pct) or '?')
    if task and task.cpu_pct then
      text = text .. string.format('; target %s of one CPU', fmt_pct(task.cpu_pct))
    elseif cg and cg.usage_pct then
      text = text .. string.format('; cgroup %s of one CPU', fmt_pct(cg.usage_pct))
    end
    row.utilization = cell(text, task and '/proc/stat, /proc/PID/schedstat' or '/proc/stat', c.busy_pct)
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
  if cg and cg.throttled_pct then
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
  if task then
    -- a process: its own wait for a CPU, on a machine with no idle core
    local w = bpf_wait or task.runq_wait_pct
    if w and w >= T.task_runq_high and busy >= T.util_high then
      row.raise('HIGH', w / T.task_runq_high,
        string.format('target waits for a CPU %s with %s busy', fmt_pct(w), fmt_pct(busy)))
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
          or 'more runnable than CPUs'))
    elseif per_cpu and per_cpu >= T.runq_per_cpu_warn then
      row.raise('warn', nil, string.format('%.2f tasks per CPU waiting in the run queue (p99 %s)', per_cpu,
        fmt_ns(rq.p99_ns)))
    end
  end
  if cg and cg.throttled_pct then
    if cg.throttled_pct >= T.throttled_high then
      row.raise('HIGH', cg.throttled_pct / T.throttled_high,
        'cgroup CPU quota throttles ' .. fmt_pct(cg.throttled_pct) .. ' of periods')
    elseif cg.throttled_pct >= T.throttled_warn then
      row.raise('warn', nil, 'cgroup CPU quota throttles ' .. fmt_pct(cg.throttled_pct) .. ' of periods')
    end
  end
  if busy >= T.util_warn then row.raise('warn', nil, fmt_pct(busy) .. ' busy') end
  local p = c.psi_some_pct
  if p and p >= T.psi_warn then
    if busy < T.util_warn then
      -- the futex trap: wake-ups make tasks wait briefly although cores are idle
      row.raise('warn', nil, 'PSI some ' .. fmt_pct(p))
      if p >= T.psi_high then
        row.notes[#row.notes + 1] = string.format('CPU pressure %s while %s of the CPUs sit idle: short waits after '
          .. 'wake-ups (lock hand-offs), not a CPU shortage', fmt_pct(p), fmt_pct(100 - busy))
      end
    else
      row.raise('warn', nil, 'PSI some ' .. fmt_pct(p))
    end
  end
  return row
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
  local bps = (n.rx_bytes_per_s or 0) + (n.tx_bytes_per_s or 0)
  local traffic = string.format('rx %s/s tx %s/s', util.fmt_bytes(n.rx_bytes_per_s or 0),
    util.fmt_bytes(n.tx_bytes_per_s or 0))
  local util_pct
  if n.speed_bytes_per_s and n.speed_bytes_per_s > 0 then
    -- the busier direction: links are full duplex
    util_pct = 100 * math.max(n.rx_bytes_per_s or 0, n.tx_bytes_per_s or 0) / n.speed_bytes_per_s
    row.utilization = cell(fmt_pct(util_pct) .. ' of link, ' .. traffic, '/proc/net/dev, /sys/class/net speed',
      util_pct)
  else
    row.utilization = cell(traffic .. (n.virtual and ' (virtual, no link speed)' or ' (link speed unknown)'),
      '/proc/net/dev', nil)
  end
  local drops = (n.rx_drop_per_s or 0) + (n.tx_drop_per_s or 0)
  local s = { string.format('drops %s', fmt_rate(drops)) }
  local tcp = m.tcp or {}
  if tcp.retrans_per_s then s[#s + 1] = 'TCP retrans ' .. fmt_rate(tcp.retrans_per_s) end
  if tcp.listen_overflows and tcp.listen_overflows > 0 then
    s[#s + 1] = string.format('%d listen overflows', tcp.listen_overflows)
  end
  row.saturation = cell(table.concat(s, ', '), '/proc/net/dev drop, /proc/net/snmp, /proc/net/netstat', drops)
  local errs = (n.rx_errs_per_s or 0) + (n.tx_errs_per_s or 0)
  row.errors = cell(string.format('%s errors', fmt_rate(errs)), '/proc/net/dev errs', errs)
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
  local busiest
  for _, d in ipairs(m.disks or {}) do
    if not busiest or (d.util_pct or 0) > (busiest.util_pct or 0) then busiest = d end
  end
  for _, d in ipairs(m.disks or {}) do
    local r = M.rules.disk(d, m, T, d == busiest)
    r.measure = d
    by.disks[#by.disks + 1] = r; rows[#rows + 1] = r
  end
  for _, n in ipairs(m.nets or {}) do
    local r = M.rules.network(n, m, T)
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
    verdict = { resource = best.resource, name = best.name, status = best.status,
      text = string.format('%s is the most saturated resource: %s', best.resource == 'disk' and ('disk ' .. best.name)
        or best.resource == 'network' and ('network ' .. best.name) or best.name, table.concat(best.why_high, '; ')) }
  else
    local warns = {}
    for _, r in ipairs(rows) do if r.status == 'warn' then warns[#warns + 1] = r.name end end
    verdict = { text = 'no resource saturated'
      .. (#warns > 0 and (' (worth a look: ' .. table.concat(warns, ', ') .. ')') or '') }
  end
  local out = {}
  for _, r in ipairs(rows) do
    out[#out + 1] = { resource = r.resource, name = r.name, status = r.status, score = r.score,
      utilization = r.utilization, saturation = r.saturation, errors = r.errors,
      why = util.array(r.why), notes = util.array(r.notes) }
  end
  return { rows = out, verdict = verdict }
end

-- ---------------------------------------------------------------------------
-- Collection: numbers from the collectors, sampled over the duration.
-- ---------------------------------------------------------------------------

local function collector(name)
  local ok, mod = pcall(require, 'perf_manual.collectors.' .. name)
  if ok then return mod end
  return nil, 'collector ' .. name .. ' not available'
end

local function first_missing(...)
  for i = 1, select('#', ...) do
    local t = select(i, ...)
    local _, why = next(t and t.missing or {})
    if why then return why end
  end
end

--- System-wide measures between two snapshot sets.
local function system_measures(m, a, b, gauges)
  local cpu, memory, disk = collector('cpu'), collector('memory'), collector('disk')
  if a.cpu and b.cpu then
    local r = cpu.rates(a.cpu, b.cpu)
    local t = r.total or {}
    m.ncpu = r.ncpu or m.ncpu
    m.cpu = { busy_pct = t.busy_pct, user_pct = t.user_pct, system_pct = t.system_pct, iowait_pct = t.iowait_pct,
      steal_pct = t.steal_pct, psi_some_pct = r.psi and r.psi.some_pct, ctxt_per_s = r.ctxt_per_s,
      load1 = r.load1 }
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
      elseif d.whole_disk ~= false and (d.util_pct or 0) >= M.thresholds.disk.busy_util then
        m.disks[#m.disks + 1] = { name = d.name, util_pct = d.util_pct, aqu_sz = d.aqu_sz, r_s = d.r_s, w_s = d.w_s,
          rkB_s = d.rkB_s, wkB_s = d.wkB_s, r_await = d.r_await, w_await = d.w_await, f_s = d.f_s }
      end
    end
  end
  local network = collector('network')
  if network and a.network and b.network then
    local r = network.rates(a.network, b.network)
    m.nets = {}
    if r.missing and r.missing.interfaces then m.nets_missing = r.missing.interfaces end
    for _, n in ipairs(r.interfaces or {}) do
      local bps = (n.rx_bytes_per_s or 0) + (n.tx_bytes_per_s or 0)
      if bps >= M.thresholds.network.active_bytes_per_s then
        m.nets[#m.nets + 1] = { name = n.name, rx_bytes_per_s = n.rx_bytes_per_s, tx_bytes_per_s = n.tx_bytes_per_s,
          rx_drop_per_s = n.rx_drop_per_s, tx_drop_per_s = n.tx_drop_per_s, rx_errs_per_s = n.rx_errs_per_s,
          tx_errs_per_s = n.tx_errs_per_s, speed_bytes_per_s = n.speed_mbps and n.speed_mbps * 1e6 / 8,
          virtual = n.virtual }
      end
    end
    local tcp, ext = r.tcp or {}, r.tcpext or {}
    m.tcp = { retrans_per_s = tcp.retrans_segs_per_s, retrans_pct = tcp.retrans_pct,
      listen_overflows = ext.listen_overflows, listen_drops = ext.listen_drops }
  end
end

--- Measures of one process between two process snapshots.
local function task_measures(m, a, b)
  local process = collector('process')
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
  local cg = collector('cgroup')
  local r = cg.rates(a, b)
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
      throttled_pct = rc.throttled_pct, nr_throttled = rc.nr_throttled, throttled_ms_per_s = rc.throttled_ms_per_s }
  end
  m.cgroup_missing = r.missing
end

-- ---------------------------------------------------------------------------
-- BPF sources: when the kernel side is available, run-queue latency (sched
-- tracer) judges CPU saturation, block I/O latency (io tracer) disk
-- saturation and errors, and futex/kernel lock waits (lock tracer) the
-- Mutex row. Each measure says where it came from; without BPF the /proc,
-- PSI and thread-state figures stand alone and the reason is given.
-- ---------------------------------------------------------------------------

--- Starts the tracers for a resolved target. Returns { tracers = {name =
--- tracer}, errors = {name = why}, off = why-not-at-all }.
function M.bpf_start(t, opts)
  local src = { tracers = {}, errors = {}, budget = opts.max_overhead or 5, detached = {} }
  if opts.bpf == false then src.off = 'turned off (--no-bpf)'; return src end
  local ok, why = require('perf_manual.bpf').available()
  if not ok then src.off = why; return src end
  local filter = {}
  if t.kind == 'pid' then
    filter.pid = t.pid
  elseif t.kind ~= 'system' then
    -- cgroup or service: BPF filters on the cgroup v2 id
    local v2 = t.dirs and t.dirs.v2
    if not v2 then
      src.off = 'the target has no cgroup v2 directory to filter on (BPF filters by cgroup v2 id)'
      return src
    end
    filter.cgroup = v2
  end
  require('perf_manual.tracers.base').stats_lazy = true -- collect's loop ticks
  local function try(name, o)
    local tok, mod = pcall(require, 'perf_manual.tracers.' .. name)
    if not tok then src.errors[name] = tostring(mod); return end
    local tr, err = mod.start(o)
    if tr then src.tracers[name] = tr else src.errors[name] = tostring(err) end
  end
  try('sched', { pid = filter.pid, cgroup = filter.cgroup, ns = true, runqlen = t.kind == 'system' })
  -- devices are shared: their latency is every requester's, whatever the target
  try('io', { queued = true })
  if t.kind == 'system' then
    try('lock', {})
  else
    try('lock', { pid = filter.pid, cgroup = filter.cgroup })
  end
  return src
end

--- Sampling windows of the tracers' own cost, and the overhead budget:
--- returns the time the loop must wake next (nil: no deadline).
function M.bpf_tick(src)
  if not next(src.tracers) then return nil end
  local base = require('perf_manual.tracers.base')
  local nxt = base.stats_tick()
  local now = require('perf_manual._c.sys').now()
  if not src.next_budget or now >= src.next_budget then
    src.next_budget = now + 0.5
    for name, tr in pairs(src.tracers) do
      if not tr.detached then
        local over, why = tr:over_budget(src.budget)
        if over then tr:detach(why); src.detached[name] = why end
      end
    end
  end
  return nxt
end

--- Stops the tracers and turns their results into measures (m.bpf).
function M.bpf_finish(src, m)
  local b = { off = src.off, errors = src.errors, detached = src.detached }
  m.bpf = b
  local elapsed = m.elapsed or 0
  local sched = src.tracers.sched and src.tracers.sched:stop()
  if sched and not src.detached.sched then
    local secs = sched.seconds or elapsed
    local total = 0
    for _, g in ipairs(sched.groups or {}) do total = total + (g.total or 0) end
    -- percentiles as the tracer computed them (ns: started with ns = true)
    b.runq = { count = sched.count, avg_ns = sched.avg, p50_ns = sched.p50, p90_ns = sched.p90, p99_ns = sched.p99,
      total_ns = total, seconds = secs,
      -- Little's law: total wait over the interval = tasks waiting on average
      waiting_avg = secs > 0 and total / (secs * 1e9) or nil,
      attach = sched.quality and sched.quality.attach_path, quality = sched.quality }
    if sched.runqlen and sched.runqlen.samples and sched.runqlen.samples > 0 then
      b.runq.runqlen_mean, b.runq.runqlen_waiting_pct = sched.runqlen.mean, sched.runqlen.waiting_pct
    end
  end
  local io = src.tracers.io and src.tracers.io:stop()
  if io and not src.detached.io then
    b.io = { devices = {}, attach = io.quality and io.quality.attach_path, quality = io.quality, seconds = io.seconds }
    for _, d in ipairs(io.devices or {}) do
      b.io.devices[d.device] = { count = d.count, iops = d.iops, mean_ns = d.mean_ns, max_ns = d.max_ns,
        p50_us = d.p50_us, p99_us = d.p99_us, inflight_mean = d.inflight_mean, errors = d.errors }
    end
  end
  local lk = src.tracers.lock and src.tracers.lock:stop()
  if lk and not src.detached.lock then
    local secs = lk.seconds or elapsed
    local n = lk.use and lk.use.utilisation_basis and tonumber(lk.use.utilisation_basis:match('^(%d+)'))
    local by_kind = { lock = 0, wait = 0, other = 0 }
    local hot, hot_wait
    local hex = require('perf_manual.tracers.lock').hex
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
    if hot then
      local comm = util.readfile('/proc/' .. hot.tgid .. '/comm')
      hot.comm = comm and comm:gsub('\n$', '') or nil
    end
  end
  return b
end

--- Samples the target for opts.duration seconds; returns the measures
--- the rules judge. opts: target (string or resolved table), duration,
--- interval, progress = function(text), lock_hz.
function M.collect(opts)
  local sys = require('perf_manual._c.sys')
  local targets = require('perf_manual.target')
  local t = type(opts.target) == 'table' and opts.target or targets.resolve(opts.target or 'system')
  local duration = opts.duration or 5
  local interval = math.min(opts.interval or 1, duration > 0 and duration or 1)
  local info = sys.info()
  local m = { target = { kind = t.kind, label = t.label, pid = t.pid, unit = t.unit, cgroup = t.cgroup },
    duration = duration, interval = interval, ncpu = info.ncpu, page_size = info.page_size,
    notes = util.array() }

  local function snap_system()
    local s = {}
    for _, name in ipairs({ 'cpu', 'memory', 'disk', 'network' }) do
      local c = collector(name)
      if c then s[name] = c.sample() end
    end
    return s
  end
  local process = t.kind == 'pid' and collector('process')
  local threads = t.kind == 'pid' and collector('threads')
  local function snap_task()
    if not process then return nil end
    return process.sample(t.pid)
  end

  -- the cgroups the target lives in (a pid's, or the cgroup/service itself)
  local cgc = collector('cgroup')
  local cg_dirs
  if cgc and t.kind == 'pid' then cg_dirs = cgc.resolve({ pid = t.pid })
  elseif cgc and t.dirs then cg_dirs = t.dirs end
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
  local function snap_cgroup()
    if not cg_dirs then return nil end
    return cgc.sample_dirs(cg_dirs)
  end

  local gauges = { running_sum = 0, running_n = 0 }
  local function gauge(s)
    local st = s.cpu and s.cpu.stat
    if st and st.procs_running then
      -- the checker itself is one of the running tasks
      gauges.running_sum = gauges.running_sum + math.max(0, st.procs_running - 1)
      gauges.running_n = gauges.running_n + 1
    end
  end

  -- tracers first, so they cover the whole interval
  local bsrc = M.bpf_start(t, opts)
  local t0 = sys.now()
  local first_sys, first_task, first_cg = snap_system(), snap_task(), snap_cgroup()
  if t.kind == 'pid' and process and not first_task then util.user_error('no process ' .. t.pid) end
  local last_sys, last_task, last_cg = first_sys, first_task, first_cg
  local tick = interval
  local sampler
  if threads then
    local hz = opts.lock_hz or 50
    sampler = threads.sampler(t.pid, { hz = hz })
    if sampler then tick = math.min(interval, 1 / hz) end
  end
  local next_snap = t0 + interval
  local samples = 0
  if opts.progress then opts.progress(string.format('use-check %s: 0/%.0f s', t.label, duration)) end
  while true do
    local now = sys.now()
    if now - t0 >= duration then break end
    local wake = math.min(next_snap, t0 + duration, now + tick)
    local bt = M.bpf_tick(bsrc)
    if bt then wake = math.min(wake, bt) end
    if not sys.sleep(math.max(0, wake - now)) then m.stopped = true end
    if sampler and not m.stopped then sampler:tick() end
    now = sys.now()
    if m.stopped or now >= next_snap or now - t0 >= duration then
      local s = snap_system()
      local ts = snap_task()
      local cs = snap_cgroup()
      -- the system stays measurable when the target goes; the target's own
      -- figures keep their last good sample
      last_sys = s
      gauge(s)
      samples = samples + 1
      if t.kind ~= 'system' and (not targets.alive(t) or t.kind == 'pid' and process and not ts) then
        m.exited = true
        m.alive_s = now - t0
      else
        last_task, last_cg = ts, cs
      end
      next_snap = next_snap + interval
      if opts.progress then
        opts.progress(string.format('use-check %s: %.0f/%.0f s', t.label, math.min(now - t0, duration), duration))
      end
    end
    if m.stopped or m.exited then break end
  end
  m.elapsed = (last_sys.cpu and first_sys.cpu and last_sys.cpu.time - first_sys.cpu.time) or (sys.now() - t0)
  m.samples = samples
  M.bpf_finish(bsrc, m)
  if m.stopped then
    m.partial = true
    m.notes[#m.notes + 1] = string.format('stopped after %.1f s of %.1f s: results cover what was collected',
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
      m.lock = { missing = threads == nil and 'thread-state sampler not available' or 'no thread samples' }
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
      kernel_traced = bl.kernel_traced }
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
  return out
end

local SOURCE_NAMES = { cpu_saturation = 'CPU saturation', disk_saturation = 'disk saturation', locks = 'locks' }

--- The sources as lines of text.
function M.render_sources(src)
  local lines, fallback, whys = {}, {}, {}
  for _, key in ipairs({ 'cpu_saturation', 'disk_saturation', 'locks' }) do
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

--- collect + analyze: the Lua API the playbook and the investigation use.
---@param opts table { target=, duration=, interval=, progress=, thresholds= }
---@return table result { target=, rows=, verdict=, measures=, notes=, partial= }
function M.check(opts)
  util.validate('opts', opts, 'table')
  local m = M.collect(opts)
  local r = M.analyze(m, opts)
  r.target = m.target
  r.duration, r.elapsed, r.samples = m.duration, m.elapsed, m.samples
  r.partial, r.stopped, r.exited, r.alive_s = m.partial, m.stopped, m.exited, m.alive_s
  r.notes = m.notes
  r.sources = M.sources(m)
  for _, why in pairs(m.bpf and m.bpf.detached or {}) do r.notes[#r.notes + 1] = why end
  r.measures = m
  return r
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
      .. 'I/O read %s/s write %s/s%s, %s threads', r.target.label, fmt_pct(t.cpu_pct) or '?',
      t.share_pct and (' (' .. fmt_pct(t.share_pct) .. ' of the busy CPU time)') or '',
      fmt_pct(t.runq_wait_pct) or 'not measured', t.rss_bytes and util.fmt_bytes(t.rss_bytes) or 'not measured',
      fmt_rate(t.majflt_per_s) or 'not measured',
      t.read_bytes_per_s and util.fmt_bytes(t.read_bytes_per_s) or 'not measured',
      t.write_bytes_per_s and util.fmt_bytes(t.write_bytes_per_s) or 'not measured',
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
  if cc then
    out[#out + 1] = string.format('cgroup cpu (%s %s): %s, usage %s, throttled %s',
      cc.version or '?', cc.dir or '?',
      cc.quota_cores and string.format('quota %.2f CPUs', cc.quota_cores) or 'no quota',
      cc.usage_pct and (fmt_pct(cc.usage_pct) .. ' of one CPU') or 'not measured',
      cc.nr_throttled and string.format('%d periods (%s)', cc.nr_throttled, fmt_pct(cc.throttled_pct or 0))
        or 'not measured')
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
