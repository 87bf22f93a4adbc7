-- probe: a one-line probe, without a compiler: count the events of a
-- uprobe/uretprobe, USDT probe, tracepoint or raw tracepoint, or histogram
-- an argument, the return value or a function's latency, keyed by process,
-- thread name, stack or a value; with the measurement-quality line every
-- tracer prints. The spec is the one inv:probe{} takes in a playbook
-- (docs/playbooks.md, "Probes"); placed by lib/perf_manual/measure/probe.lua.
return playbook {
  name = 'probe',
  topic = 'methods',
  summary = 'place a uprobe, USDT probe or tracepoint and count, histogram or stack its events',
  examples = "  perf_manual probe 'uprobe:libc:malloc' --hist arg0 --stacks --pid 1234 --duration 5\n"
    .. "  perf_manual probe 'usdt:/usr/bin/python3:python:function__entry' --count --by arg1\n"
    .. "  perf_manual probe 'tracepoint:sched:sched_process_exec' --count --by comm\n"
    .. "  perf_manual probe 'uprobe:libc:fsync' --latency --by comm -- ./my_db --load\n"
    .. "  perf_manual probe 'uretprobe:libc:read' --hist retval:s64 --linear 0,4096,512 --comm nginx\n"
    .. "  perf_manual probe 'tracepoint:syscalls:sys_enter_write' --hist args.count --filter 'args.count > 0' --json",
  params = {
    spec = param.string { 'the probe point: tracepoint:CAT:NAME, rawtracepoint:NAME, uprobe:BIN:FUNC, '
      .. 'uretprobe:BIN:FUNC, usdt:BIN:PROVIDER:NAME (BIN: a path, or a library/program name like libc)',
      positional = true, required = true },
    count = param.flag { 'count events (the default)' },
    hist = param.string { 'histogram of a value: argN, retval, latency, args.FIELD (argN:s32 reads it as a type)',
      optional = true },
    latency = param.flag { 'histogram of entry -> return time of a function (uprobe)' },
    linear = param.string { "linear histogram buckets 'MIN,MAX,STEP' instead of log2", optional = true },
    by = param.string { 'key: pid, tid, comm, stack, ustack, kstack or a value (argN, retval, args.FIELD); '
      .. 'comma-separated', optional = true },
    stacks = param.flag { 'key by user + kernel stack (same as --by stack)' },
    unwind = param.choice { 'user stacks: auto (from DWARF call-frame information where an object has it, frame '
      .. 'pointers elsewhere), fp (frame pointers only), dwarf (call-frame information only)',
      choices = { 'auto', 'fp', 'dwarf' }, default = 'auto' },
    filter = param.string { "count only events where 'VALUE OP NUMBER' (OP: == != < <= > >=)", optional = true },
    comm = param.string { 'count only threads of this name', optional = true },
    tid = param.integer { 'count only this thread', optional = true, min = 1 },
    target = param.target { 'whose events: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to probe (with -- COMMAND: until it exits)', default = '10s', above = 0,
      until_exit = true },
    interval = param.duration { 'print (and reset) the counts every interval', optional = true, above = 0 },
    top = param.integer { 'keys shown', default = 10, min = 1, max = 1000000 },
    max_overhead = param.number { 'detach the probe when its BPF program uses more than PCT% of one CPU',
      default = 5, above = 0, max = 10000 },
    json = param.flag { 'print the result as one JSON document' },
  },

  run = function(inv, p)
    local intervals, started = {}, false
    local r = inv:probe {
      p.spec, hist = p.hist, latency = p.latency or nil, linear = p.linear, by = p.by, stacks = p.stacks or nil,
      filter = p.filter, comm = p.comm, unwind = p.unwind, tid = p.tid, count = p.count or nil,
      target = inv:target(p.target), duration = p.duration, interval = p.interval, max_overhead = p.max_overhead,
      output = p.json and 'stderr-only' or 'inherit',
      -- a probe that cannot be placed is the error message itself, not a note
      note = function(text) if started and not p.json then inv.err:write('probe: ', text, '\n') end end,
      on_start = function(_, s)
        started = true
        if p.json then return end
        inv:print(string.format('Probing %s on %s for %s... Hit Ctrl-C to end.', p.spec,
          s.target.kind == 'system' and 'the whole system' or s.target.label,
          p.duration == math.huge and 'until it exits' or inv:duration_text(p.duration)))
        inv:flush()
      end,
      on_interval = function(res, label)
        if p.json then
          intervals[#intervals + 1] = { time = label, result = inv:probe_json(res) }
        else
          inv:print('\n== ' .. label)
          inv:show(inv:render_probe(res, { top = p.top }))
          inv:flush()
        end
      end,
    }
    if r.available == false then inv:fail('probe: ' .. tostring(r.why), 1) end
    if p.json then
      local doc = inv:probe_json(r)
      doc.intervals = inv:list(intervals)
      inv:json(doc)
      return
    end
    if r.final_label then inv:print('\n== ' .. r.final_label) end
    inv:print('')
    inv:show(inv:render_probe(r, { top = p.top }))
    if #(r.notes or {}) > 0 then
      inv:print('\nnotes:')
      for _, n in ipairs(r.notes) do inv:print('  ' .. n) end
    end
    local ended = inv:exit_text(r.target)
    if ended then inv:print(string.format('\n%s (probed %s)', ended, inv:duration_text(r.duration_s))) end
  end,
}
