--- Thread-state accounting of a target over a window (Brendan Gregg's TSA
--- method, measured): per thread, the share of its wall-clock time on a
--- CPU, runnable waiting for a CPU, and blocked, the blocked time split by
--- what it waits for (perf_manual.waits names the reasons and holds the rules).
---
--- The tsa tracer (bpf/tsa.bpf.c) keeps the books; this module closes them
--- at the window's edges: the time before a thread's first switch-out and
--- after its last one is split by the schedstat deltas read at the edges,
--- and a blocked start takes its reason from /proc/PID/task/TID/{syscall,stack}
--- read right after attach;
--- threads with no event in the window get it whole from /proc (state, and
--- the schedstat deltas for on-CPU and run-queue time).
---
---   local r = require('perf_manual.measure.tsa').run { target = '1234', duration = 5 }
---   -- r.threads[i].states / .shares / .waits, r.total, r.waits (see docs/tsa.md)
local bit = require('bit')
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local bpf = require('perf_manual.bpf')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local tsa = require('perf_manual.tracers.tsa')
local waits = require('perf_manual.waits')
local process = require('perf_manual.collectors.process')
local sym = require('perf_manual.sym')
local dirent = require('posix.dirent')
local ffi = require('ffi')

local M = {}

--- The place /proc is read from (specs point it at fixtures).
M.proc = '/proc'

M.SOURCE = 'bpf: tsa (tp_btf sched_switch)'

--- The BPF run-time sampling period grows to this (s) during a run: each
--- on/off pair of the kernel's statistics costs ~6 ms of CPU here (kernel
--- text patched on every CPU), three quarters of the tool's steady CPU at
--- the default 1 s period.
M.STATS_PERIOD_MAX = 8

local function read(p) return util.readfile(p) end

ffi.cdef [[ long readlink(const char *path, char *buf, size_t size); ]]
local linkbuf = ffi.new('char[4096]')

--- The target of a symbolic link (/proc/PID/fd/N), or nil. (luaposix's
--- readlink trusts st_size, which /proc links do not fill in.)
function M.readlink(path)
  local n = ffi.C.readlink(path, linkbuf, 4096)
  if n < 0 then return nil end
  return ffi.string(linkbuf, n)
end

-- /proc parsing (pure) --------------------------------------------------------

