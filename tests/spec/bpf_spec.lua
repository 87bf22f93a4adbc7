-- pm.bpf (runtime/bpf.c) and its wrapper perf_manual.bpf against the real
-- kernel: these load programs, so they need root (#priv).
local h = test_helpers
local ffi = require('ffi')
pcall(ffi.cdef, 'int getppid(void);')

describe('perf_manual.bpf #priv', function()
  local bpf = require('perf_manual.bpf')
  local c = require('perf_manual._c.bpf')

  it('lists the embedded objects and refuses unknown ones', function()
    local names = bpf.objects()
    local have = {}
    for _, n in ipairs(names) do have[n] = true end
    assert.is_true(have.syscall and have.sched)
    local obj, err, errno = c.open('nope')
    assert.is_nil(obj)
    assert.equal('bpf: open nope: No such file or directory', err)
    assert.equal(2, errno)
  end)

  it('says in one line why BPF is unavailable, or that it is', function()
    if not h.need_root() then return end
    local ok, why = bpf.available()
    assert.is_true(ok, why)
  end)

  it('counts exactly the getppid calls this process makes (rodata filter, per-CPU array)', function()
    if not h.need_root() then return end
    local sys = require('perf_manual._c.sys')
    local obj = assert(bpf.load('syscall', {
      config = { targ_tgid = sys.getpid(), targ_latency = false }, autoload = { sys_exit = false },
    }))
    local info = obj:info()
    assert.same({ sys_enter = 'raw_tp' }, info.attach)
    for _ = 1, 1000 do ffi.C.getppid() end
    local stats = obj:map('counts') -- one per-CPU entry: a counter per syscall number
    local v = assert(stats:lookup(0))
    assert.equal(1000, tonumber(ffi.cast('const uint64_t *', v)[110]))
    -- per-CPU copies: as many as CPUs, adding up to the sum
    local copies = stats:lookup(0, { percpu = 'list' })
    assert.equal(bpf.ncpu(), #copies)
    local sum = 0
    for _, b in ipairs(copies) do sum = sum + tonumber(ffi.cast('const uint64_t *', b)[110]) end
    assert.equal(1000, sum)
    info = obj:info()
    assert.is_true(info.stats)
    assert.is_true(info.progs.sys_enter.run_cnt >= 1000)
    assert.is_true(info.run_time_ns > 0)
    -- reading with clear zeroes the array entries (detached: our own reads are syscalls too)
    obj:detach()
    assert.same({}, obj:info().attach)
    local rows = stats:read{ nonzero = true, clear = true }
    assert.is_true(#rows >= 1)
    assert.same({}, stats:read{ nonzero = true })
    obj:close()
  end)

  it('loads CO-RE objects with the cut-down BTF built for this kernel, and the full BTF without it', function()
    if not h.need_root() then return end
    -- the build runs on the kernel the tests run on, so the fingerprint matches
    local ok, why = c.min_btf()
    assert.is_true(ok, tostring(why))
    local util = require('perf_manual.util')
    local function attach(env)
      local out, err, st = h.pm('trace --events sched,io --duration 0.3 --json', env)
      assert.equal(0, st, err)
      local res = assert(util.json_decode(out)).intervals[1].results
      assert.is_true(res.sched.count >= 0 and res.io.rows ~= nil)
      return res.sched.quality.attach_path, res.io.quality.attach_path
    end
    -- raw_tp needs no BTF but the cut-down one; tp_btf must parse the kernel's
    assert.same({ 'raw_tp', 'raw_tp' }, { attach() })
    assert.same({ 'tp_btf', 'tp_btf' }, { attach('PM_NO_MIN_BTF=1') })
  end)

  it('updates, looks up and deletes hash entries; absent keys are nil / false', function()
    if not h.need_root() then return end
    local obj = assert(bpf.load('syscall', { attach = false, stats = false }))
    local errs = obj:map('errs')
    local mi = errs:info()
    assert.same({ 'hash', 8, 8, false }, { mi.type, mi.key_size, mi.value_size, mi.percpu })
    local key = ffi.string(ffi.new('uint32_t[2]', { 39, 4 }), 8)
    local val = ffi.string(ffi.new('uint64_t[1]', { 42 }), 8)
    assert.is_nil(errs:lookup(key))
    assert.is_true(errs:update(key, val))
    assert.equal(val, errs:lookup(key))
    local rows = errs:read()
    assert.equal(1, #rows)
    assert.equal(key, rows[1].key)
    assert.is_true(errs:delete(key))
    assert.is_false(errs:delete(key))
    assert.is_true(errs:update(key, val))
    assert.equal(1, errs:clear())
    assert.same({}, errs:read())
    assert.has_error(function() errs:lookup('short') end, 'bpf: map errs: key must be 8 bytes, got 5')
    assert.is_nil(obj:info().run_time_ns) -- stats off: not measured, not 0
    obj:close()
  end)

  it('sets config only by known names and only before load', function()
    if not h.need_root() then return end
    local obj = assert(bpf.open('syscall'))
    assert.has_error(function() obj:set_config{ no_such = 1 } end,
      "bpf: set_config syscall: no config variable 'no_such'")
    obj:set_config{ targ_tgid = 1 }
    assert.is_true(obj:load{ stats = false })
    assert.has_error(function() obj:set_config{ targ_tgid = 2 } end,
      'bpf: set_config syscall: the object is already loaded')
    obj:close()
  end)

  it('loads tp_btf or raw_tp program sets and says which one ran', function()
    if not h.need_root() then return end
    local obj = assert(bpf.open('sched'))
    for _, p in ipairs(obj:programs()) do
      obj:autoload(p.name, p.kind == 'raw_tp')
    end
    assert(obj:load{ stats = false })
    assert(obj:attach())
    local kinds = {}
    for _, kind in pairs(obj:info().attach) do kinds[kind] = true end
    assert.same({ raw_tp = true }, kinds)
    obj:close()
  end)

  it('closes idempotently and refuses use after close', function()
    if not h.need_root() then return end
    local obj = assert(bpf.load('syscall', { attach = false, stats = false }))
    local m = obj:map('stats')
    obj:close()
    obj:close()
    assert.matches('closed', tostring(obj))
    assert.has_error(function() m:read() end)
    local ok, err = pcall(obj.info, obj)
    assert.is_false(ok)
    assert.matches('bpf object is closed', err)
  end)

  it('reports a failed attach with the program name and the reason', function()
    if not h.need_root() then return end
    local obj = assert(bpf.load('sched', { attach = false, stats = false }))
    -- a perf_event program needs a perf event: asking for a CPU that does not exist fails cleanly
    local ok, err = obj:attach_perf_event('runq_sample', { cpu = 4096, freq = 99 })
    assert.is_nil(ok)
    assert.matches('^bpf: perf_event_open runq_sample cpu 4096: ', err)
    obj:close()
  end)
end)

describe('perf_manual.bpf kernel BTF', function()
  local bpf = require('perf_manual.bpf')
  it('reads enums of the running kernel, by value', function()
    if not require('posix.sys.stat').stat('/sys/kernel/btf/vmlinux') then
      return test_helpers.skip_unless_required('PM_REQUIRE_BPF', 'no /sys/kernel/btf/vmlinux')
    end
    local r = assert(bpf.kernel_enum('skb_drop_reason'))
    assert.equal('SKB_DROP_REASON_NOT_SPECIFIED', r[2])
    local st = assert(bpf.kernel_enum('bpf_map_type'))
    assert.equal('BPF_MAP_TYPE_HASH', st[1])
    local none, err = bpf.kernel_enum('no_such_enum_here')
    assert.is_nil(none)
    assert.equal('bpf: kernel enum no_such_enum_here: No such file or directory', err)
  end)
  it('counts the arguments a raw tracepoint passes', function()
    if not require('posix.sys.stat').stat('/sys/kernel/btf/vmlinux') then
      return test_helpers.skip_unless_required('PM_REQUIRE_BPF', 'no /sys/kernel/btf/vmlinux')
    end
    assert.equal(3, bpf.kernel_tp_nargs('inet_sock_set_state'))
    assert.equal(1, bpf.kernel_tp_nargs('tcp_receive_reset'))
    assert.is_nil((bpf.kernel_tp_nargs('no_such_tracepoint')))
  end)
end)
