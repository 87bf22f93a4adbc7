-- flamegraph: folded stacks (or a pprof profile) in, an interactive SVG flame
-- graph out — a drop-in for FlameGraph's flamegraph.pl.
local util = require('perf_manual.util')

return playbook {
  name = 'flamegraph',
  topic = 'cpu',
  summary = 'Draw folded stacks (or perf script text) as an interactive SVG flame graph',
  examples = [[
  perf_manual fold perf.txt | perf_manual flamegraph --title "app on-CPU" > app.svg
  perf_manual flamegraph --inverted --minwidth 0.5% app.folded > icicle.svg
  perf_manual flamegraph --colors offcpu offcpu.folded > offcpu.svg
  perf_manual flamegraph --sample-type cpu profile.pb.gz > cpu.svg   # a pprof profile]],
  params = {
    input = param.path { 'folded stacks (or perf script text, or a pprof profile); - or absent: stdin',
                         positional = true, optional = true },
    title = param.string { 'title at the top', optional = true },
    subtitle = param.string { 'second line under the title', optional = true },
    inverted = param.flag { 'icicle graph: roots at the top' },
    minwidth = param.string { 'narrowest frame drawn: pixels, or N% of the width', default = '0.1' },
    colors = param.choice { 'palette', choices = { 'kind', 'hot', 'offcpu', 'mem' }, default = 'kind' },
    width = param.integer { 'image width in pixels', default = 1200 },
    countname = param.string { 'what a count is (samples, us, bytes)', default = 'samples' },
    strict = param.flag { 'fail on the first malformed line instead of skipping it' },
    sample_type = param.string { 'pprof input: the sample type to draw (cpu, samples, off_cpu...); default: '
      .. "the profile's default", optional = true },
  },

  step 'draw the flame graph' {
    function(inv, p)
      local fold = require('perf_manual.fold')
      local fg = require('perf_manual.report.flamegraph')
      if p.width < 100 or p.width > 100000 then
        util.user_error('flamegraph: --width must be between 100 and 100000')
      end
      local ok_mw, mw = pcall(fg.minwidth_px, p.minwidth, p.width)
      if not ok_mw then
        util.user_error("flamegraph: bad value for --minwidth '" .. p.minwidth .. "': expected pixels or N%")
      end
      local label = (p.input == nil or p.input == '-') and '<stdin>' or p.input
      -- a pprof file is recognised by its bytes; stdin is folded stacks or perf script text
      local prof, stats, input = fold.pprof_input(p.input, 'auto', p.sample_type)
      if prof == false then
        if p.sample_type then
          util.user_error('flamegraph: --sample-type is for pprof input; ' .. label .. ' is text')
        end
        prof, stats = fold.read(fold.source(p.input), { strict = p.strict })
      end
      if not prof then
        util.user_error('flamegraph: ' .. (stats:match('^cannot read') and stats or (label .. ': ' .. stats)))
      end
      for _, l in ipairs(fold.format_errors(stats, 'perf_manual: flamegraph: ' .. label)) do
        inv.err:write(l, '\n')
      end
      if prof:total() == 0 then
        inv.err:write('perf_manual: flamegraph: ', label, ': no samples; writing an empty flame graph\n')
      end
      local info = fg.write(inv.out, prof, {
        title = p.title, subtitle = p.subtitle, inverted = p.inverted, minwidth = mw,
        colors = p.colors, width = p.width,
        -- a pprof sample type names its own unit (nanoseconds, count...)
        unit = (input and p.countname == 'samples' and input.unit ~= '' and input.unit ~= 'count') and input.unit
          or p.countname,
        empty_message = 'No samples in ' .. label,
      })
      if info.pruned_frames > 0 and not inv.quiet then
        -- said on stderr: stdout is the SVG
        inv.err:write(string.format('perf_manual: flamegraph: %d frames narrower than %s px not drawn (%s %s)\n',
          info.pruned_frames, fg.minwidth_px(mw, p.width), fg.commas(info.pruned_samples), p.countname))
      end
      prof:close()
    end,
  },
}
