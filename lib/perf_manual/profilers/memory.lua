--- Memory profiler: allocations still outstanding at the end of a window
--- (allocated in it and not freed: the leak view, as BCC memleak), by
--- allocation stack; user page faults by stack and by mapping; the target's
--- RSS over the window; and a leak verdict joining the two.
---
--- Kernel side: bpf/memleak.bpf.c, uprobes on the allocator of the library
--- that /proc/PID/maps shows (glibc's malloc, calloc, realloc,
--- posix_memalign, aligned_alloc, memalign, free), mmap/munmap/brk through
--- the syscall tracepoints, exceptions:page_fault_user. User stacks are
--- walked from DWARF call-frame information (perf_manual.unwind) unless
--- unwind = 'fp'.
---
---   local s = assert(memory.start{ pid = 1234, sample_every = 1 })
---   while collecting do s:poll() sys.sleep(0.25) end   -- RSS samples, mappings
---   local m = s:stop()   -- m.outstanding, m.faults (profiles), m.rss, m.verdict
local ffi = require('ffi')
local bpf = require('perf_manual.bpf')
local sym = require('perf_manual.sym')
local sys = require('perf_manual.sys')
local util = require('perf_manual.util')
local profilers = require('perf_manual.profilers')
local unwind = require('perf_manual.unwind')

local M = {}

M.MAX_DEPTH = 127 -- bpf/memleak.h MEMLEAK_MAX_DEPTH
M.POLL_PERIOD = 0.25

ffi.cdef [[
struct pm_memleak_site { uint64_t caller; int32_t stack_id; uint32_t tgid, kind, pad; uint64_t user_hash; };
struct pm_memleak_total { uint64_t bytes, allocs, sampled, sampled_bytes; };
struct pm_memleak_fault_key { uint32_t tgid; int32_t stack_id; uint64_t user_hash; };
]]
local site_t = ffi.typeof('const struct pm_memleak_site *')
local total_t = ffi.typeof('const struct pm_memleak_total *')
local fkey_t = ffi.typeof('const struct pm_memleak_fault_key *')

