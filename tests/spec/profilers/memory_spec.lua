local memory = require('perf_manual.profilers.memory')
local profilers = require('perf_manual.profilers')
local report = require('perf_manual.report.memory')

-- /proc/PID/maps lines of a real process (leaky, PIE, glibc 2.36)
local MAPS = table.concat({
  '55d1c4a00000-55d1c4a01000 r--p 00000000 fe:01 1054 /work/build/workloads/leaky',
  '55d1c4a01000-55d1c4a02000 r-xp 00001000 fe:01 1054 /work/build/workloads/leaky',
  '55d1c5e6e000-55d1c6290000 rw-p 00000000 00:00 0                          [heap]',
  '7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0 ',
  '7f3a1d028000-7f3a1d04e000 r--p 00000000 fe:01 3932 /usr/lib/x86_64-linux-gnu/libc.so.6',
  '7f3a1d04e000-7f3a1d1a3000 r-xp 00026000 fe:01 3932 /usr/lib/x86_64-linux-gnu/libc.so.6',
  '7ffd6b1e2000-7ffd6b203000 rw-p 00000000 00:00 0                          [stack]',
}, '\n') .. '\n'

local function prof(stacks, duration)
  return profilers.new { kind = 'memory', source = 'bpf', unit = 'bytes', duration = duration or 60,
                         stacks = stacks }
end

