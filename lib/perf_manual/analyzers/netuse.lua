--- The USE Network row's BPF part: what the net tracer saw over the check
--- (perf_manual.measure.netuse), judged for one interface's row. Flows go
--- to the row of the interface their peer is reached by; what has no
--- interface (listeners, drops by reason, refused connects) goes to the
--- "home" row: the interface of the first faulty flow, else the busiest.
--- Pure: measures in, text and raises out.
local util = require('perf_manual.util')

local M = {}

M.SOURCE = 'BPF net tracer (tcp_retransmit_skb, tcp_receive_reset, kfree_skb, listener iterator'

--- The interface that carries the faults with no interface of their own.
function M.home(m)
  local bn = m.bpf and m.bpf.net
  for _, f in ipairs(bn and bn.flows or {}) do if f.iface then return f.iface end end
  local best
  for _, n in ipairs(m.nets or {}) do
    local b = (n.rx_bytes_per_s or 0) + (n.tx_bytes_per_s or 0)
    if not best or b > best.b then best = { name = n.name, b = b } end
  end
  return best and best.name
end

local function who(x)
  if not x.pid then return '' end
  return string.format(' pid %d (%s)', x.pid, tostring(x.comm or '?'))
end

local function rate(n, secs)
  local r = secs and secs > 0 and n / secs or 0
  return r >= 10 and string.format('%.0f/s', r) or string.format('%.2f/s', r)
end

