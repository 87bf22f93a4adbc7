--- Thread-state accounting tracer: per thread of the target, nanoseconds on
--- a CPU, runnable (waiting for a CPU) and blocked, the blocked time split by
--- wait key (syscall + arg0, futex op, S/D state, iowait, and a kernel stack
--- for D-state sleeps). Measured at every switch-out, not sampled: the
--- kernel's own run time and run-queue wait split each interval between
--- two switch-outs of a thread. Kernel side: bpf/tsa.bpf.c (tp_btf, raw_tp
--- as the fallback), structs mirrored from bpf/tsa.h.
---
--- The window edges are user space's: T0 (CLOCK_MONOTONIC, the clock of
--- bpf_ktime_get_ns) is read right after attach, T1 right after detach;
--- M.account closes the books of each thread against them, with the same
--- two kernel counters read from /proc at the edges.
---
---   local t = assert(tsa.start{ pid = 1234 })
---   local r = t:stop()   -- r.t0_ns, r.t1_ns, r.threads, r.waits (raw, see M.account)
local ffi = require('ffi')
local bit = require('bit')
local sys = require('perf_manual.sys')
local base = require('perf_manual.tracers.base')

local M = {}

M.name = 'tsa'
M.event = 'tsa'
M.summary = 'thread-state accounting: on-CPU, runnable and blocked time per thread, blocked time by wait'
M.tracepoints = { 'sched/sched_switch' }

ffi.cdef [[
struct pm_tsa_wait { int64_t syscall; uint64_t arg0, arg1; int32_t kstack; uint32_t state; };
struct pm_tsa_thread {
  uint64_t cpu_ns, runq_ns, ts, first_ts, exec, rdelay, first_exec, first_rdelay, start_time, events;
  uint32_t tgid; uint8_t cur, pad1; uint16_t pad2;
  struct pm_tsa_wait wait;
  struct pm_tsa_wait acc_wait;
  uint64_t acc_ns, acc_count, acc_max;
  char comm[16];
};
struct pm_tsa_wkey { uint32_t tid, pad; struct pm_tsa_wait wait; };
struct pm_tsa_wval { uint64_t ns, count, max_ns; };
]]

-- enum tsa_state
M.STATE = { [0] = 'none', 'cpu', 'runq', 'blocked', 'dead' }
-- enum tsa_counter
M.COUNTERS = { 'stack_errors', 'clamped' }

local thread_t = ffi.typeof('const struct pm_tsa_thread *')
local wkey_t = ffi.typeof('const struct pm_tsa_wkey *')
local wval_t = ffi.typeof('const struct pm_tsa_wval *')

function M.sizeof()
  return { thread = ffi.sizeof('struct pm_tsa_thread'), wkey = ffi.sizeof('struct pm_tsa_wkey'),
    wval = ffi.sizeof('struct pm_tsa_wval'), wait = ffi.sizeof('struct pm_tsa_wait') }
end

local function num(v) return tonumber(v) end

local function decode_wait(w)
  local st = tonumber(w.state)
  local in_syscall
  if w.syscall >= 0 then in_syscall = true elseif w.syscall == -1 then in_syscall = false end
  return {
    syscall = w.syscall >= 0 and tonumber(w.syscall) or nil,
    -- -1: blocked outside a syscall (a page fault); -2: a kernel thread
    in_syscall = in_syscall,
    kthread = w.syscall == -2 or nil,
    arg0 = num(w.arg0), arg1 = num(w.arg1),
    kstack = tonumber(w.kstack),
    state = bit.band(st, 2) ~= 0 and 'D' or 'S',
    iowait = bit.band(st, 0x100) ~= 0,
  }
end

