--- Probes on a measurement session: places one probe (perf_manual.probe)
--- against the target for the window, with the session's overhead budget,
--- intervals, Ctrl-C and target-exit handling (measure/trace.lua runs it
--- like any tracer), and returns its final result.
---
---   local r, why = require('perf_manual.measure.probe').run {
---     probe = parsed, target = '1234' | 'system' | { '--', cmd... }, duration = 5,
---     interval = 1, on_interval = function(res, label) end }
---   -- r: the probe's result plus target, notes, ended_by, duration_s
local measure = require('perf_manual.measure')
local measure_trace = require('perf_manual.measure.trace')
local probe = require('perf_manual.probe')
local util = require('perf_manual.util')

local M = {}

--- Runs the probe. Returns the result, or nil, why, kind when it could not
--- be placed: kind 'user' for the spec's mistakes (unknown symbol,
--- tracepoint, field), 'env' for the machine's (no BPF, no permission).
function M.run(opts)
  local ok, why = require('perf_manual.bpf').available()
  if not ok then return nil, why, 'env' end
  local failure
  local mod = {
    name = 'probe',
    start = function(o)
      local t, err, kind = probe.start(opts.probe, o)
      if not t then failure = { err = tostring(err):gsub('^probe: ', ''), kind = kind } end
      return t, failure and failure.err
    end,
  }
  local r, serr = measure.with_session({ target = opts.target, duration = opts.duration, what = 'probing',
    max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note, soft = true,
    defer_launch = true, output = opts.output },
    function(s)
      return measure_trace.run_on(s, { { mod = mod, event = 'probe' } }, {
        interval = opts.interval, soft = true, on_start = opts.on_start,
        on_interval = opts.on_interval and function(results, label) opts.on_interval(results[1].res, label) end,
      })
    end)
  if not r then
    if failure then return nil, 'probe: ' .. failure.err, failure.kind or 'env' end
    return nil, serr, 'env'
  end
  local res = r.results.probe
  if type(res) ~= 'table' then return nil, 'probe: no result', 'env' end
  res.target, res.notes, res.ended_by, res.duration_s = r.target, r.notes, r.ended_by, r.duration_s
  res.final_label = r.final_label
  return res
end

--- The JSON document of a run's result.
function M.to_json(res)
  local doc = probe.to_json(res)
  doc.notes = util.array(res.notes)
  return doc
end

return M
