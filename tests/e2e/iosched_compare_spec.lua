-- iosched-compare on a disk the test makes: a loop device (direct I/O to
-- its backing file) with ext4 on it, mounted in a temp dir. Its scheduler
-- is back after the run and after Ctrl-C, the load leaves no file, and the
-- requests it counts are those /proc/diskstats counts for the device.
local h = test_helpers
local sys = require('perf_manual._c.sys')
local W = require('e2e.workload')
local util = require('perf_manual.util')

local function sh(cmd)
  local out, err, st = h.sh(cmd)
  assert(st == 0, cmd .. ': ' .. out .. err)
  return out
end

-- requests completed on a disk: reads, writes, discards and flushes
local function completed(name)
  local f = util.split(util.readfile('/proc/diskstats'):match('%s' .. name .. ' ([^\n]+)'), ' ')
  return tonumber(f[1]) + tonumber(f[5]) + tonumber(f[12] or 0) + tonumber(f[16] or 0)
end

local function scheduler(name)
  return util.readfile('/sys/block/' .. name .. '/queue/scheduler'):match('%[(.-)%]')
end

describe('iosched-compare e2e #priv', function()
  local img, dev, name, mnt
  setup(function()
    if not h.need_root() then return end
    img, mnt = os.tmpname(), h.tmpdir()
    sh('truncate -s 512M ' .. img)
    dev = sh('losetup -f --show --direct-io=on ' .. img):match('(/dev/loop%d+)')
    name = dev:match('loop%d+')
    sh('mkfs.ext4 -q ' .. dev .. ' && mount ' .. dev .. ' ' .. mnt)
  end)
  teardown(function()
    if mnt then h.sh('umount ' .. mnt) h.rmrf(mnt) end
    if dev then h.sh('losetup -d ' .. dev) end
    if img then os.remove(img) end
  end)

  it('runs the load under two schedulers, counts what diskstats counts, and restores the scheduler', function()
    if not h.need_root() then return end
    local original = scheduler(name)
    local other = original == 'mq-deadline' and 'none' or 'mq-deadline'
    local before = completed(name)
    local out, err, st = h.pm(string.format('iosched-compare --path %s --schedulers %s,%s --duration 1.5 --json',
      mnt, original, other))
    local after = completed(name)
    assert.equal(0, st, err)
    assert.equal(original, scheduler(name))
    assert.equal('lost+found\n', h.sh('ls ' .. mnt))
    local r = assert(util.json_decode(out))
    assert.same({ name, original }, { r.disk, r.baseline })
    assert.same({ original, other }, { r.runs[1].scheduler, r.runs[2].scheduler })
    local traced = 0
    for _, run in ipairs(r.runs) do
      local roles = {}
      for _, p in ipairs(run.processes) do
        roles[p.role] = p
        traced = traced + p.requests
      end
      for _, role in ipairs({ 'sync-1', 'sync-2', 'sync-3', 'bulk' }) do
        assert.is_true(roles[role] and roles[role].requests > 10, run.scheduler .. ': ' .. role)
      end
      assert.is_true(run.fairness > 0.5)
    end
    -- the load also runs for a moment outside the traced windows (starting
    -- and stopping), so the device completes a little more than is traced
    local dev_count = after - before
    assert.is_true(traced <= dev_count and traced >= 0.7 * dev_count,
      string.format('traced %d requests, diskstats %d', traced, dev_count))
    if r.better[1] then
      assert.matches("^the sync writers' p99 is lower under " .. r.better[1]:gsub('%p', '%%%0'), r.verdict)
    else
      assert.matches("^no scheduler gives the sync writers a p99 lower than " .. original:gsub('%p', '%%%0'), r.verdict)
    end
  end)

  it('puts the scheduler back after Ctrl-C, and exits 130', function()
    if not h.need_root() then return end
    local original = scheduler(name)
    local other = original == 'mq-deadline' and 'none' or 'mq-deadline'
    local log = os.tmpname()
    local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'iosched-compare', '--path', mnt, '--schedulers',
      original .. ',' .. other, '--duration', '4' }, { stdout = log, stderr = log }))
    local switched = W.wait_until(function() return scheduler(name) == other end, 60)
    sys.sleep(0.5)
    sys.kill(pid, 2)
    local how, code = sys.wait(pid)
    local text = util.readfile(log)
    os.remove(log)
    assert.is_true(switched, 'the scheduler never switched: ' .. text)
    assert.same({ 'exited', 130 }, { how, code }, text)
    assert.equal(original, scheduler(name))
    assert.matches(name .. ': scheduler ' .. original:gsub('%p', '%%%0') .. ' restored', text)
    assert.matches('stopped %(Ctrl%-C%) during ' .. other:gsub('%p', '%%%0'), text)
    assert.equal('lost+found\n', h.sh('ls ' .. mnt))
  end)

  it('refuses a path on the disk that holds / unless --yes', function()
    if not h.need_root() then return end
    local _, err, st = h.pm('iosched-compare --path ' .. h.root .. ' --duration 1')
    if err:match('is not on a block device') then pending('skipped: this tree is not on a block device') return end
    assert.equal(2, st, err)
    assert.matches('the disk that holds /; the load and the scheduler switches slow everything on it: '
      .. 'give %-%-yes', err)
  end)
end)
