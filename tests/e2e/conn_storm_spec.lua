-- conn-storm end to end, in a network namespace the test makes (with its
-- own ip_local_port_range 40000-40999, so nothing outside it is touched):
-- a bounded storm at a listener that never accepts, judged by the
-- namespace's ListenOverflows as nstat reads them around the run; a storm
-- of short connections at an accepting server, judged by the TIME_WAIT
-- sockets `ss` counts in the namespace afterwards (they live 60 s).
local h = test_helpers
local util = require('perf_manual.util')

-- the tools these runs need: skipped (with the reason) when one is missing, a failure in CI
local function have_tools()
  for _, t in ipairs({ { 'nstat', 'iproute2' }, { 'ss', 'iproute2' }, { 'nsenter', 'util-linux' } }) do
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
local function read(cmd) local f = io.popen(cmd); local s = f:read('*a'); f:close(); return s end

local function with_netns(fn)
  local ns = 'pm_cs_' .. sys.getpid()
  local server
  local ok, err = xpcall(function()
    assert(sh(string.format('ip netns add %s && ip -n %s link set lo up', ns, ns)), 'cannot make namespace ' .. ns)
    assert(sh(string.format("ip netns exec %s sh -c 'echo 40000 40999 > /proc/sys/net/ipv4/ip_local_port_range'", ns)))
    fn(ns, function(args)
      server = tonumber(read(string.format('ip netns exec %s %s server %s >/dev/null 2>&1 & echo $!', ns,
        h.workload('tcp_churn'), args)):match('%d+'))
      sys.sleep(0.5)
      return server
    end)
  end, debug.traceback)
  if server then os.execute('kill ' .. server .. ' 2>/dev/null') end
  sh('ip netns delete ' .. ns)
  assert(ok, err)
end

local function nstat(ns, name)
  return tonumber(read(string.format('ip netns exec %s nstat -asz %s', ns, name)):match(name .. '%s+(%d+)'))
end

describe('conn-storm (e2e)', function()
  it('counts a never-accepting listener\'s overflows as nstat does, and names it', function()
    if not h.need_root('network namespaces') then return end
    if not have_tools() then return end
    h.with_machine_lock(function()
      with_netns(function(ns, start_server)
        local pid = start_server('47140 100 8 noaccept')
        local o0 = nstat(ns, 'TcpExtListenOverflows')
        local out, err, st = h.pm(string.format('conn-storm --target %d --duration 2 --load 200 --port 47140 '
          .. '--connect-timeout 0.3 --json', pid))
        local o1 = nstat(ns, 'TcpExtListenOverflows')
        assert.equal(0, st, err)
        local doc = assert(util.json_decode(out), out)
        local ours, outer = doc.counters.ListenOverflows, o1 - o0
        -- SYNs retransmitted after the last read still overflow: at most one per connection in flight
        assert.is_true(ours > 50 and ours <= outer and outer - ours <= 64,
          string.format('conn-storm %d, nstat %d', ours, outer))
        local f
        for _, x in ipairs(doc.findings) do if x.kind == 'accept-queue' then f = x end end
        assert.is_table(f, out)
        assert.matches('port 47140 of tcp_churn %(pid ' .. pid .. '%), backlog 8', f.text)
        io.stderr:write(string.format('\n[conn-storm] overflows %d; nstat %d around the run\n', ours, outer))
      end)
    end)
  end)

  it('sees the TIME_WAIT sockets and the ports they hold as ss does', function()
    if not h.need_root('network namespaces') then return end
    if not have_tools() then return end
    h.with_machine_lock(function()
      with_netns(function(ns, start_server)
        local pid = start_server('47141 0 1024')
        local out, err, st = h.pm(string.format('conn-storm --target %d --duration 3 --load 800 --port 47141 '
          .. '--parallel 16 --json', pid))
        assert.equal(0, st, err)
        local tw = 0
        for _ in read('ip netns exec ' .. ns .. ' ss -tanH state time-wait'):gmatch('[^\n]+') do tw = tw + 1 end
        local doc = assert(util.json_decode(out), out)
        assert.equal(800, doc.load.ok)
        assert.is_true(tw >= 700, 'ss counts only ' .. tw .. ' TIME_WAIT sockets')
        -- the peak of the run against the count after it (TIME_WAIT lasts 60 s; the last poll may miss a few)
        assert.is_true(math.abs(doc.peak.states.TIME_WAIT - tw) <= 16,
          string.format('conn-storm %d, ss %d', doc.peak.states.TIME_WAIT, tw))
        local f
        for _, x in ipairs(doc.findings) do if x.kind == 'ephemeral-ports' then f = x end end
        assert.is_table(f, out)
        assert.matches('towards 127%.0%.0%.1:47141', f.text)
      end)
    end)
  end)
end)
