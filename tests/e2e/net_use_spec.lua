-- The USE Network row fed by the net tracer, and investigate's network
-- drill-down, on three faults made in a network namespace the test creates
-- (no netem on this kernel: loss is an nftables drop rule, the slow peer a
-- process that answers every 40 ms, the stuck listener one that never calls
-- accept). Each fault must be named with its 4-tuple (or listener port and
-- owner) by `use-check --target` and by `investigate`. Ground truth comes
-- from the kernel's own tools in the namespace, read by the test: `ss -tnp`
-- (the 4-tuple), `ss -tin` (rtt, retransmits), `ss -ltn` (the listener's
-- Recv-Q), `nstat -az` (RetransSegs, ListenOverflows) and `nft list counters`.
-- The namespace (with its rules and every process in it) is removed whatever
-- happens.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

local function sh(cmd) return os.execute('{ ' .. cmd .. '; } >/dev/null 2>&1') == 0 end
local function out(cmd)
  local f = io.popen(cmd .. ' 2>/dev/null')
  local s = f:read('*a')
  f:close()
  return s
end

-- Runs fn(ns, inns) in a fresh namespace with loopback up; removes it after.
local function with_netns(fn)
  local ns = 'pm_nu_' .. sys.getpid()
  local function inns(cmd) return 'ip netns exec ' .. ns .. ' ' .. cmd end
  local root = os.tmpname(); os.remove(root)
  local ok, err = xpcall(function()
    assert(sh(string.format('ip netns add %s && ip -n %s link set lo up', ns, ns)), 'cannot make namespace ' .. ns)
    fn(ns, inns, root)
  end, debug.traceback)
  -- everything the test started in the namespace, then the namespace
  sh('ip netns pids ' .. ns .. ' | xargs -r kill -9')
  sh('ip netns delete ' .. ns)
  os.execute('rm -rf ' .. root)
  assert(ok, err)
end

-- one counter of `nstat -az` in the namespace
local function nstat(inns, name)
  return tonumber(out(inns('nstat -az ' .. name)):match(name .. '%s+(%d+)'))
end

-- the established 4-tuple ("laddr:lport raddr:rport") pid holds, from ss
local function ss_tuple(inns, pid)
  for line in out(inns('ss -tnpH state established')):gmatch('[^\n]+') do
    if line:find('pid=' .. pid .. ',', 1, true) then
      local l, r = line:match('%S+%s+%S+%s+(%S+)%s+(%S+)')
      return l .. ' ' .. r
    end
  end
end

local function use_check(pid)
  local text, e, st = h.pm(string.format('use-check --target %d --duration 2 --json', pid))
  assert.equal(0, st, text .. e)
  return assert(util.json_decode(text), text), text
end

