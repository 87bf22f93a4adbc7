--- What every BPF tracer shares: turning target options into the rodata
--- filter of bpf/common.h, loading an object with fallback program sets
--- (tp_btf, then raw_tp ...), and measurement quality — events seen and
--- lost, the attach path used, and the tracer's own cost (BPF program run
--- time from BPF_ENABLE_STATS, plus the process's rusage).
---
--- A tracer built on it:
---   local t = base.Tracer.new('syscall', obj, meta)   -- meta: attach variant etc.
---   t:quality()  -> measurement quality since start
---   t:over_budget(pct) -> true, why   when its BPF cost passed pct% of one CPU
---   t:finish_read(res, now, opts)   -> res with tracer, seconds, quality (end of read())
---   t:close()
local sys = require('perf_manual.sys')
local bpf = require('perf_manual.bpf')

local M = {}

local wants_stats -- objects whose run time is sampled (weak keys)

--- The message a tracer gives when the kernel lacks what it needs.
function M.unavailable(what)
  return 'unavailable on this kernel: ' .. what
end

--- Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or
--- /sys/fs/cgroup/unified on hybrid v1/v2 systems), or nil.
function M.cgroup2_root()
  local f = io.open('/proc/self/mounts')
  if not f then return nil end
  for line in f:lines() do
    local mnt, fstype = line:match('^%S+ (%S+) (%S+)')
    if fstype == 'cgroup2' then f:close() return mnt end
  end
  f:close()
end

