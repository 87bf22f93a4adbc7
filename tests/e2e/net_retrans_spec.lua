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

local function retrans_segs(pid)
  local s = util.readfile('/proc/' .. pid .. '/net/snmp') or ''
  local names, values = s:match('\nTcp: (%a[^\n]*)\nTcp: ([^\n]*)')
  local i, want = 0, nil
  for n in names:gmatch('%S+') do i = i + 1; if n == 'RetransSegs' then want = i end end
  i = 0
  for v in values:gmatch('%S+') do i = i + 1; if i == want then return tonumber(v), sys.now() end end
end

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
      local ok, err = xpcall(function()
        assert(sh(string.format('ip netns add %s && ip -n %s link set lo up && ip -n %s link set lo gso_max_segs 1',
          ns, ns, ns)), 'cannot make the network namespace ' .. ns)
        W.with('tcp_slow_peer', { 30, 50000000, 1400 }, { prefix = { '/usr/sbin/ip', 'netns', 'exec', ns } },
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
          local r0, t0 = retrans_segs(w.pid)
          local out, e, st = h.pm(string.format('investigate --target %d --symptom "it is slow" --batch --duration 3 '
            .. '--store %s', w.pid, root))
          local r1, t1 = retrans_segs(w.pid)
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
          -- the rate it names is the namespace's, in the window inside the test's wider one
          local named = tonumber(tostring(doc.cause or ''):match('([%d.]+)/s TCP retransmits'))
          assert.is_number(named, text)
          -- its 3 s hold no more retransmits than the whole run did, and its rate is not far below the run's
          assert.is_true(named * 3 <= (r1 - r0) * 1.1 + 5 and named > truth * 0.3,
            string.format('named %.1f/s over 3 s; snmp %d over %.1f s (%.1f/s)', named, r1 - r0, t1 - t0, truth))
        end)
      end, debug.traceback)
      sh('ip netns delete ' .. ns)
      os.execute('rm -rf ' .. root)
      assert(ok, err)
    end)
  end)
end)
