-- runqlat: how long runnable tasks wait for a CPU (scheduler run-queue
-- latency), as a histogram for the whole system, per CPU or per process,
-- with the run-queue length beside it, and a one-line judgement. A thin
-- runbook over the sched tracer (`trace --events sched`), named as users
-- of BCC's runqlat know it.
local function ms(us) return us and string.format('%.2f ms', us / 1000) or '-' end

return playbook {
  name = 'runqlat',
  topic = 'cpu',
  summary = 'Run-queue latency: how long tasks wait for a CPU (histogram, per CPU or process), like runqlat',
  needs = { 'bpf' },
  examples = '  perf_manual runqlat --duration 10\n'
    .. '  perf_manual runqlat --pid 1234 --per process\n'
    .. '  perf_manual runqlat --per cpu --interval 1 --duration 5\n'
    .. '  perf_manual runqlat --duration 5 --save /tmp/rq && perf_manual runqlat --replay /tmp/rq --json',
  params = {
    target = param.target { 'whose wakeups: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to measure', default = '5s', above = 0, until_exit = true },
    interval = param.duration { 'print (and reset) the histogram every interval', optional = true, above = 0 },
    per = param.choice { 'one histogram for all, or one per CPU or per process (runqlat -C / -P)',
      choices = { 'all', 'cpu', 'process' }, default = 'all' },
    top = param.integer { 'histograms shown with --per', default = 10, min = 1, max = 10000 },
    slow_ms = param.number { 'p99 above this many ms is judged CPU saturation', default = 5, above = 0 },
    json = param.flag { 'print the result as one JSON document' },
    max_overhead = param.number { 'detach the tracer when it uses more than PCT% of one CPU', default = 5,
      above = 0, max = 10000 },
    save = param.path { 'also write DIR/trace-sched.json, for --replay', optional = true },
    replay = param.path { "judge the recording in DIR (trace-sched.json) again, without tracing", optional = true },
  },

  step 'measure run-queue latency' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local on_interval = p.interval and not p.json and function(results, label)
        inv:print('\n== ' .. label)
        inv:show(inv:render_tracer('sched', results[1].res, { top = p.top }))
        inv:flush()
      end or nil
      local r = inv:trace { 'sched', target = not p.replay and inv:target(p.target) or nil, per = p.per,
        duration = p.duration, interval = p.interval, on_interval = on_interval, max_overhead = p.max_overhead }
      if r.available == false then inv:fail('runqlat: ' .. tostring(r.why)) end
      if p.save then inv:save_file(inv:mkdir(p.save) .. '/trace-sched.json', r) end
      inv.result = r
    end,
  },

  step 'judge' {
    function(inv, p)
      local r = inv.result
      local verdict
      if (r.count or 0) == 0 then
        verdict = 'no wakeups seen: nothing of the target became runnable in the window'
      elseif (r.p99 or 0) / 1000 > p.slow_ms then
        verdict = string.format('CPU saturation: 1 wakeup in 100 waits over %s for a CPU (p99 %s > %g ms)',
          ms(r.p99), ms(r.p99), p.slow_ms)
      else
        verdict = string.format('no CPU saturation seen: p99 run-queue latency %s (at most %g ms)', ms(r.p99),
          p.slow_ms)
      end
      local worst = r.groups and r.groups[1]
      if p.json then
        inv:json { target = r.target, per = r.per, unit = r.unit, count = r.count, avg = r.avg, p50 = r.p50,
          p90 = r.p90, p99 = r.p99, buckets = r.buckets, groups = r.groups, runqlen = r.runqlen,
          quality = r.quality, verdict = verdict, saturated = (r.p99 or 0) / 1000 > p.slow_ms,
          notes = r.session_notes }
        return
      end
      if not p.interval then inv:show(inv:render_tracer('sched', r, { top = p.top })) end
      if worst and r.per == 'process' then
        inv:printf('longest total wait: pid %s %s, %d wakeups, avg %s, p99 %s\n', tostring(worst.pid),
          worst.comm or '?', worst.count, ms(worst.avg), ms(worst.p99))
      end
      inv:print('verdict: ' .. verdict)
      for _, n in ipairs(r.session_notes or {}) do inv:print('note: ' .. n) end
    end,
  },
}
