--- Profiling on a measurement session: on-CPU samples (BPF perf_event
--- program, or `perf record -g` when BPF cannot be used — the fallback
--- ladder, recorded in the result) or off-CPU blocked time (BPF only),
--- for a target over a window.
---
---   local prof = require('perf_manual.measure.profile').run {
---     target = '1234', duration = 10, freq = 99, off_cpu = false, min_block = 1e-6, backend = 'auto' }
---   prof.backend ('bpf' | 'perf'), prof.fallback_why, prof.cost, prof.notes
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local oncpu = require('perf_manual.profilers.oncpu')
local offcpu = require('perf_manual.profilers.offcpu')
local memory = require('perf_manual.profilers.memory')
local perf_fallback = require('perf_manual.profilers.perf_fallback')
local sym = require('perf_manual.sym')
local pstat = require('posix.sys.stat')

local M = {}

-- what the profilers filter on: pid, or the cgroup v2 id and its path
-- (perf record -G wants the path relative to the mount)
local function filter(t, fail)
  if t.kind == 'system' then return {} end
  -- a launched command: its cgroup (made before it starts), children included
  if t.run_cgroup then return { cgroup_id = t.run_cgroup.id, cgroup = t.run_cgroup.path:gsub('^/', '') } end
  if t.kind == 'pid' then
    -- its stacks are symbolised from its mappings: unreadable ones fail here, not after sampling
    local snap, err, code = sym.snapshot(t.pid)
    if not snap then
      if code == 2 then fail('no process ' .. t.pid .. ' (it has exited)') end
      fail(tostring(err) .. ((code == 13 or code == 1) and ' (run it as root or as the process owner)' or ''))
    end
    return { pid = t.pid }
  end
  if t.id then return { cgroup_id = t.id, cgroup_label = 'cgroup id ' .. t.id } end
  local v2 = t.dirs and t.dirs.v2
  if not v2 then
    fail(t.label .. ' is not in the cgroup v2 hierarchy (the profiler filters by cgroup v2 id; give its path '
      .. 'under the cgroup2 mount)')
  end
  local st = pstat.stat(v2)
  if not st then fail('no cgroup ' .. tostring(t.cgroup)) end
  return { cgroup_id = st.st_ino, cgroup = (t.cgroup or ''):gsub('^/', '') }
end

--- Which backend samples, best first: BPF, then perf record (on-CPU only).
--- Returns the profiler module, its name and why the better one was not used.
local function choose(s, opts, fail)
  local want = opts.backend or 'auto'
  local mod, name, skipped = s:ladder('profile', {
    { 'bpf', function()
      if want == 'perf' then return nil, '--backend perf' end
      local why = measure.bpf_unavailable()
      if why then
        if want == 'bpf' then fail('BPF is not available: ' .. why) end
        return nil, 'BPF is not available: ' .. why
      end
      return opts.memory and memory or opts.off_cpu and offcpu or oncpu
    end },
    { 'perf', function()
      if opts.memory then return nil, 'memory profiles need BPF (uprobes on the allocator)' end
      if opts.off_cpu then return nil, 'off-CPU profiles need BPF (sched_switch tracing)' end
      local ok, perr = perf_fallback.available()
      if not ok then return nil, perr end
      return perf_fallback
    end },
  })
  if not mod then
    if opts.memory then
      fail('--memory needs BPF (uprobes on the allocator): ' .. (skipped[1] or 'unavailable'):gsub('^bpf: ', ''))
    end
    if opts.off_cpu then
      fail('--off-cpu needs BPF (sched_switch tracing): ' .. (skipped[1] or 'unavailable'):gsub('^bpf: ', ''))
    end
    fail('no way to sample: ' .. table.concat(skipped, '; '))
  end
  local why = skipped[1] and skipped[1]:gsub('^bpf: ', '') or nil
  return mod, name, why
end

--- Runs a profile. opts: target, duration, freq, off_cpu, min_block (s),
--- memory (outstanding allocations, faults and RSS instead: sample_every,
--- sample_min_size, verdict thresholds; see perf_manual.profilers.memory),
--- backend ('auto' | 'bpf' | 'perf'), unwind ('auto' | 'fp' | 'dwarf': user
--- stacks, perf_manual.unwind), progress, note, soft (return nil, why
--- instead of raising a user error).
function M.run(opts)
  -- a command starts once the sampler is attached to its cgroup
  return measure.with_session({ target = opts.target, duration = opts.duration, what = 'profile',
    progress = opts.progress, note = opts.note, soft = opts.soft, defer_launch = true, output = opts.output },
    function(s) return M.run_on(s, opts) end)
end

