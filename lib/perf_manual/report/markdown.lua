--- Markdown output of a report view, from templates/<format>.md.
--- Charts cannot be inlined in Markdown: they are written as SVG files in an
--- assets folder next to the report and linked.
local template = require('perf_manual.report.template')
local host = require('perf_manual._host')

local M = {}

local MD_SPECIAL = { ['\\'] = '\\\\', ['`'] = '\\`', ['*'] = '\\*', ['_'] = '\\_', ['['] = '\\[', [']'] = '\\]',
  ['<'] = '&lt;', ['>'] = '&gt;', ['|'] = '\\|', ['&'] = '&amp;' }

--- Escapes text so Markdown shows it literally (also inside table cells):
--- no emphasis, links, HTML or column breaks; newlines become spaces.
function M.escape(s)
  s = tostring(s):gsub('[%z\1-\8\11\12\14-\31]', ''):gsub('\r?\n', ' ')
  s = s:gsub('[\\`*_%[%]<>|&]', MD_SPECIAL)
  -- a leading # or digit+dot would make a heading or a list
  s = s:gsub('^#', '\\#'):gsub('^(%d+)%.(%s)', '%1\\.%2')
  return s
end

local function template_path(name, opts)
  if opts.template then return opts.template end
  return host.root .. '/templates/' .. name .. '.md'
end

--- Renders the view. opts.format ('technical' | 'executive'), opts.assets
--- (relative folder name for chart files; without it charts are left out
--- with a note). Returns text, files ({ {name=, data=} } to write under assets).
function M.render(v, opts)
  opts = opts or {}
  local files = {}
  local function link(c)
    if not c or c.md then return end
    if opts.assets then
      files[#files + 1] = { name = c.file, data = c.svg }
      c.md = string.format('![%s](%s/%s)', M.escape(c.title), opts.assets, c.file)
    else
      c.md = '*' .. M.escape(c.title) .. ': chart in the HTML report*'
    end
  end
  for _, c in ipairs(v.charts or {}) do link(c) end
  if v.flamegraph then
    v.flamegraph.title = v.flamegraph.title or ('CPU flame graph: ' .. tostring(v.flamegraph.name))
    link(v.flamegraph)
  end
  -- artifact links: the path shown as is (escaped), the target percent-encoded
  for _, list in ipairs({ v.root_cause_evidence or {}, v.recommendations or {}, v.findings or {} }) do
    for _, row in ipairs(list) do
      for _, l in ipairs(row.links or {}) do
        -- an underscore after a letter cannot open emphasis: shown bare
        local label = M.escape(l.path):gsub('(%w)\\_', '%1_')
        l.md = string.format('[%s](%s)', label, l.href)
      end
    end
  end
  local name = opts.format or 'technical'
  local path = template_path(name, opts)
  local tree = template.load(path, path:match('[^/]+$'))
  return template.render(tree, v, { escape = M.escape }), files
end

return M
