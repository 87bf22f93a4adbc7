--- Self-contained HTML output of a report view (templates/<format>.html):
--- charts and flame graphs inline as SVG, styles inline, no external asset,
--- every value escaped.
local template = require('perf_manual.report.template')
local charts = require('perf_manual.report.charts')

local M = {}

M.escape = charts.escape

local function template_path(name, opts)
  if opts.template then return opts.template end
  return require('perf_manual._host').root .. '/templates/' .. name .. '.html'
end

function M.render(v, opts)
  opts = opts or {}
  local name = opts.format or 'technical'
  local path = template_path(name, opts)
  local tree = template.load(path, path:match('[^/]+$'))
  return template.render(tree, v, { escape = M.escape })
end

return M
