--- inv:red_check { endpoint =, duration =, rate =, connections =, timeout =,
---                 method =, headers =, body_file =, cacert =, insecure = }
--- inv:red_check { passive = pid, duration = }
--- Rate, errors and duration of a service: measured by
--- perf_manual.measure.red, summarised and judged by perf_manual.analyzers.red,
--- like the `red-check` command. The summary carries its findings and text.
local measure_red = require('perf_manual.measure.red')
local red = require('perf_manual.analyzers.red')
local charts = require('perf_manual.report.charts')
local common = require('perf_manual.verbs.common')

local M = {}

function M.red_check(inv, opts)
  opts = opts or {}
  local params = inv.params or {}
  local duration = opts.duration or params.duration or 5
  return common.adapter(inv, 'red-check', function()
    local s
    if opts.passive or opts.target then
      local res, pid, secs = measure_red.passive { target = opts.target or ('pid:' .. tostring(opts.passive)),
        duration = duration,
        progress = common.progress(inv), note = opts.note, max_overhead = opts.max_overhead }
      s = red.summarize_passive(res, pid, secs)
      s.ended_by, s.exited_after_s, s.partial = res.ended_by, res.exited_after, res.partial
      s.command = res.command
    else
      local res, why = measure_red.active { endpoint = opts.endpoint, rate = opts.rate, duration = duration,
        connections = opts.connections or 2, timeout = opts.timeout, progress = common.progress(inv),
        method = opts.method, headers = opts.headers, body_file = opts.body_file, cacert = opts.cacert,
        insecure = opts.insecure }
      if not res then inv:progress_done() return nil, why end
      s = red.summarize(res)
    end
    inv:progress_done()
    return M.judge(s)
  end, M.judge)
end

--- Findings and text of a RED summary (live, or recorded and judged again).
function M.judge(s)
  s.findings = red.findings(s)
  s.text = (s.mode == 'passive' and red.render_passive or red.render)(s, { charts = charts })
  if s.partial then s.text = 'partial: ' .. s.partial .. '\n' .. s.text end
  return s
end

M.verbs = { red_check = M.red_check }

return M
