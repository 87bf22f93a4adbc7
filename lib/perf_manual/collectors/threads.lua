--- Thread-state sampler for the USE "Mutex" row without BPF, the way
--- 0x.tools samples thread states: many times a second, look at every
--- thread of a process and classify it: running / runnable / sleeping /
--- blocked in a futex wait / disk wait (D).
---
--- Cheap by construction (target: < 2% of one CPU at 50 Hz on 100 threads):
--- each look at a thread reads its schedstat (the cheapest per-thread file):
--- a thread that has not been on a CPU since the last look is still in the
--- same wait (or, if it was R, still waiting for a CPU), so its class is
--- reused. Only threads that ran get /proc/PID/task/TID/wchan read:
--- "futex_…" in a futex wait, another kernel symbol in other sleeps (stat,
--- S or D, is read only when that symbol changes), "0" when still on a run
--- queue (then stat tells R from a sleeper kept queued by EEVDF delayed
--- dequeue, 6.12+, and the syscall file whether it sleeps in futex).
--- A thread that ran only briefly and, the last 3 times it did, went back
--- to the same wait is assumed to have done so again (wchan re-checked at
--- every 4th such run). Sleeping threads are looked at every 2nd tick,
--- after 2 unchanged looks every 4th; runnable ones every tick. When a
--- thread is next seen to have run, its schedstat deltas say how long it ran
--- and waited for a CPU during the reused ticks, and that many samples move
--- from its old class to running / runnable, so shares stay time-weighted
--- (per-tick maxima can be off by threads that changed within 4 ticks).
--- Files are opened once and re-read with pread(2) (perf_manual._c.sys); an
--- unchanged schedstat text is told by string identity, without parsing;
--- the thread list is refreshed every 25 ticks.
--- When wchan is hidden (no ptrace access), stat gives the state and
--- /proc/…/syscall (futex = 202 on x86_64) the futex waits.
---
--- `sampler(pid, opts)` → Sampler or nil, "no process N"
---   opts = { hz = 50, refresh_every = 25 (ticks between thread-list refreshes),
---            max_threads = 4096, mode = nil|'wchan'|'stat' (force a source) }
---   Sampler:tick() → true, or false when the process is gone
---   Sampler:account_run(wall_s, cpu_s, { stopped =, exited = }) (the loop's cost)
---   Sampler:result() → Result;  Sampler:close()
--- The loop that ticks it at opts.hz is a measurement session's
--- (perf_manual.measure.threads.sample, or measure.use's).
---
--- Result = {
---   pid=, hz=, samples= (ticks taken), duration_s=, threads_seen=,
---   thread_samples= (sum over ticks of threads seen),
---   shares = { running=, runnable=, sleeping=, futex=, disk=, other=, unknown= },
---     -- fractions of thread-time (sum 1); futex = blocked in a futex wait,
---     -- disk = D state (uninterruptible, usually disk I/O), sleeping = other S
---   futex_share= (= shares.futex), futex_waiting_max=, futex_waiting_mean=,
---   runnable_max=, runnable_mean=, disk_waiting_max=, disk_waiting_mean=,
---   top_futex = { { tid=, comm=, share= }, … } (up to 5 threads by futex time),
---   futex_lock_share=, futex_wait_share= (thread-time in FUTEX_WAIT/LOCK_PI
---     waits, as glibc mutexes, rwlocks and joins use, vs FUTEX_WAIT_BITSET /
---     futex_waitv, as condition variables and semaphores use; from the
---     syscall file, nil + missing without ptrace access),
---   futex_lock_waiting_max=, futex_lock_waiting_mean=,
---   top_futex_addrs = { { uaddr = "0x…", kind = 'lock'|'wait'|'other',
---     mean_waiters=, max_waiters= }, … } (up to 5, by waiters; one hot
---     address with many 'lock' waiters is one contended lock),
---   source = 'wchan' | 'stat+syscall' (how states and futex waits were read),
---   exited = bool (the process ended while sampled), stopped = bool (Ctrl-C),
---   cost = { cpu_s=, cpu_pct= (% of one CPU while sampling), per_tick_us= }
---     (with run(): all CPU of the sampling loop; with a caller's own loop
---     of tick(): the CPU inside tick() over the span of the ticks),
---   missing = { field = why } }
local common = require('perf_manual.collectors.common')
local sys = require('perf_manual.sys')

local M = {}

local byte, sub = string.byte, string.sub
local sys_open, sys_pread, sys_close = sys.open, sys.pread, sys.close
local thread_cpu = sys.thread_cpu

local BUFSZ = 1024
-- the text last read: the parsers below look at it by 0-based index i,
-- as byte(cur, i + 1), and only below the length pread returned
local cur = ''

-- syscall numbers of this architecture (nil where it has no such call)
local FUTEX_NR = sys.syscall_nr('futex')
local FUTEX_WAITV_NR = sys.syscall_nr('futex_waitv')

-- an fd, or -1 when the file cannot be opened (thread gone, no access)
local function fopen(path) return sys_open(path) or -1 end

-- length of the text read into `cur`, or -1
local function pread(fd)
  if fd < 0 then return -1 end
  local s = sys_pread(fd, BUFSZ - 1)
  if not s then return -1 end
  cur = s
  return #s
end

-- Parses the unsigned decimal at cur[i]; returns value, index after it.
local function num_at(i, n)
  local v = 0
  while i < n do
    local c = byte(cur, i + 1)
    if c < 48 or c > 57 then break end
    v = v * 10 + (c - 48)
    i = i + 1
  end
  return v, i
end

-- State letter of a stat line in cur: after the LAST ')' (comm may hold
-- parens). pid ≤ 10 digits and comm ≤ 15 bytes put it within 40 bytes.
local function stat_state(n)
  local i = n < 40 and n - 1 or 40
  while i > 0 and byte(cur, i + 1) ~= 41 do i = i - 1 end
  if i == 0 or i + 2 >= n then return nil end
  return byte(cur, i + 3)
end

local S_R, S_S, S_D, Z, XX = string.byte('R'), string.byte('S'), string.byte('D'), string.byte('Z'), string.byte('X')
local F, U, T, E, X = string.byte('f', 1), string.byte('u'), string.byte('t'), string.byte('e'), string.byte('x')

local Sampler = {}
Sampler.__index = Sampler

local function open_thread(self, tid)
  local base = self.task_dir .. tid .. '/'
  local th = { tid = tid, base = base, stat = -1, wchan = -1, syscall = -1, sched = -1, futex = 0,
    wsym = nil, wstate = nil, last_run = nil, last_wait = nil }
  th.sched = fopen(base .. 'schedstat')
  th.prev = nil -- last schedstat text (when short), to skip parsing when unchanged
  if th.sched < 0 then return nil end
  if self.mode == 'stat' then th.stat = fopen(base .. 'stat') else th.wchan = fopen(base .. 'wchan') end
  th.reused, th.streak, th.trust, th.skips = 0, 0, 0, 0
  local c = common.read(base .. 'comm')
  th.comm = c and c:gsub('\n$', '') or '?'
  return th
end

local function close_thread(th)
  for _, k in ipairs({ 'stat', 'wchan', 'syscall', 'sched' }) do
    if th[k] >= 0 then sys_close(th[k]); th[k] = -1 end
  end
end

local function lazy(th, key, file)
  if th[key] < 0 and not th[key .. '_tried'] then
    th[key .. '_tried'] = true
    th[key] = fopen(th.base .. file)
  end
  return th[key]
end

-- State letter from the thread's stat file (opened on first need).
local function read_state(th)
  local n = pread(lazy(th, 'stat', 'stat'))
  return n > 0 and stat_state(n) or nil
end

local function refresh(self)
  local ok, list = pcall(require('posix.dirent').dir, self.task_dir)
  if not ok then return false end
  local seen = {}
  for _, name in ipairs(list) do
    local tid = tonumber(name)
    if tid then
      seen[tid] = true
      if not self.byid[tid] and #self.list < self.max_threads then
        local th = open_thread(self, tid)
        if th then
          self.byid[tid] = th
          self.list[#self.list + 1] = th
          self.all[tid] = th
        end
      end
    end
  end
  local kept = {}
  for _, th in ipairs(self.list) do
    if seen[th.tid] then kept[#kept + 1] = th else close_thread(th); self.byid[th.tid] = nil end
  end
  self.list = kept
  -- an exited process not yet reaped keeps its zombie leader listed
  if #kept == 1 and kept[1].tid == self.pid then
    local st = read_state(kept[1])
    if st == nil or st == Z or st == XX then return false end
  end
  return true
end

-- In stat mode (wchan hidden): is this S thread in futex(2)? nil = unknown.
local function syscall_futex(th)
  local n = pread(lazy(th, 'syscall', 'syscall'))
  local c = n > 0 and byte(cur, 1)
  if c and c >= 48 and c <= 57 then
    local nr = num_at(0, n)
    return nr == FUTEX_NR or nr == FUTEX_WAITV_NR, n
  end
  return nil
end

-- Parses the syscall file text in cur ("202 0xUADDR 0xOP 0xVAL …"):
-- futex kind (K_LOCK: FUTEX_WAIT / LOCK_PI, as glibc mutexes, rwlocks and
-- joins wait; K_WAIT: FUTEX_WAIT_BITSET / futex_waitv, as condition
-- variables and semaphores wait; K_OTHER) and the futex address.
local K_LOCK, K_WAIT, K_OTHER = 1, 2, 3
local KIND_NAME = { 'lock', 'wait', 'other' }
local function hex_at(i, n)
  -- expects "0x…" at i; returns value (up to 2^53), start, end index
  if i + 1 >= n or byte(cur, i + 1) ~= 48 or byte(cur, i + 2) ~= 120 then return nil, i, i end
  local v, j = 0, i + 2
  while j < n do
    local c = byte(cur, j + 1)
    local d = (c >= 48 and c <= 57 and c - 48) or (c >= 97 and c <= 102 and c - 87) or nil
    if not d then break end
    v = v * 16 + d
    j = j + 1
  end
  return v, i, j
end

local function futex_args(n)
  local nr, i = num_at(0, n)
  if nr == FUTEX_WAITV_NR then return K_WAIT, nil end
  if nr ~= FUTEX_NR then return nil end
  local _, a0, a1 = hex_at(i + 1, n)
  local op, _, j = hex_at(a1 + 1, n)
  if not op then return nil end
  local cmd = op % 128
  local kind = (cmd == 0 or cmd == 6 or cmd == 13) and K_LOCK or (cmd == 9 or cmd == 11) and K_WAIT or K_OTHER
  return kind, sub(cur, a0 + 1, a1), j
end

--- Parses the text of /proc/PID/task/TID/syscall: { nr=, futex = 'lock'|'wait'|'other'?,
--- uaddr = "0x…"? } (futex fields only for futex(2) / futex_waitv(2)); nil
--- for "running" or other non-numeric text.
function M.parse_syscall(text)
  if type(text) ~= 'string' or #text == 0 or #text >= BUFSZ then return nil end
  cur = text
  local n = #text
  local c = byte(text, 1)
  if c < 48 or c > 57 then return nil end
  local nr = num_at(0, n)
  local kind, uaddr = futex_args(n)
  return { nr = nr, futex = kind and KIND_NAME[kind] or nil, uaddr = uaddr }
end

-- Futex kind and address of a thread seen entering a futex wait, from its
-- syscall file (ptrace access needed); nil when unreadable or it moved on.
local function futex_kind(th)
  local n = pread(lazy(th, 'syscall', 'syscall'))
  local c = n > 0 and byte(cur, 1)
  if c and c >= 48 and c <= 57 then return futex_args(n) end
  return nil
end

-- Class codes of one thread sample
local C_RUN, C_SLEEP, C_FUTEX, C_DISK, C_OTHER, C_GONE, C_UNKNOWN = 1, 2, 3, 4, 5, 6, 7
local CLASS_KEY = { 'running', 'sleeping', 'futex', 'disk', 'other', nil, 'unknown' }

local function class_of_state(st)
  if st == S_S then return C_SLEEP elseif st == S_D then return C_DISK end
  return C_OTHER
end

--- wchan mode, one read per thread in the common case: "0" means on a run
--- queue (R); "futex…" a futex wait; any other symbol a sleep whose S/D
--- state is read from stat only when the symbol changes for that thread.
local function classify_wchan(th)
  local n = pread(th.wchan)
  if n <= 0 then return C_GONE end
  if n == 1 and byte(cur, 1) == 48 then
    -- "0": on a run queue. Since 6.12 a sleeping task can stay queued a
    -- while (EEVDF delayed dequeue) and read "0" too, so stat says which.
    local st = read_state(th)
    if not st then return C_GONE end
    if st == S_R then return C_RUN end
    if st == S_S then
      local f, n2 = syscall_futex(th)
      if f then th.fkind, th.faddr = futex_args(n2); th.fkind_fresh = true; th.wsym = nil; return C_FUTEX end
      return C_SLEEP
    end
    return class_of_state(st)
  end
  local c0, c1, c2, c3, c4 = byte(cur, 1, 5)
  if c0 == F and c1 == U and c2 == T and c3 == E and c4 == X then
    th.wsym = nil
    return C_FUTEX
  end
  -- the symbol text itself tells a changed wait (strings compare by identity)
  local sym = cur
  if sym ~= th.wsym then
    local st = read_state(th)
    if not st then return C_GONE end
    th.wsym = sym
    th.wstate = st == S_R and C_SLEEP or class_of_state(st) -- R here: it woke between the reads
  end
  return th.wstate
end

local function classify_stat(self, th)
  local n = pread(th.stat)
  local st = n > 0 and stat_state(n)
  if not st then return C_GONE end
  if st == S_R then return C_RUN end
  if st == S_S then
    local f, n2 = syscall_futex(th)
    if f == nil then return C_UNKNOWN end
    self.via_syscall = true
    if f then th.fkind, th.faddr = futex_args(n2); return C_FUTEX end
    return C_SLEEP
  end
  return class_of_state(st)
end

function Sampler:tick()
  if self.closed then return false end
  local c0 = thread_cpu()
  if self.ticks % self.refresh_every == 0 then
    if not refresh(self) or #self.list == 0 then self.exited = true; return false end
  end
  local a = self.acc
  local running, runnable, sleeping, futex, disk, other, unknown, count = 0, 0, 0, 0, 0, 0, 0, 0
  local locks = 0
  local gone = false
  local wmode = self.mode == 'wchan'
  local period_ns = 1e9 / self.hz
  local list = self.list
  local tick = self.ticks
  for i = 1, #list do
    local th = list[i]
    local c
    local w = 0
    local n
    if th.class and th.class ~= C_RUN and (tick + th.tid) % (th.streak >= 2 and 4 or 2) ~= 0 then
      n = -2 -- idle for a while: look every 2nd/4th tick, reuse the class between
    else
      n = pread(th.sched)
    end
    local run, wait
    if n == -2 or (n > 0 and th.class and cur == th.prev) then
      -- schedstat unchanged: not on a CPU since the last look, so still in
      -- the same wait, or (if it was R) still waiting for a CPU
      c = th.class
      if c == C_RUN then w = 1 end
      th.reused = th.reused + 1
      if n ~= -2 then th.streak = th.streak + 1 end
    elseif n <= 0 then
      c = C_GONE
    else
      local j
      run, j = num_at(0, n)
      wait = num_at(j + 1, n)
      if n < 64 then th.prev = cur else th.prev = nil end
      local prior = th.class
      local sleeper = prior == C_SLEEP or prior == C_FUTEX or prior == C_DISK
      local short = th.last_run and run - th.last_run < period_ns and wait - th.last_wait < period_ns
      if wmode and sleeper and short and th.trust >= 3 and th.skips < 3 then
        -- it ran briefly, and the last 3 times it did it went back to the
        -- same wait: assume so again (checked every 4th time); counted as a
        -- reused tick, so the run/wait correction still covers it
        c = prior
        th.skips = th.skips + 1
        th.reused = th.reused + 1
        th.streak = 0
      else
        if th.class and th.class ~= C_RUN and th.reused > 0 then
          -- during the reused ticks it ran for dr and waited for a CPU for dw:
          -- move that many samples from its old class to running / runnable
          local kr = math.min(th.reused, math.floor((run - th.last_run) / period_ns + 0.5))
          local kw = math.min(th.reused - kr, math.floor((wait - th.last_wait) / period_ns + 0.5))
          if kr + kw > 0 then
            local key = CLASS_KEY[th.class]
            a[key] = a[key] - kr - kw
            a.running, a.runnable = a.running + kr, a.runnable + kw
            if th.class == C_FUTEX then
              th.futex = th.futex - kr - kw; a.futex_sum = a.futex_sum - kr - kw
              if th.fkind then a.kind[th.fkind] = a.kind[th.fkind] - kr - kw end
              if th.faddr then a.addr[th.faddr].samples = a.addr[th.faddr].samples - kr - kw end
            end
          end
        end
        th.streak = 0
        c = wmode and classify_wchan(th) or classify_stat(self, th)
        if c == C_FUTEX and wmode then
          if th.fkind_fresh then th.fkind_fresh = false else th.fkind, th.faddr = futex_kind(th) end
        end
        if c == C_RUN and th.last_run then
          local dr, dw = run - th.last_run, wait - th.last_wait
          if dr + dw > 0 then w = dw / (dr + dw) end
        end
        th.reused = 0
        if sleeper and short and c == prior then th.trust = th.trust + 1 else th.trust = 0 end
        th.skips = 0
        if c ~= C_GONE then th.last_run, th.last_wait = run, wait end
      end
    end
    if c == C_GONE then
      gone = true
    else
      th.class = c
      count = count + 1
      if c == C_FUTEX then
        futex = futex + 1; th.futex = th.futex + 1
        local k = th.fkind
        if k == K_LOCK then locks = locks + 1 end
        if k then a.kind[k] = a.kind[k] + 1; self.kinds_seen = true end
        local fa = th.faddr
        if fa then
          local e = a.addr[fa]
          if not e then e = { samples = 0, max = 0, kind = k, now = 0, tick = -1 }; a.addr[fa] = e end
          e.samples = e.samples + 1
          if e.tick ~= tick then e.tick, e.now = tick, 0 end
          e.now = e.now + 1
          if e.now > e.max then e.max = e.now end
        end
      elseif c == C_SLEEP then sleeping = sleeping + 1
      elseif c == C_RUN then runnable = runnable + w; running = running + 1 - w
      elseif c == C_DISK then disk = disk + 1
      elseif c == C_UNKNOWN then unknown = unknown + 1
      else other = other + 1 end
    end
  end
  if gone then
    -- threads that exited: drop them now; the next refresh sees new ones
    local kept = {}
    for _, th in ipairs(list) do
      if pread(th.sched) > 0 then kept[#kept + 1] = th
      else close_thread(th); self.byid[th.tid] = nil end
    end
    self.list = kept
    if #kept == 0 and not (refresh(self) and #self.list > 0) then self.exited = true; return false end
  end
  a.running, a.runnable, a.sleeping = a.running + running, a.runnable + runnable, a.sleeping + sleeping
  a.futex, a.disk, a.other, a.unknown = a.futex + futex, a.disk + disk, a.other + other, a.unknown + unknown
  a.thread_samples = a.thread_samples + count
  a.futex_sum = a.futex_sum + futex
  if futex > a.futex_max then a.futex_max = futex end
  a.lock_sum = a.lock_sum + locks
  if locks > a.lock_max then a.lock_max = locks end
  local rq = math.floor(runnable + 0.5)
  a.runnable_sum = a.runnable_sum + runnable
  if rq > a.runnable_max then a.runnable_max = rq end
  a.disk_sum = a.disk_sum + disk
  if disk > a.disk_max then a.disk_max = disk end
  self.ticks = self.ticks + 1
  self.tick_cpu = self.tick_cpu + (thread_cpu() - c0)
  local now = sys.now()
  self.t_first = self.t_first or now
  self.t_last = now
  return true
end

--- What the loop that drove the ticks cost (its wall time, this thread's
--- CPU time sleeps included) and how it ended; the result reports it.
function Sampler:account_run(wall, cpu, ended)
  self.wall = self.wall + wall
  self.run_cpu = self.run_cpu + cpu
  if ended and ended.stopped then self.stopped = true end
  if ended and ended.exited then self.exited = true end
end

function Sampler:result()
  local a = self.acc
  -- driven by run(): its wall time and CPU (sleeps included); driven by a
  -- caller's own loop with tick(): the span of the ticks and their CPU
  local wall = self.wall > 0 and self.wall or (self.t_last and self.t_first and self.t_last - self.t_first) or 0
  local cpu_s = self.wall > 0 and self.run_cpu or self.tick_cpu
  local r = { pid = self.pid, hz = self.hz, samples = self.ticks, duration_s = wall,
    thread_samples = a.thread_samples, exited = self.exited or false, stopped = self.stopped or false }
  local seen = 0
  for _ in pairs(self.all) do seen = seen + 1 end
  r.threads_seen = seen
  if a.thread_samples > 0 then
    local n = a.thread_samples
    r.shares = { running = a.running / n, runnable = a.runnable / n, sleeping = a.sleeping / n,
      futex = a.futex / n, disk = a.disk / n, other = a.other / n, unknown = a.unknown / n }
    r.futex_share = r.shares.futex
    if self.kinds_seen then
      r.futex_lock_share, r.futex_wait_share = a.kind[K_LOCK] / n, a.kind[K_WAIT] / n
    end
  else
    common.miss(r, 'shares', 'no thread sampled')
  end
  if self.ticks > 0 then
    r.futex_waiting_max, r.futex_waiting_mean = a.futex_max, a.futex_sum / self.ticks
    if self.kinds_seen then
      r.futex_lock_waiting_max, r.futex_lock_waiting_mean = a.lock_max, a.lock_sum / self.ticks
    end
    r.runnable_max, r.runnable_mean = a.runnable_max, a.runnable_sum / self.ticks
    r.disk_waiting_max, r.disk_waiting_mean = a.disk_max, a.disk_sum / self.ticks
  end
  local top = {}
  for tid, th in pairs(self.all) do
    if th.futex > 0 then top[#top + 1] = { tid = tid, comm = th.comm, share = th.futex / math.max(1, self.ticks) } end
  end
  table.sort(top, function(x, y) return x.share > y.share or (x.share == y.share and x.tid < y.tid) end)
  for i = 6, #top do top[i] = nil end
  r.top_futex = require('perf_manual.util').array(top)
  local addrs = {}
  for fa, e in pairs(a.addr) do
    if e.samples > 0 then
      addrs[#addrs + 1] = { uaddr = fa, kind = KIND_NAME[e.kind] or 'other', max_waiters = e.max,
        mean_waiters = e.samples / math.max(1, self.ticks) }
    end
  end
  table.sort(addrs, function(x, y) return x.mean_waiters > y.mean_waiters or
    (x.mean_waiters == y.mean_waiters and x.uaddr < y.uaddr) end)
  for i = 6, #addrs do addrs[i] = nil end
  r.top_futex_addrs = require('perf_manual.util').array(addrs)
  if a.futex > 0 and not self.kinds_seen then
    common.miss(r, 'futex_lock_share', 'syscall files not readable: futex kinds unknown (needs ptrace access)')
  end
  r.source = self.mode == 'wchan' and 'wchan' or 'stat+syscall'
  if a.unknown > 0 and a.unknown >= (a.futex + a.sleeping) then
    common.miss(r, 'futex_share', 'neither wchan nor syscall readable for these threads (needs ptrace access)')
    r.futex_share = nil
  end
  r.cost = { cpu_s = cpu_s, per_tick_us = self.ticks > 0 and self.tick_cpu / self.ticks * 1e6 or nil }
  if wall > 0 then r.cost.cpu_pct = 100 * cpu_s / wall end
  return r
end

function Sampler:close()
  if self.closed then return end
  for _, th in ipairs(self.list) do close_thread(th) end
  self.list, self.byid, self.closed = {}, {}, true
end

Sampler.__gc = Sampler.close

---@param pid integer
---@param opts table? { hz=50, refresh_every=10, max_threads=4096, proc='/proc' }
---@return table? sampler, string? err
function M.sampler(pid, opts)
  require('perf_manual.util').validate('pid', pid, 'number')
  opts = opts or {}
  local self = setmetatable({
    pid = pid, hz = opts.hz or 50, refresh_every = opts.refresh_every or 25,
    max_threads = opts.max_threads or 4096, task_dir = (opts.proc or '/proc') .. '/' .. pid .. '/task/',
    list = {}, byid = {}, all = {}, ticks = 0, mode = 'wchan', tick_cpu = 0, run_cpu = 0, wall = 0,
    acc = { running = 0, runnable = 0, sleeping = 0, futex = 0, disk = 0, other = 0, thread_samples = 0,
      unknown = 0, futex_sum = 0, futex_max = 0, lock_sum = 0, lock_max = 0, kind = { 0, 0, 0 }, addr = {},
      runnable_sum = 0, runnable_max = 0, disk_sum = 0, disk_max = 0 },
  }, Sampler)
  if not refresh(self) or #self.list == 0 then return nil, 'no process ' .. pid end
  -- wchan reads "0" for every thread when the reader may not ptrace the
  -- target; then a sleeping thread (stat S/D) shows it, and stat mode is used.
  local hidden = opts.mode == 'stat'
  for _, th in ipairs(opts.mode == nil and self.list or {}) do
    local n = pread(th.wchan)
    if n > 1 then hidden = false; break end
    local st = read_state(th)
    if st == S_R then hidden = false end
  end
  if hidden then
    self:close(); self.closed = false
    self.mode = 'stat'
    if not refresh(self) or #self.list == 0 then return nil, 'no process ' .. pid end
  end
  -- LuaJIT 2.1 runs __gc on tables only through a proxy: close fds on collection
  self.proxy = newproxy(true)
  getmetatable(self.proxy).__gc = function() self:close() end
  return self
end

return M
