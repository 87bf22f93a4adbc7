-- iosched-compare's parts without a disk to spare: the scheduler file, the
-- fairness index, the disk under a path (on a sysfs copy), the refusals,
-- and the comparison replayed on a real run (a loop device on this VM).
local util = require('perf_manual.util')
local iosched = require('perf_manual.iosched')
local h = test_helpers

local function fixture(name) return h.root .. '/tests/fixtures/runbooks/' .. name end

describe('iosched', function()
  it('reads the scheduler file: the list and the one in brackets', function()
    assert.same({ { 'none', 'mq-deadline', 'kyber' }, 'mq-deadline' }, { iosched.parse('none [mq-deadline] kyber\n') })
    assert.same({ { 'none' }, 'none' }, { iosched.parse('[none]') })
    assert.same({ { 'none', 'bfq' } }, { iosched.parse('none bfq') })
  end)

  it("Jain's index: 1 when equal, 1/n when one process has it all", function()
    assert.equal(1, iosched.jain({ 5, 5, 5, 5 }))
    assert.near(0.25, iosched.jain({ 8, 0, 0, 0 }), 1e-12)
    assert.near(0.9, iosched.jain({ 1, 2, 3 }) + 0.0428571428571, 1e-9)   -- 36 / (3 * 14)
    assert.is_nil(iosched.jain({}))
    assert.is_nil(iosched.jain({ 0, 0 }))
  end)

  describe('on a copy of sysfs', function()
    local root, saved
    before_each(function()
      root = h.tmpdir()
      saved = iosched.sysfs
      iosched.sysfs = root
      h.sh(string.format('mkdir -p %s/block/sdz/queue && printf "none [mq-deadline] kyber bfq\\n" > '
        .. '%s/block/sdz/queue/scheduler', root, root))
    end)
    after_each(function()
      iosched.sysfs = saved
      h.rmrf(root)
    end)

    it('lists and sets a scheduler; a disk that is not there is said', function()
      assert.same({ { 'none', 'mq-deadline', 'kyber', 'bfq' }, 'mq-deadline' }, { iosched.schedulers('sdz') })
      assert.is_true(iosched.set('sdz', 'kyber'))
      assert.equal('kyber', util.readfile(root .. '/block/sdz/queue/scheduler'))
      local none, err = iosched.schedulers('sdy')
      assert.is_nil(none)
      assert.matches('^no block device sdy', err)
      assert.matches("^bad disk name", select(2, iosched.schedulers('../x')))
    end)
  end)

  it('finds the disk under a path from its device number; a tmpfs has none', function()
    local disk, id = iosched.disk_of('/')
    if disk then
      assert.matches('^%d+:%d+$', id)
      assert.is_truthy(util.readfile('/sys/block/' .. disk .. '/queue/scheduler'), disk)
    end
    local none, why = iosched.disk_of('/proc')
    assert.is_nil(none)
    assert.matches('is not on a block device', why)
    assert.matches('^no such file', select(2, iosched.disk_of('/no/such/dir')))
  end)

  it('summarises a run per role', function()
    local reqs = {}
    for i = 1, 100 do reqs[#reqs + 1] = { role = 'sync-1', lat_ns = i * 1e6, bytes = 4096 } end
    reqs[#reqs + 1] = { role = 'bulk', lat_ns = 5e6, bytes = 2 ^ 20 }
    local s = iosched.summarise(reqs, 2)
    assert.same({ 100, 50, 409600 }, { s['sync-1'].requests, s['sync-1'].iops, s['sync-1'].bytes })
    assert.near(50.5, s['sync-1'].p50_ms, 1e-9)
    assert.near(0.5, s.bulk.mb_s, 1e-12)
  end)
end)

describe('iosched-compare', function()
  it('replays a real run on a loop device: per process, against the disk\'s own scheduler', function()
    local out, err, st = h.pm('iosched-compare --replay ' .. fixture('iosched_loop'))
    assert.equal(0, st, err)
    assert.matches("== none %(the disk's own, the baseline%)  %(3%.0 s; sync writers fairness 1%.000%)", out)
    assert.matches('\n== mq%-deadline  %(3%.0 s;', out)
    assert.matches('\n== kyber  %(3%.0 s;', out)
    assert.matches('\nsync%-1 +373 +123%.5 ', out)
    assert.matches('\nbulk +2662 +885%.9 +453%.8 +1%.402 +5%.471 +higher: median %+21%.9%% %(95%% CI', out)
    assert.matches("\nverdict: no scheduler gives the sync writers a p99 lower than none's", out)
  end)

  it('--json: the runs, the processes and the verdict', function()
    local out, err, st = h.pm('iosched-compare --replay ' .. fixture('iosched_loop') .. ' --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    assert.same({ 'loop0', 'none', 'none' }, { r.disk, r.original, r.baseline })
    assert.equal(3, #r.runs)
    assert.same({}, r.better)
    local rec = util.json_decode(util.readfile(fixture('iosched_loop') .. '/iosched-compare.json'))
    for i, run in ipairs(r.runs) do
      assert.equal(rec.runs[i].scheduler, run.scheduler)
      for _, p in ipairs(run.processes) do assert.equal(rec.runs[i].roles[p.role].requests, p.requests) end
      assert.near(1, run.fairness, 0.01)
    end
  end)

  it('a real run where kyber serves the sync writers better than none: named, with the CIs', function()
    local out, err, st = h.pm('iosched-compare --replay ' .. fixture('iosched_loop_kyber'))
    assert.equal(0, st, err)
    assert.matches("\nverdict: the sync writers' p99 is lower under kyber than under none: 6%.210 ms against 11%.267 "
      .. '%(%-45%%, 95%% CI %-54%% .. %-12%%%); their median is lowest under kyber: %-33%%', out)
  end)

  it('names the scheduler that lowers the sync writers\' p99 beyond the noise', function()
    -- two runs of the same shape: the second's sync latencies a tenth of the first's
    local dir = h.tmpdir()
    local function run(name, scale)
      local lat = {}
      for i = 1, 300 do lat[i] = (1 + (i * 7919) % 100 / 10) * scale end
      return { scheduler = name, seconds = 1, roles = { ['sync-1'] = { requests = 300, bytes = 300 * 4096,
        iops = 300, mb_s = 1.2, p50_ms = 6 * scale, p99_ms = 10.9 * scale, lat_ms = lat } } }
    end
    local f = assert(io.open(dir .. '/iosched-compare.json', 'w'))
    f:write(util.json_encode({ disk = 'sdz', original = 'none', runs = { run('none', 1), run('mq-deadline', 0.1) } }))
    f:close()
    local out, err, st = h.pm('iosched-compare --replay ' .. dir .. ' --json')
    h.rmrf(dir)
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    assert.same({ 'mq-deadline' }, r.better)
    assert.matches("^the sync writers' p99 is lower under mq%-deadline than under none: 1%.080 ms against 10%.801 "
      .. '%(%-90%%, 95%% CI', r.verdict)
  end)

  it('wants a path or a recording, exit 2', function()
    local _, err, st = h.pm('iosched-compare')
    assert.equal(2, st)
    assert.equal('perf_manual: iosched-compare: give --path DIR (a directory on the disk to test)\n', err)
  end)
end)
