--- Network collector: /proc/net/dev (per-interface bytes, packets, errors,
--- drops), /proc/net/snmp (Tcp RetransSegs, OutSegs, InErrs…, Udp errors),
--- /proc/net/netstat (TcpExt ListenOverflows, ListenDrops…), and interface
--- speed/state from /sys/class/net.
---
--- `parse_dev(text)` → { [iface] = { rx_bytes=, rx_packets=, rx_errs=, rx_drop=,
---   rx_fifo=, rx_frame=, rx_compressed=, rx_multicast=, tx_bytes=, tx_packets=,
---   tx_errs=, tx_drop=, tx_fifo=, tx_colls=, tx_carrier=, tx_compressed= } }
--- `parse_snmp(text)` (also /proc/net/netstat) → { [Proto] = { [Name] = n } },
---   e.g. t.Tcp.RetransSegs, t.TcpExt.ListenOverflows
--- `sample()` → { time=, interfaces = { [iface] = counters + { speed_mbps=?,
---   operstate=?, virtual= } }, snmp=, netstat=, missing = { … = why } }
---   speed_mbps is nil (with missing["<iface>.speed_mbps"]) when the driver
---   reports none (-1, EINVAL): never 0.
--- `rates(prev, cur)` → { elapsed=,
---   interfaces = { IfRate, … } sorted by name, by_name = { [iface] = IfRate },
---   tcp = { in_segs_per_s=, out_segs_per_s=, retrans_segs_per_s=, retrans_pct=
---     (retransmitted / sent segments), in_errs_per_s=, out_rsts_per_s=,
---     active_opens_per_s=, passive_opens_per_s=, attempt_fails_per_s=,
---     estab_resets_per_s=, curr_estab=, listen_overflows=, listen_drops= (as in tcpext) },
---   tcpext = { listen_overflows=, listen_drops= (during the interval),
---     listen_overflows_per_s=, listen_drops_per_s=, timeouts_per_s=,
---     syncookies_sent= , backlog_drops= },
---   udp = { in_errors_per_s=, rcvbuf_errors_per_s=, sndbuf_errors_per_s=, no_ports_per_s= },
---   missing = { field = why } }
---   IfRate = { name=, rx_bytes_per_s=, tx_bytes_per_s=, rx_packets_per_s=, tx_packets_per_s=,
---     rx_errs_per_s=, tx_errs_per_s=, rx_drop_per_s=, tx_drop_per_s=,
---     rx_errs=, tx_errs=, rx_drop=, tx_drop= (counts in the interval),
---     speed_mbps=?, speed_bytes_per_s=?, util_pct=? (busier direction vs speed; nil without speed),
---     operstate=?, virtual= (lo, ifb, veth, bridges… no wire of its own) }
---
--- The target's sockets (a process's TCP connections):
--- `parse_tcp(text)` (/proc/net/tcp or tcp6) → { Sock, … }, Sock = { local_addr=,
---   local_port=, remote_addr=, remote_port=, state= ('ESTABLISHED', …), tx_queue=,
---   rx_queue= (bytes), retrnsmt= (the socket's unrecovered retransmits now: the
---   kernel's icsk_retransmits, reset when an ACK arrives), uid=, inode= }
--- `parse_route(text)` (/proc/net/route) → { { iface=, dest=, mask= } } (host order)
--- `fd_socket_inodes(pid)` → { [inode] = true } from /proc/PID/fd
--- `sockets(pids)` → { Sock + { pid=, iface= }, … }: the TCP sockets the pids hold,
---   joined by inode; iface is the route the remote address takes ('lo' for a
---   loopback or local peer).
local lpeg = require('lpeg')
local common = require('perf_manual.collectors.common')
local fdwaits = require('perf_manual.collectors.waits')
local P, C, Ct, S = lpeg.P, lpeg.C, lpeg.Ct, lpeg.S

local M = {}

local DEV_FIELDS = { 'rx_bytes', 'rx_packets', 'rx_errs', 'rx_drop', 'rx_fifo', 'rx_frame', 'rx_compressed',
  'rx_multicast', 'tx_bytes', 'tx_packets', 'tx_errs', 'tx_drop', 'tx_fifo', 'tx_colls', 'tx_carrier',
  'tx_compressed' }

local function dev_row(name, nums)
  local t = {}
  for i, f in ipairs(DEV_FIELDS) do t[f] = nums[i] end
  return name, t
end

local ifname = C((1 - S(' \t:\n')) ^ 1)
local dev_line = common.osp * ifname * ':' * Ct((common.osp * common.uint) ^ 1) * common.osp
  * (common.nl + -P(1)) / dev_row
local dev_grammar = lpeg.Cf(Ct('') * common.skip_line * common.skip_line * lpeg.Cg(dev_line) ^ 0, rawset) * -P(1)

---@return table? interfaces, string? err
function M.parse_dev(text)
  local t = type(text) == 'string' and dev_grammar:match(text)
  if not t then return nil, 'not a /proc/net/dev text' end
  return t
end

-- snmp/netstat: a header line of names, then a line of values, per protocol
local proto = C((1 - S(': \n')) ^ 1)
local names = Ct((common.sp * C((1 - S(' \n')) ^ 1)) ^ 0)
local values = Ct((common.sp * common.num) ^ 0)
local pair = Ct(proto * ':' * names * common.osp * common.nl * proto * ':' * values * common.osp * (common.nl + -P(1)))
local snmp_grammar = Ct(pair ^ 0) * -P(1)

---@return table? protocols, string? err
function M.parse_snmp(text)
  local pairs_ = type(text) == 'string' and snmp_grammar:match(text)
  if not pairs_ or #pairs_ == 0 then return nil, 'not a /proc/net/snmp text' end
  local out = {}
  for _, p in ipairs(pairs_) do
    local pname, keys, pname2, vals = p[1], p[2], p[3], p[4]
    if pname ~= pname2 or #keys ~= #vals then return nil, 'mismatched lines for ' .. pname end
    local t = out[pname] or {}
    for i, k in ipairs(keys) do t[k] = vals[i] end
    out[pname] = t
  end
  return out
end
M.parse_netstat = M.parse_snmp

local virtual_cache = {}

--- Speed (Mbit/s), operstate and whether the interface is virtual, from sysfs.
function M.link_info(name, sys_root)
  sys_root = sys_root or '/sys'
  local base = sys_root .. '/class/net/' .. name
  local info = {}
  local sp, err = common.read(base .. '/speed')
  local n = sp and tonumber(sp:match('^%s*(-?%d+)'))
  if n and n > 0 then info.speed_mbps = n
  else info.speed_why = n and 'driver reports no speed' or ('no speed: ' .. tostring(err)) end
  local st = common.read(base .. '/operstate')
  info.operstate = st and st:gsub('%s+$', '') or nil
  if virtual_cache[name] == nil then
    local link = require('posix.unistd').readlink(base)
    virtual_cache[name] = link and link:find('/virtual/', 1, true) ~= nil or false
  end
  info.virtual = virtual_cache[name]
  return info
end

M.paths = { dev = '/proc/net/dev', snmp = '/proc/net/snmp', netstat = '/proc/net/netstat', sys = '/sys' }

--- The /proc/net files of pid's network namespace when it is not ours (a
--- container's), else nil. /sys/class/net shows our namespace's links, so
--- the link details are left out rather than taken from a namesake.
function M.netns_paths(pid)
  local ns = pid and fdwaits.foreign_netns(pid)
  if not ns then return nil end
  local d = '/proc/' .. pid .. '/net/'
  return { dev = d .. 'dev', snmp = d .. 'snmp', netstat = d .. 'netstat', tcp = d .. 'tcp', tcp6 = d .. 'tcp6',
    route = d .. 'route', links = false, netns = ns, pid = pid }
end

--- One snapshot. paths.links == false skips /sys (fixtures from elsewhere).
function M.sample(paths)
  paths = paths or M.paths
  local s = { time = common.now() }
  local devs, err = common.read_parse(paths.dev, M.parse_dev)
  if devs then
    if paths.links ~= false then
      for name, t in pairs(devs) do
        local li = M.link_info(name, paths.sys)
        t.speed_mbps, t.operstate, t.virtual = li.speed_mbps, li.operstate, li.virtual
        if not li.speed_mbps then common.miss(s, name .. '.speed_mbps', li.speed_why) end
      end
    end
    s.interfaces = devs
  else
    common.miss(s, 'interfaces', err)
  end
  local v
  v, err = common.read_parse(paths.snmp, M.parse_snmp)
  if v then s.snmp = v else common.miss(s, 'snmp', err) end
  v, err = common.read_parse(paths.netstat, M.parse_netstat)
  if v then s.netstat = v else common.miss(s, 'netstat', err) end
  return s
end

local function ratemap(out, a, b, e, map)
  for dst, src in pairs(map) do out[dst] = common.rate(a[src], b[src], e) end
end

function M.rates(prev, cur)
  local e = common.elapsed(prev, cur)
  local out = { elapsed = e, interfaces = {}, by_name = {} }
  if prev.interfaces and cur.interfaces and e then
    for name, b in pairs(cur.interfaces) do
      local a = prev.interfaces[name]
      if a then
        local r = { name = name, speed_mbps = b.speed_mbps, operstate = b.operstate, virtual = b.virtual,
          speed_bytes_per_s = b.speed_mbps and b.speed_mbps * 1e6 / 8 }
        for _, f in ipairs({ 'rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets', 'rx_errs', 'tx_errs',
          'rx_drop', 'tx_drop' }) do
          r[f .. '_per_s'] = common.rate(a[f], b[f], e)
        end
        for _, f in ipairs({ 'rx_errs', 'tx_errs', 'rx_drop', 'tx_drop' }) do r[f] = common.delta(a[f], b[f]) end
        if b.speed_mbps and r.rx_bytes_per_s and r.tx_bytes_per_s then
          r.util_pct = 100 * math.max(r.rx_bytes_per_s, r.tx_bytes_per_s) * 8 / (b.speed_mbps * 1e6)
        else
          common.miss(r, 'util_pct', 'no link speed for ' .. name)
        end
        out.interfaces[#out.interfaces + 1] = r
        out.by_name[name] = r
      end
    end
    table.sort(out.interfaces, function(x, y) return x.name < y.name end)
  else
    common.miss(out, 'interfaces', (cur.missing or {}).interfaces or 'no interval')
  end
  local ps, cs = prev.snmp, cur.snmp
  if ps and cs and ps.Tcp and cs.Tcp and e then
    local t = {}
    ratemap(t, ps.Tcp, cs.Tcp, e, { in_segs_per_s = 'InSegs', out_segs_per_s = 'OutSegs',
      retrans_segs_per_s = 'RetransSegs', in_errs_per_s = 'InErrs', out_rsts_per_s = 'OutRsts',
      active_opens_per_s = 'ActiveOpens', passive_opens_per_s = 'PassiveOpens',
      attempt_fails_per_s = 'AttemptFails', estab_resets_per_s = 'EstabResets' })
    t.curr_estab = cs.Tcp.CurrEstab
    local pn, cn = prev.netstat and prev.netstat.TcpExt, cur.netstat and cur.netstat.TcpExt
    if pn and cn then -- also under tcpext; here too, next to the other TCP figures
      t.listen_overflows = common.delta(pn.ListenOverflows, cn.ListenOverflows)
      t.listen_drops = common.delta(pn.ListenDrops, cn.ListenDrops)
    end
    local dout = common.delta(ps.Tcp.OutSegs, cs.Tcp.OutSegs)
    local dre = common.delta(ps.Tcp.RetransSegs, cs.Tcp.RetransSegs)
    if dout and dre and dout > 0 then t.retrans_pct = 100 * dre / dout
    else common.miss(out, 'tcp.retrans_pct', 'no TCP segments sent') end
    out.tcp = t
    if ps.Udp and cs.Udp then
      out.udp = {}
      ratemap(out.udp, ps.Udp, cs.Udp, e, { in_errors_per_s = 'InErrors', rcvbuf_errors_per_s = 'RcvbufErrors',
        sndbuf_errors_per_s = 'SndbufErrors', no_ports_per_s = 'NoPorts' })
    end
  else
    common.miss(out, 'tcp', (cur.missing or {}).snmp or 'no /proc/net/snmp')
  end
  local pn, cn = prev.netstat and prev.netstat.TcpExt, cur.netstat and cur.netstat.TcpExt
  if pn and cn and e then
    local x = {}
    ratemap(x, pn, cn, e, { listen_overflows_per_s = 'ListenOverflows', listen_drops_per_s = 'ListenDrops',
      timeouts_per_s = 'TCPTimeouts' })
    x.listen_overflows = common.delta(pn.ListenOverflows, cn.ListenOverflows)
    x.listen_drops = common.delta(pn.ListenDrops, cn.ListenDrops)
    x.syncookies_sent = common.delta(pn.SyncookiesSent, cn.SyncookiesSent)
    x.backlog_drops = common.delta(pn.TCPBacklogDrop, cn.TCPBacklogDrop)
    out.tcpext = x
  else
    common.miss(out, 'tcpext', (cur.missing or {}).netstat or 'no /proc/net/netstat')
  end
  return out
end

-- /proc/net/tcp ------------------------------------------------------------

M.TCP_STATES = { [1] = 'ESTABLISHED', [2] = 'SYN_SENT', [3] = 'SYN_RECV', [4] = 'FIN_WAIT1', [5] = 'FIN_WAIT2',
  [6] = 'TIME_WAIT', [7] = 'CLOSE', [8] = 'CLOSE_WAIT', [9] = 'LAST_ACK', [10] = 'LISTEN', [11] = 'CLOSING',
  [12] = 'NEW_SYN_RECV' }

-- addresses as the thread-state collector reads them (host order words, IPv4-mapped as IPv4)
local function addr_text(hex) return (fdwaits.parse_addr(hex .. ':0')) end
M.addr_text = addr_text

---@return table? sockets, string? err
function M.parse_tcp(text)
  if type(text) ~= 'string' or not text:match('^%s*sl%s+local_address') then return nil, 'not a /proc/net/tcp text' end
  local out = {}
  for line in text:gmatch('[^\n]+') do
    local la, lp, ra, rp, st, tx, rx, retr, uid, inode = line:match(
      '^%s*%d+:%s+(%x+):(%x+)%s+(%x+):(%x+)%s+(%x+)%s+(%x+):(%x+)%s+%x+:%x+%s+(%x+)%s+(%d+)%s+%d+%s+(%d+)')
    if la then
      out[#out + 1] = { local_addr = addr_text(la), local_port = tonumber(lp, 16), remote_addr = addr_text(ra),
        remote_port = tonumber(rp, 16), state = M.TCP_STATES[tonumber(st, 16)] or st, tx_queue = tonumber(tx, 16),
        rx_queue = tonumber(rx, 16), retrnsmt = tonumber(retr, 16), uid = tonumber(uid), inode = tonumber(inode) }
    end
  end
  return out
end

---@return table? routes, string? err
function M.parse_route(text)
  if type(text) ~= 'string' or not text:match('^Iface') then return nil, 'not a /proc/net/route text' end
  local out = {}
  for line in text:gmatch('[^\n]+') do
    local iface, dest, mask = line:match('^(%S+)%s+(%x+)%s+%x+%s+%x+%s+%d+%s+%d+%s+%d+%s+(%x+)')
    if iface and iface ~= 'Iface' then
      out[#out + 1] = { iface = iface, dest = tonumber(dest, 16), mask = tonumber(mask, 16) }
    end
  end
  return out
end

local function ipv4_word(text)
  local a, b, c, d = text:match('^(%d+)%.(%d+)%.(%d+)%.(%d+)$')
  -- the route table's words are in the same host order as /proc/net/tcp's
  return a and (tonumber(d) * 2 ^ 24 + tonumber(c) * 2 ^ 16 + tonumber(b) * 2 ^ 8 + tonumber(a))
end

local function masked(x, m)
  return require('bit').band(x, m) % 2 ^ 32
end

--- The interface traffic to `remote` leaves by: 'lo' for loopback and for
--- the host's own address (`local_addr` the same), else the longest
--- matching IPv4 route; nil when unknown (IPv6 off loopback).
function M.route_iface(remote, routes, local_addr)
  if remote:match('^127%.') or remote == '::1' or remote == local_addr then return 'lo' end
  local r = ipv4_word(remote)
  if not r or not routes then return nil end
  local best, bits
  for _, rt in ipairs(routes) do
    if masked(r, rt.mask) == masked(rt.dest, rt.mask) then
      local n = 0
      local m = rt.mask
      while m > 0 do n = n + m % 2; m = math.floor(m / 2) end
      if not bits or n > bits then best, bits = rt.iface, n end
    end
  end
  return best
end

--- Socket inodes a process holds open.
function M.fd_socket_inodes(pid, proc)
  local out = {}
  -- (posix.unistd.readlink fails on /proc/PID/fd links: the fd snapshot reads them right)
  for _, l in pairs(fdwaits.snapshot(pid, proc) or {}) do
    local ino = l:match('^socket:%[(%d+)%]$')
    if ino then out[tonumber(ino)] = true end
  end
  return out
end

--- The TCP sockets of `pids` (listening ones left out), with the interface
--- each one's peer is reached by. paths: { tcp=, tcp6=, route=, proc= } for specs.
function M.sockets(pids, paths)
  paths = paths or {}
  local owner = {}
  for _, pid in ipairs(pids) do
    for ino in pairs(M.fd_socket_inodes(pid, paths.proc)) do owner[ino] = owner[ino] or pid end
  end
  local routes = common.read_parse(paths.route or '/proc/net/route', M.parse_route)
  local out = {}
  for _, f in ipairs({ paths.tcp or '/proc/net/tcp', paths.tcp6 or '/proc/net/tcp6' }) do
    for _, s in ipairs(common.read_parse(f, M.parse_tcp) or {}) do
      local pid = s.inode > 0 and owner[s.inode]
      if pid and s.state ~= 'LISTEN' then
        s.pid = pid
        s.iface = M.route_iface(s.remote_addr, routes, s.local_addr)
        out[#out + 1] = s
      end
    end
  end
  -- fullest queues first: those are the ones a reader wants
  table.sort(out, function(a, b)
    local qa, qb = a.tx_queue + a.rx_queue, b.tx_queue + b.rx_queue
    if qa ~= qb then return qa > qb end
    return a.inode < b.inode
  end)
  return out
end

return M
