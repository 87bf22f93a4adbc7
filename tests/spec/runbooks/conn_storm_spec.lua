-- conn-storm on recordings of real runs (tests/fixtures/runbooks/conn-storm/,
-- record.sh: a network namespace with ip_local_port_range 40000-40999):
-- 300 connections at a listener that never accepts (backlog 8) (overflow),
-- 900 connections closed at once towards an accepting server, each leaving
-- a TIME_WAIT socket on its port (ports), and the same server idle (quiet).
local h = test_helpers
local util = require('perf_manual.util')
local cs = require('perf_manual.runbooks.conn_storm')
local DIR = h.root .. '/tests/fixtures/runbooks/conn-storm/'

local R = require('spec.runbooks.replay')
local function replay(name, extra) return R.run('conn-storm', name, extra) end

local by_kind = R.by_kind

describe('conn-storm (replay)', function()
  it('names the listener whose accept queue overflows', function()
    local doc = assert(util.json_decode(replay('overflow', '--json')))
    local f = by_kind(doc)['accept-queue']
    assert.equal('high', f.severity)
    local l = doc.listeners[1]
    assert.equal(8, l.max_backlog)
    assert.matches(string.format('port %d of tcp_churn %%(pid %d%%), backlog 8', l.port, l.pid), f.text)
    -- the namespace's counter and the tracer's count at the listener agree
    assert.equal(doc.counters.ListenOverflows, l.drops)
    -- the load's own count: only the backlog's worth (8 + 1) ever connected
    assert.equal(9, doc.load.ok)
    assert.is_true(l.accepts <= 9)
  end)

  it('sees the port range nearly used up by TIME_WAIT sockets towards one destination', function()
    local doc = assert(util.json_decode(replay('ports', '--json')))
    local f = by_kind(doc)['ephemeral-ports']
    assert.is_table(f)
    assert.same({ 40000, 40999 }, doc.sysctls['net.ipv4.ip_local_port_range'])
    local busiest = doc.peak.ephemeral[1]
    assert.is_true(busiest.count >= 500 and busiest.count <= 1000)
    -- the ports are held by TIME_WAIT sockets (and at most --parallel 16 connects in flight)
    assert.is_true(doc.peak.states.TIME_WAIT >= busiest.count - 16)
    assert.equal(doc.load.ok, doc.counters.ActiveOpens)
    assert.matches('will fail with EADDRNOTAVAIL', f.text)
  end)

  it('finds nothing on an idle server, and prints the sysctls', function()
    local out = replay('quiet')
    assert.matches('\nok: no queue, table or port range came near its limit', out)
    assert.matches('ephemeral ports: range 40000%-40999', out)
    assert.matches('somaxconn %d+', out)
  end)

  it('refuses bad input in one line', function()
    local _, err, st = h.pm('conn-storm --load 10')
    assert.equal(2, st)
    assert.matches('^perf_manual: conn%-storm: %-%-load needs %-%-port', err)
    _, err, st = h.pm('conn-storm --replay ' .. DIR .. 'nothing-here')
    assert.equal(2, st)
    assert.matches('not in the recorded data', err)
    local out
    out, _, st = h.pm('conn-storm --help')
    assert.equal(0, st)
    assert.matches('somaxconn', out)
  end)
end)

describe('perf_manual.runbooks.conn_storm', function()
  it('reads the TcpExt and Tcp counters (real /proc/net/netstat and snmp)', function()
    local c = cs.parse_counters(h.fixture('runbooks/conn-storm/netstat.txt'))
    cs.parse_counters(h.fixture('runbooks/conn-storm/snmp.txt'), c)
    for _, k in ipairs({ 'ListenOverflows', 'ListenDrops', 'TCPReqQFullDrop', 'SyncookiesSent', 'TW',
      'ActiveOpens', 'PassiveOpens', 'AttemptFails' }) do
      assert.is_number(c[k], k)
    end
  end)

  it('counts states, listeners and ephemeral ports in /proc/net/tcp (real: a listener, five TIME_WAIT)', function()
    local s = cs.parse_tcp(h.fixture('runbooks/conn-storm/tcp.txt'), 32768, 60999)
    assert.equal(1, s.states.LISTEN)
    assert.equal(5, s.states.TIME_WAIT)
    assert.equal(0, s.listen[47130])
    assert.equal(5, s.ephemeral['127.0.0.1:47130'])
  end)
end)
