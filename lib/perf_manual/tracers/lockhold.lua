--- Lock hold tracer: how long one process's threads hold their pthread
--- mutexes and rwlocks, per lock (address), with the log2 distribution of
--- hold times and the function that held each lock longest. The futex
--- tracer (lock.lua) sees the waiters; this one sees the holder, which is
--- what the USE Mutex row's utilisation means: the share of the window the
--- lock was held.
--- Kernel side: bpf/lockhold.bpf.c, uprobes on the target's C library
--- (pthread_mutex_lock/trylock/unlock, pthread_rwlock_rdlock/wrlock/unlock).
--- Holder stacks are walked from DWARF call-frame information
--- (perf_manual.unwind) unless unwind = 'fp'.
---
---   local t = assert(lockhold.start{ pid = 1234, sample_every = 1 })
---   local r = t:read()     -- r.locks[i] = { name=, share=, count=, holder=, p50_us=, ... }
local ffi = require('ffi')
local hist = require('perf_manual.hist')
local sym = require('perf_manual.sym')
local bpf = require('perf_manual.bpf')
local base = require('perf_manual.tracers.base')
local lock = require('perf_manual.tracers.lock')
local memory = require('perf_manual.profilers.memory')
local util = require('perf_manual.util')
local unwind = require('perf_manual.unwind')

local M = {}

M.name = 'lockhold'
M.event = 'lockhold'
-- uprobes on every process's lock calls system-wide would slow the whole host
M.needs_target = 'its uprobes trap every lock call of the processes they cover'
M.summary = 'pthread mutex/rwlock hold time per lock and holder function (uprobes on the C library; a process, '
  .. 'a cgroup or a command)'

ffi.cdef [[
struct pm_lockhold_key { uint64_t addr; uint32_t tgid, kind; };
struct pm_lockhold_stat { uint64_t slots[32]; uint64_t count, total_ns, max_ns, sampled; };
struct pm_lockhold_site_key { uint64_t addr; uint32_t tgid; int32_t stack_id; uint64_t ip; uint64_t user_hash; };
struct pm_lockhold_site { uint64_t count, total_ns; };
struct pm_lockhold_held_key { uint64_t addr; uint32_t tid, pad; };
struct pm_lockhold_held { uint64_t ts, ip; int32_t stack_id; uint32_t kind; uint64_t weight, user_hash; };
]]

M.SLOTS = 32
-- enum lockhold_kind
M.KINDS = { 'mutex', 'read', 'write' }
-- enum lockhold_counter
M.COUNTERS = { 'calls', 'sampled', 'failed', 'held_full', 'stack_lost' }
-- C library call -> entry program, in attach order; every lock call shares
-- the return program, every unlock the unlock program
M.PROBES = {
  { 'pthread_mutex_lock', 'mutex_enter' },
  { 'pthread_mutex_trylock', 'mutex_enter' },
  { 'pthread_rwlock_rdlock', 'rdlock_enter' },
  { 'pthread_rwlock_wrlock', 'wrlock_enter' },
}
M.UNLOCKS = { 'pthread_mutex_unlock', 'pthread_rwlock_unlock' }
-- lock calls per second above which start{ sample_every = 'auto' } samples:
-- about the rate where the measured part (maps, stack walk) passes 1% of a CPU
M.AUTO_RATE = 20000

