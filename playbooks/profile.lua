-- profile: where the CPU time goes (on-CPU), or where threads wait
-- (--off-cpu), as flame graphs. BPF samples every CPU and counts stacks in
-- the kernel; without BPF, perf record -g does the sampling (and we say so).
local util = require('perf_manual.util')

-- The cgroup v2 id (the inode of its directory) that the BPF programs
-- filter on, and its path inside the hierarchy.
local function cgroup_id(path)
  local stat = require('posix.sys.stat')
  local d, err = require('perf_manual.collectors.cgroup').resolve { path = path }
  if not d then util.user_error('profile: ' .. err) end
  if not d.v2 then
    util.user_error('profile: cgroup ' .. path .. ' is not in the cgroup v2 hierarchy'
      .. ' (the profiler filters by cgroup v2 id; give its path under the cgroup2 mount)')
  end
  local st = stat.stat(d.v2)
  if not st then util.user_error('profile: no cgroup ' .. path) end
  return st.st_ino, d.path
end

local function check_pid(pid)
  local sym = require('perf_manual.sym')
  local snap, err, code = sym.snapshot(pid)
  if not snap then
    if code == 2 then util.user_error('profile: no process ' .. pid .. ' (it does not exist or has exited)') end
    local hint = (code == 13 or code == 1) and ' (run it as root or as the process owner)' or ''
    util.user_error('profile: ' .. err .. hint)
  end
  return snap
end

