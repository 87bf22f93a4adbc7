--- conn-storm's measurement, in the network namespace of the target (or
--- ours): the kernel's TCP counters (/proc/PID/net/netstat and snmp:
--- listen overflows and drops, SYN queue drops and cookies, TIME_WAIT
--- overflows, opens and failed attempts) at both edges; the socket table
--- (/proc/PID/net/tcp, tcp6) every poll — SYN_RECV per listening port,
--- TIME_WAIT sockets, ephemeral ports held per destination, each listener's
--- accept queue; the network tracer (bpf/net.bpf.c) for the listeners'
--- overflows with their owner and the connects of each process; the sysctls
--- that bound all of it. Optionally a bounded connection load on loopback
--- (build/workloads/conn_storm) during the window.
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local tcp_check = require('perf_manual.runbooks.tcp_check')

local M = {}

M.proc = '/proc'
M.SYSCTLS = { 'net/ipv4/ip_local_port_range', 'net/core/somaxconn', 'net/ipv4/tcp_max_syn_backlog',
  'net/ipv4/tcp_syncookies', 'net/ipv4/tcp_tw_reuse', 'net/ipv4/tcp_max_tw_buckets', 'net/ipv4/tcp_fin_timeout',
  'net/ipv4/tcp_synack_retries' }
M.COUNTERS = { 'ListenOverflows', 'ListenDrops', 'TCPReqQFullDrop', 'TCPReqQFullDoCookies', 'SyncookiesSent',
  'SyncookiesRecv', 'SyncookiesFailed', 'TCPTimeWaitOverflow', 'TW', 'TWRecycled', 'TCPAbortOnMemory',
  'ActiveOpens', 'PassiveOpens', 'AttemptFails', 'EstabResets' }

local STATES = { ['01'] = 'ESTABLISHED', ['02'] = 'SYN_SENT', ['03'] = 'SYN_RECV', ['04'] = 'FIN_WAIT1',
  ['05'] = 'FIN_WAIT2', ['06'] = 'TIME_WAIT', ['07'] = 'CLOSE', ['08'] = 'CLOSE_WAIT', ['09'] = 'LAST_ACK',
  ['0A'] = 'LISTEN', ['0B'] = 'CLOSING' }

