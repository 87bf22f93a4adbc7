local offcpu = require('perf_manual.profilers.offcpu')
local profilers = require('perf_manual.profilers')
local sys = require('perf_manual._c.sys')

describe('perf_manual.profilers.offcpu', function()
  it('adds up blocked time per stack, in microseconds, above the threshold', function()
    if not test_helpers.need_root() then return end
    -- calltree block: main -> snooze -> deep_sleep -> nanosleep(20 ms), in a loop
    local pid = assert(sys.spawn({ test_helpers.workload('calltree'), 'block', '10' }, { stdout = 'null' }))
    local ok, err = pcall(function()
      sys.sleep(0.1)
      local s = assert(offcpu.start { pid = pid, min_us = 1000 })
      sys.sleep(1.5)
      local p = s:stop()
      assert.equal('us', p.unit)
      -- the process sleeps nearly all the time: blocked time ~ wall time
      assert.near(1.5e6, p.total, 0.3e6)
      assert.near(1.0, profilers.inclusive_share(p, '^snooze$'), 0.02)
      assert.near(1.0, profilers.inclusive_share(p, '^do_nanosleep_%[k%]$'), 0.02)
      -- the stack taken inside the BPF program starts at the scheduler
      for _, st in ipairs(p.stacks) do
        assert.is_nil(st.frames[#st.frames]:find('bpf_', 1, true))
      end

      -- a threshold above the 20 ms sleeps keeps nothing, and says so
      s = assert(offcpu.start { pid = pid, min_us = 100000 })
      sys.sleep(0.5)
      p = s:stop()
      assert.equal(0, p.total)
      assert.is_true(p.short_blocks > 10)
    end)
    sys.kill(pid, 9) sys.wait(pid)
    assert(ok, err)
  end)
end)
