-- present: a slide deck of an investigation for a review meeting, one
-- self-contained HTML file (arrow keys to move, prints to PDF one slide a page).
local util = require('perf_manual.util')

return playbook {
  name = 'present',
  topic = 'reporting',
  summary = 'Make a self-contained HTML slide deck of an investigation or data dir',
  examples = [[
  perf_manual present --slides --data 2026-01-20_slow-api --output review.html
  chromium --headless --print-to-pdf=review.pdf review.html]],
  params = {
    slides = param.flag { 'make slides (the only presentation form so far)' },
    data = param.string { 'investigation id, data dir or bundle file' },
    output = param.path { 'the deck, FILE.html', default = 'slides.html' },
    template = param.path { 'use this template instead of templates/slides.html', optional = true },
    store = param.path { 'investigation store (default ./investigations or $PERF_MANUAL_STORE)', optional = true },
  },

  step 'make the deck' {
    function(inv, p)
      if not p.slides then util.user_error('present: say --slides (the deck is the only presentation form)') end
      if not p.output:match('%.html?$') then
        util.user_error('present: --output must end in .html (got ' .. p.output .. ')')
      end
      local report = require('perf_manual.report')
      local ds = report.open(p.data, p.store)
      -- from a bundle: links point into the folder `tar xzf BUNDLE` makes beside the deck
      local ok, text = pcall(report.render, ds, { format = 'slides', template = p.template,
        link_base = ds.bundle and (ds.id .. '/') or nil })
      if not ok then
        local msg = tostring(text)
        if msg:match('^%[perf_manual%.report%.template%]') then
          util.user_error('present: ' .. msg:gsub('^%[[^]]+%] ', ''))
        end
        error(text, 0)
      end
      local wok, err = util.write_atomic(p.output, text)
      if not wok then util.user_error('present: ' .. err) end
      local n = select(2, text:gsub('<section class="slide', ''))
      inv:print(string.format('wrote %s (%d slides; arrow keys to move, print to PDF for a handout)', p.output, n))
    end,
  },
}
