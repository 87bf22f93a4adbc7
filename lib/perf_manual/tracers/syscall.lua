--- Syscall tracer: per-syscall counts, errors by errno and latency
--- histograms, like `syscount -L` / `perf trace -s`. Kernel side:
--- bpf/syscall.bpf.c (raw_syscalls:sys_enter/sys_exit as raw tracepoints),
--- structs mirrored from bpf/syscall.h.
---
---   local t = assert(syscall.start{ pid = 1234 })   -- mode = 'latency' | 'count'
---   local r = t:read{ clear = true }                -- per interval
---   local final = t:stop()
---   -- the text of a result is perf_manual.report.tracers' job, not this module's
local errno = require('posix.errno')
local ffi = require('ffi')
local base = require('perf_manual.tracers.base')
local hist = require('perf_manual.hist')

local M = {}

M.name = 'syscall'
M.event = 'syscalls'
M.summary = 'per-syscall counts, errors by errno and latency (syscount -L)'
M.tracepoints = { 'raw_syscalls/sys_enter', 'raw_syscalls/sys_exit' }
M.SLOTS = 32

M.MAX = 512  -- PM_SYSCALL_MAX
M.GROUP = 8  -- PM_SYSCALL_GROUP

ffi.cdef [[
struct pm_syscall_stat { uint64_t count, errors, total_ns; uint64_t slots[32]; };
struct pm_syscall_stat_group { struct pm_syscall_stat s[8]; };
struct pm_syscall_counts { uint64_t count[512]; };
struct pm_syscall_err_key { uint32_t nr, err; };
]]

local group_t = ffi.typeof('const struct pm_syscall_stat_group *')
local counts_t = ffi.typeof('const struct pm_syscall_counts *')
local errkey_t = ffi.typeof('const struct pm_syscall_err_key *')
local u64_t = ffi.typeof('const uint64_t *')
local u32_t = ffi.typeof('const uint32_t *')

--- FFI mirror sizes, checked by the spec against the object's BTF.
function M.sizeof()
  return { stat = ffi.sizeof('struct pm_syscall_stat'), group = ffi.sizeof('struct pm_syscall_stat_group'),
           counts = ffi.sizeof('struct pm_syscall_counts'), err_key = ffi.sizeof('struct pm_syscall_err_key') }
end

local function decode_one(v, nr)
  local slots = {}
  for i = 0, M.SLOTS - 1 do slots[i + 1] = tonumber(v.slots[i]) end
  return { nr = nr, count = tonumber(v.count), errors = tonumber(v.errors), total_ns = tonumber(v.total_ns),
           slots = slots }
end

