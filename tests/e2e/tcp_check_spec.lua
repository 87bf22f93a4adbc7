-- tcp-check end to end. A sender losing 2% of its segments in a network
-- namespace the test makes (nftables drops them; this kernel has no netem):
-- its retransmits, read by tcp-check through nsenter, against the
-- namespace's RetransSegs (/proc/PID/net/snmp, what nstat reads) polled over
-- the run and read over the very window of tcp-check's two ss reads. A
-- sender to a slow reader: the window limit and the reader, against the
-- reader's receive queue in the namespace's /proc/net/tcp. The namespace,
-- its rule and the workload are removed whatever happens.
local h = test_helpers
local W = require('e2e.workload')
local snmp = require('e2e.snmp')
local util = require('perf_manual.util')

-- the tools these runs need: skipped (with the reason) when one is missing, a failure in CI
local function have_tools()
  for _, t in ipairs({ { 'ss', 'iproute2' }, { 'nsenter', 'util-linux' } }) do
    local _, _, st = h.sh('command -v ' .. t[1])
    if st ~= 0 then
      h.skip_unless_required('PM_REQUIRE_BPF', t[1] .. ' is not installed (' .. t[2] .. ')')
      return false
    end
  end
  return true
end
local sys = require('perf_manual._c.sys')

local function sh(cmd) return os.execute('{ ' .. cmd .. '; } >/dev/null 2>&1') == 0 end

-- runs fn(ns, inns) inside a fresh namespace with loopback up (one segment per packet)
local function with_netns(fn)
  local ns = 'pm_tcpc_' .. sys.getpid()
  local function inns(cmd) return 'ip netns exec ' .. ns .. ' ' .. cmd end
  local ok, err = xpcall(function()
    assert(sh(string.format('ip netns add %s && ip -n %s link set lo up && ip -n %s link set lo gso_max_segs 1',
      ns, ns, ns)), 'cannot make the network namespace ' .. ns)
    fn(ns, inns)
  end, debug.traceback)
  sh('ip netns delete ' .. ns)
  assert(ok, err)
end

local function sender_port(inns, pid)
  local ss = io.popen(inns('ss -tnpH state established')):read('*a')
  local line = ss:match('[^\n]*pid=' .. pid .. ',[^\n]*')
  return assert(line and tonumber(line:match('127%.0%.0%.1:%d+%s+127%.0%.0%.1:(%d+)')), 'no connection: ' .. ss)
end

describe('tcp-check (e2e)', function()
  it('counts a lossy sender\'s retransmits in its own namespace as the namespace does', function()
    if not h.need_root('network namespaces and nftables') then return end
    if not have_tools() then return end
    if not sh('command -v nft') then error('nft is not installed (apt-get install nftables)') end
    h.with_machine_lock(function()
      with_netns(function(ns, inns)
        W.with('tcp_slow_peer', { 30, 50000000, 1400 }, { prefix = { '/usr/sbin/ip', 'netns', 'exec', ns } },
          function(w)
          sys.sleep(0.5)
          local port = sender_port(inns, w.pid)
          assert(sh(inns('nft add table inet pm_tcpc') .. ' && ' .. inns("nft add chain inet pm_tcpc out "
            .. "'{ type filter hook output priority 0; }'") .. ' && ' .. inns(string.format(
            "nft add rule inet pm_tcpc out oifname lo tcp dport %d numgen random mod 100 '<' 2 drop", port))),
            'cannot add the nftables rule')
          sys.sleep(0.5)
          local poller = snmp.start(w.pid, os.tmpname())
          local doc, c
          local ok, err = xpcall(function()
            local r0, t0 = snmp.retrans_segs(w.pid)
            local out, e, st = h.pm(string.format('tcp-check --target %d --duration 3 --json', w.pid))
            local r1, t1 = snmp.retrans_segs(w.pid)
            assert.equal(0, st, e)
            doc = assert(util.json_decode(out), out)
            assert.equal(1, #doc.connections)
            c = doc.connections[1]
            assert.equal('127.0.0.1:' .. port, c.dst)
            local outer = r1 - r0
            assert.is_true(outer >= 5, 'the namespace counted only ' .. outer .. ' retransmits')
            -- retransmits come in bursts, so the truth is read over tcp-check's own window: at least
            -- what the namespace counted between the end of its first ss read and the start of its
            -- second, at most what it counted from the start of the first to the end of the second
            local ed = assert(doc.edges, 'tcp-check recorded no edges')
            local lo = snmp.count(poller, ed[1][2], ed[2][1])
            local _, hi = snmp.count(poller, ed[1][1], ed[2][2])
            local diag = string.format('tcp-check %d in %.2f s; the namespace %d to %d in that window, %d in the '
              .. 'test\'s %.2f s', c.retrans, doc.window_s, lo, hi, outer, t1 - t0)
            io.stderr:write('\n[tcp-check] ' .. diag .. '\n')
            assert.is_true(c.retrans >= 1 and c.retrans >= lo * 0.95 - 2 and c.retrans <= hi * 1.05 + 2, diag)
          end, debug.traceback)
          snmp.stop(poller)
          assert(ok, err)
          local f = doc.findings[1]
          assert.equal('retransmits', f.kind)
          assert.equal(c.src .. ' -> ' .. c.dst, f.conn)
        end)
      end)
    end)
  end)

  it('names the slow reader of a window-limited sender', function()
    if not h.need_root('network namespaces') then return end
    if not have_tools() then return end
    h.with_machine_lock(function()
      with_netns(function(ns, inns)
        W.with('tcp_slow_peer', { 30 }, { prefix = { '/usr/sbin/ip', 'netns', 'exec', ns } }, function(w)
          sys.sleep(1)
          local out, err, st = h.pm(string.format('tcp-check --target %d --duration 2 --json', w.pid))
          assert.equal(0, st, err)
          local doc = assert(util.json_decode(out), out)
          local win
          for _, f in ipairs(doc.findings) do if f.kind == 'window' then win = f end end
          assert.is_table(win, out)
          local c = doc.connections[1]
          assert.is_true(c.rwnd_share > 0.9)
          -- the reader's receive queue, from the namespace's /proc/net/tcp (rx_queue, hex)
          local tcp = io.popen(inns('cat /proc/net/tcp')):read('*a')
          local lport = tonumber(c.dst:match(':(%d+)$'))
          local rx
          for line in tcp:gmatch('[^\n]+') do
            local lp, st_, rxq = line:match('^%s*%d+: %x+:(%x+) %x+:%x+ (%x+) %x+:(%x+)')
            if lp and tonumber(lp, 16) == lport and st_ == '01' then rx = tonumber(rxq, 16) end
          end
          assert.is_number(rx, tcp)
          assert.is_true(rx >= c.peer.rb / 4, string.format('reader queue %d, buffer %d', rx, c.peer.rb))
          assert.equal(c.peer.pid, tonumber(win.text:match('%(pid (%d+)%)')))
        end)
      end)
    end)
  end)
end)
