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
  -- the USE table and the fix table are long: at most 8 rows on a slide
  local use = {}
  for i = 1, math.min(8, #(v.use_rows or {})) do use[i] = v.use_rows[i] end
  v.slide_use_rows = use
  return template.render(tree, v, { escape = charts.escape })
end

return M
