--- fsync tracer: fsync, fdatasync and sync_file_range per thread and file
--- descriptor — counts, errors, latency (total, max, log2 histogram).
--- Kernel side: bpf/fsync.bpf.c (syscalls:sys_enter_*/sys_exit_* of these
--- three calls only), structs mirrored from bpf/fsync.h. The caller names
--- the files (an fd is a number here).
---
---   local t = assert(fsync.start{ pid = 1234 })
---   local r = t:stop()   -- r.rows: { tgid, tid, fd, call, count, errors, total_ns, max_ns, buckets }
local ffi = require('ffi')
local base = require('perf_manual.tracers.base')
local hist = require('perf_manual.hist')

local M = {}

M.name = 'fsync'
M.summary = 'fsync/fdatasync/sync_file_range per thread and file descriptor'
M.tracepoints = { 'syscalls/sys_enter_fsync', 'syscalls/sys_exit_fsync', 'syscalls/sys_enter_fdatasync',
  'syscalls/sys_exit_fdatasync' }
M.CALLS = { [0] = 'fsync', 'fdatasync', 'sync_file_range' }

ffi.cdef [[
struct pm_fsync_key { uint32_t tgid, tid; int32_t fd; uint32_t call; };
struct pm_fsync_stat { uint64_t count, errors, total_ns, max_ns; uint64_t slots[32]; };
]]
local key_t = ffi.typeof('const struct pm_fsync_key *')
local stat_t = ffi.typeof('const struct pm_fsync_stat *')

function M.sizeof()
  return { key = ffi.sizeof('struct pm_fsync_key'), stat = ffi.sizeof('struct pm_fsync_stat') }
end

--- One map entry → a row.
function M.decode(kb, vb)
  local k, v = ffi.cast(key_t, kb), ffi.cast(stat_t, vb)
  local slots = {}
  for i = 0, 31 do slots[i + 1] = tonumber(v.slots[i]) end
  return { tgid = k.tgid, tid = k.tid, fd = k.fd, call = M.CALLS[k.call] or ('call ' .. k.call),
    count = tonumber(v.count), errors = tonumber(v.errors), total_ns = tonumber(v.total_ns),
    max_ns = tonumber(v.max_ns), buckets = hist.log2_buckets(slots) }
end

local Fsync = setmetatable({}, { __index = base.Tracer })
Fsync.__index = Fsync

--- Starts tracing. opts: pid | tid | cgroup (filter).
---@return table? tracer, string? err
function M.start(opts)
  local cfg, err = base.start_config(opts, M.tracepoints)
  if not cfg then return nil, err end
  local progs = { 'fsync_enter', 'fsync_exit', 'fdatasync_enter', 'fdatasync_exit' }
  -- sync_file_range is optional: not every kernel has its tracepoints
  local keep
  if base.tracepoint_exists('syscalls/sys_enter_sync_file_range') ~= false then
    progs[#progs + 1], progs[#progs + 2] = 'range_enter', 'range_exit'
  else
    keep = { range_enter = false, range_exit = false }
  end
  local obj, v = base.load_variants('fsync', cfg, { { name = 'tracepoint', progs = progs } },
    { keep = keep, stats = opts and opts.stats })
  if not obj then return nil, v end
  local t = base.Tracer.new('fsync', obj, { attach_path = v })
  t.map = obj:map('stats')
  return setmetatable(t, Fsync)
end

--- The rows since start, busiest first.
function Fsync:read(opts)
  opts = opts or {}
  local now = require('perf_manual.sys').now()
  local rows = {}
  if self.closed then
    return self.final
  end
  for _, e in ipairs(assert(self.map:read{ clear = opts.clear })) do rows[#rows + 1] = M.decode(e.key, e.value) end
  table.sort(rows, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.tid < b.tid or a.tid == b.tid and a.fd < b.fd
  end)
  local res = { rows = rows }
  return self:finish_read(res, now, opts)
end

return M
