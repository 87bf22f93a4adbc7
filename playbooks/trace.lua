-- trace: run BPF tracers (syscalls, scheduler, block I/O, locks, ...) on a
-- process, a cgroup or the whole system, and print BCC-style histograms and
-- top tables per interval or once at the end, each with its measurement
-- quality (events seen and lost, attach path, the tracer's own cost).
-- Tracers are found in lib/perf_manual/tracers/ (see tracers/init.lua).
return playbook {
  name = 'trace',
  summary = 'eBPF tracers (syscalls, sched, io, lock ...): histograms and top tables with their own cost',
  examples = '  perf_manual trace --events syscalls --pid 1234 --duration 10\n'
    .. '  perf_manual trace --events sched,syscalls --duration 30 --interval 5\n'
    .. '  perf_manual trace --events io --snoop --duration 5\n'
    .. '  perf_manual trace --events syscalls --cgroup system.slice/nginx.service --json',
  params = {
    events = param.list { 'tracers to run, comma-separated', default = 'syscalls,sched' },
    pid = param.pid { 'trace only this process', optional = true },
    cgroup = param.string { 'trace only this cgroup (path under /sys/fs/cgroup, or its id)', optional = true },
    duration = param.duration { 'how long to trace', default = '10s' },
    interval = param.duration { 'print (and reset) the histograms every interval', optional = true },
    snoop = param.flag { 'stream events of the tracers that support it (io)' },
    count_only = param.flag { 'syscalls: count calls only (cheapest; no errors or latency)' },
    per = param.choice { 'sched: group run-queue latency by', choices = { 'all', 'cpu', 'process' }, default = 'all' },
    top = param.integer { 'rows in top tables', default = 10 },
    max_overhead = param.number { 'detach a tracer whose BPF programs use more than PCT% of one CPU', default = 5 },
    json = param.flag { 'print the results as one JSON document' },
  },

  run = function(inv, p)
    local util = require('perf_manual.util')
    local sys = require('perf_manual._c.sys')
    local registry = require('perf_manual.tracers')
    local base = require('perf_manual.tracers.base')

    -- what to trace ---------------------------------------------------------
    local tracers, seen = {}, {}
    for _, ev in ipairs(p.events) do
      local t = registry.get(ev)
      if not t or t.error then
        util.user_error(string.format("trace: unknown event '%s'; valid events: %s", ev,
          table.concat(registry.events(), ', ')))
      end
      if not seen[t] then seen[t] = true; tracers[#tracers + 1] = { mod = t, event = t.event or t.name } end
    end
    if p.pid and p.cgroup then util.user_error('trace: give --pid or --cgroup, not both') end
    if p.duration <= 0 then util.user_error('trace: --duration must be more than 0') end
    if p.interval and p.interval <= 0 then util.user_error('trace: --interval must be more than 0') end
    if p.max_overhead <= 0 then util.user_error('trace: --max-overhead must be more than 0') end
    if p.top < 1 then util.user_error('trace: --top must be at least 1') end
    -- a zombie has exited too (its parent has not reaped it yet)
    local function alive(pid)
      local stat = util.readfile('/proc/' .. pid .. '/stat')
      local state = stat and stat:match('%) (%a)')
      return state ~= nil and state ~= 'Z' and state ~= 'X'
    end
    if p.pid and not alive(p.pid) then util.user_error('trace: no process ' .. p.pid) end
    if p.cgroup then
      local id, cerr = base.cgroup_id(p.cgroup)
      if not id then util.user_error('trace: ' .. cerr) end
    end
    local bpf = require('perf_manual.bpf')
    local ok, why = bpf.available()
    if not ok then util.user_error('trace: ' .. why) end

    local target = p.pid and ('pid ' .. p.pid) or p.cgroup and ('cgroup ' .. p.cgroup) or 'the whole system'
    local notes = {}
    local function note(text)
      notes[#notes + 1] = text
      inv:note(text)
      if not p.json then io.stderr:write('trace: ', text, '\n') end
    end

    -- start ---------------------------------------------------------------
    -- the loop below drives the run-time sampling windows from the start
    require('perf_manual.tracers.base').stats_lazy = true
    local running = {}
    for _, t in ipairs(tracers) do
      local inst, err = t.mod.start {
        pid = p.pid, cgroup = p.cgroup, mode = p.count_only and 'count' or nil, per = p.per, snoop = p.snoop,
      }
      if inst then
        t.inst = inst
        running[#running + 1] = t
      else
        t.error = err
        note(t.event .. ': ' .. tostring(err))
      end
    end
    if #running == 0 then
      util.user_error('trace: no tracer could start (' .. table.concat(notes, '; ') .. ')', 1)
    end
    local names = {}
    for _, t in ipairs(running) do names[#names + 1] = t.event end
    if not p.json then
      inv:print(string.format('Tracing %s for %s, %s%s... Hit Ctrl-C to end.', table.concat(names, ', '), target,
        util.fmt_duration(p.duration), p.interval and (', every ' .. util.fmt_duration(p.interval)) or ''))
      io.stdout:flush()
    end

    local intervals, snooped = {}, {}
    if p.snoop then
      local any = false
      for _, t in ipairs(running) do any = any or t.mod.snoop end
      if not any then
        note('--snoop: none of ' .. table.concat(names, ', ') .. ' streams events (io does); showing histograms only')
      end
    end
    local function render(t, res)
      if t.mod.render then return t.mod.render(res, { top = p.top }) end
      return util.json_encode(res, true) .. '\n'
    end
    local function emit(results, label)
      if p.json then
        local doc = { time = label, results = {} }
        for _, r in ipairs(results) do
          doc.results[r.t.event] = r.t.mod.to_json and r.t.mod.to_json(r.res) or r.res
        end
        intervals[#intervals + 1] = doc
        return
      end
      for _, r in ipairs(results) do
        inv:print(string.format('\n== %s%s', r.t.event, label and ('  ' .. label) or ''))
        inv:show(render(r.t, r.res))
      end
      io.stdout:flush()
    end

    -- trace -----------------------------------------------------------------
    local t0 = sys.now()
    local deadline = t0 + p.duration
    local next_interval = p.interval and t0 + p.interval
    local next_budget = t0 + 1
    local ended_by = 'duration'
    while true do
      local now = sys.now()
      if now >= deadline then break end
      local toggle = base.stats_tick(now) -- BPF run-time sampling windows
      local wake = math.min(deadline, next_interval or deadline, now + (p.snoop and 0.1 or 0.25), toggle or deadline)
      if not sys.sleep(math.max(0, wake - now)) then ended_by = 'interrupted'; break end
      now = sys.now()
      if p.snoop then
        for _, t in ipairs(running) do
          if t.inst.snoop and not t.inst.detached then
            if p.json then
              -- keep stdout one JSON document: events go into it
              local evs = t.inst.poll and t.inst:poll(0, 1024) or t.inst:snoop(1024) or {}
              local list = snooped[t.event] or util.array()
              snooped[t.event] = list
              for _, e in ipairs(evs) do list[#list + 1] = e end
            else
              for _, line in ipairs(t.inst:snoop(1024) or {}) do inv:print(line) end
              io.stdout:flush()
            end
          end
        end
      end
      if now >= next_budget then
        next_budget = now + 1
        for _, t in ipairs(running) do
          if not t.inst.detached then
            local over, msg = t.inst:over_budget(p.max_overhead)
            if over then t.inst:detach(msg); note(msg) end
          end
        end
      end
      if p.pid and not alive(p.pid) then
        note(string.format('process %d exited after %s: showing what was traced until then', p.pid,
          util.fmt_duration(now - t0)))
        ended_by = 'target exited'
        break
      end
      if next_interval and now >= next_interval and now < deadline - 1e-3 then
        next_interval = next_interval + p.interval
        local results = {}
        for _, t in ipairs(running) do results[#results + 1] = { t = t, res = t.inst:read{ clear = true } } end
        emit(results, string.format('%s  +%.1fs', os.date('%H:%M:%S'), now - t0))
      end
      inv:progress(string.format('tracing %s: %s of %s', table.concat(names, ','), util.fmt_duration(now - t0),
        util.fmt_duration(p.duration)))
    end
    inv:progress_done()

    -- final ------------------------------------------------------------------
    local results = {}
    for _, t in ipairs(running) do results[#results + 1] = { t = t, res = t.inst:stop() } end
    local label = p.interval and string.format('%s  +%.1fs', os.date('%H:%M:%S'), sys.now() - t0) or nil
    if ended_by == 'interrupted' then note('interrupted: final histograms below') end
    emit(results, label)
    if p.json then
      local doc = {
        target = { pid = p.pid, cgroup = p.cgroup }, events = util.array(names),
        duration_s = sys.now() - t0, ended_by = ended_by, notes = util.array(notes),
        unavailable = {}, intervals = util.array(intervals), snoop = p.snoop and snooped or nil,
      }
      for _, t in ipairs(tracers) do
        if t.error then doc.unavailable[t.event] = t.error end
      end
      inv:print(util.json_encode(doc, true))
    elseif #notes > 0 then
      inv:print('\nnotes:')
      for _, n in ipairs(notes) do inv:print('  ' .. n) end
    end
  end,
}
