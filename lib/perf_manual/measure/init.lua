--- The measurement layer: the one place that runs collectors, tracers and
--- profilers for a window against a target.
---
--- A session owns the target (resolved by perf_manual.measure.target, a
--- launched command included), the clock, the stop flag (Ctrl-C), the BPF
--- run-time sampling windows, the overhead budget of its tracers, progress,
--- and the record of which source each figure came from (the fallback
--- ladder BPF → perf → /proc). perf_manual.measure.use / trace / profile /
--- red / collect run on it; the inv: verbs and the built-in commands call
--- those, so a verb behaves the same from every entry point.
---
---   local s = measure.session { target = 'nginx', duration = 5, what = 'trace' }
---   s:add_tracer('sched', tracer)                  -- budget-managed
---   local ended_by = s:run { interval = 1, on_interval = function(now) ... end }
---   local info = s:finish()                        -- elapsed, ended_by, notes, sources
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local targets = require('perf_manual.measure.target')
local bpf = require('perf_manual.bpf')
local base = require('perf_manual.tracers.base')

local M = {}

M.target = targets

--- How often the tracers' own cost is checked against the budget.
M.BUDGET_PERIOD = 0.5
--- Longest sleep of the loop: the stop flag and the target are seen at least this often.
M.POLL = 0.25
--- The same for a launched command: its end is the end of the window.
M.POLL_LAUNCHED = 0.02

local Session = {}
Session.__index = Session
M.Session = Session

--- Why BPF cannot be used here (nil when it can). `off` is the caller's
--- own reason to skip it (e.g. "turned off (--no-bpf)").
function M.bpf_unavailable(off)
  if off then return off end
  local ok, why = bpf.available()
  if not ok then return why end
end

--- Resolves the target without launching anything (validation only).
function M.resolve(spec)
  if type(spec) == 'table' then return spec end
  return targets.resolve(spec)
end

