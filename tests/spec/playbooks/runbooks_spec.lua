-- The catalogue's thin runbooks replayed on data recorded from real
-- workloads (tests/fixtures/runbooks/<name>/): what each one decides.
local util = require('perf_manual.util')
local h = test_helpers

local function fixture(name) return h.root .. '/tests/fixtures/runbooks/' .. name end

describe('runqlat replay', function()
  it('judges cpu_burn (3 threads per CPU) CPU-saturated, naming the process', function()
    local out, err, st = h.pm('runqlat --replay ' .. fixture('runqlat_cpu_burn'))
    assert.equal(0, st, err)
    assert.matches('pid = %d+ cpu_burn', out)
    assert.matches('longest total wait: pid %d+ cpu_burn, 596 wakeups, avg 16%.65 ms', out)
    assert.matches('verdict: CPU saturation: 1 wakeup in 100 waits over 49%.15 ms', out)
  end)

  it('follows --slow-ms, and --json carries the histogram and the verdict', function()
    local out, err, st = h.pm('runqlat --replay ' .. fixture('runqlat_cpu_burn') .. ' --slow-ms 100 --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    assert.is_false(r.saturated)
    assert.matches('^no CPU saturation seen: p99 run%-queue latency 49%.15 ms', r.verdict)
    local sum = 0
    for _, b in ipairs(r.buckets) do sum = sum + b.count end
    assert.equal(r.count, sum)
    assert.equal('cpu_burn', r.groups[1].comm)
  end)

  it('says what is missing from a data dir, exit 2', function()
    local _, err, st = h.pm('runqlat --replay ' .. fixture('biosnoop_fsync_writer'))
    assert.equal(2, st)
    assert.matches('^perf_manual: runqlat: not in the recorded data %(.*trace%-sched%.json%)', err)
  end)
end)

describe('biosnoop replay', function()
  local dir = fixture('biosnoop_fsync_writer')
  local rec = util.json_decode(util.readfile(dir .. '/trace-io.json'))

  it('prints one line per recorded request, then the disk and process tables', function()
    local out, err, st = h.pm('biosnoop --replay ' .. dir)
    assert.equal(0, st, err)
    local lines = util.split(out, '\n')
    assert.matches('^TIME%(s%) +COMM +PID +DISK +T +SECTOR +BYTES +LAT%(ms%)$', lines[1])
    local n, flushes = 0, 0
    for _, l in ipairs(lines) do
      if l:match('^%d+%.%d+ +fsync_writer +499 +vda ') then n = n + 1 end
      if l:match(' vda +FS ') then flushes = flushes + 1 end
    end
    assert.equal(#rec.requests, n)
    assert.is_true(flushes > 100, 'flushes ' .. flushes)  -- fsync sends cache flushes
    assert.matches('\nvda +1677 ', out)
    assert.matches('note: 18 requests completed between the last read of the stream and the end', out)
  end)

  it('--summary --json: the per-process figures are those of the recorded requests', function()
    local out, err, st = h.pm('biosnoop --replay ' .. dir .. ' --summary --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    local bytes, max = 0, 0
    for _, e in ipairs(rec.requests) do
      bytes = bytes + e.bytes
      max = math.max(max, e.lat_ns / 1e6)
    end
    assert.equal(1, #r.processes)
    local p = r.processes[1]
    assert.same({ 499, 'fsync_writer', #rec.requests, bytes }, { p.pid, p.comm, p.count, p.bytes })
    assert.near(max, p.max_ms, 1e-4)
    assert.is_true(p.p50_ms <= p.p99_ms and p.p99_ms <= p.max_ms)
  end)

  it('--device keeps one disk', function()
    local out, err, st = h.pm('biosnoop --replay ' .. dir .. ' --device sdz --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    assert.same({}, r.requests)
    assert.same({}, r.devices)
  end)
end)

describe('lock-contention replay', function()
  local dir = fixture('lock_mutex_contention')

  it('names the contended lock of mutex_contention, its call sites, and judges it contention', function()
    local out, err, st = h.pm('lock-contention --replay ' .. dir)
    assert.equal(0, st, err)
    assert.matches('\nhottest lock: lock %(mutex_contention %.bss%) at 0x%x+, 674 waits, 5%.588 s waited', out)
    assert.matches('\nwaiters call it from: worker\n', out)
    assert.matches('\nholders: 8 threads release it %(667 wakes%), from worker\n', out)
    assert.matches('\nverdict: lock contention: the threads wait 62%.1%% of their time on locks, 5%.59 waiters', out)
  end)

  it('--busy-pct moves the judgement; --json carries the USE row and the culprit lines', function()
    local out, err, st = h.pm('lock-contention --replay ' .. dir .. ' --busy-pct 90 --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    assert.is_false(r.contention)
    assert.matches('^no lock contention to speak of', r.verdict)
    assert.near(0.621, r.use.utilisation, 0.001)
    assert.equal('waiters call it from: worker', r.culprit[2])
    assert.equal(674, r.futex[1].count)
  end)
end)

describe('request-trace replay', function()
  local dir = fixture('request_fixval_http')

  it('fixval_http (2 ms of sleep per request): the requests, and the sleep as the time inside them', function()
    local out, err, st = h.pm('request-trace --replay ' .. dir)
    assert.equal(0, st, err)
    assert.matches('requests 1760 %(702%.1/s%)', out)
    assert.matches('\nclock_nanosleep +1%.00 +2%.159 *\n', out)
    -- two reads longer than any request (an idle keep-alive connection): the
    -- time of the others lies between bounds
    assert.matches('\nread +2%.00 +0%.145 +between requests +at least %(2 longer than any request left out%) +'
      .. 'at most 0%.221\n', out)
    assert.matches('\nverdict: 1760 requests %(702%.1/s%), p50 2%.130 ms, p99 4%.391 ms: not slow; of the mean '
      .. '2%.188 ms, clock_nanosleep takes 2%.159 ms per request %(99%%%)', out)
  end)

  it('--json; --slow-ms judges the same requests slow', function()
    local out, err, st = h.pm('request-trace --replay ' .. dir .. ' --slow-ms 3 --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    assert.equal(1760, r.requests)
    assert.is_true(r.slow)
    assert.matches(': slow %(p99 over 3 ms%)', r.verdict)
    assert.equal('clock_nanosleep', r.per_request[1].name)
    -- the per-request figures are the recorded syscall totals over the requests
    local rec = util.json_decode(util.readfile(dir .. '/trace.json'))
    for _, s in ipairs(rec.results.syscalls.syscalls) do
      if s.name == 'clock_nanosleep' then assert.near(s.total_ns / 1760 / 1e6, r.per_request[1].ms, 1e-4) end
    end
  end)

  it('wants a server or a recording, exit 2', function()
    local _, err, st = h.pm('request-trace')
    assert.equal(2, st)
    assert.equal('perf_manual: request-trace: give the server: --pid PID, --target T or -- COMMAND\n', err)
  end)
end)

describe('catalogue runbooks', function()
  it('each has --help with examples, and a topic in list', function()
    local groups = assert(util.json_decode((h.pm('list --json'))))
    local topic_of = {}
    for _, g in ipairs(groups) do
      for _, c in ipairs(g.commands) do topic_of[c.name] = g.topic end
    end
    local want = { runqlat = 'cpu', biosnoop = 'disk', ['lock-contention'] = 'locks', ['request-trace'] = 'requests',
      ['syscall-dashboard'] = 'monitoring', ['iosched-compare'] = 'disk', ['false-sharing'] = 'cpu', numa = 'memory',
      ['fsync-audit'] = 'disk', pagefaults = 'memory', ['conn-storm'] = 'network', ['tcp-check'] = 'network',
      ['exec-monitor'] = 'security' }
    -- every runbook documented in docs/catalogue/ is checked here
    for f in io.popen('ls ' .. h.root .. '/docs/catalogue'):lines() do
      local name = f:match('^(.+)%.md$')
      if name then assert.is_not_nil(want[name], name .. ' has a catalogue page but no --help check') end
    end
    for name, topic in pairs(want) do
      local out, err, st = h.pm(name .. ' --help')
      assert.equal(0, st, err)
      assert.matches('^Usage: perf_manual ' .. name:gsub('%-', '%%-'), out)
      assert.matches('\nExamples:\n  [%a ]*perf_manual ' .. name:gsub('%-', '%%-'), out)
      assert.equal(topic, topic_of[name], name)
    end
  end)
end)
