-- tcp-check on recordings of real runs (tests/fixtures/runbooks/tcp-check/,
-- made with `tcp-check --save` on build/workloads/tcp_slow_peer): a sender
-- to a receiver reading 32 KiB/s (slow), a sender with SO_SNDBUF 16 KiB to
-- a fast reader (sndbuf), and a sender in a network namespace whose
-- nftables rule drops 2% of its 1400-byte segments (retrans).
local h = test_helpers
local util = require('perf_manual.util')
local tc = require('perf_manual.runbooks.tcp_check')
local DIR = h.root .. '/tests/fixtures/runbooks/tcp-check/'

local R = require('spec.runbooks.replay')
local function replay(name, extra) return R.run('tcp-check', name, extra) end

local by_kind = R.by_kind

describe('tcp-check (replay)', function()
  it('names the slow reader behind a window-limited sender', function()
    local doc = assert(util.json_decode(replay('slow', '--json')))
    local rec = assert(util.json_decode(h.fixture('runbooks/tcp-check/slow/tcp-check.json')))
    local sender
    for _, c in ipairs(doc.connections) do if c.pid == rec.pids[1] then sender = c end end
    assert.is_table(sender)
    assert.is_true(sender.rwnd_share > 0.9)
    local w = by_kind(doc).window
    assert.equal(sender.src .. ' -> ' .. sender.dst, w.conn)
    assert.matches('does not read fast enough', w.text)
    assert.equal(sender.peer.pid, tonumber(w.text:match('%(pid (%d+)%)')))
    assert.is_nil(by_kind(doc).buffer)
  end)

  it('reports the losses of the namespace run with their 4-tuple', function()
    local out = replay('retrans')
    local conn, n, pct = out:match('\nhigh: (127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:%d+): (%d+) segments retransmitted in '
      .. 'the '
      .. 'window %(([%d.]+)%% of')
    assert.is_string(conn, out)
    assert.is_true(tonumber(n) > 100)
    -- about the 2% the rule drops (one dropped segment can be resent more than once)
    assert.is_true(tonumber(pct) > 1 and tonumber(pct) < 8, pct)
    local rec = assert(util.json_decode(h.fixture('runbooks/tcp-check/retrans/tcp-check.json')))
    assert.is_string(rec.netns)
    assert.matches("network namespace", rec.source)
  end)

  it('sees the SO_SNDBUF the sender set (doubled by the kernel) and blames it past --limited', function()
    local doc = assert(util.json_decode(replay('sndbuf', '--json')))
    local sender
    for _, c in ipairs(doc.connections) do if c.send_mbps > 100 then sender = c end end
    assert.equal(2 * 16384, sender.tb)
    assert.is_nil(by_kind(doc).buffer)   -- 5% of its busy time: under the default 20%
    doc = assert(util.json_decode(replay('sndbuf', '--json --limited 5')))
    assert.matches('probably fixed it with SO_SNDBUF', by_kind(doc).buffer.text)
  end)

  it('refuses a directory without a recording, and has --help', function()
    local _, err, st = h.pm('tcp-check --replay ' .. DIR)
    assert.equal(2, st)
    assert.matches('^perf_manual: tcp%-check: not in the recorded data: ', err)
    local out
    out, _, st = h.pm('tcp-check --help')
    assert.equal(0, st)
    assert.matches('rwnd_limited', out)
  end)
end)

describe('perf_manual.runbooks.tcp_check', function()
  it('parses ss -tinmep (real, tcp_slow_peer)', function()
    local conns = tc.parse_ss(h.fixture('runbooks/tcp-check/ss.txt'))
    assert.equal(2, #conns)
    local recv, send = conns[1], conns[2]
    assert.equal(89200, recv.recvq)
    assert.equal(131072, recv.skmem.rb)
    assert.equal('bbr', recv.cc)
    assert.equal(65536, recv.snd_wnd)
    assert.near(0.029, recv.rtt_ms, 1e-9)
    assert.equal(3782144, send.sendq)
    assert.equal(send.dst, recv.src)
    assert.is_number(send.rwnd_limited_ms)
    assert.is_number(send.busy_ms)
    assert.equal('tcp_slow_peer', send.comm)
    assert.is_number(send.pids[1])
    assert.is_true(send.app_limited or send.cwnd ~= nil)
  end)
end)
