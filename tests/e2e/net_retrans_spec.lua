-- The network-retransmits entry of the hypothesis catalogue on a sender that
-- really loses packets, in a container's network namespace: tcp_slow_peer
-- runs in a namespace made for the test and writes to its receiver over that
-- namespace's loopback, and an nftables rule there drops 2% of the 1400-byte
-- segments to the receiver's port, so TCP retransmits. The namespace's
-- loopback sends one segment per packet (gso_max_segs 1): with loopback's
-- 64 KiB GSO packets one drop loses 46 segments and stalls the connection on
-- the retransmit timer, seconds with no retransmit at all. Ground truth:
-- RetransSegs of the namespace's /proc/PID/net/snmp read by the test around
-- the investigation; the host's counters do not see it. The namespace (with
-- its rule) and the workload are removed whatever happens.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')
local store = require('perf_manual.store')
local snmp = require('e2e.snmp')

local function sh(cmd) return os.execute('{ ' .. cmd .. '; } >/dev/null 2>&1') == 0 end

describe('network retransmits, end to end', function()
  it('a sender in its own network namespace losing 2% of its segments: the retransmits hypothesis is supported, at ' ..
    'the rate its namespace counts', function()
    if not h.need_root('nftables rules') then return end
    if not sh('command -v nft') then error('nft is not installed (apt-get install nftables)') end
    local ns = 'pm_e2e_' .. sys.getpid()
    local function inns(cmd) return 'ip netns exec ' .. ns .. ' ' .. cmd end
    h.with_machine_lock(function()
      local root = os.tmpname(); os.remove(root)
      local poller
      local ok, err = xpcall(function()
        assert(sh(string.format('ip netns add %s && ip -n %s link set lo up && ip -n %s link set lo gso_max_segs 1',
          ns, ns, ns)), 'cannot make the network namespace ' .. ns)
        -- it outlives any investigation (a loaded machine slows the drill-downs); W.with stops it
        W.with('tcp_slow_peer', { 300, 50000000, 1400 }, { prefix = { '/usr/sbin/ip', 'netns', 'exec', ns } },
          function(w)
          sys.sleep(0.5)
          local ss = io.popen(inns('ss -tnpH state established')):read('*a')
          local line = ss:match('[^\n]*pid=' .. w.pid .. ',[^\n]*')
          local port = assert(line and tonumber(line:match('127%.0%.0%.1:%d+%s+127%.0%.0%.1:(%d+)')),
            'no connection of the sender: ' .. tostring(ss))
          assert(sh(inns(string.format("nft add table inet pm_e2e") .. ' && ' .. inns("nft add chain inet pm_e2e out "
            .. "'{ type filter hook output priority 0; }'") .. ' && ' .. inns(string.format("nft add rule inet " ..
              "pm_e2e out "
            .. "oifname lo tcp dport %d numgen random mod 100 '<' 2 drop", port)))), 'cannot add the nftables rule')
          sys.sleep(0.5)
          poller = snmp.start(w.pid, root .. '.snmp')
          local r0, t0 = snmp.retrans_segs(w.pid)
          local out, e, st = h.pm(string.format('investigate --target %d --symptom "it is slow" --batch --duration 3 '
            .. '--store %s', w.pid, root))
          local r1, t1 = snmp.retrans_segs(w.pid)
          sys.sleep(0.1)
          assert.equal(0, st, out .. e)
          local truth = (r1 - r0) / (t1 - t0)
          assert.is_true(truth >= 1, 'no retransmits: ' .. truth .. '/s')
          local id = store.list(root)[1]
          local text, e2, st2 = h.pm(string.format('root-cause --hypothesis "packet loss makes TCP retransmit" '
            .. '--evidence %s --store %s --json', id, root))
          assert.equal(0, st2, text .. e2)
          local doc = assert(util.json_decode(text), text)
          assert.equal('net-retransmits', doc.entry, text)
          assert.equal('supported', doc.verdict, text)
          -- counted where the target lives, not on the host
          assert.matches('network namespace of pid ' .. w.pid, text, 1, true)
          -- two figures, each against the namespace's own counter: the namespace's rate
          -- over the USE check's window (/proc, scope of the whole namespace), and the
          -- flow's retransmits the net tracer counted over its window, which holds the
          -- USE check's and lies inside the test's
          local c = doc.culprit or {}
          local named = tonumber(tostring(c.retrans or ''):match('^([%d.]+)/s'))
          assert.is_number(named, text)
          local flow = tonumber(tostring(c.flow_retrans or ''):match('^(%d+) segments'))
          assert.is_number(flow, text)
          -- the flow comes from the network drill-down's trace: its own window, later than the USE check's
          local tn = assert(util.json_decode(util.readfile(root .. '/' .. id .. '/raw_data/trace-net.json')))
          local twin = assert(tn.window, 'the net trace recorded no window')
          -- its probes attach just before the window opens and detach just after it closes
          local flo = snmp.count(poller, twin[1], twin[2])
          local _, fhi = snmp.count(poller, twin[1] - 0.5, twin[2] + 0.5)
          assert.matches('pid ' .. w.pid, tostring(c.flow), 1, true)
          local use = assert(util.json_decode(util.readfile(root .. '/' .. id .. '/raw_data/use-check.json')))
          local win = assert(use.measures.tcp.window, 'the USE check recorded no window for its TCP rates')
          local span = win[2] - win[1]
          -- the check stamps each snapshot just before it reads the counters: allow it 0.1 s to read them
          local lo = snmp.count(poller, win[1] + 0.1, win[2])
          local _, hi = snmp.count(poller, win[1], win[2] + 0.1)
          local count = named * span
          local diag = string.format('namespace rate %.1f/s over %.2f s = %.0f; the namespace counted %d to %d in '
            .. 'that window; flow %d (BPF), the namespace %d to %d in the trace\'s window; %d over the whole %.1f s '
            .. 'run', named, span, count, lo, hi, flow, flo, fhi, r1 - r0, t1 - t0)
          io.stderr:write('\n[net retrans] ' .. diag .. '\n')
          assert.is_true(count >= lo * 0.95 - 2 and count <= hi * 1.05 + 2, diag)
          assert.is_true(flow >= flo * 0.95 - 2 and flow <= fhi * 1.05 + 2, diag)
        end)
      end, debug.traceback)
      snmp.stop(poller)
      sh('ip netns delete ' .. ns)
      os.execute('rm -rf ' .. root)
      assert(ok, err)
    end)
  end)
end)
