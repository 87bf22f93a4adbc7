-- Decoding and aggregation on map bytes recorded from a real run
-- (tests/fixtures/bpf/maps.txt: per-process run-queue latency while a
-- 3-thread cpu_burn shared 2 CPUs, and the run-queue length samples).
local sched = require('perf_manual.tracers.sched')
local bpf = require('perf_manual._c.bpf')

local function unhex(s) return (s:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end)) end

local function recorded(map)
  local out = {}
  for line in test_helpers.fixture('bpf/maps.txt'):gmatch('[^\n]+') do
    local m, k, v = line:match('^(%S+)\t(%S+)\t(%S+)$')
    if m == map then out[#out + 1] = { key = k, value = unhex(v) } end
  end
  return out
end

local function burner_pid()
  return tonumber(test_helpers.fixture('bpf/maps.txt'):match('burner%.pid\t(%d+)'))
end

local function groups()
  local g = {}
  for _, e in ipairs(recorded('sched.hists')) do g[#g + 1] = sched.decode_hist(unhex(e.key), e.value) end
  return g
end

describe('perf_manual.tracers.sched', function()
  it('mirrors the kernel structs (sizes and offsets from the object BTF)', function()
    local h = assert(bpf.btf_type('sched', 'struct sched_hist'))
    assert.equal(h.size, sched.sizeof().hist)
    assert.equal(h.members.hist, require('ffi').offsetof('struct pm_sched_hist', 'slots'))
    assert.equal(assert(bpf.btf_type('sched', 'struct runq_hist')).size, sched.sizeof().runq)
  end)

  it('decodes per-process histograms whose slots add up to their counts', function()
    for _, g in ipairs(groups()) do
      local sum = 0
      for _, c in ipairs(g.slots) do sum = sum + c end
      assert.equal(g.count, sum)
    end
  end)

  it('puts the saturated burner first, with a run-queue latency in milliseconds', function()
    local res = sched.aggregate(groups(), 'process', 'usecs', function(pid) return 'comm' .. pid end)
    local top = res.groups[1]
    assert.equal(burner_pid(), top.pid)
    assert.equal('comm' .. top.pid, top.comm)
    assert.is_true(top.count > 100)
    assert.is_true(top.avg > 100, 'avg ' .. top.avg) -- 3 spinning threads on 2 CPUs wait for each other
    assert.is_true(top.p99 >= top.p50)
    local n = 0
    for _, g in ipairs(res.groups) do n = n + g.count end
    assert.equal(n, res.count)
  end)

  it('summarises run-queue length samples per CPU', function()
    local all = {}
    for _, e in ipairs(recorded('sched.runq')) do
      local slots = sched.decode_runq(e.value)
      require('perf_manual.hist').add_slots(all, slots)
    end
    local s = sched.runq_summary(all)
    assert.is_true(s.samples > 50)
    assert.is_true(s.mean > 1, 'mean ' .. s.mean) -- 3 runnable burners on 2 CPUs
    assert.is_true(s.waiting_pct > 0)
    assert.same({ samples = 0 }, sched.runq_summary({ 0, 0 }))
    assert.same({ samples = 4, mean = 1.5, waiting_pct = 50 }, sched.runq_summary({ 0, 2, 2 }))
  end)

  it('renders per-process histograms and the run-queue length', function()
    local res = sched.aggregate(groups(), 'process', 'usecs', function() return 'cpu_burn' end)
    res.runqlen = { samples = 4, mean = 1.5, waiting_pct = 50, sample_hz = 99,
                    buckets = require('perf_manual.hist').linear_buckets({ 0, 2, 2 }) }
    local render = require('perf_manual.report.tracers').render
    local text = render('sched', res, { top = 2 })
    assert.matches('run%-queue latency %(usecs%): %d+ wakeups', text)
    assert.matches('pid = ' .. burner_pid() .. ' cpu_burn', text)
    assert.matches('more groups', text)
    assert.matches('runqlen', text)
    local empty = render('sched', sched.aggregate({}, 'all', 'usecs'))
    assert.matches('no wakeups of the target seen', empty)
  end)

  it('rejects an unknown grouping', function()
    assert.has_error(function() sched.start { per = 'thread' } end,
      "[perf_manual.tracers.sched] per must be 'all', 'cpu' or 'process'")
  end)
end)
