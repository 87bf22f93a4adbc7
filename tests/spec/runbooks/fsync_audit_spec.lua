-- fsync-audit on recordings of real runs (tests/fixtures/runbooks/fsync-audit/,
-- made with `fsync-audit --save` on build/workloads/fsync_writer): four
-- threads on one file, four threads on a file each, one thread.
local h = test_helpers
local util = require('perf_manual.util')
local fa = require('perf_manual.runbooks.fsync_audit')

local R = require('spec.runbooks.replay')
local function replay(name, extra) return R.run('fsync-audit', name, extra) end

local function recording(name)
  return assert(util.json_decode(h.fixture('runbooks/fsync-audit/' .. name .. '/fsync-audit.json')))
end

describe('fsync-audit (replay)', function()
  it('says group commit would help when four threads flush one file', function()
    local doc = assert(util.json_decode(replay('shared', '--json')))
    assert.equal('yes', doc.verdict.group_commit)
    assert.is_true(doc.replayed)
    assert.equal(1, #doc.files)
    assert.equal(4, doc.files[1].nthreads)
    assert.equal(4, #doc.threads)
    -- every call counted once: per file, per thread and per call agree with the recorded rows
    local rec, calls = recording('shared'), 0
    for _, r in ipairs(rec.rows) do calls = calls + r.count end
    assert.is_true(calls > 100)
    assert.equal(calls, doc.count)
    assert.equal(calls, doc.files[1].count)
    local by_thread = 0
    for _, t in ipairs(doc.threads) do by_thread = by_thread + t.count end
    assert.equal(calls, by_thread)
    assert.near(calls / rec.window_s, doc.rate, doc.rate * 1e-4)
    -- the workload writes 4 KiB before each fsync
    assert.near(4096, doc.amplification.bytes_per_sync, 4096 * 0.05)
  end)

  it('says maybe when each thread flushes its own file', function()
    local out = replay('own')
    assert.matches('group commit: maybe — 4 threads each flush their own file', out)
    local files = 0
    for path in out:gmatch('\n(/var/tmp/fsync_writer%.%d+%.%d) ') do files = files + 1; assert.is_string(path) end
    assert.equal(4, files)
    assert.matches('\n  vda wrote +[%d.]+ MiB %([%d.]+x%)', out)
  end)

  it('says no for a single writer', function()
    local doc = assert(util.json_decode(replay('single', '--json')))
    assert.equal('no', doc.verdict.group_commit)
    assert.matches('one thread flushes', doc.verdict.why)
  end)

  it('calls a flush of 64 KiB or more batched already (--small-write)', function()
    local doc = assert(util.json_decode(replay('shared', '--json --small-write 1024')))
    assert.equal('no', doc.verdict.group_commit)
    assert.matches('already batched', doc.verdict.why)
  end)

  it('refuses a directory without a recording, in one line', function()
    local _, err, st = h.pm('fsync-audit --replay ' .. h.root .. '/tests/fixtures/runbooks')
    assert.equal(2, st)
    assert.matches('^perf_manual: fsync%-audit: not in the recorded data: ', err)
    assert.equal(1, select(2, err:gsub('\n', '')))
  end)

  it('has --help', function()
    local out, _, st = h.pm('fsync-audit --help')
    assert.equal(0, st)
    assert.matches('group commit', out)
    assert.matches('%-%-replay', out)
  end)
end)

describe('perf_manual.runbooks.fsync_audit', function()
  it('parses /proc/PID/io and /proc/diskstats', function()
    local io = fa.parse_io('rchar: 10\nwchar: 4096\nsyscr: 1\nsyscw: 2\nread_bytes: 0\nwrite_bytes: 8192\n'
      .. 'cancelled_write_bytes: 0\n')
    assert.equal(4096, io.wchar)
    assert.equal(8192, io.write_bytes)
    local d = fa.parse_diskstats(' 254       0 vda 100 0 2000 50 300 10 4000 60 0 90 120 0 0 0 0 7 3\n')
    assert.same({ name = 'vda', writes = 300, sectors_written = 4000, flushes = 7 }, d['254:0'])
  end)
end)

describe('perf_manual.runbooks.fsync_tracer', function()
  it('mirrors the kernel structs exactly (sizes from the object BTF)', function()
    local bpf = require('perf_manual.bpf')
    local fsync = require('perf_manual.runbooks.fsync_tracer')
    assert.equal(assert(bpf.btf_type('fsync', 'struct fsync_key')).size, fsync.sizeof().key)
    local st = assert(bpf.btf_type('fsync', 'struct fsync_stat'))
    assert.equal(st.size, fsync.sizeof().stat)
    assert.equal(st.members.hist, require('ffi').offsetof('struct pm_fsync_stat', 'slots'))
  end)
end)