--- One `threads` entry -> plain table (key: tid).
function M.decode_thread(kb, vb)
  assert(#vb == ffi.sizeof('struct pm_tsa_thread'), 'tsa: bad thread size ' .. #vb)
  local v = ffi.cast(thread_t, vb)
  return {
    tid = tonumber(ffi.cast('const uint32_t *', kb)[0]), pid = tonumber(v.tgid),
    cpu_ns = num(v.cpu_ns), runq_ns = num(v.runq_ns), ts = num(v.ts), first_ts = num(v.first_ts),
    exec = num(v.exec), rdelay = num(v.rdelay), first_exec = num(v.first_exec), first_rdelay = num(v.first_rdelay),
    start_time = num(v.start_time), events = num(v.events),
    cur = M.STATE[v.cur] or tostring(v.cur),
    wait = decode_wait(v.wait), comm = ffi.string(v.comm),
    -- the latest wait key's blocked time, kept in the record (see bpf/tsa.h)
    acc = v.acc_count > 0 and { wait = decode_wait(v.acc_wait), ns = num(v.acc_ns), count = num(v.acc_count),
      max_ns = num(v.acc_max) } or nil,
  }
end

--- One `waits` entry -> { tid, wait = {...}, ns, count, max_ns }.
function M.decode_wait_entry(kb, vb)
  assert(#kb == ffi.sizeof('struct pm_tsa_wkey'), 'tsa: bad wait key size ' .. #kb)
  assert(#vb == ffi.sizeof('struct pm_tsa_wval'), 'tsa: bad wait value size ' .. #vb)
  local k, v = ffi.cast(wkey_t, kb), ffi.cast(wval_t, vb)
  return { tid = tonumber(k.tid), wait = decode_wait(k.wait), ns = num(v.ns), count = num(v.count),
    max_ns = num(v.max_ns) }
end

local function same_wait(a, b)
  return a.syscall == b.syscall and a.kthread == b.kthread and a.arg0 == b.arg0 and a.arg1 == b.arg1
    and a.kstack == b.kstack
    and a.state == b.state and a.iowait == b.iowait
end

-- the kernel's counters of a thread in an edge snapshot: { run_ns, wait_ns }
-- (a measure.tsa snapshot entry, or the pair itself)
local function counters_of(snap, tid)
  local e = snap and snap[tid]
  e = e and (e.schedstat or e)
  return e and e.run_ns and e or nil
end

local function clamp(x, hi)
  if x < 0 then return 0 end
  if x > hi then return hi end
  return x
end

--- Closes the books of every thread over the window [t0, t1] (ns, the
--- clock of bpf_ktime_get_ns). Pure: raw = { threads = decoded threads,
--- waits = decoded wait entries }; e0, e1 = the kernel's run time and
--- run-queue wait of each thread at the edges, tid -> { run_ns, wait_ns }
--- (/proc/PID/task/TID/schedstat read right after T0 and right after T1).
--- Per thread:
---   { tid, pid, comm, life_ns, cpu_ns, runq_ns, blocked = { {wait, ns, count, max_ns} },
---     head = { ns, blocked_ns, unknown } | nil  -- t0..first switch-out; its blocked part
---                                               -- is the caller's to name (/proc at T0)
---     born_ns, exited_ns }                       -- inside the window, from t0
--- cpu_ns and runq_ns include the head's and the tail's; the blocked time
--- in progress at t1 goes under its wait key.
function M.account(raw, t0, t1, e0, e1)
  local by_tid, list = {}, {}
  for _, th in ipairs(raw.threads) do
    local r = { tid = th.tid, pid = th.pid, comm = th.comm, cpu_ns = th.cpu_ns, runq_ns = th.runq_ns,
      blocked = {} }
    local first = math.max(t0, math.min(th.first_ts, t1))
    local start, c0 = t0, counters_of(e0, th.tid)
    if th.start_time and th.start_time > t0 then
      -- born in the window: its counters started at zero
      start = math.min(th.start_time, first)
      r.born_ns = start - t0
      c0 = { run_ns = 0, wait_ns = 0 }
    end
    local hd = first - start
    if hd > 0 then
      if c0 then
        local ran = clamp(th.first_exec - c0.run_ns, hd)
        local q = clamp(th.first_rdelay - c0.wait_ns, hd - ran)
        r.cpu_ns, r.runq_ns = r.cpu_ns + ran, r.runq_ns + q
        r.head = { ns = hd, blocked_ns = hd - ran - q }
      else
        r.head = { ns = hd, blocked_ns = hd, unknown = true }
      end
    end
    local stop = t1
    if th.cur == 'dead' then
      stop = math.max(start, math.min(th.ts, t1))
      r.exited_ns = stop - t0
    else
      local tl = math.max(0, t1 - th.ts)
      local e = counters_of(e1, th.tid)
      local ran = e and clamp(e.run_ns - th.exec, tl) or 0
      local q = e and clamp(e.wait_ns - th.rdelay, tl - ran) or 0
      r.cpu_ns = r.cpu_ns + ran
      if th.cur == 'blocked' then
        r.runq_ns = r.runq_ns + q
        if tl - ran - q > 0 then r.tail = { wait = th.wait, ns = tl - ran - q } end
      else
        r.runq_ns = r.runq_ns + (tl - ran)
      end
    end
    r.life_ns = stop - start
    by_tid[th.tid] = r
    list[#list + 1] = r
  end
  for _, w in ipairs(raw.waits) do
    local r = by_tid[w.tid]
    if r then r.blocked[#r.blocked + 1] = { wait = w.wait, ns = w.ns, count = w.count, max_ns = w.max_ns } end
  end
  for _, r in ipairs(list) do
    if r.tail then
      local hit
      for _, b in ipairs(r.blocked) do
        if same_wait(b.wait, r.tail.wait) then hit = b break end
      end
      if hit then hit.ns = hit.ns + r.tail.ns; hit.count = hit.count + 1
      else r.blocked[#r.blocked + 1] = { wait = r.tail.wait, ns = r.tail.ns, count = 1, max_ns = r.tail.ns } end
      r.tail = nil
    end
    table.sort(r.blocked, function(a, b) return a.ns > b.ns end)
  end
  table.sort(list, function(a, b) return a.tid < b.tid end)
  return list
end

-- Live tracer ----------------------------------------------------------------

local Tsa = setmetatable({}, { __index = base.Tracer })
Tsa.__index = Tsa

local VARIANTS = {
  { name = 'tp_btf', progs = { 'tsa_switch_btf' } },
  { name = 'raw_tp', progs = { 'tsa_switch_raw' } },
}

--- Starts accounting. opts: pid | tid | cgroup (filter on the task each
--- event is about; none = every task), kernel_stacks = false, stats = false,
--- attach = 'tp_btf' | 'raw_tp' (force one program set).
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  local cfg, err = base.start_config(opts, M.tracepoints)
  if not cfg then return nil, err end
  cfg.tsa_kernel_stacks = opts.kernel_stacks ~= false
  local variants = VARIANTS
  if opts.attach then
    variants = {}
    for _, v in ipairs(VARIANTS) do if v.name == opts.attach then variants[1] = v end end
    if #variants == 0 then error("[perf_manual.tracers.tsa] attach must be 'tp_btf' or 'raw_tp'", 2) end
  end
  local keep = {}
  for _, v in ipairs(VARIANTS) do
    if variants[1] ~= v and #variants == 1 then for _, p in ipairs(v.progs) do keep[p] = false end end
  end
  -- tp_btf first even where raw_tp loads faster (base.prefer_raw_tp): its
  -- direct reads cost ~330 ns a run against ~500 for raw_tp's probe reads,
  -- and this tracer runs at every context switch
  local obj, v
  local errs = {}
  for _, one in ipairs(variants) do
    local k = {}
    for p, on in pairs(keep) do k[p] = on end
    for _, other in ipairs(VARIANTS) do
      if other ~= one then for _, p in ipairs(other.progs) do k[p] = false end end
    end
    obj, v = base.load_variants('tsa', cfg, { one }, { keep = k, stats = opts.stats })
    if obj then break end
    errs[#errs + 1] = v
  end
  if not obj then return nil, table.concat(errs, '; ') end
  -- the window starts once every program is attached: the programs count
  -- nothing until T0 is in `armed`
  local t0 = sys.monotonic_ns()
  local ok, aerr = obj:map('armed'):update(string.rep('\0', 4), ffi.string(ffi.new('uint64_t[1]', t0), 8))
  if not ok then obj:close() return nil, 'tsa: cannot arm the programs: ' .. tostring(aerr) end
  local t = base.Tracer.new('tsa', obj, { attach_path = v })
  t.t0_ns = t0
  t.threads_map = obj:map('threads')
  t.waits_map = obj:map('waits')
  t.counters = obj:map('counters')
  return setmetatable(t, Tsa)
end

--- Detaches (the books stop here) and records T1.
function Tsa:detach(why)
  if not self.t1_ns then
    base.Tracer.detach(self, why)
    self.t1_ns = sys.monotonic_ns()
  end
end

--- Reads the raw books: { t0_ns, t1_ns (nil while attached), threads, waits,
--- stacks = { [id] = packed u64 string }, counters }.
function Tsa:read()
  local now = sys.now()
  if self.closed then return self.final end
  local res = { t0_ns = self.t0_ns, t1_ns = self.t1_ns, threads = {}, waits = {}, stacks = {}, counters = {} }
  local events = 0
  for _, e in ipairs(assert(self.threads_map:read())) do
    local th = M.decode_thread(e.key, e.value)
    res.threads[#res.threads + 1] = th
    events = events + th.events + 1
    if th.acc then
      res.waits[#res.waits + 1] = { tid = th.tid, wait = th.acc.wait, ns = th.acc.ns, count = th.acc.count,
        max_ns = th.acc.max_ns }
    end
  end
  for _, e in ipairs(assert(self.waits_map:read())) do
    res.waits[#res.waits + 1] = M.decode_wait_entry(e.key, e.value)
  end
  for _, w in ipairs(res.waits) do
    local id = w.wait.kstack
    if id >= 0 and res.stacks[id] == nil then
      local _, raw = self.obj:stack('stacks', id)
      res.stacks[id] = (type(raw) == 'string' and #raw > 0 and #raw % 8 == 0) and raw or false
    end
  end
  -- the in-progress D sleeps' stacks too
  for _, th in ipairs(res.threads) do
    local id = th.wait.kstack
    if th.cur == 'blocked' and id >= 0 and res.stacks[id] == nil then
      local _, raw = self.obj:stack('stacks', id)
      res.stacks[id] = (type(raw) == 'string' and #raw > 0 and #raw % 8 == 0) and raw or false
    end
  end
  for _, e in ipairs(assert(self.counters:read())) do
    local idx = ffi.cast('const uint32_t *', e.key)[0]
    local name = M.COUNTERS[idx + 1]
    if name then res.counters[name] = tonumber(ffi.cast('const uint64_t *', e.value)[0]) end
  end
  res = self:finish_read(res, now, { clear = false })
  -- the switch-outs are counted in each thread's record, not in pm_stats
  res.quality.events_seen = events
  return res
end

--- Detaches, reads the books, frees everything.
function Tsa:stop()
  if self.closed then return self.final end
  self:detach('window ended')
  self.final = self:read()
  self:close()
  return self.final
end

--- JSON-ready copy of a raw read (stacks as address lists).
function M.to_json(res)
  local copy = base.json_copy(res, { 'threads', 'waits' })
  copy.stacks = nil
  return copy
end

return M
