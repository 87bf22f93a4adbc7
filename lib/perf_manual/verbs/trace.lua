--- inv:trace { "io", target =, duration =, snoop =, ... }  one tracer: its result
--- inv:trace { events = { "syscalls", "sched" }, interval =, on_interval =, ... }
---   several: { results = { event = result }, order =, notes =, unavailable =, ended_by = }
--- Runs on perf_manual.measure.trace, like the `trace` command. For syscall
--- with `only = { names }`, share_of_time is the share of syscall time spent
--- in those.
local util = require('perf_manual.util')
local tracers = require('perf_manual.tracers')
local report_tracers = require('perf_manual.report.tracers')
local measure_trace = require('perf_manual.measure.trace')
local common = require('perf_manual.verbs.common')

local M = {}

-- options that are the verb's own, not the tracers'
local OWN = { duration = true, only = true, events = true, tracer = true, target = true, pid = true, interval = true,
  snoop = true, mode = true, per = true, max_overhead = true, on_interval = true, on_snoop = true, on_start = true,
  json_snoop = true, note = true }

local function share_of(data, only)
  if not (only and type(data.syscalls) == 'table') then return end
  local want, part, all = {}, 0, 0
  for _, n in ipairs(only) do want[n] = true end
  for _, sc in ipairs(data.syscalls) do
    all = all + (sc.total_ns or 0)
    if want[sc.name] then part = part + (sc.total_ns or 0) end
  end
  data.only = only
  data.share_of_time = all > 0 and part / all or nil
end

function M.trace(inv, opts)
  opts = opts or {}
  local params = inv.params or {}
  local single = opts[1] or opts.tracer
  if not single and not opts.events then
    error('[perf_manual.verbs] trace: which tracer? inv:trace { "io", ... }', 2)
  end
  local extra = {}
  for k, v in pairs(opts) do if type(k) == 'string' and not OWN[k] then extra[k] = v end end
  local base = single and ('trace-' .. single) or 'trace'
  return common.adapter(inv, base, function()
    local r, why = measure_trace.run {
      events = opts.events or { single }, target = common.target(inv, opts),
      duration = opts.duration or params.duration or 5, interval = opts.interval,
      snoop = opts.snoop, mode = opts.mode, per = opts.per, tracer = extra,
      max_overhead = opts.max_overhead or params.max_overhead,
      on_interval = opts.on_interval, on_snoop = opts.on_snoop, on_start = opts.on_start,
      json_snoop = opts.json_snoop, note = opts.note, progress = common.progress(inv), soft = single ~= nil,
    }
    inv:progress_done()
    if not r then return nil, why end
    if not single then return r end
    local ev = r.order[1]
    local data = ev and r.results[ev]
    if type(data) ~= 'table' then
      local _, err = next(r.unavailable)
      return nil, err or 'no result'
    end
    data.tracer = single
    data.session_notes, data.ended_by, data.window = r.notes, r.ended_by, r.window
    share_of(data, opts.only)
    return data
  end)
end

--- inv:render_tracer(event, result, { top = }) → the tracer's text (histograms, tables).
function M.render_tracer(_, event, res, opts)
  local mod = tracers.get(event)
  if mod and report_tracers.has(mod.name) then return report_tracers.render(mod.name, res, opts) end
  return util.json_encode(res, true) .. '\n'
end

--- inv:tracer_json(results, label) → one interval of `trace --json`:
--- { time = label, results = { event = result } }.
function M.tracer_json(_, results, label)
  local doc = { time = label, results = {} }
  for _, r in ipairs(results) do
    local mod = tracers.get(r.event)
    doc.results[r.event] = mod and mod.to_json and mod.to_json(r.res) or r.res
  end
  return doc
end

M.verbs = { trace = M.trace, render_tracer = M.render_tracer, tracer_json = M.tracer_json }

return M
