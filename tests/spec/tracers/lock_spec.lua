-- perf_manual.tracers.lock: decoding and the USE Mutex row on bytes recorded
-- from the real lock object (tests/fixtures/bpfmaps/lock.json:
-- mutex_contention, 8 threads on one pthread mutex, 0.5 s, user stacks on).
local lock = require('perf_manual.tracers.lock')
local bpf = require('perf_manual.bpf')
local util = require('perf_manual.util')

local function unhex(h) return (h:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) end
local rec = assert(util.json_decode(fixture('bpfmaps/lock.json')))

local function decoded()
  local d = { futexes = {}, threads = {}, stacks = {}, wakers = {}, klocks = {}, counters = {} }
  local function each(map, list, decode)
    for _, e in ipairs(rec.maps[map]) do list[#list + 1] = decode(unhex(e.key), unhex(e.value)) end
  end
  each('futexes', d.futexes, lock.decode_futex)
  each('threads', d.threads, lock.decode_thread)
  each('klocks', d.klocks, lock.decode_klock)
  for _, e in ipairs(rec.maps.fstacks) do
    local s = lock.decode_stack(unhex(e.key), unhex(e.value))
    s.addrs = require('perf_manual.tracers.offcpu').unpack(unhex(rec.stacks[tostring(s.stack_id)]))
    d.stacks[#d.stacks + 1] = s
  end
  for _, e in ipairs(rec.maps.wakers) do
    local w = lock.decode_waker(unhex(e.key), unhex(e.value))
    local raw = rec.stacks[tostring(w.stack_id)]
    w.addrs = raw and require('perf_manual.tracers.offcpu').unpack(unhex(raw)) or {}
    d.wakers[#d.wakers + 1] = w
  end
  for _, e in ipairs(rec.maps.counters) do
    local idx = string.byte(unhex(e.key), 1)
    local v = unhex(e.value)
    local n = 0
    for i = 8, 1, -1 do n = n * 256 + v:byte(i) end
    d.counters[lock.COUNTERS[idx + 1]] = n
  end
  return d
end

local function sum(t) local s = 0 for _, v in pairs(t) do s = s + v end return s end

describe('perf_manual.tracers.lock', function()
  it('mirrors the structs of bpf/lock.h as the object was compiled', function()
    local sz = lock.sizeof()
    for name, size in pairs(sz) do
      assert.equal(assert(bpf.btf_type('lock', 'struct pm_lock_' .. name)).size, size, name)
    end
    assert.equal(256, assert(bpf.btf_type('lock', 'struct pm_lock_stat')).members.count)
  end)

  it('decodes recorded futex waits: every wait is counted once in slots and outcomes', function()
    local d = decoded()
    assert.is_true(#d.futexes > 0)
    for _, f in ipairs(d.futexes) do
      assert.equal(rec.pid, f.tgid)   -- the filter kept the workload only
      assert.equal(f.count, sum(f.slots))
      assert.equal(f.count, sum(f.results))
      assert.is_true(f.max_ns * f.count >= f.total_ns)
    end
    assert.is_true(#d.threads >= 7)
    for _, t in ipairs(d.threads) do assert.equal('mutex_contentio', t.comm) end
  end)

  it('finds the one contended lock: its futex holds most of the wait time', function()
    local r = lock.analyse(decoded(), rec.seconds, 9)
    local top = r.futex[1]
    assert.is_true(top.share > 0.9, 'top futex share ' .. tostring(top.share))
    assert.equal('lock', top.kind) -- a pthread mutex waits with FUTEX_WAIT
    assert.is_true(top.count > 50)
    for i = 2, #r.futex do assert.is_true(r.futex[i - 1].total_ns >= r.futex[i].total_ns) end
    -- 8 threads on one lock: most of them wait most of the time
    assert.is_true(r.use.utilisation > 0.4 and r.use.utilisation <= 1)
    assert.equal('9 threads of the target', r.use.utilisation_basis)
    assert.is_true(r.use.saturation.mean_waiters > 2)
    assert.is_true(r.use.saturation.max_waiters >= 2 and r.use.saturation.max_waiters <= 8)
    assert.equal(0, r.use.errors.total)
  end)

  it('attaches the waiting user stacks to their futex', function()
    local r = lock.analyse(decoded(), rec.seconds)
    local top = r.futex[1]
    assert.is_true(#top.stacks >= 1)
    local s = top.stacks[1]
    assert.is_true(#s.addrs >= 1)
    assert.equal('number', type(s.addrs[1]))   -- user addresses are exact numbers
    assert.is_true(s.count <= top.count)
    -- without a thread count the basis is the threads seen waiting
    assert.matches('threads seen waiting$', r.use.utilisation_basis)
  end)

  it('puts the wake side on its futex: the releasing threads and their call site', function()
    local d = decoded()
    local r = lock.analyse(d, rec.seconds, 9)
    local top = r.futex[1]
    -- every recorded wake is on the one contended mutex, by workload threads
    assert.equal(d.counters.futex_wakes, r.futex_wakes)
    assert.equal(r.futex_wakes, top.wakes)
    assert.is_true(top.wakes > 50)
    local waiting = {}
    for _, t in ipairs(r.threads) do waiting[t.pid] = true end
    local sum_w = 0
    for i, w in ipairs(top.wakers) do
      assert.equal(rec.pid, w.tgid)
      assert.equal('mutex_contentio', w.comm)
      assert.is_true(waiting[w.pid], 'waker ' .. w.pid .. ' is one of the waiting threads')
      if i > 1 then assert.is_true(top.wakers[i - 1].count >= w.count) end
      sum_w = sum_w + w.count
    end
    assert.equal(top.wakes, sum_w)
    assert.is_true(#top.wakers >= 7)
    -- one call site (worker's pthread_mutex_unlock), shared by the threads;
    -- its caller is a return address past the C library
    assert.equal(1, #top.wake_sites)
    local site = top.wake_sites[1]
    assert.equal(top.wakes, site.count)
    assert.equal(#top.wakers, site.threads)
    assert.equal('number', type(site.caller))
    assert.is_true(#site.addrs >= 1)
    assert.equal('number', type(top.stacks[1].caller))   -- the waiters' caller too
  end)

  it('gives the wait-time p50 and p99 from the histogram', function()
    local r = lock.analyse(decoded(), rec.seconds, 9)
    local f = r.futex[1]
    local hist = require('perf_manual.hist')
    local b = hist.log2_buckets(f.slots)
    -- p50 lies in the bucket holding the middle wait, p99 at or above it,
    -- and neither above the longest wait
    local half, seen, mid = f.count / 2, 0, nil
    for _, x in ipairs(b) do seen = seen + x.count; if not mid and seen >= half then mid = x end end
    assert.is_true(f.p50_us >= mid.lo and f.p50_us <= mid.hi + 1, f.p50_us .. ' in ' .. mid.lo .. '..' .. mid.hi)
    assert.is_true(f.p99_us >= f.p50_us)
    assert.is_true(f.p99_us <= f.max_ns / 1e3 + 1)
  end)

  it('names a lock by symbol, or by its mapping', function()
    assert.equal('g_lock (app .bss)', lock.lock_name { uaddr = 1, symbol = 'g_lock', mapping = '/usr/bin/app',
      section = '.bss' })
    assert.equal('tbl+0x8 (app .data)',
      lock.lock_name { uaddr = 1, symbol = 'tbl', symbol_offset = 8, mapping = '/usr/bin/app', section = '.data' })
    assert.equal('heap object 0x55d0 in [heap]', lock.lock_name { uaddr = 0x55d0, mapping = '[heap]' })
    assert.equal('futex 0x7f00 in [anon]', lock.lock_name { uaddr = 0x7f00, mapping = '[anon]' })
    assert.equal('futex 0x7f00', lock.lock_name { uaddr = 0x7f00 })
  end)

  it('counts futex errors from the outcome table', function()
    local f = decoded().futexes[1]
    f.results.etimedout, f.results.edeadlk, f.results.eagain = 3, 1, 5
    local r = lock.analyse({ futexes = { f } }, 1)
    assert.equal(4, r.use.errors.total)   -- EAGAIN is not an error
    assert.equal(3, r.use.errors.by_kind.etimedout)
    assert.equal(1, r.use.errors.by_kind.edeadlk)
  end)

  it('says nothing is measured on an empty interval', function()
    local r = lock.analyse({}, 0)
    assert.is_nil(r.use.utilisation)
    assert.is_nil(r.use.saturation.mean_waiters)
    assert.equal(0, #r.futex)
  end)

  it('keeps kernel lock addresses exact', function()
    local klocks = decoded().klocks
    assert.is_true(#klocks > 0)
    for _, k in ipairs(klocks) do
      assert.matches('^0xffff%x+$', k.addr)
      assert.equal(18, #k.addr)
      assert.equal(k.count, sum(k.results))
    end
    assert.equal('0xffffffff830f3000', lock.hex('0xffffffff830f3000'))
    assert.equal('0x7f00', lock.hex(0x7f00))
  end)

  it('names kernel lock kinds from the contention flags', function()
    local cases = {
      { 1, 'spinlock' }, { 32, 'mutex' }, { 33, 'mutex:spin' }, { 2, 'rwsem:read' }, { 4, 'rwsem:write' },
      { 1 + 2, 'rwlock:read' }, { 16 + 4, 'percpu-rwsem:write' }, { 8, 'rtmutex' }, { 32 + 8, 'rtmutex' },
      { 0, 'lock' },
    }
    for _, c in ipairs(cases) do assert.equal(c[2], lock.lock_kind(c[1]), 'flags ' .. c[1]) end
  end)

  it('plans attach sets from the tracepoints the kernel has', function()
    local function kernel(have)
      return function(tps)
        for _, tp in ipairs(tps) do if not have[tp] then return false, tp:gsub('/', ':', 1) end end
        return true
      end
    end
    local all = kernel({ ['syscalls/sys_enter_futex'] = true, ['syscalls/sys_exit_futex'] = true,
      ['raw_syscalls/sys_enter'] = true, ['raw_syscalls/sys_exit'] = true,
      ['lock/contention_begin'] = true, ['lock/contention_end'] = true })
    local v, notes = lock.plan(true, true, all)
    assert.equal(4, #v)
    assert.equal('tp (futex) + tp_btf (kernel locks)', v[1].name)
    assert.same({ 'futex_enter_tp', 'futex_exit_tp', 'klock_begin_btf', 'klock_end_btf' }, v[1].progs)
    assert.equal('raw_tp (futex) + raw_tp (kernel locks)', v[4].name)
    assert.same({}, notes)

    -- no per-syscall tracepoints and no lock tracepoints: raw_syscalls only
    v, notes = lock.plan(true, true, kernel({ ['raw_syscalls/sys_enter'] = true, ['raw_syscalls/sys_exit'] = true }))
    assert.equal(1, #v)
    assert.equal('raw_tp (futex)', v[1].name)
    assert.same({ 'unavailable on this kernel: lock:contention_begin (kernel lock contention)' }, notes)

    v, notes = lock.plan(true, false, kernel({}))
    assert.equal(0, #v)
    assert.same({ 'unavailable on this kernel: syscalls:sys_enter_futex (futex waits)' }, notes)

    v = lock.plan(false, true, all)
    assert.equal(2, #v)
    assert.equal('tp_btf (kernel locks)', v[1].name)
    -- with the cut-down BTF, raw_tp comes first: it needs no full kernel BTF
    v = lock.plan(true, true, all, true)
    assert.equal('tp (futex) + raw_tp (kernel locks)', v[1].name)
    assert.equal('tp (futex) + tp_btf (kernel locks)', v[2].name)
  end)

  it('renders the tables, the busiest futex histogram and the USE Mutex row', function()
    local r = lock.analyse(decoded(), rec.seconds, 9)
    local text = require('perf_manual.report.tracers').render('lock', r)
    assert.matches('futex waits by address:', text)
    assert.matches('futex waits by thread:', text)
    assert.matches(string.format('futex 0x%x %%(pid %d%%): wait time', r.futex[1].uaddr, rec.pid), text)
    assert.matches('waiting stack #1', text)
    assert.matches('USE Mutex: utilisation %d+%.%d%% of thread time waiting %(9 threads of the target%)', text)
    local j = util.json_encode(lock.to_json(r))
    assert.matches('"futex":%[{', j)
    assert.matches('"notes":%[%]', j)
    assert.matches('"wakers":%[{', j)
    assert.matches('"wake_sites":%[{', j)
  end)

  it('rejects a key of the wrong size', function()
    local ok, err = pcall(lock.decode_futex, 'abc', string.rep('\0', lock.sizeof().stat))
    assert.is_false(ok)
    assert.matches('lock: bad futex key size 3', err)
  end)
end)