describe('perf_manual.profilers.memory', function()
  it('finds the C library a process maps, and none in a static binary', function()
    assert.equal('/usr/lib/x86_64-linux-gnu/libc.so.6', memory.libc_path(MAPS))
    assert.equal('/lib/libc-2.31.so', memory.libc_path('7f00-7f10 r-xp 0 08:01 5 /lib/libc-2.31.so\n'))
    assert.is_nil(memory.libc_path('400000-401000 r-xp 0 08:01 7 /usr/bin/static\n'))
    -- a library whose name only starts like it
    assert.is_nil(memory.libc_path('7f00-7f10 r-xp 0 08:01 5 /usr/lib/libcrypt.so.1\n'))
  end)

  it('names the mapping of a faulting address, anonymous ones included', function()
    local maps = memory.parse_all_maps(MAPS)
    assert.equal(7, #maps)
    assert.equal('[heap]', memory.mapping_of(maps, 0x55d1c5f00000))
    assert.equal('[anon]', memory.mapping_of(maps, 0x7f3a1c010000))
    assert.equal('/usr/lib/x86_64-linux-gnu/libc.so.6', memory.mapping_of(maps, 0x7f3a1d04e000))
    assert.is_nil(memory.mapping_of(maps, 0x7f3a1c021000)) -- the first byte past a mapping
    -- above the heap, below the next mapping: the heap grown since the maps were read
    assert.equal('[heap]', memory.mapping_of(maps, 0x55d1c6290000 + 4096))
    assert.is_nil(memory.mapping_of(maps, 0x1000))
  end)

  it('reads RSS from /proc/PID/status', function()
    local st = 'Name:\tleaky\nVmPeak:\t  9000 kB\nVmRSS:\t    5124 kB\nRssAnon:\t    3000 kB\nRssFile:\t 2124 kB\n'
    assert.same({ rss = 5124 * 1024, anon = 3000 * 1024 }, memory.parse_status(st))
    assert.is_nil(memory.parse_status('Name:\tkthreadd\n'))
  end)

  it('fits the RSS growth per minute through its samples', function()
    -- 1 MB a second, with one noisy sample in the middle
    local g = memory.rss_growth { { t = 0, rss = 10e6 }, { t = 1, rss = 11.5e6 }, { t = 2, rss = 12e6 },
                                  { t = 3, rss = 13e6 } }
    assert.equal(3e6, g.growth)
    assert.near(60e6 * 0.95, g.per_min, 1e6) -- least squares: 0.95 MB/s
    assert.equal(3, g.seconds)
    assert.is_nil(memory.rss_growth { { t = 0, rss = 1 } })
  end)

  it('puts the caller read at the allocator entry under the allocator frame, once', function()
    assert.same({ 100, 200, 300, 400 }, memory.with_caller({ 100, 300, 400 }, 200))
    assert.same({ 100, 300 }, memory.with_caller({ 100, 300 }, 300)) -- a caller without a frame of its own
    assert.same({ 100, 300 }, memory.with_caller({ 100, 300 }, 0))
  end)

  it('puts the caller back only into stacks whose walk took no CFI step', function()
    assert.is_true(memory.needs_caller(nil)) -- bpf_get_stackid: a frame-pointer walk
    assert.is_true(memory.needs_caller({ dwarf = 0, fp = 3, no_table = true }))
    assert.is_false(memory.needs_caller({ dwarf = 6, fp = 0 }))
    assert.is_false(memory.needs_caller({ dwarf = 2, fp = 4 }))
  end)

  it('decodes a walked site and fault key: the hash as its bytes, none when zero', function()
    local ffi = require('ffi')
    local k = ffi.new('struct pm_memleak_site', { caller = 0x401234, stack_id = -2, tgid = 77, kind = 1,
                                                  user_hash = 0x1122334455667788ULL })
    local v = ffi.new('struct pm_memleak_total', { bytes = 64, allocs = 1, sampled = 1, sampled_bytes = 64 })
    local kb = ffi.string(k, ffi.sizeof(k))
    local s = memory.decode_site(kb, ffi.string(v, ffi.sizeof(v)))
    assert.equal(77, s.tgid)
    assert.equal('calloc', s.kind)
    assert.equal(kb:sub(25, 32), s.user_hash)
    assert.equal(0x55667788, ffi.cast('const uint32_t *', s.user_hash)[0])
    k.user_hash = 0
    assert.is_nil(memory.decode_site(ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v))).user_hash)
    local f = ffi.new('struct pm_memleak_fault_key', { tgid = 5, stack_id = -2, user_hash = 9 })
    local fk = memory.decode_fault_key(ffi.string(f, ffi.sizeof(f)))
    assert.equal(9, ffi.cast('const uint64_t *', fk.user_hash)[0])
    f.user_hash = 0
    assert.is_nil(memory.decode_fault_key(ffi.string(f, ffi.sizeof(f))).user_hash)
  end)

  it('names the leaf after the call and drops a caller word that names nothing', function()
    assert.same({ 'app', 'main', 'cache_put', 'malloc' },
      memory.name_leaf({ 'app', 'main', 'cache_put', '__libc_malloc' }, 'malloc', true))
    assert.same({ 'app', 'main', 'mmap' }, memory.name_leaf({ 'app', 'main', '[unknown]', 'mmap64' }, 'mmap', true))
    -- without an inserted caller an unnamed frame is the stack's own and stays
    assert.same({ 'app', '[unknown]', 'calloc' }, memory.name_leaf({ 'app', '[unknown]', '__libc_calloc' }, 'calloc'))
    assert.same({ 'app', '[missing user stack]' }, memory.name_leaf({ 'app', '[missing user stack]' }, 'malloc'))
  end)

  it('probes free past its NULL check only when a push (emulated, not single-stepped) follows', function()
    -- glibc 2.36 free: test rdi,rdi; je +0xbf; push rbp; lea rsi,[rdi-0x10]
    local free = '\72\133\255\15\132\191\0\0\0\85\72\141\119\240\83\72'
    assert.equal(9, memory.entry_offset(free))
    -- push r12 (41 54) after the check
    assert.equal(9, memory.entry_offset(free:sub(1, 9) .. '\65\84' .. free:sub(12)))
    -- something else after the check, or no check at all (malloc opens with push r12)
    assert.equal(0, memory.entry_offset(free:sub(1, 9) .. '\72\141' .. free:sub(12)))
    assert.equal(0, memory.entry_offset('\65\84\85\83\72\137\251\72\131\236\24\0'))
    assert.equal(0, memory.entry_offset(''))
  end)

  it('merges stacks that read the same', function()
    local m = memory.merge {
      { frames = { 'app', 'main', 'put' }, count = 10, allocs = 1 },
      { frames = { 'app', 'main', 'get' }, count = 5, allocs = 1 },
      { frames = { 'app', 'main', 'put' }, count = 20, allocs = 2 },
    }
    assert.equal(2, #m)
    assert.equal(30, m[1].count)
    assert.equal(3, m[1].allocs)
  end)

  it('sums outstanding bytes by the function that asked, past the allocator and strdup', function()
    local p = prof {
      { frames = { 'app', 'main', 'cache_put', 'malloc' }, count = 9000, allocs = 9 },
      { frames = { 'app', 'main', 'load', 'cache_put', 'malloc' }, count = 600, allocs = 1 },
      { frames = { 'app', 'main', 'parse', 'strdup', 'malloc' }, count = 400, allocs = 40 },
    }
    local f = memory.by_function(p)
    assert.equal('cache_put', f[1].name)
    assert.equal(9600, f[1].bytes)
    assert.equal(10, f[1].allocs)
    assert.near(0.96, f[1].share, 1e-9)
    assert.equal('parse', f[2].name)
  end)

  describe('verdict', function()
    it('names the leaking function and its share of the RSS growth', function()
      local p = prof({ { frames = { 'app', 'main', 'cache_put', 'malloc' }, count = 40e6, allocs = 40 },
                       { frames = { 'app', 'main', 'other', 'malloc' }, count = 1e6, allocs = 4 } }, 60)
      local v = memory.verdict(p, { per_min = 42e6, growth = 42e6 }, 60)
      assert.is_true(v.leaking)
      assert.equal('cache_put', v['function'])
      assert.equal('RSS +42.0 MB/min, 95% of it allocated from `cache_put` and never freed', v.text)
    end)

    it('says no leak when nothing is outstanding, and when it is below the threshold', function()
      local v = memory.verdict(prof({}, 10), { per_min = 0, growth = 0 }, 10)
      assert.is_false(v.leaking)
      assert.matches('no leak seen', v.text)
      v = memory.verdict(prof({ { frames = { 'app', 'f', 'malloc' }, count = 1000 } }, 60),
        { per_min = 0, growth = 0 }, 60)
      assert.is_false(v.leaking)
      assert.matches('below the leak threshold', v.text)
    end)

    it('says when the leak is spread, and when RSS stays flat', function()
      local stacks = {}
      for i = 1, 5 do stacks[i] = { frames = { 'app', 'f' .. i, 'malloc' }, count = 10e6 } end
      local v = memory.verdict(prof(stacks, 60), { per_min = 50e6, growth = 50e6 }, 60)
      assert.is_true(v.leaking)
      assert.matches('spread over many sites', v.text)
      v = memory.verdict(prof({ { frames = { 'app', 'grow', 'malloc' }, count = 30e6 } }, 60),
        { per_min = 0, growth = 0 }, 60)
      assert.matches('`grow`', v.text)
      assert.matches('reuses freed memory', v.text)
    end)
  end)

  it('decodes the maps with the layout the BPF object was built with', function()
    if not test_helpers.need_root() then return end
    local bpf = require('perf_manual.bpf')
    local sz = memory.sizeof()
    assert.equal(bpf.btf_type('memleak', 'struct pm_memleak_site').size, sz.site)
    assert.equal(bpf.btf_type('memleak', 'struct pm_memleak_total').size, sz.total)
    assert.equal(bpf.btf_type('memleak', 'struct pm_memleak_fault_key').size, sz.fault_key)
    local members = bpf.btf_type('memleak', 'struct pm_memleak_site').members
    assert.equal(12, members.tgid) -- poll() reads it at this offset
    -- decode_site and decode_fault_key take the walked stack's key as bytes at these offsets
    assert.equal(24, members.user_hash)
    assert.equal(32, sz.site) -- no hole: the key is hashed whole
    assert.equal(8, bpf.btf_type('memleak', 'struct pm_memleak_fault_key').members.user_hash)
    assert.equal(16, sz.fault_key)
  end)

  it('renders the verdict, the tables and the quality line', function()
    local p = prof({ { frames = { 'leaky', 'main', 'cache_put', 'malloc' }, count = 4194304, allocs = 256 } }, 2)
    p.target = 'pid 42'
    p.faults = profilers.new { kind = 'faults', unit = 'faults', stacks = {
      { frames = { 'leaky', 'main', 'cache_put' }, count = 671 } } }
    p.memory = { verdict = memory.verdict(p, { per_min = 124e6, growth = 3.2e6, first = 2e6, last = 5.2e6,
                                               seconds = 1.5, samples = 7 }, 2),
                 rss = { per_min = 124e6, growth = 3.2e6, first = 2e6, last = 5.2e6, seconds = 1.5, samples = 7 },
                 by_function = memory.by_function(p), libc = '/usr/lib/x86_64-linux-gnu/libc.so.6',
                 fault_mappings = { { mapping = '[heap]', faults = 671, share = 1 } },
                 quality = { calls = 100, sampled = 100, frees = 90, frees_matched = 90, sample_every = 1,
                             short_stack_share = 0.018 } }
    local text = report.render(p)
    assert.matches('memory profile of pid 42 for 2%.00s via BPF uprobes on libc%.so%.6', text)
    assert.matches('verdict: RSS %+124%.0 MB/min, 100%% of it allocated from `cache_put` and never freed', text)
    assert.matches('100%.0%%%s+4%.0M%s+256 allocs  cache_put', text)
    assert.matches('main;cache_put;malloc', text)
    assert.matches('page faults: 671', text)
    assert.matches('by mapping: %[heap%] 100%%', text)
    assert.matches('stacks cut short %(no frame pointers past the caller%) 1%.8%%', text)
    assert.not_matches('user stacks unwound', text)
    -- walked from CFI: the unwinding line, weighted by outstanding bytes, and no frame-pointer wording
    p.stacks[1].unwind = { dwarf = 6, fp = 0, end_reason = 'root', no_table = false, fp_no_cfi = 0, fp_no_map = 0 }
    p.unwind = { mode = 'auto' }
    p.memory.quality.unwind = profilers.unwind_quality(p)
    p.memory.quality.without_frame_pointers = { 'leaky' }
    text = report.render(p)
    assert.matches('stacks cut short %(not reaching a start function%) 1%.8%%', text)
    assert.matches('user stacks unwound %(%-%-unwind auto%): CFI 100%.0%%, CFI and frame pointers 0%.0%%, '
      .. 'frame pointers 0%.0%%, before tables were ready 0%.0%%; reach the root 100%.0%%\n', text)
    assert.not_matches('built without frame pointers', text)
  end)
end)
