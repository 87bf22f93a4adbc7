local base = require('perf_manual.tracers.base')

describe('perf_manual.tracers.base', function()
  it('turns target options into the rodata filter of bpf/common.h', function()
    assert.same({ targ_tgid = 0, targ_pid = 0, targ_cgroup_id = 0 }, base.filter_config({}))
    assert.same({ targ_tgid = 42, targ_pid = 7, targ_cgroup_id = 0 }, base.filter_config({ pid = 42, tid = 7 }))
    assert.same({ targ_tgid = 9, targ_pid = 0, targ_cgroup_id = 0 }, base.filter_config({ tgid = 9 }))
    assert.equal(123, base.filter_config({ cgroup = 123 }).targ_cgroup_id)
    assert.equal(77, base.filter_config({ cgroup = '77' }).targ_cgroup_id)
  end)

  it('finds a cgroup v2 id from its path, or says which path is missing', function()
    local root = base.cgroup2_root()
    if not root then return pending('no cgroup v2 hierarchy on this machine') end
    local st = require('posix.sys.stat').stat(root)
    assert.equal(st.st_ino, base.cgroup_id(root))
    assert.equal(st.st_ino, base.cgroup_id('/'))
    local id, err = base.cgroup_id('no/such/group')
    assert.is_nil(id)
    assert.equal('no cgroup no/such/group (' .. root .. '/no/such/group)', err)
    local cfg, cerr = base.filter_config({ cgroup = 'no/such/group' })
    assert.is_nil(cfg)
    assert.matches('^no cgroup', cerr)
    if root ~= '/sys/fs/cgroup' then -- hybrid v1/v2: a v1 path cannot be a BPF filter
      local _, verr = base.cgroup_id('/sys/fs/cgroup/memory')
      assert.equal('/sys/fs/cgroup/memory is not in the cgroup v2 hierarchy (mounted at ' .. root .. ')', verr)
    end
  end)

  it('says what the kernel lacks in one phrase', function()
    assert.equal('unavailable on this kernel: tracepoint sched/sched_switch',
      base.unavailable('tracepoint sched/sched_switch'))
  end)

  it('names the attach path from the programs attached', function()
    assert.equal('raw_tp', base.attach_path({ a = 'raw_tp', b = 'raw_tp' }))
    assert.equal('perf_event+tp_btf', base.attach_path({ a = 'tp_btf', b = 'perf_event' }))
  end)

  -- an on/off pair of BPF_ENABLE_STATS patches kernel text on every CPU:
  -- a tracer left on must not pay it every second
  it('samples run time in windows whose period doubles up to STATS_PERIOD_MAX', function()
    local bpf = require('perf_manual.bpf')
    local sys = require('perf_manual.sys')
    local saved = { bpf.stats_enable, base.stats_lazy, base.STATS_PERIOD_MAX }
    local function windows(max)
      local ons = {}
      bpf.stats_enable = function(on)
        if on then ons[#ons + 1] = true end
        return true
      end
      base.stats_lazy, base.STATS_PERIOD_MAX = true, max
      local obj = { info = function() return { run_cnt = 0, run_time_ns = 0 } end }
      local t = base.Tracer.new('x', obj, {})
      local t0 = sys.now()
      local at = {}
      -- ticks every 10 ms: a window opens on the first tick at or after its time
      for i = 1, 3000 do
        local n = #ons
        base.stats_tick(t0 + i * 0.01)
        if #ons > n then at[#at + 1] = i * 0.01 end
      end
      t:_release()
      return at
    end
    local ok, err = pcall(function()
      -- 30 s: the first window 0.1 s after start, then 1, 2, 4, 8, 8 s apart
      local want = { 0.1, 1.1, 3.1, 7.1, 15.1, 23.1 }
      local got = windows(8)
      assert.equal(#want, #got, table.concat(got, ' '))
      -- each near its time: a window opens and closes on the first tick at or
      -- after its time, so each can land a tick late, and the lateness adds up
      for i, w in ipairs(want) do assert.near(w, got[i], 0.15, table.concat(got, ' ')) end
      -- a fixed period: a window every second
      local fixed = windows(nil)
      assert.is_true(#fixed >= 28 and #fixed <= 30, table.concat(fixed, ' '))
      for i = 2, #fixed do assert.near(1.0, fixed[i] - fixed[i - 1], 0.03, table.concat(fixed, ' ')) end
    end)
    bpf.stats_enable, base.stats_lazy, base.STATS_PERIOD_MAX = saved[1], saved[2], saved[3]
    assert(ok, err)
  end)
end)
