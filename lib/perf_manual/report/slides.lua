--- A self-contained HTML slide deck of a report view (templates/slides.html):
--- one <section> per slide, arrow keys / Space / PageUp / PageDown / Home / End to
--- move, and a print stylesheet that puts one slide per page (Chromium's
--- "Save as PDF" or --print-to-pdf).
local template = require('perf_manual.report.template')
local charts = require('perf_manual.report.charts')

local M = {}

function M.render(v, opts)
  opts = opts or {}
  local path = opts.template or (require('perf_manual._host').root .. '/templates/slides.html')
  local tree = template.load(path, path:match('[^/]+$'))
  -- long lists are cut to what fits on a slide
  local function first(list, n)
    local out = {}
    for i = 1, math.min(n, #(list or {})) do out[i] = list[i] end
    return out
  end
  v.slide_use_rows = first(v.use_rows, 8)
  v.slide_evidence = first(v.root_cause_evidence, 4)
  v.slide_validation_rows = first(v.validation and v.validation.rows, 6)
  v.slide_fix_validation = first(v.fix_validation, 6)
  return template.render(tree, v, { escape = charts.escape })
end

return M
