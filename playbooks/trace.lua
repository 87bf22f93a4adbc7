-- trace: run BPF tracers (syscalls, scheduler, block I/O, locks, ...) on a
-- target, and print BCC-style histograms and top tables per interval or
-- once at the end, each with its measurement quality (events seen and lost,
-- attach path, the tracer's own cost). Tracers are found in
-- lib/perf_manual/tracers/; the session that runs them is measure/trace.lua.
return playbook {
  name = 'trace',
  topic = 'methods',
  summary = 'eBPF tracers (syscalls, sched, io, lock ...): histograms and top tables with their own cost',
  examples = '  perf_manual trace --events syscalls --pid 1234 --duration 10\n'
    .. "  perf_manual trace --events syscalls -- sh -c 'make -j2'   # launched; its children followed; ends when it " ..
      "exits\n"
    .. '  perf_manual trace --events sched,syscalls --duration 30 --interval 5\n'
    .. '  perf_manual trace --events io --snoop --duration 5\n'
    .. '  perf_manual trace --events syscalls --target nginx.service --json\n'
    .. '  perf_manual trace --events io --duration 30 --save /tmp/io && perf_manual trace --replay /tmp/io',
  params = {
    events = param.list { 'tracers to run, comma-separated', default = 'syscalls,sched' },
    target = param.target { 'what to trace: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to trace (with -- COMMAND: until it exits)', default = '10s', above = 0,
      until_exit = true },
    interval = param.duration { 'print (and reset) the histograms every interval', optional = true, above = 0 },
    snoop = param.flag { 'stream events of the tracers that support it (io: requests, net: closed connections)' },
    count_only = param.flag { 'syscalls: count calls only (cheapest; no errors or latency)' },
    per = param.choice { 'sched: group run-queue latency by', choices = { 'all', 'cpu', 'process' }, default = 'all' },
    unwind = param.choice { 'user stacks (offcpu, lockhold holders): auto (from DWARF call-frame information where an '
      .. 'object has it, frame pointers elsewhere), fp (frame pointers only), dwarf (call-frame information only)',
      choices = { 'auto', 'fp', 'dwarf' }, default = 'auto' },
    top = param.integer { 'rows in top tables', default = 10, min = 1, max = 10000 },
    max_overhead = param.number { 'detach a tracer whose BPF programs use more than PCT% of one CPU', default = 5,
      above = 0, max = 10000 },
    json = param.flag { 'print the results as one JSON document' },
    save = param.path { 'also write DIR/trace.json (the final results) for --replay and reports', optional = true },
    replay = param.path { "show the results recorded in DIR's trace.json again (no tracing)", optional = true },
  },

  run = function(inv, p)
    inv:check_output(p.save, 'dir', '--save')
    local intervals, snooped = {}, {}
    local function show(results, label)
      if p.json then
        intervals[#intervals + 1] = inv:tracer_json(results, label)
        return
      end
      for _, r in ipairs(results) do
        inv:print(string.format('\n== %s%s', r.event, label and ('  ' .. label) or ''))
        inv:show(inv:render_tracer(r.event, r.res, { top = p.top }))
      end
      inv:flush()
    end
    local r = inv:trace {
      events = p.events, target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
      interval = p.interval, output = p.json and 'stderr-only' or 'inherit',
      snoop = p.snoop, mode = p.count_only and 'count' or nil, per = p.per, max_overhead = p.max_overhead,
      json_snoop = p.json, unwind = p.unwind,
      note = function(text)
        inv:note(text)
        if not p.json then inv.err:write('trace: ', text, '\n') end
      end,
      on_start = function(names, s)
        if p.json then return end
        inv:print(string.format('Tracing %s for %s, %s%s... Hit Ctrl-C to end.', table.concat(names, ', '),
          s.target.kind == 'system' and 'the whole system' or s.target.label,
          p.duration == math.huge and 'until it exits' or inv:duration_text(p.duration),
          p.interval and (', every ' .. inv:duration_text(p.interval)) or ''))
        inv:flush()
      end,
      on_interval = show,
      on_snoop = function(event, items)
        if p.json then
          -- stdout stays one JSON document: events go into it
          snooped[event] = snooped[event] or inv:list()
          for _, e in ipairs(items) do snooped[event][#snooped[event] + 1] = e end
        else
          for _, line in ipairs(items) do inv:print(line) end
          inv:flush()
        end
      end,
    }
    if r.available == false then inv:fail('trace: ' .. tostring(r.why)) end
    if p.save then inv:save_file(inv:mkdir(p.save) .. '/trace.json', r) end
    local final = {}
    for _, ev in ipairs(r.order) do final[#final + 1] = { event = ev, res = r.results[ev] } end
    show(final, r.final_label)
    if p.json then
      inv:json { target = r.target, events = r.events, duration_s = r.duration_s, ended_by = r.ended_by,
        exit_status = r.target.exit_status, exit_signal = r.target.exit_signal,
        notes = r.notes, unavailable = r.unavailable, intervals = inv:list(intervals),
        snoop = p.snoop and snooped or nil }
    else
      if #r.notes > 0 then
        inv:print('\nnotes:')
        for _, n in ipairs(r.notes) do inv:print('  ' .. n) end
      end
      local ended = inv:exit_text(r.target)
      if ended then inv:print(string.format('\n%s (traced %s)', ended, inv:duration_text(r.duration_s))) end
    end
  end,
}
