--- What a blocked thread waits on: names the object behind a wait the
--- thread-state accounting found (the pipe, socket, file or lock), and who
--- is at its other end, from /proc (and `ss` for unix socket peers).
---
--- `name(pid, entries)` annotates each wait entry in place and returns the
--- list. An entry, as the accounting gives it:
---   { reason = 'ipc', syscall = 'read', fd = 3, fd_link = 'pipe:[123]' (nil:
---     read /proc/PID/fd/FD now), fd_kind = 'pipe', addr = <futex address>,
---     tid =, seconds =, share = }
--- What it adds, by the object behind the wait:
---   pipe, FIFO   object = 'pipe:[inode]' (a FIFO: its path), peer = { pid=, comm= },
---                peers = every other process holding the same pipe (the
---                target's own tgid excluded). Both ends of a pipe show the
---                same inode: the peer is a holder with the other access mode
---                in its fdinfo (a read waits on a writer), else any holder.
---   unix socket  object = 'socket:[inode]', path = bound path if any, peer =
---                the process holding the peer socket's inode (the peer inode
---                from `ss -xn`: /proc/net/unix does not say it).
---   TCP / UDP    proto, local, remote ('127.0.0.1:8080', IPv6 as
---                '[::1]:8080'), state, from /proc/PID/net/{tcp,tcp6,udp,udp6}
---                by inode; when the connection's other end is on this host
---                (a socket whose local address is our remote and the other
---                way round), peer = the process holding it.
---   file         path (the fd's link), device (mount source), mount, fstype,
---                from the file's st_dev and /proc/PID/mountinfo; a block
---                device: path = device = the device node.
---   futex        (an entry with addr) object = '0x…', mapping = the mapping
---                of /proc/PID/maps holding it ('/usr/bin/app', '[heap]',
---                '[stack:TID]' when a thread's stack pointer is in it,
---                '[anon]'), and for an ELF file (or the anonymous .bss tail
---                right after it) symbol = the data symbol covering the
---                address, section = '.bss'.
---   eventfd, timerfd, signalfd, inotify: object = the link text;
---   epoll        object = the link text, watches = { { fd=, link=, kind= } }
---                from /proc/PID/fdinfo/EPFD (its tfd lines).
--- Always text = a short phrase: 'pid 4242 (feeder) via pipe', 'unix socket
--- to pid 77 (postgres)', 'tcp 127.0.0.1:5432 (pid 88 postgres)',
--- 'file /var/lib/x.db', 'lock g_lock (0x5625…, /usr/bin/app .bss)'.
---
--- Cost: one scan of /proc/*/fd per call, and only when a pipe or socket
--- needs a peer (only the wanted links are kept); net tables, mountinfo and
--- `ss` are read once per call when needed. A process or fd that vanished
--- keeps what was known: nothing here raises on a missing file.
---
--- `snapshot(pid)` → { [fd] = link } for every open fd, or nil, why.
local ffi = require('ffi')
local dirent = require('posix.dirent')
local pstat = require('posix.sys.stat')
local bit = require('bit')
local common = require('perf_manual.collectors.common')
local sym = require('perf_manual.sym')
local waits = require('perf_manual.waits')

local M = {}

local function read(path) return (common.read(path)) end

ffi.cdef [[ long readlink(const char *path, char *buf, unsigned long size); ]]
local linkbuf = ffi.new('char[4096]')

-- The target of a symlink, or nil. posix.unistd.readlink sizes its buffer
-- by lstat's st_size, which is 64 for every /proc/PID/fd link, and fails.
local function readlink(path)
  local n = ffi.C.readlink(path, linkbuf, 4096)
  if n < 0 then return nil end
  return ffi.string(linkbuf, n)
end
M.readlink = readlink

--- The network namespace of pid ("net:[N]") when it is not ours, else nil.
function M.foreign_netns(pid)
  local theirs = readlink(string.format('/proc/%d/ns/net', pid))
  if theirs and theirs ~= readlink('/proc/self/ns/net') then return theirs end
end

local function listdir(path)
  local ok, names = pcall(dirent.dir, path)
  if not ok or type(names) ~= 'table' then return {} end
  return names
end

--- { [fd] = link } of a process's open fds, or nil, why.
function M.snapshot(pid, root)
  root = root or '/proc'
  local dir = string.format('%s/%d/fd', root, pid)
  local ok, names = pcall(dirent.dir, dir)
  if not ok or type(names) ~= 'table' then return nil, 'cannot list ' .. dir end
  local out = {}
  for _, n in ipairs(names) do
    local fd = tonumber(n)
    if fd then
      local link = readlink(dir .. '/' .. n)
      if link then out[fd] = link end
    end
  end
  return out
end

-- addresses -------------------------------------------------------------------

-- the bytes of a 32-bit word as /proc/net prints it (native order, x86: little)
local LITTLE = ffi.abi('le')

local function word_bytes(hex)
  local b = {}
  for i = 1, 4 do b[i] = tonumber(hex:sub(2 * i - 1, 2 * i), 16) end
  if LITTLE then b[1], b[2], b[3], b[4] = b[4], b[3], b[2], b[1] end
  return b
end

local function format_v6(bytes)
  local g = {}
  for i = 1, 8 do g[i] = bytes[2 * i - 1] * 256 + bytes[2 * i] end
  -- the longest run of zero groups (2 or more) becomes '::'
  local best_at, best_len, at, len = nil, 1, nil, 0
  for i = 1, 9 do
    if i <= 8 and g[i] == 0 then
      if not at then at, len = i, 0 end
      len = len + 1
    elseif at then
      if len > best_len then best_at, best_len = at, len end
      at = nil
    end
  end
  local parts = {}
  local i = 1
  while i <= 8 do
    if i == best_at then
      parts[#parts + 1] = (i == 1 and ':' or '') .. (i + best_len > 8 and ':' or '')
      i = i + best_len
    else
      parts[#parts + 1] = string.format('%x', g[i])
      i = i + 1
    end
  end
  return table.concat(parts, ':')
end

--- A /proc/net address ("0100007F:1F90", or 32 hex digits for IPv6) as
--- host, port; an IPv4-mapped IPv6 address comes back as the IPv4 one.
function M.parse_addr(s)
  local h, p = s:match('^(%x+):(%x+)$')
  if not h then return nil end
  local port = tonumber(p, 16)
  if #h == 8 then
    return table.concat(word_bytes(h), '.'), port
  end
  if #h ~= 32 then return nil end
  local bytes = {}
  for w = 0, 3 do
    for _, v in ipairs(word_bytes(h:sub(8 * w + 1, 8 * w + 8))) do bytes[#bytes + 1] = v end
  end
  local mapped = true
  for i = 1, 10 do if bytes[i] ~= 0 then mapped = false end end
  if mapped and bytes[11] == 255 and bytes[12] == 255 then
    return string.format('%d.%d.%d.%d', bytes[13], bytes[14], bytes[15], bytes[16]), port
  end
  return format_v6(bytes), port
end

local function endpoint(host, port)
  if host:find(':', 1, true) then return string.format('[%s]:%d', host, port) end
  return string.format('%s:%d', host, port)
end

local TCP_STATES = { 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT',
  'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV' }

--- Rows of /proc/net/{tcp,tcp6,udp,udp6}: list of
--- { proto=, local=, remote= ('host:port'), state=, inode= }.
function M.parse_net(text, proto)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    local l, r, st, rest = line:match('^%s*%d+:%s+(%x+:%x+)%s+(%x+:%x+)%s+(%x%x)%s+(.*)$')
    if l then
      -- tx:rx tr:when retrnsmt uid timeout inode
      local inode = rest:match('^%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)')
      local lh, lp = M.parse_addr(l)
      local rh, rp = M.parse_addr(r)
      if lh and rh and inode then
        local state = TCP_STATES[tonumber(st, 16)]
        if proto:match('^udp') then state = state == 'ESTABLISHED' and 'connected' or 'unconnected' end
        out[#out + 1] = { proto = proto:gsub('6$', ''), ['local'] = endpoint(lh, lp), remote = endpoint(rh, rp),
          remote_port = rp, state = state or st, inode = tonumber(inode) }
      end
    end
  end
  return out
end

--- `ss -xn` text: { [local inode] = peer inode } for connected unix sockets.
function M.parse_ss_unix(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    if line:match('^u_') then
      local toks = {}
      for t in line:gsub('%s+users:%(.*$', ''):gmatch('%S+') do toks[#toks + 1] = t end
      local n = #toks
      local li, pi = tonumber(toks[n - 2]), tonumber(toks[n])
      if li and pi and pi ~= 0 then out[li] = pi end
    end
  end
  return out
end

--- /proc/net/unix text: { [inode] = bound path or false }.
function M.parse_unix(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    local inode, path = line:match('^%x+:%s+%x+%s+%x+%s+%x+%s+%x+%s+%x+%s+(%d+)%s*(.-)%s*$')
    if inode then out[tonumber(inode)] = path ~= '' and path or false end
  end
  return out
end

--- /proc/PID/maps text: every mapping, sorted by start:
--- { start=, stop=, perms=, offset=, dev=, inode=, path= }.
function M.parse_maps(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    local s, e, perms, off, dev, inode, path = line:match('^(%x+)%-(%x+) (%S+) (%x+) (%S+) (%d+)%s*(.-)%s*$')
    if s then
      out[#out + 1] = { start = tonumber(s, 16), stop = tonumber(e, 16), perms = perms, offset = tonumber(off, 16),
        dev = dev, inode = tonumber(inode), path = path ~= '' and path or nil }
    end
  end
  table.sort(out, function(a, b) return a.start < b.start end)
  return out
end

--- /proc/PID/mountinfo text: list of { dev = 'major:minor', mount=, fstype=, source= }.
function M.parse_mountinfo(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    local dev, mount = line:match('^%d+ %d+ (%d+:%d+) %S+ (%S+)')
    local fstype, source = line:match(' %- (%S+) (%S+)')
    if dev then
      mount = mount:gsub('\\(%d%d%d)', function(o) return string.char(tonumber(o, 8)) end)
      out[#out + 1] = { dev = dev, mount = mount, fstype = fstype, source = source }
    end
  end
  return out
end

--- The fds an epoll fd watches, from its /proc/PID/fdinfo text.
function M.parse_epoll_fdinfo(text)
  local out = {}
  for fd in (text or ''):gmatch('tfd:%s*(%d+)') do out[#out + 1] = tonumber(fd) end
  return out
end

-- access mode of an open fd from its fdinfo: 'r', 'w' or 'rw'
local function access_mode(pid, fd)
  local t = read(string.format('/proc/%d/fdinfo/%d', pid, fd))
  local flags = t and t:match('flags:%s*(%d+)')
  if not flags then return nil end
  local acc = tonumber(flags:sub(-1)) % 4
  return acc == 0 and 'r' or acc == 1 and 'w' or 'rw'
end

-- "major:minor" of a dev_t (glibc's encoding)
local function dev_string(d)
  local lo = bit.band(d % 4294967296, 0xffffffff)
  local hi = math.floor(d / 4294967296)
  local major = bit.bor(bit.band(bit.rshift(lo, 8), 0xfff), bit.band(hi, bit.bnot(0xfff)))
  local minor = bit.bor(bit.band(lo, 0xff), bit.band(bit.rshift(lo, 12), bit.bnot(0xff)))
  return string.format('%d:%d', major, minor)
end

-- one call's context: everything read at most once --------------------------

local Ctx = {}
Ctx.__index = Ctx

local function new_ctx(pid)
  local status = read(string.format('/proc/%d/status', pid))
  local tgid = status and tonumber(status:match('\nTgid:%s*(%d+)')) or pid
  return setmetatable({ pid = pid, tgid = tgid, comms = {}, wanted = {}, holders = {} }, Ctx)
end

function Ctx:comm(pid)
  local c = self.comms[pid]
  if c == nil then
    local t = read(string.format('/proc/%d/comm', pid))
    c = t and t:gsub('\n$', '') or false
    self.comms[pid] = c
  end
  return c or nil
end

function Ctx:fds()
  if self._fds == nil then self._fds = M.snapshot(self.pid) or false end
  return self._fds or nil
end

function Ctx:link(fd)
  local fds = self._fds
  if fds and fds[fd] then return fds[fd] end
  return readlink(string.format('/proc/%d/fd/%d', self.pid, fd))
end

-- the target's sockets by inode across its namespace's tables
function Ctx:inet(inode)
  if not self._inet then
    self._inet, self._by_ends = {}, {}
    for _, proto in ipairs({ 'tcp', 'tcp6', 'udp', 'udp6' }) do
      local text = read(string.format('/proc/%d/net/%s', self.pid, proto)) or read('/proc/net/' .. proto)
      for _, row in ipairs(M.parse_net(text, proto)) do
        if row.inode ~= 0 then self._inet[row.inode] = row end
        self._by_ends[row.proto .. ' ' .. row['local'] .. ' ' .. row.remote] = row
      end
    end
  end
  return self._inet[inode]
end

-- the socket on this host at the other end of row, if any
function Ctx:inet_peer(row)
  if row.remote_port == 0 then return nil end
  local p = self._by_ends[row.proto .. ' ' .. row.remote .. ' ' .. row['local']]
  if p and p.inode ~= 0 then return p end
end

function Ctx:unix(inode)
  if not self._unix then
    self._unix = M.parse_unix(read(string.format('/proc/%d/net/unix', self.pid)) or read('/proc/net/unix'))
  end
  return self._unix[inode]
end

function Ctx:unix_peer(inode)
  if not self._ss then
    -- ss sees the unix sockets of its own network namespace: enter the target's
    local cmd = 'ss -xnH 2>/dev/null'
    local theirs = readlink(string.format('/proc/%d/ns/net', self.pid))
    if theirs and theirs ~= readlink('/proc/self/ns/net') then
      cmd = string.format('nsenter -t %d -n %s', self.pid, cmd)
    end
    local f = io.popen(cmd)
    local text = f and f:read('*a') or ''
    if f then f:close() end
    self._ss = M.parse_ss_unix(text)
  end
  return self._ss[inode]
end

function Ctx:mounts()
  if not self._mounts then
    self._mounts = M.parse_mountinfo(read(string.format('/proc/%d/mountinfo', self.pid))
      or read('/proc/self/mountinfo'))
  end
  return self._mounts
end

function Ctx:maps()
  if not self._maps then self._maps = M.parse_maps(read(string.format('/proc/%d/maps', self.pid))) end
  return self._maps
end

-- '[stack:TID]' when an anonymous mapping holds a thread's stack pointer
-- (the kernel no longer names thread stacks in maps); a blocked thread's
-- /proc/…/syscall line ends with its sp and pc
function Ctx:thread_stack(m)
  for _, name in ipairs(listdir(string.format('/proc/%d/task', self.pid))) do
    local tid = tonumber(name)
    local line = tid and read(string.format('/proc/%d/task/%d/syscall', self.pid, tid))
    local sp = line and line:match('^%d+ .* 0x(%x+) 0x%x+%s*$')
    sp = sp and tonumber(sp, 16)
    if sp and sp >= m.start and sp < m.stop then return string.format('[stack:%d]', tid) end
  end
end

-- asks the /proc scan for the holders of `link`; fn(list) runs after it
function Ctx:want(link, fn)
  local w = self.wanted[link]
  if not w then w = {}; self.wanted[link] = w end
  w[#w + 1] = fn
end

-- one pass over /proc/*/fd keeping only the wanted links
function Ctx:scan()
  if not next(self.wanted) then return end
  for _, name in ipairs(listdir('/proc')) do
    local pid = tonumber(name)
    if pid then
      local dir = '/proc/' .. name .. '/fd/'
      for _, n in ipairs(listdir(dir)) do
        local link = readlink(dir .. n)
        if link and self.wanted[link] then
          local h = self.holders[link]
          if not h then h = {}; self.holders[link] = h end
          h[#h + 1] = { pid = pid, fd = tonumber(n) }
        end
      end
    end
  end
  for link, fns in pairs(self.wanted) do
    for _, fn in ipairs(fns) do fn(self.holders[link] or {}) end
  end
end

local function who(p)
  return p.comm and string.format('pid %d (%s)', p.pid, p.comm) or string.format('pid %d', p.pid)
end

-- holders of a pipe other than the target, one entry per process, the one
-- with the other access mode first
function Ctx:pipe_peers(holders, mode)
  local want = mode == 'r' and 'w' or mode == 'w' and 'r' or nil
  local by_pid, order = {}, {}
  for _, h in ipairs(holders) do
    if h.pid ~= self.tgid then
      local p = by_pid[h.pid]
      if not p then
        p = { pid = h.pid, comm = self:comm(h.pid) }
        by_pid[h.pid] = p
        order[#order + 1] = p
      end
      local m = want and not p.other_end and access_mode(h.pid, h.fd)
      if m and (m == want or m == 'rw') then p.other_end = true end
    end
  end
  table.sort(order, function(a, b)
    if (a.other_end or false) ~= (b.other_end or false) then return a.other_end or false end
    return a.pid < b.pid
  end)
  local out = {}
  for i, p in ipairs(order) do out[i] = { pid = p.pid, comm = p.comm } end
  return out
end

-- the process holding a socket inode (itself included: a socketpair inside one process)
function Ctx:socket_holder(holders)
  local seen, out = {}, {}
  for _, h in ipairs(holders) do
    if not seen[h.pid] then
      seen[h.pid] = true
      out[#out + 1] = { pid = h.pid, comm = self:comm(h.pid) }
    end
  end
  -- another process before the target itself
  table.sort(out, function(a, b)
    if (a.pid == self.tgid) ~= (b.pid == self.tgid) then return b.pid == self.tgid end
    return a.pid < b.pid
  end)
  return out
end

-- each kind of object -----------------------------------------------------------

local READS = { read = true, readv = true, pread64 = true, preadv = true, preadv2 = true, recvfrom = true,
  recvmsg = true, recvmmsg = true, splice = true }
local WRITES = { write = true, writev = true, pwrite64 = true, pwritev = true, pwritev2 = true, sendto = true,
  sendmsg = true, sendmmsg = true }

local function pipe_like(ctx, e, link, what)
  e.object = link
  local mode = e.fd and access_mode(ctx.pid, e.fd)
  if not mode then mode = READS[e.syscall or ''] and 'r' or WRITES[e.syscall or ''] and 'w' or nil end
  e.text = what .. ' ' .. link
  ctx:want(link, function(holders)
    local peers = ctx:pipe_peers(holders, mode)
    if #peers > 0 then
      e.peers, e.peer = peers, peers[1]
      e.text = who(peers[1]) .. ' via ' .. (what == 'fifo' and 'fifo ' .. link or what)
    else
      e.text = what .. ' ' .. link .. ' (no other process holds it)'
    end
  end)
end

local function unix_socket(ctx, e, inode, path)
  e.proto = 'unix'
  if path then e.path = path end
  local label = path and 'unix socket ' .. path or 'unix socket'
  e.text = label
  local peer_inode = ctx:unix_peer(inode)
  if not peer_inode then return end
  e.peer_inode = peer_inode
  ctx:want(string.format('socket:[%d]', peer_inode), function(holders)
    local hs = ctx:socket_holder(holders)
    if #hs > 0 then
      e.peer, e.peers = hs[1], hs
      e.text = label .. ' to ' .. (hs[1].pid == ctx.tgid and 'itself' or who(hs[1]))
    end
  end)
end

local function inet_socket(ctx, e, row)
  e.proto, e['local'], e.remote, e.state = row.proto, row['local'], row.remote, row.state
  if row.state == 'LISTEN' or row.remote_port == 0 then
    e.text = string.format('%s %s %s', row.proto, row.state == 'LISTEN' and 'listening on' or 'on', row['local'])
    return
  end
  e.text = string.format('%s %s', row.proto, row.remote)
  local p = ctx:inet_peer(row)
  if not p then return end
  ctx:want(string.format('socket:[%d]', p.inode), function(holders)
    local hs = ctx:socket_holder(holders)
    if #hs > 0 then
      e.peer, e.peers = hs[1], hs
      e.text = string.format('%s %s (%s)', row.proto, row.remote,
        hs[1].pid == ctx.tgid and 'itself' or who(hs[1]):gsub('%((.*)%)$', '%1'))
    end
  end)
end

local function file_object(ctx, e, link)
  e.object, e.path = link, link
  local st = e.fd and pstat.stat(string.format('/proc/%d/fd/%d', ctx.pid, e.fd)) or pstat.stat(link)
  if st and pstat.S_ISBLK(st.st_mode) ~= 0 then
    e.device = link
    e.text = 'block device ' .. link
    return
  end
  if st and pstat.S_ISCHR(st.st_mode) ~= 0 then
    e.device = link
    e.text = 'device ' .. link
    return
  end
  if st and pstat.S_ISFIFO(st.st_mode) ~= 0 then return pipe_like(ctx, e, link, 'fifo') end
  e.text = 'file ' .. link
  if not st then return end
  local dev = dev_string(st.st_dev)
  local best
  for _, m in ipairs(ctx:mounts()) do
    if m.dev == dev and (not best or #m.mount > #best.mount) and
        (link:sub(1, #m.mount) == m.mount or m.mount == '/') then
      best = m
    end
  end
  e.dev = dev
  if best then e.device, e.mount, e.fstype = best.source, best.mount, best.fstype end
end

local function epoll_object(ctx, e, link)
  e.object = link
  local fds = M.parse_epoll_fdinfo(read(string.format('/proc/%d/fdinfo/%d', ctx.pid, e.fd)))
  local watches, kinds = {}, {}
  for _, fd in ipairs(fds) do
    local l = ctx:link(fd)
    local k = waits.fd_kind(l)
    watches[#watches + 1] = { fd = fd, link = l, kind = k }
    if k and not kinds[k] then kinds[k] = true; kinds[#kinds + 1] = k end
  end
  e.watches = watches
  e.text = string.format('epoll on %d fd%s%s', #watches, #watches == 1 and '' or 's',
    #kinds > 0 and ' (' .. table.concat(kinds, ', ') .. ')' or '')
end

-- ELF load bias of the file mapped at m: from its mapping of the lowest
-- offset and the PT_LOAD that mapping starts
local function load_bias(maps, m, b)
  local first
  for _, x in ipairs(maps) do
    if x.dev == m.dev and x.inode == m.inode and (not first or x.offset < first.offset) then first = x end
  end
  for _, l in ipairs(b.info.loads or {}) do
    local page_off = l.offset - l.offset % 4096
    if page_off == first.offset then return first.start - (l.vaddr - l.vaddr % 4096) end
  end
end

local function futex_object(ctx, e)
  local addr = e.addr
  e.object = string.format('0x%x', addr)
  local maps = ctx:maps()
  local m, prev
  for i, x in ipairs(maps) do
    if addr >= x.start and addr < x.stop then m, prev = x, maps[i - 1] break end
  end
  local where = nil
  if m then
    -- an anonymous mapping right after a file's: that file's .bss tail
    local file = m
    if not m.path and prev and prev.stop == m.start and prev.path and prev.path:sub(1, 1) == '/' then file = prev end
    e.mapping = m.path or (file ~= m and file.path) or ctx:thread_stack(m) or '[anon]'
    where = e.mapping
    if file.path and file.path:sub(1, 1) == '/' and not file.path:find(' %(deleted%)$') then
      local b = sym.binary(file.path, file.dev .. ':' .. file.inode)
      local bias = b and b.elf and load_bias(maps, file, b)
      if bias then
        local v = addr - bias
        local name, off, section
        if b.symelf then name, off, section = b.symelf:lookup_data(v) end
        if not name then
          local n2, o2, s2 = b.elf:lookup_data(v)
          name, off, section = n2, o2, section or s2
        end
        if name then
          e.symbol = name
          if off and off > 0 then e.symbol_offset = off end
        end
        if section then e.section = section; where = where .. ' ' .. section end
      end
    end
  end
  local label = e.symbol and (e.symbol .. (e.symbol_offset and string.format('+0x%x', e.symbol_offset) or '')) or nil
  if label then
    e.text = string.format('lock %s (%s%s)', label, e.object, where and ', ' .. where or '')
  else
    e.text = string.format('lock %s%s', e.object, where and ' (' .. where .. ')' or '')
  end
end

local function fd_object(ctx, e, link)
  local kind = waits.fd_kind(link)
  e.fd_kind = e.fd_kind or kind
  if kind == 'pipe' then return pipe_like(ctx, e, link, 'pipe') end
  if kind == 'socket' then
    e.object = link
    local inode = tonumber(link:match('^socket:%[(%d+)%]'))
    local row = inode and ctx:inet(inode)
    if row then return inet_socket(ctx, e, row) end
    local path = inode and ctx:unix(inode)
    if path ~= nil then return unix_socket(ctx, e, inode, path or nil) end
    e.text = 'socket ' .. link
    return
  end
  if kind == 'epoll' and e.fd then return epoll_object(ctx, e, link) end
  if kind == 'file' or kind == 'chr' then return file_object(ctx, e, link) end
  e.object = link
  e.text = link:match('^anon_inode:%[?([%w_]+)') or link
end

local function fallback_text(e)
  if e.text then return end
  local label = e.reason and waits.LABELS[e.reason] or e.reason or 'wait'
  e.text = e.syscall and string.format('%s in %s()', label, e.syscall) or label
end

--- Annotates each wait entry of process pid in place (see the header) and
--- returns the list.
function M.name(pid, entries)
  local ctx = new_ctx(pid)
  for _, e in ipairs(entries or {}) do
    if e.addr and (e.reason == 'lock' or not e.fd) then
      futex_object(ctx, e)
    elseif e.fd then
      local link = e.fd_link or ctx:link(e.fd)
      if link then
        e.fd_link = link
        fd_object(ctx, e, link)
      end
    end
  end
  ctx:scan()
  for _, e in ipairs(entries or {}) do fallback_text(e) end
  return entries
end

return M
