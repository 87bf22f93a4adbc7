local network = require('perf_manual.collectors.network')
local fx = test_helpers.root .. '/tests/fixtures/proc/'
local INTERVAL = 1.004866 -- tests/fixtures/proc/net_interval

local function snap(dir, t)
  local s = network.sample({ dev = fx .. dir .. '/net_dev', snmp = fx .. dir .. '/net_snmp',
    netstat = fx .. dir .. '/net_netstat', links = false })
  s.time = t
  return s
end

describe('perf_manual.collectors.network', function()
  it('parses a real /proc/net/dev', function()
    local d = assert(network.parse_dev(fixture('proc/net_t1/net_dev')))
    assert.same({ 'eth0', 'ifb0', 'ifb1', 'lo' }, require('perf_manual.util').keys(d))
    assert.equal(146610722, d.lo.rx_bytes)
    assert.equal(895563, d.lo.tx_packets)
    assert.equal(0, d.eth0.rx_errs)
    assert.equal(0, d.eth0.tx_compressed)
  end)

  it('parses /proc/net/snmp and /proc/net/netstat name/value line pairs', function()
    local s = assert(network.parse_snmp(fixture('proc/net_t1/net_snmp')))
    assert.equal(897207, s.Tcp.OutSegs)
    assert.equal(-1, s.Tcp.MaxConn)
    assert.equal(6, s.Tcp.CurrEstab)
    assert.is_number(s.Udp.RcvbufErrors)
    local n = assert(network.parse_netstat(fixture('proc/net_t1/net_netstat')))
    assert.equal(18, n.TcpExt.ListenOverflows)
    assert.equal(18, n.TcpExt.ListenDrops)
    assert.equal(296702629, n.IpExt.InOctets)
  end)

  it('rejects mismatched snmp lines', function()
    local s, err = network.parse_snmp('Tcp: A B\nTcp: 1\n')
    assert.is_nil(s)
    assert.equal('mismatched lines for Tcp', err)
  end)

  it('computes throughput, TCP and listen-queue rates between two captures', function()
    local r = network.rates(snap('net_t0', 0), snap('net_t1', INTERVAL))
    local lo = r.by_name.lo
    assert.near((146610722 - 125587322) / INTERVAL, lo.rx_bytes_per_s, 1e-6)
    assert.near((895563 - 894569) / INTERVAL, lo.tx_packets_per_s, 1e-9)
    assert.equal(0, lo.rx_drop)
    assert.near((897207 - 896213) / INTERVAL, r.tcp.out_segs_per_s, 1e-9)
    assert.equal(0, r.tcp.retrans_pct)
    assert.near(21 / INTERVAL, r.tcp.active_opens_per_s, 1e-9)
    assert.equal(6, r.tcp.curr_estab)
    assert.equal(18, r.tcpext.listen_overflows)
    assert.equal(18, r.tcpext.listen_drops)
    assert.equal(18, r.tcp.listen_overflows)
    assert.near(18 / INTERVAL, r.tcpext.listen_overflows_per_s, 1e-9)
    -- no link speed in the fixture: utilisation is missing, not 0
    assert.is_nil(lo.util_pct)
    assert.equal('no link speed for lo', lo.missing.util_pct)
  end)

  it('computes utilisation against a known link speed', function()
    local a, b = snap('net_t0', 0), snap('net_t1', 1)
    a.interfaces.lo.speed_mbps, b.interfaces.lo.speed_mbps = 1000, 1000
    local r = network.rates(a, b)
    assert.near(100 * (146610722 - 125587322) * 8 / 1e9, r.by_name.lo.util_pct, 1e-9)
    assert.equal(125e6, r.by_name.lo.speed_bytes_per_s)
  end)

  it('reads this machine\'s interfaces, never reporting a speed of 0', function()
    local s = network.sample()
    assert.is_table(s.interfaces.lo)
    assert.is_true(s.interfaces.lo.virtual)
    for name, t in pairs(s.interfaces) do
      if t.speed_mbps == nil then
        assert.is_string(s.missing[name .. '.speed_mbps'])
      else
        assert.is_true(t.speed_mbps > 0)
      end
    end
  end)

  it('reads the host files for a process of our own network namespace, and says nothing is foreign', function()
    local sys = require('perf_manual._c.sys')
    assert.is_nil(network.netns_paths(sys.getpid()))
    assert.is_nil(network.netns_paths(2 ^ 22 + 7)) -- no such process: no namespace to read
  end)
end)
