-- Decoding and aggregation on maps and ring-buffer records recorded from a
-- real run (tests/fixtures/bpf/net_maps.txt: tcp_churn's server and client
-- on loopback, 20 connections of 300 bytes out / 700 back, then 3 connects
-- to a closed port), checked against the clients' own counts.
local net = require('perf_manual.tracers.net')
local bpf = require('perf_manual._c.bpf')
local ffi = require('ffi')

local function unhex(s) return (s:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end)) end
local text = test_helpers.fixture('bpf/net_maps.txt')

local function recorded(map, decode)
  local out = {}
  for line in text:gmatch('[^\n]+') do
    local m, k, v = line:match('^(%S+)\t(%x+)\t(%x+)$')
    if m == 'net.' .. map then out[#out + 1] = decode(unhex(k), unhex(v)) end
  end
  return out
end

local function events()
  local out = {}
  for hexrec in text:gmatch('net%.events\t(%x+)') do out[#out + 1] = net.decode_event(unhex(hexrec)) end
  return out
end

local function reasons()
  local r = {}
  for code, name in text:gmatch('\nreason\t(%d+)\t(%S+)') do r[tonumber(code)] = name end
  return r
end

local server_pid = tonumber(text:match('server%.pid\t(%d+)'))
local ok_n, tx, rx = text:match('\nclient\tok (%d+) fail 0 median_connect_ns %d+ tx (%d+) rx (%d+)')
ok_n, tx, rx = tonumber(ok_n), tonumber(tx), tonumber(rx)
local refused = tonumber(text:match('\nrefused\tok 0 fail (%d+)'))

local function result()
  return net.aggregate({
    procs = recorded('procs', net.decode_proc), flows = recorded('flows', net.decode_flow),
    drops = recorded('drops', net.decode_drop), listeners = recorded('listeners', net.decode_listener),
    conns = events(),
  }, 2, reasons())
end

local function find(list, pred)
  for _, x in ipairs(list) do if pred(x) then return x end end
end

describe('perf_manual.tracers.net', function()
  it('mirrors the kernel structs (sizes from the object BTF)', function()
    local sizes = net.sizeof()
    for _, n in ipairs({ 'tuple', 'owner', 'proc', 'flow', 'drop_key', 'listen_key', 'listener', 'event' }) do
      local bt = assert(bpf.btf_type('net', 'struct pm_net_' .. n), n)
      assert.equal(bt.size, sizes[n], n)
    end
    local ev = assert(bpf.btf_type('net', 'struct pm_net_event'))
    assert.equal(ev.members.tuple, ffi.offsetof('struct pm_net_event', 'tuple'))
    assert.equal(ev.members.comm, ffi.offsetof('struct pm_net_event', 'comm'))
  end)

  it('counts the client\'s connects and payload as the client does', function()
    local r = result()
    local client = assert(find(r.procs, function(p) return p.connects > 0 end))
    assert.equal(ok_n, client.connects)
    assert.equal(ok_n, client.closes)
    assert.equal(tx, client.tx_bytes)
    assert.equal(rx, client.rx_bytes)
    assert.equal('tcp_churn', client.comm)
    -- its latency histogram holds every connect
    local n = 0
    for _, b in ipairs(client.connect_buckets) do n = n + b.count end
    assert.equal(ok_n, n)
    assert.is_true(client.connect_avg_us > 0 and client.connect_p99_us >= client.connect_avg_us / 2)
  end)

  it('gives the server its accepts through the listener it opened, with the bytes mirrored', function()
    local r = result()
    local server = assert(find(r.procs, function(p) return p.pid == server_pid end), 'no server row')
    assert.equal(ok_n, server.accepts)
    assert.equal(tx, server.rx_bytes)
    assert.equal(rx, server.tx_bytes)
    local l = assert(find(r.listeners, function(x) return x.port == 18097 end))
    assert.equal(server_pid, l.pid)
    assert.equal(ok_n, l.accepts)
  end)

  it('counts refused connects as failed, with the resets both ways per 4-tuple', function()
    local r = result()
    assert.equal(refused, r.total.connect_fails)
    local sent, got = 0, 0
    for _, f in ipairs(r.flows) do
      if f.lport == 18098 then sent = sent + f.resets_sent; assert.equal(0, f.pid) end  -- no socket answered
      if f.rport == 18098 then got = got + f.resets_recv; assert.equal('127.0.0.1', f.raddr) end
    end
    assert.equal(refused, sent)
    assert.equal(refused, got)
  end)

  it('lists every closed connection once per side, tcplife-style', function()
    local c = events()
    assert.equal(2 * ok_n, #c)
    local connects, accepts = 0, 0
    for _, e in ipairs(c) do
      if e.dir == 'connect' then
        connects = connects + 1
        assert.equal(18097, e.rport)
        assert.equal(300, e.tx_bytes)
        assert.equal(700, e.rx_bytes)
        assert.is_true(e.connect_ns > 0 and e.connect_ns <= e.duration_ns + e.connect_ns)
      else
        accepts = accepts + 1
        assert.equal('accept', e.dir)
        assert.equal(18097, e.lport)
        assert.equal(server_pid, e.pid)
        assert.is_nil(e.connect_ns)
      end
      assert.equal('ipv4', e.family)
    end
    assert.equal(ok_n, connects)
    assert.equal(ok_n, accepts)
  end)

  it('streams closed connections as tcplife-style lines for --snoop', function()
    local c = events()[1]
    c.t_s = 1.5
    local line = net.render_conn(c)
    assert.matches('^1%.500000 ', line)
    assert.matches(' tcp_churn ', line)
    assert.matches('127%.0%.0%.1:18097', line)
    assert.equal(#net.SNOOP_HEADER:match('^(.-)%s*$'), #net.SNOOP_HEADER)
    assert.matches('LADDR:LPORT', net.SNOOP_HEADER)
  end)

  it('reads the connections a process holds from /proc/net/tcp{,6}, as the kernel keys them', function()
    local v4 = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
      .. '   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1113 1 0 '
      .. '100 0 0 10 0\n'
      .. '   1: 0100007F:BD62 0100007F:4C08 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 '
      .. '20 4 30 10 -1\n'
    local c = net.parse_conns(v4, 2)
    assert.equal(1, #c)   -- the listener is left out
    assert.same({ 127, 0, 0, 1 }, c[1].laddr)
    assert.equal(0xBD62, c[1].lport)
    assert.equal(0x4C08, c[1].rport)
    assert.equal(4242, c[1].inode)
    local v6 = '  sl  local_address                         remote_address                        st\n'
      .. '   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200007F:D431 01 '
      .. '00000000:00000000 00:00000000 00000000     0        0 777 1 0 20 4 30 10 -1\n'
    c = net.parse_conns(v6, 10)
    assert.same({ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, 0, 0, 1 }, c[1].laddr)
    assert.same({ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, 0, 0, 2 }, c[1].raddr)
    assert.equal(8080, c[1].lport)
    assert.equal(777, c[1].inode)
  end)

  it('names drop reasons from the kernel\'s enum', function()
    local r = result()
    assert.is_true(#r.drops > 0)
    for _, d in ipairs(r.drops) do
      assert.is_nil(d.reason:match('^SKB_DROP_REASON_'))
      assert.is_nil(d.reason:match('^reason '))
    end
    assert.equal('NO_SOCKET', net.reason_name(3, reasons()))
    assert.equal('reason 9999', net.reason_name(9999, reasons()))
  end)

  it('writes addresses as people read them', function()
    local function bytes(t) local b = ffi.new('uint8_t[16]'); for i, v in ipairs(t) do b[i - 1] = v end return b end
    assert.equal('10.1.2.3', net.addr(2, bytes{ 10, 1, 2, 3 }))
    assert.equal('::1', net.addr(10, bytes{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }))
    assert.equal('192.168.0.9', net.addr(10, bytes{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 192, 168, 0, 9 }))
    assert.equal('fe80::1:2', net.addr(10, bytes{ 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2 }))
    assert.equal('[::1]:80 1.2.3.4:5', net.tuple_text{ laddr = '::1', lport = 80, raddr = '1.2.3.4', rport = 5 })
  end)

  it('renders text with every section and JSON whose lists stay lists', function()
    local r = result()
    r.quality = { attach_path = 'raw_tp', events_seen = 10, events_lost = 0 }
    local out = require('perf_manual.report.tracers').render('net', r, {})
    assert.matches('TCP: 20 connects %(3 failed%), 20 accepts, 40 closes', out)
    assert.matches('connect latency %(SYN sent %-> established%): 20 connects', out)
    assert.matches('127%.0%.0%.1:18097', out)
    assert.matches('closed connections %(newest 20 of 40%)', out)
    assert.matches('quality: attach raw_tp', out)
    local json = require('perf_manual.util').json_encode(net.to_json(net.aggregate({}, 1, {})))
    assert.matches('"flows":%[%]', json)
    assert.matches('"conns":%[%]', json)
  end)
end)
