-- conn-storm: is a connection storm hurting this host (or a container's
-- namespace)? Accept queues that overflow, SYN queues that fill, TIME_WAIT
-- sockets piling up, ephemeral ports running out — each against the
-- sysctl that bounds it, the listener or the connecting process named.
-- Optionally drives a bounded storm at a local port itself (--load).
-- --replay needs nothing.
local function pct(a, b) return b and b > 0 and a / b * 100 or 0 end

return playbook {
  name = 'conn-storm',
  topic = 'network',
  summary = 'accept-queue overflows, SYN backlog, TIME_WAIT and ephemeral port use against their sysctls',
  description = 'Counters from /proc/PID/net/netstat and snmp (what nstat reads), the socket table every 0.25 s, the\n'
    .. 'network tracer (bpf/net.bpf.c) for each listener\'s overflows and owner, sysctls (ip_local_port_range,\n'
    .. 'somaxconn, tcp_max_syn_backlog, tcp_max_tw_buckets, ...), all in the target\'s network namespace.\n'
    .. '--load N --port P opens N connections to 127.0.0.1:P during the window (build/workloads/conn_storm,\n'
    .. 'at most --parallel in flight, each given --connect-timeout): bounded, and on loopback only.',
  examples = '  perf_manual conn-storm --duration 10\n'
    .. '  perf_manual conn-storm --target nginx --duration 5\n'
    .. '  perf_manual conn-storm --target 1234 --load 2000 --port 8080   # a bounded storm at its listener\n'
    .. '  perf_manual conn-storm --json --save /tmp/rec && perf_manual conn-storm --replay /tmp/rec',
  params = {
    target = param.target { 'whose namespace and listeners: system, a PID, a process name, a service, a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to watch', default = '5s', above = 0 },
    load = param.integer { 'open this many connections to 127.0.0.1:--port during the window', optional = true,
      min = 1, max = 1000000 },
    port = param.integer { 'the local port --load connects to', optional = true, min = 1, max = 65535 },
    parallel = param.integer { '--load: connections in flight at once', default = 64, min = 1, max = 1024 },
    connect_timeout = param.duration { '--load: how long one connect may wait', default = '1s', above = 0,
      max = 60 },
    json = param.flag { 'print the measurement and the findings as one JSON document' },
    max_overhead = param.number { 'detach the network tracer past PCT% of one CPU', default = 5, above = 0,
      max = 10000 },
    save = param.path { 'also write DIR/conn-storm.json (the recording) for --replay', optional = true },
    replay = param.path { 'judge the recording in DIR/conn-storm.json again (nothing is measured)', optional = true,
      conflicts = { 'save', 'load' } },
  },
  check = function(p)
    if p.load and not p.port then
      require('perf_manual.util').user_error('conn-storm: --load needs --port (the local port to connect to)')
    end
  end,

  step 'watch the queues, the counters and the ports' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local load
      if p.load then
        load = { program = require('perf_manual._host').root .. '/build/workloads/conn_storm', port = p.port,
          n = p.load, parallel = p.parallel, timeout_ms = math.floor(p.connect_timeout * 1000) }
        local f = io.open(load.program)
        if not f then inv:fail('conn-storm: --load needs ' .. load.program .. ' (make workloads)') end
        f:close()
      end
      local rec = inv:conn_storm { target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        load = load, max_overhead = p.max_overhead, replay = p.replay }
      if rec.available == false then inv:fail('conn-storm: ' .. tostring(rec.why)) end
      if p.save then inv:save_recording(p.save, rec) end
      inv.rec = rec
    end,
  },

  step 'judge each limit' {
    function(inv)
      local rec = inv.rec
      local c, sc, peak = rec.counters or {}, rec.sysctls or {}, rec.peak or {}
      local said = {}
      local function say(severity, kind, text) said[#said + 1] = { severity = severity, kind = kind, text = text } end
      -- accept queues
      local over = (c.ListenOverflows or 0)
      if over > 0 then
        local worst
        -- the tracer counts a listener's drops (its sk_drops) and the overflows it sees itself
        local function lost(l) return math.max(l.overflows or 0, l.drops or 0) end
        for _, l in ipairs(rec.listeners or {}) do
          if lost(l) > 0 and (not worst or lost(l) > lost(worst)) then worst = l end
        end
        local text = string.format('%d connections overflowed an accept queue (%d dropped at listeners)', over,
          c.ListenDrops or 0)
        if worst then
          text = text .. string.format(': port %d of %s (pid %s), backlog %s, %d lost there — it does not accept '
            .. 'fast enough. Accept faster (more acceptor threads, a shorter path to accept()), or raise the backlog '
            .. '(listen()\'s argument, capped by net.core.somaxconn = %s)', worst.port, worst.comm or '?',
            tostring(worst.pid), tostring(worst.max_backlog), lost(worst), tostring(sc['net.core.somaxconn']))
        else
          text = text .. string.format('; raise the backlog (net.core.somaxconn = %s) or accept faster',
            tostring(sc['net.core.somaxconn']))
        end
        say('high', 'accept-queue', text)
      end
      -- SYN queues
      local synq = (c.TCPReqQFullDrop or 0) + (c.TCPReqQFullDoCookies or 0)
      local most_syn = peak.syn_recv and peak.syn_recv[1]
      local synmax = sc['net.ipv4.tcp_max_syn_backlog']
      if synq > 0 or (c.SyncookiesSent or 0) > 0 or (most_syn and synmax and most_syn.count >= synmax / 2) then
        say(synq > 0 and 'high' or 'medium', 'syn-backlog', string.format('the SYN queue filled: %d SYNs dropped or '
          .. 'answered with cookies, %d cookies sent, at most %d half-open connections%s (tcp_max_syn_backlog %s, '
          .. 'tcp_syncookies %s). A flood of SYNs, or a listener too slow to complete handshakes: raise '
          .. 'tcp_max_syn_backlog and keep syncookies on', synq, c.SyncookiesSent or 0,
          most_syn and most_syn.count or 0,
          most_syn and (' on port ' .. most_syn.port) or '', tostring(synmax), tostring(sc['net.ipv4.tcp_syncookies'])))
      end
      -- TIME_WAIT
      local tw = peak.states and peak.states.TIME_WAIT or 0
      local twmax = sc['net.ipv4.tcp_max_tw_buckets']
      if (c.TCPTimeWaitOverflow or 0) > 0 or (twmax and tw >= twmax / 2) then
        say((c.TCPTimeWaitOverflow or 0) > 0 and 'high' or 'medium', 'time-wait', string.format(
          '%d sockets in TIME_WAIT at the peak (%.0f%% of tcp_max_tw_buckets %s), %d overflowed: connections are '
          .. 'opened and closed faster than TIME_WAIT (60 s) lets them go. Reuse connections (keep-alive, pools)',
          tw, pct(tw, twmax), tostring(twmax), c.TCPTimeWaitOverflow or 0))
      end
      -- ephemeral ports, per destination
      local range = sc['net.ipv4.ip_local_port_range']
      local size = type(range) == 'table' and range[2] - range[1] + 1 or nil
      local busiest = peak.ephemeral and peak.ephemeral[1]
      if busiest and size and busiest.count >= size / 2 then
        say(busiest.count >= size * 0.9 and 'high' or 'medium', 'ephemeral-ports', string.format(
          '%d local ports held towards %s at the peak, %.0f%% of ip_local_port_range %d-%d: new connections to it '
          .. 'will fail with EADDRNOTAVAIL. Reuse connections, widen the range, or set tcp_tw_reuse = 1 (now %s) '
          .. 'for outgoing connections', busiest.count, busiest.dst, pct(busiest.count, size), range[1], range[2],
          tostring(sc['net.ipv4.tcp_tw_reuse'])))
      end
      if (c.AttemptFails or 0) > 0 and #said == 0 then
        say('low', 'connect-fails', string.format('%d connection attempts failed (refused or reset)', c.AttemptFails))
      end
      if #said == 0 then say('ok', 'none', 'no queue, table or port range came near its limit') end
      inv.said = said
    end,
  },

  step 'report' {
    function(inv, p)
      local rec = inv.rec
      local c, sc, peak = rec.counters or {}, rec.sysctls or {}, rec.peak or {}
      if p.json then
        return inv:json { target = rec.target, window_s = rec.window_s, source = rec.source,
          replayed = rec.replayed or false, counters = c, sysctls = sc, peak = peak,
          listeners = inv:list(rec.listeners or {}), procs = inv:list(rec.procs or {}), load = rec.load,
          net = rec.net, findings = inv:list(inv.said), notes = inv:list(rec.notes or {}) }
      end
      inv:printf('connection storm check of %s over %.1f s%s\n', rec.target, rec.window_s or 0,
        rec.replayed and ' (recorded)' or '')
      if rec.load then
        inv:printf('load: %d connections to port %d: %s ok, %s refused, %s timed out%s\n', rec.load.n, rec.load.port,
          tostring(rec.load.ok or '?'), tostring(rec.load.refused or '?'), tostring(rec.load.timeout or '?'),
          rec.load.stopped and ' (stopped at the end of the window)' or '')
      end
      inv:printf('\ncounters: opens %d active / %d passive, failed attempts %d, listen overflows %d, listen drops %d, '
        .. 'SYN queue drops %d, cookies sent %d, TIME_WAIT overflows %d\n', c.ActiveOpens or 0, c.PassiveOpens or 0,
        c.AttemptFails or 0, c.ListenOverflows or 0, c.ListenDrops or 0, (c.TCPReqQFullDrop or 0)
        + (c.TCPReqQFullDoCookies or 0), c.SyncookiesSent or 0, c.TCPTimeWaitOverflow or 0)
      local st = peak.states or {}
      inv:printf('peak sockets: %d established, %d SYN_RECV, %d TIME_WAIT, %d SYN_SENT\n', st.ESTABLISHED or 0,
        st.SYN_RECV or 0, st.TIME_WAIT or 0, st.SYN_SENT or 0)
      if #(rec.listeners or {}) > 0 then
        inv:printf('\n%-7s %-8s %-16s %9s %9s %9s %9s\n', 'port', 'pid', 'listener', 'backlog', 'peak q', 'dropped',
          'accepts')
        for _, l in ipairs(rec.listeners) do
          inv:printf('%-7d %-8s %-16s %9s %9s %9d %9d\n', l.port, tostring(l.pid), l.comm or '?',
            tostring(l.max_backlog or '?'), tostring(l.peak_backlog or '?'), math.max(l.overflows or 0, l.drops or 0),
            l.accepts or 0)
        end
      end
      local e = peak.ephemeral and peak.ephemeral[1]
      local range = sc['net.ipv4.ip_local_port_range']
      inv:printf('\nephemeral ports: range %s, the busiest destination %s\n',
        type(range) == 'table' and (range[1] .. '-' .. range[2]) or '?',
        e and string.format('%s held %d', e.dst, e.count) or 'none')
      inv:printf('sysctls: somaxconn %s, tcp_max_syn_backlog %s, tcp_syncookies %s, tcp_max_tw_buckets %s, '
        .. 'tcp_tw_reuse %s, tcp_fin_timeout %s\n\n', tostring(sc['net.core.somaxconn']),
        tostring(sc['net.ipv4.tcp_max_syn_backlog']), tostring(sc['net.ipv4.tcp_syncookies']),
        tostring(sc['net.ipv4.tcp_max_tw_buckets']), tostring(sc['net.ipv4.tcp_tw_reuse']),
        tostring(sc['net.ipv4.tcp_fin_timeout']))
      for _, f in ipairs(inv.said) do inv:printf('%s: %s\n', f.severity, f.text) end
    end,
  },
}
