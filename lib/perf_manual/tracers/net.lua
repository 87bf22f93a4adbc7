--- TCP network tracer: connection lifecycle per process (connects,
--- accepts, closes, connect latency, like tcpconnlat), closed connections
--- with duration and bytes (like tcplife, streamed through a ring buffer
--- and drained every ~0.1 s), retransmits and resets per 4-tuple, packet
--- drops per kernel drop reason (named from the running kernel's BTF), and
--- drops at listeners whose accept queue is full. Kernel side:
--- bpf/net.bpf.c, structs mirrored from bpf/net.h.
---
---   local t = assert(net.start{ pid = 1234 })
---   t:drain()                          -- regularly: closed connections
---   local r = t:read{ clear = true }   -- per interval
local ffi = require('ffi')
local base = require('perf_manual.tracers.base')
local bpf = require('perf_manual.bpf')
local hist = require('perf_manual.hist')
local util = require('perf_manual.util')

local M = {}

M.name = 'net'
M.event = 'net'
M.aliases = { 'tcp', 'network' }
M.snoop = true   -- trace --snoop streams closed connections (tcplife lines)
M.summary = 'TCP connects/accepts/closes, connect latency, bytes, retransmits, resets, drops (tcplife, tcpconnlat)'
M.tracepoints = { 'sock/inet_sock_set_state', 'tcp/tcp_retransmit_skb' }
-- closed connections kept per read (the newest); counts are never capped
M.MAX_CONNS = 10000
M.SLOTS = 32

ffi.cdef [[
struct pm_net_tuple { uint16_t family, lport, rport, pad; uint8_t laddr[16], raddr[16]; };
struct pm_net_owner { uint32_t tgid, pid, in_target, pad; char comm[16]; };
struct pm_net_proc {
  uint64_t lat_slots[32];
  uint64_t connects, connect_fails, accepts, accept_fails, closes, lat_total_ns, lat_max_ns,
    tx_bytes, rx_bytes, retrans_segs, resets_sent, resets_recv;
  char comm[16];
};
struct pm_net_flow {
  uint64_t retrans_segs, retrans_skbs, synack_retrans, resets_sent, resets_recv, drops, retrans_failed;
  uint32_t tgid, pad;
  char comm[16];
};
struct pm_net_drop_key { uint32_t reason, owned; };
struct pm_net_listen_key { uint32_t netns; uint16_t port, pad; };
struct pm_net_listener {
  struct pm_net_owner owner;
  uint64_t overflows, drops, accepts, sk_drops;
  uint32_t max_backlog, peak_backlog, queue, pad;
};
struct pm_net_event {
  uint64_t ts_ns, dur_ns, connect_ns, tx_bytes, rx_bytes;
  uint32_t tgid, dir, total_retrans, srtt_us, oldstate, pad;
  struct pm_net_tuple tuple;
  char comm[16];
};
]]

local AF_INET, AF_INET6 = 2, 10
M.DIRS = { [1] = 'connect', [2] = 'accept' }
M.TCP_STATES = require('perf_manual.collectors.network').TCP_STATES

local function num(u64) return tonumber(u64) end

--- Sizes of the mirrored structs (a spec checks them against the object's BTF).
function M.sizeof()
  local out = {}
  for _, n in ipairs({ 'tuple', 'owner', 'proc', 'flow', 'drop_key', 'listen_key', 'listener', 'event' }) do
    out[n] = ffi.sizeof('struct pm_net_' .. n)
  end
  return out
end

--- Text of an address (IPv4-mapped IPv6 shown as IPv4).
function M.addr(family, bytes)
  if family == AF_INET then
    return string.format('%d.%d.%d.%d', bytes[0], bytes[1], bytes[2], bytes[3])
  end
  local mapped = bytes[10] == 255 and bytes[11] == 255
  for i = 0, 9 do if bytes[i] ~= 0 then mapped = false end end
  if mapped then return string.format('%d.%d.%d.%d', bytes[12], bytes[13], bytes[14], bytes[15]) end
  local w = {}
  for i = 0, 7 do w[i + 1] = bytes[2 * i] * 256 + bytes[2 * i + 1] end
  -- the longest run of two or more zero words becomes '::' (RFC 5952)
  local best, best_len, run, run_len = nil, 1, nil, 0
  for i = 1, 8 do
    if w[i] == 0 then
      run, run_len = run or i, run_len + 1
      if run_len > best_len then best, best_len = run, run_len end
    else
      run, run_len = nil, 0
    end
  end
  local function hexs(a, b)
    local t = {}
    for i = a, b do t[#t + 1] = string.format('%x', w[i]) end
    return table.concat(t, ':')
  end
  if not best then return hexs(1, 8) end
  return hexs(1, best - 1) .. '::' .. hexs(best + best_len, 8)
end

local function tuple(t)
  return { family = t.family == AF_INET6 and 'ipv6' or 'ipv4', laddr = M.addr(t.family, t.laddr), lport = t.lport,
    raddr = M.addr(t.family, t.raddr), rport = t.rport }
end

local function endpoint(a, p)
  return (a:find(':', 1, true) and ('[' .. a .. ']') or a) .. ':' .. p
end

--- "laddr:lport raddr:rport" of a decoded tuple.
function M.tuple_text(t)
  return endpoint(t.laddr, t.lport) .. ' ' .. endpoint(t.raddr, t.rport)
end

local function slots(arr)
  local s = {}
  for i = 0, M.SLOTS - 1 do s[i + 1] = num(arr[i]) end
  return s
end

function M.decode_proc(kb, vb)
  assert(#kb == 4 and #vb == ffi.sizeof('struct pm_net_proc'), 'net: bad procs entry')
  local v = ffi.cast('const struct pm_net_proc *', vb)
  return { pid = ffi.cast('const uint32_t *', kb)[0], comm = ffi.string(v.comm),
    connects = num(v.connects), connect_fails = num(v.connect_fails), accepts = num(v.accepts),
    accept_fails = num(v.accept_fails), closes = num(v.closes), connect_total_ns = num(v.lat_total_ns),
    connect_max_ns = num(v.lat_max_ns), tx_bytes = num(v.tx_bytes), rx_bytes = num(v.rx_bytes),
    retrans_segs = num(v.retrans_segs), resets_sent = num(v.resets_sent), resets_recv = num(v.resets_recv),
    latency = slots(v.lat_slots) }
end

function M.decode_flow(kb, vb)
  assert(#kb == ffi.sizeof('struct pm_net_tuple') and #vb == ffi.sizeof('struct pm_net_flow'), 'net: bad flows entry')
  local k = ffi.cast('const struct pm_net_tuple *', kb)
  local v = ffi.cast('const struct pm_net_flow *', vb)
  local f = tuple(k)
  f.pid, f.comm = v.tgid, ffi.string(v.comm)
  f.retrans_segs, f.retrans_skbs, f.synack_retrans = num(v.retrans_segs), num(v.retrans_skbs), num(v.synack_retrans)
  f.resets_sent, f.resets_recv, f.drops = num(v.resets_sent), num(v.resets_recv), num(v.drops)
  f.retrans_failed = num(v.retrans_failed)
  return f
end

function M.decode_drop(kb, vb)
  assert(#kb == ffi.sizeof('struct pm_net_drop_key') and #vb == 8, 'net: bad drops entry')
  local k = ffi.cast('const struct pm_net_drop_key *', kb)
  return { reason_code = k.reason, owned = k.owned == 1, count = num(ffi.cast('const uint64_t *', vb)[0]) }
end

function M.decode_listener(kb, vb)
  assert(#kb == ffi.sizeof('struct pm_net_listen_key') and #vb == ffi.sizeof('struct pm_net_listener'),
    'net: bad listeners entry')
  local k = ffi.cast('const struct pm_net_listen_key *', kb)
  local v = ffi.cast('const struct pm_net_listener *', vb)
  return { netns = k.netns, port = k.port, pid = v.owner.tgid, comm = ffi.string(v.owner.comm),
    overflows = num(v.overflows), drops = num(v.drops), accepts = num(v.accepts), sk_drops = num(v.sk_drops),
    max_backlog = v.max_backlog, peak_backlog = v.peak_backlog, queue = v.queue }
end

function M.decode_event(b)
  assert(#b >= ffi.sizeof('struct pm_net_event'), 'net: short event ' .. #b)
  local e = ffi.cast('const struct pm_net_event *', b)
  local c = tuple(e.tuple)
  c.ts_ns, c.duration_ns, c.connect_ns = num(e.ts_ns), num(e.dur_ns), num(e.connect_ns)
  if c.connect_ns == 0 then c.connect_ns = nil end
  c.tx_bytes, c.rx_bytes = num(e.tx_bytes), num(e.rx_bytes)
  c.pid, c.comm, c.dir = e.tgid, ffi.string(e.comm), M.DIRS[e.dir] or '?'
  c.retrans, c.srtt_us = e.total_retrans, e.srtt_us
  c.closed_from = M.TCP_STATES[e.oldstate] or tostring(e.oldstate)
  return c
end

--- Drop reason names of the running kernel: SKB_DROP_REASON_NO_SOCKET -> NO_SOCKET.
function M.reason_name(code, names)
  local n = names and names[code]
  return n and (n:gsub('^SKB_DROP_REASON_', '')) or ('reason ' .. code)
end

-- ---- aggregation (pure: specs feed decoded entries) ------------------------

local function sort_by(list, key, tie)
  table.sort(list, function(a, b)
    if a[key] ~= b[key] then return a[key] > b[key] end
    return a[tie] < b[tie]
  end)
  return list
end

--- Builds the result from decoded entries. in: { procs=, flows=, drops=,
--- listeners=, conns= (closed connections) }, reasons = value -> name.
function M.aggregate(d, seconds, reasons)
  local total = { connects = 0, connect_fails = 0, accepts = 0, accept_fails = 0, closes = 0, tx_bytes = 0,
    rx_bytes = 0, retrans_segs = 0, resets_sent = 0, resets_recv = 0, drops = 0, listen_overflows = 0 }
  local lat = {}
  for i = 1, M.SLOTS do lat[i] = 0 end
  local procs = {}
  local lat_total, lat_max = 0, 0
  for _, p in ipairs(d.procs or {}) do
    for _, k in ipairs({ 'connects', 'connect_fails', 'accepts', 'accept_fails', 'closes', 'tx_bytes', 'rx_bytes',
      'retrans_segs', 'resets_sent', 'resets_recv' }) do total[k] = total[k] + p[k] end
    for i = 1, M.SLOTS do lat[i] = lat[i] + p.latency[i] end
    lat_total = lat_total + p.connect_total_ns
    if p.connect_max_ns > lat_max then lat_max = p.connect_max_ns end
    p.connect_buckets = hist.log2_buckets(p.latency)
    p.connect_avg_us = p.connects > 0 and p.connect_total_ns / p.connects / 1e3 or nil
    -- one connect: its time is the max (the buckets alone would give their lower bound)
    p.connect_p99_us = p.connects == 1 and p.connect_max_ns / 1e3 or p.connects > 0 and hist.quantile(
      p.connect_buckets, 0.99, nil, hist.fitting_max(p.connect_buckets, math.floor(p.connect_max_ns / 1e3))) or nil
    p.latency = nil
    p.events = p.connects + p.connect_fails + p.accepts + p.closes + p.retrans_segs + p.resets_sent + p.resets_recv
    procs[#procs + 1] = p
  end
  sort_by(procs, 'events', 'pid')
  local flows = {}
  for _, f in ipairs(d.flows or {}) do
    f.events = f.retrans_segs + f.synack_retrans + f.resets_sent + f.resets_recv + f.drops + f.retrans_failed
    flows[#flows + 1] = f
  end
  for _, f in ipairs(flows) do f.key = M.tuple_text(f) end
  sort_by(flows, 'events', 'key')
  local drops, by_reason = {}, {}
  for _, dr in ipairs(d.drops or {}) do
    local name = M.reason_name(dr.reason_code, reasons)
    local row = by_reason[name]
    if not row then
      row = { reason = name, reason_code = dr.reason_code, count = 0, at_traced_sockets = 0 }
      by_reason[name] = row
      drops[#drops + 1] = row
    end
    row.count = row.count + dr.count
    if dr.owned then row.at_traced_sockets = row.at_traced_sockets + dr.count end
    total.drops = total.drops + dr.count
  end
  sort_by(drops, 'count', 'reason')
  local listeners = {}
  total.listen_drops = 0
  for _, l in ipairs(d.listeners or {}) do
    total.listen_overflows = total.listen_overflows + l.overflows
    -- the listener's drop counter since the start (or the last clearing read)
    local b = d.listen_base and d.listen_base[l.netns .. ':' .. l.port] or 0
    l.listen_drops = l.sk_drops >= b and l.sk_drops - b or l.sk_drops
    total.listen_drops = total.listen_drops + l.listen_drops
    listeners[#listeners + 1] = l
  end
  table.sort(listeners, function(a, b)
    if a.listen_drops ~= b.listen_drops then return a.listen_drops > b.listen_drops end
    if a.overflows ~= b.overflows then return a.overflows > b.overflows end
    if a.port ~= b.port then return a.port < b.port end
    return a.netns < b.netns
  end)
  local buckets = hist.log2_buckets(lat)
  local connect = { count = total.connects, buckets = buckets, unit = 'usecs',
    avg_us = total.connects > 0 and lat_total / total.connects / 1e3 or nil, max_us = lat_max / 1e3 }
  if total.connects > 0 then
    local mx = hist.fitting_max(buckets, math.floor(lat_max / 1e3))
    connect.p50_us = hist.quantile(buckets, 0.5, nil, mx)
    connect.p99_us = hist.quantile(buckets, 0.99, nil, mx)
  end
  if seconds and seconds > 0 then
    total.connects_per_s = total.connects / seconds
    total.accepts_per_s = total.accepts / seconds
    total.closes_per_s = total.closes / seconds
  end
  return { total = total, connect = connect, procs = procs, flows = flows, drops = drops, listeners = listeners,
    conns = d.conns or {} }
end

-- ---- live tracer ---------------------------------------------------------------

local Net = setmetatable({}, { __index = base.Tracer })
Net.__index = Net

local function variant(kind, with_err, with_drop, with_synack)
  local sfx = kind == 'tp_btf' and 'btf' or 'raw'
  local progs = { 'net_state_' .. sfx, (with_err and 'net_retrans_err_' or 'net_retrans_') .. sfx,
    'net_rst_send_' .. sfx, 'net_rst_recv_' .. sfx }
  if with_drop then progs[#progs + 1] = 'net_drop_' .. sfx end
  if with_synack then progs[#progs + 1] = 'net_synack_' .. sfx end
  return { name = kind, progs = progs }
end

local function netns_of(pid)
  local l = require('posix.unistd').readlink('/proc/' .. pid .. '/ns/net')
  return l and tonumber(l:match('%[(%d+)%]'))
end

--- Listening sockets the pids already hold: { { netns=, port=, pid=, comm= } }
--- (listen() ran before the tracer: their accepts are still theirs).
function M.target_listeners(pids)
  local network = require('perf_manual.collectors.network')
  local out, tables = {}, {}
  for _, pid in ipairs(pids) do
    local inodes = network.fd_socket_inodes(pid)
    local ns = next(inodes) and netns_of(pid)
    if ns then
      -- one read of the socket tables per namespace
      if not tables[ns] then
        local list = {}
        for _, f in ipairs({ 'tcp', 'tcp6' }) do
          local text = util.readfile('/proc/' .. pid .. '/net/' .. f)
          for _, sk in ipairs(text and network.parse_tcp(text) or {}) do
            if sk.state == 'LISTEN' then list[#list + 1] = sk end
          end
        end
        tables[ns] = list
      end
      local comm
      for _, sk in ipairs(tables[ns]) do
        if inodes[sk.inode] then
          comm = comm or util.trim(util.readfile('/proc/' .. pid .. '/comm') or '')
          out[#out + 1] = { netns = ns, port = sk.local_port, pid = pid, comm = comm }
        end
      end
    end
  end
  return out
end

-- address bytes of a /proc/net/tcp{,6} hex address: words of 4 bytes,
-- each printed as a host-order (little-endian here) 32-bit number
local function hex_addr_bytes(h)
  local b = {}
  for w = 1, #h, 8 do
    local word = h:sub(w, w + 7)
    for i = 7, 1, -2 do b[#b + 1] = tonumber(word:sub(i, i + 1), 16) end
  end
  return b
end

--- The connections (not listeners) in a /proc/net/tcp or tcp6 text, with
--- their inode and 4-tuple as the kernel keys it (family, ports, address
--- bytes): { { family=, lport=, rport=, laddr={bytes}, raddr={bytes}, inode= } }
function M.parse_conns(text, family)
  local out = {}
  for la, lp, ra, rp, st, inode in (text or ''):gmatch(
    '\n%s*%d+:%s+(%x+):(%x+)%s+(%x+):(%x+)%s+(%x+)%s+%x+:%x+%s+%x+:%x+%s+%x+%s+%d+%s+%d+%s+(%d+)') do
    local state = tonumber(st, 16)
    if state ~= 10 and state ~= 6 then -- LISTEN, TIME_WAIT (no socket of its own)
      out[#out + 1] = { family = family, lport = tonumber(lp, 16), rport = tonumber(rp, 16),
        laddr = hex_addr_bytes(la), raddr = hex_addr_bytes(ra), inode = tonumber(inode) }
    end
  end
  return out
end

--- The connections the pids hold: parse_conns rows with pid= and comm=.
function M.held_conns(pids)
  local network = require('perf_manual.collectors.network')
  local out, tables = {}, {}
  for _, pid in ipairs(pids) do
    local inodes = network.fd_socket_inodes(pid)
    local ns = next(inodes) and netns_of(pid)
    if ns then
      if not tables[ns] then
        local list = {}
        for _, f in ipairs({ { 'tcp', AF_INET }, { 'tcp6', AF_INET6 } }) do
          for _, c in ipairs(M.parse_conns(util.readfile('/proc/' .. pid .. '/net/' .. f[1]), f[2])) do
            list[#list + 1] = c
          end
        end
        tables[ns] = list
      end
      local comm
      for _, c in ipairs(tables[ns]) do
        if inodes[c.inode] then
          comm = comm or util.trim(util.readfile('/proc/' .. pid .. '/comm') or '')
          c.pid, c.comm = pid, comm
          out[#out + 1] = c
        end
      end
    end
  end
  return out
end

-- the processes whose listeners are looked up at start
local function listener_pids(opts)
  if opts.pid then return { opts.pid } end
  local pids = {}
  if opts.cgroup then
    local root = base.cgroup2_root()
    local dir = type(opts.cgroup) == 'string' and (opts.cgroup:sub(1, 1) == '/' and opts.cgroup:match('^/sys/fs/cgroup')
      and opts.cgroup or (root and root .. '/' .. opts.cgroup:gsub('^/', '')))
    for p in ((dir and util.readfile(dir .. '/cgroup.procs')) or ''):gmatch('%d+') do pids[#pids + 1] = tonumber(p) end
    return pids
  end
  for _, name in ipairs(require('posix.dirent').dir('/proc') or {}) do
    if name:match('^%d+$') then pids[#pids + 1] = tonumber(name) end
  end
  return pids
end

--- Starts tracing. opts: pid | tid | cgroup (the sockets the target opens:
--- connect() and listen() run in its context; accepted ones belong to the
--- listener's owner), events = false (no per-connection stream), stats = false.
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  local cfg, err = base.start_config(opts, M.tracepoints)
  if not cfg then return nil, err end
  local rnargs = bpf.kernel_tp_nargs('tcp_retransmit_skb')
  local knargs = bpf.kernel_tp_nargs('kfree_skb')
  local have_drop = base.tracepoint_exists('skb/kfree_skb') ~= false and knargs ~= nil
  local have_synack = base.tracepoint_exists('tcp/tcp_retransmit_synack') ~= false
  cfg.kfree_skb_nargs = knargs or 2
  cfg.net_events = opts.events ~= false
  -- what the target already holds (listeners, connections), from /proc
  local pids = opts.listeners ~= false and listener_pids(opts) or {}
  local held = #pids > 0 and M.held_conns(pids) or {}
  cfg.held_any = #held > 0
  -- 6.12+ passes the send's error: a retransmit that failed is not one
  local with_err = (rnargs or 2) >= 3
  local keep = {}
  for _, sfx in ipairs({ 'btf', 'raw' }) do
    keep['net_retrans_' .. (with_err and '' or 'err_') .. sfx] = false
    if not have_drop then keep['net_drop_' .. sfx] = false end
    if not have_synack then keep['net_synack_' .. sfx] = false end
  end
  local obj, v = base.load_variants('net', cfg, {
    variant('tp_btf', with_err, have_drop, have_synack), variant('raw_tp', with_err, have_drop, have_synack),
  }, { keep = keep, stats = opts.stats })
  if not obj then return nil, v end
  local t = base.Tracer.new('net', obj, { attach_path = v })
  t.maps = { procs = obj:map('procs'), flows = obj:map('flows'), drops = obj:map('drops'),
    listeners = obj:map('listeners') }
  t.rb = obj:ringbuf('events')
  t.conns, t.conns_dropped = {}, 0
  t.snooping, t.pending = opts.snoop and true or false, {}
  t.t0_ns = require('perf_manual.sys').monotonic_ns()
  t.reasons = bpf.kernel_enum('skb_drop_reason')
  t.have_drops = have_drop
  t.drop_args = knargs
  -- listeners opened before the start: their accepts belong to the target
  local tkey_t = ffi.typeof('struct pm_net_tuple')
  local owner_t = ffi.typeof('struct pm_net_owner')
  for i, c in ipairs(held) do
    if i > 4096 then break end -- NET_MAX_HELD
    local k = ffi.new(tkey_t)
    k.family, k.lport, k.rport = c.family, c.lport, c.rport
    for j = 1, #c.laddr do k.laddr[j - 1] = c.laddr[j] end
    for j = 1, #c.raddr do k.raddr[j - 1] = c.raddr[j] end
    local o = ffi.new(owner_t)
    o.tgid, o.pid, o.in_target = c.pid, c.pid, 1
    ffi.copy(o.comm, c.comm:sub(1, 15))
    obj:map('held'):update(ffi.string(k, ffi.sizeof(k)), ffi.string(o, ffi.sizeof(o)))
  end
  t.held = math.min(#held, 4096)
  if #pids > 0 then
    for _, l in ipairs(M.target_listeners(pids)) do
      local k = ffi.new('struct pm_net_listen_key', { netns = l.netns, port = l.port })
      local val = ffi.new('struct pm_net_listener')
      val.owner.tgid, val.owner.pid, val.owner.in_target = l.pid, l.pid, 1
      ffi.copy(val.owner.comm, l.comm:sub(1, 15))
      t.maps.listeners:update(ffi.string(k, ffi.sizeof(k)), ffi.string(val, ffi.sizeof(val)))
    end
  end
  setmetatable(t, Net)
  t.listen_base = t:walk_listeners()
  return t
end

--- Walks the TCP sockets (the iterator fills the listeners map with their
--- drop counters and queues); returns { ["netns:port"] = sk_drops } or nil
--- when the kernel has no TCP iterator.
function Net:walk_listeners()
  if self.no_iter then return nil end
  local ok, err = self.obj:run_iter('net_listen_iter')
  if not ok then
    self.no_iter = tostring(err)
    return nil
  end
  -- a socket iterator walks one namespace: the others' listeners are
  -- walked from there (through their owner's /proc/PID/ns/net)
  local mine = netns_of('self')
  local done = { [mine or 0] = true }
  local out = {}
  for _, e in ipairs(assert(self.maps.listeners:read{})) do
    local l = M.decode_listener(e.key, e.value)
    if not done[l.netns] and l.pid ~= 0 and netns_of(l.pid) == l.netns then
      done[l.netns] = true
      self.obj:run_iter('net_listen_iter', '/proc/' .. l.pid .. '/ns/net')
    end
  end
  for _, e in ipairs(assert(self.maps.listeners:read{})) do
    local l = M.decode_listener(e.key, e.value)
    out[l.netns .. ':' .. l.port] = l.sk_drops
  end
  return out
end

--- Moves closed connections from the ring buffer into the tracer (call
--- every ~0.1 s; measure.trace does). Returns how many were read.
function Net:drain()
  if self.closed or not self.rb then return 0 end
  local n = 0
  repeat
    local batch = self.rb:poll(0, 4096) or {}
    for _, b in ipairs(batch) do
      local c = M.decode_event(b)
      c.t_s = (c.ts_ns - self.t0_ns) / 1e9
      local list = self.conns
      list[#list + 1] = c
      if self.snooping and #self.pending < M.MAX_CONNS then self.pending[#self.pending + 1] = c end
      if #list > 2 * M.MAX_CONNS then
        -- keep the newest; say how many were left out
        local keep = {}
        for i = #list - M.MAX_CONNS + 1, #list do keep[#keep + 1] = list[i] end
        self.conns_dropped = self.conns_dropped + (#list - #keep)
        self.conns = keep
      end
    end
    n = n + #batch
  until #batch < 4096
  return n
end

--- Snoop mode: connections closed since the last poll (decoded tables).
function Net:poll(_, max)
  self:drain()
  local out, rest = {}, {}
  for i, c in ipairs(self.pending) do
    if i <= (max or 4096) then out[#out + 1] = c else rest[#rest + 1] = c end
  end
  self.pending = rest
  return out
end

M.SNOOP_HEADER = string.format('%-11s %-7s %-14s %-7s %-21s %-21s %9s %9s %9s %9s', 'TIME(s)', 'PID', 'COMM', 'DIR',
  'LADDR:LPORT', 'RADDR:RPORT', 'TX_B', 'RX_B', 'CONN_MS', 'MS')

--- One tcplife-style line of a closed connection.
function M.render_conn(c)
  return string.format('%-11.6f %-7s %-14.14s %-7s %-21s %-21s %9d %9d %9s %9.3f', c.t_s or c.ts_ns / 1e9,
    c.pid == 0 and '-' or tostring(c.pid), c.comm, c.dir, M.tuple_text(c):match('^%S+'),
    M.tuple_text(c):match('%S+$'), c.tx_bytes, c.rx_bytes, c.connect_ns and string.format('%.3f', c.connect_ns / 1e6)
    or '-', c.duration_ns / 1e6)
end

--- `trace --snoop`: closed connections as text lines (header first).
function Net:snoop(max)
  local lines = {}
  if not self.snooping then return lines end
  if not self.header_done then
    self.header_done = true
    lines[1] = M.SNOOP_HEADER
  end
  for _, c in ipairs(self:poll(0, max)) do lines[#lines + 1] = M.render_conn(c) end
  return lines
end

local function read_map(m, decode, clear)
  local out = {}
  for _, e in ipairs(assert(m:read{ clear = clear })) do out[#out + 1] = decode(e.key, e.value) end
  return out
end

--- The result since start (or the last clearing read). opts.clear resets.
function Net:read(opts)
  opts = opts or {}
  local now = require('perf_manual.sys').now()
  local res
  if self.closed then
    res = self.final or M.aggregate({}, 0, self.reasons)
  else
    self:drain()
    local base_now = self.listen_base
    local walked = self:walk_listeners()
    local conns = self.conns
    if #conns > M.MAX_CONNS then
      local keep = {}
      for i = #conns - M.MAX_CONNS + 1, #conns do keep[#keep + 1] = conns[i] end
      self.conns_dropped = self.conns_dropped + (#conns - #keep)
      conns = keep
    end
    res = M.aggregate({
      procs = read_map(self.maps.procs, M.decode_proc, opts.clear),
      flows = read_map(self.maps.flows, M.decode_flow, opts.clear),
      drops = read_map(self.maps.drops, M.decode_drop, opts.clear),
      -- listeners stay (they are the owners of accepts); their counts are cumulative
      listeners = read_map(self.maps.listeners, M.decode_listener, false),
      listen_base = base_now or {},
      conns = conns,
    }, self:attached_seconds(now), self.reasons)
    if opts.clear and walked then self.listen_base = walked end
    res.listen_drops_from = not self.no_iter and 'listener sk_drops (TCP socket iterator)' or nil
    res.listen_drops_note = self.no_iter and ('listener drops not read: ' .. self.no_iter) or nil
    res.conns_left_out = self.conns_dropped
    if opts.clear then self.conns, self.conns_dropped = {}, 0 end
  end
  res.drops_traced = self.have_drops
  res.reasons_from = self.reasons and 'kernel BTF (enum skb_drop_reason)' or nil
  return self:finish_read(res, now, opts)
end

--- JSON-ready copy (arrays marked so empty ones stay arrays).
function M.to_json(res)
  local copy = base.json_copy(res, { 'procs', 'flows', 'drops', 'listeners', 'conns' })
  copy.connect = base.json_copy(res.connect or {}, { 'buckets' })
  local procs = {}
  for i, p in ipairs(res.procs or {}) do procs[i] = base.json_copy(p, { 'connect_buckets' }) end
  copy.procs = util.array(procs)
  return copy
end

return M
