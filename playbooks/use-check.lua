-- use-check: the USE method (Utilization, Saturation, Errors) for every
-- resource, with the source of each figure and a one-line verdict.
-- The rules and thresholds live in lib/perf_manual/analyzers/use.lua.
return playbook {
  name = 'use-check',
  summary = 'USE table (utilization, saturation, errors) of CPU, memory, disks, network and locks, with a verdict',
  examples = '  perf_manual use-check --duration 10\n'
    .. '  perf_manual use-check --target 1234 --duration 5 --json\n'
    .. '  perf_manual use-check --target nginx --duration 30 --interval 2\n'
    .. '  perf_manual use-check --no-bpf   # /proc, PSI and thread states only',
  params = {
    target = param.target { 'what to check: system, a PID, a systemd service or a cgroup path', default = 'system' },
    duration = param.duration { 'how long to sample', default = '5s' },
    interval = param.duration { 'time between samples', default = '1s' },
    json = param.flag { 'print the result as one JSON document' },
    save = param.path { 'also write the JSON document to this file', optional = true },
    no_bpf = param.flag { 'judge from /proc, PSI and thread states only (no BPF tracers)' },
    max_overhead = param.number { 'detach a tracer whose BPF programs use more than PCT% of one CPU', default = 5 },
  },

  step 'sample and judge' {
    function(inv, p)
      if p.duration <= 0 then
        require('perf_manual.util').user_error('use-check: --duration must be more than 0')
      end
      if p.interval <= 0 then
        require('perf_manual.util').user_error('use-check: --interval must be more than 0')
      end
      if p.max_overhead <= 0 then
        require('perf_manual.util').user_error('use-check: --max-overhead must be more than 0')
      end
      local use = require('perf_manual.analyzers.use')
      local target = require('perf_manual.target').resolve(p.target)
      local r = use.check {
        target = target, duration = p.duration, interval = p.interval,
        bpf = not p.no_bpf, max_overhead = p.max_overhead,
        progress = function(text) inv:progress(text) end,
      }
      inv:progress_done()
      inv.result = r
      for _, row in ipairs(r.rows) do
        if row.status == 'HIGH' then
          inv:finding { resource = row.resource, metric = 'saturation', value = row.saturation.value,
                        severity = 'high', evidence = row, summary = row.name .. ': ' .. table.concat(row.why, '; ') }
        end
      end
      local util = require('perf_manual.util')
      local doc = {
        target = r.target, duration = r.duration, elapsed = r.elapsed, samples = r.samples,
        partial = r.partial or false, stopped = r.stopped or false, exited = r.exited or false,
        rows = util.array(r.rows), verdict = r.verdict, notes = util.array(r.notes), sources = r.sources,
        measures = r.measures,
      }
      if p.save then
        local ok, err = util.write_atomic(p.save, util.json_encode(doc, true) .. '\n')
        if not ok then util.user_error('use-check: ' .. err) end
      end
      if p.json then
        inv:print(util.json_encode(doc, true))
      else
        inv:show(use.render(r))
      end
    end,
  },
}
