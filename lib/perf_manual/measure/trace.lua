--- Tracing on a measurement session: starts the BPF tracers named by
--- `events` against the target, reads them every interval (and streams
--- their events with snoop), keeps them within the overhead budget, and
--- stops them with a final read when the duration is over, Ctrl-C comes or
--- the target exits.
---
---   local r = require('perf_manual.measure.trace').run {
---     events = { 'syscalls', 'sched' }, target = '1234', duration = 10,
---     interval = 2, on_interval = function(results, label) end,   -- results: { { event=, mod=, res= } }
---     snoop = true, on_snoop = function(event, items) end }
---   r.results[event], r.order, r.unavailable[event], r.notes, r.ended_by
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local registry = require('perf_manual.tracers')

local M = {}

--- The tracer modules for event names; a bad name is a user error listing
--- the valid ones.
function M.tracers(events)
  local out, seen = {}, {}
  for _, ev in ipairs(events) do
    local t = registry.get(ev)
    if not t or t.error then
      util.user_error(string.format("trace: unknown event '%s'; valid events: %s", ev,
        table.concat(registry.events(), ', ')))
    end
    if not seen[t] then seen[t] = true; out[#out + 1] = { mod = t, event = t.event or t.name } end
  end
  return out
end

--- Runs the tracers. opts: events, target, duration, interval, snoop, mode,
--- per, tracer (extra start options for every tracer), max_overhead, note,
--- progress, on_interval(results, label), on_snoop(event, items), json_snoop
--- (poll events as tables instead of lines), soft (return nil, why instead of
--- a user error when BPF or every tracer is unavailable).
function M.run(opts)
  local wanted = M.tracers(opts.events)
  local ok, why = require('perf_manual.bpf').available()
  if not ok then
    if opts.soft then return nil, why end
    util.user_error('trace: ' .. why)
  end
  -- a command starts once the tracers are attached to its cgroup: nothing it does is missed
  return measure.with_session({ target = opts.target, duration = opts.duration, what = 'tracing',
    max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note, soft = opts.soft,
    defer_launch = true, output = opts.output },
    function(s) return M.run_on(s, wanted, opts) end)
end

function M.run_on(s, wanted, opts)
  s:start()
  local filter, ferr = targets.bpf_filter(s.target)
  if not filter then util.user_error('trace: ' .. ferr) end
  for _, t in ipairs(wanted) do
    if t.mod.needs_target and not (filter.pid or filter.cgroup) then
      local why = t.event .. ' needs a target (--pid, --cgroup, --target or -- COMMAND): ' .. t.mod.needs_target
      if opts.soft then return nil, why end
      util.user_error('trace: ' .. why)
    end
  end
  local unavailable, running, names = {}, {}, {}
  for _, t in ipairs(wanted) do
    local o = { pid = filter.pid, cgroup = filter.cgroup, mode = opts.mode, per = opts.per, snoop = opts.snoop }
    for k, v in pairs(opts.tracer or {}) do o[k] = v end
    local tr, err = s:start_tracer(t.event, t.mod, o)
    if tr then
      t.inst = tr
      running[#running + 1] = t
      names[#names + 1] = t.event
    else
      unavailable[t.event] = err
      s:note(t.event .. ': ' .. tostring(err))
    end
  end
  if #running == 0 then
    local list = {}
    for _, n in ipairs(s.notes) do list[#list + 1] = n end
    if opts.soft then return nil, table.concat(list, '; ') end
    util.user_error('trace: no tracer could start (' .. table.concat(list, '; ') .. ')', 1)
  end
  -- the probes are attached: a deferred command starts now, the window with it
  s:begin()
  if opts.on_start then opts.on_start(names, s) end
  if opts.snoop then
    local any = false
    for _, t in ipairs(running) do any = any or t.mod.snoop end
    if not any then
      s:note('--snoop: none of ' .. table.concat(names, ', ')
        .. ' streams events (io and net do); showing histograms only')
    end
  end
  local function snoop()
    for _, t in ipairs(running) do
      -- drain what is there: one batch of 1024 a tick capped a busy disk at
      -- ~10k requests/s, and the rest was still in the ring at the end
      for _ = 1, 64 do
        if not t.inst.snoop or t.inst.detached then break end
        local items
        if opts.json_snoop and t.inst.poll then items = t.inst:poll(0, 1024) else items = t.inst:snoop(1024) end
        if items and #items > 0 and opts.on_snoop then opts.on_snoop(t.event, items) end
        if not items or #items < 1024 then break end
      end
    end
  end
  -- tracers that stream through a ring buffer (net's closed connections)
  -- are drained often, so a busy interval does not fill it
  local drains = {}
  for _, t in ipairs(running) do
    if t.inst.drain then drains[#drains + 1] = t.inst end
  end
  local function tick()
    for _, tr in ipairs(drains) do
      if not tr.detached then tr:drain() end
    end
    if opts.snoop then snoop() end
  end
  local ticking = opts.snoop or #drains > 0
  s:begin()
  local t0 = s.t0
  local label = function(now) return string.format('%s  +%.1fs', os.date('%H:%M:%S'), now - t0) end
  local ended_by = s:run {
    interval = opts.interval,
    -- a launched command's end is still seen within the session's short poll
    poll = ticking and (s.target.launched and math.min(0.1, measure.POLL_LAUNCHED) or 0.1) or nil,
    tick = ticking and tick or nil,
    on_interval = function(now)
      local results = {}
      for _, t in ipairs(running) do
        results[#results + 1] = { event = t.event, mod = t.mod, res = t.inst:read { clear = true } }
      end
      if opts.on_interval then opts.on_interval(results, label(now)) end
    end,
    label = function(now)
      return string.format('tracing %s: %s of %s', table.concat(names, ','), util.fmt_duration(now - t0),
        util.fmt_duration(s.duration))
    end,
  }
  if opts.snoop then snoop() end
  if ended_by == 'target exited' and s:command_exited() then -- luacheck: ignore 542
    -- the command's end is the end of the window: said with its exit status, not as a note
  elseif ended_by == 'target exited' then
    s:note(string.format('process %s exited after %s: showing what was traced until then',
      tostring(s.target.pid or s.target.label), util.fmt_duration(s.exited_after or 0)))
  elseif ended_by == 'interrupted' then
    s:note(string.format('stopped early (Ctrl-C) after %s of %s: final histograms below',
      util.fmt_duration(s:elapsed()), util.fmt_duration(s.duration)))
  end
  local t_end = sys.now()
  local final = s:stop_tracers()
  -- a launched command still running at the end of the window stops now, so the result says how it ended
  if s.owns_target then targets.stop(s.target) end
  local out = { target = targets.describe(s.target), events = util.array(names), results = {},
    order = util.array(), unavailable = unavailable, notes = s.notes, ended_by = ended_by,
    duration_s = t_end - t0, window = { t0, t_end }, -- CLOCK_MONOTONIC: to read other counters over it
    final_label = opts.interval and label(sys.now()) or nil }
  for _, t in ipairs(running) do
    out.results[t.event] = final[t.event]
    out.order[#out.order + 1] = t.event
  end
  return out
end

return M
