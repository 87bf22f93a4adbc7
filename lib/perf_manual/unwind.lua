--- User stacks walked in BPF from DWARF call-frame information
--- (bpf/common/unwind.bpf.h): the tables the walker reads and the stacks it
--- keeps.
---
--- Each executable object a process maps is compiled once into rows
--- (perf_manual.cfi, cached on disk by build-id) and its rows go into the
--- object's unwind_rows map once, however many processes map it; each
--- process gets its sorted list of mappings in unwind_procs. Processes seen
--- for the first time, and those whose pcs fall outside their known
--- mappings (exec, dlopen), are (re)read on poll(); until then their stacks
--- are walked by frame pointers and counted so.
---
---   unwind.prepare(obj, 'auto')            -- before obj:load()
---   local t = unwind.tables(obj, 'auto')   -- after it
---   t:add(pid); ... t:poll()               -- every ~100 ms while capturing
---   local st = t:stack(hash)               -- {ips = bytes, nr, dwarf, fp, end_reason, ...}
local ffi = require('ffi')
local cfi = require('perf_manual.cfi')
local sym = require('perf_manual.sym')
local sys = require('perf_manual.sys')
local util = require('perf_manual.util')

local M = {}

ffi.cdef [[
struct pm_unwind_map { uint64_t start, end, adj; uint32_t row_first, row_count; };
struct pm_unwind_proc { uint32_t n, pad; struct pm_unwind_map maps[256]; };
struct pm_ustack { uint32_t nr; uint16_t dwarf, fp; uint8_t end, no_table, fp_no_cfi, fp_no_map; uint32_t pad;
                   uint64_t ips[127]; };
]]

M.MAX_MAPS = 256       -- bpf/unwind.h PM_UNWIND_MAX_MAPS
M.MAX_DEPTH = 127
M.DEFAULT_ROWS = 1048576 -- 12 MiB of rows: libpython alone has 63,583
M.MODES = { fp = 0, auto = 1, dwarf = 2 }
--- Why a walk ended (enum pm_unwind_end), as the stack-quality line says it.
M.END_REASONS = { [0] = 'root', 'depth limit', 'no frame pointer', 'unreadable stack memory', 'no CFI',
  'unsupported CFI rule' }

local proc_t = ffi.typeof('struct pm_unwind_proc')
local ustack_t = ffi.typeof('const struct pm_ustack *')

--- Sizes as Lua lays the structs out (a spec checks them against BTF).
function M.sizes()
  return { proc = ffi.sizeof('struct pm_unwind_proc'), ustack = ffi.sizeof('struct pm_ustack') }
end

--- Checks a --unwind value: "auto", "fp" or "dwarf" (nil: auto).
function M.check_mode(mode)
  mode = mode or 'auto'
  if not M.MODES[mode] then
    return nil, string.format('--unwind: expected auto, fp or dwarf, got "%s"', tostring(mode))
  end
  return mode
end

M.MAX_PROCS = 1024     -- PM_UNWIND_MAX_PROCS
M.MAX_STACKS = 8192    -- PM_UNWIND_MAX_STACKS

--- Configures a BPF object that includes common/unwind.bpf.h, before it is
--- loaded. The walker's maps are built with one entry each (an object used
--- with frame pointers costs nothing); auto and dwarf size them.
--- opts.rows: room for the rows of all objects.
function M.prepare(obj, mode, opts)
  mode = assert(M.check_mode(mode))
  obj:set_config { unwind_mode = M.MODES[mode] }
  -- nothing goes stale without the walker: not a preallocated hash for nothing
  if mode == 'fp' then obj:resize('unwind_stale', 1) end
  if mode ~= 'fp' then
    obj:resize('unwind_rows', (opts and opts.rows) or M.DEFAULT_ROWS)
    obj:resize('unwind_procs', M.MAX_PROCS)
    obj:resize('unwind_stacks', M.MAX_STACKS)
  end
end

