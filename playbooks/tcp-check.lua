-- tcp-check: the TCP connections of a target, one by one — retransmits,
-- round-trip time, congestion window and algorithm, throughput, and what
-- holds each back: the receiver's window, its own send buffer (with the
-- sysctls that bound both), or losses. Read from the kernel's tcp_info
-- (`ss -tinmep`, in the target's network namespace) at both edges of the
-- window. --replay needs nothing.
local function kib(b) return b and string.format('%.0f KiB', b / 1024) or '?' end
local function triple(v) return type(v) == 'table' and table.concat(v, ' ') or tostring(v or '?') end

return playbook {
  name = 'tcp-check',
  topic = 'network',
  summary = 'per TCP connection: retransmits, RTT, cwnd, congestion control, and window or buffer limits with '
    .. 'the sysctls that bound them',
  description = 'Connections and their tcp_info from `ss -tinmep` (run in the target\'s network namespace) at the\n'
    .. 'start and the end of the window; the busy time limited by the receive window (rwnd_limited) and by\n'
    .. 'the send buffer (sndbuf_limited) are the kernel\'s own accounting. Sysctls from /proc/sys/net.',
  examples = '  perf_manual tcp-check --target 1234 --duration 5\n'
    .. '  perf_manual tcp-check --target nginx --json --save /tmp/rec\n'
    .. '  perf_manual tcp-check --replay /tmp/rec',
  params = {
    target = param.target { 'whose connections: a PID, a process name, a service, a cgroup, a command, or system',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to watch the counters', default = '5s', above = 0 },
    limited = param.number { 'share of busy time (%) limited by a window or buffer worth a finding', default = 20,
      min = 0, max = 100 },
    top = param.integer { 'connections shown', default = 20, min = 1, max = 100000 },
    json = param.flag { 'print the connections and the findings as one JSON document' },
    save = param.path { 'also write DIR/tcp-check.json (the recording) for --replay', optional = true },
    replay = param.path { 'judge the recording in DIR/tcp-check.json again (nothing is measured)', optional = true,
      conflicts = { 'save' } },
  },

  step 'read the connections twice' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local rec = inv:tcp_check { target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        replay = p.replay }
      if rec.available == false then inv:fail('tcp-check: ' .. tostring(rec.why)) end
      if p.save then inv:save_recording(p.save, rec) end
      inv.rec = rec
      inv.sum = require('perf_manual.runbooks.tcp_check').summarize(rec)
    end,
  },

  step 'what holds each connection back' {
    function(inv, p)
      local sc = inv.rec.sysctls or {}
      local rmem, wmem = sc['net.ipv4.tcp_rmem'], sc['net.ipv4.tcp_wmem']
      local said = {}
      local function say(c, severity, kind, text)
        said[#said + 1] = { conn = c.src .. ' -> ' .. c.dst, pid = c.pid, severity = severity, kind = kind,
          text = text }
      end
      for _, c in ipairs(inv.sum.conns) do
        if c.retrans > 0 then
          -- a handful (tail-loss and window probes count too) is not a lossy path
          local sev = c.retrans < 5 and 'low' or c.retrans_pct >= 1 and 'high' or 'medium'
          say(c, sev, 'retransmits', string.format(
            '%d segments retransmitted in the window (%.2f%% of %d sent): losses or reordering on the path; '
            .. 'rtt %.2f ms, cwnd %s, %s', c.retrans, c.retrans_pct, c.segs_out, c.rtt_ms or 0, tostring(c.cwnd),
            c.cc and ('congestion control ' .. c.cc) or 'congestion control unknown'))
        end
        if c.rwnd_share * 100 >= p.limited then
          local text = string.format('limited by the receiver\'s window %.0f%% of its busy time (window %s)',
            c.rwnd_share * 100, kib(c.snd_wnd or 0))
          if c.peer and c.peer.rb and c.peer.recvq >= c.peer.rb / 4 then
            text = text .. string.format(': the receiving process %s (pid %s) does not read fast enough — %s wait '
              .. 'in its receive queue, its buffer is %s. Make the reader faster; a bigger buffer only delays it',
              c.peer.comm or '?', tostring(c.peer.pid), kib(c.peer.recvq), kib(c.peer.rb))
          else
            text = text .. string.format(': the receiver\'s buffer bounds the window — raise net.ipv4.tcp_rmem\'s '
              .. 'maximum (now %s) on the receiver, or net.core.rmem_max (%s) if it sets SO_RCVBUF; the BDP is %s',
              type(rmem) == 'table' and tostring(rmem[3]) or '?', tostring(sc['net.core.rmem_max'] or '?'), kib(c.bdp))
          end
          say(c, 'medium', 'window', text)
        end
        if c.sndbuf_share * 100 >= p.limited then
          local text = string.format('limited by its own send buffer %.0f%% of its busy time (buffer %s, BDP %s)',
            c.sndbuf_share * 100, kib(c.tb), kib(c.bdp))
          local wmax = type(wmem) == 'table' and wmem[3]
          if wmax and c.tb and c.tb < wmax / 2 and c.tb <= 2 * (sc['net.core.wmem_max'] or 0) then
            text = text .. string.format(': the buffer is far below net.ipv4.tcp_wmem\'s maximum (%s): the '
              .. 'application probably fixed it with SO_SNDBUF (capped at net.core.wmem_max %s, doubled by the '
              .. 'kernel); let the kernel size it, or set it to the BDP or more', kib(wmax),
              kib(sc['net.core.wmem_max']))
          else
            text = text .. string.format(': raise net.ipv4.tcp_wmem\'s maximum (now %s)', kib(wmax))
          end
          say(c, 'medium', 'buffer', text)
        end
      end
      inv.said = said
    end,
  },

  step 'report' {
    function(inv, p)
      local rec, sum = inv.rec, inv.sum
      local sc = rec.sysctls or {}
      if p.json then
        return inv:json { target = rec.target, window_s = rec.window_s, edges = rec.edges, source = rec.source,
          replayed = rec.replayed or false, connections = inv:list(sum.conns), findings = inv:list(inv.said),
          sysctls = sc, notes = inv:list(rec.notes or {}) }
      end
      inv:printf('TCP connections of %s over %.1f s%s: %d established\n\n', rec.target, rec.window_s or 0,
        rec.replayed and ' (recorded)' or '', #sum.conns)
      inv:printf('%-44s %-7s %-6s %8s %6s %7s %8s %8s %6s %6s\n', 'connection', 'pid', 'cc', 'rtt ms', 'cwnd',
        'retrans', 'tx Mb/s', 'rx Mb/s', 'rwnd%', 'sndbuf%')
      for i, c in ipairs(sum.conns) do
        if i > p.top then
          inv:printf('... %d more\n', #sum.conns - p.top)
          break
        end
        inv:printf('%-44s %-7s %-6s %8.3f %6s %7d %8.1f %8.1f %5.0f%% %6.0f%%\n', c.src .. ' -> ' .. c.dst,
          tostring(c.pid or '-'), c.cc or '?', c.rtt_ms or 0, tostring(c.cwnd or '-'), c.retrans, c.send_mbps,
          c.recv_mbps, c.rwnd_share * 100, c.sndbuf_share * 100)
      end
      inv:printf('\nsysctls: tcp_rmem %s, tcp_wmem %s, rmem_max %s, wmem_max %s, congestion control %s '
        .. '(available: %s)\n', triple(sc['net.ipv4.tcp_rmem']), triple(sc['net.ipv4.tcp_wmem']),
        tostring(sc['net.core.rmem_max']), tostring(sc['net.core.wmem_max']),
        tostring(sc['net.ipv4.tcp_congestion_control']), tostring(sc['net.ipv4.tcp_available_congestion_control']))
      inv:print('')
      for _, f in ipairs(inv.said) do inv:printf('%s: %s: %s\n', f.severity, f.conn, f.text) end
      if #inv.said == 0 then inv:print('ok: no connection was held back by losses, its window or its buffer') end
    end,
  },
}
