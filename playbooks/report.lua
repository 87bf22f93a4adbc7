-- report: the write-up an investigation leaves for other people. Technical
-- (evidence for engineers) or executive (plain words and one chart), as
-- Markdown or self-contained HTML, from the editable templates in templates/.
local util = require('perf_manual.util')

return playbook {
  name = 'report',
  topic = 'reporting',
  summary = 'Write the technical or executive report of an investigation (Markdown or self-contained HTML)',
  examples = [[
  perf_manual report 2026-01-20_slow-api --format technical --output report.html
  perf_manual report runs/after --format executive --output summary.md
  perf_manual report 2026-01-20_slow-api            (Markdown on stdout)]],
  params = {
    investigation = param.investigation { 'investigation id, a data dir, or a bundle file', positional = true },
    format = param.choice { 'which report', choices = { 'technical', 'executive' }, default = 'technical' },
    output = param.path { 'FILE.md or FILE.html (default: Markdown on stdout)', optional = true },
    template = param.path { 'use this template file instead of templates/<format>.<md|html>', optional = true },
    store = param.path { 'investigation store (default ./investigations or $PERF_MANUAL_STORE)', optional = true },
  },

  step 'write the report' {
    function(inv, p)
      local report = require('perf_manual.report')
      local kind = 'md'
      if p.output then
        kind = p.output:match('%.(%w+)$')
        if kind == 'htm' then kind = 'html' end
        if kind ~= 'md' and kind ~= 'html' then
          util.user_error('report: --output must end in .md or .html (got ' .. p.output .. ')')
        end
      end
      local ds = report.open(p.investigation, p.store)
      local assets
      if kind == 'md' and p.output then
        assets = p.output:gsub('%.md$', '') :match('[^/]+$') .. '-charts'
      end
      -- written outside the investigation's folder: its artifact links point there
      local link_base
      if ds.bundle then
        -- read from a bundle: links point into the folder `tar xzf BUNDLE` makes beside the report
        link_base = ds.id .. '/'
      elseif p.output and ds.dir then
        local realpath = require('posix.stdlib').realpath
        local out_dir = realpath((p.output:match('^(.*)/[^/]+$') or '.'))
        local inv_dir = realpath(ds.dir)
        if inv_dir and out_dir ~= inv_dir then link_base = inv_dir .. '/' end
      end
      local ok, text, files = pcall(report.render, ds, { format = p.format, output = kind, assets = assets,
        template = p.template,
        link_base = link_base })
      if not ok then
        -- a template error names the template, line and field: a user error
        local msg = tostring(text)
        if msg:match('^%[perf_manual%.report%.template%]') then
          util.user_error('report: ' .. msg:gsub('^%[[^]]+%] ', ''))
        end
        error(text, 0)
      end
      if not p.output then
        inv.out:write(text)
        return
      end
      local wok, err = util.write_atomic(p.output, text)
      if not wok then util.user_error('report: ' .. err) end
      local dir = p.output:match('^(.*)/[^/]+$') or '.'
      if files and #files > 0 then
        local store = require('perf_manual.store')
        local adir = dir .. '/' .. assets
        local mok, merr = store.mkdir_p(adir)
        if not mok then util.user_error('report: ' .. merr) end
        for _, f in ipairs(files) do
          local fok, ferr = util.write_atomic(adir .. '/' .. f.name, f.data)
          if not fok then util.user_error('report: ' .. ferr) end
        end
      end
      inv:print(string.format('wrote %s (%s, %s%s)', p.output, p.format,
        kind == 'html' and 'self-contained HTML' or 'Markdown',
        files and #files > 0 and (', ' .. #files .. ' charts in ' .. dir .. '/' .. assets) or ''))
    end,
  },
}
