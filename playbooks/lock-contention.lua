-- lock-contention: which locks the threads of a process wait on, for how
-- long, who releases them and from where: futex waits per address (named
-- from the binary's symbols), per thread, kernel lock contention, and the
-- USE Mutex row, then a judgement. A thin runbook over the lock tracer
-- (`trace --events lock`), for the question a lock-contention profiler asks.
local drill = require('perf_manual.report.drill')

local function pct(v) return v and string.format('%.1f%%', v * 100) or '-' end

return playbook {
  name = 'lock-contention',
  topic = 'locks',
  summary = 'Lock contention: futex waits per lock and thread, who holds it and from where, kernel locks, USE row',
  needs = { 'bpf' },
  examples = '  perf_manual lock-contention --pid 1234 --duration 10\n'
    .. '  perf_manual lock-contention --duration 5 -- ./build/workloads/mutex_contention 8 5\n'
    .. '  perf_manual lock-contention --pid 1234 --json --save /tmp/lk && perf_manual lock-contention --replay /tmp/lk',
  params = {
    target = param.target { 'whose waits: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to trace', default = '5s', above = 0, until_exit = true },
    no_stacks = param.flag { 'no user stacks of waiters and wakers (cheaper; no call sites)' },
    unwind = param.choice { 'user stacks: auto (from DWARF call-frame information where an object has it, frame '
      .. 'pointers elsewhere), fp (frame pointers only), dwarf (call-frame information only)',
      choices = { 'auto', 'fp', 'dwarf' }, default = 'auto' },
    busy_pct = param.number { 'threads waiting more than PCT% of their time is judged contention', default = 20,
      above = 0, max = 100 },
    top = param.integer { 'rows in the tables', default = 10, min = 1, max = 10000 },
    json = param.flag { 'print the result as one JSON document' },
    max_overhead = param.number { 'detach the tracer when it uses more than PCT% of one CPU', default = 5,
      above = 0, max = 10000 },
    save = param.path { 'also write DIR/trace-lock.json, for --replay', optional = true },
    replay = param.path { 'judge the recording in DIR (trace-lock.json) again, without tracing', optional = true },
  },

  step 'trace lock waits' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local r = inv:trace { 'lock', target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        stacks = not p.no_stacks, unwind = p.unwind, max_overhead = p.max_overhead }
      if r.available == false then inv:fail('lock-contention: ' .. tostring(r.why)) end
      if p.save then inv:save_file(inv:mkdir(p.save) .. '/trace-lock.json', r) end
      inv.result = r
    end,
  },

  step 'judge' {
    function(inv, p)
      local r = inv.result
      local use = r.use or {}
      local sat = use.saturation or {}
      local top = r.futex and r.futex[1]
      local busy = (use.utilisation or 0) * 100 > p.busy_pct
      local verdict
      if not top then
        verdict = 'no futex waits: the target does not wait on user-space locks'
      elseif busy then
        verdict = string.format('lock contention: the threads wait %s of their time on locks, %.2f waiters on '
          .. 'average; most on %s', pct(use.utilisation), sat.mean_waiters or 0,
          top.name or string.format('0x%x', top.uaddr))
      else
        verdict = string.format('no lock contention to speak of: the threads wait %s of their time on locks '
          .. '(at most %g%%)', pct(use.utilisation), p.busy_pct)
      end
      local lines = drill.lock(r)
      if p.json then
        inv:json { target = r.target, futex = r.futex, threads = r.threads, kernel = r.kernel, use = r.use,
          quality = r.quality, culprit = lines, contention = busy, verdict = verdict, notes = r.session_notes }
        return
      end
      inv:show(inv:render_tracer('lock', r, { top = p.top }))
      inv:print('')
      for _, l in ipairs(lines) do inv:print(l) end
      inv:print('verdict: ' .. verdict)
      for _, n in ipairs(r.session_notes or {}) do inv:print('note: ' .. n) end
    end,
  },
}
