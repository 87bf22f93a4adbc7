-- `trace --events net` against TCP traffic between two network namespaces
-- the test makes and joins with a veth pair (10.213.x addresses, no outside
-- address): tcp_churn's server in one, its client in the other. Ground
-- truth: the client's and server's own counts (connections, payload bytes,
-- median connect time), the namespaces' TCP counters (/proc/net/snmp:
-- ActiveOpens, AttemptFails, RetransSegs, what nstat shows), and the
-- nftables counter of the rule that drops 3% of what reaches the server's
-- input (so the client retransmits). This kernel has no netem
-- (CONFIG_NET_SCH_NETEM is not set): loss comes from nftables. Namespaces,
-- rule and processes are removed whatever happens.
local h = test_helpers
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')
local cjson = require('cjson')

local function sh(cmd) return os.execute('{ ' .. cmd .. '; } >/dev/null 2>&1') == 0 end
local function cmd_out(cmd) local f = io.popen(cmd .. ' 2>&1'); local s = f:read('*a'); f:close(); return s end

-- Tcp counters of a namespace (the table nstat reads)
local function snmp(ns)
  local s = cmd_out('ip netns exec ' .. ns .. ' cat /proc/net/snmp')
  local names, values = s:match('\nTcp: (%a[^\n]*)\nTcp: ([^\n]*)')
  local t, keys = {}, {}
  for n in names:gmatch('%S+') do keys[#keys + 1] = n end
  local i = 0
  for v in values:gmatch('%S+') do i = i + 1; t[keys[i]] = tonumber(v) end
  return t
end

-- TcpExt counters of a namespace (/proc/net/netstat)
local function tcpext(ns)
  local s = cmd_out('ip netns exec ' .. ns .. ' cat /proc/net/netstat')
  local names, values = s:match('TcpExt: (%a[^\n]*)\nTcpExt: ([^\n]*)')
  local t, keys = {}, {}
  for n in names:gmatch('%S+') do keys[#keys + 1] = n end
  local i = 0
  for v in values:gmatch('%S+') do i = i + 1; t[keys[i]] = tonumber(v) end
  return t
end

local function find(list, pred)
  for _, x in ipairs(list or {}) do if pred(x) then return x end end
end

describe('trace --events net, end to end', function()
  it('counts connects, bytes, connect latency, refused connects, listener drops and retransmits per 4-tuple '
    .. 'as the client and the namespaces do', function()
    if not h.need_root('BPF, network namespaces, nftables') then return end
    if not sh('command -v nft') then error('nft is not installed (apt-get install nftables)') end
    local id = sys.getpid()
    local nsa, nsb = 'pmna' .. id, 'pmnb' .. id
    local va, vb = 'pmva' .. id, 'pmvb' .. id
    local churn = h.workload('tcp_churn')
    local port, closed_port, n, req, resp = 18090, 18091, 200, 300, 700
    local flood = 4000000
    local procs = {}
    local tmp = h.tmpdir()
    h.with_machine_lock(function()
      local ok, err = xpcall(function()
        assert(sh(string.format('ip netns add %s && ip netns add %s && '
          .. 'ip link add %s netns %s type veth peer name %s netns %s',
          nsa, nsb, va, nsa, vb, nsb)), 'cannot make the namespaces')
        assert(sh(string.format('ip -n %s addr add 10.213.0.1/24 dev %s && ip -n %s link set %s up'
          .. ' && ip -n %s link set lo up'
          .. ' && ip -n %s addr add 10.213.0.2/24 dev %s && ip -n %s link set %s up && ip -n %s link set lo up'
          -- one segment per packet, so a drop is one segment (as on a wire)
          .. ' && ip -n %s link set %s gso_max_segs 1',
          nsa, va, nsa, va, nsa, nsb, vb, nsb, vb, nsb, nsb, vb)), 'cannot set up the veth pair')
        local srv = assert(sys.spawn({ 'ip', 'netns', 'exec', nsa, churn, 'server', tostring(port), tostring(resp) },
          { stdout = tmp .. '/server.out' }))
        procs[#procs + 1] = srv
        for _ = 1, 50 do
          if (util.readfile(tmp .. '/server.out') or ''):match('listening') then break end
          sys.sleep(0.05)
        end
        local tr = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'trace', '--events', 'net', '--duration', '60',
          '--json' }, { stdout = tmp .. '/trace.json', stderr = tmp .. '/trace.err' }))
        procs[#procs + 1] = tr
        -- and one on the server alone (its listener predates the trace)
        local trp = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'trace', '--events', 'net', '--duration', '60',
          '--pid', tostring(srv), '--json' }, { stdout = tmp .. '/trace_pid.json', stderr = tmp .. '/trace_pid.err' }))
        procs[#procs + 1] = trp
        for _ = 1, 100 do
          if (util.readfile(tmp .. '/trace.err') or ''):match('Tracing')
            and (util.readfile(tmp .. '/trace_pid.err') or ''):match('Tracing') then break end
          sys.sleep(0.05)
        end
        -- a listener that never accepts, backlog 1: its queue overflows
        local stuck_port = 18092
        local stuck = assert(sys.spawn({ 'ip', 'netns', 'exec', nsa, churn, 'server', tostring(stuck_port), '10', '1',
          'noaccept' }, { stdout = tmp .. '/stuck.out' }))
        procs[#procs + 1] = stuck
        for _ = 1, 50 do
          if (util.readfile(tmp .. '/stuck.out') or ''):match('listening') then break end
          sys.sleep(0.05)
        end
        local b0, a0, x0 = snmp(nsb), snmp(nsa), tcpext(nsa)
        sh(string.format("ip netns exec %s sh -c "
          .. "'for i in 1 2 3 4 5 6; do timeout 2 %s client 10.213.0.1 %d 1 10 & done; wait'",
          nsb, churn, stuck_port))
        local x1 = tcpext(nsa)
        local out = cmd_out(string.format('ip netns exec %s %s client 10.213.0.1 %d %d %d', nsb, churn, port, n, req))
        local refused = cmd_out(string.format('ip netns exec %s %s client 10.213.0.1 %d 5', nsb, churn, closed_port))
        -- loss: 3% of what reaches the server is dropped at its input hook
        assert(sh(string.format("ip netns exec %s nft add table inet pmnet && "
          .. "ip netns exec %s nft add chain inet pmnet in "
          .. "'{ type filter hook input priority 0; }' && ip netns exec %s nft add rule inet pmnet in tcp dport %d "
          .. "numgen random mod 100 '<' 3 counter drop", nsa, nsa, nsa, port)), 'cannot add the nftables rule')
        local fout = cmd_out(string.format('ip netns exec %s %s flood 10.213.0.1 %d %d 1400', nsb, churn, port, flood))
        local b1, a1 = snmp(nsb), snmp(nsa)
        local nft = cmd_out('ip netns exec ' .. nsa .. ' nft list ruleset')
        sys.sleep(0.3)
        for _, p in ipairs({ tr, trp }) do
          sys.kill(p, 2)
          sys.wait(p)
          for i, q in ipairs(procs) do if q == p then table.remove(procs, i) end end
        end

        local ok_n, median, tx, rx = out:match('ok (%d+) fail 0 median_connect_ns (%d+) tx (%d+) rx (%d+)')
        assert.equal(tostring(n), ok_n, out)
        assert.equal('5', refused:match('fail (%d+)'), refused)
        local text = assert(util.readfile(tmp .. '/trace.json'),
          'no trace output: ' .. tostring(util.readfile(tmp .. '/trace.err')))
        local doc = cjson.decode(text)
        local last = doc.intervals and doc.intervals[#doc.intervals]
        local res = assert(doc.results and doc.results.net or (last and last.results.net),
          'no net result: ' .. tostring(util.readfile(tmp .. '/trace.json')):sub(1, 400))
        -- the client: its connects and payload, one process (both runs and
        -- the flood are three processes named tcp_churn)
        local clients, server = {}, nil
        for _, p in ipairs(res.procs) do
          if p.comm == 'tcp_churn' and p.connects + p.connect_fails > 0 then clients[#clients + 1] = p end
          if p.pid == srv then server = p end
        end
        local churner = assert(find(clients, function(p) return p.connects == n end),
          'no process with ' .. n .. ' connects: ' .. cjson.encode(clients))
        assert.equal(tonumber(tx), churner.tx_bytes)
        assert.equal(tonumber(rx), churner.rx_bytes)
        assert.equal(n * req, tonumber(tx))
        -- refused: SYN_SENT -> CLOSE, as the namespace's AttemptFails counts them
        -- A client of the stuck listener that `timeout` kills in SYN_SENT has failed a
        -- connect too (SYN_SENT -> CLOSE), one each; the kernel's AttemptFails counts only
        -- attempts that end in tcp_done (a reset, a timeout), not an aborted one
        local refuser, aborted = nil, 0
        for _, p in ipairs(clients) do
          if not refuser or p.connect_fails > refuser.connect_fails then refuser = p end
        end
        for _, p in ipairs(clients) do
          if p ~= refuser and p.connect_fails > 0 then
            assert.equal(1, p.connect_fails, cjson.encode(p))
            aborted = aborted + 1
          end
        end
        assert.is_true(aborted <= 6, cjson.encode(clients))
        assert.equal(5, refuser and refuser.connect_fails, cjson.encode(clients))
        assert.equal(b1.AttemptFails - b0.AttemptFails, refuser.connect_fails)
        assert.equal(b1.ActiveOpens - b0.ActiveOpens, n + 5 + 1 + 6)
        -- the server: accepts (its listener opened before the trace, found in /proc) and bytes
        assert(server, 'no server process')
        assert.equal(n + 1, server.accepts)
        -- (the stuck listener's completed handshakes are passive opens too)
        local stuck_p = find(res.procs, function(p) return p.pid == stuck end)
        assert.equal(a1.PassiveOpens - a0.PassiveOpens, server.accepts + (stuck_p and stuck_p.accepts or 0))
        assert.equal(n * req + flood, server.rx_bytes)
        -- connect latency: SYN_SENT -> ESTABLISHED lies inside the client's
        -- connect() call (which adds the syscall, the port search and the
        -- wakeup), so our p50's log2 bucket starts below the client's median,
        -- and not by orders of magnitude
        local m_us = tonumber(median) / 1e3
        local p50 = res.connect.p50_us
        local lo = 2 ^ math.floor(math.log(math.max(p50, 1)) / math.log(2))
        assert.is_true(lo <= m_us and p50 >= m_us / 16,
          string.format('p50 %.1f us vs client median %.1f us', p50, m_us))
        -- retransmits of the flood connection, per 4-tuple, equal the client
        -- namespace's RetransSegs (nothing else there sends)
        local dropped = tonumber(nft:match('counter packets (%d+)'))
        assert.is_true(dropped > 0, nft)
        local flow = assert(find(res.flows, function(f) return f.raddr == '10.213.0.1' and f.rport == port
          and f.retrans_segs > 0 end), 'no retransmits to the server: ' .. cjson.encode(res.flows))
        -- every retransmit of the client's namespace, per 4-tuple: the flood's
        -- segments and the SYNs the stuck listener dropped
        local sum, failed = 0, 0
        for _, f in ipairs(res.flows) do
          if f.laddr == '10.213.0.2' then sum, failed = sum + f.retrans_segs, failed + f.retrans_failed end
        end
        -- (a retransmit whose send failed is counted by the kernel or not,
        -- depending on where it failed: those are between the two bounds)
        local truth = b1.RetransSegs - b0.RetransSegs
        assert.is_true(sum <= truth and truth <= sum + failed,
          string.format('retransmitted %d (+%d failed) vs RetransSegs +%d', sum, failed, truth))
        assert.equal('10.213.0.2', flow.laddr)
        assert.equal('ipv4', flow.family)
        -- the drops at the server's input hook, named by the kernel's reason
        local nf = find(res.drops, function(d) return d.reason == 'NETFILTER_DROP' end)
        assert(nf, 'no NETFILTER_DROP drops: ' .. cjson.encode(res.drops))
        assert.is_true(nf.count >= dropped, nf.count .. ' netfilter drops < ' .. dropped .. ' counted by nft')
        -- the flood's closed connection, tcplife-style, with its payload
        local c = find(res.conns, function(x) return x.dir == 'connect' and x.tx_bytes == flood end)
        assert(c, 'no closed connection with ' .. flood .. ' bytes sent')
        assert.equal(flow.lport, c.lport)
        assert.is_true(c.retrans > 0)
        assert.matches('^ok 1', fout)
        -- the trace of the server alone: its accepts and bytes, nobody else's
        local pdoc = cjson.decode((assert(util.readfile(tmp .. '/trace_pid.json'))))
        local plast = pdoc.intervals and pdoc.intervals[#pdoc.intervals]
        local pres = assert(pdoc.results and pdoc.results.net or (plast and plast.results.net))
        assert.equal(1, #pres.procs, cjson.encode(pres.procs))
        assert.equal(srv, pres.procs[1].pid)
        assert.equal(server.accepts, pres.procs[1].accepts)
        assert.equal(server.rx_bytes, pres.procs[1].rx_bytes)
        assert.equal(0, pres.total.connects)
        for _, f in ipairs(pres.flows) do assert.equal(srv, f.pid) end
        for _, pc in ipairs(pres.conns) do assert.equal('accept', pc.dir); assert.equal(srv, pc.pid) end
        -- the stuck listener's drops (full accept queue) are the namespace's ListenDrops
        local lst = assert(find(res.listeners, function(l) return l.port == stuck_port end), 'no stuck listener')
        local overflows = x1.ListenOverflows - x0.ListenOverflows
        assert.is_true(overflows > 0, 'the stuck listener did not overflow')
        assert.equal(x1.ListenDrops - x0.ListenDrops, lst.listen_drops)
        assert.equal(1, lst.max_backlog)
        io.stderr:write(string.format('\n[net e2e] connects %d (client %s), bytes %d/%d (client %s/%s), refused %d '
          .. '(AttemptFails +%d), accepts %d (PassiveOpens +%d), retransmitted segments %d, '
          .. 'flood flow %d (RetransSegs +%d), '
          .. 'netfilter drops %d (nft counter %d), connect p50 %.1f us (client median %.1f us), '
          .. 'listener drops %d (ListenDrops +%d, ListenOverflows +%d)\n',
          churner.connects, ok_n, churner.tx_bytes, churner.rx_bytes, tx, rx, refuser.connect_fails,
          b1.AttemptFails - b0.AttemptFails, server.accepts, a1.PassiveOpens - a0.PassiveOpens, sum, flow.retrans_segs,
          b1.RetransSegs - b0.RetransSegs, nf.count, dropped, p50, m_us, lst.listen_drops,
          x1.ListenDrops - x0.ListenDrops,
          overflows))
      end, debug.traceback)
      for i = #procs, 1, -1 do sys.kill(procs[i], 15); sys.wait(procs[i]) end
      sh('ip netns del ' .. nsa)
      sh('ip netns del ' .. nsb)
      h.rmrf(tmp)
      if not ok then error(err, 0) end
    end)
  end)
  it('with --pid, a connection the process opened before the trace has its retransmits on its 4-tuple', function()
    if not h.need_root('BPF, network namespaces, nftables') then return end
    if not sh('command -v nft') then error('nft is not installed (apt-get install nftables)') end
    local ns = 'pmnh' .. sys.getpid()
    local w
    h.with_machine_lock(function()
      local ok, err = xpcall(function()
        assert(sh(string.format('ip netns add %s && ip -n %s link set lo up && ip -n %s link set lo gso_max_segs 1',
          ns, ns, ns)), 'cannot make the namespace')
        w = assert(sys.spawn({ 'ip', 'netns', 'exec', ns, h.workload('tcp_slow_peer'), '30', '50000000', '1400' },
          { stdout = 'null' }))
        sys.sleep(0.5)
        local ss = cmd_out('ip netns exec ' .. ns .. ' ss -tnpH state established')
        local line = assert(ss:match('[^\n]*pid=' .. w .. ',[^\n]*'), 'no connection of the sender: ' .. ss)
        local lport, port = line:match('127%.0%.0%.1:(%d+)%s+127%.0%.0%.1:(%d+)')
        assert(sh(string.format("ip netns exec %s nft add table inet pmh && ip netns exec %s nft add chain inet pmh in "
          .. "'{ type filter hook input priority 0; }' && ip netns exec %s nft add rule inet pmh in tcp dport %s "
          .. "numgen random mod 100 '<' 2 drop", ns, ns, ns, port)), 'cannot add the nftables rule')
        local r0 = snmp(ns).RetransSegs
        local out, e, st = h.pm(string.format('trace --events net --pid %d --duration 2 --json', w))
        local r1 = snmp(ns).RetransSegs
        assert.equal(0, st, e)
        local doc = cjson.decode(out)
        local last = doc.intervals and doc.intervals[#doc.intervals]
        local res = assert(doc.results and doc.results.net or (last and last.results.net))
        local f = assert(find(res.flows, function(x) return x.lport == tonumber(lport) end),
          'no flow of the sender: ' .. cjson.encode(res.flows))
        assert.equal(w, f.pid)
        assert.equal(tonumber(port), f.rport)
        -- the trace's window lies inside the one the counters were read around
        assert.is_true(f.retrans_segs > 0 and f.retrans_segs <= r1 - r0,
          f.retrans_segs .. ' retransmitted vs RetransSegs +' .. (r1 - r0))
      end, debug.traceback)
      if w then sys.kill(w, 15); sys.wait(w) end
      sh('ip netns del ' .. ns)
      if not ok then error(err, 0) end
    end)
  end)
end)