return playbook {
  name = 'profile',
  summary = 'On-CPU or off-CPU profile with flame graphs (BPF, or perf record as a fallback)',
  examples = [[
  perf_manual profile --all --duration 10s --output prof/
  perf_manual profile --pid 1234 --duration 30s --freq 199 --format svg,folded,speedscope
  perf_manual profile --pid 1234 --off-cpu --min-block 1ms --duration 10s
  perf_manual profile --cgroup system.slice/nginx.service --duration 10s --json]],
  params = {
    pid = param.pid { 'profile this process only', optional = true },
    cgroup = param.string { 'profile this cgroup v2 (path under /sys/fs/cgroup)', optional = true },
    all = param.flag { 'profile every process (the default)' },
    duration = param.duration { 'how long to sample', default = '10s' },
    freq = param.integer { 'samples per second on each CPU', default = 99 },
    off_cpu = param.flag { 'blocked time per stack (sched_switch) instead of CPU samples' },
    min_block = param.duration { 'off-CPU: blocks shorter than this are not kept', default = '1us' },
    output = param.path { 'directory for the flame graph and folded stacks', default = 'profile' },
    format = param.list { 'files to write: svg, folded, speedscope', default = 'svg,folded' },
    backend = param.choice { 'sampling backend', choices = { 'auto', 'bpf', 'perf' }, default = 'auto' },
    top = param.integer { 'functions listed in the summary', default = 10 },
    json = param.flag { 'print the profile summary as JSON' },
  },

  step 'profile' {
    function(inv, p)
      local sys = require('perf_manual._c.sys')
      local profilers = require('perf_manual.profilers')
      local nt = (p.pid and 1 or 0) + (p.cgroup and 1 or 0) + (p.all and 1 or 0)
      if nt > 1 then util.user_error('profile: give one of --pid, --cgroup, --all') end
      if p.duration <= 0 then util.user_error('profile: --duration must be above 0') end
      if p.freq < 1 or p.freq > 10000 then util.user_error('profile: --freq must be between 1 and 10000 Hz') end
      for _, f in ipairs(p.format) do
        if not profilers.FORMATS[f] then
          util.user_error("profile: unknown --format '" .. f .. "' (svg, folded, speedscope)")
        end
        if f == 'speedscope' and not pcall(require, 'perf_manual.report.speedscope') then
          util.user_error('profile: --format speedscope: the speedscope exporter is not installed')
        end
      end

      local opts = { freq = p.freq, min_us = p.min_block * 1e6 }
      local target = 'system'
      if p.pid then
        local snap = check_pid(p.pid)
        opts.pid = p.pid
        target = string.format('pid %d (%s)', p.pid, snap.comm or '?')
      elseif p.cgroup then
        opts.cgroup_id, opts.cgroup = cgroup_id(p.cgroup)
        target = 'cgroup ' .. opts.cgroup
        opts.cgroup = opts.cgroup:gsub('^/', '')  -- perf record -G wants it relative
      end

      -- backend: BPF when it works, perf record otherwise (said out loud)
      local backend, why = p.backend, nil
      if backend ~= 'perf' then
        local ok, bwhy = require('perf_manual.bpf').available()
        if not ok then
          if backend == 'bpf' then util.user_error('profile: BPF is not available: ' .. bwhy) end
          backend, why = 'perf', 'BPF is not available: ' .. bwhy
        else
          backend = 'bpf'
        end
      else
        why = '--backend perf'
      end
      if p.off_cpu and backend ~= 'bpf' then
        util.user_error('profile: --off-cpu needs BPF (sched_switch tracing): ' .. (why or 'unavailable'))
      end

      local mod
      if backend == 'perf' then
        mod = require('perf_manual.profilers.perf_fallback')
        local ok, perr = mod.available()
        if not ok then util.user_error('profile: no way to sample: ' .. (why or '') .. '; and ' .. perr) end
        opts.duration = p.duration
        inv.err:write('perf_manual: profile: using perf record -g (' .. why .. ')\n')
      else
        mod = require(p.off_cpu and 'perf_manual.profilers.offcpu' or 'perf_manual.profilers.oncpu')
      end

      local session, err = mod.start(opts)
      if not session then util.user_error('profile: cannot start: ' .. tostring(err)) end
      local t_end = sys.now() + p.duration
      local t_start, ru0 = sys.now(), sys.rusage()
      local ok, perr = pcall(function()
        while sys.now() < t_end and not sys.stop_requested() do
          if session.running and not session:running() then break end
          session:poll()
          inv:progress(string.format('profile: %s, %.0fs left (Ctrl-C stops early)', target,
            math.max(0, t_end - sys.now())))
          sys.sleep(math.min(0.25, math.max(0.001, t_end - sys.now())))
        end
      end)
      inv:progress_done()
      if not ok then session:close() error(perr, 0) end
      if sys.stop_requested() then inv:note('stopped early by the user') end

      local t_stop, ru1 = sys.now(), sys.rusage()
      local prof, serr = session:stop()
      if not prof then util.user_error('profile: ' .. tostring(serr)) end
      -- what the tool itself cost while sampling: this process, plus the
      -- BPF program's run time in the kernel (perf record's own cost is
      -- not separable from its post-processing: left unmeasured)
      if backend == 'bpf' and t_stop > t_start then
        local user_s = (ru1.utime - ru0.utime) + (ru1.stime - ru0.stime)
        prof.cost = { user_sys_s = user_s, bpf_s = prof.bpf_run_time_ns and prof.bpf_run_time_ns / 1e9,
                      wall_s = t_stop - t_start }
        prof.cost.cpu_share = prof.cost.bpf_s and (user_s + prof.cost.bpf_s) / (t_stop - t_start)
      end
      prof.target = target
      prof.fallback_why = why
      local files, werr = profilers.write(prof, p.output, p.format, {
        svg_written = function() prof.stop_to_svg_s = sys.now() - t_stop end,
      })
      if not files then util.user_error('profile: ' .. werr) end
      prof.files = files
      prof.stop_to_files_s = sys.now() - t_stop
      inv.profile = prof

      if prof.total == 0 then
        inv:finding { resource = 'cpu', metric = 'profile.samples', value = 0, severity = 'info',
                      summary = 'no samples: the flame graph is empty' }
      end
      for _, b in ipairs(prof.quality.without_frame_pointers) do
        inv:note(b .. ' has no frame pointers: stacks through it lose their callers')
      end
      if p.json then
        inv:print(util.json_encode(profilers.to_json(prof, { top = p.top }), true))
      else
        inv:show(profilers.render(prof, { top = p.top }))
      end
    end,
  },
}
