-- The built-in metrics of `perf_manual serve`: what a team gets without
-- writing a line. Copy this file to ~/.config/perf_manual/playbooks/metrics/
-- (or any directory on the playbook path) under another name and pass
-- --playbook NAME to serve your own set; s:read('sched'|'syscall'|'io'|...)
-- gives any tracer's cumulative result (s:runq_stats(), s:syscall_stats() and
-- s:io_stats() the raw slots, cheaper), s:use() the USE rows.
--
-- Histograms are the kernel's log2 slots as they are: `le` is the upper end
-- of each slot (2^(s+1)-1 ns, or us for block I/O), in seconds.
local RANK = { ok = 0, idle = 0, warn = 1, HIGH = 2 }

return {
  name = 'default',
  summary = 'USE figures per resource, run-queue, syscall and block I/O latency histograms',

  setup = function(s)
    s:tracer('sched', { ns = true, runqlen = false })
    s:tracer('syscall', { mode = 'latency' })
    s:tracer('io', {})
    -- serve --requests PID: that server's request latency
    if s.options.requests then s:tracer('requests', { pid = s.options.requests }) end
  end,

  collect = function(s)
    -- USE: one gauge per figure, the source of the figure as a label; the
    -- values are those use-check shows (CPU, memory and disk utilization in
    -- %, saturation as PSI % or waiters, errors per second or counts)
    local u = s:use()
    local labels = { 'resource', 'name', 'source' }
    local fam = {
      utilization = s:gauge('perf_manual_use_utilization',
        { help = 'USE utilization per resource, as use-check computes it over the last scrape interval',
          labels = labels }),
      saturation = s:gauge('perf_manual_use_saturation',
        { help = 'USE saturation per resource (PSI some %, or waiting tasks), over the last scrape interval',
          labels = labels }),
      errors = s:gauge('perf_manual_use_errors',
        { help = 'USE errors per resource (per second, or a count in the interval), over the last scrape interval',
          labels = labels }),
    }
    local status = s:gauge('perf_manual_use_status',
      { help = "use-check's verdict per resource: 0 ok or idle, 1 worth a look (warn), 2 saturated (HIGH)",
        labels = { 'resource', 'name' } })
    for _, row in ipairs(u.rows) do
      for kind, f in pairs(fam) do
        local c = row[kind]
        if c and not c.missing and type(c.value) == 'number' then
          f:set({ resource = row.resource, name = row.name, source = c.source or 'unknown' }, c.value)
        end
      end
      if RANK[row.status] then status:set({ resource = row.resource, name = row.name }, RANK[row.status]) end
    end
    s:gauge('perf_manual_use_window_seconds', { help = 'Length of the interval the USE gauges cover' })
      :set({}, u.elapsed > 0 and u.elapsed or nil)

    local rq = s:runq_stats()
    if rq then
      s:histogram('perf_manual_runq_latency_seconds',
        { help = 'Run-queue latency (wakeup or preemption to running), kernel log2 buckets', unit = 'seconds',
          scale = 1e-9 })
        :observe({}, rq.slots, rq.total_ns, rq.count)
    end

    local rl = s:request_stats()
    if rl then
      s:histogram('perf_manual_request_latency_seconds',
        { help = "Request latency of the traced server (a connection's read to its first write), "
          .. 'kernel slots merged into log2 buckets', unit = 'seconds', scale = 1e-9 })
        :observe({}, rl.slots, rl.total_ns, rl.count)
    end

    local sc = s:syscall_stats()
    if sc then
      local h = s:histogram('perf_manual_syscall_latency_seconds',
        { help = 'System call latency (enter to exit) per syscall, kernel log2 buckets', unit = 'seconds',
          labels = { 'syscall' }, scale = 1e-9, guard_key = 'syscall' })
      local errs = s:counter('perf_manual_syscall_errors_total',
        { help = 'System calls that returned an error, per syscall', labels = { 'syscall' }, guard_key = 'syscall' })
      for _, row in ipairs(sc) do
        h:observe({ syscall = row.name }, row.slots, row.total_ns, row.count)
        errs:set({ syscall = row.name }, row.errors)
      end
    end

    local io = s:io_stats()
    if io then
      local h = s:histogram('perf_manual_block_io_latency_seconds',
        { help = 'Block I/O latency (issue to completion) per device and op, kernel log2 buckets', unit = 'seconds',
          labels = { 'device', 'op' }, scale = 1e-6, guard_key = 'block_io' })
      local errs = s:counter('perf_manual_block_io_errors_total',
        { help = 'Block I/O requests completed with an error', labels = { 'device', 'op' },
          guard_key = 'block_io' })
      for _, row in ipairs(io) do
        h:observe({ device = row.device, op = row.op }, row.slots, row.total_ns / 1e3, row.count)
        errs:set({ device = row.device, op = row.op }, row.errors)
      end
    end
  end,
}
