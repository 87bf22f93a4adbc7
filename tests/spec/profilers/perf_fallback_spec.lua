local fallback = require('perf_manual.profilers.perf_fallback')
local profilers = require('perf_manual.profilers')
local sys = require('perf_manual._c.sys')

describe('perf_manual.profilers.perf_fallback', function()
  it('profiles with perf record -g and folds perf script into samples (not periods)', function()
    if not test_helpers.need_root('perf record of another process') then return end
    assert.is_true(fallback.available())
    test_helpers.with_machine_lock(function()
      local pid = assert(sys.spawn({ test_helpers.workload('calltree'), 'burn', '10' }, { stdout = 'null' }))
      local ok, err = pcall(function()
        sys.sleep(0.1)
        local s = assert(fallback.start { pid = pid, freq = 499, duration = 2 })
        while s:running() do sys.sleep(0.05) end
        local p = assert(s:stop())
        assert.equal('perf', p.source)
        -- at most 499 samples a second of one busy thread: counts are samples
        -- (periods would be ~2,000,000 ns each)
        assert.is_true(p.total >= 100 and p.total <= 1100, 'samples: ' .. p.total)
        assert.equal(0, p.quality.lost_samples)
        assert.near(0.60, profilers.inclusive_share(p, '^beta$'), 0.12)
        assert.near(0.30, profilers.inclusive_share(p, '^gamma_$'), 0.12)
        assert.same({ 'libc.so.6' }, p.quality.without_frame_pointers)
      end)
      sys.kill(pid, 9) sys.wait(pid)
      assert(ok, err)
    end)
  end)

  it('reports a perf record that cannot start', function()
    if not test_helpers.need_root() then return end
    local s = assert(fallback.start { pid = 999999999, duration = 1 })
    while s:running() do sys.sleep(0.05) end
    local p, err = s:stop()
    assert.is_nil(p)
    assert.matches('perf record failed', err)
  end)
end)