local function network_rows(doc)
  local rows = {}
  for _, r in ipairs(doc.rows or {}) do if r.resource == 'network' then rows[#rows + 1] = r end end
  return rows
end

local function row_text(doc)
  local parts = {}
  for _, r in ipairs(network_rows(doc)) do
    parts[#parts + 1] = string.format('%s %s | %s | %s', r.name, r.status, r.saturation and r.saturation.text or '',
      r.errors and r.errors.text or '')
  end
  return table.concat(parts, '\n')
end

local function investigate(pid, root, symptom)
  local text, e, st = h.pm(string.format('investigate --target %d --symptom %q --batch --duration 2 --store %s',
    pid, symptom, root))
  assert.equal(0, st, text .. e)
  return text
end

local function drill(text) return text:match('drill%-down for network:\n(.-)\n\n') or '' end

describe('USE Network row and network drill-down from the net tracer', function()
  it('loss from an nftables drop rule: the retransmitting flow is named by its 4-tuple', function()
    if not h.need_root('network namespaces, nftables and BPF') then return end
    if not sh('command -v nft') then error('nft is not installed (apt-get install nftables)') end
    h.with_machine_lock(function()
      with_netns(function(ns, inns, root)
        -- one segment per packet, so a drop loses one segment (see net_retrans_spec)
        assert(sh(string.format('ip -n %s link set lo gso_max_segs 1', ns)))
        W.with('tcp_slow_peer', { 60, 50000000, 1400 }, { prefix = { '/usr/sbin/ip', 'netns', 'exec', ns } },
          function(w)
          sys.sleep(0.5)
          local tuple = assert(ss_tuple(inns, w.pid), 'no connection of the sender')
          local port = tuple:match(':(%d+)$')
          assert(sh(inns('nft add table inet pm_nu') .. ' && ' .. inns('nft add counter inet pm_nu lost') .. ' && '
            .. inns("nft add chain inet pm_nu out '{ type filter hook output priority 0; }'") .. ' && '
            .. inns(string.format("nft add rule inet pm_nu out oifname lo tcp dport %s numgen random mod 100 '<' 5 "
              .. "counter name lost drop", port))), 'cannot add the nftables rule')
          sys.sleep(0.3)
          -- a lossy flow retransmits in bursts (a lost retransmit stalls it on the timer for seconds): check
          -- again until one check's window holds some; in every one BPF counts no more than the namespace
          local doc, flow, r0, r1
          for _ = 1, 5 do
            r0 = nstat(inns, 'TcpRetransSegs')
            doc = use_check(w.pid)
            r1 = nstat(inns, 'TcpRetransSegs')
            local bn = assert(doc.measures.bpf.net, 'no BPF net measures: ' .. row_text(doc))
            flow = nil
            for _, f in ipairs(bn.flows) do if f.tuple == tuple then flow = f end end
            local got = flow and flow.retrans_segs or 0
            assert.is_true(got <= r1 - r0, string.format('BPF %d > namespace RetransSegs %d', got, r1 - r0))
            if got > 0 then break end
          end
          assert(flow and flow.retrans_segs > 0, 'no check saw a retransmit on ' .. tuple .. ': ' .. row_text(doc))
          local lost = tonumber(out(inns('nft list counters')):match('lost%s*{%s*packets (%d+)'))
          assert.is_true((lost or 0) > 0, 'the rule dropped nothing')
          local rows = row_text(doc)
          -- named by the 4-tuple ss shows for the sender
          assert.matches(tuple, rows, 1, true)
          assert.matches('TCP retrans', rows, 1, true)
          assert.equal(w.pid, flow.pid)
          assert.equal('bpf', doc.sources.network.source)
          assert.equal('net', doc.sources.network.tracer)
          io.stderr:write(string.format('\n[net use loss] flow %s: BPF %d retransmitted segments, namespace '
            .. 'RetransSegs +%d around the check, nft dropped %d\n', tuple, flow.retrans_segs, r1 - r0, lost))
          local text, d
          for _ = 1, 3 do
            text = investigate(w.pid, root, 'uploads are slow')
            d = drill(text)
            if d:find('loss: ', 1, true) then break end
          end
          assert.matches('loss: %d+ segments retransmitted', d)
          assert.matches(tuple, d, 1, true)
          -- the root cause is the loss on that flow, not the peer it waits on
          assert.matches('Root cause: network retransmits: flow ' .. tuple, text, 1, true)
        end)
      end)
    end)
  end)

  it('a peer slow to answer: the flow the target waits on is named, and the network carries it clean', function()
    if not h.need_root('network namespaces and BPF') then return end
    h.with_machine_lock(function()
      with_netns(function(ns, inns, root)
        W.with('wait_peer', { 'tcp', 60 }, { prefix = { '/usr/sbin/ip', 'netns', 'exec', ns } }, function(w)
          sys.sleep(0.5)
          local tuple = assert(ss_tuple(inns, w.pid), 'no connection of the reader')
          local doc = use_check(w.pid)
          -- the network is not what is slow: ss's rtt of the flow is far below the 40 ms between answers
          local info = out(inns('ss -tinH state established src ' .. tuple:match('^%S+')))
          local rtt = tonumber(info:match('rtt:([%d.]+)'))
          assert.is_true(rtt and rtt < 5, 'rtt ' .. tostring(rtt) .. ': ' .. info)
          local v = doc.verdict or {}
          local wo = v.waits_on or {}
          assert.equal(tuple, wo.flow, util.json_encode(v))
          local bn = assert(doc.measures.bpf.net, 'no BPF net measures')
          for _, f in ipairs(bn.flows) do
            assert.is_true(f.tuple ~= tuple or f.retrans_segs == 0, 'retransmits on the clean flow')
          end
          local text = investigate(w.pid, root, 'requests to the backend are slow')
          local d = drill(text)
          assert.matches('peer slow to answer: the target waits on flow ' .. tuple, d, 1, true)
          assert.matches('TCP flow ' .. tuple .. ' carries it without loss', text, 1, true)
          io.stderr:write(string.format('\n[net use slow peer] flow %s (ss rtt %.3f ms): %s\n', tuple, rtt,
            d:match('[^\n]+')))
        end)
      end)
    end)
  end)

  it('a server that answers 50 ms after each request: the drill-down names the flow and the answer time', function()
    if not h.need_root('network namespaces and BPF') then return end
    h.with_machine_lock(function()
      with_netns(function(ns, inns, root)
        local port = 8000 + sys.getpid() % 1000
        local prefix = { '/usr/sbin/ip', 'netns', 'exec', ns }
        W.with('tcp_churn', { 'server', port, 1000, 16, 'delay=50' }, { prefix = prefix }, function()
          sys.sleep(0.3)
          W.with('tcp_churn', { 'client', '127.0.0.1', port, 100000 }, { prefix = prefix }, function(w)
            sys.sleep(0.5)
            -- a connection per request: the tuple changes (the one named is the one open when the wait
            -- was named, if any was), the server's end does not
            local doc = use_check(w.pid)
            local wo = (doc.verdict or {}).waits_on or {}
            -- (a connection closed before its socket was looked up is named by its inode)
            local wt = tostring(wo.text)
            assert.is_true(wt:find('tcp 127.0.0.1:' .. port, 1, true) ~= nil
              or wt:match('^socket socket:%[%d+%] %(network socket') ~= nil, wt)
            -- each connection lives ~50 ms (half-closed at once): read until ss catches one; its minrtt is
            -- the path's (the smoothed rtt takes in the peer's delayed ACKs)
            local info, rtt
            for _ = 1, 50 do
              info = out(inns('ss -tinH dport = :' .. port))
              rtt = tonumber(info:match('minrtt:([%d.]+)'))
              if rtt then break end
              sys.sleep(0.01)
            end
            assert.is_true(rtt and rtt < 5, 'rtt ' .. tostring(rtt) .. ': ' .. info)
            local text = investigate(w.pid, root, 'requests are slow')
            local d = drill(text)
            local flow = d:match('peer slow to answer: the target waits on flow (%S+ %S+)')
            assert.matches('^127%.0%.0%.1:%d+ 127%.0%.0%.1:' .. port .. '$', tostring(flow), nil, false, text)
            local ms = tonumber(d:match('last ([%d.]+) ms past the connect'))
            -- the server sleeps 50 ms per answer; the network adds ss's rtt
            assert.is_true(ms and ms >= 50 and ms < 60, d)
            assert.matches('the peer takes ' .. ms .. ' ms to answer', text, 1, true)
            io.stderr:write(string.format('\n[net use slow answer] server delay 50 ms, ss minrtt %.3f ms: %s\n', rtt,
              d:match('[^\n]+')))
          end)
        end)
      end)
    end)
  end)

  it('a listener that never accepts: its port and owner are named, with the drops its namespace counts', function()
    if not h.need_root('network namespaces and BPF') then return end
    h.with_machine_lock(function()
      with_netns(function(ns, inns, root)
        local port = 7000 + sys.getpid() % 1000
        W.with('tcp_churn', { 'server', port, 100, 2, 'noaccept' },
          { prefix = { '/usr/sbin/ip', 'netns', 'exec', ns } }, function(w)
          sys.sleep(0.3)
          -- clients keep coming (each gives up after 3 s); killed with the namespace
          os.execute(inns(string.format('sh -c "while :; do timeout 3 %s client 127.0.0.1 %d 1 & sleep 0.05; done" '
            .. '</dev/null >/dev/null 2>&1 &', h.workload('tcp_churn'), port)))
          sys.sleep(1)
          local o0 = nstat(inns, 'TcpExtListenOverflows')
          local doc = use_check(w.pid)
          local o1 = nstat(inns, 'TcpExtListenOverflows')
          -- the accept queue is full: Recv-Q above the backlog
          local ltn = out(inns('ss -ltnH sport = :' .. port))
          local recvq, backlog = ltn:match('LISTEN%s+(%d+)%s+(%d+)')
          assert.is_true(tonumber(recvq) > tonumber(backlog), ltn)
          local bn = assert(doc.measures.bpf.net, 'no BPF net measures')
          local l = assert(bn.listeners[1], 'no listener named: ' .. row_text(doc))
          assert.equal(port, l.port)
          assert.equal(w.pid, l.pid)
          assert.equal(tonumber(backlog), l.max_backlog)
          assert.is_true(l.listen_drops > 0 and l.listen_drops <= o1 - o0,
            string.format('BPF %d drops, namespace ListenOverflows +%d', l.listen_drops, o1 - o0))
          assert.equal('network', doc.verdict.resource, util.json_encode(doc.verdict))
          assert.matches(string.format('listener port %d pid %d', port, w.pid), row_text(doc), 1, true)
          io.stderr:write(string.format('\n[net use listener] port %d pid %d: BPF %d drops, namespace '
            .. 'ListenOverflows +%d around the check, ss Recv-Q %s backlog %s\n', port, w.pid, l.listen_drops,
            o1 - o0, recvq, backlog))
          local text = investigate(w.pid, root, 'clients time out connecting')
          local d = drill(text)
          assert.matches(string.format('listener port %d pid %d %%(tcp_churn%%) stops accepting', port, w.pid), d)
          assert.matches(string.format('a listener that stops accepting: listener port %d of pid %d', port, w.pid),
            text, 1, true)
        end)
      end)
    end)
  end)
end)
