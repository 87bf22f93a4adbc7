-- The network-retransmits entry of the hypothesis catalogue on a sender that
-- really loses packets: tcp_slow_peer writes to its receiver over loopback,
-- and an nftables rule made for the test drops 2% of the 1400-byte segments to
-- the receiver's port, so TCP retransmits. Ground truth: RetransSegs of
-- /proc/net/snmp read by the test around the investigation. The rule's table
-- and the workload are removed whatever happens.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')
local store = require('perf_manual.store')

local function retrans_segs()
  local s = util.readfile('/proc/net/snmp') or ''
  local names, values = s:match('\nTcp: (%a[^\n]*)\nTcp: ([^\n]*)')
  local i, want = 0, nil
  for n in names:gmatch('%S+') do i = i + 1; if n == 'RetransSegs' then want = i end end
  i = 0
  for v in values:gmatch('%S+') do i = i + 1; if i == want then return tonumber(v), sys.now() end end
end

local function sh(cmd) return os.execute('{ ' .. cmd .. '; } >/dev/null 2>&1') == 0 end

describe('network retransmits, end to end', function()
  it('a sender losing 2% of its segments: the retransmits hypothesis is supported, at the rate /proc/net/snmp shows', function()
    if not h.need_root('nftables rules') then return end
    if not sh('command -v nft') then error('nft is not installed (apt-get install nftables)') end
    local tbl = 'pm_e2e_' .. sys.getpid()
    h.with_machine_lock(function()
      local root = os.tmpname(); os.remove(root)
      local ok, err = xpcall(function()
        W.with('tcp_slow_peer', { 30, 50000000, 1400 }, {}, function(w)
          sys.sleep(0.5)
          local line = io.popen('ss -tnpH state established'):read('*a'):match('[^\n]*pid=' .. w.pid .. ',[^\n]*')
          local port = assert(line and tonumber(line:match('127%.0%.0%.1:%d+%s+127%.0%.0%.1:(%d+)')),
            'no connection of the sender: ' .. tostring(line))
          assert(sh(string.format("nft add table inet %s && nft add chain inet %s out '{ type filter hook output "
            .. "priority 0; }' && nft add rule inet %s out oifname lo tcp dport %d numgen random mod 100 '<' 2 drop",
            tbl, tbl, tbl, port)), 'cannot add the nftables rule')
          sys.sleep(0.5)
          local r0, t0 = retrans_segs()
          local out, e, st = h.pm(string.format('investigate --target %d --symptom "it is slow" --batch --duration 3 '
            .. '--store %s', w.pid, root))
          local r1, t1 = retrans_segs()
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
          -- the rate it names is the machine's, in the window inside the test's wider one
          local named = tonumber(tostring(doc.cause or ''):match('([%d.]+)/s TCP retransmits'))
          assert.is_number(named, text)
          -- its 3 s hold no more retransmits than the whole run did, and its rate is not far below the run's
          assert.is_true(named * 3 <= (r1 - r0) * 1.1 + 5 and named > truth * 0.3,
            string.format('named %.1f/s over 3 s; snmp %d over %.1f s (%.1f/s)', named, r1 - r0, t1 - t0, truth))
        end)
      end, debug.traceback)
      sh('nft delete table inet ' .. tbl)
      os.execute('rm -rf ' .. root)
      assert(ok, err)
    end)
  end)
end)