--- Faults of one interface's row: { flows =, listeners =, drops =, refused = }
--- (listeners, drops and refused only on the home row).
function M.faults(bn, iface, home)
  local at_home = iface == home
  local f = { flows = util.array(), listeners = util.array(), drops = util.array(), refused = 0, home = at_home }
  for _, x in ipairs(bn.flows or {}) do
    if x.iface == iface or (not x.iface and at_home) then f.flows[#f.flows + 1] = x end
  end
  if at_home then
    for _, l in ipairs(bn.listeners or {}) do f.listeners[#f.listeners + 1] = l end
    for _, d in ipairs(bn.drop_reasons or {}) do f.drops[#f.drops + 1] = d end
    f.refused = bn.refused or 0
    f.connect_fails = bn.connect_fails or 0
  end
  return f
end

--- Sets the row's saturation and errors from the tracer. T: thresholds.network.
--- Returns the faults put on the row.
function M.apply(row, n, m, T, base_sat, src_extra, pn)
  local bn = m.bpf.net
  local secs = bn.seconds
  local f = M.faults(bn, n.name, M.home(m))
  local s = { base_sat }
  local retrans, list = 0, {}
  for _, x in ipairs(f.flows) do
    retrans = retrans + x.retrans_segs
    if x.retrans_segs > 0 and #list < 3 then
      list[#list + 1] = string.format('%s%s %d segments', x.tuple, who(x), x.retrans_segs)
    end
  end
  s[#s + 1] = 'TCP retrans ' .. rate(retrans, secs) .. (#list > 0 and (' on ' .. table.concat(list, ', ')) or '')
  local ldrops = 0
  for i, l in ipairs(f.listeners) do
    ldrops = ldrops + (l.listen_drops or 0)
    if i <= 3 then
      s[#s + 1] = string.format('listener port %d%s: %d connections dropped, accept queue full (%d queued, '
        .. 'backlog %d)', l.port, who(l), l.listen_drops or 0, l.peak_backlog or l.queue or 0, l.max_backlog or 0)
    end
  end
  local dl = {}
  for i, d in ipairs(f.drops) do
    if i > 3 then break end
    dl[i] = string.format('%s %d', d.reason, d.count)
  end
  if #dl > 0 then s[#s + 1] = 'kernel drops by reason: ' .. table.concat(dl, ', ') end
  -- after the target's own flows, everyone's (the namespace's counters), for scale
  local tcp, extra = m.tcp or {}, ''
  if m.target and m.target.kind ~= 'system' and f.home and tcp.retrans_per_s then
    s[#s + 1] = string.format('all sockets: TCP retrans %s%s', rate(tcp.retrans_per_s, 1),
      (tcp.listen_overflows or 0) > 0 and string.format(', %d listen overflows', tcp.listen_overflows) or '')
    extra = ', ' .. pn .. '/snmp, ' .. pn .. '/netstat'
  end
  row.saturation = { text = table.concat(s, ', '), value = retrans / math.max(secs or 0, 1e-9),
    source = M.SOURCE .. ', ' .. tostring(bn.attach) .. ')' .. src_extra .. extra }
  local errs = (n.rx_errs_per_s or 0) + (n.tx_errs_per_s or 0)
  local e = { string.format('%.2f/s errors', errs) }
  local refused = {}
  for _, x in ipairs(f.flows) do
    if x.resets_recv > 0 and x.retrans_segs == 0 and #refused < 3 then
      refused[#refused + 1] = x.tuple .. who(x)
    end
  end
  if (f.connect_fails or 0) > 0 then
    e[#e + 1] = string.format('%d connects failed (%d refused%s)', f.connect_fails, f.refused,
      #refused > 0 and (': ' .. table.concat(refused, ', ')) or '')
  elseif #refused > 0 then
    e[#e + 1] = 'resets received on ' .. table.concat(refused, ', ')
  end
  row.errors = { text = table.concat(e, ', '), value = errs, source = M.SOURCE .. ')' }
  -- the target's own faults judge the row (with a filter all flows are its)
  local rs = secs and secs > 0 and retrans / secs or 0
  if rs >= T.retrans_high then
    row.raise('HIGH', rs / T.retrans_high, string.format('TCP retransmits %s on %s', rate(retrans, secs),
      list[1] or '?'))
  elseif rs >= T.retrans_warn then
    row.raise('warn', nil, 'TCP retransmits on ' .. (list[1] or '?'))
  end
  local lr = secs and secs > 0 and ldrops / secs or 0
  if lr >= T.listen_drops_high then
    local l = f.listeners[1]
    row.raise('HIGH', lr / T.listen_drops_high, string.format('listener port %d%s drops connections (%s): its '
      .. 'accept queue is full', l.port, who(l), rate(ldrops, secs)))
  elseif ldrops > 0 then
    row.raise('warn', nil, 'listen queue overflows')
  end
  if f.refused > 0 then row.raise('warn', nil, string.format('%d refused connects', f.refused)) end
  f.retrans_per_s, f.listen_drops_per_s = rs, lr
  return f
end

-- ---------------------------------------------------------------------------
-- The network culprit: from the drill-down's net trace (tracers.net result,
-- possibly back from JSON), else the USE check's BPF measures, and the
-- target's thread states. One fault named with its 4-tuple.
-- ---------------------------------------------------------------------------

local function tuple_of(f)
  if f.tuple then return f.tuple end
  local function ep(a, p) return (tostring(a):find(':', 1, true) and ('[' .. a .. ']') or tostring(a)) .. ':' .. p end
  return ep(f.laddr, f.lport) .. ' ' .. ep(f.raddr, f.rport)
end
M.tuple_of = tuple_of

--- The TCP flow the target waits on most (thread states): { flow=, remote=, share=, text= } or nil.
function M.tcp_wait(tsa)
  if type(tsa) ~= 'table' then return nil end
  for _, w in ipairs(tsa.waits or {}) do
    -- a socket gone before the waits were named (a connection per request)
    -- still has the peer in its text when an earlier one was named
    local remote = type(w.remote) == 'string' and w.remote or type(w.text) == 'string' and w.text:match('^tcp6? (%S+)')
    if w.reason == 'net' and remote and (tonumber(w.share) or 0) >= 10 then
      return { remote = remote, flow = w['local'] and (w['local'] .. ' ' .. remote) or nil,
        share = tonumber(w.share), text = w.text, syscall = w.syscall }
    end
  end
end

--- Median answer time of closed connections to `remote` ("addr:port"):
--- their life less the connect, in ms; { ms=, n= } or nil.
local function answers(conns, remote)
  local list = {}
  for _, c in ipairs(conns or {}) do
    if c.dir == 'connect' and tuple_of(c):match('%S+$') == remote and c.duration_ns then
      list[#list + 1] = (c.duration_ns - (c.connect_ns or 0)) / 1e6
    end
  end
  if #list == 0 then return nil end
  table.sort(list)
  return { ms = list[math.floor((#list + 1) / 2)], n = #list }
end

--- { kind = 'listener'|'loss'|'refused'|'slow_peer', flow=, pid=, comm=, ... , text= } or nil.
--- tr: a net trace result; bn: the USE check's m.bpf.net; tsa: thread states.
function M.culprit(tr, bn, tsa)
  local src = type(tr) == 'table' and tr.total and tr or nil
  local secs = src and tonumber(src.seconds) or bn and bn.seconds or 0
  local flows = src and src.flows or bn and bn.flows or {}
  local listeners = src and src.listeners or bn and bn.listeners or {}
  local wait = M.tcp_wait(tsa)
  local sh = type(tsa) == 'table' and type(tsa.total) == 'table' and type(tsa.total.shares) == 'table'
    and tonumber(tsa.total.shares.net) or 0
  if not wait and sh >= 25 and src then
    -- blocked on sockets none of which could be named: the peer the target's
    -- connections went to (the last one's tuple)
    local n, last, best = {}, {}, nil
    for _, c in ipairs(src.conns or {}) do
      if c.dir == 'connect' then
        local r = tuple_of(c):match('%S+$')
        n[r], last[r] = (n[r] or 0) + 1, tuple_of(c)
        if not best or n[r] > n[best] then best = r end
      end
    end
    if best then wait = { remote = best, flow = last[best], share = sh } end
  end
  local function per_s(n) return secs > 0 and n / secs or nil end
  local best
  for _, l in ipairs(listeners) do
    local d = tonumber(l.listen_drops) or 0
    if d > 0 and (not best or d > best.dropped) then
      best = { kind = 'listener', port = l.port, pid = l.pid ~= 0 and l.pid or nil, comm = l.comm, dropped = d,
        per_s = per_s(d), queue = l.peak_backlog or l.queue, backlog = l.max_backlog }
    end
  end
  if best then
    best.text = string.format('listener port %d%s stops accepting: %d connections dropped (%s), accept queue '
      .. 'full (%s queued, backlog %s)', best.port, who(best), best.dropped, rate(best.dropped, secs),
      tostring(best.queue), tostring(best.backlog))
    best.wait = wait
    return best
  end
  local loss
  local function lossy(list, s)
    for _, f in ipairs(list) do
      local r = tonumber(f.retrans_segs) or 0
      if r > 0 and (not loss or r > loss.segs) then
        loss = { kind = 'loss', flow = tuple_of(f), pid = f.pid ~= 0 and f.pid or nil, comm = f.comm, segs = r,
          per_s = s > 0 and r / s or nil, drops = tonumber(f.drops) or 0 }
      end
    end
  end
  lossy(flows, secs)
  -- a lossy flow retransmits in bursts (a lost retransmit stalls it on the
  -- timer for seconds): what the USE check saw on it still counts
  if not loss and src and bn then lossy(bn.flows or {}, bn.seconds or 0) end
  if loss then
    local reasons = {}
    for i, d in ipairs(src and src.drops or bn and bn.drop_reasons or {}) do
      if i > 2 then break end
      reasons[#reasons + 1] = string.format('%s %d', tostring(d.reason), tonumber(d.count) or 0)
    end
    loss.reasons = #reasons > 0 and table.concat(reasons, ', ') or nil
    loss.text = string.format('loss: %d segments retransmitted (%s) on flow %s%s%s', loss.segs,
      loss.per_s and rate(loss.per_s, 1) or '?',
      loss.flow, who(loss), loss.reasons and ('; packets dropped by the kernel: ' .. loss.reasons) or '')
    loss.wait = wait
    return loss
  end
  local refused = {}
  for _, f in ipairs(flows) do
    if (tonumber(f.resets_recv) or 0) > 0 and (tonumber(f.retrans_segs) or 0) == 0 then refused[#refused + 1] = f end
  end
  local fails = src and src.total and tonumber(src.total.connect_fails) or bn and bn.connect_fails or 0
  if #refused > 0 and fails > 0 then
    local f = refused[1]
    return { kind = 'refused', flow = tuple_of(f), pid = f.pid ~= 0 and f.pid or nil, comm = f.comm,
      count = math.min(#refused, fails), fails = fails, wait = wait,
      text = string.format('refused connects: %d of %d failed connects were reset by the peer, e.g. flow %s%s',
        math.min(#refused, fails), fails, tuple_of(f), who({ pid = f.pid ~= 0 and f.pid or nil, comm = f.comm })) }
  end
  if wait then
    -- the target waits on a flow the network carries clean: the peer is slow to answer
    local c = { kind = 'slow_peer', flow = wait.flow or wait.remote, remote = wait.remote, share = wait.share,
      wait = wait }
    local conn = src and src.connect or {}
    c.connect_p99_us = tonumber(conn.p99_us)
    c.answer = answers(src and src.conns, wait.remote)
    c.text = string.format('peer slow to answer: the target waits on flow %s %.0f%% of its wall time with no '
      .. 'retransmit or drop on it%s%s', c.flow, c.share or 0,
      c.answer and string.format('; its connections to %s last %.1f ms past the connect (median of %d)',
        wait.remote, c.answer.ms, c.answer.n) or '',
      c.connect_p99_us and string.format('; connect latency p99 %.2f ms', c.connect_p99_us / 1e3) or '')
    return c
  end
end

--- Lines for the network drill-down (investigate). bn: the USE check's BPF measures, if any.
function M.drill_lines(tr, tsa, bn)
  local out = {}
  local c = M.culprit(tr, bn, tsa)
  if c then out[#out + 1] = c.text end
  local t = type(tr) == 'table' and tr.total or nil
  if t then
    out[#out + 1] = string.format('TCP of the target over %.1f s: %d connects (%d failed), %d accepts, %d '
      .. 'retransmitted segments, %d resets received, %d sent, %d drops', tonumber(tr.seconds) or 0, t.connects or 0,
      t.connect_fails or 0, t.accepts or 0, t.retrans_segs or 0, t.resets_recv or 0, t.resets_sent or 0,
      t.drops or 0)
    local conn = tr.connect or {}
    if (tonumber(conn.count) or 0) > 0 then
      out[#out + 1] = string.format('connect latency: p50 %.3f ms, p99 %.3f ms (%d connects)',
        (tonumber(conn.p50_us) or 0) / 1e3, (tonumber(conn.p99_us) or 0) / 1e3, conn.count)
    end
  end
  if c and c.wait and c.kind ~= 'slow_peer' then
    out[#out + 1] = string.format('the target waits on %s %.0f%% of its wall time', tostring(c.wait.flow
      or c.wait.remote), c.wait.share or 0)
  end
  if #out == 0 then out[1] = 'no TCP activity of the target in the window' end
  return out
end

return M