--- /proc/net/netstat or snmp text → counter name → value (TcpExt and Tcp rows).
function M.parse_counters(text, into)
  into = into or {}
  local prev
  for line in (text or ''):gmatch('[^\n]+') do
    local kind, rest = line:match('^(%w+):%s+(.*)$')
    if kind and (kind == 'TcpExt' or kind == 'Tcp') then
      if prev and prev.kind == kind and not rest:match('^%a') then
        local names, i = prev.names, 0
        for v in rest:gmatch('%S+') do
          i = i + 1
          if names[i] then into[names[i]] = tonumber(v) end
        end
        prev = nil
      else
        local names = {}
        for n in rest:gmatch('%S+') do names[#names + 1] = n end
        prev = { kind = kind, names = names }
      end
    end
  end
  return into
end

-- "0100007F:B80B" → "127.0.0.1", 47115 (IPv4; IPv6 kept as hex)
local function endpoint(hex)
  local a, p = hex:match('^(%x+):(%x+)$')
  if not a then return hex, 0 end
  if #a == 8 then
    local b = {}
    for i = 7, 1, -2 do b[#b + 1] = tonumber(a:sub(i, i + 1), 16) end
    return table.concat(b, '.'), tonumber(p, 16)
  end
  return '[' .. a:lower() .. ']', tonumber(p, 16)
end

--- /proc/net/tcp(6) text → a snapshot: counts per state, SYN_RECV per
--- local port, listeners (port → accept queue now), and the local ports in
--- [lo, hi] held per destination ("ip:port" → count).
function M.parse_tcp(text, lo, hi, into)
  local s = into or { states = {}, syn_recv = {}, listen = {}, ephemeral = {} }
  for line in (text or ''):gmatch('[^\n]+') do
    local l, r, st, rxq = line:match('^%s*%d+:%s+(%S+)%s+(%S+)%s+(%x%x)%s+%x+:(%x+)')
    if l then
      local state = STATES[st] or st
      s.states[state] = (s.states[state] or 0) + 1
      local _, lport = endpoint(l)
      if state == 'SYN_RECV' then
        s.syn_recv[lport] = (s.syn_recv[lport] or 0) + 1
      elseif state == 'LISTEN' then
        s.listen[lport] = math.max(s.listen[lport] or 0, tonumber(rxq, 16))
      elseif lo and lport >= lo and lport <= hi then
        local rip, rport = endpoint(r)
        local key = rip .. ':' .. rport
        s.ephemeral[key] = (s.ephemeral[key] or 0) + 1
      end
    end
  end
  return s
end

local function counters(pid)
  local base = M.proc .. '/' .. (pid or 'self') .. '/net/'
  local c = M.parse_counters(util.readfile(base .. 'netstat'))
  return M.parse_counters(util.readfile(base .. 'snmp'), c)
end

-- keeps the largest value seen per key
local function keep_max(into, from)
  for k, v in pairs(from) do if not into[k] or v > into[k] then into[k] = v end end
end

--- Measures. opts: target, duration, load = { host, port, n, parallel,
--- timeout_ms, program }, max_overhead, progress, note, bpf (false: no net tracer).
---@return table? recording, string? why
function M.run(opts)
  return measure.with_session({ target = opts.target or 'system', duration = opts.duration or 5,
    what = 'connection storm check', max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note,
    command = 'conn-storm', soft = true }, function(s)
    s:start()
    local pids = s.target.kind == 'system' and {} or targets.pids(s.target)
    if s.target.kind ~= 'system' and #pids == 0 then return nil, 'the target has no process' end
    local nspid = pids[1]
    local prefix, ns = tcp_check.netns_prefix(nspid)
    local sysctls = tcp_check.sysctls_in(prefix, M.SYSCTLS)
    local range = sysctls['net.ipv4.ip_local_port_range']
    local lo, hi = type(range) == 'table' and range[1] or nil, type(range) == 'table' and range[2] or nil
    -- the network tracer names the listeners and the connecting processes
    local net, net_why
    if opts.bpf ~= false and not measure.bpf_unavailable() then
      local filter = targets.bpf_filter(s.target) or {}
      net, net_why = s:start_tracer('net', require('perf_manual.tracers.net'), filter)
    else
      net_why = measure.bpf_unavailable() or 'turned off'
    end
    local base = M.proc .. '/' .. (nspid or 'self') .. '/net/'
    local c0 = counters(nspid)
    local peak = { states = {}, syn_recv = {}, listen = {}, ephemeral = {} }
    local polls = 0
    local function poll()
      local snap = M.parse_tcp(util.readfile(base .. 'tcp'), lo, hi)
      M.parse_tcp(util.readfile(base .. 'tcp6'), lo, hi, snap)
      for _, k in ipairs({ 'states', 'syn_recv', 'listen', 'ephemeral' }) do keep_max(peak[k], snap[k]) end
      polls = polls + 1
      if net and net.drain then pcall(net.drain, net) end
    end
    s:begin()
    local load
    if opts.load then
      local L = opts.load
      load = { out = os.tmpname() }
      local argv = prefix[1] and { prefix[1], prefix[2] } or {}
      for _, a in ipairs({ L.program, L.host or '127.0.0.1', tostring(L.port), tostring(L.n),
        tostring(L.parallel or 64), tostring(L.timeout_ms or 1000) }) do argv[#argv + 1] = a end
      load.pid, load.why = sys.spawn(argv, { stdout = load.out, stderr = 'null' })
      if not load.pid then os.remove(load.out) return nil, 'connection load: ' .. tostring(load.why) end
    end
    poll()
    local ended = s:run { tick = function() poll() end }
    poll()
    local c1 = counters(nspid)
    local window = sys.now() - s.t0
    local load_result
    if load then
      -- the window is the measurement: a load still running at its end is stopped
      local how = sys.wait(load.pid, true)
      if how == 'running' then sys.kill(load.pid, 15); sys.wait(load.pid) end
      local text = util.readfile(load.out) or ''
      os.remove(load.out)
      local ok, refused, timeout = text:match('ok (%d+) refused (%d+) timeout (%d+)')
      load_result = { n = opts.load.n, port = opts.load.port, ok = tonumber(ok), refused = tonumber(refused),
        timeout = tonumber(timeout), stopped = text:match('stopped') ~= nil }
    end
    local netres = net and net:read() or nil
    local info = s:finish()
    local delta = {}
    for _, k in ipairs(M.COUNTERS) do
      if c0[k] and c1[k] then delta[k] = c1[k] - c0[k] end
    end
    local listeners = {}
    for _, l in ipairs(netres and netres.listeners or {}) do
      listeners[#listeners + 1] = { port = l.port, pid = l.pid, comm = l.comm, overflows = l.overflows,
        drops = l.listen_drops, accepts = l.accepts, max_backlog = l.max_backlog, peak_backlog = l.peak_backlog }
    end
    local procs = {}
    for _, p in ipairs(netres and netres.procs or {}) do
      if (p.connects or 0) + (p.connect_fails or 0) > 0 then
        procs[#procs + 1] = { pid = p.pid, comm = p.comm, connects = p.connects, connect_fails = p.connect_fails }
      end
    end
    local function pairs_list(t, kname)
      local out = {}
      for k, v in pairs(t) do out[#out + 1] = { [kname] = k, count = v } end
      table.sort(out, function(a, b) return a.count > b.count end)
      return util.array(out)
    end
    return {
      kind = 'conn-storm', target = s.target.label, window_s = window, ended_by = ended, netns = ns,
      sysctls = sysctls, counters = delta, polls = polls,
      peak = { states = peak.states, syn_recv = pairs_list(peak.syn_recv, 'port'),
        listen = pairs_list(peak.listen, 'port'), ephemeral = pairs_list(peak.ephemeral, 'dst') },
      listeners = util.array(listeners), procs = util.array(procs), load = load_result,
      net = netres and { connects = netres.total.connects, connect_fails = netres.total.connect_fails,
        connect_p99_us = netres.connect and netres.connect.p99_us, listen_overflows = netres.total.listen_overflows }
        or { unavailable = net_why },
      notes = info.notes,
      source = 'counters: /proc/PID/net/netstat, snmp; sockets: /proc/PID/net/tcp, tcp6 every poll; '
        .. (netres and 'listeners and connects: bpf net tracer; ' or '') .. 'sysctls: /proc/sys/net'
        .. (#prefix > 0 and ' (in the target\'s network namespace)' or ''),
    }
  end)
end

return M