local function cast(ctype, b, what)
  assert(#b == ffi.sizeof(ctype), string.format('lockhold: bad %s size %d', what, #b))
  return ffi.cast('const ' .. ctype .. ' *', b)
end

function M.sizeof()
  local t = {}
  for _, n in ipairs({ 'key', 'stat', 'site_key', 'site', 'held_key', 'held' }) do
    t[n] = ffi.sizeof('struct pm_lockhold_' .. n)
  end
  return t
end

function M.decode_lock(kb, vb)
  local k = cast('struct pm_lockhold_key', kb, 'lock key')
  local v = cast('struct pm_lockhold_stat', vb, 'lock value')
  local s = { addr = tonumber(k.addr), tgid = k.tgid, kind = M.KINDS[k.kind + 1] or 'other',
              count = tonumber(v.count), total_ns = tonumber(v.total_ns), max_ns = tonumber(v.max_ns),
              sampled = tonumber(v.sampled), slots = {} }
  for i = 0, M.SLOTS - 1 do s.slots[i + 1] = tonumber(v.slots[i]) end
  return s
end

function M.decode_site(kb, vb)
  local k = cast('struct pm_lockhold_site_key', kb, 'site key')
  local v = cast('struct pm_lockhold_site', vb, 'site value')
  return { addr = tonumber(k.addr), tgid = k.tgid, stack_id = k.stack_id, ip = tonumber(k.ip),
           user_hash = k.user_hash ~= 0 and kb:sub(25, 32) or nil,
           count = tonumber(v.count), total_ns = tonumber(v.total_ns) }
end

--- A hold still in progress at time now_ns (the `holds` map): counted up
--- to now from the later of its start and since_ns, as a lock entry and a
--- site entry of no completed hold (open = the holds it stands for).
function M.decode_open(kb, vb, tgid, now_ns, since_ns)
  local k = cast('struct pm_lockhold_held_key', kb, 'held key')
  local v = cast('struct pm_lockhold_held', vb, 'held value')
  local ts = tonumber(v.ts)
  local dt = math.max(0, now_ns - math.max(ts, since_ns or 0))
  local w = tonumber(v.weight)
  local slots = {}
  for i = 1, M.SLOTS do slots[i] = 0 end
  local l = { addr = tonumber(k.addr), tgid = tgid, kind = M.KINDS[v.kind + 1] or 'other', count = 0,
              total_ns = dt * w, max_ns = dt, sampled = 0, slots = slots, open = w, open_ns = dt }
  local site = { addr = l.addr, tgid = tgid, stack_id = v.stack_id, ip = tonumber(v.ip), count = 0,
                 total_ns = dt * w, user_hash = v.user_hash ~= 0 and vb:sub(33, 40) or nil }
  return l, site
end

local function by_total(a, b)
  if a.total_ns ~= b.total_ns then return a.total_ns > b.total_ns end
  return (a.addr or 0) < (b.addr or 0)
end

--- Turns decoded lists into the result: per lock (an address taken in
--- one or more ways: mutex, read, write) the held share of the window,
--- count, mean/p50/p99/max, the merged histogram and its holder sites
--- sorted by held time. d = { locks=, sites=, counters= }.
function M.analyse(d, seconds)
  local r = { locks = {}, counters = d.counters or {} }
  local by_addr = {}
  for _, s in ipairs(d.locks or {}) do
    local key = s.tgid .. '/' .. s.addr
    local l = by_addr[key]
    if not l then
      l = { addr = s.addr, tgid = s.tgid, kinds = {}, count = 0, total_ns = 0, max_ns = 0, sampled = 0,
            slots = {}, sites = {}, open = 0, seen_kind = {} }
      for i = 1, M.SLOTS do l.slots[i] = 0 end
      by_addr[key] = l
      r.locks[#r.locks + 1] = l
    end
    if not l.seen_kind[s.kind] then l.seen_kind[s.kind] = true; l.kinds[#l.kinds + 1] = s.kind end
    l.open = l.open + (s.open or 0)
    l.count, l.total_ns, l.sampled = l.count + s.count, l.total_ns + s.total_ns, l.sampled + s.sampled
    l.max_ns = math.max(l.max_ns, s.max_ns)
    for i = 1, M.SLOTS do l.slots[i] = l.slots[i] + (s.slots[i] or 0) end
  end
  -- a stack holding twice (closed holds and one still open) is one site
  local by_site = {}
  for _, s in ipairs(d.sites or {}) do
    local l = by_addr[s.tgid .. '/' .. s.addr]
    local sk = s.tgid .. '/' .. s.addr .. '/' .. s.stack_id .. '/' .. s.ip .. '/' .. (s.user_hash or '')
    local have = by_site[sk]
    if have then
      have.count, have.total_ns = have.count + s.count, have.total_ns + s.total_ns
    elseif l then
      by_site[sk] = s
      l.sites[#l.sites + 1] = s
    end
  end
  for _, l in ipairs(r.locks) do
    l.seen_kind = nil
    table.sort(l.kinds)
    l.kind = table.concat(l.kinds, '+')
    l.mean_ns = l.count > 0 and l.total_ns / l.count or nil
    -- read holds overlap: their sum can pass the window
    l.share = seconds > 0 and l.total_ns / (seconds * 1e9) or nil
    local b = hist.log2_buckets(l.slots)
    local mx = hist.fitting_max(b, math.floor(l.max_ns / 1e3))
    l.p50_us, l.p99_us = hist.quantile(b, 0.5, nil, mx), hist.quantile(b, 0.99, nil, mx)
    table.sort(l.sites, by_total)
    for _, s in ipairs(l.sites) do s.share = l.total_ns > 0 and s.total_ns / l.total_ns or nil end
  end
  table.sort(r.locks, by_total)
  local c = r.counters
  r.calls, r.sampled = c.calls, c.sampled
  return r
end

--- The holder of a site: the function the lock call returned into (the
--- innermost frame outside the C library).
local function holder_of(frames)
  for _, f in ipairs(frames or {}) do
    if not (f:match('^_*pthread_') or f:match('^__GI_') or f:match('^%[')) then return f end
  end
end

--- Names each lock's holder sites and the busiest locks (the data symbol
--- of the address, as the futex tracer names a futex), while the process
--- is alive. Adds site.frames, site.holder, lock.holder (the heaviest
--- site's), lock.name.
function M.name_all(res, get_stack, resolver, top, early_names)
  local r = resolver or sym.new()
  for i, l in ipairs(res.locks) do
    if i > (top or 10) then break end
    for _, s in ipairs(l.sites) do
      local addrs = (s.user_hash or s.stack_id >= 0) and get_stack(s.stack_id, s) or {}
      if #addrs == 0 and s.ip ~= 0 then addrs = { s.ip } end
      s.addrs = addrs
      local ok, names = pcall(r.user, r, l.tgid, addrs)
      if ok then s.frames, s.holder = names, holder_of(names) end
    end
    -- sites differing in the deeper frames only may share a holder
    local per = {}
    for _, s in ipairs(l.sites) do
      if s.holder then per[s.holder] = (per[s.holder] or 0) + s.total_ns end
    end
    local best
    for name, ns in pairs(per) do
      if not best or ns > per[best] or (ns == per[best] and name < best) then best = name end
    end
    l.holder = best
    l.holder_share = best and l.total_ns > 0 and per[best] / l.total_ns or nil
    local f = { uaddr = l.addr, tgid = l.tgid }
    lock.name_locks({ futex = { f } })
    -- a process gone by now (a launched command): the name taken while it ran
    local early = early_names and early_names[l.tgid .. ':' .. l.addr]
    if not f.mapping and early then f = early end
    l.symbol, l.section, l.mapping, l.name = f.symbol, f.section, f.mapping, f.name
  end
end

-- Live tracer ----------------------------------------------------------------

local Hold = setmetatable({}, { __index = base.Tracer })
Hold.__index = Hold
M.Hold = Hold

local function read_text(path)
  local f = io.open(path)
  if not f then return nil end
  local t = f:read('*a')
  f:close()
  return t
end

ffi.cdef [[ void *dlsym(void *handle, const char *symbol); ]]

--- File offset of C library function fn in `libc` when this process maps
--- the same file (dev, inode), through the dynamic linker, or nil. glibc
--- 2.34+ exports pthread_mutex_trylock and the rwlock calls under two
--- versions at one address, which libbpf's by-name lookup refuses as
--- ambiguous.
function M.own_offset(fn, libc)
  local pstat = require('posix.sys.stat')
  local b = pstat.stat(libc)
  local p = b and ffi.C.dlsym(nil, fn)
  if p == nil then return nil end
  local addr = tonumber(ffi.cast('uintptr_t', p))
  local text = read_text('/proc/self/maps') or ''
  for line in text:gmatch('[^\n]+') do
    local lo, hi, off, path = line:match('^(%x+)%-(%x+) %S+ (%x+) %S+ %d+%s+(/%S+)$')
    if lo and addr >= tonumber(lo, 16) and addr < tonumber(hi, 16) then
      local a = pstat.stat(path)
      if not (a and a.st_dev == b.st_dev and a.st_ino == b.st_ino) then return nil end
      return addr - tonumber(lo, 16) + tonumber(off, 16)
    end
  end
end

--- Starts tracing one process (pid: the uprobes go on the C library it
--- maps, for it alone) or a cgroup (cgroup: its processes, now and to come,
--- a launched command's among them; the uprobes go on this host's C library
--- for every process, and BPF keeps the cgroup's calls: the others pay the
--- trap and nothing more), sample_every (measure every Nth lock call per CPU,
--- default 1; raised under the budget, see over_budget), max_call_rate
--- (detach above it, default M.MAX_CALL_RATE), libc (path, overrides the lookup), stats,
--- unwind (holder stacks: "auto" (default), "fp", "dwarf": perf_manual.unwind).
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  local mode, merr = unwind.check_mode(opts.unwind)
  if not mode then return nil, merr end
  local pid = opts.pid or opts.tgid
  if not pid and not opts.cgroup then
    return nil, 'needs a process or a cgroup (--pid, --target, -- COMMAND): the uprobes go on its C library'
  end
  local cfg, cerr = base.filter_config { pid = pid, cgroup = not pid and opts.cgroup or nil }
  if not cfg then return nil, cerr end
  local libc = opts.libc
  if not libc then
    local owner = pid or 'self'
    local text = read_text('/proc/' .. owner .. '/maps')
    if not text then return nil, 'cannot read /proc/' .. owner .. '/maps' end
    libc = memory.libc_path(text)
    if not libc then return nil, 'process ' .. owner .. ' maps no C library (libc.so.6)' end
    if pid then libc = '/proc/' .. pid .. '/root' .. libc end
  end
  local every = math.max(1, math.floor(tonumber(opts.sample_every) or 1))
  local obj, err = bpf.open('lockhold')
  if not obj then return nil, err end
  obj:set_config(cfg)
  -- a walked stack needs no stack map
  if mode ~= 'fp' then obj:resize('stacks', 1) end
  unwind.prepare(obj, mode)
  local ok, lerr = obj:load { stats = false }
  if not ok then obj:close() return nil, lerr end
  -- the target's tables before the first hold; a thread of new code (exec,
  -- dlopen) gets them on poll (until then: frame pointers)
  local tables
  if mode ~= 'fp' then
    tables = unwind.tables(obj, mode)
    if pid then tables:add(pid) end
  end
  obj:map('rate'):update(0, ffi.string(ffi.new('uint64_t[1]', every), 8))
  local attached, missing = {}, {}
  -- the return and unlock probes first: a hold whose start is seen must
  -- see its end
  local function attach(prog, fn, ret)
    local at = { kind = 'uprobe', binary = libc, func = fn, pid = pid or -1, retprobe = ret }
    local off = M.own_offset(fn, libc)
    if off then at.func, at.offset = nil, off end
    local aok, aerr = obj:attach_probe(prog, at)
    if not aok then missing[fn] = aerr end
    return aok, aerr
  end
  for _, fn in ipairs(M.UNLOCKS) do attach('unlock_enter', fn, false) end
  for _, pr in ipairs(M.PROBES) do
    if attach('lock_return', pr[1], true) then
      if attach(pr[2], pr[1], false) then attached[#attached + 1] = pr[1] end
    end
  end
  if missing.pthread_mutex_lock or missing.pthread_mutex_unlock then
    obj:close()
    return nil, tostring(missing.pthread_mutex_lock or missing.pthread_mutex_unlock)
  end
  local t = base.Tracer.new('lockhold', obj, { attach_path = 'uprobe', stats = opts.stats })
  t.target, t.libc, t.sample_every, t.probes, t.missing = pid, libc, every, attached, missing
  t.cgroup = not pid and opts.cgroup or nil
  t.max_call_rate = opts.max_call_rate
  t.resolver = sym.new()
  if pid then pcall(t.resolver.snapshot, t.resolver, pid) end
  t.tables, t.unwind_mode = tables, mode
  t.last_scan, t.names = 0, {}
  setmetatable(t, Hold)
  base.poll_while_live(t)
  return t
end

function Hold:close()
  base.unpoll(self)
  return base.Tracer.close(self)
end

-- the process a thread belongs to (a cgroup's holds are keyed by thread)
local function tgid_of(tid)
  local st = read_text('/proc/' .. tid .. '/status')
  return st and tonumber(st:match('\nTgid:%s*(%d+)')) or tid
end

--- Between reads: the unwinder's tables for processes new to the walker,
--- and, for a cgroup, a symbol snapshot of each process that took a lock
--- (once a second), so a launched command that exits before the end still
--- has names.
function Hold:poll()
  if self.closed then return end
  if self.tables then
    for _, p in ipairs(self.tables:poll()) do pcall(self.resolver.snapshot, self.resolver, p, true) end
  end
  if not self.cgroup then return end
  local now = require('perf_manual.sys').now()
  if now - self.last_scan < 1 then return end
  self.last_scan = now
  local r = self.resolver
  local named = 0
  for _, e in ipairs(self.obj:map('locks'):read() or {}) do
    local k = cast('struct pm_lockhold_key', e.key, 'lock key')
    local tg, addr = tonumber(k.tgid), tonumber(k.addr)
    if not r.snaps[tg] and not r.failed[tg] then pcall(r.snapshot, r, tg) end
    local key = tg .. ':' .. addr
    if self.names[key] == nil and named < 64 then
      named = named + 1
      local f = { uaddr = addr, tgid = tg }
      lock.name_locks({ futex = { f } })
      self.names[key] = f.mapping and f or false
    end
  end
end

local function u32(b) return ffi.cast('const uint32_t *', b)[0] end
local function u64(b) return tonumber(ffi.cast('const uint64_t *', b)[0]) end

--- Sampling under the budget: instead of detaching when its programs pass
--- pct% of a CPU, the tracer measures 4x fewer lock calls (up to 1 in
--- MAX_EVERY), judged on the cost since the last change; it detaches only
--- when that is not enough.
M.MAX_EVERY = 1024
Hold.RAISE_MIN_S = 1.0

--- Lock calls per second above which the tracer detaches whatever the
--- sampling: every call traps into the kernel (about 14 us a probe hit on a
--- 2-vCPU VM, 1-3 us on bare metal), a cost the target pays.
M.MAX_CALL_RATE = 20000

function Hold:over_budget(pct)
  local q = self:quality()
  if q.elapsed_s < base.Tracer.BUDGET_MIN_S then return false end
  local calls = 0
  for _, e in ipairs(self.obj:map('counters'):read() or {}) do
    if ffi.cast('const uint32_t *', e.key)[0] == 0 then calls = tonumber(ffi.cast('const uint64_t *', e.value)[0]) end
  end
  local rate = calls / math.max(q.elapsed_s, 1e-9)
  if rate > (self.max_call_rate or M.MAX_CALL_RATE) then
    return true, string.format('lockhold tracer detached: the target makes %.0f lock calls/s, each trapping into the '
      .. 'kernel at a uprobe (limit %d/s)', rate, self.max_call_rate or M.MAX_CALL_RATE)
  end
  if not q.bpf_run_time_ns then return false end
  local last = self.raised or { ns = 0, s = 0 }
  local dt = q.elapsed_s - last.s
  if dt < (self.raised and Hold.RAISE_MIN_S or base.Tracer.BUDGET_MIN_S) then return false end
  local recent = (q.bpf_run_time_ns - last.ns) / (dt * 1e9) * 100
  if recent <= pct then return false end
  if self.sample_every >= M.MAX_EVERY then
    return true, string.format('lockhold tracer detached: its BPF programs used %.1f%% of one CPU measuring 1 lock '
      .. 'call in %d (budget %g%%)', recent, self.sample_every, pct)
  end
  self.sample_every = math.min(M.MAX_EVERY, self.sample_every * 4)
  self.obj:map('rate'):update(0, ffi.string(ffi.new('uint64_t[1]', self.sample_every), 8))
  self.raised = { ns = q.bpf_run_time_ns, s = q.elapsed_s }
  self.sampling_notes = self.sampling_notes or {}
  self.sampling_notes[#self.sampling_notes + 1] = string.format('after %.1f s: %.1f%% of a CPU, now measuring '
    .. '1 lock call in %d', q.elapsed_s, recent, self.sample_every)
  return false
end

--- Reads the tables: the result since start (or the last clearing read).
function Hold:read(opts)
  opts = opts or {}
  local now = require('perf_manual.sys').now()
  local res
  if self.closed then
    res = self.final or M.analyse({}, 0)
  else
    -- names and tables first: a clearing read empties the maps the scan reads
    self.last_scan = 0
    self:poll()
    local d = { locks = {}, sites = {}, counters = {} }
    for _, e in ipairs(assert(self.obj:map('locks'):read{ clear = opts.clear })) do
      d.locks[#d.locks + 1] = M.decode_lock(e.key, e.value)
    end
    for _, e in ipairs(assert(self.obj:map('sites'):read{ clear = opts.clear })) do
      d.sites[#d.sites + 1] = M.decode_site(e.key, e.value)
    end
    -- holds still in progress: counted up to now (a lock held across the
    -- whole window is the busiest one)
    local now_ns = require('perf_manual.sys').monotonic_ns()
    for _, e in ipairs(assert(self.obj:map('holds'):read())) do
      local tid = tonumber(cast('struct pm_lockhold_held_key', e.key, 'held key').tid)
      local l, site = M.decode_open(e.key, e.value, self.target or tgid_of(tid), now_ns, self.since * 1e9)
      d.locks[#d.locks + 1] = l
      d.sites[#d.sites + 1] = site
    end
    for _, e in ipairs(assert(self.obj:map('counters'):read())) do
      local name = M.COUNTERS[u32(e.key) + 1]
      if name then d.counters[name] = u64(e.value) end
    end
    res = M.analyse(d, self:attached_seconds(now))
    local obj = self.obj
    local walked = unwind.stack_reader(obj)
    M.name_all(res, function(id, s)
      if not s.user_hash then return obj:stack('stacks', id) end
      local st = walked(s.user_hash)
      s.unwind = st and { dwarf = st.dwarf, fp = st.fp, end_reason = st.end_reason, no_table = st.no_table,
                          fp_no_cfi = st.fp_no_cfi, fp_no_map = st.fp_no_map } or nil
      return st and sym.unpack(st.ips) or {}
    end, self.resolver, nil, self.names)
    self.unwind_q = self:_unwind_quality(res)
    -- raw key bytes: not for JSON
    for _, l in ipairs(res.locks) do for _, s in ipairs(l.sites) do s.user_hash = nil end end
  end
  res.sample_every, res.probes, res.target = self.sample_every, self.probes, self.target
  res.sampling_notes = self.sampling_notes
  res.missing = {}
  for fn in pairs(self.missing or {}) do res.missing[#res.missing + 1] = fn end
  table.sort(res.missing)
  self:finish_read(res, now, opts)
  res.quality.unwind = self.unwind_q
  -- the target pays a kernel trap at every probe hit, sampled or not
  -- (docs/tracers/lock.md, Cost and sampling)
  res.calls_per_s = res.calls and res.seconds > 0 and res.calls / res.seconds or nil
  return res
end

-- how the named holder stacks were walked, weighted by holds
-- (perf_manual.unwind.summary); nil with frame pointers
function Hold:_unwind_quality(res)
  if not self.tables then return nil end
  local list = {}
  for _, l in ipairs(res.locks) do
    for _, s in ipairs(l.sites) do
      if s.unwind then list[#list + 1] = { count = math.max(s.count, 1), unwind = s.unwind } end
    end
  end
  local q = unwind.summary(list)
  q.mode, q.tables, q.counters = self.unwind_mode, self.tables.stats, unwind.counters(self.obj)
  return q
end

--- One sentence for the Mutex row: 'g_lock (app .bss) held 82% of the
--- time by `worker`', or nil when nothing was held.
function M.sentence(l)
  if not l or not l.share then return nil end
  return string.format('%s held %.0f%% of the time%s', l.name or lock.hex(l.addr), 100 * math.min(1, l.share),
    l.holder and string.format(' by `%s`', l.holder) or '')
end

--- JSON-ready copy.
function M.to_json(res)
  local copy = base.json_copy(res, { 'probes', 'missing', 'sampling_notes' })
  local list = {}
  for i, l in ipairs(res.locks or {}) do
    local c = base.json_copy(l, { 'slots', 'kinds' })
    c.addr = lock.hex(l.addr)
    local st = {}
    for j, s in ipairs(l.sites) do
      st[j] = { count = s.count, total_ns = s.total_ns, share = s.share, stack_id = s.stack_id, holder = s.holder,
                addrs = util.array(s.addrs or {}), frames = s.frames and util.array(s.frames) }
    end
    c.sites = util.array(st)
    list[i] = c
  end
  copy.locks = util.array(list)
  return copy
end

return M
