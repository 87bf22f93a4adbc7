--- Request tracer: per-connection request latency of a server, from its own
--- socket syscalls (what `red-check --passive` reports as Duration). Kernel
--- side: bpf/red.bpf.c, structs mirrored from bpf/red.h.
---
--- A connection is an fd of a traced process that accept/accept4 returned
--- while tracing, or an inbound socket found in /proc at start (TCP whose
--- local port is a listening port, or a unix stream socket accepted on a
--- named listener). On a connection, a read-side call returning data starts
--- a request when none is pending; the first write-side call returning > 0
--- ends it. Other fds (files, pipes, outbound sockets) are counted apart and
--- never make a request.
---
---   local t = assert(red.start{ pid = 1234 })   -- the process and its children
---   local r = t:read{ clear = true }            -- per interval
---   -- the text of a result is perf_manual.report.tracers' job, not this module's
local ffi = require('ffi')
local base = require('perf_manual.tracers.base')
local hist = require('perf_manual.hist')
local util = require('perf_manual.util')

local M = {}

M.name = 'red'
M.event = 'requests'
M.aliases = { 'red' }
M.summary = 'request latency per connection from a server\'s socket syscalls (read -> first write)'
M.tracepoints = { 'raw_syscalls/sys_enter', 'raw_syscalls/sys_exit', 'sched/sched_process_fork' }

-- bpf/red.h
M.SYSCALL_MAX = 512
M.ERRNO_MAX = 256
M.SUB_BITS = 5
M.SUB = 32
M.MAX_EXP = 36
M.SLOTS = M.SUB + (M.MAX_EXP - M.SUB_BITS) * M.SUB
M.MAX_CONNS = 65536
M.MAX_TGIDS = 1024
M.KINDS = { [1] = 'accept', [2] = 'read', [3] = 'write', [4] = 'close' }
M.KIND_NR = 5
M.CONN_ACCEPTED, M.CONN_AT_START = 1, 2

--- The syscalls of each kind (names from the kernel's table; the ones a
--- machine lacks are skipped).
M.calls = {
  accept = { 'accept', 'accept4' },
  read = { 'read', 'readv', 'recvfrom', 'recvmsg' },
  write = { 'write', 'writev', 'sendto', 'sendmsg', 'sendfile', 'sendfile64' },
  close = { 'close' },
}
local KIND_OF = { accept = 1, read = 2, write = 3, close = 4 }

ffi.cdef(string.format([[
struct pm_red_conn_key { uint32_t tgid, fd; };
struct pm_red_conn { uint64_t start_ns, flags; };
struct pm_red_stats {
  uint64_t calls[%d];
  uint64_t other_fd[%d];
  uint64_t requests, started, closed_pending, unpaired_writes, eof_reads;
  uint64_t conns_added, conns_removed;
  uint64_t sum_ns, min_ns, max_ns;
  uint64_t slots[%d];
  uint64_t errs[%d][%d];
};
]], M.KIND_NR, M.KIND_NR, M.SLOTS, M.KIND_NR, M.ERRNO_MAX))

local stats_t = ffi.typeof('const struct pm_red_stats *')
local key_t = ffi.typeof('const struct pm_red_conn_key *')
local conn_t = ffi.typeof('const struct pm_red_conn *')

--- FFI mirror sizes, checked by the spec against the object's BTF.
function M.sizeof()
  return { stats = ffi.sizeof('struct pm_red_stats'), conn = ffi.sizeof('struct pm_red_conn'),
           conn_key = ffi.sizeof('struct pm_red_conn_key') }
end

--- The rodata table red_kind[]: byte per syscall number, 0 = not ours.
---@param names table<integer, string> syscall number -> name
function M.kind_table(names)
  local by_name = {}
  for nr, name in pairs(names) do by_name[name] = nr end
  local bytes = {}
  for i = 1, M.SYSCALL_MAX do bytes[i] = 0 end
  for kind, list in pairs(M.calls) do
    for _, name in ipairs(list) do
      local nr = by_name[name]
      if nr and nr < M.SYSCALL_MAX then bytes[nr + 1] = KIND_OF[kind] end
    end
  end
  return string.char(unpack(bytes))
end

-- Histogram ---------------------------------------------------------------------

