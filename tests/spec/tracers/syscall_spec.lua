-- Decoding and aggregation on map bytes recorded from a real run
-- (tests/fixtures/bpf/maps.txt, made by record.lua beside it: the tracer
-- traced its own process while it opened a missing file 7 times and
-- /etc/hostname 3 times, in latency mode and then in count mode).
local syscall = require('perf_manual.tracers.syscall')
local bpf = require('perf_manual._c.bpf')

local function unhex(s) return (s:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end)) end

local function recorded(map)
  local out = {}
  for line in test_helpers.fixture('bpf/maps.txt'):gmatch('[^\n]+') do
    local m, k, v = line:match('^(%S+)\t(%S+)\t(%S+)$')
    if m == map then out[#out + 1] = { key = unhex(k), value = unhex(v) } end
  end
  return out
end

local function decoded()
  local stats, errs = {}, {}
  for _, e in ipairs(recorded('syscall.stats')) do
    for _, st in ipairs(syscall.decode_group(e.key, e.value)) do stats[#stats + 1] = st end
  end
  for _, e in ipairs(recorded('syscall.errs')) do errs[#errs + 1] = syscall.decode_err(e.key, e.value) end
  return stats, errs
end

describe('perf_manual.tracers.syscall', function()
  it('mirrors the kernel structs exactly (sizes and offsets from the object BTF)', function()
    local stat = assert(bpf.btf_type('syscall', 'struct syscall_stat'))
    assert.equal(stat.size, syscall.sizeof().stat)
    local ffi = require('ffi')
    assert.equal(stat.members.total_ns, ffi.offsetof('struct pm_syscall_stat', 'total_ns'))
    assert.equal(stat.members.hist, ffi.offsetof('struct pm_syscall_stat', 'slots'))
    assert.equal(assert(bpf.btf_type('syscall', 'syscall_err_key')).size, syscall.sizeof().err_key)
    assert.equal(assert(bpf.btf_type('syscall', 'syscall_stat_group')).size, syscall.sizeof().group)
    assert.equal(assert(bpf.btf_type('syscall', 'syscall_counts')).size, syscall.sizeof().counts)
    assert.is_nil(bpf.btf_type('syscall', 'struct no_such_thing'))
  end)

  it('names syscalls from the kernel table built in', function()
    local names = bpf.syscall_names()
    if jit.arch == 'x64' then
      assert.equal('read', names[0])
      assert.equal('getppid', names[110])
      assert.equal('openat', names[257])
    end
    local n = 0
    for _ in pairs(names) do n = n + 1 end
    assert.is_true(n > 300)
  end)

  it('decodes recorded stats: counts, errors, latency slots that add up', function()
    local stats = decoded()
    assert.is_true(#stats >= 3)
    for _, s in ipairs(stats) do
      local sum = 0
      for _, c in ipairs(s.slots) do sum = sum + c end
      assert.equal(s.count, sum) -- latency mode: one slot per completed call
      assert.is_true(s.total_ns > 0)
    end
  end)

  it('aggregates into a top table with errnos by name', function()
    local stats, errs = decoded()
    local res = syscall.aggregate(stats, errs, bpf.syscall_names(), 2)
    local openat
    for _, r in ipairs(res.syscalls) do
      if r.nr == 257 then openat = r end
    end
    assert.is_table(openat)
    assert.equal(11, openat.count) -- 7 missing + 3 found + the test's own
    assert.equal(7, openat.errors)
    assert.same({ { errno = 2, name = 'ENOENT', count = 7 } }, openat.errnos)
    assert.equal(openat.count / 2, openat.rate)
    for i = 2, #res.syscalls do
      assert.is_true(res.syscalls[i - 1].count >= res.syscalls[i].count)
    end
    local total = 0
    for _, r in ipairs(res.syscalls) do total = total + r.count end
    assert.equal(total, res.total.count)
  end)

  it('decodes count-mode counters: the same calls, no errors or time', function()
    local e = recorded('syscall.counts')[1]
    local stats = syscall.decode_counts(e.value)
    local res = syscall.aggregate(stats, {}, bpf.syscall_names(), 1)
    local openat
    for _, r in ipairs(res.syscalls) do
      if r.name == 'openat' then openat = r end
    end
    assert.equal(10, openat.count) -- counted on entry: the 7 failing and 3 good opens
    assert.is_nil(openat.errors)
    assert.is_nil(openat.avg_ns)
    assert.is_nil(res.total.errors)
    assert.same({}, res.buckets)
  end)

  it('renders like syscount -L, and counts only in count mode', function()
    local stats, errs = decoded()
    local res = syscall.aggregate(stats, errs, bpf.syscall_names(), 1)
    res.mode = 'latency'
    local render = require('perf_manual.report.tracers').render
    local text = render('syscall', res, { top = 3 })
    assert.matches('SYSCALL%s+COUNT%s+ERRORS%s+TIME %(us%)', text)
    assert.matches('nsecs%s+: count%s+distribution', text)
    assert.matches('more syscalls', text)
    res.mode = 'count'
    local ctext = render('syscall', res)
    assert.matches('^SYSCALL%s+COUNT\n', ctext)
    assert.not_matches('ERRORS', ctext)
  end)

  it('names errnos', function()
    assert.equal('ENOENT', syscall.errno_name(2))
    assert.equal('EAGAIN', syscall.errno_name(11))
    assert.equal('errno 9999', syscall.errno_name(9999))
  end)

  it('rejects an unknown mode', function()
    assert.has_error(function() syscall.start { mode = 'fast' } end,
      "[perf_manual.tracers.syscall] mode must be 'latency' or 'count'")
  end)
end)
