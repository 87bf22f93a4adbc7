-- tsa: thread-state accounting (Brendan Gregg's TSA method, measured): per
-- thread of the target, the share of its time on CPU, runnable waiting for
-- a CPU, and blocked, split by what it waits for, and the top waits
-- ("waits on pid 4242 (feeder) via pipe: 75% of wall time").
-- Measured by lib/perf_manual/measure/tsa.lua, drawn by report/tsa.lua.
return playbook {
  name = 'tsa',
  topic = 'methods',
  summary = 'thread states: on-CPU, runnable and blocked time per thread, and what each waits on',
  examples = '  perf_manual tsa --target 1234 --duration 5\n'
    .. '  perf_manual tsa --target nginx --top 5 --json\n'
    .. "  perf_manual tsa --target './build/workloads/tsa_states pipe' --duration 3   # launched, then stopped\n"
    .. '  perf_manual tsa --duration 2   # every thread of the system',
  params = {
    target = param.target { 'what to account: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to measure', default = '5s', above = 0 },
    top = param.integer { 'threads shown, the rest summed in one line', default = 10, min = 1, max = 1000000 },
    json = param.flag { 'print the result as one JSON document' },
    max_overhead = param.number { 'detach the tracer when its BPF programs use more than PCT% of one CPU', default = 5,
      above = 0, max = 10000 },
  },

  step 'account' {
    function(inv, p)
      local r = inv:tsa { target = inv:target(p.target), duration = p.duration, top = p.top,
        max_overhead = p.max_overhead }
      if r.available == false then inv:fail('tsa: ' .. tostring(r.why)) end
      if p.json then
        local doc = {}
        for k, v in pairs(r) do if k ~= 'text' then doc[k] = v end end
        inv:json(doc)
      else
        inv:show(r.text)
      end
    end,
  },
}