--- Decodes one `stats` entry (latency mode): key = group index, value = 8
--- syscalls' stats (summed over CPUs). Returns the syscalls that were called.
function M.decode_group(kb, vb)
  assert(#vb == ffi.sizeof('struct pm_syscall_stat_group'), 'syscall: bad stats size ' .. #vb)
  local g = ffi.cast(group_t, vb)
  local base_nr = tonumber(ffi.cast(u32_t, kb)[0]) * M.GROUP
  local out = {}
  for i = 0, M.GROUP - 1 do
    if g.s[i].count > 0 then out[#out + 1] = decode_one(g.s[i], base_nr + i) end
  end
  return out
end

--- Decodes the `counts` entry (count mode): calls per syscall number.
function M.decode_counts(vb)
  assert(#vb == ffi.sizeof('struct pm_syscall_counts'), 'syscall: bad counts size ' .. #vb)
  local c = ffi.cast(counts_t, vb)
  local out = {}
  for nr = 0, M.MAX - 1 do
    local n = c.count[nr]
    if n > 0 then out[#out + 1] = { nr = nr, count = tonumber(n) } end
  end
  return out
end

--- Decodes one `errs` entry.
function M.decode_err(kb, vb)
  local k = ffi.cast(errkey_t, kb)
  return { nr = tonumber(k.nr), errno = tonumber(k.err), count = tonumber(ffi.cast(u64_t, vb)[0]) }
end

local errno_names
--- "ENOENT" for 2 (from luaposix's errno constants), or "errno N".
function M.errno_name(n)
  if not errno_names then
    errno_names = {}
    do
      for k, v in pairs(errno) do
        if type(v) == 'number' and k:match('^E[A-Z0-9]+$') and (not errno_names[v] or #k < #errno_names[v]) then
          errno_names[v] = k
        end
      end
      -- prefer the usual spelling where the C library has aliases
      errno_names[11] = 'EAGAIN'
    end
  end
  return errno_names[n] or ('errno ' .. n)
end

--- Decoded stats and errs -> a result table:
--- { syscalls = { {nr, name, count, errors, total_ns, avg_ns, rate, buckets, errnos} ... }
---   (sorted by count, then time), total = {count, errors, total_ns}, buckets = all syscalls }
---@param names table<integer, string> syscall number -> name
function M.aggregate(stats, errs, names, seconds)
  local byno, list = {}, {}
  local total = { count = 0, errors = 0, total_ns = 0 }
  if stats[1] and not stats[1].slots then total.errors, total.total_ns = nil, nil end
  local all = {}
  for i = 1, M.SLOTS do all[i] = 0 end
  for _, s in ipairs(stats) do
    if s.count > 0 then
      -- count mode has counts only: errors and time stay nil (not measured)
      local row = {
        nr = s.nr, name = names[s.nr] or ('syscall_' .. s.nr), count = s.count, errors = s.errors,
        total_ns = s.total_ns, errnos = {},
      }
      if s.total_ns and s.total_ns > 0 then row.avg_ns = s.total_ns / s.count end
      if seconds and seconds > 0 then row.rate = s.count / seconds end
      if s.slots then
        row.buckets = hist.log2_buckets(s.slots)
        local sum = hist.summary(row.buckets)
        row.p50_ns, row.p99_ns = sum.p50, sum.p99
        hist.add_slots(all, s.slots)
      end
      byno[s.nr] = row
      list[#list + 1] = row
      total.count = total.count + s.count
      total.errors = s.errors and total.errors + s.errors or nil
      total.total_ns = s.total_ns and total.total_ns + s.total_ns or nil
    end
  end
  for _, e in ipairs(errs or {}) do
    local row = byno[e.nr]
    if row then row.errnos[#row.errnos + 1] = { errno = e.errno, name = M.errno_name(e.errno), count = e.count } end
  end
  for _, row in ipairs(list) do
    table.sort(row.errnos, function(a, b) return a.count > b.count or a.count == b.count and a.errno < b.errno end)
  end
  table.sort(list, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.nr < b.nr
  end)
  return { syscalls = list, total = total, buckets = hist.log2_buckets(all) }
end

-- Live tracer ----------------------------------------------------------------

local Syscall = setmetatable({}, { __index = base.Tracer })
Syscall.__index = Syscall

--- Starts tracing. opts: pid | tid | cgroup (filter), mode = 'latency'
--- (default: counts, errors and latency) | 'count' (counts only, cheapest),
--- stats = false (do not measure the programs' run time).
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  local mode = opts.mode or 'latency'
  if mode ~= 'latency' and mode ~= 'count' then
    error("[perf_manual.tracers.syscall] mode must be 'latency' or 'count'", 2)
  end
  local cfg, err = base.filter_config(opts)
  if not cfg then return nil, err end
  cfg.targ_latency = mode == 'latency'
  local progs = mode == 'latency' and { 'sys_enter', 'sys_exit' } or { 'sys_enter' }
  local keep = mode == 'count' and { sys_exit = false } or nil
  local obj, v = base.load_variants('syscall', cfg, { { name = 'raw_tp', progs = progs } },
    { keep = keep, stats = opts.stats })
  if not obj then return nil, v end
  local t = base.Tracer.new('syscall', obj, { attach_path = v })
  t.mode = mode
  t.names = require('perf_manual.bpf').syscall_names()
  t.stats_map = obj:map(mode == 'latency' and 'stats' or 'counts')
  t.errs_map = obj:map('errs')
  return setmetatable(t, Syscall)
end

--- Reads the maps: the result since start (or since the last clearing read).
--- opts.clear: reset the counts after reading (per-interval output).
function Syscall:read(opts)
  opts = opts or {}
  local sys = require('perf_manual.sys')
  local now = sys.now()
  local res
  if self.closed then
    res = self.final or { syscalls = {}, total = { count = 0, errors = 0, total_ns = 0 }, buckets = {} }
  else
    local stats = {}
    for _, e in ipairs(assert(self.stats_map:read{ nonzero = true, clear = opts.clear })) do
      for _, st in ipairs(self.mode == 'latency' and M.decode_group(e.key, e.value) or M.decode_counts(e.value)) do
        stats[#stats + 1] = st
      end
    end
    local errs = {}
    for _, e in ipairs(assert(self.errs_map:read{ clear = opts.clear })) do
      errs[#errs + 1] = M.decode_err(e.key, e.value)
    end
    res = M.aggregate(stats, errs, self.names, self:attached_seconds(now))
  end
  res.mode = self.mode
  self:finish_read(res, now, opts)
  -- the programs do not count events (hot path): calls seen are the counts
  local seen = (self.seen or 0) + res.total.count
  res.quality.events_seen = seen
  if opts.clear then self.seen = seen end
  return res
end

--- JSON-ready copy (arrays marked so empty ones stay arrays).
function M.to_json(res)
  return base.json_copy(res, { 'syscalls', 'buckets' })
end

return M
