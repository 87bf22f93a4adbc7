--- Off-CPU tracer: time tasks spend blocked, per (tgid, pid, kernel stack,
--- user stack), from sched_switch: the raw material of off-CPU flame graphs.
--- read() returns raw stack addresses (innermost first) with tgid and comm;
--- symbolisation is the profiler's job (pm.sym). Kernel side:
--- bpf/offcpu.bpf.c, structs mirrored from bpf/offcpu.h.
---
---   local t = assert(offcpu.start{ pid = 1234, min_us = 100 })
---   local r = t:stop()   -- r.entries: {tgid, pid, comm, total_us, count, kern_stack, user_stack}
local ffi = require('ffi')
local bit = require('bit')
local base = require('perf_manual.tracers.base')
local util = require('perf_manual.util')
local unwind = require('perf_manual.unwind')

local M = {}

M.name = 'offcpu'
M.event = 'offcpu'
M.summary = 'blocked time per task and kernel+user stack (off-CPU flame graph input)'
M.tracepoints = { 'sched/sched_switch' }

ffi.cdef [[
struct pm_offcpu_key { uint32_t tgid, pid; int32_t kern_stack_id, user_stack_id; uint64_t user_hash; };
struct pm_offcpu_val {
  uint64_t total_us, count, max_us;
  uint32_t state, pad;
  char comm[16];
};
]]

-- enum offcpu_counter
M.COUNTERS = { 'short', 'stack_errors' }

local key_t = ffi.typeof('const struct pm_offcpu_key *')
local val_t = ffi.typeof('const struct pm_offcpu_val *')

function M.sizeof()
  return { key = ffi.sizeof('struct pm_offcpu_key'), val = ffi.sizeof('struct pm_offcpu_val') }
end

--- Task state letter(s) from prev_state (TASK_* bits).
function M.state_name(state)
  if state == 0 then return 'R' end   -- preempted while runnable
  local s = ''
  if bit.band(state, 1) ~= 0 then s = s .. 'S' end      -- interruptible sleep
  if bit.band(state, 2) ~= 0 then s = s .. 'D' end      -- uninterruptible
  if bit.band(state, 4) ~= 0 then s = s .. 'T' end      -- stopped
  if bit.band(state, 8) ~= 0 then s = s .. 't' end      -- traced
  if bit.band(state, 0x400) ~= 0 then s = s .. 'I' end  -- TASK_NOLOAD (idle kthread)
  return s ~= '' and s or string.format('0x%x', state)
end

