-- use-check: the USE method (Utilization, Saturation, Errors) for every
-- resource, with the source of each figure and a one-line verdict.
-- Measured by lib/perf_manual/measure/use.lua, judged by the rules and
-- thresholds of lib/perf_manual/analyzers/use.lua.
return playbook {
  name = 'use-check',
  topic = 'methods',
  summary = 'USE table (utilization, saturation, errors) of CPU, memory, disks, network and locks, with a verdict',
  examples = '  perf_manual use-check --duration 10\n'
    .. '  perf_manual use-check --target 1234 --duration 5 --json\n'
    .. '  perf_manual use-check --target nginx --duration 30 --interval 2\n'
    .. "  perf_manual use-check --target './build/workloads/cpu_burn 4' --duration 5   # launched, then stopped\n"
    .. '  perf_manual use-check --no-bpf   # /proc, PSI and thread states only\n'
    .. '  perf_manual use-check --replay investigations/2026-12-03_slow   # judge recorded measures again',
  params = {
    target = param.target { 'what to check: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to sample', default = '5s', above = 0 },
    interval = param.duration { 'time between samples', default = '1s', above = 0 },
    json = param.flag { 'print the result as one JSON document' },
    save = param.path { 'also write the JSON document to this file', optional = true },
    no_bpf = param.flag { 'judge from /proc, PSI and thread states only (no BPF tracers)' },
    lock_hold = param.flag { "also measure how long a process holds its mutexes (uprobes on its C library: "
      .. "each lock call pays a trap)" },
    max_overhead = param.number { 'detach a tracer whose BPF programs use more than PCT% of one CPU', default = 5,
      above = 0, max = 10000 },
    replay = param.path { "judge the measures recorded in DIR's use-check.json again (no live collection)",
      optional = true },
  },

  step 'sample and judge' {
    function(inv, p)
      inv:check_output(p.save, 'file', '--save')
      local r = inv:use_check { target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        interval = p.interval, bpf = not p.no_bpf, max_overhead = p.max_overhead,
        lock_hold = p.lock_hold }
      if r.available == false then inv:fail('use-check: ' .. tostring(r.why)) end
      for _, row in ipairs(r.rows) do
        if row.status == 'HIGH' then
          inv:finding { resource = row.resource, metric = 'saturation', value = row.saturation.value,
                        severity = 'high', evidence = row, summary = row.name .. ': ' .. table.concat(row.why, '; ') }
        end
      end
      local doc = { target = r.target, duration = r.duration, elapsed = r.elapsed, samples = r.samples,
        partial = r.partial or false, stopped = r.stopped or false, exited = r.exited or false,
        rows = r.rows, idle = r.idle, verdict = r.verdict_detail, cpu_reason = r.cpu_reason, notes = r.notes,
        sources = r.sources, culprits = r.culprits,
        measures = r.measures }
      local t = type(r.target) == 'table' and r.target or {}
      doc.exit_status, doc.exit_signal = t.exit_status, t.exit_signal
      if p.save then inv:save_file(p.save, doc) end
      if p.json then inv:json(doc)
      else
        inv:show(r.text)
        -- a command launched after `--`: how it ended
        local ended = t.launched and inv:exit_text(t)
        if ended then inv:print(ended) end
      end
    end,
  },
}
