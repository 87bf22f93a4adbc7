-- exec-monitor: a small runtime security monitor. Process execs, opens of
-- sensitive paths and outbound TCP connects, from kernel tracepoints
-- (bpf/execmon.bpf.c), judged by rules written in Lua — Falco-style
-- conditions as data and functions, in a file a team edits
-- (lib/perf_manual/runbooks/exec_rules.lua shows the shape) — and every
-- alert printed as one JSON line as it happens. --replay judges recorded
-- events again with today's rules (and needs no root).
local KINDS = { 'exec', 'open', 'connect' }

return playbook {
  name = 'exec-monitor',
  topic = 'security',
  summary = 'process execs, opens of sensitive paths and outbound connects, judged by Lua rules: JSON-line alerts',
  description = 'Rules: the built-in ones (lib/perf_manual/runbooks/exec_rules.lua) and those of --rules FILE, a Lua\n'
    .. 'file returning a list of { name, on = exec|open|connect, priority, paths, match, unless, when, output }.\n'
    .. 'Open rules name path prefixes: only opens under them leave the kernel. Alerts go to stdout as JSON\n'
    .. 'lines ({"time", "rule", "priority", "output", "event"}); the summary goes to stderr.',
  examples = '  perf_manual exec-monitor --duration 60\n'
    .. '  perf_manual exec-monitor --rules team_rules.lua --no-default-rules --duration 1h\n'
    .. '  perf_manual exec-monitor --target nginx.service --events --save /tmp/rec   # every event too\n'
    .. '  perf_manual exec-monitor --replay /tmp/rec --rules new_rules.lua           # today\'s rules, recorded events',
  params = {
    target = param.target { 'whose events: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to watch', default = '10s', above = 0, max = 7 * 86400 },
    rules = param.path { 'a Lua file of rules, added to the built-in ones', optional = true },
    no_default_rules = param.flag { 'use only the rules of --rules' },
    events = param.flag { 'print every event as a JSON line too ({"event": ...})' },
    max_overhead = param.number { 'detach the tracer past PCT% of one CPU', default = 5, above = 0, max = 10000 },
    save = param.path { 'also write DIR/exec-monitor.json (the events) for --replay', optional = true },
    replay = param.path { 'judge the events recorded in DIR/exec-monitor.json (nothing is traced)', optional = true,
      conflicts = { 'save' } },
  },

  step 'load the rules' {
    function(inv, p)
      local em = require('perf_manual.runbooks.exec_monitor')
      inv.rules = em.load_rules { file = p.rules, defaults = not p.no_default_rules }
      inv.em = em
    end,
  },

  step 'watch and alert' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local em, rules = inv.em, inv.rules
      local t0, counts, alerts, bad = nil, { exec = 0, open = 0, connect = 0 }, 0, {}
      local function judge(events)
        for _, e in ipairs(events) do
          counts[e.kind] = (counts[e.kind] or 0) + 1
          if p.events then inv:json_line { event = e } end
        end
        local found, errs = em.judge(rules, events, t0)
        for name, err in pairs(errs) do
          if not bad[name] then
            bad[name] = true
            inv:warn(string.format("rule '%s': its when() failed: %s", name, err))
          end
        end
        for _, a in ipairs(found) do
          alerts = alerts + 1
          inv:json_line { time = a.time, rule = a.rule, priority = a.priority, output = a.output, event = a.event }
        end
      end
      local rec = inv:exec_monitor { target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        prefixes = em.watched(rules), all_opens = em.all_opens(rules), max_overhead = p.max_overhead,
        replay = p.replay, on_events = function(events) t0 = t0 or (events[1] and events[1].ts_ns); judge(events) end }
      if rec.available == false then inv:fail('exec-monitor: ' .. tostring(rec.why)) end
      if rec.replayed then
        t0 = rec.events[1] and rec.events[1].ts_ns
        judge(rec.events)
      end
      if p.save then inv:save_recording(p.save, rec) end
      local parts = {}
      for _, k in ipairs(KINDS) do parts[#parts + 1] = string.format('%d %s', counts[k] or 0, k) end
      inv.err:write(string.format('exec-monitor: %s over %.1f s%s: %d events (%s), %d alerts from %d rules\n',
        rec.target or '?', rec.window_s or 0, rec.replayed and ' (recorded)' or '', #(rec.events or {}),
        table.concat(parts, ', '), alerts, #rules))
      if (rec.quality or {}).events_lost and rec.quality.events_lost > 0 then
        inv:warn(string.format('%d events were lost (ring buffer full)', rec.quality.events_lost))
      end
    end,
  },
}
