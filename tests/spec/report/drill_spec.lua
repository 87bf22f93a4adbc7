local drill = require('perf_manual.report.drill')
local charts = require('perf_manual.report.charts')
local util = require('perf_manual.util')

local dirs = test_helpers.root .. '/tests/fixtures/datadirs/'
local function json(path) return assert(util.json_decode(assert(util.readfile(dirs .. path)))) end

describe('report.drill', function()
  it('follows the heaviest path of a recorded CPU profile', function()
    local folded = assert(util.readfile(test_helpers.root .. '/tests/fixtures/replay/profile/profile.folded'))
    local path, share = drill.hot_path(folded)
    assert.same({ 'calltree', '__libc_start_call_main', 'main', 'alpha', 'beta', 'spin' }, path)
    assert.is_true(share > 0.5 and share <= 1)
  end)

  it('stops where no child holds half of what reached it', function()
    local path, share = drill.hot_path('m;a;x 30\nm;a;y 30\nm;a;z 15\nm;b 25\n')
    assert.same({ 'm', 'a' }, path)
    assert.near(0.75, share, 1e-9)
    assert.is_nil(drill.hot_path('garbage'))
  end)

  it('prints the hot path and the hottest function of a recorded cpu_burn profile', function()
    local p = json('cpu_burn/raw_data/profile-cpu.json')
    p.folded = util.readfile(dirs .. 'cpu_burn/raw_data/profile-cpu.folded')
    local lines = drill.cpu(p, nil)
    assert.matches('^hottest function: ', lines[1])
    assert.matches('^hot path %(%d+%% of samples%): ', lines[2])
  end)

  it('names the hottest lock of a recorded lock trace, and says when there are no waiter stacks', function()
    local lines = drill.lock(json('mutex_contention/raw_data/trace-lock.json'))
    assert.matches('^hottest lock: 0x%x+, 1526 waits, 16%.695 s waited$', lines[1])
    assert.equal(1, #lines)
    assert.same({ 'no futex waits of the target in the window' }, drill.lock({ futex = {} }))
  end)

  it('skips the C library and scheduler frames to the waiter\'s own call site', function()
    local lines = drill.lock { futex = { { uaddr = 4096, count = 3, total_ns = 2e9, stacks = {
      { frames = { '__GI___lll_lock_wait', '___pthread_mutex_lock', 'push_job', 'worker' } },
      { frames = { '__GI___lll_lock_wait', '[unknown]' } } } } } }
    assert.equal('hottest lock: 0x1000, 3 waits, 2.000 s waited', lines[1])
    assert.equal('waiters call it from: push_job', lines[2])
  end)

  it('reports the slowest device and the sync calls of a recorded fsync writer', function()
    local lines = drill.disk(json('fsync_writer/raw_data/trace-io.json'),
      json('fsync_writer/raw_data/trace-syscall.json'))
    local text = table.concat(lines, '\n')
    assert.matches('block I/O latency p50 [%d.]+ ms, p99 [%d.]+ ms on ', text)
    assert.matches('fsync: %d+ calls, %d+/s, [%d.]+ ms each on average, [%d.]+ s in the call', text)
  end)
end)

describe('report.charts.state_bars', function()
  it('draws one bar per row, split by state, with a legend of the states present', function()
    local svg = charts.state_bars { title = 't', states = { 'cpu', 'ipc', 'sleep' },
      labels = { cpu = 'on CPU', ipc = 'pipe', sleep = 'sleep' },
      rows = { { label = 'app 1', shares = { cpu = 2, ipc = 73, sleep = 25 } },
        { label = 'feeder <2>', shares = { cpu = 1, sleep = 99 } } } }
    assert.matches('^<svg', svg)
    assert.matches('feeder &lt;2&gt;', svg)
    assert.matches('<title>pipe: 73.0%%</title>', svg)
    local _, rects = svg:gsub('<rect [^>]*><title>', '')
    assert.equal(5, rects)
    assert.matches('>on CPU</text>', svg)
  end)
end)

describe('report.drill.wait', function()
  it('adds the off-CPU profile\'s reasons and their call sites', function()
    local lines = drill.wait(nil, { by_reason = { total = 10, unit = 'us', reasons = {
      { reason = 'net', label = 'network socket', share = 0.75, sites = { { site = 'main -> read', share = 1 } } },
      { reason = 'sleep', label = 'sleep', share = 0.25, sites = { { site = 'main -> clock_nanosleep' } } } } } })
    assert.same({ 'off-CPU profile: network socket 75% of blocked time, mostly from main -> read',
      'off-CPU profile: sleep 25% of blocked time, mostly from main -> clock_nanosleep' }, lines)
  end)

  it('says the profile includes the idle threads the wall-time line leaves out', function()
    -- the waiter reads a pipe 75% and sleeps 25%; its feeder sleeps all along
    local tsa = { total = { threads = 2, shares = {} }, threads = {
      { tid = 1, life_s = 4, states = { ipc = 3, sleep = 1 },
        waits = { { reason = 'ipc', seconds = 3, syscall = 'read', text = 'pid 2 (feeder) via pipe' },
          { reason = 'sleep', seconds = 1, syscall = 'clock_nanosleep' } } },
      { tid = 2, life_s = 4, states = { sleep = 4 },
        waits = { { reason = 'sleep', seconds = 4, syscall = 'clock_nanosleep' } } } } }
    local lines = drill.wait(tsa, { by_reason = { total = 8, reasons = {
      { reason = 'sleep', share = 0.625, sites = { { site = 'feed -> clock_nanosleep' } } },
      { reason = 'ipc', share = 0.375, sites = { { site = 'main -> read' } } } } } })
    assert.equal('wall time (1 thread(s) idle all along left out): pipe / unix socket 75%, sleep 25%', lines[1])
    assert.equal('off-CPU profile (idle threads included): sleep 63% of blocked time, mostly from '
      .. 'feed -> clock_nanosleep', lines[#lines - 1])
  end)
end)

describe('the report on thread states', function()
  it('has a Where the Time Goes section and a stacked-bar chart from a recorded tsa.json', function()
    local report = require('perf_manual.report')
    local dir = test_helpers.tmpdir()
    finally(function() test_helpers.rmrf(dir) end)
    assert(os.execute('mkdir -p ' .. dir .. '/raw_data && cp ' .. test_helpers.root
      .. '/tests/fixtures/tsa/results/wait_peer_pipe.json ' .. dir .. '/raw_data/tsa.json'))
    local ds = assert(report.load(dir))
    local v = report.view(ds)
    assert.equal('all threads', v.time_states[1].who)
    assert.matches('^wait_peer %d+$', v.time_states[2].who)
    assert.matches('pipe / unix socket 7%d%%, sleep 2%d%%', v.time_states[2].states)
    assert.equal('tsa', v.charts[1].key)
    assert.matches('<title>pipe / unix socket: 7%d%.%d%%</title>', v.charts[1].svg)
    local md = report.render(ds, { format = 'technical', output = 'md' })
    assert.matches('### Where the Time Goes', md)
    assert.matches('pid %d+ %(feeder%) via pipe %(pipe / unix socket%): 7%d%% of wall time', md)
  end)
end)
