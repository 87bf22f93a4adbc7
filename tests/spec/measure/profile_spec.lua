-- perf_manual.measure.profile: the BPF -> perf ladder recorded in the
-- result, on a launched calltree (main -> alpha/beta -> burn), and its
-- refusals.
local profile = require('perf_manual.measure.profile')
local profilers = require('perf_manual.profilers')
local h = test_helpers

local function share_through(prof, frame)
  local hit = 0
  for _, s in ipairs(prof.stacks) do
    for _, f in ipairs(s.frames) do
      if f == frame then hit = hit + s.count break end
    end
  end
  return prof.total > 0 and hit / prof.total or 0
end

describe('perf_manual.measure.profile', function()
  it('samples a launched command with BPF, and with perf record when told to', function()
    if not h.need_root('BPF and perf_event_open') then return end
    h.with_machine_lock(function()
      local prof = assert(profile.run { target = h.workload('calltree') .. ' burn 3', duration = 1.5, freq = 199 })
      assert.equal('bpf', prof.backend)
      assert.is_nil(prof.fallback_why)
      assert.is_true(prof.total > 100, 'samples ' .. prof.total)
      assert.is_true(share_through(prof, 'main') > 0.9, 'main ' .. share_through(prof, 'main'))
      assert.matches('launched', prof.target)
      local p2 = assert(profile.run { target = h.workload('calltree') .. ' burn 3', duration = 1.5,
        backend = 'perf' })
      assert.equal('perf', p2.backend)
      assert.equal('--backend perf', p2.fallback_why)
      assert.matches('^using perf record %-g %(%-%-backend perf%)', p2.notes[1])
      assert.is_true(share_through(p2, 'main') > 0.5, 'main ' .. share_through(p2, 'main'))
      assert.matches('calltree', profilers.folded(p2))
    end)
  end)

  it('says why it cannot profile, softly when asked', function()
    local prof, why = profile.run { target = 'pid:999999999', duration = 1, soft = true }
    assert.is_nil(prof)
    assert.equal('no process 999999999', why)
    local ok, e = pcall(profile.run, { target = 'cgroup:/no/such/cgroup', duration = 1 })
    assert.is_false(ok)
    assert.equal('no cgroup /no/such/cgroup', e.user_error)
  end)
end)