--- /proc/PID/task/TID/syscall: { running = true } | { nr = -1 } (blocked
--- outside a syscall) | { nr =, args = { a0, a1, ... } }.
function M.parse_syscall(text)
  if not text then return nil end
  text = util.trim(text)
  if text == 'running' then return { running = true } end
  local nr, rest = text:match('^(%-?%d+)%s*(.*)$')
  if not nr then return nil end
  local r = { nr = tonumber(nr), args = {} }
  if r.nr >= 0 then
    for a in rest:gmatch('0x(%x+)') do r.args[#r.args + 1] = tonumber(a, 16) end
    table.remove(r.args) -- the last two are sp and pc, not arguments
    table.remove(r.args)
  end
  return r
end

--- /proc/.../stack -> kernel function names, innermost first.
function M.parse_stack(text)
  local out = {}
  for name in (text or ''):gmatch('%] ([%w_%.]+)%+') do out[#out + 1] = name end
  return out
end

--- /proc/.../schedstat -> { run_ns, wait_ns, slices }.
function M.parse_schedstat(text)
  local a, b, c = (text or ''):match('^(%d+)%s+(%d+)%s+(%d+)')
  if not a then return nil end
  return { run_ns = tonumber(a), wait_ns = tonumber(b), slices = tonumber(c) }
end

--- State letter of /proc/.../stat.
function M.parse_state(text)
  return text and text:match('%) (%a) ')
end

--- Socket inode -> 'tcp' | 'udp' | 'unix' | 'netlink' from /proc/net tables.
function M.socket_table(proc)
  proc = proc or M.proc
  local kinds = {}
  local files = { tcp = 'tcp', tcp6 = 'tcp', udp = 'udp', udp6 = 'udp', unix = 'unix', netlink = 'netlink' }
  for f, kind in pairs(files) do
    local text = read(proc .. '/net/' .. f) or ''
    local first = true
    for line in text:gmatch('[^\n]+') do
      if first then first = false
      else
        local inode
        if kind == 'unix' then inode = line:match('^%S+:%s+%x+%s+%x+%s+%x+%s+%x+%s+%x+%s+(%d+)')
        elseif kind == 'netlink' then inode = line:match('(%d+)%s*$')
        else
          -- sl local rem st tx:rx tr:when retrnsmt uid timeout inode
          inode = line:match('^%s*%d+:%s+%S+%s+%S+%s+%x+%s+%S+%s+%S+%s+%x+%s+%d+%s+%d+%s+(%d+)')
        end
        if inode and inode ~= '0' then kinds[tonumber(inode)] = kind end
      end
    end
  end
  return kinds
end

-- Snapshots of the target's threads ------------------------------------------

local function task_dirs(pid)
  return process.threads(pid, M.proc) or {}
end

local function all_pids()
  local ok, names = pcall(dirent.dir, M.proc)
  local out = {}
  for _, n in ipairs(ok and names or {}) do
    local pid = tonumber(n)
    if pid and pid > 0 then out[#out + 1] = pid end
  end
  return out
end

--- The pids of a target now.
function M.target_pids(t)
  if t.kind == 'system' then return all_pids() end
  return targets.pids(t)
end

--- Per thread: state, syscall, stack (blocked ones), schedstat.
---@return table<integer, table> tid -> snapshot
function M.snapshot(pids, with_stack)
  local snap = {}
  for _, pid in ipairs(pids) do
    for _, tid in ipairs(task_dirs(pid)) do
      local dir = M.proc .. '/' .. pid .. '/task/' .. tid
      local stat = read(dir .. '/stat')
      if stat then
        local s = { tid = tid, pid = pid, state = M.parse_state(stat),
          comm = (read(dir .. '/comm') or ''):gsub('\n$', ''),
          schedstat = M.parse_schedstat(read(dir .. '/schedstat')) }
        if with_stack and s.state ~= 'R' then
          s.syscall = M.parse_syscall(read(dir .. '/syscall'))
          s.frames = M.parse_stack(read(dir .. '/stack'))
        end
        snap[tid] = s
      end
    end
  end
  return snap
end

-- Naming waits -----------------------------------------------------------------

-- syscalls whose first argument is the fd they wait on
local FD_ARG0 = {}
for _, n in ipairs({ 'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv', 'pwritev', 'preadv2',
  'pwritev2', 'recvfrom', 'recvmsg', 'recvmmsg', 'sendto', 'sendmsg', 'sendmmsg', 'accept', 'accept4', 'connect',
  'splice', 'tee', 'sendfile', 'copy_file_range', 'fsync', 'fdatasync', 'syncfs', 'sync_file_range', 'flock',
  'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'ioctl', 'fcntl', 'io_uring_enter' }) do FD_ARG0[n] = true end
M.FD_ARG0 = FD_ARG0

M.FUTEX_OPS = { [0] = 'wait', 'wake', 'fd', 'requeue', 'cmp_requeue', 'wake_op', 'lock_pi', 'unlock_pi',
  'trylock_pi', 'wait_bitset', 'wake_bitset', 'wait_requeue_pi', 'cmp_requeue_pi', 'lock_pi2' }

--- A wait as perf_manual.waits reads it, from a BPF wait key or a /proc
--- snapshot. ctx: names = syscall names, fd(pid, n) -> link, kind.
function M.describe(pid, w, ctx)
  local d = { state = w.state, iowait = w.iowait or nil, frames = w.frames, kthread = w.kthread }
  if w.syscall then
    d.syscall = ctx.names[w.syscall] or ('syscall_' .. w.syscall)
    d.in_syscall = true
    if FD_ARG0[d.syscall] and w.arg0 and w.arg0 < 2 ^ 31 then
      d.fd = w.arg0
      d.fd_link, d.fd_kind = ctx.fd(pid, d.fd)
    elseif d.syscall == 'futex' then
      d.addr = w.arg0
      d.futex_op = M.FUTEX_OPS[bit.band(w.arg1 or 0, 0x7f)]
    end
  elseif w.in_syscall == false then
    d.in_syscall = false
  end
  d.reason = waits.classify(d)
  return d
end

--- The fd links of processes now ("pid:fd" -> link), added to `into`: a
--- wait on an fd the process has closed (or a process gone) by the end of
--- the window is still named from what it held before.
function M.fd_links(pids, into, proc)
  proc = proc or M.proc
  into = into or {}
  for _, pid in ipairs(pids) do
    local ok, names = pcall(dirent.dir, proc .. '/' .. pid .. '/fd')
    for _, n in ipairs(ok and names or {}) do
      if n:match('^%d+$') then
        local link = M.readlink(proc .. '/' .. pid .. '/fd/' .. n)
        if link then into[pid .. ':' .. n] = link end
      end
    end
  end
  return into
end

--- fd -> link, kind resolver with a cache (the socket table is read once);
--- `seen` (from fd_links) answers for fds gone by now.
function M.fd_resolver(proc, seen)
  proc = proc or M.proc
  local cache, socks = {}, nil
  return function(pid, fd)
    local key = pid .. ':' .. fd
    if cache[key] == nil then
      local link = M.readlink(proc .. '/' .. pid .. '/fd/' .. fd) or (seen and seen[key])
      local kind = waits.fd_kind(link)
      if kind == 'socket' then
        socks = socks or M.socket_table(proc)
        local ino = tonumber(link:match('socket:%[(%d+)%]') or '')
        kind = ino and socks[ino] or 'socket'
      end
      cache[key] = { link or false, kind or false }
    end
    local c = cache[key]
    return c[1] or nil, c[2] or nil
  end
end

-- Closing the books (pure) -----------------------------------------------------

local function new_states()
  local s = {}
  for _, k in ipairs(waits.STATES) do s[k] = 0 end
  return s
end

-- the key a thread's waits are merged under in the result
local function wait_id(d)
  return table.concat({ d.reason, d.syscall or (d.kthread and 'kthread') or '-', tostring(d.fd or d.addr or ''),
    d.syscall and '' or (d.frames and d.frames[1] or '') }, '|')
end

local function add_wait(th, d, ns, count)
  th._w = th._w or {}
  local id = wait_id(d)
  local e = th._w[id]
  if not e then
    e = { reason = d.reason, ns = 0, count = 0, syscall = d.syscall, fd = d.fd, fd_link = d.fd_link,
      fd_kind = d.fd_kind, addr = d.addr, futex_op = d.futex_op, state = d.state, frames = d.frames,
      kthread = d.kthread, big = 0 }
    th._w[id] = e
  end
  e.ns = e.ns + ns
  e.count = e.count + (count or 0)
  -- the frames of the biggest part name the wait
  if d.frames and ns > e.big then e.frames, e.big = d.frames, ns end
  th.states[d.reason] = th.states[d.reason] + ns / 1e9
end

--- Builds the result from the closed books. Pure given its inputs:
---   books  = tracer read (t0_ns, t1_ns, threads, waits, stacks)
---   snap0  = M.snapshot at start (with stacks), snap1 = at the end
---   ctx    = { names =, fd = fd resolver, frames = function(stack id) -> names }
function M.build(books, snap0, snap1, ctx)
  local t0, t1 = books.t0_ns, books.t1_ns
  local window_ns = t1 - t0
  local acc = tsa.account(books, t0, t1, snap0, snap1)
  local out, seen = {}, {}
  local function start_wait(tid, pid)
    local s = snap0[tid]
    if not s then return { reason = 'other' } end
    local sc = s.syscall or {}
    local w = { state = s.state == 'D' and 'D' or 'S', frames = s.frames }
    if sc.nr and sc.nr >= 0 then
      w.syscall, w.arg0, w.arg1 = sc.nr, sc.args[1], sc.args[2]
    elseif sc.nr == -1 then
      w.in_syscall = false
    end
    -- kernel threads: no user side at all
    if s.kthread then w.kthread, w.in_syscall = true, nil end
    return M.describe(pid, w, ctx)
  end
  for _, a in ipairs(acc) do
    seen[a.tid] = true
    local th = { tid = a.tid, pid = a.pid, comm = a.comm, life_s = a.life_ns / 1e9, states = new_states() }
    th.states.cpu = a.cpu_ns / 1e9
    th.states.runq = a.runq_ns / 1e9
    if a.born_ns then th.born_s = a.born_ns / 1e9 end
    if a.exited_ns then th.exited_s = a.exited_ns / 1e9 end
    if a.head then
      -- its on-CPU and run-queue parts are in a.cpu_ns/a.runq_ns already
      if a.head.blocked_ns > 0 then add_wait(th, start_wait(a.tid, a.pid), a.head.blocked_ns, 0) end
      th.head_s = a.head.ns / 1e9
    end
    for _, b in ipairs(a.blocked) do
      local w = {}
      for k, v in pairs(b.wait) do w[k] = v end
      if w.kstack and w.kstack >= 0 then w.frames = ctx.frames(w.kstack) end
      add_wait(th, M.describe(a.pid, w, ctx), b.ns, b.count)
    end
    out[#out + 1] = th
  end
  -- threads without a single event: the whole window from /proc
  for tid, s in pairs(snap0) do
    if not seen[tid] then
      local e = snap1[tid]
      local th = { tid = tid, pid = s.pid, comm = s.comm, life_s = window_ns / 1e9, states = new_states(),
        source = '/proc' }
      local cpu, runq = 0, 0
      if e and e.schedstat and s.schedstat then
        cpu = math.max(0, e.schedstat.run_ns - s.schedstat.run_ns)
        runq = math.max(0, e.schedstat.wait_ns - s.schedstat.wait_ns)
      elseif s.state == 'R' then
        cpu = window_ns
      end
      if not e then th.exited_s = nil end
      cpu = math.min(cpu, window_ns)
      runq = math.min(runq, window_ns - cpu)
      th.states.cpu, th.states.runq = cpu / 1e9, runq / 1e9
      local rest = window_ns - cpu - runq
      if rest > window_ns * 0.001 then add_wait(th, start_wait(tid, s.pid), rest, 0) end
      out[#out + 1] = th
    end
  end
  return out
end

--- Shares, sorted waits, totals: the result's shape.
function M.finish(threads)
  local total = { states = new_states(), life_s = 0 }
  local all = {}
  for _, th in ipairs(threads) do
    th.shares = {}
    local life = th.life_s > 0 and th.life_s or nil
    for _, k in ipairs(waits.STATES) do
      th.shares[k] = life and th.states[k] / life * 100 or 0
      total.states[k] = total.states[k] + th.states[k]
    end
    total.life_s = total.life_s + th.life_s
    local list = {}
    for _, e in pairs(th._w or {}) do
      e.seconds = e.ns / 1e9
      e.share = life and e.seconds / life * 100 or 0
      e.ns, e.big = nil, nil
      e.frames = e.frames and util.array(e.frames) or nil
      list[#list + 1] = e
    end
    th._w = nil
    table.sort(list, function(a, b)
      if a.seconds ~= b.seconds then return a.seconds > b.seconds end
      return (a.syscall or '') < (b.syscall or '')
    end)
    th.waits = util.array(list)
    for _, e in ipairs(list) do
      local c = { tid = th.tid, pid = th.pid, comm = th.comm }
      for k, v in pairs(e) do c[k] = v end
      all[#all + 1] = c
    end
    th.busy_s = th.states.cpu + th.states.runq
  end
  table.sort(threads, function(a, b)
    -- the threads that use or want a CPU first, then the longest-lived
    if math.abs(a.busy_s - b.busy_s) > 1e-3 then return a.busy_s > b.busy_s end
    if a.life_s ~= b.life_s then return a.life_s > b.life_s end
    return a.tid < b.tid
  end)
  for _, th in ipairs(threads) do th.busy_s = nil end
  table.sort(all, function(a, b) return a.seconds > b.seconds end)
  total.shares = {}
  for _, k in ipairs(waits.STATES) do
    total.shares[k] = total.life_s > 0 and total.states[k] / total.life_s * 100 or 0
  end
  total.threads = #threads
  local top = {}
  for i = 1, math.min(20, #all) do top[i] = all[i] end
  return util.array(threads), total, util.array(top)
end

--- The kernel frames of a stack id (names without the `_[k]` suffix,
--- the tracing machinery dropped).
local function frames_fn(stacks)
  local resolver = sym.new()
  local cache = {}
  return function(id)
    if cache[id] == nil then
      local raw = stacks[id]
      if raw then
        local names = resolver:kernel(raw)
        for i, n in ipairs(names) do names[i] = n:gsub('_%[k%]$', '') end
        cache[id] = names
      else
        cache[id] = false
      end
    end
    return cache[id] or nil
  end
end

-- Live ------------------------------------------------------------------------

local function mark_kthreads(snap)
  for _, s in pairs(snap) do
    -- a kernel thread has no memory map: an empty /proc/PID/cmdline
    if s.state and read(M.proc .. '/' .. s.pid .. '/cmdline') == '' then s.kthread = true end
  end
end

--- Starts the accounting on a session that has resolved its target
--- (s:start() done), before s:begin(). Returns the state finish_on takes,
--- or nil, why. opts: kernel_stacks, attach.
function M.start_on(s, opts)
  opts = opts or {}
  local off = measure.bpf_unavailable()
  if off then return nil, 'thread-state accounting needs BPF: ' .. off end
  local filter, ferr = targets.bpf_filter(s.target)
  if not filter then return nil, ferr end
  local topts = { kernel_stacks = opts.kernel_stacks, attach = opts.attach }
  for k, v in pairs(filter) do topts[k] = v end
  local cpu0 = sys.rusage()
  local tr, err = s:start_tracer('tsa', tsa, topts)
  if not tr then return nil, 'tsa tracer: ' .. tostring(err) end
  -- right after attach: the reason of every thread already asleep
  local snap0 = M.snapshot(M.target_pids(s.target), true)
  if s.target.kind == 'system' or s.target.kind == 'cgroup' or s.target.kind == 'service' then
    mark_kthreads(snap0)
  end
  local st = { tr = tr, snap0 = snap0, cpu0 = cpu0, fds = {} }
  M.refresh(s, st)
  -- the window's own cost (leaving it on) is counted from here
  st.cpu_w0, st.t_w0 = sys.rusage(), sys.now()
  return st
end

--- Notes the target's open fds (start_on does it once; a long window does
--- it from time to time), so waits on fds closed before the end keep a name.
function M.refresh(s, st)
  -- the whole machine's fds once only: a scan of every process is not free
  if s.target.kind == 'system' and st.refreshed then return end
  st.refreshed = true
  M.fd_links(M.target_pids(s.target), st.fds)
end

-- the objects waited on, named while the target is still alive
local function name_waits(threads, top)
  local ok, w = pcall(require, 'perf_manual.collectors.waits')
  if not (ok and type(w) == 'table' and w.name) then return end
  local by_pid = {}
  for _, th in ipairs(threads) do
    by_pid[th.pid] = by_pid[th.pid] or {}
    for _, e in ipairs(th.waits) do table.insert(by_pid[th.pid], e) end
  end
  for pid, entries in pairs(by_pid) do pcall(w.name, pid, entries) end
  -- the top list holds copies: take the names over
  local named = {}
  for _, th in ipairs(threads) do
    for _, x in ipairs(th.waits) do
      named[table.concat({ th.tid, x.reason, tostring(x.syscall), tostring(x.fd), tostring(x.addr) }, '|')] = x
    end
  end
  for _, e in ipairs(top) do
    local x = named[table.concat({ e.tid, e.reason, tostring(e.syscall), tostring(e.fd), tostring(e.addr) }, '|')]
    if x then
      e.object, e.peer, e.remote, e.path, e.text = x.object, x.peer, x.remote, x.path, x.text
      e['local'], e.proto = x['local'], x.proto
    end
  end
end

--- Ends the accounting started by start_on, at the end of the session's
--- window (before the session stops a command it launched). Returns the
--- result (without the session's own finish). opts.name_waits = false
--- leaves the objects unnamed.
function M.finish_on(s, st, ended, opts)
  opts = opts or {}
  local tr = st.tr
  local cpu_w1, t_w1 = sys.rusage(), sys.now()
  tr:detach('window ended')
  local snap1 = M.snapshot(M.target_pids(s.target), false)
  local books = tr:read()
  local q = books.quality or {}
  local ctx = { names = bpf.syscall_names(), fd = M.fd_resolver(nil, st.fds), frames = frames_fn(books.stacks) }
  local window_s = (books.t1_ns - books.t0_ns) / 1e9
  local threads, total, top = M.finish(M.build(books, st.snap0, snap1, ctx))
  if opts.name_waits ~= false then name_waits(threads, top) end
  tr:stop()
  local cpu1 = sys.rusage()
  local function cpu(ru) return ru.utime + ru.stime end
  local user_cpu = cpu(cpu1) - cpu(st.cpu0)
  local on_s = t_w1 - st.t_w0
  local from_proc, head_s = 0, 0
  for _, th in ipairs(threads) do
    if th.source == '/proc' then from_proc = from_proc + 1 end
    head_s = head_s + (th.head_s or 0)
  end
  return {
    window_s = window_s,
    target = s.target.label,
    source = M.SOURCE:gsub('tp_btf', q.attach_path or 'tp_btf'),
    ended_by = ended,
    quality = { attach = q.attach_path, events_seen = q.events_seen, events_lost = q.events_lost,
      stack_errors = books.counters.stack_errors, clamped = books.counters.clamped,
      threads_from_proc = from_proc, head_attributed_s = head_s, detached = s.detached and s.detached.tsa },
    cost = { bpf_cpu_pct = q.bpf_cpu_pct, bpf_ns_per_run = q.bpf_ns_per_run, bpf_runs_sampled = q.bpf_runs_sampled,
      bpf_stats_coverage = q.bpf_stats_coverage, bpf_cost_note = q.bpf_cost_note,
      user_cpu_s = user_cpu, user_cpu_pct = window_s > 0 and user_cpu / window_s * 100 or nil,
      -- split: loading and the first snapshot, the window (the cost of
      -- leaving it on), reading and building the result
      load_cpu_s = cpu(st.cpu_w0) - cpu(st.cpu0), window_cpu_s = cpu(cpu_w1) - cpu(st.cpu_w0),
      window_cpu_pct = on_s > 0 and (cpu(cpu_w1) - cpu(st.cpu_w0)) / on_s * 100 or nil,
      end_cpu_s = cpu(cpu1) - cpu(cpu_w1) },
    threads = threads, total = total, waits = top,
  }
end

--- Measures thread states. opts: target (text or resolved), duration (s),
--- max_overhead, progress, note, kernel_stacks, attach ('tp_btf'|'raw_tp'),
--- name_waits (default true: annotate waits with the objects waited on,
--- when perf_manual.collectors.waits is there), soft (user errors -> nil, why).
---@return table? result, string? why
function M.run(opts)
  opts = opts or {}
  return measure.with_session({ target = opts.target or 'system', duration = opts.duration or 5,
    what = 'thread states', max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note,
    command = 'tsa', soft = opts.soft, stats_period_max = M.STATS_PERIOD_MAX }, function(s)
    s:start()
    local st, why = M.start_on(s, opts)
    if not st then return nil, why end
    s:begin()
    local ended = s:run { interval = 1, on_interval = function() M.refresh(s, st) end }
    local r = M.finish_on(s, st, ended, opts)
    local info = s:finish()
    r.target_info = info.target
    r.quality.detached = info.detached.tsa
    r.notes = info.notes
    return r
  end)
end

return M
