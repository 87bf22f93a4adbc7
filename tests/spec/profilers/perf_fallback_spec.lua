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

describe('perf_manual.profilers.perf_fallback without privileges (issue 17)', function()
  it('names kernel.perf_event_paranoid as the reason an unprivileged profile is refused', function()
    assert.matches('kernel.perf_event_paranoid is 2: .* system%-wide profile needs it at 0 or below',
      fallback.paranoid_reason(true, 1000, 2))
    assert.matches('per%-process profile needs it at 1 or below', fallback.paranoid_reason(false, 1000, 2))
    assert.is_nil(fallback.paranoid_reason(true, 0, 2))      -- root is not held back by it
    assert.is_nil(fallback.paranoid_reason(true, 1000, 0))
    assert.is_nil(fallback.paranoid_reason(false, 1000, 1))
  end)

  it('says so from `profile` run as nobody, instead of "perf script failed: zero-sized data"', function()
    if not test_helpers.need_root('runuser to nobody') then return end
    local level = tonumber((test_helpers.sh('cat /proc/sys/kernel/perf_event_paranoid')))
    if not level or level < 1 then
      pending('perf_event_paranoid is ' .. tostring(level) .. ': a system-wide profile is allowed')
      return
    end
    local root, cleanup = test_helpers.readable_copy()
    local out, err, st = test_helpers.sh(string.format(
      'cd /tmp && runuser -u nobody -- %s/bin/perf_manual profile --duration 1 --output /tmp/pm-nobody-profile-%d',
      root, sys.getpid()))
    cleanup()
    assert.equal(2, st, err)
    assert.equal('', out)
    assert.matches('^perf_manual: profile: perf record was refused: kernel%.perf_event_paranoid is ' .. level, err)
    assert.is_nil(err:find('zero-sized', 1, true))
  end)
end)
