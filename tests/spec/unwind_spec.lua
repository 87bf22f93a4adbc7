local unwind = require('perf_manual.unwind')
local sys = require('perf_manual._c.sys')
local report = require('perf_manual.report.profile')

describe('perf_manual.unwind', function()
  it('lays out the walker structs as the BPF object was built', function()
    if not test_helpers.need_root() then return end
    local bpf = require('perf_manual.bpf')
    local sizes = unwind.sizes()
    -- every object that includes the walker, as each is built on its own
    for _, name in ipairs { 'profile', 'memleak', 'probe', 'lockhold' } do
      assert.equal(bpf.btf_type(name, 'struct pm_unwind_proc').size, sizes.proc, name)
      assert.equal(bpf.btf_type(name, 'struct pm_ustack').size, sizes.ustack, name)
    end
  end)

  it('checks --unwind', function()
    assert.equal('auto', unwind.check_mode(nil))
    assert.equal('dwarf', unwind.check_mode('dwarf'))
    local ok, err = unwind.check_mode('lbr')
    assert.is_nil(ok)
    assert.matches('expected auto, fp or dwarf, got "lbr"', err, 1, true)
  end)

  it('sums how stacks were unwound by samples, and the quality line says it', function()
    local stacks = {
      { count = 70, unwind = { dwarf = 9, fp = 0, end_reason = 'root', no_table = false, fp_no_cfi = 0,
        fp_no_map = 0 } },
      { count = 20, unwind = { dwarf = 3, fp = 2, end_reason = 'root', no_table = false, fp_no_cfi = 2,
        fp_no_map = 1 } },
      { count = 6, unwind = { dwarf = 0, fp = 1, end_reason = 'no frame pointer', no_table = true, fp_no_cfi = 0,
        fp_no_map = 0 } },
      { count = 4, unwind = { dwarf = 127, fp = 0, end_reason = 'depth limit', no_table = false, fp_no_cfi = 0,
        fp_no_map = 0 } },
      { count = 50 }, -- a kernel thread: no user stack
    }
    local s = unwind.summary(stacks)
    assert.same({ samples = 100, dwarf = 74, mixed = 20, fp = 0, no_table = 6, fp_no_cfi = 20, fp_no_map = 20,
      ends = { root = 90, ['no frame pointer'] = 6, ['depth limit'] = 4 } }, s)
    s.mode = 'auto'
    local lines = report.quality_lines { unit = 'samples', quality = { samples = 150, lost_samples = 0,
      without_frame_pointers = { 'libc.so.6' }, unwind = s } }
    local text = table.concat(lines, '\n')
    assert.matches('user stacks unwound (--unwind auto): CFI 74.0%, CFI and frame pointers 20.0%, frame pointers '
      .. '0.0%, before tables were ready 6.0%; reach the root 90.0%; cut by no frame pointer 6.0%, depth limit 4.0%, '
      .. 'frames outside known mappings (JIT, new code) 20.0%', text, 1, true)
    -- whole stacks through it: the frame-pointer warning would mislead
    assert.is_nil(text:find('built without frame pointers', 1, true))
  end)

  it('gives a process tables for its objects, glibc once however many processes map it', function()
    if not test_helpers.need_root() then return end
    local bpf = require('perf_manual.bpf')
    local obj = assert(bpf.open('profile'))
    unwind.prepare(obj, 'auto')
    assert(obj:load())
    local a = assert(sys.spawn({ 'sleep', '30' }, {}))
    local b = assert(sys.spawn({ 'sleep', '30' }, {}))
    local ok, err = pcall(function()
      sys.sleep(0.1)
      local t = unwind.tables(obj, 'auto', { cache = false })
      assert.is_true((t:add(a)))
      local rows = t.stats.rows
      assert.is_true(rows > 1000, 'rows: ' .. rows)
      local _, changed = t:add(b)
      assert.is_true(changed)
      -- the same objects (sleep, libc, ld.so): no new rows
      assert.equal(rows, t.stats.rows)
      assert.equal(2, t.stats.processes)
      local _, again = t:add(b)
      assert.is_false(again)
      local ffi = require('ffi')
      local v = assert(obj:map('unwind_procs'):lookup(a))
      local p = ffi.cast('const struct pm_unwind_proc *', v)
      assert.is_true(p.n >= 3, 'mappings: ' .. p.n)
      local with_rows = 0
      for i = 0, p.n - 1 do
        assert.is_true(i == 0 or p.maps[i].start >= p.maps[i - 1]['end'], 'mappings out of order')
        if p.maps[i].row_count > 0 then with_rows = with_rows + 1 end
      end
      assert.is_true(with_rows >= 2, 'mappings with rows: ' .. with_rows)
      local nope, why = t:add(999999999)
      assert.is_nil(nope)
      assert.matches('no process 999999999', why)
    end)
    sys.kill(a, 9) sys.wait(a)
    sys.kill(b, 9) sys.wait(b)
    obj:close()
    assert(ok, err)
  end)
end)
