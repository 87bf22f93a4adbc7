--- exec-monitor's tracer: process execs (with their arguments), opens of
--- watched path prefixes, and outbound TCP connects, as events. Kernel
--- side: bpf/execmon.bpf.c, structs mirrored from bpf/execmon.h.
---
---   local t = assert(execmon.start{ prefixes = { '/etc/shadow', '/root/.ssh/' } })
---   for _, e in ipairs(t:drain()) do ... end   -- regularly
---   t:close()
local ffi = require('ffi')
local base = require('perf_manual.tracers.base')

local M = {}

M.name = 'execmon'
M.summary = 'process execs, opens of watched paths, outbound TCP connects (events)'
M.tracepoints = { 'sched/sched_process_exec', 'syscalls/sys_enter_openat', 'sock/inet_sock_set_state' }
M.KINDS = { 'exec', 'open', 'connect' }
M.KEY = 128

ffi.cdef [[
struct pm_execmon_event {
  uint64_t ts_ns;
  uint32_t kind, pid, tid, ppid, uid;
  int32_t flags;
  uint16_t family, dport, sport, args_len;
  uint8_t daddr[16];
  char comm[16], pcomm[16], path[256], args[256];
};
]]
local event_t = ffi.typeof('const struct pm_execmon_event *')

function M.sizeof() return { event = ffi.sizeof('struct pm_execmon_event') } end

local function addr_text(family, a)
  if family == 2 then return string.format('%d.%d.%d.%d', a[0], a[1], a[2], a[3]) end
  local parts = {}
  for i = 0, 15, 2 do parts[#parts + 1] = string.format('%x', a[i] * 256 + a[i + 1]) end
  return table.concat(parts, ':')
end

--- One ring buffer record → an event table.
function M.decode(b)
  assert(#b >= ffi.sizeof('struct pm_execmon_event'), 'execmon: short event ' .. #b)
  local e = ffi.cast(event_t, b)
  local ev = { kind = M.KINDS[e.kind] or ('kind ' .. e.kind), ts_ns = tonumber(e.ts_ns), pid = e.pid, tid = e.tid,
    ppid = e.ppid, uid = e.uid, comm = ffi.string(e.comm), parent_comm = ffi.string(e.pcomm) }
  if ev.kind == 'exec' or ev.kind == 'open' then ev.path = ffi.string(e.path) end
  if ev.kind == 'exec' then
    local raw = ffi.string(e.args, e.args_len)
    local args = {}
    for a in (raw .. '\0'):gmatch('([^%z]*)%z') do args[#args + 1] = a end
    while #args > 0 and args[#args] == '' do args[#args] = nil end
    ev.args = args
  elseif ev.kind == 'open' then
    ev.flags = e.flags
  elseif ev.kind == 'connect' then
    ev.family = e.family == 2 and 'ipv4' or 'ipv6'
    ev.daddr = addr_text(e.family, e.daddr)
    ev.dport, ev.sport = e.dport, e.sport
  end
  return ev
end

--- The trie key of a watched prefix: prefixlen in bits, the bytes zero-padded.
function M.prefix_key(prefix)
  prefix = prefix:sub(1, M.KEY)
  return ffi.string(ffi.new('uint32_t[1]', #prefix * 8), 4) .. prefix .. string.rep('\0', M.KEY - #prefix)
end

local Execmon = setmetatable({}, { __index = base.Tracer })
Execmon.__index = Execmon

--- Starts. opts: pid | tid | cgroup (filter), prefixes (watched path
--- prefixes; none and all_opens = false: no open is reported), all_opens.
function M.start(opts)
  opts = opts or {}
  local cfg, err = base.start_config(opts, M.tracepoints)
  if not cfg then return nil, err end
  cfg.watch_all_opens = opts.all_opens and true or false
  local progs = { 'execmon_exec', 'execmon_openat', 'execmon_connect' }
  local obj, v = base.load_variants('execmon', cfg, { { name = 'tracepoint', progs = progs } }, { stats = opts.stats })
  if not obj then return nil, v end
  local watched = obj:map('watched')
  for _, p in ipairs(opts.prefixes or {}) do
    local ok, uerr = watched:update(M.prefix_key(p), '\1\0\0\0')
    if not ok then obj:close() return nil, 'execmon: watched prefix ' .. p .. ': ' .. tostring(uerr) end
  end
  local t = base.Tracer.new('execmon', obj, { attach_path = v })
  t.rb = obj:ringbuf('events')
  return setmetatable(t, Execmon)
end

--- The events since the last drain, oldest first.
function Execmon:drain()
  local out = {}
  if self.closed or not self.rb then return out end
  repeat
    local batch = self.rb:poll(0, 4096) or {}
    for _, b in ipairs(batch) do out[#out + 1] = M.decode(b) end
  until #batch < 4096
  return out
end

function Execmon:read(opts)
  return self:finish_read({}, require('perf_manual.sys').now(), opts or {})
end

return M
