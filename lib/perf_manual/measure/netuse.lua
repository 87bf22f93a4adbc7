--- The USE Network row's BPF source: the net tracer run over the USE
--- check's window (filtered on the target like the lock tracer), reduced to
--- the faults that row judges: retransmits and resets per 4-tuple, drops by
--- the kernel's drop reason, listen-queue overflows per listener, refused
--- or failed connects. Each flow is put on the interface its peer is
--- reached by, so the row of that interface names it.
---
---   netuse.start(session, { pid = 1234 })
---   m.bpf.net = netuse.measures(session_results.net, elapsed, netpaths)
local net = require('perf_manual.tracers.net')
local network = require('perf_manual.collectors.network')
local common = require('perf_manual.collectors.common')
local util = require('perf_manual.util')

local M = {}

-- rows kept per list (the measures land in the investigation's JSON)
M.KEEP = 10

--- Starts the net tracer on the session, without its per-connection stream
--- (the row needs counts, not closed connections).
function M.start(s, filter)
  return s:start_tracer('net', net, { pid = filter.pid, cgroup = filter.cgroup, events = false })
end

local function flow_row(f, routes)
  local iface = network.route_iface(f.raddr, routes, f.laddr)
  return { tuple = net.tuple_text(f), laddr = f.laddr, lport = f.lport, raddr = f.raddr, rport = f.rport,
    pid = f.pid ~= 0 and f.pid or nil, comm = f.comm ~= '' and f.comm or nil, iface = iface,
    retrans_segs = f.retrans_segs, synack_retrans = f.synack_retrans, retrans_failed = f.retrans_failed,
    resets_sent = f.resets_sent, resets_recv = f.resets_recv, drops = f.drops }
end

--- The tracer's result (tracers.net read) as USE measures: { seconds=,
--- retrans_segs=, retrans_per_s=, drops=, drops_per_s=, refused=, connect_fails=,
--- connects=, listen_drops=, flows = { {tuple=, pid=, comm=, iface=, ...} },
--- drop_reasons = { {reason=, count=, at_traced_sockets=} }, listeners =
--- { {port=, pid=, comm=, listen_drops=, queue=, max_backlog=, peak_backlog=} },
--- attach=, quality= }. netpaths: the target's namespace (routes), or nil.
function M.measures(res, elapsed, netpaths)
  local secs = res.seconds or elapsed or 0
  local tot = res.total or {}
  local routes = common.read_parse(netpaths and netpaths.route or '/proc/net/route', network.parse_route)
  local out = { seconds = secs, retrans_segs = tot.retrans_segs or 0, drops = tot.drops or 0,
    connects = tot.connects or 0, connect_fails = tot.connect_fails or 0, accepts = tot.accepts or 0,
    resets_sent = tot.resets_sent or 0, resets_recv = tot.resets_recv or 0, listen_drops = tot.listen_drops or 0,
    flows = util.array(), drop_reasons = util.array(), listeners = util.array(),
    connect_p99_us = res.connect and res.connect.p99_us, connect_avg_us = res.connect and res.connect.avg_us,
    drops_traced = res.drops_traced, listen_drops_from = res.listen_drops_from,
    listen_drops_note = res.listen_drops_note,
    attach = res.quality and res.quality.attach_path, quality = res.quality }
  if secs > 0 then
    out.retrans_per_s, out.drops_per_s = out.retrans_segs / secs, out.drops / secs
  end
  for _, f in ipairs(res.flows or {}) do
    if (f.events or 0) > 0 then
      if #out.flows < M.KEEP then out.flows[#out.flows + 1] = flow_row(f, routes) end
    end
  end
  for i, d in ipairs(res.drops or {}) do
    if i > M.KEEP then break end
    out.drop_reasons[i] = { reason = d.reason, count = d.count, at_traced_sockets = d.at_traced_sockets }
  end
  -- connects that failed (SYN sent -> closed), as many as resets came: refused
  -- (the flows map holds a bounded number of 4-tuples; the totals are whole)
  out.refused = math.min(out.resets_recv, out.connect_fails)
  for _, l in ipairs(res.listeners or {}) do
    if (l.listen_drops or 0) > 0 or (l.overflows or 0) > 0 then
      if #out.listeners < M.KEEP then
        out.listeners[#out.listeners + 1] = { port = l.port, netns = l.netns, pid = l.pid ~= 0 and l.pid or nil,
          comm = l.comm ~= '' and l.comm or nil, listen_drops = l.listen_drops, overflows = l.overflows,
          queue = l.queue, max_backlog = l.max_backlog, peak_backlog = l.peak_backlog }
      end
    end
  end
  return out
end

return M
