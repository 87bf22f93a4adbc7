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
  local f = { flows = util.array(), listeners = util.array(), drops = util.array(), refused = 0, resets = 0 }
  local at_home = iface == home
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
function M.apply(row, n, m, T, base_sat, src_extra)
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
  row.saturation = { text = table.concat(s, ', '), value = retrans / math.max(secs or 0, 1e-9),
    source = M.SOURCE .. ', ' .. tostring(bn.attach) .. ')' .. src_extra }
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

return M
