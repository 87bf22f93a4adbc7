--- Quantifying a symptom: CPU busy, iowait, load, run queue and context
--- switches of the system and, for a process target, its CPU share,
--- run-queue wait and timeslices, over one short session window (/proc).
local measure = require('perf_manual.measure')
local cpu = require('perf_manual.collectors.cpu')

local M = {}

--- opts: target, duration, progress. Returns the numbers.
function M.run(opts)
  return measure.with_session({ target = opts.target, duration = opts.duration or 3, what = 'quantify',
    progress = opts.progress }, function(s)
    s:begin()
    local pid = s.target.kind == 'pid' and s.target.pid or nil
    local out = { duration = s.duration, pid = pid }
    local s0, t0 = cpu.sample(), pid and cpu.sample_task(pid)
    s:run()
    local s1, t1 = cpu.sample(), pid and cpu.sample_task(pid)
    local r = cpu.rates(s0, s1)
    out.system = { busy_pct = r.total and r.total.busy_pct, iowait_pct = r.total and r.total.iowait_pct,
      load1 = r.load1, procs_running = r.procs_running, procs_blocked = r.procs_blocked,
      ctxt_per_s = r.ctxt_per_s }
    if t0 and t1 then
      local tr = cpu.task_rates(t0, t1)
      out.process = { cpu_pct = tr.cpu_pct, runq_wait_pct = tr.runq_wait_pct,
        timeslices_per_s = tr.timeslices_per_s, threads = t1.threads }
    elseif pid then
      out.missing = { process = 'process ' .. pid .. ' exited or is not readable' }
    end
    if s.ended_by ~= 'duration' then out.ended_by = s.ended_by end
    return out
  end)
end

return M
