local oncpu = require('perf_manual.profilers.oncpu')
local profilers = require('perf_manual.profilers')
local sys = require('perf_manual._c.sys')

local function run_calltree(mode, secs)
  return assert(sys.spawn({ test_helpers.workload('calltree'), mode, tostring(secs) }, { stdout = 'null' }))
end

local function reap(pid) sys.kill(pid, 9) sys.wait(pid) end

describe('perf_manual.profilers.oncpu', function()
  it('decodes the counts key with the layout the BPF object was built with', function()
    if not test_helpers.need_root() then return end
    local t = require('perf_manual.bpf').btf_type('profile', 'struct pm_profile_key')
    assert.is_not_nil(t)
    assert.equal(t.size, oncpu.key_size())
  end)

  it('samples one process, counts its stacks in the kernel and names them', function()
    if not test_helpers.need_root() then return end
    test_helpers.with_machine_lock(function()
      local pid = run_calltree('burn', 10)
      local ok, err = pcall(function()
        local s = assert(oncpu.start { pid = pid, freq = 499 })
        for _ = 1, 20 do s:poll() sys.sleep(0.1) end
        local p = s:stop()
        assert.is_nil(s.obj)
        assert.equal('bpf', p.source)
        assert.is_true(p.total >= 30, 'samples: ' .. p.total)
        assert.equal(0, p.quality.lost_samples)
        for _, st in ipairs(p.stacks) do
          assert.equal('calltree', st.frames[1])   -- the pid filter held
          assert.equal(pid, st.pid)
        end
        -- 6:3:1 units of work under alpha->beta, gamma_, delta
        assert.near(0.60, profilers.inclusive_share(p, '^beta$'), 0.1)
        assert.near(0.30, profilers.inclusive_share(p, '^gamma_$'), 0.12)
        local bins = {}
        for _, b in ipairs(p.binaries) do bins[b.name] = b end
        assert.is_true(bins.calltree.frame_pointers)
        assert.same({ 'libc.so.6' }, p.quality.without_frame_pointers,
          require('perf_manual.util').json_encode(p.binaries) .. ' ' .. p.stacks[1].key)
      end)
      reap(pid)
      assert(ok, err)
    end)
  end)
end)