--- Decodes a blocked-map entry. A 16-byte key is the layout recorded before
--- user stacks could be walked from CFI (no user_hash): still read.
function M.decode(kb, vb)
  if #kb == 16 then kb = kb .. string.rep('\0', 8) end
  assert(#kb == ffi.sizeof('struct pm_offcpu_key'), 'offcpu: bad key size ' .. #kb)
  assert(#vb == ffi.sizeof('struct pm_offcpu_val'), 'offcpu: bad value size ' .. #vb)
  local k, v = ffi.cast(key_t, kb), ffi.cast(val_t, vb)
  return {
    tgid = k.tgid, pid = k.pid, kern_stack_id = k.kern_stack_id, user_stack_id = k.user_stack_id,
    user_hash = k.user_hash ~= 0 and kb:sub(17, 24) or nil,
    total_us = tonumber(v.total_us), count = tonumber(v.count), max_us = tonumber(v.max_us),
    state = M.state_name(v.state), comm = ffi.string(v.comm),
  }
end

--- Resolves stack ids to address lists with `stack(id)` (nil or a list of
--- addresses), sorts by blocked time and adds totals.
---@param entries table decoded entries
---@param stack fun(id: integer): integer[]|nil
function M.resolve(entries, stack)
  local cache, total = {}, 0
  local function get(id)
    if id < 0 then return nil end
    if cache[id] == nil then cache[id] = stack(id) or false end
    return cache[id] or nil
  end
  for _, e in ipairs(entries) do
    e.kern_stack = get(e.kern_stack_id)
    e.user_stack = get(e.user_stack_id)
    total = total + e.total_us
  end
  table.sort(entries, function(a, b)
    if a.total_us ~= b.total_us then return a.total_us > b.total_us end
    if a.pid ~= b.pid then return a.pid < b.pid end
    return a.kern_stack_id < b.kern_stack_id
  end)
  return entries, total
end

--- Blocked time summed per task: { {tgid, pid, comm, total_us, count} } sorted.
function M.by_task(entries)
  local t, list = {}, {}
  for _, e in ipairs(entries) do
    local r = t[e.pid]
    if not r then
      r = { tgid = e.tgid, pid = e.pid, comm = e.comm, total_us = 0, count = 0 }
      t[e.pid] = r
      list[#list + 1] = r
    end
    r.total_us = r.total_us + e.total_us
    r.count = r.count + e.count
  end
  table.sort(list, function(a, b)
    if a.total_us ~= b.total_us then return a.total_us > b.total_us end
    return a.pid < b.pid
  end)
  return list
end

--- Addresses from a packed u64 stack (a stack map value), innermost first,
--- stopping at the first 0: numbers below 2^53, "0x..." strings above (kernel
--- addresses), so no bit is lost (the convention of perf_manual.sym).
function M.unpack(raw)
  local n = math.floor(#raw / 8)
  local p = ffi.cast('const uint64_t *', raw)
  local out = {}
  for i = 0, n - 1 do
    local v = p[i]
    if v == 0 then break end
    if v < 9007199254740992ULL then out[#out + 1] = tonumber(v)
    else out[#out + 1] = '0x' .. bit.tohex(v) end
  end
  return out
end

-- Live tracer ----------------------------------------------------------------

local Offcpu = setmetatable({}, { __index = base.Tracer })
Offcpu.__index = Offcpu

--- Starts tracing. opts: pid | tid | cgroup (filter, on the blocked task),
--- min_us (default 1) / max_us: keep blocks in this range, preempted = true
--- (also count time runnable but preempted, not only blocked), kernel_stacks
--- = false / user_stacks = false, unwind = 'auto' | 'fp' | 'dwarf' (user
--- stacks, perf_manual.unwind; default auto), stats = false.
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  local cfg, err = base.start_config(opts, M.tracepoints)
  if not cfg then return nil, err end
  cfg.offcpu_min_us = opts.min_us or 1
  if opts.max_us then cfg.offcpu_max_us = opts.max_us end
  cfg.offcpu_blocked_only = not opts.preempted
  cfg.offcpu_kernel_stacks = opts.kernel_stacks ~= false
  cfg.offcpu_user_stacks = opts.user_stacks ~= false
  local mode = 'fp'
  if cfg.offcpu_user_stacks then
    local merr
    mode, merr = unwind.check_mode(opts.unwind)
    if not mode then return nil, merr end
  end
  local hooks = unwind.load_hooks(mode, opts.pid)
  local obj, v = base.load_variants('offcpu', cfg, {
    { name = 'tp_btf', progs = { 'offcpu_switch_btf' } },
    { name = 'raw_tp', progs = { 'offcpu_switch_raw' } },
  }, { stats = opts.stats, prepare = hooks.prepare, ready = hooks.ready })
  if not obj then return nil, v end
  local tables = hooks.tables
  local t = base.Tracer.new('offcpu', obj, { attach_path = v })
  t.blocked = obj:map('blocked')
  t.counters = obj:map('counters')
  t.min_us = cfg.offcpu_min_us
  t.tables, t.unwind_mode = tables, mode
  if tables then base.poll_while_live(tables) end
  return setmetatable(t, Offcpu)
end

--- Reads the blocked-time table: entries since start (or the last clearing
--- read) with their stacks resolved to addresses. opts.clear resets it.
function Offcpu:read(opts)
  opts = opts or {}
  local now = require('perf_manual.sys').now()
  local res
  if self.closed then
    res = self.final or { entries = {}, tasks = {}, total_us = 0 }
  else
    local entries = {}
    for _, e in ipairs(assert(self.blocked:read{ clear = opts.clear })) do
      entries[#entries + 1] = M.decode(e.key, e.value)
    end
    local obj = self.obj
    local _, total = M.resolve(entries, function(id)
      local _, raw = obj:stack('stacks', id)
      if type(raw) ~= 'string' or #raw % 8 ~= 0 or #raw == 0 then return nil end
      return M.unpack(raw)
    end)
    -- user stacks walked from CFI are kept by hash, not by stack id
    if self.tables then self.tables:poll() end
    local walked = unwind.stack_reader(obj)
    for _, e in ipairs(entries) do
      if e.user_hash then
        local st = walked(e.user_hash)
        e.user_stack = st and st.nr > 0 and M.unpack(st.ips) or nil
        e.unwind_end = st and st.end_reason or nil
        e.user_hash = nil -- raw bytes: not for JSON
      end
    end
    res = { entries = entries, tasks = M.by_task(entries), total_us = total }
    res.counters = {}
    for _, e in ipairs(assert(self.counters:read{ clear = opts.clear })) do
      local idx = ffi.cast('const uint32_t *', e.key)[0]
      local name = M.COUNTERS[idx + 1]
      if name then res.counters[name] = tonumber(ffi.cast('const uint64_t *', e.value)[0]) end
    end
  end
  res.min_us = self.min_us
  res.unwind = self.unwind_mode
  return self:finish_read(res, now, opts)
end

--- JSON-ready copy (arrays marked so empty ones stay arrays).
function M.to_json(res)
  local copy = base.json_copy(res, { 'tasks' })
  local list = {}
  for i, e in ipairs(res.entries or {}) do
    local c = base.json_copy(e)
    c.kern_stack = e.kern_stack and util.array(e.kern_stack)
    c.user_stack = e.user_stack and util.array(e.user_stack)
    list[i] = c
  end
  copy.entries = util.array(list)
  return copy
end

return M
