-- The USE Network row fed by the net tracer, the network culprit and the
-- hypotheses that carry its 4-tuple, on results recorded from real faults in
-- a network namespace (tests/fixtures/netuse/: the investigations of
-- tests/e2e/net_use_spec.lua's workloads: tcp_churn noaccept, tcp_slow_peer
-- behind a 5% nftables drop, tcp_churn server delay=50 and its client, a
-- client connecting to a closed port).
local use = require('perf_manual.analyzers.use')
local netuse = require('perf_manual.analyzers.netuse')
local root_cause = require('perf_manual.analyzers.root_cause')
local findings = require('perf_manual.analyzers.findings')
local util = require('perf_manual.util')

local function load(name)
  return assert(util.json_decode(test_helpers.fixture('netuse/' .. name .. '.json')))
end

local function net_row(r, name)
  for _, x in ipairs(r.rows) do
    if x.resource == 'network' and (not name or x.name == name) then return x end
  end
end

local function copy(t)
  if type(t) ~= 'table' then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

local function data(name)
  local d = { use = load(name .. '.use-check'), tsa = load(name .. '.tsa'),
    traces = { net = load(name .. '.trace-net') }, profiles = {} }
  return findings.prepare(d)
end

describe('USE Network row from the net tracer', function()
  it('a listener of the target that drops connections makes the row HIGH and names port and owner', function()
    local m = load('listener.use-check').measures
    local r = use.analyze(m)
    local row = net_row(r, 'lo')
    assert.equal('HIGH', row.status)
    assert.equal('network', r.verdict.resource)
    local l = m.bpf.net.listeners[1]
    assert.matches(string.format('listener port %d pid %d (tcp_churn): %d connections dropped', l.port, l.pid,
      l.listen_drops), row.saturation.text, 1, true)
    assert.matches('BPF net tracer', row.saturation.source, 1, true)
    assert.equal(l.port, row.culprit.listeners[1].port)
    -- the target's listener first, then the namespace's counters for scale
    local own = row.saturation.text:find('listener port', 1, true)
    local all = row.saturation.text:find('all sockets: TCP retrans', 1, true)
    assert.is_true(own and all and own < all, row.saturation.text)
    assert.matches('/net/snmp', row.saturation.source, 1, true)
    local src = use.sources(m)
    assert.equal('bpf', src.network.source)
    local lines = table.concat(use.render_sources(src), '\n')
    assert.matches('network saturation and errors from BPF', lines, 1, true)
  end)

  it('without the tracer the row is judged from the namespace counters, and the source line says so', function()
    local m = copy(load('listener.use-check').measures)
    m.bpf.net = nil
    m.bpf.errors.net = 'no BTF'
    local r = use.analyze(m)
    local row = net_row(r, 'lo')
    assert.matches('/net/snmp', row.saturation.source, 1, true)
    assert.is_nil(row.saturation.text:find('listener port', 1, true))
    local lines = table.concat(use.render_sources(use.sources(m)), '\n')
    assert.matches('network saturation and errors from /proc/net/snmp and netstat counters', lines, 1, true)
    assert.matches('no BTF', lines, 1, true)
  end)

  it('a retransmitting flow is named by its 4-tuple on the row of the interface it leaves by', function()
    local m = load('loss.use-check').measures
    local f = m.bpf.net.flows[1]
    assert.is_true(f.retrans_segs > 0)
    local row = net_row(use.analyze(m), 'lo')
    assert.matches(f.tuple .. ' pid ' .. f.pid, row.saturation.text, 1, true)
    -- the same flow leaving by another interface is that interface's, not loopback's
    local m2 = copy(m)
    m2.bpf.net.flows[1].iface = 'eth0'
    m2.nets[#m2.nets + 1] = { name = 'eth0', rx_bytes_per_s = 5000, tx_bytes_per_s = 5000 }
    local r2 = use.analyze(m2)
    assert.matches(f.tuple, net_row(r2, 'eth0').saturation.text, 1, true)
    assert.is_nil(net_row(r2, 'lo').saturation.text:find(f.tuple, 1, true))
  end)

  it('refused connects are errors of the row, with the 4-tuples', function()
    local m = load('refused.use-check').measures
    local bn = m.bpf.net
    assert.is_true(bn.refused > 0 and bn.refused <= bn.connect_fails)
    local row = net_row(use.analyze(m), 'lo')
    assert.matches(string.format('%d connects failed (%d refused: %s', bn.connect_fails, bn.refused,
      bn.flows[1].tuple), row.errors.text, 1, true)
    assert.equal('warn', row.status)
  end)
end)

describe('the network culprit', function()
  it('loss: the flow with retransmits, and the hypothesis names it', function()
    local d = data('loss')
    local c = netuse.culprit(d.traces.net, d.use.measures.bpf.net, d.tsa)
    assert.equal('loss', c.kind)
    assert.matches('^127%.0%.0%.1:%d+ 127%.0%.0%.1:%d+$', c.flow)
    local res = root_cause.score('packet loss makes TCP retransmit', d)
    assert.equal('net-retransmits', res.entry)
    assert.matches('flow ' .. c.flow, res.cause, 1, true)
    -- it waits on that flow: not the peer's doing
    local pw = root_cause.score('waiting on a slow peer', d)
    assert.equal('peer-wait', pw.entry)
    assert.are_not.equal('supported', pw.verdict)
    assert.equal('supported', res.verdict)
  end)

  it('loss seen only by the USE check still names the flow (a retransmit burst outside the drill-down)', function()
    local d = data('loss')
    local tr = copy(d.traces.net)
    for _, f in ipairs(tr.flows) do f.retrans_segs = 0 end
    local c = netuse.culprit(tr, d.use.measures.bpf.net, d.tsa)
    assert.equal('loss', c.kind)
    assert.equal(d.use.measures.bpf.net.flows[1].tuple, c.flow)
  end)

  it('a listener that stops accepting: port, owner, queue and backlog; the catalogue entry is supported', function()
    local d = data('listener')
    local c = netuse.culprit(d.traces.net, nil, d.tsa)
    assert.equal('listener', c.kind)
    local l = d.traces.net.listeners[1]
    assert.equal(l.port, c.port)
    assert.equal(l.listen_drops, c.dropped)
    assert.equal(l.max_backlog, c.backlog)
    local res = root_cause.score('the listener stops accepting', d)
    assert.equal('net-listen-overflow', res.entry)
    assert.equal('supported', res.verdict)
    assert.matches(string.format('listener port %d of pid %d', l.port, l.pid), res.cause, 1, true)
    local lines = netuse.drill_lines(d.traces.net, d.tsa)
    assert.matches('stops accepting', lines[1], 1, true)
  end)

  it('a slow peer: the flow waited on, clean, and the answer time from the connections\' lives', function()
    local d = data('slow_answer')
    local c = netuse.culprit(d.traces.net, nil, d.tsa)
    assert.equal('slow_peer', c.kind)
    assert.matches(':7100$', c.flow)
    -- the server was started with delay=50 (ms)
    assert.is_true(c.answer.ms >= 50 and c.answer.ms < 55, tostring(c.answer.ms))
    local res = root_cause.score('waiting on a slow peer', d)
    assert.equal('peer-wait', res.entry)
    assert.matches('TCP flow ' .. c.flow .. ' carries it without loss', res.cause, 1, true)
  end)

  it('a wait whose socket was never named falls back to the peer the connections went to', function()
    local d = data('slow_answer')
    local tsa = copy(d.tsa)
    for _, w in ipairs(tsa.waits) do w.remote, w.text, w['local'] = nil, nil, nil end
    local c = netuse.culprit(d.traces.net, nil, tsa)
    assert.equal('slow_peer', c.kind)
    assert.equal('127.0.0.1:7100', c.remote)
  end)

  it('nothing measured: no culprit', function()
    assert.is_nil(netuse.culprit(nil, nil, nil))
  end)
end)