function M.run_on(s, opts)
  local function fail(msg)
    if opts.soft then error({ soft = msg }, 0) end
    util.user_error('profile: ' .. msg)
  end
  local ok, res, why = pcall(function()
    s:start()
    local t = s.target
    -- without a cgroup of its own a command is followed by pid: it must run first
    if t.kind == 'command' and not t.run_cgroup then s:launch() end
    local f = filter(t, fail)
    if opts.memory and not f.pid and not f.cgroup_id then
      -- every process's malloc would trap into the kernel
      fail('--memory profiles one program: give --pid, a cgroup, a service or a command (-- CMD)')
    end
    local mod, backend, fallback_why = choose(s, opts, fail)
    local popts = { freq = opts.freq or 99, min_us = (opts.min_block or 1e-6) * 1e6, pid = f.pid,
      cgroup_id = f.cgroup_id, sample_every = opts.sample_every, sample_min_size = opts.sample_min_size,
      verdict = opts.verdict, unwind = opts.unwind }
    if backend == 'perf' then
      if f.cgroup_id and not f.cgroup then fail('perf record filters a cgroup by path, not by id') end
      popts.cgroup, popts.cgroup_id = f.cgroup, nil
      popts.duration = s.duration
      s:note('using perf record -g (' .. fallback_why .. ')')
    end
    local ps, err = mod.start(popts)
    if not ps then fail('cannot start: ' .. tostring(err)) end
    local t_start, ru0 = sys.now(), sys.rusage()
    ps:poll()
    s:begin()
    -- the target's own CPU time over the window: what share of its wall time the samples can cover
    local cpu0 = targets.cpu_seconds(t)
    local rok, rerr = pcall(s.run, s, {
      tick = function()
        if ps.running and not ps:running() then return false end
        ps:poll()
      end,
      label = function(now)
        if s.duration == math.huge then
          return string.format('profile: %s, %.0fs (until it exits; Ctrl-C stops early)', t.label, now - s.t0)
        end
        return string.format('profile: %s, %.0fs left (Ctrl-C stops early)', t.label, math.max(0, s.deadline - now))
      end,
    })
    if not rok then ps:close() error(rerr, 0) end
    -- a partial window is said, in the result and the text
    local partial
    if s.ended_by == 'interrupted' then
      partial = string.format('stopped early (Ctrl-C) after %s of the %s asked: the profile covers only that',
        util.fmt_duration(s:elapsed()), util.fmt_duration(s.duration))
    elseif s.ended_by == 'target exited' and s:command_exited() then -- luacheck: ignore 542
      -- the command's life is the window: not partial
    elseif s.ended_by == 'target exited' then
      partial = string.format('the target exited after %s of the %s asked: the profile covers only that',
        util.fmt_duration(s.exited_after or s:elapsed()), util.fmt_duration(s.duration))
    end
    if partial then s:note(partial) end
    local t_stop, ru1 = sys.now(), sys.rusage()
    local cpu1, cpu_src = targets.cpu_seconds(t)
    local wall = (s:command_exited() and t.exit.after) or (t_stop - s.t0)
    local prof, serr = ps:stop()
    if not prof then fail(tostring(serr)) end
    -- what the tool itself cost while sampling: this process, plus the BPF
    -- program's run time in the kernel (perf record's own cost is not
    -- separable from its post-processing: left unmeasured)
    if backend == 'bpf' and t_stop > t_start then
      local user_s = (ru1.utime - ru0.utime) + (ru1.stime - ru0.stime)
      prof.cost = { user_sys_s = user_s, bpf_s = prof.bpf_run_time_ns and prof.bpf_run_time_ns / 1e9,
                    wall_s = t_stop - t_start }
      prof.cost.cpu_share = prof.cost.bpf_s and (user_s + prof.cost.bpf_s) / (t_stop - t_start)
    end
    if cpu0 and cpu1 and wall > 0 and t.kind ~= 'system' and not opts.memory then
      prof.on_cpu = { cpu_s = math.max(0, cpu1 - cpu0), wall_s = wall, source = cpu_src }
      prof.on_cpu.share = prof.on_cpu.cpu_s / wall
    end
    if s.owns_target then targets.stop(t) end
    prof.command = targets.describe(t)
    prof.command_ended = targets.exit_text(prof.command)
    prof.target = t.label
    prof.target_kind = t.kind
    prof.backend = backend
    prof.fallback_why = fallback_why
    prof.t_stop = t_stop
    prof.notes = s.notes
    prof.ended_by = s.ended_by
    prof.exited_after = s.exited_after
    prof.partial = partial
    return prof
  end)
  if not ok then
    if type(res) == 'table' and res.soft then return nil, res.soft end
    error(res, 0)
  end
  return res, why
end

return M
