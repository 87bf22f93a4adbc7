-- fold: `perf script` text (or folded stacks, or a pprof profile) in, folded
-- stacks out — a drop-in for FlameGraph's stackcollapse-perf.pl, same options
-- and meanings.
local util = require('perf_manual.util')

return playbook {
  name = 'fold',
  topic = 'cpu',
  summary = 'Fold perf script output (or folded stacks) into folded stacks, like stackcollapse-perf.pl',
  examples = [[
  perf record -g -- ./app && perf script | perf_manual fold > app.folded
  perf_manual fold --kernel --pid perf.txt > out.folded
  cat a.folded b.folded | perf_manual fold --format folded > merged.folded
  perf_manual fold --sample-type cpu cpu.pprof > go-cpu.folded]],
  params = {
    input = param.path { 'perf script text, folded stacks or a pprof profile; - or absent: stdin', positional = true,
      optional = true },
    pid = param.flag { 'root frame is "comm-PID"' },
    tid = param.flag { 'root frame is "comm-PID/TID"' },
    kernel = param.flag { 'annotate kernel frames with _[k]' },
    jit = param.flag { 'annotate JIT frames (/tmp/perf-N.map) with _[j]' },
    all = param.flag { 'annotate kernel and JIT frames (--kernel --jit)' },
    addrs = param.flag { 'keep raw addresses of frames without a symbol: [module <addr>]' },
    format = param.choice { 'input format (auto knows a pprof file; pprof on stdin must be said)',
      choices = { 'auto', 'perf', 'folded', 'pprof' }, default = 'auto' },
    sample_type = param.string { 'pprof input: the sample type to fold (cpu, samples, off_cpu...); default: '
      .. "the profile's default", optional = true },
    strict = param.flag { 'fail on the first malformed line instead of skipping it' },
  },

  step 'fold the stacks' {
    function(inv, p)
      local fold = require('perf_manual.fold')
      local label = (p.input == nil or p.input == '-') and '<stdin>' or p.input
      local prof, stats = fold.pprof_input(p.input, p.format, p.sample_type)
      if prof == false then
        if p.sample_type then util.user_error('fold: --sample-type is for pprof input; ' .. label .. ' is text') end
        prof, stats = fold.read(fold.source(p.input), {
          format = p.format, pid = p.pid, tid = p.tid, kernel = p.kernel, jit = p.jit,
          all = p.all, addrs = p.addrs, strict = p.strict,
        })
      end
      if not prof then
        util.user_error('fold: ' .. (stats:match('^cannot read') and stats or (label .. ': ' .. stats)))
      end
      for _, l in ipairs(fold.format_errors(stats, 'perf_manual: fold: ' .. label)) do
        inv.err:write(l, '\n')
      end
      inv.out:write(prof:folded())
      prof:close()
    end,
  },
}
