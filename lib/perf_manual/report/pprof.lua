--- pprof profiles: profile.proto (github.com/google/pprof, proto/profile.proto)
--- written from a perf_manual profile and read back into folded stacks, so
--- `go tool pprof` and pprof-reading backends see our profiles and our
--- `fold`/`flamegraph` see theirs. The protobuf wire format is small enough
--- to write and read here: varints and length-delimited fields.
---
--- What maps to what (writing):
---   on-CPU  sample types samples/count and cpu/nanoseconds (count x period),
---           period_type cpu/nanoseconds, period 1e9/freq
---   off-CPU sample types off_cpu/nanoseconds (blocked microseconds x 1000)
---           and blocks/count (when the tracer counted the blocks)
---   process name and pid   labels "comm" and "pid" on each sample
---   frame                  a Location (its address when the stack had one)
---                          with one Line naming a Function
---   kernel frames (_[k])   the mapping [kernel.kallsyms]; JIT frames (_[j]) [jit]
---   user frames            the Mapping of the file they fell in, with its build-id
local gzip = require('perf_manual.gzip')
local ffi = require('ffi')

local M = {}

-- Writing ------------------------------------------------------------------------

local char, floor = string.char, math.floor
local U64_128 = ffi.cast('uint64_t', 128)

local function varint(n)
  if type(n) == 'number' then
    if n < 0 or n ~= floor(n) then error('[perf_manual.report.pprof] not a varint: ' .. tostring(n), 2) end
    if n < 128 then return char(n) end
    if n < 16384 then return char(n % 128 + 128, floor(n / 128)) end
    local t = {}
    while n >= 128 do t[#t + 1] = n % 128 + 128; n = floor(n / 128) end
    t[#t + 1] = n
    return char(unpack(t))
  end
  -- a uint64_t cdata: a kernel address above 2^53
  local t = {}
  while n >= U64_128 do t[#t + 1] = tonumber(n % U64_128) + 128; n = n / U64_128 end
  t[#t + 1] = tonumber(n)
  return char(unpack(t))
end
M._varint = varint

-- an address as given by perf_manual.sym.unpack: a number, or "0x…" above 2^53
local function address(a)
  if type(a) == 'string' then
    local hex = a:gsub('^0x', '')
    local hi, lo = tonumber(hex:sub(1, -9), 16) or 0, tonumber(hex:sub(-8), 16)
    return ffi.cast('uint64_t', hi) * 4294967296ULL + lo
  end
  return a
end

local function key(field, wire) return varint(field * 8 + wire) end
local function vfield(field, n)
  if n == 0 or n == nil then return '' end  -- proto3: a zero is not written
  return key(field, 0) .. varint(n)
end
local function bfield(field, bytes) return key(field, 2) .. varint(#bytes) .. bytes end
local function packed(field, list)
  if #list == 0 then return '' end
  local t = {}
  for i, v in ipairs(list) do t[i] = varint(v) end
  return bfield(field, table.concat(t))
end

local KERNEL_MAP, JIT_MAP = '[kernel.kallsyms]', '[jit]'
M.KERNEL_MAP, M.JIT_MAP = KERNEL_MAP, JIT_MAP

-- the mapping an address of pid falls in (last start <= addr)
local function find_mapping(list, addr)
  if not list or type(addr) ~= 'number' then return nil end
  local lo, hi, found = 1, #list, nil
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    if list[mid].start <= addr then found = mid; lo = mid + 1 else hi = mid - 1 end
  end
  local m = found and list[found]
  return m and addr < m.stop and m or nil
end

--- The sample types a profile is written with: { {type, unit}, … }.
function M.sample_types(p)
  if p.kind == 'offcpu' or p.unit == 'us' then
    -- how many times each stack blocked, when the tracer counted it (not in a replay)
    for _, s in ipairs(p.stacks) do
      if not s.blocks then return { { 'off_cpu', 'nanoseconds' } } end
    end
    return { { 'off_cpu', 'nanoseconds' }, { 'blocks', 'count' } }
  end
  return { { 'samples', 'count' }, { 'cpu', 'nanoseconds' } }
end

--- Encodes a perf_manual profile (perf_manual.profilers shape: kind, unit,
--- freq, duration, stacks = { {frames = {comm, root…leaf}, count, pid,
--- addrs} }, mappings = { [pid] = {…} } from perf_manual.sym) as an
--- uncompressed profile.proto message. opts.time_nanos: the start time
--- (default: now minus the duration); opts.comments: strings kept in the file.
function M.encode(p, opts)
  opts = opts or {}
  local strings, string_ids = { '' }, { [''] = 0 }
  local function str(s)
    local id = string_ids[s]
    if not id then
      id = #strings
      strings[id + 1] = s
      string_ids[s] = id
    end
    return id
  end
  local offcpu = p.kind == 'offcpu' or p.unit == 'us'
  local period = (not offcpu and p.freq and p.freq > 0) and floor(1e9 / p.freq + 0.5) or nil
  local types = M.sample_types(p)

  local mappings, mapping_ids = {}, {}
  local function mapping(path, m)
    local k = m and string.format('%s|%.0f|%.0f|%.0f', path, m.start, m.stop, m.offset) or path
    local id = mapping_ids[k]
    if not id then
      id = #mappings + 1
      mapping_ids[k] = id
      mappings[id] = table.concat {
        vfield(1, id), m and vfield(2, m.start) or '', m and vfield(3, m.stop) or '',
        m and vfield(4, m.offset) or '', vfield(5, str(path)),
        m and m.build_id and vfield(6, str(m.build_id)) or '',
        vfield(7, 1),  -- has_functions: every location is already named
      }
    end
    return id
  end

  local functions, function_ids = {}, {}
  local function func(name, filename)
    local id = function_ids[name]
    if not id then
      id = #functions + 1
      function_ids[name] = id
      local n = str(name)
      functions[id] = table.concat { vfield(1, id), vfield(2, n), vfield(3, n),
                                     filename and vfield(4, str(filename)) or '' }
    end
    return id
  end

  -- pprof takes the first mapping for the main binary: executables first,
  -- then libraries, by first use; the kernel and JIT ones come last
  local used, order = {}, {}
  for _, s in ipairs(p.stacks) do
    local addrs = s.addrs
    if addrs and p.mappings then
      for i = 2, #s.frames do
        local m = addrs[i] and s.frames[i]:sub(-4) ~= '_[k]' and find_mapping(p.mappings[s.pid], addrs[i])
        if m and not used[m] then used[m] = true; order[#order + 1] = m end
      end
    end
  end
  local rank = {}
  for i, m in ipairs(order) do
    -- memfd code and deleted files are no program's main binary
    rank[m] = (m.path:find(' (deleted)', 1, true) and 2e9 or m.path:match('%.so[%.%d]*$') and 1e9 or 0) + i
  end
  table.sort(order, function(a, b) return rank[a] < rank[b] end)
  for _, m in ipairs(order) do mapping(m.path, m) end

  local locations, location_ids = {}, {}
  local function location(name, addr, pid)
    local map_path, mapping_rec, fname = nil, nil, name
    if name:sub(-4) == '_[k]' then
      map_path, fname = KERNEL_MAP, name:sub(1, -5)
    elseif name:sub(-4) == '_[j]' then
      map_path, fname = JIT_MAP, name:sub(1, -5)
    elseif addr then
      mapping_rec = find_mapping(p.mappings and p.mappings[pid], addr)
      map_path = mapping_rec and mapping_rec.path
    end
    local mid = map_path and mapping(map_path, mapping_rec) or 0
    local a = addr and address(addr) or 0
    -- one location per (mapping, address, name): two processes may put
    -- different code at one address
    local k = string.format('%d|%s|%s', mid, tostring(a), name)
    local id = location_ids[k]
    if not id then
      id = #locations + 1
      location_ids[k] = id
      local line = vfield(1, func(fname, mapping_rec and mapping_rec.path))
      locations[id] = table.concat { vfield(1, id), vfield(2, mid), vfield(3, a), bfield(4, line) }
    end
    return id
  end
  -- within one process an address has one mapping: (pid, address, name)
  -- finds the location without building its key again (most frames repeat)
  local seen = {}
  local function location_of(name, addr, pid)
    local per_pid = seen[pid or 0]
    if not per_pid then per_pid = {}; seen[pid or 0] = per_pid end
    local per_addr = per_pid[addr or -1]
    if not per_addr then per_addr = {}; per_pid[addr or -1] = per_addr end
    local id = per_addr[name]
    if not id then id = location(name, addr, pid); per_addr[name] = id end
    return id
  end

  local comm_key, pid_key = str('comm'), str('pid')
  local samples = {}
  for _, s in ipairs(p.stacks) do
    if s.count > 0 then
      local locs = {}
      local addrs = s.addrs or {}
      for i = #s.frames, 2, -1 do  -- leaf first, as profile.proto has them
        locs[#locs + 1] = location_of(s.frames[i], addrs[i], s.pid)
      end
      local values = offcpu and { s.count * 1000, types[2] and s.blocks or nil }
        or { s.count, s.count * (period or 0) }
      local labels = { bfield(3, vfield(1, comm_key) .. vfield(2, str(s.frames[1] or ''))) }
      if s.pid then labels[2] = bfield(3, vfield(1, pid_key) .. vfield(3, s.pid)) end
      samples[#samples + 1] = bfield(2, packed(1, locs) .. packed(2, values) .. table.concat(labels))
    end
  end

  local out = {}
  for _, t in ipairs(types) do out[#out + 1] = bfield(1, vfield(1, str(t[1])) .. vfield(2, str(t[2]))) end
  for _, s in ipairs(samples) do out[#out + 1] = s end
  for _, m in ipairs(mappings) do out[#out + 1] = bfield(3, m) end
  for _, l in ipairs(locations) do out[#out + 1] = bfield(4, l) end
  for _, f in ipairs(functions) do out[#out + 1] = bfield(5, f) end
  local tail = {}
  local duration_ns = p.duration and floor(p.duration * 1e9) or 0
  local time_ns = opts.time_nanos or floor((os.time() - (p.duration or 0)) * 1e9)
  tail[#tail + 1] = vfield(9, time_ns)
  tail[#tail + 1] = vfield(10, duration_ns)
  if offcpu then
    tail[#tail + 1] = bfield(11, vfield(1, str('off_cpu')) .. vfield(2, str('nanoseconds')))
  else
    tail[#tail + 1] = bfield(11, vfield(1, str('cpu')) .. vfield(2, str('nanoseconds')))
    tail[#tail + 1] = vfield(12, period)
  end
  for _, c in ipairs(opts.comments or {}) do tail[#tail + 1] = vfield(13, str(c)) end
  -- the first type by default: sample counts read like our folded stacks
  tail[#tail + 1] = vfield(14, str(types[1][1]))
  -- the string table last: every string above is in it by now
  for _, s in ipairs(strings) do out[#out + 1] = bfield(6, s) end
  for _, t in ipairs(tail) do out[#out + 1] = t end
  return table.concat(out)
end

--- Writes the profile gzip'd (what pprof tools expect) to `path`, atomically.
--- Returns true or nil, err.
function M.write(path, p, opts)
  local gz, err = gzip.compress(M.encode(p, opts))
  if not gz then return nil, err end
  return require('perf_manual.util').write_atomic(path, gz)
end

-- Reading ------------------------------------------------------------------------

local byte = string.byte

-- a varint at pos: value (a double: exact below 2^53), next pos
local function read_varint(b, pos, stop)
  local v, mul = 0, 1
  while pos <= stop do
    local c = byte(b, pos)
    pos = pos + 1
    if c < 128 then return v + c * mul, pos end
    v = v + (c - 128) * mul
    mul = mul * 128
    if mul > 2 ^ 70 then break end
  end
  error('bad varint', 0)
end

-- calls fn(field, wire, value, a, b) for each field of b[pos..stop]; value is
-- the varint, or for length-delimited fields the bounds a..b of its bytes
local function fields(b, pos, stop, fn)
  while pos <= stop do
    local k
    k, pos = read_varint(b, pos, stop)
    local field, wire = floor(k / 8), k % 8
    if wire == 0 then
      local v
      v, pos = read_varint(b, pos, stop)
      fn(field, 0, v)
    elseif wire == 2 then
      local n
      n, pos = read_varint(b, pos, stop)
      if pos + n - 1 > stop then error('a field runs past the end of its message', 0) end
      fn(field, 2, nil, pos, pos + n - 1)
      pos = pos + n
    elseif wire == 1 then
      pos = pos + 8
    elseif wire == 5 then
      pos = pos + 4
    else
      error('unknown wire type ' .. wire, 0)
    end
  end
  if pos ~= stop + 1 then error('a field runs past the end of its message', 0) end
end

-- a repeated integer field: packed (one length-delimited run) or not
local function add_ints(list, b, wire, v, a, z)
  if wire == 0 then
    list[#list + 1] = v
  elseif wire == 2 then
    local pos = a
    while pos <= z do
      v, pos = read_varint(b, pos, z)
      list[#list + 1] = v
    end
  end
end

local function value_type(b, a, z)
  local t = { type = 0, unit = 0 }
  fields(b, a, z, function(f, _, v)
    if f == 1 then t.type = v elseif f == 2 then t.unit = v end
  end)
  return t
end

--- Decodes a profile.proto message (gzip'd or not). Returns
--- { sample_type = { {type, unit} }, samples = { {locations = {ids leaf
--- first}, values, labels = {key = str|num}} }, locations = {[id] = {mapping,
--- address, lines = { {function_id, line} }}}, functions = {[id] = {name,
--- filename}}, mappings = {[id] = {start, limit, offset, file, build_id}},
--- period_type, period, duration_nanos, time_nanos, comments,
--- default_sample_type } or nil, err.
function M.decode(bytes)
  if type(bytes) ~= 'string' then return nil, 'not a profile' end
  if gzip.is_gzip(bytes) then
    local raw, err = gzip.decompress(bytes)
    if not raw then return nil, err end
    bytes = raw
  end
  local b = bytes
  local raw = { sample_type = {}, samples = {}, mappings = {}, locations = {}, functions = {}, strings = {},
                comments = {} }
  local ok, err = pcall(fields, b, 1, #b, function(f, wire, v, a, z)
    if f == 1 and wire == 2 then
      raw.sample_type[#raw.sample_type + 1] = value_type(b, a, z)
    elseif f == 2 and wire == 2 then
      local s = { locations = {}, values = {}, labels = {} }
      fields(b, a, z, function(sf, sw, sv, sa, sz)
        if sf == 1 then add_ints(s.locations, b, sw, sv, sa, sz)
        elseif sf == 2 then add_ints(s.values, b, sw, sv, sa, sz)
        elseif sf == 3 and sw == 2 then
          local l = {}
          fields(b, sa, sz, function(lf, _, lv)
            if lf == 1 then l.key = lv elseif lf == 2 then l.str = lv elseif lf == 3 then l.num = lv end
          end)
          s.labels[#s.labels + 1] = l
        end
      end)
      raw.samples[#raw.samples + 1] = s
    elseif f == 3 and wire == 2 then
      local m = {}
      fields(b, a, z, function(mf, _, mv)
        if mf == 1 then m.id = mv elseif mf == 2 then m.start = mv elseif mf == 3 then m.limit = mv
        elseif mf == 4 then m.offset = mv elseif mf == 5 then m.file = mv elseif mf == 6 then m.build_id = mv end
      end)
      raw.mappings[#raw.mappings + 1] = m
    elseif f == 4 and wire == 2 then
      local l = { lines = {} }
      fields(b, a, z, function(lf, lw, lv, la, lz)
        if lf == 1 then l.id = lv elseif lf == 2 then l.mapping = lv elseif lf == 3 then l.address = lv
        elseif lf == 4 and lw == 2 then
          local line = {}
          fields(b, la, lz, function(nf, _, nv)
            if nf == 1 then line.function_id = nv elseif nf == 2 then line.line = nv end
          end)
          l.lines[#l.lines + 1] = line
        end
      end)
      raw.locations[#raw.locations + 1] = l
    elseif f == 5 and wire == 2 then
      local fn = {}
      fields(b, a, z, function(ff, _, fv)
        if ff == 1 then fn.id = fv elseif ff == 2 then fn.name = fv elseif ff == 4 then fn.filename = fv end
      end)
      raw.functions[#raw.functions + 1] = fn
    elseif f == 6 and wire == 2 then
      raw.strings[#raw.strings + 1] = b:sub(a, z)
    elseif f == 9 then raw.time_nanos = v
    elseif f == 10 then raw.duration_nanos = v
    elseif f == 11 and wire == 2 then raw.period_type = value_type(b, a, z)
    elseif f == 12 then raw.period = v
    elseif f == 13 then add_ints(raw.comments, b, wire, v, a, z)
    elseif f == 14 then raw.default_sample_type = v
    end
  end)
  if not ok then return nil, 'not a pprof profile: ' .. tostring(err) end
  -- resolve string indexes
  local strs = raw.strings
  if #strs == 0 or strs[1] ~= '' then return nil, 'not a pprof profile: no string table' end
  local bad
  local function s(i)
    if i == nil then return '' end
    local v = strs[i + 1]
    if v == nil then bad = 'string index ' .. tostring(i) .. ' outside the string table'; return '' end
    return v
  end
  local out = { sample_type = {}, samples = raw.samples, locations = {}, functions = {}, mappings = {},
                period = raw.period, time_nanos = raw.time_nanos, duration_nanos = raw.duration_nanos,
                comments = {} }
  for i, t in ipairs(raw.sample_type) do out.sample_type[i] = { type = s(t.type), unit = s(t.unit) } end
  if raw.period_type then out.period_type = { type = s(raw.period_type.type), unit = s(raw.period_type.unit) } end
  if raw.default_sample_type then out.default_sample_type = s(raw.default_sample_type) end
  for i, c in ipairs(raw.comments) do out.comments[i] = s(c) end
  for _, m in ipairs(raw.mappings) do
    out.mappings[m.id or 0] = { start = m.start, limit = m.limit, offset = m.offset, file = s(m.file),
                                build_id = m.build_id and s(m.build_id) or nil }
  end
  for _, fn in ipairs(raw.functions) do out.functions[fn.id or 0] = { name = s(fn.name), filename = s(fn.filename) } end
  for _, l in ipairs(raw.locations) do out.locations[l.id or 0] = l end
  for _, smp in ipairs(raw.samples) do
    local labels = {}
    for _, l in ipairs(smp.labels) do
      local k = s(l.key)
      if l.str and l.str ~= 0 then labels[k] = s(l.str) else labels[k] = l.num end
    end
    smp.labels = labels
  end
  if bad then return nil, 'not a pprof profile: ' .. bad end
  return out
end

--- The index (1-based) of the sample type `name`, or the profile's default
--- (default_sample_type, else the last type, as pprof chooses). nil, err
--- names the types there are.
function M.sample_index(prof, name)
  local names = {}
  for i, t in ipairs(prof.sample_type) do
    names[i] = t.type
    if name and t.type == name then return i end
  end
  if #names == 0 then return nil, 'the profile has no sample types' end
  if name then
    return nil, string.format("no sample type '%s' (there are: %s)", name, table.concat(names, ', '))
  end
  for i, n in ipairs(names) do
    if n == prof.default_sample_type then return i end
  end
  return #names
end

local function clean(name) return (name:gsub('[;\r\n]', ':')) end

--- The frames of a location, root first: inlined functions expand (the
--- last line is the caller the others were inlined into); kernel and JIT
--- mappings give back the _[k] and _[j] suffixes.
local function location_frames(prof, loc, cache)
  local f = cache[loc]
  if f then return f end
  local l = prof.locations[loc]
  f = {}
  if not l then
    f[1] = '[unknown]'
  else
    local m = l.mapping and prof.mappings[l.mapping]
    local suffix = ''
    if m and m.file:match('^%[kernel') then suffix = '_[k]'
    elseif m and m.file == JIT_MAP then suffix = '_[j]' end
    for i = #l.lines, 1, -1 do
      local fn = prof.functions[l.lines[i].function_id or 0]
      f[#f + 1] = clean(fn and fn.name ~= '' and fn.name or '[unknown]') .. suffix
    end
    if #f == 0 then
      -- not symbolised: the file it falls in, as sym names such frames
      f[1] = m and m.file ~= '' and '[' .. (m.file:match('([^/]+)$') or m.file) .. ']' or '[unknown]'
    end
  end
  cache[loc] = f
  return f
end

--- Folded stacks ("comm;root;…;leaf count") of a decoded profile for one
--- sample type (its name, or the default). The "comm" label, when the
--- samples carry one, is the root frame, as in our folded stacks. Samples
--- with a zero or negative value are left out. Returns text, info
--- {sample_type, unit, total, samples} or nil, err.
function M.to_folded(prof, sample_type)
  local idx, err = M.sample_index(prof, sample_type)
  if not idx then return nil, err end
  local merged, keys, cache = {}, {}, {}
  local total, n = 0, 0
  for _, smp in ipairs(prof.samples) do
    local v = smp.values[idx] or 0
    if v >= 2 ^ 63 then v = v - 2 ^ 64 end  -- an int64 below zero (a diff profile's)
    if v > 0 then
      local frames = {}
      local comm = smp.labels.comm
      if type(comm) == 'string' and comm ~= '' then frames[1] = clean(comm) end
      for i = #smp.locations, 1, -1 do
        for _, f in ipairs(location_frames(prof, smp.locations[i], cache)) do frames[#frames + 1] = f end
      end
      if #frames > 0 then
        local k = table.concat(frames, ';')
        if not merged[k] then merged[k] = 0; keys[#keys + 1] = k end
        merged[k] = merged[k] + v
        total, n = total + v, n + 1
      end
    end
  end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do out[i] = string.format('%s %.0f', k, merged[k]) end
  local t = prof.sample_type[idx]
  return table.concat(out, '\n') .. (#out > 0 and '\n' or ''),
    { sample_type = t.type, unit = t.unit, total = total, samples = n }
end

--- True when `bytes` (the start of a file) looks like a pprof profile:
--- gzip'd, or a protobuf message starting with a sample_type field and
--- holding bytes no text has.
function M.looks_like(bytes)
  if type(bytes) ~= 'string' or #bytes < 2 then return false end
  if gzip.is_gzip(bytes) then return true end
  return bytes:byte(1) == 0x0a and bytes:sub(1, 64):find('[%z\1-\8\14-\31]') ~= nil
end

return M