--- Lower bound and width (ns) of log-linear slot i (0-based), as red.h
--- lays them out.
function M.slot_bounds(i)
  if i < M.SUB then return i, 1 end
  local g, m = math.floor((i - M.SUB) / M.SUB), (i - M.SUB) % M.SUB
  local width = 2 ^ g
  return (M.SUB + m) * width, width
end

--- Slot of a value in ns (the same arithmetic as red_slot in the BPF code).
function M.slot_of(v)
  if v < M.SUB then return math.floor(v) end
  local e = math.floor(math.log(v) / math.log(2) + 1e-12)
  if 2 ^ e > v then e = e - 1 end
  if 2 ^ (e + 1) <= v then e = e + 1 end
  if e >= M.MAX_EXP then return M.SLOTS - 1 end
  return M.SUB + (e - M.SUB_BITS) * M.SUB + math.floor(v / 2 ^ (e - M.SUB_BITS)) % M.SUB
end

--- Slots (1-based counts) -> perf_manual.hist buckets (ns) of the non-empty
--- slots; the last slot is open (it also holds everything above).
function M.buckets(slots)
  local out = {}
  for i = 1, #slots do
    if slots[i] > 0 then
      local lo, w = M.slot_bounds(i - 1)
      out[#out + 1] = { lo = lo, hi = lo + w - 1, count = slots[i], open = i == M.SLOTS or nil }
    end
  end
  return out
end

--- Percentiles (seconds) from slots (1-based list of counts) and the exact
--- min/max/sum, by perf_manual.hist's quantile: the rule the active mode's
--- histogram (runtime/http.c) answers with. Buckets are at most 1/32 of
--- their value wide, so the error is under 1.6%.
---@return table? latency { p50, p75, p90, p99, 'p99.9', 'p99.99', min, max, mean }, table histogram
function M.latency(slots, min_ns, max_ns, sum_ns)
  local n = 0
  for i = 1, #slots do n = n + slots[i] end
  local histogram = util.array()
  for i = 1, #slots do
    if slots[i] > 0 then
      local lo, w = M.slot_bounds(i - 1)
      histogram[#histogram + 1] = { lo / 1e9, (lo + w) / 1e9, slots[i] }
    end
  end
  if n == 0 then return nil, histogram end
  local lat = { min = min_ns / 1e9, max = max_ns / 1e9, mean = sum_ns / n / 1e9 }
  local buckets = M.buckets(slots)
  for _, q in ipairs({ 0.50, 0.75, 0.90, 0.99, 0.999, 0.9999 }) do
    lat[hist.name(q)] = hist.quantile(buckets, q, min_ns, max_ns) / 1e9
  end
  return lat, histogram
end

-- Decoding -----------------------------------------------------------------------

local function zero_counts()
  local c = {}
  for _, k in pairs(M.KINDS) do c[k] = 0 end
  return c
end

--- Decodes the `stats` entry read with percpu = 'list' (one value string per
--- CPU) and folds the CPUs: counters add up, min/max are taken over CPUs.
function M.decode_stats(percpu)
  local size = ffi.sizeof('struct pm_red_stats')
  local d = {
    calls = zero_counts(), other_fd = zero_counts(), errnos = {},
    requests = 0, started = 0, closed_pending = 0, unpaired_writes = 0, eof_reads = 0,
    conns_added = 0, conns_removed = 0, sum_ns = 0, min_ns = nil, max_ns = 0, slots = {},
  }
  for _, k in pairs(M.KINDS) do d.errnos[k] = {} end
  for i = 1, M.SLOTS do d.slots[i] = 0 end
  for _, vb in ipairs(percpu) do
    assert(#vb == size, 'red: bad stats size ' .. #vb)
    local v = ffi.cast(stats_t, vb)
    for k, name in pairs(M.KINDS) do
      d.calls[name] = d.calls[name] + tonumber(v.calls[k])
      d.other_fd[name] = d.other_fd[name] + tonumber(v.other_fd[k])
      for e = 1, M.ERRNO_MAX - 1 do
        local n = tonumber(v.errs[k][e])
        if n > 0 then d.errnos[name][e] = (d.errnos[name][e] or 0) + n end
      end
    end
    for _, f in ipairs({ 'requests', 'started', 'closed_pending', 'unpaired_writes', 'eof_reads', 'conns_added',
                         'conns_removed', 'sum_ns' }) do
      d[f] = d[f] + tonumber(v[f])
    end
    local mn, mx = tonumber(v.min_ns), tonumber(v.max_ns)
    if tonumber(v.requests) > 0 and (not d.min_ns or mn < d.min_ns) then d.min_ns = mn end
    if mx > d.max_ns then d.max_ns = mx end
    for i = 0, M.SLOTS - 1 do
      local n = v.slots[i]
      if n > 0 then d.slots[i + 1] = d.slots[i + 1] + tonumber(n) end
    end
  end
  d.min_ns = d.min_ns or 0
  return d
end

--- Decodes one `conns` entry.
function M.decode_conn(kb, vb)
  local k, v = ffi.cast(key_t, kb), ffi.cast(conn_t, vb)
  return { tgid = tonumber(k.tgid), fd = tonumber(k.fd), start_ns = tonumber(v.start_ns), flags = tonumber(v.flags) }
end

--- Key and value bytes of a conns entry (user space adds the sockets found at start).
function M.encode_conn(tgid, fd, flags)
  local k = ffi.new('struct pm_red_conn_key', { tgid = tgid, fd = fd })
  local v = ffi.new('struct pm_red_conn', { start_ns = 0, flags = flags or M.CONN_AT_START })
  return ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v))
end

M.benign_errnos = { EAGAIN = true, EWOULDBLOCK = true, EINTR = true }

--- Decoded stats + the connection table's state -> a result table.
--- conns: { live = n, pending = n, processes = n }; evicted: connections the
--- LRU map dropped (computed by the caller from its counts).
function M.aggregate(d, conns, seconds, evicted)
  local errno_name = require('perf_manual.tracers.syscall').errno_name
  local lat, histogram = M.latency(d.slots, d.min_ns, d.max_ns, d.sum_ns)
  local errors, benign = {}, {}
  local n_err = 0
  for _, kind in ipairs({ 'accept', 'read', 'write' }) do
    for e, n in pairs(d.errnos[kind] or {}) do
      local name = errno_name(e)
      local into = M.benign_errnos[name] and benign or errors
      into[kind .. ' ' .. name] = (into[kind .. ' ' .. name] or 0) + n
      if not M.benign_errnos[name] then n_err = n_err + n end
    end
  end
  local per = function(n) return seconds and seconds > 0 and n / seconds or nil end
  local accept_failed = 0
  for _, n in pairs(d.errnos.accept or {}) do accept_failed = accept_failed + n end
  return {
    tracer = 'red', seconds = seconds,
    requests = d.requests, started = d.started,
    rate = per(d.requests),
    closed_without_response = d.closed_pending,
    unpaired_writes = d.unpaired_writes,
    eof_reads = d.eof_reads,
    calls = d.calls, accepted = d.calls.accept - accept_failed,
    other_fd = { read = d.other_fd.read, write = d.other_fd.write },
    errors = { total = n_err, by = errors, benign = benign },
    latency = lat, histogram = histogram,
    slots = d.slots, sum_ns = d.sum_ns, min_ns = d.min_ns, max_ns = d.max_ns,
    conns = { tracked = conns and conns.live, pending = conns and conns.pending, evicted = evicted,
              added = d.conns_added, removed = d.conns_removed },
  }
end

-- Finding the target and its connections in /proc ------------------------------

local function children_of(pid)
  local out = {}
  local dirent = require('posix.dirent')
  local ok, tasks = pcall(dirent.dir, '/proc/' .. pid .. '/task')
  for _, tid in ipairs(ok and tasks or {}) do
    if tid:match('^%d+$') then
      local s = util.readfile('/proc/' .. pid .. '/task/' .. tid .. '/children') or ''
      for c in s:gmatch('%d+') do out[#out + 1] = tonumber(c) end
    end
  end
  return out
end

--- pid and all its descendants (from /proc/PID/task/*/children), pid first.
function M.descendants(pid, max)
  max = max or M.MAX_TGIDS
  local out, seen, i = { pid }, { [pid] = true }, 1
  while i <= #out and #out < max do
    for _, c in ipairs(children_of(out[i])) do
      if not seen[c] and #out < max then seen[c] = true; out[#out + 1] = c end
    end
    i = i + 1
  end
  return out
end

--- Parses /proc/net/tcp or tcp6 text: inode -> { state = hex, port = n },
--- and the set of listening ports.
function M.parse_tcp(text, socks, listening)
  socks, listening = socks or {}, listening or {}
  for line in (text or ''):gmatch('[^\n]+') do
    local port, st, inode = line:match('^%s*%d+: %x+:(%x+) %x+:%x+ (%x%x) %S+ %S+ %S+ +%d+ +%d+ (%d+)')
    if port then
      port = tonumber(port, 16)
      socks[tonumber(inode)] = { proto = 'tcp', state = st, port = port }
      if st == '0A' then listening[port] = true end
    end
  end
  return socks, listening
end

--- Parses /proc/net/unix text: inode -> { proto = 'unix', type, state, path, listener }.
function M.parse_unix(text, socks)
  socks = socks or {}
  for line in (text or ''):gmatch('[^\n]+') do
    local flags, typ, st, inode, path = line:match('^%x+: %x+ %x+ (%x+) (%x+) (%x+) +(%d+) ?(.*)$')
    if inode then
      socks[tonumber(inode)] = { proto = 'unix', type = typ, state = st, path = path ~= '' and path or nil,
                                 listener = tonumber(flags, 16) % 0x20000 >= 0x10000 }
    end
  end
  return socks
end

--- Is this socket (from the parsers above) the server side of a connection?
--- TCP: not listening, and its local port is one some socket listens on
--- (outbound connections use ephemeral ports). Unix stream/seqpacket:
--- connected and named (an accepted socket carries its listener's name;
--- socketpairs and client ends have none).
function M.inbound(s, listening)
  if not s then return false end
  if s.proto == 'tcp' then return s.state ~= '0A' and listening[s.port] == true end
  return (s.type == '0001' or s.type == '0005') and s.state == '03' and s.path ~= nil and not s.listener
end

local function netns_tables(pid, cache)
  -- stat() follows the magic link: the namespace's inode names it
  local st = require('posix.sys.stat').stat('/proc/' .. pid .. '/ns/net')
  local ns = st and st.st_ino or ('pid ' .. pid)
  if cache[ns] then return cache[ns] end
  local socks, listening = {}, {}
  M.parse_tcp(util.readfile('/proc/' .. pid .. '/net/tcp'), socks, listening)
  M.parse_tcp(util.readfile('/proc/' .. pid .. '/net/tcp6'), socks, listening)
  M.parse_unix(util.readfile('/proc/' .. pid .. '/net/unix'), socks)
  cache[ns] = { socks = socks, listening = listening }
  return cache[ns]
end

--- Inbound connections open in pid now: list of fds.
function M.inbound_fds(pid, cache)
  cache = cache or {}
  local dirent, pstat = require('posix.dirent'), require('posix.sys.stat')
  local ok, fds = pcall(dirent.dir, '/proc/' .. pid .. '/fd')
  if not ok or not fds then return {} end
  local tables
  local out = {}
  for _, fd in ipairs(fds) do
    -- stat() follows /proc/PID/fd/N to the socket itself: its inode is the
    -- one /proc/net lists
    local st = fd:match('^%d+$') and pstat.stat('/proc/' .. pid .. '/fd/' .. fd)
    if st and pstat.S_ISSOCK(st.st_mode) ~= 0 then
      tables = tables or netns_tables(pid, cache)
      if M.inbound(tables.socks[st.st_ino], tables.listening) then out[#out + 1] = tonumber(fd) end
    end
  end
  table.sort(out)
  return out
end

local function all_pids()
  local out = {}
  for _, d in ipairs(require('posix.dirent').dir('/proc') or {}) do
    if d:match('^%d+$') then out[#out + 1] = tonumber(d) end
  end
  return out
end

-- Live tracer ----------------------------------------------------------------

local Red = setmetatable({}, { __index = base.Tracer })
Red.__index = Red

--- Starts tracing. opts: pid (that process and, unless children = false,
--- its descendants, now and forked later) | cgroup | neither (every
--- process); stats = false (do not measure the programs' run time).
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  if opts.tid then return nil, 'requests: a connection belongs to a process: give a pid, not a thread id' end
  local cfg, err = base.start_config(opts, M.tracepoints)
  if not cfg then return nil, err end
  local pids
  if opts.pid then
    pids = opts.children == false and { opts.pid } or M.descendants(opts.pid)
  end
  local bpf = require('perf_manual.bpf')
  local names = bpf.syscall_names()
  local obj, oerr = bpf.open('red')
  if not obj then return nil, oerr end
  -- common.h's tgid filter stays 0: the tgids map holds the target
  obj:set_config { red_kind = M.kind_table(names), targ_all = pids == nil, targ_cgroup_id = cfg.targ_cgroup_id,
                   targ_tgid = 0, targ_pid = 0 }
  local ok, lerr = obj:load { stats = false }
  if not ok then obj:close() return nil, lerr end
  local tgids = obj:map('tgids')
  for _, p in ipairs(pids or {}) do tgids:update(p, '\1\0\0\0') end
  ok, lerr = obj:attach { 'red_enter', 'red_exit', 'red_fork' }
  if not ok then obj:close() return nil, lerr end
  local t = base.Tracer.new('red', obj, { attach_path = 'raw_tp', stats = opts.stats })
  t.conns = obj:map('conns')
  t.stats_map = obj:map('stats')
  t.pids = pids
  -- connections accepted before we attached: inbound sockets open now (an
  -- entry the programs made meanwhile is kept: it may hold a request)
  local cache, added, at_start = {}, 0, 0
  for _, p in ipairs(pids or all_pids()) do
    for _, fd in ipairs(M.inbound_fds(p, cache)) do
      local k, v = M.encode_conn(p, fd, M.CONN_AT_START)
      at_start = at_start + 1
      if not t.conns:lookup(k) and t.conns:update(k, v) then added = added + 1 end
    end
  end
  t.conns_at_start = at_start
  t.added_total, t.removed_total, t.user_added = 0, 0, added
  t.evicted_prev = 0
  return setmetatable(t, Red)
end

--- Connections tracked now and requests pending on them.
function Red:conn_state()
  local live, pending = 0, 0
  for _, e in ipairs(assert(self.conns:read {})) do
    live = live + 1
    if M.decode_conn(e.key, e.value).start_ns ~= 0 then pending = pending + 1 end
  end
  return { live = live, pending = pending }
end

--- Detaches, then reads: with the programs stopped the connection table and
--- the counters agree, so evictions and requests in flight are exact.
function Red:stop()
  if self.closed then return self.final end
  if self.obj and not self.detached_at then
    self:quality() -- keep the last figures, as Tracer:detach does
    self.obj:detach()
    self.detached_at = require('perf_manual.sys').now()
  end
  self.final = self:read()
  self:close()
  return self.final
end

--- Reads the maps: the result since start (or since the last clearing read).
--- While attached, a connection closed between the two map reads can make
--- that interval's eviction count off by one; the final read is exact.
function Red:read(opts)
  opts = opts or {}
  local now = require('perf_manual.sys').now()
  local res
  if self.closed then return self.final end
  local conns = self:conn_state()
  local entries = assert(self.stats_map:read { percpu = 'list', clear = opts.clear })
  local d = M.decode_stats(entries[1] and entries[1].value or {})
  -- the LRU map drops entries silently: what was added and not removed nor
  -- still there was evicted
  local added, removed = self.added_total + d.conns_added, self.removed_total + d.conns_removed
  local evicted_total = math.max(0, self.user_added + added - removed - conns.live)
  res = M.aggregate(d, conns, (self.detached_at or now) - self.since, math.max(0, evicted_total - self.evicted_prev))
  res.processes = self.pids and util.array(self.pids) or nil
  res.conns.at_start = self.conns_at_start
  res.quality = self:quality()
  res.quality.conns_evicted = evicted_total
  if opts.clear then
    self.since = now
    self.added_total, self.removed_total, self.evicted_prev = added, removed, evicted_total
  end
  return res
end

function M.to_json(res)
  local copy = base.json_copy(res)
  copy.slots = nil -- the histogram says it with fewer numbers
  return copy
end

return M
