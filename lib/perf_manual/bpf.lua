--- BPF objects embedded in the binary (bpf/*.bpf.c): a thin validating layer
--- over perf_manual._c.bpf (runtime/bpf.c; API described in _meta/bpf.lua).
local c = require('perf_manual._c.bpf')
local util = require('perf_manual.util')

local M = {}

local available_cache

--- true | false, "what is missing and what to do" (checked once per process).
function M.available()
  if available_cache == nil then
    local ok, why = c.available()
    available_cache = { ok, why }
  end
  return available_cache[1], available_cache[2]
end

M.objects = c.objects
M.tracefs = c.tracefs
M.ncpu = c.ncpu
M.btf_type = c.btf_type
M.stats_enable = c.stats_enable

local enums = {}
--- { [value] = "NAME" } of an enum of the running kernel (its BTF; cached),
--- or nil, err.
function M.kernel_enum(name)
  util.validate('name', name, 'string')
  if enums[name] == nil then
    local t, err = c.kernel_enum(name)
    if not t then return nil, err end
    enums[name] = t
  end
  return enums[name]
end

--- Arguments a tracepoint passes on the running kernel (from its BTF), or nil, err.
function M.kernel_tp_nargs(tp)
  util.validate('tp', tp, 'string')
  return c.kernel_tp_nargs(tp)
end
--- true when the cut-down kernel BTF embedded at build time fits this kernel
M.min_btf = function() return c.min_btf ~= nil and c.min_btf() == true end

local syscall_names
--- { [nr] = name } from the kernel's syscall table (cached).
function M.syscall_names()
  syscall_names = syscall_names or c.syscall_names()
  return syscall_names
end

--- Opens an embedded object (not loaded yet). Returns nil, err when BPF is
--- unavailable or the object is unknown.
---@param name string
function M.open(name)
  util.validate('name', name, 'string')
  local ok, why = M.available()
  if not ok then return nil, why end
  return c.open(name)
end

--- Opens, configures, loads and attaches in one call.
--- opts: config = {rodata}, autoload = {prog = bool}, attach = {progs} | false,
--- stats = bool. Returns the object or nil, err (the object is closed on failure).
function M.load(name, opts)
  opts = opts or {}
  util.validate('opts.config', opts.config, 'table', true)
  local obj, err = M.open(name)
  if not obj then return nil, err end
  if opts.config then obj:set_config(opts.config) end
  for prog, on in pairs(opts.autoload or {}) do obj:autoload(prog, on) end
  local ok, lerr = obj:load{ stats = opts.stats }
  if not ok then obj:close() return nil, lerr end
  if opts.attach ~= false then
    ok, lerr = obj:attach(type(opts.attach) == 'table' and opts.attach or nil)
    if not ok then obj:close() return nil, lerr end
  end
  return obj
end

return M
