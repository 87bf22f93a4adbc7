-- The probe spec: parsing (table-driven, exact error text), the rodata a
-- spec becomes, tracepoint formats (real files captured under
-- tests/fixtures/tracefs), bucket building and the FFI mirrors of
-- bpf/probe.h checked against the object's BTF. No BPF is loaded here:
-- tests/e2e/probe_spec.lua places real probes.
local probe = require('perf_manual.probe')
local bpf = require('perf_manual._c.bpf')

describe('perf_manual.probe', function()
  it('mirrors the kernel structs exactly (sizes and offsets from the object BTF)', function()
    local key = assert(bpf.btf_type('probe', 'struct pm_probe_key'))
    local val = assert(bpf.btf_type('probe', 'struct pm_probe_val'))
    local ffi = require('ffi')
    assert.equal(key.size, probe.sizeof().key)
    assert.equal(val.size, probe.sizeof().val)
    for name, off in pairs(key.members) do assert.equal(off, ffi.offsetof('struct pm_probe_key', name), name) end
    assert.equal(val.size, 16 + 8 * probe.SLOTS)
  end)

  describe('parse_point', function()
    local cases = {
      { 'uprobe:libc:malloc', { kind = 'uprobe', binary = 'libc', func = 'malloc' } },
      { 'u:/usr/bin/x:f+0x10', { kind = 'uprobe', binary = '/usr/bin/x', func = 'f', offset = 16 } },
      { 'uprobe:/bin/x:0x1a2b', { kind = 'uprobe', binary = '/bin/x', offset = 0x1a2b } },
      { 'uretprobe:libc:read', { kind = 'uretprobe', binary = 'libc', func = 'read' } },
      { 'usdt:/usr/bin/python3:python:function__entry',
        { kind = 'usdt', binary = '/usr/bin/python3', provider = 'python', name = 'function__entry' } },
      { 'tracepoint:sched:sched_switch', { kind = 'tracepoint', category = 'sched', name = 'sched_switch' } },
      { 't:syscalls:sys_enter_write', { kind = 'tracepoint', category = 'syscalls', name = 'sys_enter_write' } },
      { 'rawtracepoint:sched_switch', { kind = 'raw_tp', name = 'sched_switch' } },
      { 'rawtracepoint:vmlinux:sched_switch', { kind = 'raw_tp', name = 'sched_switch' } },
    }
    for _, c in ipairs(cases) do
      it('reads ' .. c[1], function()
        local p = assert(probe.parse_point(c[1]))
        for k, v in pairs(c[2]) do assert.equal(v, p[k], k) end
      end)
    end
    local bad = {
      { 'kprobe:do_sys_open',
        "probe: unknown probe type 'kprobe' in 'kprobe:do_sys_open' (tracepoint, rawtracepoint, uprobe, "
          .. 'uretprobe, usdt)' },
      { 'tracepoint:sched', "probe: 'tracepoint:sched': expected tracepoint:CATEGORY:NAME" },
      { 'usdt:/bin/x:name', "probe: 'usdt:/bin/x:name': expected usdt:BINARY:PROVIDER:NAME" },
      { 'uprobe:libc:', "probe: 'uprobe:libc:': expected uprobe:BINARY:FUNCTION (or :0xOFFSET, :FUNCTION+OFFSET)" },
      { 'uprobe:libc:f(x)', "probe: 'uprobe:libc:f(x)': bad function name 'f(x)'" },
      { 'uprobe:libc:f+zz', "probe: 'uprobe:libc:f+zz': bad offset 'zz'" },
      { '', 'probe: expected a probe point like uprobe:libc:malloc' },
    }
    for _, c in ipairs(bad) do
      it('refuses ' .. (c[1] == '' and 'an empty point' or c[1]), function()
        local p, err = probe.parse_point(c[1])
        assert.is_nil(p)
        assert.equal(c[2], err)
      end)
    end
  end)

  describe('parse', function()
    it('takes the example of the issue as plain data', function()
      local p = assert(probe.parse { 'uprobe:libc:malloc', hist = 'arg0', by = 'stack', pid = 1234 })
      assert.equal('hist', p.action)
      assert.same({ text = 'arg0', src = 'arg', arg = 0 }, p.hist)
      assert.is_true(p.by.ustack and p.by.kstack)
      assert.equal(1234, p.pid)
      assert.is_false(p.paired)
      assert.equal('uprobe:libc:malloc hist arg0 by stack', probe.describe(p))
    end)

    it('counts by default, and keys by several things', function()
      local p = assert(probe.parse { 'tracepoint:sched:sched_process_exec', by = 'comm,pid' })
      assert.equal('count', p.action)
      assert.is_true(p.by.comm and p.by.pid)
      assert.equal('tracepoint:sched:sched_process_exec count by pid,comm', probe.describe(p))
    end)

    it('pairs entry and return for latency, and for an argument kept until the return', function()
      local lat = assert(probe.parse { 'uprobe:libc:fsync', latency = true, by = 'arg0' })
      assert.equal('latency', lat.action)
      assert.is_true(lat.paired)
      assert.is_true(lat.at_return)
      local ret = assert(probe.parse { 'uretprobe:libc:read', hist = 'retval:s64', by = 'arg0' })
      assert.is_true(ret.paired) -- arg0 read at entry, kept per thread for the return
      local plain = assert(probe.parse { 'uretprobe:libc:read', hist = 'retval' })
      assert.is_false(plain.paired)
      assert.is_true(plain.at_return)
      local filt = assert(probe.parse { 'uprobe:libc:read', latency = true, filter = 'latency > 1000000' })
      assert.equal(5, probe.OPS[filt.filter.op])
    end)

    it('reads types, linear buckets and filters', function()
      local p = assert(probe.parse { 'uprobe:/bin/x:f', hist = 'arg1:s32', linear = '-10,10,5', filter = 'arg0 != -1' })
      assert.equal(4, p.hist.size)
      assert.is_true(p.hist.signed)
      assert.same({ min = -10, max = 10, step = 5, n = 4 }, p.linear)
      assert.same({ value = { text = 'arg0', src = 'arg', arg = 0 }, op = '!=', number = -1, text = 'arg0 != -1' },
        p.filter)
    end)

    local bad = {
      { { 'uprobe:libc:malloc', hist = 'arg9' }, "probe: hist 'arg9': uprobe probes reach arg0..arg5" },
      { { 'usdt:/b:p:n', by = 'arg12' }, "probe: by 'arg12': usdt probes reach arg0..arg11" },
      { { 'uprobe:libc:malloc', hist = 'foo' }, "probe: unknown hist 'foo' (argN, retval, latency, args.FIELD)" },
      { { 'uprobe:libc:malloc', hist = 'arg0:i32' },
        "probe: hist 'arg0:i32': unknown type 'i32' (u8 s8 u16 s16 u32 s32 u64 s64)" },
      { { 'tracepoint:a:b', hist = 'arg0' },
        "probe: hist 'arg0': tracepoint fields go by name (args.FIELD; see the tracepoint's format file)" },
      { { 'tracepoint:a:b', hist = 'latency' },
        "probe: hist 'latency': entry -> return is measured on functions (uprobe)" },
      { { 'usdt:/b:p:n', hist = 'retval' }, "probe: hist 'retval': only functions return (uprobe/uretprobe)" },
      { { 'uprobe:libc:malloc', hist = 'args.size' },
        "probe: hist 'args.size': fields belong to tracepoints; use argN" },
      { { 'uprobe:libc:malloc', count = true, hist = 'arg0' },
        'probe: choose one action: count, or hist (a histogram counts too)' },
      { { 'uprobe:libc:malloc', latency = true, hist = 'arg0' }, "probe: choose one action: latency or hist='arg0'" },
      { { 'uretprobe:libc:malloc', hist = 'arg0' },
        'probe: hist arg0: arguments are gone at return; use uprobe:, or hist=retval' },
      { { 'uprobe:libc:malloc', hist = 'arg0', by = 'retval' },
        'probe: hist arg0 is read at entry, the key or filter at return: histogram a value of the same side' },
      { { 'uprobe:libc:malloc', by = 'arg0,arg1' }, "probe: by: one value per key ('arg0' and 'arg1')" },
      { { 'uprobe:libc:malloc', by = 'latency' }, "probe: by 'latency': keys are exact values; use hist = 'latency'" },
      { { 'uprobe:libc:malloc', filter = 'arg0 ~ 3' },
        "probe: filter 'arg0 ~ 3': expected 'VALUE OP NUMBER' with OP one of == != < <= > >=" },
      { { 'uprobe:libc:malloc', filter = 'arg0 > 1.5' }, "probe: filter 'arg0 > 1.5': '1.5' is not a whole number" },
      { { 'uprobe:libc:malloc', hist = 'arg0', linear = '0,10' },
        "probe: linear: expected 'MIN,MAX,STEP' (integers)" },
      { { 'uprobe:libc:malloc', hist = 'arg0', linear = '0,1000,1' },
        'probe: linear: 1000 buckets; at most 62 fit (raise the step)' },
      { { 'uprobe:libc:malloc', linear = '0,10,1' }, 'probe: scale/linear shape a histogram: add hist = VALUE' },
      { { 'uprobe:libc:malloc', comm = 'a_very_long_thread_name' },
        "probe: comm 'a_very_long_thread_name': the kernel keeps 15 characters" },
      { { 'uprobe:libc:malloc', pid = -3 }, 'probe: pid: expected a process id' },
      { { 'uprobe:libc:malloc', stack = true },
        "probe: unknown option 'stack' (count, hist, latency, scale, linear, by, stacks, filter, pid, tid, "
          .. 'cgroup, comm, unwind)' },
      { { 'uprobe:libc:malloc', by = 'ustack', unwind = 'frames' },
        'probe: --unwind: expected auto, fp or dwarf, got "frames"' },
    }
    for _, c in ipairs(bad) do
      it('refuses: ' .. c[2]:gsub('^probe: ', ''), function()
        local p, err = probe.parse(c[1])
        assert.is_nil(p)
        assert.equal(c[2], err)
      end)
    end
  end)

  describe('tracepoint formats', function()
    local write = probe.parse_format(test_helpers.fixture('tracefs/sys_enter_write.format'))
    local exec = probe.parse_format(test_helpers.fixture('tracefs/sched_process_exec.format'))

    it('reads the fields, without the common ones', function()
      assert.same({ offset = 32, size = 8, signed = false, array = false, data_loc = false, decl = 'size_t count' },
        write.count)
      assert.equal(24, write.buf.offset)
      assert.is_true(write.__syscall_nr.signed)
      assert.is_nil(write.common_pid)
      assert.is_true(exec.filename.data_loc)
      assert.equal(12, exec.pid.offset)
    end)

    it('turns a field into rodata, and refuses strings and unknown fields', function()
      local cfg = assert(probe.config(assert(probe.parse { 't:syscalls:sys_enter_write', hist = 'args.count',
        filter = 'fd == 1', by = 'comm' }), write))
      assert.equal(4, cfg.hist_src)    -- PROBE_SRC_FIELD
      assert.equal(32, cfg.hist_arg)   -- the field's offset
      assert.equal(8, cfg.hist_size)
      assert.equal(16, cfg.filt_arg)
      assert.equal(1, cfg.filt_op)     -- PROBE_OP_EQ
      assert.equal(4, cfg.key_by)      -- PROBE_BY_COMM
      local _, err = probe.config(assert(probe.parse { 't:sched:sched_process_exec', hist = 'filename' }), exec)
      assert.equal("probe: field 'filename' (__data_loc char[] filename) is not a number", err)
      _, err = probe.config(assert(probe.parse { 't:sched:sched_process_exec', by = 'args.nope' }), exec)
      assert.equal("probe: tracepoint sched:sched_process_exec has no field 'nope' (fields: filename, old_pid, pid)",
        err)
    end)
  end)

  describe('config', function()
    it('keys user stacks by process too (their frames are named through it)', function()
      local cfg = assert(probe.config(assert(probe.parse { 'uprobe:libc:malloc', by = 'ustack' })))
      assert.equal(8 + 1, cfg.key_by)
      cfg = assert(probe.config(assert(probe.parse { 'uprobe:libc:malloc', by = 'kstack' })))
      assert.equal(16, cfg.key_by)
    end)

    it('walks user stacks from CFI unless told fp; without a user stack nothing is walked', function()
      local function mode(spec) return assert(probe.config(assert(probe.parse(spec)))).unwind_mode end
      assert.equal(1, mode { 'uprobe:libc:malloc', by = 'ustack' })
      assert.equal(2, mode { 'uprobe:libc:malloc', by = 'stack', unwind = 'dwarf' })
      assert.equal(0, mode { 'uprobe:libc:malloc', by = 'ustack', unwind = 'fp' })
      assert.equal(0, mode { 'uprobe:libc:malloc', by = 'kstack', unwind = 'dwarf' })
    end)

    it('decodes the key of a walked user stack: its hash bytes, none when zero', function()
      local ffi = require('ffi')
      local k = ffi.new('struct pm_probe_key')
      k.pid, k.user_stack_id, k.user_hash = 7, -2, 0x1122334455667788ULL
      local v = ffi.new('struct pm_probe_val')
      v.count = 3
      local e = probe.decode(ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v)))
      assert.equal(ffi.string(ffi.new('uint64_t[1]', 0x1122334455667788ULL), 8), e.user_hash)
      assert.equal(3, e.count)
      k.user_hash = 0
      assert.is_nil(probe.decode(ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v))).user_hash)
    end)

    it('reads USDT arguments as signed (their spec carries the sign), registers as unsigned', function()
      local u = assert(probe.config(assert(probe.parse { 'usdt:/b:p:n', hist = 'arg0' })))
      assert.is_true(u.hist_signed)
      local r = assert(probe.config(assert(probe.parse { 'uprobe:/b:f', hist = 'arg0' })))
      assert.is_false(r.hist_signed)
    end)
  end)

  describe('buckets', function()
    local function slots(t)
      local s = {}
      for i = 1, probe.SLOTS do s[i] = t[i] or 0 end
      return s
    end

    it('log2: from the first non-empty slot, negative values of a signed value first', function()
      local p = assert(probe.parse { 'usdt:/b:p:n', hist = 'arg0' })
      probe.config(p)
      local b = probe.buckets(p, slots { [3] = 5, [5] = 1, [64] = 2 })
      assert.same({ { neg = true, hi = -1, count = 2 }, { lo = 4, hi = 7, count = 5 }, { lo = 8, hi = 15, count = 0 },
        { lo = 16, hi = 31, count = 1 } }, b)
    end)

    it('linear: underflow, steps, overflow', function()
      local p = assert(probe.parse { 'uprobe:/b:f', hist = 'arg0', linear = '0,20,10' })
      local b = probe.buckets(p, slots { 1, 2, 3, 4 })
      assert.same({ { under = true, hi = -1, count = 1 }, { lo = 0, hi = 9, count = 2 },
        { lo = 10, hi = 19, count = 3 }, { lo = 20, hi = 20, count = 4, open = true } }, b)
    end)

    it('aggregates rows by count and merges their histograms', function()
      local p = assert(probe.parse { 'uprobe:/b:f', hist = 'arg0', by = 'comm' })
      local res = probe.aggregate(p, {
        { comm = 'a', count = 2, sum = 10, slots = slots { [3] = 2 }, pid = 0, tid = 0, value = 0 },
        { comm = 'b', count = 5, sum = 5, slots = slots { [1] = 5 }, pid = 0, tid = 0, value = 0 },
      }, 2)
      assert.equal('b', res.rows[1].comm)
      assert.equal(2.5, res.rows[1].rate)
      assert.same({ count = 7, sum = 15, mean = 15 / 7 }, res.total)
      assert.same({ { lo = 0, hi = 1, count = 5 }, { lo = 2, hi = 3, count = 0 }, { lo = 4, hi = 7, count = 2 } },
        res.buckets)
    end)
  end)

  it('finds a library by name in a process map, and says where it looked when it cannot', function()
    local path = assert(probe.resolve_binary('libc'))
    assert.matches('/libc%.so', path)
    local _, err = probe.resolve_binary('libnope_pm')
    assert.matches("^probe: no library or program 'libnope_pm'", err)
    _, err = probe.resolve_binary('/nonexistent/bin')
    assert.equal('probe: no such file: /nonexistent/bin', err)
  end)
end)
