--- inv:tsa { target =, duration =, top =, max_overhead = }
--- Thread-state accounting of a target (perf_manual.measure.tsa): per
--- thread, the share of its time on CPU, runnable and blocked by reason,
--- and what it waits on. The `tsa` command and investigations call this one
--- function. The result carries `text` (perf_manual.report.tsa).
local measure_tsa = require('perf_manual.measure.tsa')
local report_tsa = require('perf_manual.report.tsa')
local common = require('perf_manual.verbs.common')

local M = {}

function M.tsa(inv, opts)
  opts = opts or {}
  local params = inv.params or {}
  local r = common.adapter(inv, 'tsa', function()
    local res, why = measure_tsa.run { target = common.target(inv, opts),
      duration = opts.duration or params.duration or 5, max_overhead = opts.max_overhead,
      attach = opts.attach, note = opts.note, progress = common.progress(inv), soft = true }
    inv:progress_done()
    if not res then return nil, why end
    return res
  end)
  if r.available ~= false then
    r.text = report_tsa.render(r, { top = opts.top })
    local w = r.waits and r.waits[1]
    if w then inv:log('decision', 'tsa: ' .. report_tsa.wait_line(w)) end
  end
  return r
end

M.verbs = { tsa = M.tsa }

return M
