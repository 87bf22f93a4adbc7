-- perf_manual.tracers.io: decoding and aggregation on bytes recorded from the
-- real io object (tests/fixtures/bpfmaps/io.json, fsync_writer on /var/tmp).
local io_t = require('perf_manual.tracers.io')
local bpf = require('perf_manual.bpf')
local util = require('perf_manual.util')

local function unhex(h) return (h:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) end
local rec = assert(util.json_decode(fixture('bpfmaps/io.json')))

local function decoded()
  local out = {}
  for _, e in ipairs(rec.maps.hists) do out[#out + 1] = io_t.decode_hist(unhex(e.key), unhex(e.value)) end
  return out
end

local function sum(t) local s = 0 for _, v in ipairs(t) do s = s + v end return s end

describe('perf_manual.tracers.io', function()
  it('mirrors the structs of bpf/io.h as the object was compiled', function()
    local sz = io_t.sizeof()
    assert.equal(assert(bpf.btf_type('io', 'struct pm_io_key')).size, sz.key)
    local h = assert(bpf.btf_type('io', 'struct pm_io_hist'))
    assert.equal(h.size, sz.hist)
    assert.equal(512, h.members.count)  -- after two arrays of 32 u64
    local e = assert(bpf.btf_type('io', 'struct pm_io_event'))
    assert.equal(e.size, sz.event)
    assert.equal(64, e.members.comm)
  end)

  it('counts sync requests and queue time per disk and op, as the snoop stream of the same run shows them', function()
    local rows = io_t.aggregate(decoded(), 0.5)
    local w
    for _, r in ipairs(rows) do if r.op == 'write' and (not w or r.count > w.count) then w = r end end
    assert.is_true(w.sync <= w.count and w.queued <= w.count)
    -- the ring buffer's records (another path out of the kernel) of the writes
    local n, sync, qn, qsum = 0, 0, 0, 0
    for _, hx in ipairs(rec.events) do
      local e = io_t.decode_event(unhex(hx))
      if e.op == 'write' and e.bytes > 0 then
        n = n + 1
        if e.rwbs:match('S') then sync = sync + 1 end
        if e.queue_ns > 0 then qn, qsum = qn + 1, qsum + e.queue_ns end
      end
    end
    assert.is_true(n >= 10, 'write records: ' .. n)
    -- fsync's writeback marks its writes REQ_SYNC: every one, in both
    assert.near(sync / n * 100, w.sync_pct, 10)
    assert.is_true(w.sync_pct > 90, 'sync ' .. w.sync_pct)
    -- queue time before issue is short against the device's time, in both
    assert.is_true(qn > 0 and w.queue_mean_ns > 0)
    assert.is_true(w.queue_mean_ns < w.mean_ns and qsum / qn < w.mean_ns)
  end)

  it('decodes recorded histograms: the fsync writer wrote to the real disk', function()
    local hs = decoded()
    assert.is_true(#hs > 0)
    local writes
    for _, h in ipairs(hs) do
      assert.equal(h.count, sum(h.latency))   -- one latency slot per completion
      assert.equal(h.count, sum(h.size))
      assert.is_true(h.max_ns * h.count >= h.total_ns)
      if h.op == 'write' and h.count > 0 then writes = h end
    end
    assert.truthy(writes, 'no write histogram in the recording')
    assert.is_true(writes.count >= 10)
    assert.is_true(writes.bytes >= writes.count * 512)
    assert.equal(0, writes.errors)
  end)

  it('decodes recorded snoop events with the writer as owner', function()
    assert.is_true(#rec.events > 0)
    local mine = 0
    for _, hx in ipairs(rec.events) do
      local e = io_t.decode_event(unhex(hx))
      assert.is_true(e.lat_ns > 0)
      assert.equal(0, e.bytes % 512)
      assert.truthy(e.rwbs:match('^F?[RWDFN]'), e.rwbs)
      if e.tgid == rec.pid then   -- the writer's threads
        mine = mine + 1
        assert.equal('fsync_writer', e.comm)
      end
    end
    assert.is_true(mine > 0, 'no event owned by the writer')
  end)

  it('rejects a value of the wrong size', function()
    local ok, err = pcall(io_t.decode_hist, string.rep('\0', 16), 'short')
    assert.is_false(ok)
    assert.matches('io: bad value size 5', err)
  end)

  it('writes rwbs letters the way the block tracepoints do', function()
    local cases = {
      { 'read', 0, 'R' }, { 'write', 1, 'WS' }, { 'write', 1 + 2, 'WSM' }, { 'write', 8 + 4 + 1, 'FWFS' },
      { 'flush', 8, 'FF' }, { 'discard', 0, 'D' }, { 'other', 0, 'N' },
    }
    for _, c in ipairs(cases) do assert.equal(c[3], io_t.rwbs(c[1], c[2])) end
  end)

  it('names devices from /sys/dev/block, then /proc/diskstats, else MAJ:MIN', function()
    local root = test_helpers.root .. '/tests/fixtures/io'
    local cache = {}
    assert.equal('vda', io_t.devname(254, 0, root, cache))
    assert.equal('zram0', io_t.devname(253, 0, root, cache))  -- no uevent fixture: diskstats
    assert.equal('9:9', io_t.devname(9, 9, root, cache))
    assert.equal('vda', cache['254:0'])
    assert.equal('vda', io_t.parse_uevent('MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n'))
    assert.is_nil(io_t.parse_uevent('MAJOR=1\n'))
  end)

  it('aggregates per disk and op, with per-disk totals and rates', function()
    local hs = decoded()
    local rows, devices = io_t.aggregate(hs, 0.5, function() return 'vda' end)
    assert.equal(#hs, #rows)
    local total = 0
    for i, r in ipairs(rows) do
      total = total + r.count
      if i > 1 then assert.is_true(rows[i - 1].count >= r.count) end
      assert.equal(r.count / 0.5, r.iops)
      assert.near(r.total_ns / r.count, r.mean_ns, 1e-6)
    end
    assert.equal(1, #devices)
    assert.equal('all', devices[1].op)
    assert.equal(total, devices[1].count)
    assert.equal(total, sum(devices[1].latency))
  end)

  it('merges two recordings of the same key', function()
    local h = decoded()[1]
    local rows = io_t.aggregate({ h, h }, nil, nil)
    assert.equal(2 * h.count, rows[1].count)
    assert.equal(h.max_ns, rows[1].max_ns)
    assert.is_nil(rows[1].iops)   -- no interval length: no rate
  end)

  it('renders a table, latency and size histograms, and snoop lines', function()
    local rows, devices = io_t.aggregate(decoded(), 0.5, function() return 'vda' end)
    local hist = require('perf_manual.hist')
    local render = function(r) return require('perf_manual.report.tracers').render('io', r) end
    for _, list in ipairs({ rows, devices }) do
      for _, r in ipairs(list) do
        r.buckets, r.size_buckets = hist.log2_buckets(r.latency), hist.log2_buckets(r.size)
      end
    end
    local text = render({ rows = rows, devices = devices })
    assert.matches('DISK%s+OP%s+COUNT', text)
    assert.matches('disk = vda %(254:0%): block I/O latency', text)
    assert.matches('usecs%s+: count', text)
    assert.matches('bytes%s+: count', text)
    assert.equal('no block I/O completed\n', render({ rows = {}, devices = {} }))
    local e = io_t.decode_event(unhex(rec.events[1]))
    e.t_s = 1.5
    local line = io_t.render_event(e)
    assert.matches('^1%.500000%s', line)
    assert.matches(e.comm:sub(1, 14):gsub('%p', '%%%0'), line)
  end)

  it('keeps empty lists as JSON arrays', function()
    local j = util.json_encode(io_t.to_json({ rows = {}, devices = {}, tracer = 'io' }))
    assert.matches('"rows":%[%]', j)
    assert.matches('"devices":%[%]', j)
  end)

  it('refuses a cgroup that does not exist before loading anything', function()
    local t, err = io_t.start { cgroup = 'no/such/cgroup/for/io' }
    assert.is_nil(t)
    assert.matches('^no cgroup no/such/cgroup/for/io', err)
  end)
end)
