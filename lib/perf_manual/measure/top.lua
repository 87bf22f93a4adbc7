--- The measurement behind `perf_manual top`: every refresh, the USE
--- measures of the system (the same /proc snapshots use-check compares),
--- /proc/PID/stat of every process, and, when BPF can be used, per process
--- run-queue wait (sched tracer, per = 'process'), blocked time (offcpu
--- tracer, no stacks), block I/O latency (io tracer's completion stream) and
--- syscalls entered (bpf/top.bpf.c). Judges nothing: perf_manual.report.top
--- lays the frame out, perf_manual.analyzers.use judges the USE rows.
---
---   local s = top.start{ bpf = true }
---   local f = s:tick()   -- after an interval: { use =, procs =, missing =, cost = }
---   s:stop()
local sys = require('perf_manual.sys')
local use_measure = require('perf_manual.measure.use')
local use = require('perf_manual.analyzers.use')
local base = require('perf_manual.tracers.base')
local sched = require('perf_manual.tracers.sched')
local offcpu = require('perf_manual.tracers.offcpu')
local iot = require('perf_manual.tracers.io')
local ffi = require('ffi')

local M = {}

-- BPF_ENABLE_STATS windows: turning the statistics on and off patches
-- kernel text on every CPU (a static key: about 7 ms of CPU for an on/off
-- pair on this VM, a fifth of top's own CPU at a 5 s period), so a
-- long-running top samples its programs' run time 0.1 s every 30 s rather
-- than every second; the cost line is the average since start
M.STATS_PERIOD = 30

--- The columns a tracer feeds, and what a missing tracer leaves unmeasured.
M.SOURCES = {
  { key = 'sched', columns = { 'runq' } },
  { key = 'offcpu', columns = { 'offcpu' } },
  { key = 'io', columns = { 'iolat', 'iops' } },
  { key = 'syscalls', columns = { 'sysc' } },
}

-- /proc/PID/stat of every process -------------------------------------------

-- fields 14 (utime), 15 (stime), 20 (num_threads), 22 (starttime) and 24
-- (rss) of proc(5), counted after the state (field 3)
local STAT_TAIL = ('%S+ '):rep(10) .. '(%d+) (%d+) ' .. ('%S+ '):rep(4) .. '(%d+) %S+ (%d+) %S+ (%d+)'

--- The fields top shows from a /proc/PID/stat text, or nil. One pattern
--- instead of collectors.process.parse_stat's full grammar: this runs for
--- every process at every refresh (the spec checks both agree).
function M.parse_stat(text)
  if not text then return nil end
  -- comm runs to the last ')' (it may hold spaces and parens)
  local pid, comm, state, rest = text:match('^(%d+) %((.*)%) (%a) (.*)$')
  if not pid then return nil end
  local ut, st, thr, start, rss = rest:match('^' .. STAT_TAIL)
  if not ut then return nil end
  return { pid = tonumber(pid), comm = comm, state = state, ticks = tonumber(ut) + tonumber(st),
    threads = tonumber(thr), starttime = tonumber(start), rss_pages = tonumber(rss) }
end

-- /proc/PID/stat files kept open between refreshes (a pread each instead
-- of open, read, close), up to this many
M.MAX_OPEN = 512

--- { [pid] = { pid, comm, state, ticks (utime + stime), threads, rss_pages,
--- starttime } } from proc (default /proc). fds: a table the caller keeps
--- between calls ({ [name] = fd, n = count }): open files are reused; a
--- process gone or its pid reused fails the read and its file is reopened.
function M.sample_procs(proc, fds)
  proc = proc or '/proc'
  local out, seen = {}, {}
  local ok, names = pcall(require('posix.dirent').dir, proc)
  for _, n in ipairs(ok and names or {}) do
    if n:match('^%d+$') then
      local text
      local fd = fds and fds[n]
      if fd then
        text = sys.pread(fd, 4096, 0)
        if not text then sys.close(fd); fds[n] = nil; fds.n = fds.n - 1 end
      end
      if not text then
        fd = sys.open(proc .. '/' .. n .. '/stat')
        if fd then
          text = sys.pread(fd, 4096, 0)
          if fds and (fds.n or 0) < M.MAX_OPEN then fds[n] = fd; fds.n = (fds.n or 0) + 1 else sys.close(fd) end
        end
      end
      seen[n] = true
      local st = M.parse_stat(text)
      if st then out[st.pid] = st end
    end
  end
  for n, fd in pairs(fds or {}) do
    if n ~= 'n' and not seen[n] then sys.close(fd); fds[n] = nil; fds.n = fds.n - 1 end
  end
  return out
end

--- Closes the files sample_procs kept open.
function M.close_procs(fds)
  for n, fd in pairs(fds or {}) do if n ~= 'n' then sys.close(fd) end end
end

--- Rows of the process table between two samples `elapsed` seconds apart:
--- { pid, comm, state, threads, rss_bytes, cpu_pct (of one CPU) }. A process
--- born in the interval counts all its ticks; a reused pid restarts.
function M.proc_rows(prev, cur, elapsed, clk_tck, page_size)
  local rows = {}
  for pid, c in pairs(cur) do
    local p = prev and prev[pid]
    if p and p.starttime ~= c.starttime then p = nil end
    local d = c.ticks - (p and p.ticks or 0)
    if not prev then d = nil end
    rows[#rows + 1] = { pid = pid, comm = c.comm, state = c.state, threads = c.threads,
      rss_bytes = c.rss_pages and c.rss_pages * page_size,
      cpu_pct = d and elapsed > 0 and math.max(0, d) / clk_tck / elapsed * 100 or nil }
  end
  return rows
end

-- Syscalls per process (bpf/top.bpf.c) -----------------------------------

-- the tracers' own FFI mirrors (declared when their modules load)
local sched_hist_t = ffi.typeof('const struct pm_sched_hist *')
local offcpu_key_t = ffi.typeof('const struct pm_offcpu_key *')
local offcpu_val_t = ffi.typeof('const struct pm_offcpu_val *')
local u32_t = ffi.typeof('const uint32_t *')
local u64_t = ffi.typeof('const uint64_t *')

local Calls = setmetatable({}, { __index = base.Tracer })
Calls.__index = Calls

--- Starts counting syscalls per tgid (opts: pid | cgroup filter, stats).
function M.start_calls(opts)
  local cfg, err = base.start_config(opts or {}, { 'raw_syscalls/sys_enter' })
  if not cfg then return nil, err end
  local obj, v = base.load_variants('top', cfg, { { name = 'raw_tp', progs = { 'top_sys_enter' } } },
    { stats = (opts or {}).stats })
  if not obj then return nil, v end
  local t = base.Tracer.new('syscalls', obj, { attach_path = v })
  t.calls = obj:map('calls')
  return setmetatable(t, Calls)
end

--- { [tgid] = calls } since start or the last clearing read, in
--- `by_tgid` (the cost is read apart, with quality()).
function Calls:read(opts)
  opts = opts or {}
  local by = {}
  if not self.closed then
    for _, e in ipairs(assert(self.calls:read{ percpu = 'sum', clear = opts.clear })) do
      by[ffi.cast(u32_t, e.key)[0]] = tonumber(ffi.cast(u64_t, e.value)[0])
    end
  end
  if opts.clear then self.since = sys.now() end
  return { tracer = self.name, by_tgid = by }
end

-- Per-process figures from the tracers ---------------------------------------

--- Per-tgid figures of one interval from the tracers' reads (any may be
--- nil; sched, offcpu, io events, syscalls by tgid) -> { runq_ms =, offcpu_ms =, iolat_ms =, iops =, sysc = } by tgid,
--- per second of `seconds`.
function M.per_process(seconds, r)
  local out = {}
  local function at(pid)
    out[pid] = out[pid] or {}
    return out[pid]
  end
  if seconds <= 0 then return out end
  if r.sched then
    local scale = r.sched.unit == 'nsecs' and 1e-6 or 1e-3
    for _, g in ipairs(r.sched.groups or {}) do
      at(g.pid or g.key).runq_ms = g.total * scale / seconds
    end
  end
  if r.offcpu then
    -- a block is counted when it ends: one that began before the interval
    -- is held to the interval, per thread (a thread blocks one at a time)
    local per_tid = {}
    for _, t in ipairs(r.offcpu.tasks or {}) do
      local k = t.tgid * 4294967296 + t.pid
      per_tid[k] = per_tid[k] or { tgid = t.tgid, us = 0 }
      per_tid[k].us = per_tid[k].us + t.total_us
    end
    for _, t in pairs(per_tid) do
      local row = at(t.tgid)
      row.offcpu_ms = (row.offcpu_ms or 0) + math.min(t.us / 1e3, seconds * 1e3) / seconds
    end
  end
  if r.io then
    for _, e in ipairs(r.io) do
      local row = at(e.tgid)
      row.io_n = (row.io_n or 0) + 1
      row.io_lat_ns = (row.io_lat_ns or 0) + e.lat_ns
    end
    for _, row in pairs(out) do
      if row.io_n then
        row.iolat_ms = row.io_lat_ns / row.io_n / 1e6
        row.iops = row.io_n / seconds
      end
    end
  end
  if r.syscalls then
    for pid, n in pairs(r.syscalls) do at(pid).sysc = n / seconds end
  end
  return out
end

--- Fills rows (from proc_rows) with per_process figures; a column whose
--- tracer runs and saw nothing of a process is 0, one whose tracer is
--- missing stays nil (not measured).
function M.merge(rows, per, have)
  for _, row in ipairs(rows) do
    local p = per[row.pid] or {}
    if have.sched then row.runq_ms = p.runq_ms or 0 end
    if have.offcpu then row.offcpu_ms = p.offcpu_ms or 0 end
    if have.io then row.iolat_ms, row.iops = p.iolat_ms, p.iops or 0 end
    if have.syscalls then row.sysc = p.sysc or 0 end
  end
  return rows
end

-- The session ----------------------------------------------------------------

local Session = {}
Session.__index = Session

local function bpf_why()
  if sys.geteuid() ~= 0 then return 'needs root (CAP_BPF and CAP_PERFMON)' end
end

--- Starts a session. opts.bpf = false: /proc only. opts.note(text) hears
--- what could not start.
function M.start(opts)
  opts = opts or {}
  local info = sys.info()
  local s = setmetatable({ info = info, tracers = {}, missing = {}, notes = {}, t0 = sys.now() }, Session)
  local function miss(src, why)
    for _, col in ipairs(src.columns) do s.missing[col] = why end
    s.notes[#s.notes + 1] = src.key .. ': ' .. why
    if opts.note then opts.note(src.key .. ': ' .. why) end
  end
  local no_bpf = opts.bpf == false and 'not asked (--no-bpf)' or bpf_why()
  if not no_bpf then
    -- put back by stop(): the settings are the whole process's
    s.stats_saved = { base.stats_lazy, base.STATS_PERIOD }
    base.stats_lazy = true
    base.STATS_PERIOD = M.STATS_PERIOD
  end
  local starters = {
    sched = function() return sched.start{ per = 'process', runqlen = false } end,
    offcpu = function() return offcpu.start{ kernel_stacks = false, user_stacks = false } end,
    io = function() return iot.start{ snoop = true } end,
    syscalls = function() return M.start_calls{} end,
  }
  for _, src in ipairs(M.SOURCES) do
    if no_bpf then
      miss(src, no_bpf)
    else
      local ok, t, err = pcall(starters[src.key])
      if ok and t then s.tracers[src.key] = t
      else miss(src, tostring(ok and err or t)) end
    end
  end
  s.io_events = {}
  s.fds = { n = 0 }
  s.procs = M.sample_procs(nil, s.fds)
  s.use_snap = use_measure.snapshot_system()
  s.t = sys.now()
  s.ru = sys.rusage()
  return s
end

--- Work between refreshes: drains the I/O completion stream (so its ring
--- buffer does not fill) and opens or closes the run-time window.
function Session:poll()
  local io = self.tracers.io
  if io then
    for _, e in ipairs(io:poll(0, 65536)) do self.io_events[#self.io_events + 1] = e end
  end
  if next(self.tracers) then return base.stats_tick() end
end

--- The cost of the tool over the last interval: its process's CPU and
--- each tracer's BPF run time (estimated from the sampling windows).
function Session:cost(elapsed)
  local ru = sys.rusage()
  local c = { self_cpu_pct = elapsed > 0 and ((ru.utime + ru.stime) - (self.ru.utime + self.ru.stime)) / elapsed * 100
    or nil, bpf = {}, self_rss_kb = ru.maxrss_kb }
  self.ru = ru
  local total
  for _, src in ipairs(M.SOURCES) do
    local t = self.tracers[src.key]
    if t then
      local q = t:quality()
      c.bpf[#c.bpf + 1] = { name = src.key, cpu_pct = q.bpf_cpu_pct, note = q.bpf_cost_note,
        lost = q.events_lost }
      if q.bpf_cpu_pct then total = (total or 0) + q.bpf_cpu_pct end
    end
  end
  c.bpf_cpu_pct = total
  return c
end

--- A tracer's map read raw and cleared, through the tracer's FFI mirror of
--- its map: top needs one number an entry (a total), and the tracers'
--- decoders copy every histogram slot and name, which is most of a read
--- when LuaJIT's compiler is off (see top.lua).
function M.read_raw(key, t)
  if key == 'sched' then
    local groups = {}
    for _, e in ipairs(assert(t.hists:read{ clear = true })) do
      assert(#e.value == ffi.sizeof('struct pm_sched_hist'), 'top: bad sched hist size ' .. #e.value)
      groups[#groups + 1] = { pid = ffi.cast(u32_t, e.key)[0], total = tonumber(ffi.cast(sched_hist_t, e.value).total) }
    end
    return { unit = t.unit, groups = groups }
  elseif key == 'offcpu' then
    local tasks = {}
    for _, e in ipairs(assert(t.blocked:read{ clear = true })) do
      assert(#e.key == ffi.sizeof('struct pm_offcpu_key') and #e.value == ffi.sizeof('struct pm_offcpu_val'),
        'top: bad offcpu entry size')
      local k = ffi.cast(offcpu_key_t, e.key)
      tasks[#tasks + 1] = { tgid = k.tgid, pid = k.pid, total_us = tonumber(ffi.cast(offcpu_val_t, e.value).total_us) }
    end
    return { tasks = tasks }
  elseif key == 'syscalls' then
    return t:read{ clear = true }.by_tgid
  end
end

--- One refresh: everything measured since the last one.
---@return table frame { time, elapsed, use = analyzer result, procs = rows, missing, notes, cost }
function Session:tick()
  self:poll()
  local now = sys.now()
  local elapsed = now - self.t
  local procs = M.sample_procs(nil, self.fds)
  local rows = M.proc_rows(self.procs, procs, elapsed, self.info.clk_tck, self.info.page_size)
  local reads, have = {}, {}
  for key, t in pairs(self.tracers) do
    have[key] = true
    if key == 'io' then
      -- only the completion stream: its per-disk histograms are not shown
      -- (and hold one entry per disk and op, so they do not grow)
      reads.io = self.io_events
      self.io_events = {}
    else
      reads[key] = M.read_raw(key, t)
    end
  end
  M.merge(rows, M.per_process(elapsed, reads), have)
  local snap = use_measure.snapshot_system()
  local m = { ncpu = self.info.ncpu, page_size = self.info.page_size, notes = {},
    target = { kind = 'system', label = 'system' } }
  local st = snap.cpu and snap.cpu.stat
  local gauges = { running_sum = 0, running_n = 0 }
  if st and st.procs_running then gauges.running_sum, gauges.running_n = math.max(0, st.procs_running - 1), 1 end
  use_measure.system_measures(m, self.use_snap, snap, gauges)
  m.bpf = { errors = {}, detached = {}, off = 'top judges the USE rows from /proc and PSI' }
  m.lock = { missing = 'top does not trace locks' }
  local frame = { time = sys.realtime(), elapsed = elapsed, use = use.analyze(m), procs = rows,
    missing = self.missing, notes = self.notes, cost = self:cost(elapsed), ncpu = self.info.ncpu,
    self_pid = sys.getpid() }
  self.procs, self.use_snap, self.t = procs, snap, now
  return frame
end

function Session:stop()
  M.close_procs(self.fds)
  self.fds = { n = 0 }
  for _, t in pairs(self.tracers) do pcall(t.stop, t) end
  self.tracers = {}
  base.stats_tick()
  if self.stats_saved then
    base.stats_lazy, base.STATS_PERIOD = self.stats_saved[1], self.stats_saved[2]
    self.stats_saved = nil
  end
end

return M
