--- inv:quantify { target =, duration = }: the symptom in numbers before
--- the method starts (perf_manual.measure.quantify), stored as quantify.json.
local measure_quantify = require('perf_manual.measure.quantify')
local common = require('perf_manual.verbs.common')

local M = {}

function M.quantify(inv, opts)
  opts = opts or {}
  local params = inv.params or {}
  return common.adapter(inv, 'quantify', function()
    local r = measure_quantify.run { target = common.target(inv, opts),
      duration = opts.duration or math.min(params.duration or 5, 3), progress = common.progress(inv) }
    inv:progress_done()
    return r
  end)
end

M.verbs = { quantify = M.quantify }

return M
