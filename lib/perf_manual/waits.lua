--- What a blocked thread waits for: the reasons of thread-state accounting
--- and the rules that map a wait to one of them. The rules are plain data,
--- read in order, first match wins; a team adds its own in front with
--- M.extend (a playbook directory's `wait_rules.lua` returns such a list).
---
--- A wait, as the tracers describe it:
---   { syscall = 'read',         -- name of the syscall it blocked in (nil: none, e.g. a page fault)
---     fd_kind = 'pipe',         -- kind of the fd it blocked on: pipe unix tcp udp socket file
---                               --   block eventfd timerfd signalfd inotify tty anon
---     state = 'S' | 'D',        -- interruptible or uninterruptible sleep
---     iowait = true,            -- the kernel flagged the sleep as I/O wait
---     frames = { 'pipe_read', 'vfs_read', ... } }  -- kernel functions, innermost first
---   M.classify(w)  -> 'ipc', the rule that matched
local M = {}

--- The states of a thread's wall-clock time, in display order.
M.STATES = { 'cpu', 'runq', 'lock', 'io', 'net', 'ipc', 'poll', 'sleep', 'memory', 'child', 'other' }

M.LABELS = {
  cpu = 'on CPU',
  runq = 'runnable, waiting for a CPU',
  lock = 'lock (futex, kernel lock)',
  io = 'block I/O',
  net = 'network socket',
  ipc = 'pipe / unix socket',
  poll = 'poll/epoll/select (waiting for events)',
  sleep = 'sleep',
  memory = 'memory (page faults, reclaim, swap-in)',
  child = 'child process',
  other = 'other',
}

--- Short names for narrow columns.
M.SHORT = { cpu = 'cpu', runq = 'runq', lock = 'lock', io = 'io', net = 'net', ipc = 'pipe',
  poll = 'poll', sleep = 'sleep', memory = 'mem', child = 'child', other = 'other' }

--- Blocked states (everything but cpu and runq).
M.BLOCKED = {}
for _, s in ipairs(M.STATES) do
  if s ~= 'cpu' and s ~= 'runq' then M.BLOCKED[#M.BLOCKED + 1] = s end
end

local by_fd = { 'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv', 'pwritev',
  'preadv2', 'pwritev2', 'recvfrom', 'recvmsg', 'recvmmsg', 'sendto', 'sendmsg', 'sendmmsg',
  'accept', 'accept4', 'connect', 'splice', 'tee', 'sendfile', 'copy_file_range' }

--- What each kind of fd means when a thread blocks reading or writing it.
M.FD_KINDS = {
  pipe = 'ipc', unix = 'ipc', fifo = 'ipc',
  tcp = 'net', udp = 'net', socket = 'net', netlink = 'other',
  file = 'io', block = 'io',
  eventfd = 'poll', timerfd = 'poll', signalfd = 'poll', inotify = 'poll', epoll = 'poll',
  tty = 'other', chr = 'other', anon = 'other',
}

-- Rules: { reason, frame = pattern } matches a kernel frame (Lua pattern,
-- anchored by the rule), { reason, syscall = name | {names} } the syscall,
-- { reason, fd = true } the kind of fd, { reason, state = 'D', iowait = true }
-- the sleep itself. Frames come first: memory reclaim or a kernel mutex
-- inside a write() is what the thread waits for, not the pipe.
local builtin = {
  -- memory: reclaim, swap-in, throttling on a memory limit
  { 'memory', frame = '^try_to_free_' }, { 'memory', frame = '^shrink_' },
  { 'memory', frame = '^__alloc_pages_slowpath' }, { 'memory', frame = '^throttle_direct_reclaim' },
  { 'memory', frame = '^mem_cgroup_handle_over_high' }, { 'memory', frame = '^__perform_reclaim' },
  { 'memory', frame = '^do_swap_page' }, { 'memory', frame = '^swap_read' },
  { 'memory', frame = '^swap_cluster_readahead' }, { 'memory', frame = '^compact_zone' },
  -- writers throttled by dirty-page writeback wait on the disk
  { 'io', frame = '^balance_dirty_pages' }, { 'io', frame = '^blk_mq_get_tag' },
  { 'io', frame = '^jbd2_' }, { 'io', frame = '^submit_bio_wait' },
  { 'io', frame = '^file_write_and_wait' }, { 'io', frame = '^filemap_fdatawait' },
  -- page faults that wait for a page from a file
  { 'memory', frame = '^filemap_fault' }, { 'memory', frame = '^handle_mm_fault' },
  { 'memory', frame = '^exc_page_fault' },
  -- kernel locks
  { 'lock', frame = '^__mutex_lock' }, { 'lock', frame = '^mutex_lock' },
  { 'lock', frame = '^rwsem_down_' }, { 'lock', frame = '^down_read' }, { 'lock', frame = '^down_write' },
  { 'lock', frame = '^rt_mutex' }, { 'lock', frame = '^percpu_rwsem_wait' },
  { 'lock', frame = '^futex_wait' }, { 'lock', frame = '^__flock_lock' }, { 'lock', frame = '^locks_lock' },
  -- the waits the syscall names alone
  { 'lock', syscall = { 'futex', 'futex_waitv', 'flock' } },
  { 'sleep', syscall = { 'nanosleep', 'clock_nanosleep', 'pause' } },
  { 'poll', syscall = { 'poll', 'ppoll', 'select', 'pselect6', 'epoll_wait', 'epoll_pwait',
    'epoll_pwait2', 'io_getevents', 'io_pgetevents', 'rt_sigtimedwait', 'rt_sigsuspend' } },
  { 'child', syscall = { 'wait4', 'waitid' } },
  { 'io', syscall = { 'fsync', 'fdatasync', 'sync', 'syncfs', 'sync_file_range', 'msync',
    'io_uring_enter' } },
  -- read/write & co: what the fd is decides
  { 'fd', syscall = by_fd },
  -- kernel frames that say what an fd wait is, when the fd is unknown
  { 'ipc', frame = '^pipe_read' }, { 'ipc', frame = '^pipe_write' }, { 'ipc', frame = '^unix_stream_' },
  -- 6.14+ names the pipe functions anon_pipe_read / anon_pipe_write
  { 'ipc', frame = '^anon_pipe_read' }, { 'ipc', frame = '^anon_pipe_write' },
  { 'ipc', frame = '^unix_dgram_' }, { 'ipc', frame = '^wait_for_partner' },
  { 'net', frame = '^sk_wait_data' }, { 'net', frame = '^inet_csk_accept' }, { 'net', frame = '^sk_stream_wait' },
  { 'net', frame = '^tcp_recvmsg' }, { 'net', frame = '^__skb_wait_for_more' },
  { 'sleep', frame = '^do_nanosleep' }, { 'sleep', frame = '^hrtimer_nanosleep' },
  { 'poll', frame = '^ep_poll' }, { 'poll', frame = '^do_sys_poll' }, { 'poll', frame = '^do_select' },
  { 'child', frame = '^do_wait' },
  { 'io', frame = '^io_schedule' }, { 'io', frame = '^folio_wait_bit' }, { 'io', frame = '^wait_on_page_bit' },
  -- the sleep itself
  { 'io', state = 'D', iowait = true },
  -- blocked outside any syscall: a page fault
  { 'memory', no_syscall = true },
}

local team = {}
local team_dirs, loaded = {}, true
-- a search path set before this module was loaded (perf_manual.verbs.set_path)
do
  local verbs = package.loaded['perf_manual.verbs']
  if verbs and verbs.team_dirs then team_dirs, loaded = verbs.team_dirs(), false end
end

--- Puts a team's rules in front of the built-in ones (same form as above).
function M.extend(rules)
  for i = #rules, 1, -1 do table.insert(team, 1, rules[i]) end
end

--- Drops the team rules (tests, and a new search path).
function M.reset() team = {} end

--- The playbook directories whose `wait_rules.lua` (a list of rules in the
--- form above) goes in front of the built-in rules; read on first use.
function M.set_path(dirs)
  team_dirs, loaded = dirs or {}, false
end

local function bad(path, why)
  io.stderr:write('perf_manual: ' .. path .. ': ' .. why .. '\n')
  os.exit(2)
end

local function load_team()
  loaded = true
  for i = #team_dirs, 1, -1 do
    local path = team_dirs[i] .. '/wait_rules.lua'
    local f = io.open(path)
    if f then
      f:close()
      local chunk, err = loadfile(path)
      if not chunk then bad(path, err) end
      local ok, rules = pcall(chunk)
      if not ok then bad(path, tostring(rules)) end
      if type(rules) ~= 'table' then bad(path, 'expected a list of rules, like { { "net", syscall = "ioctl" } }') end
      for j, r in ipairs(rules) do
        if type(r) ~= 'table' or not M.LABELS[r[1]] then
          bad(path, 'rule ' .. j .. ': the first field must be a state (lock, io, net, ipc, poll, sleep, memory, ' ..
            'child, other)')
        end
      end
      M.extend(rules)
    end
  end
end

--- The rules in the order they are read.
function M.rules()
  if not loaded then load_team() end
  local out = {}
  for _, r in ipairs(team) do out[#out + 1] = r end
  for _, r in ipairs(builtin) do out[#out + 1] = r end
  return out
end

local function any(list, v)
  if type(list) ~= 'table' then return list == v end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function matches(r, w)
  if r.frame then
    for _, f in ipairs(w.frames or {}) do
      if f:match(r.frame) then return true end
    end
    return false
  end
  if r.syscall then return w.syscall ~= nil and any(r.syscall, w.syscall) end
  if r.no_syscall then return w.syscall == nil and w.in_syscall == false end
  if r.state then
    return w.state == r.state and (r.iowait == nil or (w.iowait and true or false) == r.iowait)
  end
  return false
end

--- The reason a wait is counted under (one of M.BLOCKED), and the rule
--- that decided it. A read/write whose fd kind is unknown falls through to
--- the frame rules after it, then to 'other'.
function M.classify(w)
  for _, r in ipairs(M.rules()) do
    if matches(r, w) then
      local reason = r[1]
      if reason ~= 'fd' then return reason, r end
      local k = w.fd_kind and M.FD_KINDS[w.fd_kind]
      if k then return k, r end
    end
  end
  return 'other', nil
end

--- Kind of an fd from the target of its /proc/PID/fd link
--- ('pipe:[123]', 'socket:[45]', 'anon_inode:[eventfd]', '/dev/pts/1', a path);
--- sockets come back as 'socket' (the caller knows the protocol).
function M.fd_kind(link)
  if not link then return nil end
  if link:match('^pipe:') then return 'pipe' end
  if link:match('^socket:') then return 'socket' end
  local anon = link:match('^anon_inode:%[?([%w_]+)')
  if anon then
    if anon == 'eventpoll' then return 'epoll' end
    if M.FD_KINDS[anon] then return anon end
    return 'anon'
  end
  if link:match('^/dev/pts/') or link:match('^/dev/tty') then return 'tty' end
  if link:match('^/dev/') then return 'chr' end
  if link:match('^/') then return 'file' end
  return 'anon'
end

return M
