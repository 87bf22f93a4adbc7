--- Lock tracer: user-space futex waits per (tgid, futex address) and per
--- thread, with the waiting user stacks when asked, and kernel lock
--- contention (lock:contention_begin/end) per lock address. Gives the USE
--- method's Mutex row: utilisation (share of thread-time spent waiting),
--- saturation (waiters) and errors (futex timeouts, EDEADLK, EOWNERDEAD).
--- Kernel side: bpf/lock.bpf.c, structs mirrored from bpf/lock.h.
---
---   local t = assert(lock.start{ pid = 1234, stacks = true })
---   local r = t:read{ clear = true }      -- r.futex, r.threads, r.kernel, r.use
---   -- the text of a result is perf_manual.report.tracers' job, not this module's
local sym = require('perf_manual.sym')
local hist = require('perf_manual.hist')
local waits_c = require('perf_manual.collectors.waits')
local ffi = require('ffi')
local bit = require('bit')
local base = require('perf_manual.tracers.base')
local util = require('perf_manual.util')
local unwind = require('perf_manual.unwind')

local M = {}

M.name = 'lock'
M.event = 'lock'
M.summary = 'futex waits per address and thread, kernel lock contention (USE Mutex row)'
-- each half needs its own tracepoints; a half that is missing is reported
-- as unavailable and the other half runs
M.tracepoints = {
  futex = { 'syscalls/sys_enter_futex', 'syscalls/sys_exit_futex' },
  futex_raw = { 'raw_syscalls/sys_enter', 'raw_syscalls/sys_exit' },
  kernel = { 'lock/contention_begin', 'lock/contention_end' },
}

ffi.cdef [[
struct pm_lock_stat {
  uint64_t slots[32];
  uint64_t count, total_ns, max_ns;
  uint64_t results[7];
};
struct pm_lock_kkey { uint64_t addr; uint32_t flags, pad; };
struct pm_lock_fkey { uint64_t uaddr; uint32_t tgid, kind; };
struct pm_lock_tkey { uint32_t tgid, pid; };
struct pm_lock_tval { uint64_t count, total_ns, max_ns, errors; char comm[16]; };
struct pm_lock_skey { uint64_t uaddr, caller; uint32_t tgid; int32_t stack_id; uint64_t user_hash; };
struct pm_lock_sval { uint64_t count, total_ns; };
struct pm_lock_wkey { uint64_t uaddr, caller; uint32_t tgid, pid; int32_t stack_id; uint32_t op;
                      uint64_t user_hash; };
struct pm_lock_wval { uint64_t count; char comm[16]; };
]]

M.SLOTS = 32
-- enum lock_outcome, in order
M.RESULTS = { 'ok', 'eagain', 'etimedout', 'eintr', 'edeadlk', 'eownerdead', 'other' }
-- wait style of a futex (bpf/lock.h enum lock_fkind): 'lock' for mutex-style
-- waits, 'wait' for condition variables and semaphores (waiting for work)
M.FUTEX_KINDS = { 'lock', 'wait' }
-- outcomes that are errors for the USE method (EAGAIN and EINTR are normal)
M.ERRORS = { etimedout = true, edeadlk = true, eownerdead = true, other = true }
-- enum lock_counter
M.COUNTERS = { 'futex_waits', 'klock_waits', 'stack_errors', 'cur_waiters', 'max_waiters', 'futex_wakes' }
-- futex commands the wake side counts
M.WAKE_OPS = { [1] = 'wake', [5] = 'wake_op', [7] = 'unlock_pi', [10] = 'wake_bitset' }

local function u64(x) return tonumber(x) end