--- Sizes as Lua decodes them (a spec checks them against the object's BTF).
function M.sizeof()
  return { site = ffi.sizeof('struct pm_memleak_site'), total = ffi.sizeof('struct pm_memleak_total'),
           fault_key = ffi.sizeof('struct pm_memleak_fault_key') }
end

-- enum memleak_kind: the allocator call, named as the leaf frame
M.KINDS = { [0] = 'malloc', 'calloc', 'realloc', 'memalign', 'mmap' }
-- enum memleak_counter
M.COUNTERS = { 'calls', 'sampled', 'frees', 'frees_hit', 'stack_lost', 'allocs_full', 'faults', 'brk_bytes',
               'mmap_bytes', 'nested' }

-- allocator symbol -> { entry program, return program }. Attached return
-- probes first, then free, then the entries; detached in reverse (pm.bpf),
-- so no allocation of the window is seen without its return or its free.
M.PROBES = {
  { 'free', 'free_enter' },
  { 'malloc', 'malloc_enter', 'alloc_return' },
  { 'calloc', 'calloc_enter', 'alloc_return' },
  { 'realloc', 'realloc_enter', 'alloc_return' },
  { 'aligned_alloc', 'aligned_alloc_enter', 'alloc_return' }, -- glibc's memalign is the same function
  { 'posix_memalign', 'posix_memalign_enter', 'posix_memalign_return' },
}
M.TRACEPOINTS = { 'memleak_mmap_enter', 'memleak_mmap_exit', 'memleak_munmap_enter', 'memleak_brk_exit' }
M.FAULT_PROG = 'memleak_fault'

-- frames that are the allocator itself, not the code that asked for memory
M.ALLOCATOR_FRAMES = {
  malloc = true, calloc = true, realloc = true, free = true, posix_memalign = true, aligned_alloc = true,
  memalign = true, valloc = true, pvalloc = true, mmap = true, mmap64 = true, __mmap = true, __mmap64 = true,
  __libc_malloc = true, __libc_calloc = true, __libc_realloc = true, __libc_memalign = true,
  __posix_memalign = true, _mid_memalign = true, reallocarray = true, __libc_reallocarray = true,
  strdup = true, __strdup = true, strndup = true, __strndup = true,
  ['operator new(unsigned long)'] = true, ['operator new[](unsigned long)'] = true,
  _Znwm = true, _Znam = true, ['[unknown]'] = true,
}

--- The C library a process maps (its allocator), from /proc/PID/maps
--- text: the path, or nil.
function M.libc_path(maps_text)
  for line in maps_text:gmatch('[^\n]+') do
    local path = line:match('^%x+%-%x+ %S+ %x+ %S+ %d+%s+(/%S+)$')
    if path then
      local base = path:match('([^/]+)$')
      if base:match('^libc%.so') or base:match('^libc%-[%d.]+%.so') then return path end
    end
  end
end

--- Every mapping of /proc/PID/maps text: sorted list of {start, stop, label}
--- (a file's path, [heap], [stack], or [anon]).
function M.parse_all_maps(text)
  local out = {}
  for line in text:gmatch('[^\n]+') do
    local a, b, rest = line:match('^(%x+)%-(%x+) %S+ %x+ %S+ %d+%s*(.*)$')
    if a then
      out[#out + 1] = { start = tonumber(a, 16), stop = tonumber(b, 16), label = rest ~= '' and rest or '[anon]' }
    end
  end
  return out
end

--- The label of the mapping holding addr (nil when none does). An address
--- in the gap just above [heap] is heap too: brk grew it after the
--- mappings were read (the last read can be up to a poll before the end).
function M.mapping_of(maps, addr)
  local lo, hi = 1, #maps
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local m = maps[mid]
    if addr < m.start then hi = mid - 1
    elseif addr >= m.stop then lo = mid + 1
    else return m.label end
  end
  if maps[hi] and maps[hi].label == '[heap]' then return '[heap]' end
end

--- VmRSS and RssAnon (bytes) from /proc/PID/status text.
function M.parse_status(text)
  local rss = text:match('\nVmRSS:%s+(%d+) kB')
  local anon = text:match('\nRssAnon:%s+(%d+) kB')
  if not rss then return nil end
  return { rss = tonumber(rss) * 1024, anon = anon and tonumber(anon) * 1024 or nil }
end

--- RSS growth over samples { {t, rss}, ... } (in time order): first to last
--- in bytes, and the least-squares slope in bytes per minute.
function M.rss_growth(samples)
  local n = #samples
  if n < 2 then return nil end
  local st, sr = 0, 0
  for _, s in ipairs(samples) do st = st + s.t; sr = sr + s.rss end
  local mt, mr = st / n, sr / n
  local num, den = 0, 0
  for _, s in ipairs(samples) do
    num = num + (s.t - mt) * (s.rss - mr)
    den = den + (s.t - mt) ^ 2
  end
  local first, last = samples[1], samples[n]
  return {
    first = first.rss, last = last.rss, growth = last.rss - first.rss,
    seconds = last.t - first.t, samples = n,
    per_min = den > 0 and num / den * 60 or nil,
  }
end

--- Where a stack asked for memory: its innermost frame that is not the
--- allocator (frames root…leaf, the first being the process name).
function M.site_function(frames)
  for i = #frames, 2, -1 do
    local f = frames[i]
    if not M.ALLOCATOR_FRAMES[f] and not f:match('^%[') then return f end
  end
  return frames[#frames]
end

--- Outstanding bytes summed by allocating function (site_function), biggest
--- first: { {name, bytes, allocs, share} }.
function M.by_function(p)
  local per, list = {}, {}
  for _, s in ipairs(p.stacks) do
    local name = M.site_function(s.frames)
    local r = per[name]
    if not r then r = { name = name, bytes = 0, allocs = 0 }; per[name] = r; list[#list + 1] = r end
    r.bytes = r.bytes + s.count
    r.allocs = r.allocs + (s.allocs or 0)
  end
  for _, r in ipairs(list) do r.share = p.total > 0 and r.bytes / p.total or 0 end
  table.sort(list, function(a, b)
    if a.bytes ~= b.bytes then return a.bytes > b.bytes end
    return a.name < b.name
  end)
  return util.array(list)
end

local function read_text(path)
  local f = io.open(path)
  if not f then return nil end
  local t = f:read('*a')
  f:close()
  return t
end

local MIB = 1024 * 1024

--- The leak verdict from the outstanding-bytes profile and the RSS growth.
--- opts: min_rate (bytes/min of outstanding allocation that counts as a
--- leak, default 1 MiB/min), min_share (default 0.5: the top function's
--- share of what is outstanding to be named as the leak).
--- Returns { leaking, text, function, outstanding_bytes, outstanding_per_min,
--- rss_per_min, share_of_rss, share_of_outstanding }.
function M.verdict(p, rss, seconds, opts)
  opts = opts or {}
  local min_rate = opts.min_rate or MIB
  local min_share = opts.min_share or 0.5
  local fns = M.by_function(p)
  local top = fns[1]
  local v = { outstanding_bytes = p.total, rss_per_min = rss and rss.per_min, rss_growth = rss and rss.growth }
  v.outstanding_per_min = seconds and seconds > 0 and p.total / seconds * 60 or nil
  v.leaking = (v.outstanding_per_min or 0) >= min_rate
  local function mb(b) return string.format('%+.1f MB', b / 1e6) end
  local rss_text = rss and rss.per_min and ('RSS ' .. mb(rss.per_min) .. '/min')
    or 'RSS not measured'
  if not top or top.bytes <= 0 then
    v.text = rss_text .. ', nothing allocated in the window is still outstanding: no leak seen'
    return v
  end
  v['function'] = top.name
  v.share_of_outstanding = top.share
  if rss and rss.growth and rss.growth > 0 then v.share_of_rss = math.min(1, top.bytes / rss.growth) end
  if not v.leaking then
    v.text = string.format('%s, %s outstanding at the end (%s/min): below the leak threshold (%s/min)',
      rss_text, util.fmt_bytes(p.total), util.fmt_bytes(v.outstanding_per_min or 0), util.fmt_bytes(min_rate))
  elseif top.share < min_share then
    v.text = string.format('%s, %s/min allocated and never freed, spread over many sites (the largest, `%s`, '
      .. 'holds %.0f%%)', rss_text, util.fmt_bytes(v.outstanding_per_min), top.name, top.share * 100)
  elseif v.share_of_rss and rss.per_min and rss.per_min > 0 then
    v.text = string.format('%s, %.0f%% of it allocated from `%s` and never freed', rss_text,
      v.share_of_rss * 100, top.name)
  else
    v.text = string.format('%s, yet %s/min allocated from `%s` (%.0f%% of what is outstanding) is never freed '
      .. '(the allocator reuses freed memory, or the pages are not touched yet)', rss_text,
      util.fmt_bytes(v.outstanding_per_min), top.name, top.share * 100)
  end
  return v
end

local function u32(b) return ffi.cast('const uint32_t *', b)[0] end
local function u64(b) return tonumber(ffi.cast('const uint64_t *', b)[0]) end

--- Decodes a sites-map entry.
function M.decode_site(kb, vb)
  local k, v = ffi.cast(site_t, kb), ffi.cast(total_t, vb)
  return { caller = tonumber(k.caller), stack_id = k.stack_id, tgid = k.tgid, kind = M.KINDS[k.kind] or 'alloc',
           user_hash = k.user_hash ~= 0 and kb:sub(25, 32) or nil,
           bytes = tonumber(ffi.cast('int64_t', v.bytes)), allocs = tonumber(ffi.cast('int64_t', v.allocs)),
           sampled = tonumber(v.sampled), sampled_bytes = tonumber(v.sampled_bytes) }
end

function M.decode_fault_key(kb)
  local k = ffi.cast(fkey_t, kb)
  return { tgid = k.tgid, stack_id = k.stack_id, user_hash = k.user_hash ~= 0 and kb:sub(9, 16) or nil }
end

--- Inserts the caller's return address after the allocator's entry ip: the
--- frame-pointer walk from the allocator's first instruction skips the
--- caller (it has not pushed a frame for the callee yet). A caller equal to
--- the walk's next address (a caller with no frame of its own) is not
--- doubled.
function M.with_caller(addrs, caller)
  if not caller or caller == 0 or #addrs == 0 or addrs[2] == caller then return addrs end
  local out = { addrs[1], caller }
  for i = 2, #addrs do out[#out + 1] = addrs[i] end
  return out
end

--- Names the leaf of a symbolised allocation stack (root…leaf) after the
--- call (glibc names malloc's address __libc_malloc as often as malloc),
--- and drops an inserted caller that names no function (a stack word that
--- was not a return address: mmap's wrapper may have pushed something). In place.
function M.name_leaf(frames, kind, with_caller)
  local n = #frames
  if n < 2 or frames[n] == '[missing user stack]' then return frames end
  frames[n] = kind
  if with_caller and n >= 3 and profilers.is_unknown(frames[n - 1]) then table.remove(frames, n - 1) end
  return frames
end

--- Stacks whose frames read the same (different return addresses in one
--- function) merged into one: counts and allocs summed. Returns a new list.
function M.merge(stacks)
  local by, out = {}, {}
  for _, s in ipairs(stacks) do
    local key = table.concat(s.frames, ';')
    local m = by[key]
    if m then
      m.count = m.count + s.count
      m.allocs = (m.allocs or 0) + (s.allocs or 0)
      m.truncated = m.truncated or s.truncated
    else
      m = {}
      for k, v in pairs(s) do m[k] = v end
      by[key] = m
      out[#out + 1] = m
    end
  end
  return out
end

-- Where to put an entry probe inside fn: the kernel emulates a push at a
-- probe, but single-steps most other instructions out of line, an extra
-- trap (20 us a call instead of 7 on this kind of VM). glibc's free opens
-- with its NULL check (test rdi,rdi; je rel32) and then pushes: probing
-- after the check misses only free(NULL), which frees nothing. `code`:
-- the function's first bytes. Returns the offset (0: the entry).
function M.entry_offset(code)
  if #code >= 11 and code:sub(1, 5) == '\72\133\255\15\132' then -- 48 85 ff 0f 84
    local b, b2 = code:byte(10), code:byte(11)
    if (b >= 0x50 and b <= 0x57) or (b == 0x41 and b2 >= 0x50 and b2 <= 0x57) then return 9 end
  end
  return 0
end

-- The first bytes of `fn` as this process's C library has them, when the
-- target maps the same file (same device and inode): nil otherwise.
local function own_code(fn, libc)
  local pstat = require('posix.sys.stat')
  local own = M.libc_path(read_text('/proc/self/maps') or '')
  local a, b = own and pstat.stat(own), pstat.stat(libc)
  if not (a and b and a.st_dev == b.st_dev and a.st_ino == b.st_ino) then return nil end
  local function addr() return ffi.cast('const char *', ffi.C[fn]) end
  local ok, p = pcall(addr)
  if not ok then
    pcall(ffi.cdef, string.format('void %s(void);', fn)) -- not declared by anyone yet
    ok, p = pcall(addr)
    if not ok then return nil end
  end
  return ffi.string(p, 16)
end

local Session = {}
Session.__index = Session

local function load_object(opts)
  local obj, err = bpf.open('memleak')
  if not obj then return nil, err end
  obj:set_config {
    targ_tgid = opts.pid or 0,
    targ_cgroup_id = opts.cgroup_id or 0,
    sample_every = opts.sample_every or 1,
    sample_min_size = opts.sample_min_size or 0,
    trace_faults = opts.faults ~= false,
  }
  if opts.faults == false then obj:autoload(M.FAULT_PROG, false) end
  unwind.prepare(obj, opts.unwind)
  local ok, lerr = obj:load { stats = opts.stats }
  if not ok then obj:close() return nil, lerr end
  return obj
end

--- Starts profiling. opts: pid (one process: uprobes on the C library it
--- maps) or cgroup_id (every process of a cgroup, a launched command
--- included: uprobes on the system's C library for every process, filtered
--- in the kernel); sample_every (record every Nth small allocation, default
--- 1 = all), sample_min_size (always record allocations of at least this
--- many bytes), faults (default true), libc (path, overrides the lookup),
--- verdict (the leak thresholds: see M.verdict), unwind ("auto" (default),
--- "fp", "dwarf": perf_manual.unwind).
--- Returns the session or nil, err.
function M.start(opts)
  opts = opts or {}
  local mode, merr = unwind.check_mode(opts.unwind)
  if not mode then return nil, merr end
  opts = setmetatable({ unwind = mode }, { __index = opts })
  local maps_pid = opts.pid or 'self'
  local libc = opts.libc
  if not libc then
    local text = read_text('/proc/' .. maps_pid .. '/maps')
    if not text then return nil, 'cannot read /proc/' .. maps_pid .. '/maps' end
    libc = M.libc_path(text)
    if not libc then
      return nil, (opts.pid and ('process ' .. opts.pid) or 'this system') .. ' maps no C library (libc.so.6): '
        .. 'a static binary or another allocator is not supported yet'
    end
    if opts.pid then libc = '/proc/' .. opts.pid .. '/root' .. libc end
  end
  local obj, err = load_object(opts)
  if not obj then return nil, err end
  -- the target's tables before the first probe fires; a launched command's
  -- processes get theirs on poll() (until then: frame pointers)
  local tables
  if mode ~= 'fp' then
    tables = unwind.tables(obj, mode)
    if opts.pid then tables:add(opts.pid) end
  end
  local ok, aerr = obj:attach(M.TRACEPOINTS)
  if ok and opts.faults ~= false then ok, aerr = obj:attach({ M.FAULT_PROG }) end
  if not ok then obj:close() return nil, aerr end
  local upid = opts.pid or -1
  local attached, missing = {}, {}
  -- return probes first: an entry seen without its return would leave the
  -- thread marked as inside the allocator
  for pass = 1, 2 do
    for _, pr in ipairs(M.PROBES) do
      local fn, enter, ret = pr[1], pr[2], pr[3]
      local retprobe = pass == 1
      local prog = enter
      if retprobe then prog = ret end
      if prog and not missing[fn] then
        local code = not retprobe and fn == 'free' and own_code(fn, libc)
        local off = code and M.entry_offset(code) or 0
        local aok, perr = obj:attach_probe(prog, { kind = 'uprobe', binary = libc, func = fn, pid = upid,
                                                   retprobe = retprobe, offset = off })
        if not aok then
          if fn == 'malloc' or fn == 'free' then obj:close() return nil, perr end
          missing[fn] = perr -- an allocator call this C library does not have
        elseif pass == 2 then
          attached[#attached + 1] = fn
        end
      end
    end
  end
  local s = setmetatable({
    obj = obj, resolver = opts.resolver or sym.new(), pid = opts.pid, libc = libc, t0 = sys.now(),
    sample_every = opts.sample_every or 1, sample_min_size = opts.sample_min_size or 0,
    probes = attached, missing = missing, rss = {}, maps = {}, last_poll = -math.huge, faults = opts.faults ~= false,
    verdict_opts = opts.verdict, tables = tables, unwind_mode = mode,
  }, Session)
  if opts.pid then
    s.resolver:snapshot(opts.pid)
    s:sample(opts.pid)
  end
  return s
end

-- RSS and the full mappings of one process, now
function Session:sample(tgid)
  local st = read_text('/proc/' .. tgid .. '/status')
  local v = st and M.parse_status(st)
  if v then
    local list = self.rss[tgid]
    if not list then list = {}; self.rss[tgid] = list end
    list[#list + 1] = { t = sys.now(), rss = v.rss, anon = v.anon }
  end
  local maps = read_text('/proc/' .. tgid .. '/maps')
  if maps then self.maps[tgid] = maps end
end

--- Samples RSS and finds new processes (at most every POLL_PERIOD).
function Session:poll()
  -- tables for processes the walker met without them: every call, they are few
  if self.tables then
    for _, pid in ipairs(self.tables:poll()) do self.resolver:snapshot(pid, true) end
  end
  local now = sys.now()
  if now - self.last_poll < M.POLL_PERIOD then return end
  self.last_poll = now
  if self.pid then
    self:sample(self.pid)
    return
  end
  local seen = {}
  for _, e in ipairs(self.obj:map('sites'):read() or {}) do
    seen[u32(ffi.cast('const char *', e.key) + 12)] = true
  end
  for tgid in pairs(seen) do
    if not self.resolver.snaps[tgid] and not self.resolver.failed[tgid] then self.resolver:snapshot(tgid) end
    self:sample(tgid)
  end
end

-- stacks (address lists, innermost first) of an entry {stack_id,
-- user_hash}, each read once: a frame-pointer stack by its id, a walked one
-- by its hash (also returned: how it was walked, perf_manual.unwind)
local function stack_reader(obj)
  local cache, walked = {}, {}
  return function(e)
    if e.user_hash then
      local w = walked[e.user_hash]
      if w == nil then
        local st = unwind.read_stack(obj, e.user_hash)
        w = st and st.nr > 0 and { addrs = sym.unpack(st.ips), how = {
          dwarf = st.dwarf, fp = st.fp, end_reason = st.end_reason, no_table = st.no_table,
          fp_no_cfi = st.fp_no_cfi, fp_no_map = st.fp_no_map } } or false
        walked[e.user_hash] = w
      end
      if w then return w.addrs, w.how end
      return nil
    end
    local id = e.stack_id
    if id < 0 then return nil end
    if cache[id] == nil then
      local _, raw = obj:stack('stacks', id)
      cache[id] = raw and sym.unpack(raw) or false
    end
    return cache[id] or nil
  end
end

--- Whether an allocation stack needs the caller read at the allocator's
--- entry: a frame-pointer stack does (its walk skips the caller), a stack
--- walked from CFI is whole unless no step of it used CFI (no tables yet:
--- frame-pointer steps from the entry, which skip it as well).
function M.needs_caller(how)
  return not how or how.dwarf == 0
end

-- Symbolises entries {tgid, addrs} into frames {comm, root…leaf}, one batch per process.
local function symbolise(resolver, entries)
  local per = {}
  for i, e in ipairs(entries) do
    if e.addrs then
      local g = per[e.tgid]
      if not g then g = { stacks = {}, idx = {} }; per[e.tgid] = g end
      g.stacks[#g.stacks + 1] = e.addrs
      g.idx[#g.idx + 1] = i
    end
  end
  local names = {}
  for tgid, g in pairs(per) do
    local ok, list = pcall(resolver.user_stacks, resolver, tgid, g.stacks)
    for j, i in ipairs(g.idx) do names[i] = ok and list[j] or nil end
  end
  local out = {}
  for i, e in ipairs(entries) do
    local snap = resolver.snaps[e.tgid]
    local frames = { snap and snap.comm or ('pid ' .. e.tgid) }
    local n = names[i]
    if n then
      for j = #n, 1, -1 do frames[#frames + 1] = n[j] end
    else
      frames[#frames + 1] = '[missing user stack]'
    end
    out[i] = { frames = frames, truncated = n and #n >= M.MAX_DEPTH }
  end
  return out
end

local function counters_of(obj)
  local c = {}
  for _, e in ipairs(obj:map('counters'):read() or {}) do
    local name = M.COUNTERS[u32(e.key) + 1]
    if name then c[name] = u64(e.value) end
  end
  return c
end

--- Stops, reads the maps and returns the profile of outstanding bytes
--- (perf_manual.profilers shape, kind 'memory', unit 'bytes') with
---   .faults   the page-fault profile (kind 'faults', unit 'faults') | nil
---   .memory   { verdict, rss, by_function, fault_mappings = { {mapping,
---             faults, share} }, counters, quality, sample_every, probes, libc }
function Session:stop(vopts)
  self.last_poll = -math.huge
  self:poll()
  self.obj:detach()
  -- a process the walker met since the last poll: its mappings for the names
  if self.tables then
    for _, pid in ipairs(self.tables:poll()) do self.resolver:snapshot(pid, true) end
  end
  local obj = self.obj
  local duration = sys.now() - self.t0
  local stack = stack_reader(obj)
  local c = counters_of(obj)
  -- outstanding allocations per site
  local sites = {}
  for _, e in ipairs(obj:map('sites'):read() or {}) do
    local s = M.decode_site(e.key, e.value)
    if s.bytes > 0 then
      local raw, how = stack(s)
      s.addrs = raw and (M.needs_caller(how) and M.with_caller(raw, s.caller) or raw)
      s.with_caller = raw and #s.addrs > #raw
      s.unwind = how
      sites[#sites + 1] = s
    end
  end
  local r = self.resolver
  for _, s in ipairs(sites) do
    if not r.snaps[s.tgid] and not r.failed[s.tgid] then r:snapshot(s.tgid) end
  end
  local stacks = {}
  for i, f in ipairs(symbolise(r, sites)) do
    local s = sites[i]
    M.name_leaf(f.frames, s.kind, s.with_caller)
    stacks[#stacks + 1] = { frames = f.frames, count = s.bytes, allocs = s.allocs, pid = s.tgid,
                            truncated = f.truncated, sampled = s.sampled, unwind = s.unwind }
  end
  local st = obj:stats() or {}
  local info = obj:info() or {}
  local uw = self.tables and { mode = self.unwind_mode, tables = self.tables.stats, counters = unwind.counters(obj) }
    or { mode = 'fp' }
  local outstanding = profilers.new {
    kind = 'memory', source = 'bpf', unit = 'bytes', duration = duration, stacks = M.merge(stacks),
    lost_samples = st.lost or 0, lost_stacks = c.stack_lost or 0,
    binaries = r:binaries(), bpf_run_time_ns = info.run_time_ns, unwind = uw,
  }
  -- page faults
  local faults, regions
  if self.faults then
    local fentries = {}
    for _, e in ipairs(obj:map('faults'):read() or {}) do
      local k = M.decode_fault_key(e.key)
      k.count = u64(e.value)
      k.addrs, k.unwind = stack(k)
      fentries[#fentries + 1] = k
    end
    local fstacks = {}
    for i, f in ipairs(symbolise(r, fentries)) do
      fstacks[i] = { frames = f.frames, count = fentries[i].count, pid = fentries[i].tgid, truncated = f.truncated,
                     unwind = fentries[i].unwind }
    end
    faults = profilers.new { kind = 'faults', source = 'bpf', unit = 'faults', duration = duration,
                             stacks = M.merge(fstacks), binaries = r:binaries(), lost_stacks = c.stack_lost or 0,
                             unwind = uw }
    regions = self:fault_mappings(obj)
  end
  -- RSS: summed over the processes seen, each from its own samples
  local rss
  for _, list in pairs(self.rss) do
    local g = M.rss_growth(list)
    if g then
      if not rss then rss = { first = 0, last = 0, growth = 0, per_min = 0, seconds = 0, samples = 0 } end
      rss.first, rss.last, rss.growth = rss.first + g.first, rss.last + g.last, rss.growth + g.growth
      rss.per_min = rss.per_min + (g.per_min or 0)
      rss.seconds = math.max(rss.seconds, g.seconds)
      rss.samples = rss.samples + g.samples
    end
  end
  if rss then rss.source = '/proc/PID/status VmRSS' end
  local mem = {
    fault_mappings = regions, by_function = M.by_function(outstanding),
    rss = rss, counters = c, sample_every = self.sample_every,
    sample_min_size = self.sample_min_size, probes = util.array(self.probes), libc = self.libc,
    faults_total = faults and faults.total or nil,
  }
  mem.verdict = M.verdict(outstanding, rss, duration, vopts or self.verdict_opts)
  mem.quality = M.quality(outstanding, mem)
  outstanding.memory = mem
  outstanding.faults = faults
  outstanding.bpf_run_cnt = info.run_cnt
  obj:close()
  self.obj = nil
  return outstanding
end

-- faults per mapping, from the 1 MiB regions and the last mappings seen
function Session:fault_mappings(obj)
  local per, total = {}, 0
  local parsed = {}
  for _, e in ipairs(obj:map('fault_regions'):read() or {}) do
    local k = M.decode_fault_key(e.key)
    local n = u64(e.value)
    local maps = parsed[k.tgid]
    if maps == nil then
      maps = self.maps[k.tgid] and M.parse_all_maps(self.maps[k.tgid]) or false
      parsed[k.tgid] = maps
    end
    -- a region can straddle mappings: it is named by the one at its start
    local addr = k.stack_id * 1048576
    local label = maps and (M.mapping_of(maps, addr) or M.mapping_of(maps, addr + 1048575)) or nil
    label = label or '[unmapped at the end]'
    per[label] = (per[label] or 0) + n
    total = total + n
  end
  local list = {}
  for label, n in pairs(per) do
    list[#list + 1] = { mapping = label, faults = n, share = total > 0 and n / total or 0 }
  end
  table.sort(list, function(a, b)
    if a.faults ~= b.faults then return a.faults > b.faults end
    return a.mapping < b.mapping
  end)
  return util.array(list)
end

--- Measurement quality of a result: sampling, stacks cut short, how user
--- stacks were unwound (unwind: perf_manual.profilers.unwind_quality,
--- weighted by outstanding bytes), frees matched, maps full.
function M.quality(p, res)
  local c = res.counters or {}
  local q = p.quality
  return {
    calls = c.calls, sampled = c.sampled, frees = c.frees, frees_matched = c.frees_hit,
    sample_every = res.sample_every, sample_min_size = res.sample_min_size,
    lost_stacks = c.stack_lost, allocs_map_full = c.allocs_full, lost = p.lost_samples,
    short_stack_share = q.short_user_share, truncated_share = q.truncated_share,
    unknown_share = q.unknown_share, without_frame_pointers = q.without_frame_pointers,
    faults = c.faults, brk_bytes = c.brk_bytes, mmap_bytes = c.mmap_bytes, nested = c.nested,
    unwind = q.unwind,
  }
end

function Session:close()
  if self.obj then self.obj:close() self.obj = nil end
end

return M
