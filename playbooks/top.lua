-- top: a live screen over the collectors and tracers: the USE rows of the
-- system, and processes by CPU, run-queue wait, off-CPU time, block I/O
-- latency and syscalls, with the tool's own cost. The screen and keys are
-- lib/perf_manual/top.lua, the layout report/top.lua, the measurement
-- measure/top.lua.
return playbook {
  name = 'top',
  topic = 'methods',
  summary = 'live screen: USE per resource, processes by CPU, run-queue wait, off-CPU, I/O latency, syscalls',
  examples = '  perf_manual top                                  # keys: c r o i s sort, / filter, p pause, q quit\n'
    .. '  perf_manual top --sort runq --interval 2\n'
    .. '  perf_manual top --batch --iterations 5 --rows 10   # plain text frames (also when stdout is not a tty)\n'
    .. '  perf_manual top --batch --json --iterations 3      # one JSON document per line\n'
    .. '  perf_manual top --no-bpf                           # /proc columns only',
  params = {
    interval = param.number { 'seconds between refreshes', default = 1, above = 0, max = 3600 },
    batch = param.flag { 'print plain text frames to stdout instead of the live screen' },
    iterations = param.integer { 'stop after this many frames (default: until q or Ctrl-C)', optional = true,
      min = 1, max = 1e9 },
    json = param.flag { 'batch mode: one JSON document per frame, one per line' },
    sort = param.choice { 'sort processes by', choices = { 'cpu', 'runq', 'offcpu', 'iolat', 'sysc' },
      default = 'cpu' },
    filter = param.string { 'show only processes whose command name contains TEXT', optional = true },
    rows = param.integer { 'batch mode: processes per frame', default = 20, min = 1, max = 100000 },
    no_bpf = param.flag { 'no BPF tracers: the /proc columns only' },
  },

  step 'top' {
    function(_, p)
      require('perf_manual.top').run {
        interval = p.interval, batch = p.batch, json = p.json, iterations = p.iterations, sort = p.sort,
        filter = p.filter, rows = p.rows, bpf = not p.no_bpf,
      }
    end,
  },
}
