-- profile: where the CPU time goes (on-CPU), where threads wait
-- (--off-cpu), or what memory is allocated and never freed (--memory), as
-- flame graphs. BPF samples every CPU and counts stacks in
-- the kernel; without BPF, perf record -g does the sampling (and we say so).
-- The session and the fallback ladder are lib/perf_manual/measure/profile.lua.
return playbook {
  name = 'profile',
  topic = 'cpu',
  summary = 'On-CPU, off-CPU or memory (leak) profile with flame graphs (BPF, or perf record as a fallback)',
  examples = [[
  perf_manual profile --duration 10s --output prof/
  perf_manual profile --pid 1234 --duration 30s --freq 199 --format svg,folded,speedscope
  perf_manual profile --pid 1234 --off-cpu --min-block 1ms --duration 10s
  perf_manual profile --pid 1234 --memory --duration 30s --output mem/   # leaks, faults, RSS growth
  perf_manual profile --memory --sample-every 16 --sample-min-size 65536 -- ./app
  perf_manual profile --pid 1234 --format pprof,svg --output prof/ && go tool pprof -top prof/profile.pb.gz
  perf_manual profile --duration 30s --output cpu.pb.gz     # one pprof file
  perf_manual profile -- ./app --its-flags   # launched, children followed, until it exits
  perf_manual profile --target nginx.service --duration 10s --json
  perf_manual profile --replay prof/ --output prof2/ --top 20]],
  params = {
    target = param.target { 'what to profile: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    all = param.flag { 'profile every process (the default; same as --target system)' },
    duration = param.duration { 'how long to sample (with -- COMMAND: until it exits)', default = '10s', above = 0,
      until_exit = true },
    freq = param.integer { 'samples per second on each CPU', default = 99, min = 1, max = 10000 },
    off_cpu = param.flag { 'blocked time per stack (sched_switch) instead of CPU samples' },
    min_block = param.duration { 'off-CPU: blocks shorter than this are not kept', default = '1us' },
    memory = param.flag { 'allocations not freed by the end (the leak view), page faults and RSS growth, '
      .. 'through uprobes on the target\'s malloc/free' },
    sample_every = param.integer { 'memory: record every Nth allocation (weighted by N; 1 = all)', default = 1,
      min = 1, max = 1000000 },
    sample_min_size = param.integer { 'memory: always record allocations of at least this many bytes',
      default = 0, min = 0 },
    output = param.path { 'directory for the flame graph and folded stacks, or one FILE.pb.gz (pprof)',
      default = 'profile' },
    format = param.list { 'files to write: svg, folded, speedscope, pprof (profile.pb.gz)', default = 'svg,folded' },
    backend = param.choice { 'sampling backend', choices = { 'auto', 'bpf', 'perf' }, default = 'auto' },
    unwind = param.choice { 'user stacks: auto (from DWARF call-frame information where an object has it, frame '
      .. 'pointers elsewhere), fp (frame pointers only), dwarf (call-frame information only)',
      choices = { 'auto', 'fp', 'dwarf' }, default = 'auto' },
    top = param.integer { 'functions listed in the summary', default = 10, min = 1, max = 10000 },
    json = param.flag { 'print the profile summary as JSON' },
    replay = param.path { 'show the profile a --output DIR holds again (summary, and the files to --output)',
      optional = true },
  },

  step 'profile' {
    function(inv, p)
      if p.all and p.target ~= 'system' then inv:fail('profile: give one of --pid, --cgroup, --target, --all') end
      if p.memory and p.off_cpu then inv:fail('profile: give one of --memory, --off-cpu') end
      -- --output x.pb.gz (or .pprof): that one pprof file instead of a directory
      local one_file = require('perf_manual.verbs.profile').is_pprof_file(p.output)
      local formats = p.format
      if one_file and table.concat(formats, ',') == 'svg,folded' then formats = { 'pprof' } end
      inv:check_profile_formats(formats, p.output)
      inv:check_output(p.output, one_file and 'file' or 'dir')
      local r = inv:profile { target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        freq = p.freq,
        off_cpu = p.off_cpu, min_block = p.min_block, backend = p.backend, top = p.top, soft = false,
        unwind = p.unwind,
        memory = p.memory, sample_every = p.sample_every, sample_min_size = p.sample_min_size,
        output = p.json and 'stderr-only' or 'inherit',
        note = function(text) inv:note(text) end }
      if r.available == false then inv:fail('profile: ' .. tostring(r.why)) end
      if r.backend == 'perf' then
        inv.err:write('perf_manual: profile: using perf record -g (', r.fallback_why, ')\n')
      end
      local prof = inv:write_profile(r, p.output, formats)
      if prof.total == 0 and not p.memory then
        inv:finding { resource = 'cpu', metric = 'profile.samples', value = 0, severity = 'info',
                      summary = 'no samples: the flame graph is empty' }
      end
      for _, b in ipairs(prof.quality.without_frame_pointers) do
        inv:note(b .. ' has no frame pointers: stacks through it lose their callers')
      end
      if p.json then
        inv:json(inv:profile_json(prof, { top = p.top }))
      else
        inv:show(inv:render_profile(prof, { top = p.top }))
      end
    end,
  },
}
