-- The swapping entry of the hypothesis catalogue on a workload that really
-- swaps: a swap file made for the test, and mem_pressure touching 128 MiB of
-- anonymous memory in a 64 MiB memory cgroup, so its pages go out to swap
-- and fault back in on every pass. Ground truth: /proc/vmstat's pswpin and
-- pswpout read by the test around the investigation. The swap file, the
-- cgroup and the workload are removed whatever happens.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')
local store = require('perf_manual.store')

local MiB = 2 ^ 20

local function vmstat_swap()
  local s = util.readfile('/proc/vmstat') or ''
  return tonumber(s:match('\npswpin (%d+)')) + tonumber(s:match('\npswpout (%d+)')), sys.now()
end

local function sh(cmd) return os.execute('{ ' .. cmd .. '; } >/dev/null 2>&1') == 0 end

describe('swapping, end to end', function()
  teardown(function() W.cleanup_scratch() end)

  it('a workload swapping in a memory-limited cgroup: the swapping hypothesis is supported, with the rate ' ..
    '/proc/vmstat shows', function()
    if not h.need_root('swapon and a memory cgroup') then return end
    if not W.memory_hierarchy() then return pending('no memory cgroup hierarchy') end
    h.with_machine_lock(function()
      local swapfile = W.scratch() .. '/swapfile'
      local root = os.tmpname(); os.remove(root)
      local ok, err = xpcall(function()
        assert(sh(string.format('dd if=/dev/zero of=%s bs=1M count=256 && chmod 600 %s && mkswap %s && swapon %s',
          swapfile, swapfile, swapfile, swapfile)), 'cannot make a swap file on ' .. W.scratch())
        W.with('mem_pressure', { 30, W.scratch(), 1, 128 }, { memory_limit = 64 * MiB }, function(w)
          sys.sleep(1)
          local s0, t0 = vmstat_swap()
          local out, e, st = h.pm(string.format('investigate --target %d --symptom "it is slow" --batch --duration 3 '
            .. '--store %s', w.pid, root))
          local s1, t1 = vmstat_swap()
          assert.equal(0, st, out .. e)
          local truth = (s1 - s0) / (t1 - t0)
          assert.is_true(truth > 100, 'the workload does not swap: ' .. truth .. ' pages/s')
          local id = store.list(root)[1]
          local text, e2, st2 = h.pm(string.format('root-cause --hypothesis "the workload is swapping" --evidence %s '
            .. '--store %s --json', id, root))
          assert.equal(0, st2, text .. e2)
          local doc = assert(util.json_decode(text), text)
          assert.equal('swapping', doc.match and doc.match.entry or doc.entry, text)
          assert.equal('supported', doc.verdict, text)
          -- the rate it names is the machine's swap traffic in the window (inside the test's wider one)
          local named = tonumber(tostring(doc.cause or ''):match('swapping: ([%d.]+) pages/s'))
          assert.is_number(named, text)
          -- its 3 s hold no more pages than the whole run moved, and its rate is not far below the run's
          assert.is_true(named * 3 <= (s1 - s0) * 1.1 + 100 and named > truth * 0.3,
            string.format('named %.0f pages/s over 3 s; vmstat %d pages over %.1f s (%.0f/s)', named, s1 - s0, t1 - t0,
              truth))
        end)
      end, debug.traceback)
      sh('swapoff ' .. swapfile)
      os.remove(swapfile)
      os.execute('rm -rf ' .. root)
      assert(ok, err)
    end)
  end)
end)