--- Load hooks for an object opened through tracers.base.load_variants:
--- prepare (before load) sets the walker's mode; ready (after load, before
--- attach) makes the tables, with target's (a pid, optional) already in, so
--- its first events are walked from CFI. h.tables is set once ready ran (nil
--- with fp).
function M.load_hooks(mode, target)
  local h = {}
  h.prepare = function(obj) M.prepare(obj, mode) end
  h.ready = function(obj)
    if mode == 'fp' then return end
    h.tables = M.tables(obj, mode)
    if target then h.tables:add(target) end
  end
  return h
end

local Tables = {}
Tables.__index = Tables

--- The tables of a loaded object. mode: auto or dwarf (fp needs none).
function M.tables(obj, mode, opts)
  opts = opts or {}
  return setmetatable({
    obj = obj, mode = mode, rows = obj:map('unwind_rows'), procs = obj:map('unwind_procs'),
    capacity = opts.rows or M.DEFAULT_ROWS, next_row = 0,
    objects = {},  -- object key -> {first, count} | {error}
    known = {},    -- pid -> the maps text its table was made from
    stats = { objects = 0, compiled = 0, cached = 0, rows = 0, build_s = 0, processes = 0, failed = {} },
    cache = opts.cache,
  }, Tables)
end

-- the object's place in unwind_rows: compiled (or read from the cache) once
function Tables:_object(path, key)
  local o = self.objects[key]
  if o then return o end
  local t0 = sys.now()
  local tab, how = cfi.table(path, { cache = self.cache })
  if not tab then
    o = { error = how }
  else
    local loads = cfi._c.loads(path)
    local info = tab:info()
    if self.next_row + info.rows > self.capacity then
      o = { error = 'no room for its rows (' .. info.rows .. ')' }
    else
      local ok, err = self.rows:put_array(self.next_row, tab:rows())
      if not ok then
        o = { error = err }
      else
        o = { first = self.next_row, count = info.rows, base = info.base, loads = loads or {} }
        self.next_row = self.next_row + info.rows
        self.stats.rows = self.next_row
        self.stats.objects = self.stats.objects + 1
        if how.source == 'cache' then self.stats.cached = self.stats.cached + 1
        else self.stats.compiled = self.stats.compiled + 1 end
      end
    end
    tab:close()
  end
  self.stats.build_s = self.stats.build_s + (sys.now() - t0)
  if o.error then self.stats.failed[key] = tostring(o.error) end
  self.objects[key] = o
  return o
end

-- pc - adj is the pc in the object's table: through the PT_LOAD segment
-- holding the mapping's file offset
local function adjust(o, m)
  for _, l in ipairs(o.loads) do
    if m.offset >= l.offset and m.offset < l.offset + math.max(l.size, 1) then
      return m.start - m.offset + l.offset - l.vaddr + o.base
    end
  end
end

--- Gives process pid its mappings' tables (again, when its mappings
--- changed). Returns true and whether they changed, or nil, err (the
--- process is gone, the map full).
function Tables:add(pid)
  local text, err = util.readfile('/proc/' .. pid .. '/maps')
  if not text then return nil, 'no process ' .. pid .. ': ' .. tostring(err) end
  if self.known[pid] == text then return true, false end
  local maps = sym.parse_maps(text)
  local p = proc_t()
  local n = 0
  for _, m in ipairs(maps) do
    if n >= M.MAX_MAPS then break end
    local e = p.maps[n]
    e.start, e['end'] = m.start, m.stop
    e.adj, e.row_first, e.row_count = 0, 0, 0
    local path = m.path
    if path and path:sub(1, 1) == '/' then
      -- through map_files: the very file mapped, whatever mount namespace or unlink
      local via = string.format('/proc/%d/map_files/%x-%x', pid, m.start, m.stop)
      local key = m.dev .. ':' .. m.inode
      local o = self:_object(via, key)
      local adj = o.first and adjust(o, m)
      if adj then e.adj, e.row_first, e.row_count = adj, o.first, o.count end
    end
    n = n + 1
  end
  p.n = n
  local ok, uerr = self.procs:update(pid, ffi.string(p, ffi.sizeof(p)))
  if not ok then return nil, uerr end
  if not self.known[pid] then self.stats.processes = self.stats.processes + 1 end
  self.known[pid] = text
  return true, true
