-- perf_manual.analyzers.findings on the data dirs recorded from the real
-- workloads (tests/fixtures/datadirs): what each one yields. The analysis
-- report is tests/spec/report/analysis_spec.lua.
local findings = require('perf_manual.analyzers.findings')
local store = require('perf_manual.store')
local util = require('perf_manual.util')
local h = test_helpers

-- the store reads the folder, the analyzer only prepares what it was given
local function load(name) return findings.prepare(store.results(h.root .. '/tests/fixtures/datadirs/' .. name)) end

local function by(list, key, value)
  local out = {}
  for _, f in ipairs(list) do if f[key] == value then out[#out + 1] = f end end
  return out
end

local function with_thresholds(t, fn)
  local old = {}
  for k, v in pairs(t) do old[k] = findings.thresholds[k]; findings.thresholds[k] = v end
  local ok, e = pcall(fn)
  for k, v in pairs(old) do findings.thresholds[k] = v end
  assert(ok, e)
end

describe('analyzers.findings', function()
  it('loads a data dir: the result files by kind, each marked with its artifact path', function()
    local d = load('fsync_writer')
    assert.same({ 'quantify.json', 'trace-io.json', 'trace-syscall.json', 'use-check.json' }, d.files)
    assert.same({ 'io', 'syscall' }, util.keys(d.traces))
    assert.same({}, d.profiles)
    assert.equal('raw_data/use-check.json', d.use.artifact)
    assert.equal('raw_data/trace-io.json', d.traces.io.artifact)
    assert.equal('disk', d.use.verdict)
    local m = load('mutex_contention')
    assert.same({ 'offcpu' }, util.keys(m.profiles))
    assert.equal('raw_data/profile-offcpu.json', m.profiles.offcpu.artifact)
  end)

  it('loads a folder of bare result files, and refuses a missing dir as a user error', function()
    local d = load('cpu_burn/raw_data')
    assert.equal('use-check.json', d.use.artifact)
    assert.equal('profile-cpu.json', d.profiles.cpu.artifact)
    local ok, e = pcall(store.results, '/no/such/dir')
    assert.is_false(ok)
    assert.is_true(util.is_user_error(e))
    assert.equal('no data dir /no/such/dir', e.user_error)
  end)

  it('finds the CPU for cpu_burn: a HIGH USE row and the burn loop as hot function', function()
    local d = load('cpu_burn')
    local found = findings.all(d)
    assert.equal(2, #found)
    local use = by(found, 'metric', 'use')[1]
    assert.same({ 'cpu', 'high', 'raw_data/use-check.json' }, { use.resource, use.severity, use.evidence })
    assert.matches('^CPU: target waits for a CPU %d+%%', use.summary)
    local hot = by(found, 'metric', 'hot_function')[1]
    assert.matches('^burn holds 100%% of on%-CPU samples %(hot path [^)]*burn%); 100%% user / 0%% kernel', hot.summary)
    assert.equal('raw_data/profile-cpu.json', hot.evidence)
    assert.same({ name = 'burn', share = 1 }, findings.hot_function(d.profiles.cpu))
  end)

  it('finds the disk for fsync_writer from the USE row and the syscall time share', function()
    local found = findings.all(load('fsync_writer'))
    local disk = by(found, 'resource', 'disk')
    assert.equal(2, #disk)
    local use = by(disk, 'metric', 'use')[1]
    assert.equal('high', use.severity)
    assert.equal('vda', use.name)
    assert.matches('^vda: tasks stall on I/O', use.summary)
    local sc = by(disk, 'metric', 'syscall_time_share')[1]
    assert.equal('medium', sc.severity)
    assert.equal('91% of syscall time in the traced calls', sc.summary)
    -- the recorded I/O latency (p99 127 us) is under the 10 ms threshold
    assert.same({}, by(found, 'metric', 'io_latency_p99_ms'))
  end)

  it('finds the lock for mutex_contention from the USE row and the lock tracer', function()
    local found = findings.all(load('mutex_contention'))
    local lock = by(found, 'resource', 'lock')
    assert.equal(2, #lock)
    local tr = by(lock, 'metric', 'futex_wait_share')[1]
    assert.equal('high', tr.severity)
    assert.near(0.616, tr.value, 0.001)
    assert.equal('threads spend 62% of their time waiting on futexes', tr.summary)
    assert.equal('raw_data/trace-lock.json', tr.evidence)
  end)

  it('judges the lock share only when it is the target\'s, not the whole system\'s', function()
    local t = load('mutex_contention').traces.lock
    t.use.utilisation_basis = 'all threads seen'
    assert.same({}, findings.from_trace('lock', t))
  end)

  it('turns tunable thresholds into findings: I/O latency of the recorded disk', function()
    local io = load('fsync_writer').traces.io
    -- p99 from the recorded buckets: 0.0955 ms (tests/spec/analyzers/findings_p99_spec.lua)
    with_thresholds({ io_p99_ms_medium = 0.09, io_p99_ms_high = 1 }, function()
      local f = findings.from_trace('io', io)
      assert.equal(1, #f)
      assert.same({ 'disk', 'medium', 'raw_data/trace-io.json' }, { f[1].resource, f[1].severity, f[1].evidence })
      assert.equal('vda all I/O latency p99 0.1 ms', f[1].summary)
    end)
    with_thresholds({ io_p99_ms_medium = 0.09, io_p99_ms_high = 0.095 }, function()
      assert.equal('high', findings.from_trace('io', io)[1].severity)
    end)
  end)

  it('reads p99 in any unit it is given in', function()
    assert.equal(0.0955, findings.p99_ms(load('fsync_writer').traces.io.devices[1]))
    assert.equal(12, findings.p99_ms({ p99_ms = 12 }))
    assert.equal(2.5, findings.p99_ms({ p99_ns = 2.5e6 }))
    assert.equal(0.25, findings.p99_ms({ p99_us = 250 }))
    assert.is_nil(findings.p99_ms({}))
    assert.is_nil(findings.p99_ms(nil))
  end)

  it('ignores results that were not available, and names the hottest named function', function()
    assert.same({}, findings.from_use({ available = false, rows = { { status = 'HIGH' } } }))
    assert.same({}, findings.from_trace('io', { available = false }))
    assert.same({}, findings.from_profile({ available = false }))
    assert.is_nil(findings.hot_function({ top = { { name = '[unknown]', share = 0.9 } } }))
    assert.same({ name = 'work', share = 0.4 },
      findings.hot_function({ top = { { name = 'bpf_prog_abc', share = 0.5 }, { name = 'work', share = 0.4 } } }))
    -- from folded text: the leaf frame with most samples of the recorded profile
    local folded = h.fixture('datadirs/cpu_burn/raw_data/profile-cpu.folded')
    assert.same({ name = 'burn', share = 1 }, findings.hot_function({ folded = folded }))
    -- below the hot-function share no finding
    assert.same({}, findings.from_profile({ top = { { name = 'a', share = 0.1 } } }))
  end)
end)
