--- Probes placed at run time, without a compiler: one precompiled object
--- (bpf/probe.bpf.c) attached to a uprobe/uretprobe, USDT probe, tracepoint
--- or raw tracepoint named by a spec, measuring what the spec asks:
---
---   local probe = require('perf_manual.probe')
---   local spec = assert(probe.parse { 'uprobe:libc:malloc', hist = 'arg0', by = 'stack', pid = 1234 })
---   local t = assert(probe.start(spec))          -- a base.Tracer: read{clear=}, stop(), quality()
---   local res = t:stop()                         -- { rows = { {count=, sum=, buckets=, comm=, frames=...} }, total= }
---
--- A spec is plain data (docs/playbooks.md has the grammar):
---   [1]      the probe point: tracepoint:CAT:NAME, rawtracepoint:NAME,
---            uprobe:BIN:FUNC[+OFF] | uprobe:BIN:0xOFFSET, uretprobe:BIN:FUNC,
---            usdt:BIN:PROVIDER:NAME. BIN is a path, or a library / program
---            name (libc, python3) found in the target's maps, then ours, the
---            library directories and PATH.
---   count    count events (the default action)
---   hist     a value's histogram: argN, retval, latency, or a tracepoint field
---            (args.FIELD); argN:s32 / retval:s32 ... read it as a narrower type
---   latency  true: hist = 'latency' (uprobe: entry -> return, per thread)
---   scale    'log2' (default) | 'linear', linear = 'MIN,MAX,STEP' or {min,max,step}
---   by       key: pid, tid, comm, stack (user + kernel), ustack, kstack, or
---            one value (argN, retval, args.FIELD); a list or comma-separated
---   filter   'VALUE OP NUMBER' (OP: == != < <= > >=), e.g. 'arg0 >= 4096'
---   pid, tid, cgroup, comm   whose events count
---   unwind   user stacks: 'auto' (default: walked from DWARF call-frame
---            information, frame pointers where an object has none), 'fp',
---            'dwarf' (perf_manual.unwind)
local ffi = require('ffi')
local util = require('perf_manual.util')
local unwind = require('perf_manual.unwind')

local M = {}

-- bpf/probe.h
M.SLOTS = 64
M.MAX_DEPTH = 127
local SRC = { none = 0, arg = 1, retval = 2, latency = 3, field = 4 }
local BY = { pid = 1, tid = 2, comm = 4, ustack = 8, kstack = 16, value = 32 }
local OPS = { ['=='] = 1, ['!='] = 2, ['<'] = 3, ['<='] = 4, ['>'] = 5, ['>='] = 6 }
local HIST = { none = 0, log2 = 1, linear = 2 }
M.OPS = OPS

ffi.cdef [[
struct pm_probe_key { uint32_t pid, tid; int32_t user_stack_id, kern_stack_id; uint64_t value; char comm[16];
                      uint64_t user_hash; };
struct pm_probe_val { uint64_t count, sum; uint64_t slots[64]; };
]]
local key_t = ffi.typeof('const struct pm_probe_key *')
local val_t = ffi.typeof('const struct pm_probe_val *')