--- cgroup v2 id (the inode number of its directory, what
--- bpf_get_current_cgroup_id returns) of a cgroup path: relative to the v2
--- root, or absolute inside it; a number passes through.
---@return integer?, string? err
function M.cgroup_id(cg)
  if type(cg) == 'number' then return cg end
  if type(cg) ~= 'string' or cg == '' then return nil, 'expected a cgroup path or id' end
  if cg:match('^%d+$') then return tonumber(cg) end
  local root = M.cgroup2_root()
  if not root then return nil, 'no cgroup v2 hierarchy is mounted: BPF filters by cgroup v2 id' end
  local path
  if cg == root or cg:sub(1, #root + 1) == root .. '/' then
    path = cg
  elseif cg:match('^/sys/fs/cgroup/') then
    return nil, cg .. ' is not in the cgroup v2 hierarchy (mounted at ' .. root .. ')'
  else
    path = root .. '/' .. cg:gsub('^/', '')
  end
  local st = require('posix.sys.stat').stat(path)
  if not st then return nil, 'no cgroup ' .. cg .. ' (' .. path .. ')' end
  return st.st_ino
end

--- Target options -> the filter rodata of bpf/common.h.
--- opts.pid (process, = tgid), opts.tgid (alias), opts.tid (one thread),
--- opts.cgroup (path or id).
---@return table? config, string? err
function M.filter_config(opts)
  opts = opts or {}
  local cfg = { targ_tgid = opts.pid or opts.tgid or 0, targ_pid = opts.tid or 0, targ_cgroup_id = 0 }
  if opts.cgroup then
    local id, err = M.cgroup_id(opts.cgroup)
    if not id then return nil, err end
    cfg.targ_cgroup_id = id
  end
  return cfg
end

--- The filter config of a tracer's start() (see filter_config), or nil, err
--- when the kernel lacks one of its tracepoints.
---@return table? config, string? err
function M.start_config(opts, tracepoints)
  local cfg, err = M.filter_config(opts)
  if not cfg then return nil, err end
  for _, tp in ipairs(tracepoints or {}) do
    if M.tracepoint_exists(tp) == false then return nil, M.unavailable((tp:gsub('/', ':', 1))) end
  end
  return cfg
end

--- Does the kernel have this tracepoint ("sched/sched_switch")? nil when
--- tracefs is not mounted (cannot tell).
function M.tracepoint_exists(tp)
  local root = bpf.tracefs()
  if not root then return nil end
  return require('posix.sys.stat').stat(root .. '/events/' .. tp) ~= nil
end

--- true when CO-RE uses the cut-down kernel BTF built with the objects (this
--- is the kernel they were built on), so raw_tp programs, which need no other
--- BTF, load without libbpf parsing all of /sys/kernel/btf/vmlinux.
function M.prefer_raw_tp()
  return bpf.min_btf()
end

--- Opens `name`, sets config, and loads the first program set the kernel
--- accepts. variants: list of { name = 'tp_btf', progs = { ... } }: the
--- programs of one variant are loaded, those of the others are not.
--- opts.always = programs of no variant that are loaded when opts.keep[prog]
--- is true (e.g. perf_event samplers); opts.stats (default true).
---@return userdata? obj, string variant_or_err
function M.load_variants(name, config, variants, opts)
  opts = opts or {}
  if M.prefer_raw_tp() then
    -- with the build's cut-down BTF, raw_tp programs load without parsing the
    -- kernel's whole BTF (tp_btf needs it to find its attach point)
    local raw, rest = {}, {}
    for _, v in ipairs(variants) do
      if v.name == 'raw_tp' then raw[#raw + 1] = v else rest[#rest + 1] = v end
    end
    for _, v in ipairs(rest) do raw[#raw + 1] = v end
    variants = raw
  end
  local errs = {}
  for _, v in ipairs(variants) do
    local obj, err = bpf.open(name)
    if not obj then return nil, err end
    obj:set_config(config)
    for _, other in ipairs(variants) do
      for _, p in ipairs(other.progs) do obj:autoload(p, other == v) end
    end
    for prog, on in pairs(opts.keep or {}) do obj:autoload(prog, on) end
    if opts.prepare then opts.prepare(obj) end
    -- run time is sampled in windows (see stats_tick), not counted all along
    local ok, lerr = obj:load{ stats = false }
    -- what the programs read must be in place before they run
    if ok and opts.ready then opts.ready(obj) end
    if ok then
      ok, lerr = obj:attach(v.progs)
      if ok then
        wants_stats[obj] = opts.stats ~= false
        return obj, v.name
      end
    end
    obj:close()
    errs[#errs + 1] = v.name .. ': ' .. tostring(lerr)
  end
  return nil, table.concat(errs, '; ')
end

-- Sampling the programs' run time ------------------------------------------
--
-- BPF_ENABLE_STATS costs two clock reads per program run (on this kind of VM
-- more than the program itself), so it is on only in windows: STATS_WINDOW
-- seconds every STATS_PERIOD while a tracer runs. A tracer's cost is the run
-- time measured inside the windows divided by the share of its lifetime they
-- covered (reported as bpf_stats_coverage). Loops call M.stats_tick().
-- (The estimate assumes the load is steady across windows; a burst that
-- falls between windows is missed, one inside a window is magnified.)
-- Switching costs too: each switch patches kernel text on every CPU (about
-- 3.3 ms of CPU here), so windows are 0.1 s every second (0.7% of a CPU for
-- the switching) rather than 20 ms every 0.2 s (3.4%).
M.STATS_WINDOW = 0.1
M.STATS_PERIOD = 1.0
-- When set, the period doubles after each window up to this (seconds): a
-- short trace still gets windows every second or two, one left on for long
-- pays the switching every STATS_PERIOD_MAX only. nil: a fixed period.
M.STATS_PERIOD_MAX = nil
-- Set by commands whose loop calls stats_tick: the first window opens
-- STATS_FIRST seconds after a tracer starts instead of inside start(). API
-- users with no loop keep the default: a window opened at start, never
-- closed, so run time is counted all along.
M.stats_lazy = false
M.STATS_FIRST = 0.1

wants_stats = setmetatable({}, { __mode = 'k' })
local sampler = { on = false, users = 0, tracers = setmetatable({}, { __mode = 'k' }) }

-- Accounting is system-wide: another process may have it on while our
-- window is closed. So a period counts as covered when our window was open
-- or when the programs' run count still grew during it.
local function account(t, now, was_on)
  local cnt = t.obj:info().run_cnt or 0
  if was_on or cnt > t.acc_cnt then t.covered = t.covered + (now - t.acc_t) end
  t.acc_t = now
end

-- the run count at the start of a period, read after the switch
local function baseline(t)
  t.acc_cnt = t.obj:info().run_cnt or 0
end

local function set_stats(on, now)
  if on == sampler.on then return true end
  -- account before switching: our own info() reads are syscalls the syscall
  -- tracer sees, and must not look like someone else's accounting
  for t in pairs(sampler.tracers) do account(t, now, sampler.on) end
  local ok, err = bpf.stats_enable(on)
  if not ok then sampler.err = err; return false end
  sampler.on = on
  for t in pairs(sampler.tracers) do baseline(t) end
  return true
end

-- objects live tracers poll while they run (perf_manual.unwind tables:
-- processes met without them get theirs)
local polled = {}

--- Has x:poll() called on every stats_tick until M.unpoll(x).
function M.poll_while_live(x) polled[x] = true end
function M.unpoll(x) polled[x] = nil end

--- Opens or closes the sampling window when due, and polls what asked to
--- be. Returns the time of the next change (nil when no tracer wants run
--- time).
function M.stats_tick(now)
  now = now or sys.now()
  for x in pairs(polled) do x:poll() end
  if sampler.users <= 0 then
    set_stats(false, now)
    sampler.next_toggle, sampler.period = nil, nil
    return nil
  end
  if not sampler.next_toggle or now >= sampler.next_toggle then
    if sampler.on then
      set_stats(false, now)
      local period = sampler.period or M.STATS_PERIOD
      sampler.next_toggle = now + (period - M.STATS_WINDOW)
      if M.STATS_PERIOD_MAX then sampler.period = math.min(period * 2, math.max(M.STATS_PERIOD_MAX, period)) end
    elseif set_stats(true, now) then
      sampler.next_toggle = now + M.STATS_WINDOW
    else
      sampler.next_toggle = now + M.STATS_PERIOD
    end
  end
  return sampler.next_toggle
end

-- Measurement quality ------------------------------------------------------

local Tracer = {}
Tracer.__index = Tracer
M.Tracer = Tracer

--- Wraps a loaded, attached object. meta.attach_path names the variant used.
function Tracer.new(name, obj, meta)
  local info = obj:info()
  local now = sys.now()
  local t = setmetatable({
    name = name, obj = obj, meta = meta or {},
    t0 = now, since = now, ru0 = sys.rusage(),
    run_ns0 = info.run_time_ns or 0, run_cnt0 = info.run_cnt or 0,
    detached = nil,
  }, Tracer)
  if (meta and meta.stats) ~= false and wants_stats[obj] ~= false then
    t.sampled = true
    t.covered, t.acc_t, t.acc_cnt = 0, now, info.run_cnt or 0
    sampler.users = sampler.users + 1
    sampler.tracers[t] = true
    if M.stats_lazy then
      -- the caller's loop opens the first window a moment later: a switch
      -- costs milliseconds, and a trace that ends first needs none
      if not sampler.on and not sampler.next_toggle then sampler.next_toggle = now + M.STATS_FIRST end
    else
      sampler.next_toggle = nil -- open a window now
      M.stats_tick(now)
    end
  end
  return t
end

function Tracer:_release()
  if self.tables then M.unpoll(self.tables) end
  if self.sampled then
    self.sampled = false
    sampler.tracers[self] = nil
    sampler.users = sampler.users - 1
    M.stats_tick()
  end
end

local function attach_path(attach)
  local kinds, seen = {}, {}
  for _, kind in pairs(attach) do
    if not seen[kind] then seen[kind] = true; kinds[#kinds + 1] = kind end
  end
  table.sort(kinds)
  return table.concat(kinds, '+')
end
M.attach_path = attach_path

--- Measurement quality since the tracer started (plain table).
--- Missing figures are nil (not measured), never 0.
function Tracer:quality()
  local now = sys.now()
  local q = { elapsed_s = now - self.t0 }
  if self.obj and not self.closed and not self.detached_at then
    local info = self.obj:info()
    local st = self.obj:stats() or {}
    q.events_seen, q.events_lost, q.events_missed = st.events, st.lost, st.missed
    q.attach = info.attach
    if self.sampled and info.run_time_ns then
      local covered = self.covered
      if sampler.on or (info.run_cnt or 0) > self.acc_cnt then covered = covered + (now - self.acc_t) end
      q.bpf_stats_coverage = q.elapsed_s > 0 and covered / q.elapsed_s or nil
      local ns, cnt = info.run_time_ns - self.run_ns0, info.run_cnt - self.run_cnt0
      if covered > 0 and q.bpf_stats_coverage > 0 then
        q.bpf_run_time_ns = ns / q.bpf_stats_coverage -- estimate over the whole trace
        if cnt > 0 then q.bpf_ns_per_run = ns / cnt end
        q.bpf_runs_sampled = cnt
      end
    end
    self.last_q = q
  elseif self.last_q then
    -- detached or closed: the figures stop where the programs stopped
    for k, v in pairs(self.last_q) do q[k] = v end
    q.elapsed_s = now - self.t0
  end
  q.attach_path = self.meta.attach_path or (q.attach and attach_path(q.attach))
  local active = self.last_q and self.last_q.elapsed_s or q.elapsed_s
  if q.bpf_run_time_ns and active > 0 then
    q.bpf_cpu_pct = q.bpf_run_time_ns / (active * 1e9) * 100
  end
  if not q.bpf_run_time_ns then
    q.bpf_cost_note = not self.sampled and 'not measured (stats off)'
      or sampler.err and ('not measured (' .. sampler.err .. ')') or 'not measured yet'
  end
  local ru = sys.rusage()
  q.self_cpu_s = (ru.utime + ru.stime) - (self.ru0.utime + self.ru0.stime)
  if q.elapsed_s > 0 then q.self_cpu_pct = q.self_cpu_s / q.elapsed_s * 100 end
  q.self_maxrss_kb = ru.maxrss_kb
  q.detached = self.detached
  -- when it stopped counting: the figures cover only the time before
  if self.detached_at then q.detached_after_s = self.detached_at - self.t0 end
  return q
end

--- Seconds of the current interval (since start or the last clearing
--- read) during which the programs were attached: counts stop growing at a
--- detach, so rates divide by this, not by the wall-clock interval.
function Tracer:attached_seconds(now)
  local stop = now
  if self.detached_at and self.detached_at < now then stop = self.detached_at end
  return math.max(0, stop - self.since)
end

--- Ends a read(): stamps res with the tracer's name, the seconds since
--- start (or the last clearing read) and the quality now; a clearing read
--- (opts.clear) starts the next interval at `now`. After a detach,
--- `seconds` stops at the detach (see attached_seconds). Returns res.
function Tracer:finish_read(res, now, opts)
  res.tracer = self.name
  res.seconds = self:attached_seconds(now)
  res.quality = self:quality()
  if opts.clear then self.since = now end
  return res
end

--- Attached time before a budget is judged: over a few milliseconds the
--- first events' cost (cold caches, a burst at attach) reads as tens of %.
Tracer.BUDGET_MIN_S = 0.5

--- true, why when the tracer's kernel-side cost passed pct% of one CPU.
function Tracer:over_budget(pct)
  local q = self:quality()
  if q.elapsed_s < Tracer.BUDGET_MIN_S then return false end
  if q.bpf_cpu_pct and q.bpf_cpu_pct > pct then
    return true, string.format('%s tracer detached: its BPF programs used %.1f%% of one CPU (budget %g%%)',
      self.name, q.bpf_cpu_pct, pct)
  end
  return false
end

--- Detaches the programs (maps stay readable) and remembers why.
function Tracer:detach(why)
  if self.obj and not self.closed and not self.detached_at then
    self:quality() -- keep the last figures
    self.obj:detach()
    self.detached_at = sys.now()
  end
  self.detached = why or 'detached'
  self:_release()
end

--- Final read, then detach and free everything. Returns the final result;
--- later calls return the same result.
function Tracer:stop()
  if self.closed then return self.final end
  self.final = self:read()
  self:close()
  return self.final
end

function Tracer:close()
  if self.obj and not self.closed then
    if not self.detached_at then self:quality() end
    self.obj:close()
  end
  self.closed = true
  self:_release()
end

--- A shallow copy of a result (or row) for JSON, the lists named in
--- `arrays` marked as arrays so empty ones stay [] (a missing one becomes []).
function M.json_copy(t, arrays)
  local util = require('perf_manual.util')
  local copy = {}
  for k, v in pairs(t) do copy[k] = v end
  for _, key in ipairs(arrays or {}) do copy[key] = util.array(t[key]) end
  return copy
end

return M