end

--- Reads again the processes the walker found without tables or outside
--- their mappings. Call it every ~100 ms while capturing. Returns the pids
--- whose mappings changed (an exec, a dlopen): their symbols need a new
--- snapshot too.
function Tables:poll()
  local stale = self.obj:map('unwind_stale'):read { clear = true }
  local changed, now = {}, sys.now()
  self.tried = self.tried or {}
  for _, e in ipairs(stale or {}) do
    local pid = ffi.cast('const uint32_t *', e.key)[0]
    -- once a second at most: a process that cannot get tables (gone, the
    -- map full) would come back on every poll
    if now - (self.tried[pid] or -1) >= 1 then
      self.tried[pid] = now
      local ok, diff = self:add(pid)
      if ok and diff then changed[#changed + 1] = pid end
    end
  end
  return changed
end

--- A kept stack by its key: {ips = packed u64 bytes, nr, dwarf, fp, end_reason,
--- no_table, fp_no_cfi, fp_no_map}, or nil.
function M.read_stack(obj, hash_bytes)
  local v = obj:map('unwind_stacks'):lookup(hash_bytes)
  if not v then return nil end
  local s = ffi.cast(ustack_t, v)
  local nr = math.min(s.nr, M.MAX_DEPTH)
  return {
    ips = ffi.string(s.ips, nr * 8), nr = nr, dwarf = s.dwarf, fp = s.fp,
    end_reason = M.END_REASONS[s['end']] or 'unknown', no_table = s.no_table ~= 0,
    fp_no_cfi = s.fp_no_cfi, fp_no_map = s.fp_no_map,
  }
end

--- M.read_stack for one read of obj's maps, each hash read once (many keys
--- share a stack): returns fn(hash) -> the stack or nil.
function M.stack_reader(obj)
  local seen = {}
  return function(hash)
    if seen[hash] == nil then seen[hash] = M.read_stack(obj, hash) or false end
    return seen[hash] or nil
  end
end

--- The per-CPU counters: walks, stacks lost (the map was full).
function M.counters(obj)
  local c = { walks = 0, stacks_lost = 0 }
  for _, e in ipairs(obj:map('unwind_counters'):read() or {}) do
    local k = ffi.cast('const uint32_t *', e.key)[0]
    local v = tonumber(ffi.cast('const uint64_t *', e.value)[0])
    if k == 0 then c.walks = v elseif k == 1 then c.stacks_lost = v end
  end
  return c
end

--- How the user stacks of a profile were unwound, by samples: {samples,
--- dwarf (all frames from CFI), mixed (CFI and frame pointers), fp (frame
--- pointers only), no_table (the process had no tables yet), ends = {reason
--- = samples}, fp_no_cfi, fp_no_map (samples with frame-pointer steps where
--- a pc had no row / was in no known mapping)}.
function M.summary(stacks)
  local s = { samples = 0, dwarf = 0, mixed = 0, fp = 0, no_table = 0, ends = {}, fp_no_cfi = 0, fp_no_map = 0 }
  for _, st in ipairs(stacks) do
    local u = st.unwind
    if u then
      local c = st.count or 1
      s.samples = s.samples + c
      if u.no_table then s.no_table = s.no_table + c
      elseif u.fp == 0 then s.dwarf = s.dwarf + c
      elseif u.dwarf == 0 then s.fp = s.fp + c
      else s.mixed = s.mixed + c end
      s.ends[u.end_reason] = (s.ends[u.end_reason] or 0) + c
      if u.fp_no_cfi > 0 then s.fp_no_cfi = s.fp_no_cfi + c end
      if u.fp_no_map > 0 then s.fp_no_map = s.fp_no_map + c end
    end
  end
  return s
end

return M