--- FFI mirror sizes (a spec checks them against the object's BTF).
function M.sizeof()
  return { key = ffi.sizeof('struct pm_probe_key'), val = ffi.sizeof('struct pm_probe_val') }
end

local function fail(msg) return nil, msg end

-- Parsing -------------------------------------------------------------------

local KINDS = {
  tracepoint = 'tracepoint', t = 'tracepoint', tp = 'tracepoint',
  rawtracepoint = 'raw_tp', rt = 'raw_tp', raw_tp = 'raw_tp',
  uprobe = 'uprobe', u = 'uprobe', uretprobe = 'uretprobe', ur = 'uretprobe',
  usdt = 'usdt', U = 'usdt',
}

-- the most arguments each kind can name (usdt: libbpf's BPF_USDT_MAX_ARG_CNT)
local MAX_ARG = { uprobe = 5, uretprobe = 5, raw_tp = 5, usdt = 11 }
local TYPES = { u8 = { 1, false }, s8 = { 1, true }, u16 = { 2, false }, s16 = { 2, true },
  u32 = { 4, false }, s32 = { 4, true }, u64 = { 8, false }, s64 = { 8, true } }

--- Parses a probe point ("uprobe:libc:malloc"): { kind=, binary=, func=,
--- offset=, provider=, name=, category= } or nil, err.
function M.parse_point(text)
  if type(text) ~= 'string' or text == '' then return fail('probe: expected a probe point like uprobe:libc:malloc') end
  local parts = util.split(text, ':')
  local kind = KINDS[parts[1]]
  if not kind then
    return fail(string.format("probe: unknown probe type '%s' in '%s' (tracepoint, rawtracepoint, uprobe, "
      .. 'uretprobe, usdt)', parts[1], text))
  end
  local p = { kind = kind, point = text }
  local function need(n, form)
    if #parts ~= n or parts[n] == '' then return fail(string.format("probe: '%s': expected %s", text, form)) end
    for i = 2, n do
      if parts[i] == '' then return fail(string.format("probe: '%s': expected %s", text, form)) end
    end
    return true
  end
  if kind == 'tracepoint' then
    local ok, err = need(3, 'tracepoint:CATEGORY:NAME')
    if not ok then return nil, err end
    p.category, p.name = parts[2], parts[3]
  elseif kind == 'raw_tp' then
    -- rawtracepoint:NAME, or with a module in the middle as newer bpftrace writes it
    if #parts == 3 then table.remove(parts, 2) end
    local ok, err = need(2, 'rawtracepoint:NAME')
    if not ok then return nil, err end
    p.name = parts[2]
  elseif kind == 'usdt' then
    local ok, err = need(4, 'usdt:BINARY:PROVIDER:NAME')
    if not ok then return nil, err end
    p.binary, p.provider, p.name = parts[2], parts[3], parts[4]
  else
    local ok, err = need(3, kind .. ':BINARY:FUNCTION (or :0xOFFSET, :FUNCTION+OFFSET)')
    if not ok then return nil, err end
    p.binary = parts[2]
    local f = parts[3]
    local hex = f:match('^0[xX](%x+)$')
    if hex then
      p.offset = tonumber(hex, 16)
    elseif f:match('^%d+$') then
      p.offset = tonumber(f)
    else
      local fn, off = f:match('^([%w_.@$]+)%+(%w+)$')
      if fn then
        p.func, p.offset = fn, tonumber(off)
        if not p.offset then return fail(string.format("probe: '%s': bad offset '%s'", text, off)) end
      elseif f:match('^[%w_.@$]+$') then
        p.func = f
      else
        return fail(string.format("probe: '%s': bad function name '%s'", text, f))
      end
    end
  end
  return p
end

--- Parses a value ("arg0", "retval:s32", "latency", "args.len") for a
--- probe kind: { src=, arg=, field=, size=, signed=, text= } or nil, err.
function M.parse_value(text, kind, what)
  what = what or 'value'
  if type(text) ~= 'string' then return fail(string.format('probe: %s: expected a value name', what)) end
  local base, ty = text:match('^([^:]+):(%w+)$')
  if not base then base = text end
  local v = { text = text }
  if ty then
    if not TYPES[ty] then
      return fail(string.format("probe: %s '%s': unknown type '%s' (u8 s8 u16 s16 u32 s32 u64 s64)", what, text, ty))
    end
    v.size, v.signed = TYPES[ty][1], TYPES[ty][2]
  end
  local n = base:match('^arg(%d+)$')
  if n then
    n = tonumber(n)
    if kind == 'tracepoint' then
      return fail(string.format("probe: %s '%s': tracepoint fields go by name (args.FIELD; see the "
        .. "tracepoint's format file)", what, text))
    end
    if n > MAX_ARG[kind] then
      return fail(string.format("probe: %s '%s': %s probes reach arg0..arg%d", what, text, kind, MAX_ARG[kind]))
    end
    v.src, v.arg = 'arg', n
  elseif base == 'retval' then
    if kind ~= 'uprobe' and kind ~= 'uretprobe' then
      return fail(string.format("probe: %s 'retval': only functions return (uprobe/uretprobe)", what))
    end
    v.src = 'retval'
  elseif base == 'latency' then
    if kind ~= 'uprobe' and kind ~= 'uretprobe' then
      return fail(string.format("probe: %s 'latency': entry -> return is measured on functions (uprobe)", what))
    end
    if ty then return fail(string.format("probe: %s '%s': latency is in ns, it takes no type", what, text)) end
    v.src = 'latency'
  else
    local field = base:match('^args%.([%a_][%w_]*)$') or (kind == 'tracepoint' and base:match('^([%a_][%w_]*)$'))
    if not field then
      return fail(string.format("probe: unknown %s '%s' (argN, retval, latency, args.FIELD)", what, text))
    end
    if kind ~= 'tracepoint' then
      return fail(string.format("probe: %s '%s': fields belong to tracepoints; use argN", what, text))
    end
    v.src, v.field = 'field', field
  end
  return v
end

local KEYWORDS = { pid = true, tid = true, comm = true, stack = true, ustack = true, kstack = true }

local function list_of(v)
  if v == nil or v == false then return {} end
  if type(v) == 'table' then return v end
  local out = {}
  for item in tostring(v):gmatch('[^,%s]+') do out[#out + 1] = item end
  return out
end

local function parse_linear(v)
  local t = v
  if type(v) == 'string' then
    local a, b, c = v:match('^%s*(%-?%d+)%s*,%s*(%-?%d+)%s*,%s*(%d+)%s*$')
    if not a then return fail("probe: linear: expected 'MIN,MAX,STEP' (integers)") end
    t = { tonumber(a), tonumber(b), tonumber(c) }
  end
  if type(t) ~= 'table' then return fail("probe: linear: expected 'MIN,MAX,STEP' or { min, max, step }") end
  local min, max, step = t.min or t[1], t.max or t[2], t.step or t[3]
  if type(min) ~= 'number' or type(max) ~= 'number' or type(step) ~= 'number' then
    return fail('probe: linear: min, max and step must be numbers')
  end
  if step < 1 or step ~= math.floor(step) or min ~= math.floor(min) or max ~= math.floor(max) then
    return fail('probe: linear: min, max and step must be whole numbers, step at least 1')
  end
  if max <= min then return fail('probe: linear: max must be above min') end
  local n = math.ceil((max - min) / step)
  if n > M.SLOTS - 2 then
    return fail(string.format('probe: linear: %d buckets; at most %d fit (raise the step)', n, M.SLOTS - 2))
  end
  return { min = min, max = min + n * step, step = step, n = n }
end

local SPEC_KEYS = { [1] = true, count = true, hist = true, latency = true, scale = true, linear = true, by = true,
  stacks = true, filter = true, pid = true, tid = true, cgroup = true, comm = true, unwind = true }

--- Parses a spec (a table as in the module comment, or just the probe point
--- string) into a probe description, or nil, err (one line naming what is wrong).
function M.parse(spec)
  if type(spec) == 'string' then spec = { spec } end
  if type(spec) ~= 'table' then return fail('probe: expected a spec table { "uprobe:libc:malloc", ... }') end
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then
      return fail(string.format("probe: unknown option '%s' (count, hist, latency, scale, linear, by, stacks, "
        .. 'filter, pid, tid, cgroup, comm, unwind)', tostring(k)))
    end
  end
  local p, err = M.parse_point(spec[1])
  if not p then return nil, err end
  -- the action
  local hist = spec.hist
  if spec.latency then
    if hist and hist ~= 'latency' then return fail("probe: choose one action: latency or hist='" .. hist .. "'") end
    hist = 'latency'
  end
  if hist ~= nil and type(hist) ~= 'string' then return fail('probe: hist: expected a value name like arg0') end
  if hist and spec.count == true then
    return fail('probe: choose one action: count, or hist (a histogram counts too)')
  end
  if hist then
    p.hist, err = M.parse_value(hist, p.kind, 'hist')
    if not p.hist then return nil, err end
    local scale = spec.scale or (spec.linear and 'linear') or 'log2'
    if scale ~= 'log2' and scale ~= 'linear' then
      return fail("probe: scale: expected 'log2' or 'linear', got '" .. tostring(scale) .. "'")
    end
    p.scale = scale
    if scale == 'linear' then
      if not spec.linear then return fail("probe: scale 'linear' needs linear = 'MIN,MAX,STEP'") end
      p.linear, err = parse_linear(spec.linear)
      if not p.linear then return nil, err end
    end
  elseif spec.scale or spec.linear then
    return fail('probe: scale/linear shape a histogram: add hist = VALUE')
  end
  p.action = hist and (p.hist.src == 'latency' and 'latency' or 'hist') or 'count'
  -- the key
  p.by = {}
  local by = list_of(spec.by)
  if spec.stacks then by[#by + 1] = 'stack' end
  for _, b in ipairs(by) do
    if KEYWORDS[b] then
      if b == 'stack' then
        p.by.ustack, p.by.kstack = true, true
      else
        p.by[b] = true
      end
    else
      if p.by.value then return fail("probe: by: one value per key ('" .. p.by.value.text .. "' and '" .. b .. "')") end
      local v, verr = M.parse_value(b, p.kind, 'by')
      if not v then return nil, verr end
      if v.src == 'latency' then return fail("probe: by 'latency': keys are exact values; use hist = 'latency'") end
      p.by.value = v
    end
  end
  -- the filter
  if spec.filter ~= nil then
    if type(spec.filter) ~= 'string' then return fail("probe: filter: expected 'VALUE OP NUMBER'") end
    local lhs, op, rhs = spec.filter:match('^%s*([%w_.:]+)%s*([=!<>]=?)%s*(%S+)%s*$')
    if not lhs or not OPS[op] then
      return fail("probe: filter '" .. spec.filter .. "': expected 'VALUE OP NUMBER' with OP one of == != < <= > >=")
    end
    local n = tonumber(rhs)
    if not n or n ~= math.floor(n) or math.abs(n) >= 2 ^ 53 then
      return fail("probe: filter '" .. spec.filter .. "': '" .. rhs .. "' is not a whole number")
    end
    local v, verr = M.parse_value(lhs, p.kind, 'filter')
    if not v then return nil, verr end
    p.filter = { value = v, op = op, number = n, text = spec.filter }
  end
  -- how user stacks are taken (the mode matters only with one)
  local mode, merr = unwind.check_mode(spec.unwind)
  if not mode then return fail('probe: ' .. merr) end
  p.unwind = mode
  -- what happens at entry and what at return
  local function at_return(v) return v and (v.src == 'retval' or v.src == 'latency') end
  local function at_entry(v) return v and v.src == 'arg' end
  local fv = p.filter and p.filter.value
  local ret = p.kind == 'uretprobe' or at_return(p.hist) or at_return(p.by.value) or at_return(fv)
  local entry = at_entry(p.hist) or at_entry(p.by.value) or at_entry(fv)
  if p.kind == 'uretprobe' and p.hist and p.hist.src == 'arg' then
    return fail('probe: hist ' .. p.hist.text .. ': arguments are gone at return; use uprobe:, or hist=retval')
  end
  if ret and p.hist and p.hist.src == 'arg' then
    return fail('probe: hist ' .. p.hist.text .. ' is read at entry, the key or filter at return: '
      .. 'histogram a value of the same side')
  end
  p.at_return = ret or false
  -- entry and return both attached: latency, or an argument kept for the return
  p.paired = (p.hist and p.hist.src == 'latency') or (ret and entry) or false
  if p.filter and p.filter.value.src == 'latency' and not p.paired then p.paired = true end
  -- whose events
  if spec.pid ~= nil then
    local n = tonumber(spec.pid)
    if not n or n <= 0 or n ~= math.floor(n) then return fail('probe: pid: expected a process id') end
    p.pid = n
  end
  if spec.tid ~= nil then
    local n = tonumber(spec.tid)
    if not n or n <= 0 or n ~= math.floor(n) then return fail('probe: tid: expected a thread id') end
    p.tid = n
  end
  if spec.comm ~= nil then
    if type(spec.comm) ~= 'string' or spec.comm == '' then return fail('probe: comm: expected a thread name') end
    if #spec.comm > 15 then return fail("probe: comm '" .. spec.comm .. "': the kernel keeps 15 characters") end
    p.comm = spec.comm
  end
  p.cgroup = spec.cgroup
  return p
end

--- A one-line description of a parsed probe ("uprobe:libc:malloc hist arg0 by stack").
function M.describe(p)
  local parts = { p.point }
  if p.action == 'count' then parts[#parts + 1] = 'count' else parts[#parts + 1] = 'hist ' .. p.hist.text end
  if p.scale == 'linear' then
    parts[#parts + 1] = string.format('linear %d..%d step %d', p.linear.min, p.linear.max, p.linear.step)
  end
  local by = {}
  for _, k in ipairs { 'pid', 'tid', 'comm' } do if p.by[k] then by[#by + 1] = k end end
  if p.by.ustack and p.by.kstack then by[#by + 1] = 'stack'
  elseif p.by.ustack then by[#by + 1] = 'ustack'
  elseif p.by.kstack then by[#by + 1] = 'kstack' end
  if p.by.value then by[#by + 1] = p.by.value.text end
  if #by > 0 then parts[#parts + 1] = 'by ' .. table.concat(by, ',') end
  if p.filter then parts[#parts + 1] = 'if ' .. p.filter.text end
  return table.concat(parts, ' ')
end

-- Resolving the probe point ------------------------------------------------------

local function exists(path) return require('posix.sys.stat').stat(path) ~= nil end

local function mapped_files(pid)
  local f = io.open('/proc/' .. tostring(pid) .. '/maps')
  if not f then return {} end
  local out, seen = {}, {}
  for line in f:lines() do
    local path = line:match('^%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(/.+)$')
    if path and not seen[path] then seen[path] = true; out[#out + 1] = path end
  end
  f:close()
  return out
end

M.LIB_DIRS = { '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib64', '/usr/lib64', '/lib', '/usr/lib',
  '/usr/local/lib' }

-- does file name `base` name library / program `name` (libc -> libc.so.6, libc-2.36.so)
local function names(base, name)
  if base == name then return true end
  local stem = name:match('^lib') and name or ('lib' .. name)
  for _, n in ipairs { name, stem } do
    if base:sub(1, #n + 3) == n .. '.so' or base:sub(1, #n + 1) == n .. '-' and base:match('%.so') then
      return true
    end
  end
  return false
end

--- The file a probe point's BINARY names: a path as given (it must exist),
--- else a library or program found in the maps of `pid` (the target), our
--- own maps, the library directories, then PATH. nil, err when none.
function M.resolve_binary(name, pid)
  if name:find('/') then
    if not exists(name) then return fail('probe: no such file: ' .. name) end
    return name
  end
  local lists = {}
  if pid then lists[#lists + 1] = mapped_files(pid) end
  lists[#lists + 1] = mapped_files('self')
  for _, list in ipairs(lists) do
    for _, path in ipairs(list) do
      if names(path:match('[^/]+$'), name) then return path end
    end
  end
  local dirent = require('posix.dirent')
  for _, dir in ipairs(M.LIB_DIRS) do
    local ok, files = pcall(dirent.dir, dir)
    if ok and files then
      table.sort(files)
      for _, f in ipairs(files) do
        if names(f, name) and f:match('%.so') then return dir .. '/' .. f end
      end
    end
  end
  for dir in (os.getenv('PATH') or '/usr/bin:/bin'):gmatch('[^:]+') do
    if exists(dir .. '/' .. name) then return dir .. '/' .. name end
  end
  return fail(string.format("probe: no library or program '%s' (not mapped by the target, not in %s, not on PATH)",
    name, table.concat(M.LIB_DIRS, ' ')))
end

--- Fields of a tracepoint from its format file text: { name = {offset=,
--- size=, signed=} } (common_* fields left out; __data_loc strings marked).
function M.parse_format(text)
  local fields = {}
  for decl, off, size, sgn in text:gmatch('field:([^;]+);%s*offset:(%d+);%s*size:(%d+);%s*signed:(%d+);') do
    local name = decl:match('([%a_][%w_]*)%s*%[[^%]]*%]%s*$') or decl:match('([%a_][%w_]*)%s*$')
    if name and not name:match('^common_') then
      fields[name] = { offset = tonumber(off), size = tonumber(size), signed = sgn == '1',
        array = decl:find('%[') ~= nil, data_loc = decl:find('__data_loc') ~= nil, decl = util.trim(decl) }
    end
  end
  return fields
end

local function tracepoint_fields(p)
  local root = require('perf_manual.bpf').tracefs()
  if not root then
    return nil, 'probe: tracefs is not mounted: cannot read tracepoint ' .. p.category .. ':' .. p.name, 'env'
  end
  local text = util.readfile(root .. '/events/' .. p.category .. '/' .. p.name .. '/format')
  if not text then
    return nil, string.format("probe: unknown tracepoint '%s:%s' (no %s/events/%s/%s)", p.category, p.name, root,
      p.category, p.name), 'user'
  end
  return M.parse_format(text)
end

-- a value's rodata: src, arg (index, or a field's byte offset), size, signed
local function value_config(v, p, fields)
  if not v then return SRC.none, 0, 8, false end
  if v.src == 'field' then
    local f = fields[v.field]
    if not f then
      local known = util.keys(fields)
      table.sort(known)
      return nil, string.format("probe: tracepoint %s:%s has no field '%s' (fields: %s)", p.category, p.name,
        v.field, table.concat(known, ', '))
    end
    if f.data_loc or (f.array and not v.size) or f.size > 8 then
      return nil, string.format("probe: field '%s' (%s) is not a number", v.field, f.decl)
    end
    return SRC.field, f.offset, v.size or f.size, v.signed == nil and f.signed or v.signed
  end
  -- registers are 64-bit: a narrower type is the user's to say (retval:s32);
  -- a USDT argument's spec says its size and sign (bpf_usdt_arg extends it)
  local sgn = v.signed
  if sgn == nil then sgn = p.kind == 'usdt' end
  v.signed = sgn
  return SRC[v.src], v.arg or 0, v.size or 8, sgn
end

--- The rodata of bpf/probe.bpf.c for a parsed probe, or nil, err.
--- `fields`: the tracepoint's fields (parse_format), for field values.
function M.config(p, fields)
  local cfg = {}
  local src, arg, size, sgn = value_config(p.hist, p, fields or {})
  if not src then return nil, arg end
  cfg.hist_kind = p.hist and HIST[p.scale] or HIST.none
  cfg.hist_src, cfg.hist_arg, cfg.hist_size, cfg.hist_signed = src, arg, size, sgn
  if p.linear then cfg.lin_min, cfg.lin_step, cfg.lin_n = p.linear.min, p.linear.step, p.linear.n end
  local by = 0
  for k, bit in pairs(BY) do
    if k ~= 'value' and p.by[k] then by = by + bit end
  end
  -- user stacks are named through the process they belong to
  if p.by.ustack and not p.by.pid then by = by + BY.pid end
  if p.by.value then by = by + BY.value end
  cfg.key_by = by
  src, arg, size, sgn = value_config(p.by.value, p, fields or {})
  if not src then return nil, arg end
  cfg.key_src, cfg.key_arg, cfg.key_size, cfg.key_signed = src, arg, size, sgn
  local f = p.filter
  src, arg, size, sgn = value_config(f and f.value, p, fields or {})
  if not src then return nil, arg end
  cfg.filt_src, cfg.filt_arg, cfg.filt_size, cfg.filt_signed = src, arg, size, sgn
  cfg.filt_op = f and OPS[f.op] or 0
  cfg.filt_val = f and f.number or 0
  cfg.paired = p.paired and true or false
  -- frame pointers (bpf_get_stackid) unless user stacks are walked
  cfg.unwind_mode = p.by.ustack and unwind.MODES[p.unwind or 'auto'] or 0
  if p.comm then cfg.targ_comm = p.comm end
  return cfg
end

-- Reading ------------------------------------------------------------------------

--- Decodes one counts entry: key fields and value {count, sum, slots}.
function M.decode(kb, vb)
  local k, v = ffi.cast(key_t, kb), ffi.cast(val_t, vb)
  local slots = {}
  for i = 0, M.SLOTS - 1 do slots[i + 1] = tonumber(v.slots[i]) end
  return {
    pid = k.pid, tid = k.tid, user_stack_id = k.user_stack_id, kern_stack_id = k.kern_stack_id,
    value = k.value, comm = ffi.string(k.comm), count = tonumber(v.count), sum = tonumber(v.sum), slots = slots,
    user_hash = k.user_hash ~= 0 and kb:sub(41, 48) or nil,
  }
end

-- a u64 key value as a Lua number, signed when its type is
local function key_number(p, u64)
  local v = p.by.value
  if v and (v.signed or v.src == 'retval') then return tonumber(ffi.cast('int64_t', u64)) end
  return tonumber(u64)
end

--- Slots -> buckets, leading empty ones left out. log2: slot 63 holds the
--- negative values of a signed value (a bucket {neg = true, hi = -1} first),
--- or of an unsigned one everything from 2^63 (open). linear: an underflow
--- bucket {under = true, hi = min - 1}, then the steps, then an open one.
function M.buckets(p, slots)
  local out, neg = {}, nil
  if p.scale ~= 'linear' then
    local hist = require('perf_manual.hist')
    local low = {}
    for i = 1, M.SLOTS - 1 do low[i] = slots[i] or 0 end
    local top = slots[M.SLOTS] or 0
    local signed = p.hist and p.hist.signed
    if top > 0 and signed then neg = { neg = true, hi = -1, count = top } end
    out = hist.log2_buckets(low)
    if top > 0 and not signed then
      for i = #out + 1, M.SLOTS - 1 do
        local lo, hi = hist.log2_bounds(i - 1)
        out[i] = { lo = lo, hi = hi, count = 0 }
      end
      out[#out + 1] = { lo = 2 ^ 63, hi = 2 ^ 64 - 1, count = top, open = true }
    end
  else
    local l = p.linear
    local last = 0
    for i = 1, l.n + 2 do if (slots[i] or 0) > 0 then last = i end end
    for i = 1, last do
      if i == 1 then
        out[i] = { hi = l.min - 1, count = slots[1], under = true } -- no lo: everything below min
      elseif i == l.n + 2 then
        out[i] = { lo = l.max, hi = l.max, count = slots[i], open = true }
      else
        out[i] = { lo = l.min + (i - 2) * l.step, hi = l.min + (i - 1) * l.step - 1, count = slots[i] }
      end
    end
  end
  -- from the first non-empty bucket on
  local trimmed, started = { neg }, false
  for _, b in ipairs(out) do
    started = started or b.count > 0
    if started then trimmed[#trimmed + 1] = b end
  end
  return trimmed
end

--- Entries (decoded) -> a result: rows sorted by count (then key), totals
--- and the histogram of every row merged. `frames(rows)` names stacks.
function M.aggregate(p, entries, seconds)
  local rows, total, all = {}, 0, {}
  for i = 1, M.SLOTS do all[i] = 0 end
  for _, e in ipairs(entries) do
    if e.count > 0 then
      local row = { count = e.count }
      if p.by.pid then row.pid = e.pid end
      if p.by.tid then row.tid = e.tid end
      if p.by.comm then row.comm = e.comm end
      if p.by.value then row.key = key_number(p, e.value) end
      if p.by.ustack or p.by.kstack then
        row._stack = { tgid = e.pid, comm = e.comm, user_stack_id = p.by.ustack and e.user_stack_id or -14,
          kern_stack_id = p.by.kstack and e.kern_stack_id or -14, user_hash = p.by.ustack and e.user_hash or nil }
      end
      if p.hist then
        row.sum = e.sum
        row.mean = e.count > 0 and e.sum / e.count or nil
        row.buckets = M.buckets(p, e.slots)
        for i = 1, M.SLOTS do all[i] = all[i] + e.slots[i] end
      end
      if seconds and seconds > 0 then row.rate = e.count / seconds end
      rows[#rows + 1] = row
      total = total + e.count
    end
  end
  table.sort(rows, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    if a.key and b.key and a.key ~= b.key then return a.key < b.key end
    if a.pid and b.pid and a.pid ~= b.pid then return a.pid < b.pid end
    return (a.comm or '') < (b.comm or '')
  end)
  local res = { probe = M.describe(p), point = p.point, kind = p.kind, action = p.action, rows = rows,
    total = { count = total } }
  if p.hist then
    res.hist = p.hist.text
    res.scale = p.scale
    res.unit = p.hist.src == 'latency' and 'ns' or nil
    res.buckets = M.buckets(p, all)
    local sum = 0
    for _, r in ipairs(rows) do sum = sum + r.sum end
    res.total.sum = sum
    res.total.mean = total > 0 and sum / total or nil
  end
  if p.by.value then res.key = p.by.value.text end
  return res
end

-- The live probe -----------------------------------------------------------------

local base = require('perf_manual.tracers.base')

local Probe = setmetatable({}, { __index = base.Tracer })
Probe.__index = Probe

local function attach_error(p, err)
  -- libbpf names the cause; say it in the spec's words
  if p.func and err:find('failed to find symbol', 1, true) then
    return string.format("probe: unknown symbol '%s' in %s", p.func, p.path), 'user'
  end
  if p.kind == 'usdt' and (err:find('No such file', 1, true) or err:find('No such process', 1, true)) then
    return string.format("probe: no USDT probe %s:%s in %s", p.provider, p.name, p.path), 'user'
  end
  if p.kind == 'raw_tp' and err:find('No such file', 1, true) then
    return string.format("probe: unknown raw tracepoint '%s'", p.name), 'user'
  end
  return 'probe: ' .. err, 'env'
end

--- Places the probe (a spec table, or one parsed by M.parse). opts: pid, tid,
--- cgroup, comm (merged with the spec's; the spec's win), stats = false.
--- Returns the tracer, or nil, err, kind: 'user' for the spec's mistakes
--- (unknown symbol, tracepoint, field, binary), 'env' for the machine's.
function M.start(spec, opts)
  opts = opts or {}
  local p, err
  if type(spec) == 'table' and spec.kind then p = spec else p, err = M.parse(spec) end
  if not p then return nil, err, 'user' end
  local bpf = require('perf_manual.bpf')
  local ok, why = bpf.available()
  if not ok then return nil, why, 'env' end
  local pid, tid = p.pid or opts.pid, p.tid or opts.tid
  local fields
  if p.kind == 'tracepoint' then
    local kind
    fields, err, kind = tracepoint_fields(p)
    if not fields then return nil, err, kind end
  elseif p.kind ~= 'raw_tp' then
    p.path, err = M.resolve_binary(p.binary, pid)
    if not p.path then return nil, err, 'user' end
  end
  local cfg
  cfg, err = M.config(p, fields)
  if not cfg then return nil, err, 'user' end
  local filt, ferr = base.filter_config { pid = pid, tid = tid, cgroup = p.cgroup or opts.cgroup }
  if not filt then return nil, 'probe: ' .. ferr, 'user' end
  for k, v in pairs(filt) do cfg[k] = v end
  if not p.comm and opts.comm then cfg.targ_comm = opts.comm end

  -- the programs and where each goes
  local plan = {}
  if p.kind == 'tracepoint' then
    plan[1] = { 'probe_tp', { kind = 'tracepoint', category = p.category, name = p.name } }
  elseif p.kind == 'raw_tp' then
    plan[1] = { 'probe_raw_tp', { kind = 'raw_tp', name = p.name } }
  elseif p.kind == 'usdt' then
    plan[1] = { 'probe_usdt', { kind = 'usdt', binary = p.path, provider = p.provider, name = p.name, pid = pid } }
  else
    local at = { kind = 'uprobe', binary = p.path, func = p.func, offset = p.offset, pid = pid }
    if p.paired or not p.at_return then plan[#plan + 1] = { 'probe_uprobe', at } end
    if p.at_return then
      local r = {}
      for k, v in pairs(at) do r[k] = v end
      r.retprobe = true
      plan[#plan + 1] = { 'probe_uretprobe', r }
    end
  end
  local obj, oerr = bpf.open('probe')
  if not obj then return nil, oerr end
  local want = {}
  for _, step in ipairs(plan) do want[step[1]] = true end
  for _, prog in ipairs(obj:programs()) do obj:autoload(prog.name, want[prog.name] == true) end
  local cok, cerr = pcall(obj.set_config, obj, cfg)
  if not cok then obj:close() return nil, tostring(cerr) end
  -- maps this probe does not use, made small: creating the preallocated
  -- stack map alone costs several milliseconds of the time to attach
  local walk = p.by.ustack and cfg.unwind_mode ~= 0
  if not ((p.by.ustack and not walk) or p.by.kstack) then obj:resize('stacks', 1) end
  if not p.by.ustack then obj:resize('seen', 1); obj:resize('fresh', 1) end
  if not p.paired then obj:resize('starts', 1) end
  -- no key: every event lands on one entry (creating the 10,240-entry
  -- per-CPU table took about 1 ms of the time to attach)
  if cfg.key_by == 0 then obj:resize('counts', 1) end
  -- libbpf's USDT tables (a preallocated 1,024-entry hash among them)
  if p.kind ~= 'usdt' then obj:resize('__bpf_usdt_specs', 1); obj:resize('__bpf_usdt_ip_to_spec_id', 1) end
  -- the walker's maps stay one entry each unless stacks are walked
  unwind.prepare(obj, walk and p.unwind or 'fp')
  local lok, lerr = obj:load { stats = false }
  if not lok then obj:close() return nil, lerr end
  -- the target's tables before the first event; other processes get
  -- theirs on poll() (until then: frame pointers)
  local tables
  if walk then
    tables = unwind.tables(obj, p.unwind)
    if pid then tables:add(pid) end
  end
  for _, step in ipairs(plan) do
    local aok, aerr = obj:attach_probe(step[1], step[2])
    if not aok then
      obj:close()
      local msg, kind = attach_error(p, aerr)
      return nil, msg, kind
    end
  end
  local t = base.Tracer.new('probe', obj, { attach_path = p.kind, stats = opts.stats })
  t.probe = p
  t.counts = obj:map('counts')
  if p.by.ustack then
    t.resolver = require('perf_manual.sym').new()
    if pid then t.resolver:snapshot(pid) end
    t.fresh = obj:map('fresh')
  end
  if tables then
    t.tables = tables
    -- its own poller: `poll` on a tracer means events to the trace loop
    t.poller = { poll = function() t:poll_tables() end }
    base.poll_while_live(t.poller)
  end
  return setmetatable(t, Probe)
end

--- Reads the maps of processes seen with a user stack for the first time,
--- while they live (call it every ~100 ms; the trace session does).
function Probe:drain()
  if not self.fresh or self.closed or self.detached then return end
  for _, e in ipairs(self.fresh:read { clear = true } or {}) do
    self.resolver:snapshot(ffi.cast('const uint32_t *', e.key)[0])
  end
end

--- The walker's tables for processes it met without them (base.stats_tick
--- calls it while the probe lives); a process whose mappings changed (exec,
--- dlopen) gets a new symbol snapshot too.
function Probe:poll_tables()
  if not self.tables or self.closed then return end
  for _, pid in ipairs(self.tables:poll()) do self.resolver:snapshot(pid, true) end
end

function Probe:_release()
  if self.poller then base.unpoll(self.poller) end
  return base.Tracer._release(self)
end

--- Names the stacks of rows (frames root first, leaf last).
function Probe:_frames(rows)
  local list, idx = {}, {}
  for i, r in ipairs(rows) do
    if r._stack then list[#list + 1] = r._stack; idx[#idx + 1] = i end
  end
  if #list == 0 then return end
  local resolver = self.resolver or require('perf_manual.sym').new()
  self.resolver = resolver
  local named = require('perf_manual.profilers').bpf_frames(self.obj, resolver, list, M.MAX_DEPTH)
  for j, i in ipairs(idx) do
    local f = named[j].frames
    -- frames[1] is the process name (the flame graph root): kept apart
    local frames = {}
    for k = 2, #f do frames[#frames + 1] = f[k] end
    rows[i].stack = frames
    rows[i]._stack = nil
    rows[i]._unwind = named[j].unwind
  end
end

-- how the rows' user stacks were walked, weighted by events
-- (perf_manual.unwind.summary); nil with frame pointers
function Probe:_unwind_quality(rows)
  if not self.tables then return nil end
  local list = {}
  for _, r in ipairs(rows) do
    list[#list + 1] = { count = r.count, unwind = r._unwind }
    r._unwind = nil
  end
  local q = unwind.summary(list)
  q.mode, q.tables, q.counters = self.probe.unwind, self.tables.stats, unwind.counters(self.obj)
  return q
end

--- The result since start (or the last clearing read). opts.clear: start
--- a new interval.
function Probe:read(opts)
  opts = opts or {}
  local sys = require('perf_manual.sys')
  local now = sys.now()
  local res
  if self.closed then
    res = self.final or M.aggregate(self.probe, {})
  else
    local entries = {}
    for _, e in ipairs(assert(self.counts:read { clear = opts.clear })) do
      entries[#entries + 1] = M.decode(e.key, e.value)
    end
    self:drain()
    self:poll_tables()
    res = M.aggregate(self.probe, entries, self:attached_seconds(now))
    self:_frames(res.rows)
    self.unwind_q = self:_unwind_quality(res.rows)
  end
  self:finish_read(res, now, opts)
  res.quality.unwind = self.unwind_q
  -- the programs count nothing on their hot path: the events are the counts
  local seen = (self.seen or 0) + res.total.count
  res.quality.events_seen = seen
  if opts.clear then self.seen = seen end
  if self.probe.paired and res.quality.events_missed then
    res.quality.unpaired_note = 'returns without a seen entry (entered before attach)'
  end
  return res
end

--- JSON-ready copy: arrays marked, so empty ones stay [].
function M.to_json(res)
  local copy = base.json_copy(res, { 'rows', 'buckets' })
  local rows = {}
  for i, r in ipairs(res.rows or {}) do
    rows[i] = base.json_copy(r, r.buckets and { 'buckets' } or nil)
    if r.stack then rows[i].stack = util.array(r.stack) end
  end
  copy.rows = util.array(rows)
  return copy
end

return M