--- A session. opts: target (text or resolved table), duration (s, > 0),
--- interval (s), max_overhead (% of one CPU, default 5), what (a name for
--- progress lines), progress = function(text), log (where a launched
--- command's output goes), note = function(text) (called for each note),
--- command (named in a bad-target error), output (where a launched
--- command's stdout/stderr go: measure.target.launch), defer_launch (a
--- command starts at begin(), after the probes are attached to its cgroup,
--- so the window starts with it), stats_period_max (s: the run-time
--- sampling period grows to this while the session runs, see
--- tracers.base.STATS_PERIOD_MAX).
function M.session(opts)
  util.validate('opts', opts, 'table')
  local s = setmetatable({
    what = opts.what or 'measure',
    duration = opts.duration or 5,
    interval = opts.interval,
    budget = opts.max_overhead or 5,
    progress_fn = opts.progress,
    note_fn = opts.note,
    log = opts.log,
    output = opts.output,
    defer_launch = opts.defer_launch,
    stats_period_max = opts.stats_period_max,
    tracers = {}, order = {},
    detached = {}, errors = {},
    notes = util.array(),
    sources = {},
    ended_by = nil,
  }, Session)
  -- written so that NaN is refused too
  if not (s.duration > 0) then -- luacheck: ignore 581
    util.user_error(s.what .. ': the duration must be more than 0')
  end
  local ok, t = pcall(M.resolve, opts.target or 'system')
  if not ok then
    -- name the command in a bad-target error when the caller gave one
    if util.is_user_error(t) and opts.command then util.user_error(opts.command .. ': ' .. t.user_error, t.status) end
    error(t, 0)
  end
  s.target = t
  return s
end

--- Launches a command target (before any probe is attached to it), or,
--- with defer_launch, only makes its cgroup: begin() launches it.
function Session:start()
  if self.started then return self end
  self.started = true
  if self.target.kind == 'command' then
    self.owns_target = true -- a target launched by someone else is theirs to stop
    local why = targets.prepare(self.target)
    if why then self:note(why) end
    -- only a command given as argv (-- CMD) waits for the probes: a `cmd:`
    -- workload is started (and given its settle time) before, as it always was
    if not (self.defer_launch and self.target.exact) then self:launch() end
  end
  -- this session's loop opens and closes the run-time sampling windows
  base.stats_lazy = true
  if self.stats_period_max then
    -- the process's setting: finish() puts it back
    self.stats_saved = { base.STATS_PERIOD_MAX }
    base.STATS_PERIOD_MAX = self.stats_period_max
  end
  return self
end

--- Starts the clock: the window is `duration` from here. Callers begin
--- once their probes are attached, so loading them does not eat the window;
--- run() begins it when nobody did.
function Session:begin()
  self:start()
  if self.target.kind == 'command' then self:launch() end
  if not self.t0 then
    self.t0 = sys.now()
    self.deadline = self.t0 + self.duration
  end
  return self
end

function Session:launch()
  if self.target.kind ~= 'command' then return end
  targets.launch(self.target, { log = self.log, output = self.output })
end

--- True when the target is a command given after `--` that this session
--- launched and it has ended by itself (its exit status is in
--- target.exit): its life was the window. A `cmd:` workload that exits
--- early still leaves a partial window.
function Session:command_exited()
  local t = self.target
  return t.exact and t.launched and t.exit ~= nil and not t.exit.stopped or false
end

function Session.now() return sys.now() end
function Session:elapsed() return sys.now() - (self.t0 or sys.now()) end

--- Records a note (shown under the result, kept in it).
function Session:note(text)
  self.notes[#self.notes + 1] = text
  if self.note_fn then self.note_fn(text) end
end

function Session:progress(text)
  if self.progress_fn then self.progress_fn(text) end
end

--- Where a figure came from: key → { source =, why =, ... } (the rung of
--- the ladder that was used and why the better ones were not).
function Session:source(key, rec)
  self.sources[key] = rec
  return rec
end

--- Tries sources best first: each rung is { name, function() → value | nil, why }.
--- Returns the value, the rung's name and the reasons the better rungs failed;
--- records them under `key`.
function Session:ladder(key, rungs)
  local skipped = {}
  for _, r in ipairs(rungs) do
    local v, why = r[2]()
    if v ~= nil then
      self:source(key, { source = r[1], skipped = #skipped > 0 and skipped or nil })
      return v, r[1], skipped
    end
    skipped[#skipped + 1] = r[1] .. ': ' .. tostring(why)
  end
  self:source(key, { source = nil, skipped = skipped })
  return nil, nil, skipped
end

--- Puts a started tracer under the session's overhead budget.
function Session:add_tracer(name, tracer)
  self.tracers[name] = tracer
  self.order[#self.order + 1] = name
  return tracer
end

--- Starts tracer module `mod` with opts under the budget; on failure records
--- the error under its name and returns nil, why.
function Session:start_tracer(name, mod, opts)
  local ok, tr, err = pcall(mod.start, opts)
  if not ok then
    err = util.is_user_error(tr) and tr.user_error or tostring(tr):match('^[^\n]*')
    tr = nil
  end
  if not tr then
    self.errors[name] = tostring(err)
    return nil, tostring(err)
  end
  return self:add_tracer(name, tr)
end

--- Detaches tracers over budget (checked every BUDGET_PERIOD).
function Session:check_budget(now)
  if self.next_budget and now < self.next_budget then return end
  self.next_budget = now + M.BUDGET_PERIOD
  for _, name in ipairs(self.order) do
    local tr = self.tracers[name]
    if not tr.detached and tr.over_budget then
      local over, why = tr:over_budget(self.budget)
      if over then
        tr:detach(why)
        -- when matters: the tracer's figures cover only the time before it
        why = why .. string.format(' after %.1f s', now - (self.t0 or now))
        self.detached[name] = why
        self:note(why)
      end
    end
  end
end

--- The loop: sleeps until the duration is over, Ctrl-C, or the target is
--- gone, driving the sampling windows and the budget. hooks:
---   interval = s, on_interval(now)   called every interval (not at the end)
---   poll = s                          longest sleep (default POLL)
---   tick(now)                         called at every wake; false ends the loop
---   wake(now) → time                  an earlier wake-up the caller needs
---   label(now) → text                 the progress line
--- Returns how it ended: 'duration' | 'interrupted' | 'target exited'.
function Session:run(hooks)
  hooks = hooks or {}
  self:begin()
  -- what runs from here runs again every tick, possibly for hours: compile
  -- it as LuaJIT does by default (the host raised the threshold for start-up)
  util.long_running()
  local t0, deadline = self.t0, self.deadline
  local interval = hooks.interval
  local next_interval = interval and t0 + interval
  local ended_by = 'duration'
  local watch = self.target.kind ~= 'system'
  while true do
    local now = sys.now()
    if now >= deadline then break end
    if sys.stop_requested() then ended_by = 'interrupted'; break end
    local wake = math.min(deadline, next_interval or deadline,
      now + (hooks.poll or (self.target.launched and M.POLL_LAUNCHED) or M.POLL))
    local toggle = base.stats_tick(now)
    if toggle then wake = math.min(wake, toggle) end
    if next(self.tracers) then wake = math.min(wake, self.next_budget or now) end
    if hooks.wake then wake = math.min(wake, hooks.wake(now) or wake) end
    if not sys.sleep(math.max(0, wake - now)) then ended_by = 'interrupted'; break end
    now = sys.now()
    if next(self.tracers) then self:check_budget(now) end
    -- a source that ends by itself (perf record) says so with false
    if hooks.tick and hooks.tick(now) == false then break end
    if watch and not targets.alive(self.target) then
      self.exited_after = now - t0
      ended_by = 'target exited'
      break
    end
    if next_interval and now >= next_interval and now < deadline - 1e-3 then
      next_interval = next_interval + interval
      if hooks.on_interval then hooks.on_interval(now) end
    end
    self:progress(hooks.label and hooks.label(now) or string.format('%s %s: %s of %s (Ctrl-C ends it early)',
      self.what, self.target.label, util.fmt_duration(math.min(now - t0, self.duration)),
      self.duration == math.huge and 'the command\'s life' or util.fmt_duration(self.duration)))
  end
  self.ended_by = ended_by
  self.t_end = sys.now()
  return ended_by
end

--- Stops the tracers (all, or those named in `only`); returns name → final
--- result (nil for one that failed to read: its error lands in errors).
function Session:stop_tracers(only)
  local out, want = {}, nil
  if only then want = {}; for _, n in ipairs(only) do want[n] = true end end
  for _, name in ipairs(self.order) do
    if not want or want[name] then
      local ok, res = pcall(self.tracers[name].stop, self.tracers[name])
      if ok then out[name] = res else self.errors[name] = tostring(res):match('^[^\n]*') end
    end
  end
  return out
end

--- Ends the session: stops a launched target. Returns what every result
--- carries: elapsed, ended_by, notes, detached, errors, sources.
function Session:finish()
  if not self.finished then
    self.finished = true
    self.t_end = self.t_end or sys.now()
    -- a caller that failed half-way leaves nothing attached
    for _, name in ipairs(self.order) do
      local tr = self.tracers[name]
      if type(tr) == 'table' and tr.close and not tr.closed then pcall(tr.close, tr) end
    end
    if self.owns_target then
      targets.stop(self.target)
      -- a command that never started leaves no cgroup behind
      if self.target.kind == 'command' then targets.remove_run_cgroup(self.target.run_cgroup) end
    end
    base.stats_tick()
    if self.stats_saved then base.STATS_PERIOD_MAX = self.stats_saved[1] end
  end
  return { elapsed = self.t_end - (self.t0 or self.t_end), ended_by = self.ended_by, notes = self.notes,
    detached = self.detached, errors = self.errors, sources = self.sources,
    target = targets.describe(self.target) }
end

--- Runs fn(session) and always finishes the session (a launched command is
--- stopped even when fn fails). With opts.soft a user error (no such
--- target, nothing could start) comes back as nil, why instead.
function M.with_session(opts, fn)
  if opts.soft then
    local ok, a, b = pcall(M.with_session, setmetatable({ soft = false }, { __index = opts }), fn)
    if ok then return a, b end
    if util.is_user_error(a) then return nil, a.user_error end
    error(a, 0)
  end
  local s = M.session(opts)
  local ok, a, b = xpcall(function() return fn(s) end, function(e)
    if util.is_user_error(e) then return e end
    return debug.traceback(tostring(e), 2)
  end)
  s:finish()
  if not ok then error(a, 0) end
  return a, b
end

return M