local function cast(ctype, b, what)
  assert(#b == ffi.sizeof(ctype), string.format('lock: bad %s size %d', what, #b))
  return ffi.cast('const ' .. ctype .. ' *', b)
end

function M.sizeof()
  local t = {}
  for _, n in ipairs({ 'stat', 'kkey', 'fkey', 'tkey', 'tval', 'skey', 'sval', 'wkey', 'wval' }) do
    t[n] = ffi.sizeof('struct pm_lock_' .. n)
  end
  return t
end

local function decode_stat(vb)
  local v = cast('struct pm_lock_stat', vb, 'stat')
  local s = { count = u64(v.count), total_ns = u64(v.total_ns), max_ns = u64(v.max_ns),
              slots = {}, results = {} }
  for i = 0, M.SLOTS - 1 do s.slots[i + 1] = u64(v.slots[i]) end
  for i, name in ipairs(M.RESULTS) do s.results[name] = u64(v.results[i - 1]) end
  return s
end

--- Kernel lock kind from the contention_begin flags (LCB_F_*).
function M.lock_kind(flags)
  local spin, read, write = bit.band(flags, 1) ~= 0, bit.band(flags, 2) ~= 0, bit.band(flags, 4) ~= 0
  local rt, percpu, mutex = bit.band(flags, 8) ~= 0, bit.band(flags, 16) ~= 0, bit.band(flags, 32) ~= 0
  local rw = read and ':read' or write and ':write' or ''
  if percpu then return 'percpu-rwsem' .. rw end
  if mutex then return (rt and 'rtmutex' or 'mutex') .. (spin and ':spin' or '') end
  if rt then return 'rtmutex' end
  if read or write then return (spin and 'rwlock' or 'rwsem') .. rw end
  if spin then return 'spinlock' end
  return 'lock'
end

function M.decode_futex(kb, vb)
  local k = cast('struct pm_lock_fkey', kb, 'futex key')
  local s = decode_stat(vb)
  s.uaddr, s.tgid = u64(k.uaddr), k.tgid
  s.kind = M.FUTEX_KINDS[k.kind] or 'other'
  return s
end

function M.decode_klock(kb, vb)
  local k = cast('struct pm_lock_kkey', kb, 'klock key')
  local s = decode_stat(vb)
  -- kernel addresses pass 2^53: kept exact as a hex string
  s.addr, s.flags, s.kind = '0x' .. bit.tohex(k.addr), k.flags, M.lock_kind(k.flags)
  return s
end

function M.decode_thread(kb, vb)
  local k = cast('struct pm_lock_tkey', kb, 'thread key')
  local v = cast('struct pm_lock_tval', vb, 'thread value')
  return { tgid = k.tgid, pid = k.pid, comm = ffi.string(v.comm), count = u64(v.count),
           total_ns = u64(v.total_ns), max_ns = u64(v.max_ns), errors = u64(v.errors) }
end

-- keys recorded before user stacks could be walked from CFI lack user_hash
local function widen(kb, ctype)
  local want = ffi.sizeof(ctype)
  if #kb == want - 8 then return kb .. string.rep('\0', 8) end
  return kb
end

local function hash_of(k, kb, at)
  return k.user_hash ~= 0 and kb:sub(at, at + 7) or nil
end

function M.decode_stack(kb, vb)
  kb = widen(kb, 'struct pm_lock_skey')
  local k = cast('struct pm_lock_skey', kb, 'stack key')
  local v = cast('struct pm_lock_sval', vb, 'stack value')
  return { uaddr = u64(k.uaddr), tgid = k.tgid, stack_id = k.stack_id,
           caller = k.caller ~= 0 and u64(k.caller) or nil, user_hash = hash_of(k, kb, 25),
           count = u64(v.count), total_ns = u64(v.total_ns) }
end

function M.decode_waker(kb, vb)
  kb = widen(kb, 'struct pm_lock_wkey')
  local k = cast('struct pm_lock_wkey', kb, 'waker key')
  local v = cast('struct pm_lock_wval', vb, 'waker value')
  return { uaddr = u64(k.uaddr), tgid = k.tgid, pid = k.pid, stack_id = k.stack_id,
           caller = k.caller ~= 0 and u64(k.caller) or nil, op = M.WAKE_OPS[k.op] or tostring(k.op),
           user_hash = hash_of(k, kb, 33),
           comm = ffi.string(v.comm), count = u64(v.count) }
end

--- Address as printed in tables: 0x7f....
function M.hex(addr)
  if type(addr) == 'string' then return addr end
  return string.format('0x%x', addr)
end

local function by_total(a, b)
  if a.total_ns ~= b.total_ns then return a.total_ns > b.total_ns end
  return tostring(a.uaddr or a.addr or a.pid or 0) < tostring(b.uaddr or b.addr or b.pid or 0)
end

--- Turns decoded tables into the tracer's result.
---@param d table { futexes=, klocks=, threads=, stacks=, counters= } decoded lists
---@param seconds number length of the interval
---@param nthreads number? threads of the target (nil: the threads seen waiting)
function M.analyse(d, seconds, nthreads)
  local r = { futex = {}, kernel = {}, threads = {} }
  local ftotal, fwaits = 0, 0
  local errors = { etimedout = 0, edeadlk = 0, eownerdead = 0, other = 0 }
  local by_futex = {}
  for _, f in ipairs(d.futexes or {}) do
    f.mean_ns = f.count > 0 and f.total_ns / f.count or nil
    f.stacks = {}
    ftotal = ftotal + f.total_ns
    fwaits = fwaits + f.count
    for name in pairs(errors) do errors[name] = errors[name] + (f.results[name] or 0) end
    r.futex[#r.futex + 1] = f
    local key = f.tgid .. '/' .. f.uaddr
    if not by_futex[key] or f.kind == 'lock' then by_futex[key] = f end
  end
  for _, f in ipairs(r.futex) do
    f.share = ftotal > 0 and f.total_ns / ftotal or nil
    -- the wait-time distribution: p50/p99 from the log2 histogram (us)
    local b = hist.log2_buckets(f.slots)
    local mx = hist.fitting_max(b, f.max_ns and math.floor(f.max_ns / 1e3))
    f.p50_us, f.p99_us = hist.quantile(b, 0.5, nil, mx), hist.quantile(b, 0.99, nil, mx)
    f.wakes, f.wakers, f.wake_sites = 0, {}, {}
  end
  table.sort(r.futex, by_total)
  -- the wake side: who releases each futex (per thread) and from where (per
  -- call site, with stacks); wakes of an address nobody waited on in the
  -- interval only count in the total
  local wakes, per_thread, per_site = 0, {}, {}
  for _, w in ipairs(d.wakers or {}) do
    wakes = wakes + w.count
    local f = by_futex[w.tgid .. '/' .. w.uaddr]
    if f then
      f.wakes = f.wakes + w.count
      local tk = f.tgid .. '/' .. f.uaddr .. '/' .. w.pid
      local t = per_thread[tk]
      if not t then
        t = { tgid = w.tgid, pid = w.pid, comm = w.comm, count = 0 }
        per_thread[tk] = t
        f.wakers[#f.wakers + 1] = t
      end
      t.count = t.count + w.count
      if w.caller or w.stack_id >= 0 then
        local sk = f.tgid .. '/' .. f.uaddr .. '/' .. tostring(w.caller) .. '/' .. w.stack_id
        local site = per_site[sk]
        if not site then
          site = { caller = w.caller, stack_id = w.stack_id, addrs = w.addrs, count = 0, threads = 0 }
          per_site[sk] = site
          f.wake_sites[#f.wake_sites + 1] = site
        end
        site.count, site.threads = site.count + w.count, site.threads + 1
      end
    end
  end
  local function by_count(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return (a.pid or a.stack_id or 0) < (b.pid or b.stack_id or 0)
  end
  for _, f in ipairs(r.futex) do
    table.sort(f.wakers, by_count)
    table.sort(f.wake_sites, by_count)
  end
  r.futex_wakes = wakes
  for _, s in ipairs(d.stacks or {}) do
    local f = by_futex[s.tgid .. '/' .. s.uaddr]
    if f then f.stacks[#f.stacks + 1] = s end
  end
  for _, f in ipairs(r.futex) do table.sort(f.stacks, by_total) end

  for _, t in ipairs(d.threads or {}) do
    t.mean_ns = t.count > 0 and t.total_ns / t.count or nil
    t.wait_share = seconds > 0 and math.min(1, t.total_ns / (seconds * 1e9)) or nil
    r.threads[#r.threads + 1] = t
  end
  table.sort(r.threads, by_total)

  local ktotal = 0
  for _, k in ipairs(d.klocks or {}) do
    k.mean_ns = k.count > 0 and k.total_ns / k.count or nil
    ktotal = ktotal + k.total_ns
    r.kernel[#r.kernel + 1] = k
  end
  table.sort(r.kernel, by_total)

  r.futex_wait_ns, r.futex_waits, r.kernel_wait_ns = ftotal, fwaits, ktotal
  -- USE Mutex row. Utilisation: share of the threads' time spent waiting
  -- (the only lock "busy" signal visible without instrumenting the holder).
  -- Saturation: mean waiters over the interval (Little's law: total wait /
  -- elapsed) and the largest number of simultaneous waiters seen.
  local basis = nthreads and 'threads of the target' or 'threads seen waiting'
  local n = nthreads or #r.threads
  local c = d.counters or {}
  local total_errors = 0
  for _, v in pairs(errors) do total_errors = total_errors + v end
  r.use = {
    utilisation = (seconds > 0 and n > 0) and math.min(1, ftotal / (n * seconds * 1e9)) or nil,
    utilisation_basis = string.format('%d %s', n, basis),
    saturation = {
      mean_waiters = seconds > 0 and ftotal / (seconds * 1e9) or nil,
      max_waiters = c.max_waiters,
    },
    errors = { total = total_errors, by_kind = errors },
  }
  return r
end

-- Live tracer ----------------------------------------------------------------

local Lock = setmetatable({}, { __index = base.Tracer })
Lock.__index = Lock

local FUTEX_PROGS = { tp = { 'futex_enter_tp', 'futex_exit_tp' }, raw_tp = { 'futex_enter_raw', 'futex_exit_raw' } }
local KLOCK_PROGS = { tp_btf = { 'klock_begin_btf', 'klock_end_btf' }, raw_tp = { 'klock_begin_raw', 'klock_end_raw' } }

local function has_all(tps)
  for _, tp in ipairs(tps) do
    if base.tracepoint_exists(tp) == false then return false, tp:gsub('/', ':', 1) end
  end
  return true
end

--- Program sets to try, best first, for the halves the kernel has: futex on
--- syscalls:sys_*_futex (tp) or raw_syscalls (raw_tp), kernel locks on
--- tp_btf or raw_tp. Returns variants and the notes on what is missing.
function M.plan(want_futex, want_kernel, exists, prefer_raw)
  exists = exists or has_all
  local notes = {}
  local futex_kinds, klock_kinds = {}, {}
  if want_futex then
    if exists(M.tracepoints.futex) then futex_kinds[#futex_kinds + 1] = 'tp' end
    if exists(M.tracepoints.futex_raw) then futex_kinds[#futex_kinds + 1] = 'raw_tp' end
    if #futex_kinds == 0 then notes[#notes + 1] = base.unavailable('syscalls:sys_enter_futex (futex waits)') end
  end
  if want_kernel then
    local ok, what = exists(M.tracepoints.kernel)
    if ok then klock_kinds = prefer_raw and { 'raw_tp', 'tp_btf' } or { 'tp_btf', 'raw_tp' }
    else notes[#notes + 1] = base.unavailable((what or 'lock:contention_begin') .. ' (kernel lock contention)') end
  end
  if #futex_kinds == 0 then futex_kinds = { false } end
  if #klock_kinds == 0 then klock_kinds = { false } end
  local variants = {}
  for _, fk in ipairs(futex_kinds) do
    for _, kk in ipairs(klock_kinds) do
      if fk or kk then
        local progs, names = {}, {}
        if fk then
          for _, p in ipairs(FUTEX_PROGS[fk]) do progs[#progs + 1] = p end
          names[#names + 1] = fk .. ' (futex)'
        end
        if kk then
          for _, p in ipairs(KLOCK_PROGS[kk]) do progs[#progs + 1] = p end
          names[#names + 1] = kk .. ' (kernel locks)'
        end
        variants[#variants + 1] = { name = table.concat(names, ' + '), progs = progs, futex = fk, kernel = kk }
      end
    end
  end
  return variants, notes
end

-- The variants share programs (the futex pair appears with both kernel-lock
-- sets), so each is loaded on its own with every other program left out.
local function load_one_of(cfg, variants, stats, hooks)
  local errs = {}
  for _, v in ipairs(variants) do
    local keep = {}
    for _, set in pairs(FUTEX_PROGS) do for _, p in ipairs(set) do keep[p] = false end end
    for _, set in pairs(KLOCK_PROGS) do for _, p in ipairs(set) do keep[p] = false end end
    for _, p in ipairs(v.progs) do keep[p] = true end
    local obj, err = base.load_variants('lock', cfg, { { name = v.name, progs = {} } }, { keep = keep, stats = stats,
      prepare = hooks.prepare, ready = hooks.ready })
    if obj then
      local ok, aerr = obj:attach(v.progs)
      if ok then return obj, v end
      obj:close()
      err = aerr
    end
    errs[#errs + 1] = v.name .. ': ' .. tostring(err)
  end
  return nil, table.concat(errs, '; ')
end

--- Starts tracing. opts: pid | tid | cgroup (filter, on the waiting task),
--- stacks = true (record the waiting user stack per futex; unwind = "auto"
--- (default), "fp" or "dwarf": perf_manual.unwind), futex = false /
--- kernel = false (leave a half out), stats = false.
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  local cfg, err = base.filter_config(opts)
  if not cfg then return nil, err end
  local want_futex, want_kernel = opts.futex ~= false, opts.kernel ~= false
  local variants, notes = M.plan(want_futex, want_kernel, nil, base.prefer_raw_tp())
  if #variants == 0 then return nil, table.concat(notes, '; ') end
  cfg.lock_user_stacks = opts.stacks and true or false
  cfg.lock_futex = want_futex
  cfg.lock_kernel = want_kernel
  local mode = 'fp'
  if opts.stacks then
    local merr
    mode, merr = unwind.check_mode(opts.unwind)
    if not mode then return nil, merr end
  end
  local target = opts.pid or opts.tgid
  local hooks = unwind.load_hooks(mode, target)
  local obj, chosen = load_one_of(cfg, variants, opts.stats, hooks)
  if not obj then return nil, chosen end
  local tables = hooks.tables
  local t = base.Tracer.new('lock', obj, { attach_path = chosen.name })
  t.notes = notes
  t.stacks = opts.stacks and true or false
  t.futex_on, t.kernel_on = chosen.futex and true or false, chosen.kernel and true or false
  t.target = target
  t.tables, t.unwind_mode = tables, mode
  if tables then base.poll_while_live(tables) end
  t.maps = {}
  for _, n in ipairs({ 'futexes', 'klocks', 'threads', 'fstacks', 'wakers', 'counters' }) do t.maps[n] = obj:map(n) end
  return setmetatable(t, Lock)
end

local function count_tasks(pid)
  local dir = require('posix.dirent')
  local ok, list = pcall(dir.dir, '/proc/' .. pid .. '/task')
  if not ok or not list then return nil end
  local n = 0
  for _, name in ipairs(list) do if name:match('^%d+$') then n = n + 1 end end
  return n
end

--- Reads the tables: the result since start (or the last clearing read).
--- opts.clear: reset after reading (per-interval output).
function Lock:read(opts)
  opts = opts or {}
  local now = require('perf_manual.sys').now()
  local res
  if self.closed then
    res = self.final or M.analyse({}, 0)
  else
    local d = { futexes = {}, klocks = {}, threads = {}, stacks = {}, wakers = {}, counters = {} }
    local clear = opts.clear
    local function each(map, list, decode)
      for _, e in ipairs(assert(self.maps[map]:read{ clear = clear })) do list[#list + 1] = decode(e.key, e.value) end
    end
    each('futexes', d.futexes, M.decode_futex)
    each('klocks', d.klocks, M.decode_klock)
    each('threads', d.threads, M.decode_thread)
    each('fstacks', d.stacks, M.decode_stack)
    each('wakers', d.wakers, M.decode_waker)
    local ffi_ = require('ffi')
    for _, e in ipairs(assert(self.maps.counters:read())) do
      local idx = ffi_.cast('const uint32_t *', e.key)[0]
      local name = M.COUNTERS[idx + 1]
      if name then d.counters[name] = tonumber(ffi_.cast('const uint64_t *', e.value)[0]) end
    end
    if clear and d.counters.cur_waiters then
      -- the next interval's maximum starts from the waiters present now
      local v = ffi_.new('uint64_t[1]', d.counters.cur_waiters)
      self.maps.counters:update(4, ffi_.string(v, 8))
    end
    if self.tables then self.tables:poll() end
    local walked = unwind.stack_reader(self.obj)
    local function stack_of(s)
      if s.user_hash then
        local st = walked(s.user_hash)
        s.walked = st and true or nil
        s.user_hash = nil -- raw bytes: not for JSON
        return st and sym.unpack(st.ips) or {}
      end
      return s.stack_id >= 0 and self.obj:stack('stacks', s.stack_id) or {}
    end
    for _, s in ipairs(d.stacks) do s.addrs = stack_of(s) end
    for _, w in ipairs(d.wakers) do w.addrs = stack_of(w) end
    if self.target then
      local n = count_tasks(self.target)
      if n then self.nthreads = math.max(self.nthreads or 0, n) end
    end
    res = M.analyse(d, self:attached_seconds(now), self.nthreads)
    res.counters = d.counters
    M.name_locks(res)
    if self.stacks then M.name_stacks(res) end
  end
  res.notes = self.notes
  res.futex_traced, res.kernel_traced = self.futex_on, self.kernel_on
  return self:finish_read(res, now, opts)
end

--- Names the busiest futexes (res.futex[1..top], default 10) while the
--- process is alive: the data symbol covering the address through the ELF
--- symbol tables of its mapping, or the mapping ([heap], [anon], a
--- thread's stack), as collectors.waits names a lock wait. Adds symbol,
--- symbol_offset, section, mapping and name ('g_lock (app .bss)', or
--- 'heap object 0x… in [heap]').
function M.name_locks(res, top)
  for i, f in ipairs(res.futex or {}) do
    if i > (top or 10) then break end
    local e = { addr = f.uaddr, reason = 'lock' }
    local ok = pcall(waits_c.name, f.tgid, { e })
    if ok then
      f.symbol, f.symbol_offset, f.section, f.mapping = e.symbol, e.symbol_offset, e.section, e.mapping
      f.name = M.lock_name(f)
    end
  end
end

--- A lock's name for a sentence: 'g_lock (app .bss)', 'g_lock+0x8 (…)',
--- 'heap object 0x55… in [heap]', 'futex 0x7f… in [anon]' or the address.
function M.lock_name(f)
  local where = f.mapping and ((tostring(f.mapping):match('[^/]+$')) or f.mapping)
  if f.symbol then
    return string.format('%s%s (%s%s)', f.symbol, f.symbol_offset and string.format('+0x%x', f.symbol_offset) or '',
      where or '?', f.section and (' ' .. f.section) or '')
  end
  if f.mapping == '[heap]' then return string.format('heap object %s in [heap]', M.hex(f.uaddr)) end
  if f.mapping then return string.format('futex %s in %s', M.hex(f.uaddr), f.mapping) end
  return 'futex ' .. M.hex(f.uaddr)
end

-- a stack's frame names with the caller of the C library put back after the
-- innermost frame (the frame-pointer walk skips it: glibc has none); a
-- stack walked from CFI is whole already: the caller is only named
local function spliced(r, pid, s)
  local addrs = s.addrs or {}
  if s.walked then
    local list = {}
    for i, a in ipairs(addrs) do list[i] = a end
    if s.caller then list[#list + 1] = s.caller end
    if #list == 0 then return nil end
    local okn, names = pcall(r.user, r, pid, list)
    if not okn then return nil end
    local caller = s.caller and table.remove(names) or nil
    if caller and (caller:match('^__GI_') or caller:match('^_*lll_') or caller:match('^_*pthread_mutex_')) then
      caller = nil
    end
    return names, caller
  end
  local list, ci = {}, nil
  if addrs[1] then list[1] = addrs[1] end
  if s.caller then
    -- a return address: looked up at addr-1 (sym does it for frames after the first)
    list[#list + 1] = #list == 0 and s.caller - 1 or s.caller
    ci = #list
  end
  for i = 2, #addrs do list[#list + 1] = addrs[i] end
  if #list == 0 then return nil end
  local okn, names = pcall(r.user, r, pid, list)
  if not okn then return nil end
  local caller = ci and names[ci] or nil
  -- the walk may have had the caller too
  if caller and names[ci + 1] == caller then table.remove(names, ci + 1) end
  -- a scan that found a return address inside the C library's own lock code
  -- names no call site
  if caller and (caller:match('^__GI_') or caller:match('^_*lll_') or caller:match('^_*pthread_mutex_')) then
    caller = nil
  end
  return names, caller
end

--- Adds frame names to the recorded user stacks (perf_manual.sym), while
--- the processes are alive, waiting and waking; the call site of each
--- (caller = the first frame outside the C library); per futex
--- waiter_site and holder_site, the heaviest of each. Stacks keep their raw
--- addresses either way.
function M.name_stacks(res)
  local r = sym.new()
  for _, f in ipairs(res.futex) do
    for _, s in ipairs(f.stacks) do
      s.frames, s.caller_frame = spliced(r, f.tgid, s)
      if s.caller_frame and not f.waiter_site then f.waiter_site = s.caller_frame end
    end
    for _, s in ipairs(f.wake_sites) do
      s.frames, s.caller_frame = spliced(r, f.tgid, s)
      if s.caller_frame and not f.holder_site then f.holder_site = s.caller_frame end
    end
  end
end

--- JSON-ready copy (arrays marked so empty ones stay arrays).
function M.to_json(res)
  local copy = base.json_copy(res, { 'notes' })
  for _, key in ipairs({ 'futex', 'kernel', 'threads' }) do
    local list = {}
    for i, r in ipairs(res[key] or {}) do
      local c = base.json_copy(r, { 'slots' })
      for _, sk in ipairs({ 'stacks', 'wake_sites' }) do
        if r[sk] then
          local st = {}
          for j, s in ipairs(r[sk]) do
            st[j] = { count = s.count, total_ns = s.total_ns, stack_id = s.stack_id, caller = s.caller,
                      caller_frame = s.caller_frame, threads = s.threads,
                      addrs = util.array(s.addrs or {}), frames = s.frames and util.array(s.frames) }
          end
          c[sk] = util.array(st)
        end
      end
      if r.wakers then
        local wl = {}
        for j, w in ipairs(r.wakers) do wl[j] = { tgid = w.tgid, pid = w.pid, comm = w.comm, count = w.count } end
        c.wakers = util.array(wl)
      end
      list[i] = c
    end
    copy[key] = util.array(list)
  end
  return copy
end

return M
