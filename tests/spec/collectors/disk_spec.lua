local disk = require('perf_manual.collectors.disk')
local fx = test_helpers.root .. '/tests/fixtures/proc/'
local INTERVAL = 1.003466 -- tests/fixtures/proc/interval

-- The captures come from a VM whose /sys had vda (disk), zram0 and idle loops.
local FACTS = { vda = { whole = true }, zram0 = { whole = true } }
local function snap(dir, t)
  local s = disk.sample({ diskstats = fx .. dir .. '/diskstats', psi = fx .. dir .. '/pressure_io',
    classify = false, facts = FACTS })
  s.time = t
  return s
end

describe('perf_manual.collectors.disk', function()
  it('parses every field of a real /proc/diskstats line', function()
    local devs = assert(disk.parse_diskstats(fixture('proc/t0/diskstats')))
    local vda
    for _, d in ipairs(devs) do if d.name == 'vda' then vda = d end end
    assert.same({ major = 254, minor = 0, name = 'vda', reads = 31748, reads_merged = 9834,
      sectors_read = 2713666, read_ms = 9493, writes = 9442, writes_merged = 6117,
      sectors_written = 608128, write_ms = 4957, in_flight = 1, io_ms = 5724, weighted_ms = 14929,
      discards = 5307, discards_merged = 35, sectors_discarded = 146272, discard_ms = 404,
      flushes = 1634, flush_ms = 74, columns = 17 }, vda)
    assert.equal(10, #devs)
  end)

  it('reads the short partition lines of old kernels', function()
    local devs = assert(disk.parse_diskstats(fixture('proc/edge/diskstats_2_6_24')))
    assert.equal(11, devs[1].columns)
    assert.is_nil(devs[1].discards)
    assert.same({ major = 8, minor = 1, name = 'sda1', reads = 31020, sectors_read = 2698066,
      writes = 12248, sectors_written = 489320, columns = 4 }, devs[2])
  end)

  it('computes iostat -x figures between two captures', function()
    local r = disk.rates(snap('t0', 0), snap('t1', INTERVAL))
    local v = r.by_name.vda
    assert.near(12 / INTERVAL, v.r_s, 1e-9)
    assert.near(9593 / INTERVAL, v.w_s, 1e-9)
    assert.near(280 / INTERVAL, v.rkB_s, 1e-9)
    assert.near(345384 / 2 / INTERVAL, v.wkB_s, 1e-9)
    assert.near(10 / 12, v.r_await, 1e-12)
    assert.near(658 / 9593, v.w_await, 1e-12)
    assert.near(799 / (INTERVAL * 1000), v.aqu_sz, 1e-12)
    assert.near(620 / (INTERVAL * 10), v.util_pct, 1e-9)
    assert.near(2397 / INTERVAL, v.f_s, 1e-9)
    assert.is_true(v.is_disk)
    assert.equal('disk', v.kind)
    assert.near((4356677 - 4045288) / INTERVAL / 1e4, r.psi.some_pct, 1e-9)
  end)

  it('leaves await missing when nothing completed, and flags RAM-backed and idle loop devices', function()
    local r = disk.rates(snap('t0', 0), snap('t1', INTERVAL))
    local z = r.by_name.zram0
    assert.is_false(z.is_disk)
    assert.equal('RAM-backed (zram)', z.skip_reason)
    assert.is_nil(z.r_await)
    assert.equal(0, z.r_s)
    assert.is_false(r.by_name.loop3.is_disk)
    assert.equal('loop device (no backing file)', r.by_name.loop3.skip_reason)
  end)

  it('classifies from sysfs facts', function()
    assert.same({ kind = 'partition', is_disk = true, whole_disk = false, partition_of = 'sda' },
      disk.classify('sda1', { whole = false, parent = 'sda' }))
    local dm = disk.classify('dm-0', { whole = true, slaves = {} })
    assert.is_false(dm.is_disk)
    assert.equal('dm device without backing devices', dm.skip_reason)
    assert.is_true(disk.classify('dm-1', { whole = true, slaves = { 'sda2' } }).is_disk)
    assert.equal('loop device over /tmp/x.img (counted on its disk)',
      disk.classify('loop2', { whole = true, backing_file = '/tmp/x.img' }).skip_reason)
    assert.is_false(disk.classify('ram0').is_disk)
    assert.is_false(disk.classify('nullb0').is_disk)
  end)

  it('classifies this machine\'s devices from /sys', function()
    local s = disk.sample()
    assert.is_table(s.devices)
    for _, d in ipairs(s.devices) do
      assert.is_boolean(d.is_disk)
      if d.name:match('^zram') or d.name:match('^loop') then assert.is_false(d.is_disk) end
      if d.whole_disk then
        assert.is_truthy(io.open('/sys/block/' .. d.name .. '/stat'))
      end
    end
  end)
end)
