local lockhold = require('perf_manual.tracers.lockhold')
local ffi = require('ffi')

-- map entries as the kernel hands them over: raw bytes of the C structs
local function lock_entry(addr, tgid, kind, holds, slots, max_ns, sampled)
  local k = ffi.new('struct pm_lockhold_key', { addr = addr, tgid = tgid, kind = kind })
  local v = ffi.new('struct pm_lockhold_stat')
  local total = 0
  for slot, n in pairs(slots) do
    v.slots[slot] = n
    -- a hold of 2^slot us, in ns
    total = total + n * 2 ^ slot * 1000
  end
  v.count, v.total_ns, v.max_ns, v.sampled = holds, total, max_ns, sampled or holds
  return ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v)), total
end

local function site_entry(addr, tgid, stack_id, ip, count, total_ns)
  local k = ffi.new('struct pm_lockhold_site_key', { addr = addr, tgid = tgid, stack_id = stack_id, ip = ip })
  local v = ffi.new('struct pm_lockhold_site', { count = count, total_ns = total_ns })
  return ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v))
end

describe('lockhold tracer', function()
  it('decodes the lock and site maps', function()
    local kb, vb, total = lock_entry(0x55d1c4a040c0, 42, 2, 6, { [6] = 4, [7] = 2 }, 150000, 3)
    local l = lockhold.decode_lock(kb, vb)
    assert.equal(0x55d1c4a040c0, l.addr)
    assert.equal(42, l.tgid)
    assert.equal('write', l.kind)
    assert.equal(6, l.count)
    assert.equal(3, l.sampled)
    assert.equal(total, l.total_ns)
    assert.equal(4, l.slots[7])
    assert.equal(2, l.slots[8])
    assert.error(function() lockhold.decode_lock(kb, vb .. 'x') end)
    local s = lockhold.decode_site(site_entry(0x55d1c4a040c0, 42, -14, 0x55d1c4a0126a, 5, 900))
    assert.same({ addr = 0x55d1c4a040c0, tgid = 42, stack_id = -14, ip = 0x55d1c4a0126a, count = 5, total_ns = 900 }, s)
  end)

  it('merges the ways a lock is taken and gives its held share of the window', function()
    local a = 0x7f0000001000
    local k1, v1 = lock_entry(a, 7, 1, 100, { [6] = 100 }, 70000)      -- read holds, 64 us each
    local k2, v2 = lock_entry(a, 7, 2, 10, { [9] = 10 }, 600000)       -- write holds, 512 us each
    local k3, v3 = lock_entry(0x7f0000002000, 7, 0, 1, { [3] = 1 }, 8000)
    local d = {
      locks = { lockhold.decode_lock(k1, v1), lockhold.decode_lock(k2, v2), lockhold.decode_lock(k3, v3) },
      sites = { lockhold.decode_site(site_entry(a, 7, 3, 1, 100, 6.4e6)),
                lockhold.decode_site(site_entry(a, 7, 4, 2, 10, 5.12e6)),
                lockhold.decode_site(site_entry(0x7f0000009000, 7, 5, 3, 1, 1)) }, -- no such lock: dropped
      counters = { calls = 120, sampled = 111 },
    }
    local r = lockhold.analyse(d, 2)
    assert.equal(2, #r.locks)
    local l = r.locks[1]
    assert.equal(a, l.addr)
    assert.equal('read+write', l.kind)
    assert.equal(110, l.count)
    assert.equal(6.4e6 + 5.12e6, l.total_ns)
    assert.near((6.4e6 + 5.12e6) / 2e9, l.share, 1e-12)
    assert.equal(600000, l.max_ns)
    assert.equal(100, l.slots[7])
    assert.equal(10, l.slots[10])
    -- p50 in the 64-127 us bucket, p99 in the 512-1023 us one
    assert.is_true(l.p50_us >= 64 and l.p50_us < 128, 'p50 ' .. l.p50_us)
    assert.is_true(l.p99_us >= 512 and l.p99_us <= 600, 'p99 ' .. l.p99_us)
    assert.equal(2, #l.sites)
    assert.equal(3, l.sites[1].stack_id)
    assert.near(6.4e6 / 11.52e6, l.sites[1].share, 1e-12)
    assert.equal(120, r.calls)
    assert.equal(111, r.sampled)
    assert.same({}, lockhold.analyse({}, 0).locks)
  end)

  it('counts a hold still in progress up to the read, from the start of the interval', function()
    local k = ffi.new('struct pm_lockhold_held_key', { addr = 0x1000, tid = 9 })
    local v = ffi.new('struct pm_lockhold_held', { ts = 5e9, ip = 0x42, stack_id = 3, kind = 0, weight = 4 })
    local kb, vb = ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v))
    local l, site = lockhold.decode_open(kb, vb, 7, 8e9, 6e9)
    assert.equal(2e9, l.max_ns)
    assert.equal(8e9, l.total_ns)
    assert.equal(4, l.open)
    assert.equal(0, l.count)
    assert.equal(7, site.tgid)
    assert.equal(8e9, site.total_ns)
    -- merged with the closed holds of the same lock and stack
    local ck, cv = lock_entry(0x1000, 7, 0, 2, { [10] = 2 }, 2e6)
    local r = lockhold.analyse({ locks = { lockhold.decode_lock(ck, cv), l },
      sites = { lockhold.decode_site(site_entry(0x1000, 7, 3, 0x42, 2, 1e6)), site } }, 10)
    assert.equal(1, #r.locks)
    assert.equal('mutex', r.locks[1].kind)
    assert.equal(4, r.locks[1].open)
    assert.equal(2, r.locks[1].count)
    assert.equal(1, #r.locks[1].sites)
    assert.equal(8e9 + 1e6, r.locks[1].sites[1].total_ns)
    assert.equal(2e9, r.locks[1].max_ns)
    -- started after since: from its own start
    assert.equal(3e9, lockhold.decode_open(kb, vb, 7, 8e9, 1e9).max_ns)
  end)

  it('names the holder: the heaviest function outside the C library, summed over its stacks', function()
    local a = 0x55d1c4a040c0
    local r = lockhold.analyse({
      locks = { lockhold.decode_lock(lock_entry(a, 7, 0, 30, { [6] = 30 }, 70000)) },
      sites = { lockhold.decode_site(site_entry(a, 7, 1, 11, 10, 400)),
                lockhold.decode_site(site_entry(a, 7, 2, 12, 10, 300)),
                lockhold.decode_site(site_entry(a, 7, -14, 13, 10, 500)) },
    }, 1)
    local stacks = { [1] = { 11, 100 }, [2] = { 12, 200 } }
    local names = { [11] = 'flush_cache', [12] = 'flush_cache', [13] = 'pthread_mutex_lock', [100] = 'main',
                    [200] = 'worker' }
    local resolver = { user = function(_, _, addrs)
      local out = {}
      for i, x in ipairs(addrs) do out[i] = names[x] end
      return out
    end }
    lockhold.name_all(r, function(id) return stacks[id] end, resolver)
    local l = r.locks[1]
    -- stack -14 (not walked) falls back to the return address: the C library, no holder
    assert.is_nil(l.sites[1].holder)
    assert.same({ 13 }, l.sites[1].addrs)
    assert.equal('flush_cache', l.holder)
    assert.near(700 / l.total_ns, l.holder_share, 1e-12)
    assert.equal('flush_cache', lockhold.sentence({ share = 0.824, holder = 'flush_cache', addr = a }):match('`(.-)`'))
    assert.equal('g_lock (app .bss) held 82% of the time by `flush_cache`',
      lockhold.sentence({ share = 0.824, holder = 'flush_cache', name = 'g_lock (app .bss)', addr = a }))
    -- read holds overlap: the sentence never says more than 100%
    assert.equal('0x55d1c4a040c0 held 100% of the time', lockhold.sentence({ share = 1.7, addr = a }))
    assert.is_nil(lockhold.sentence(nil))
  end)

  it('renders the table, the histogram and the holding stacks', function()
    local a = 0x55d1c4a040c0
    local r = lockhold.analyse({
      locks = { lockhold.decode_lock(lock_entry(a, 7, 0, 30, { [6] = 30 }, 70000, 8)) },
      sites = { lockhold.decode_site(site_entry(a, 7, 1, 11, 30, 1920000)) },
      counters = { calls = 32, sampled = 8 },
    }, 1)
    r.locks[1].holder, r.locks[1].name = 'critical_section', 'g_lock (app .bss)'
    r.locks[1].sites[1].addrs, r.locks[1].sites[1].frames = { 11 }, { 'critical_section' }
    r.sample_every, r.missing, r.quality = 4, { 'pthread_rwlock_rdlock' }, {}
    local text = require('perf_manual.report.tracers').render('lockhold', r, {})
    assert.matches('not traced %(not in this C library%): pthread_rwlock_rdlock', text)
    assert.matches('sampled: 8 of 32 lock calls measured %(now 1 in 4%)', text)
    assert.matches('0x55d1c4a040c0%s+mutex%s+30%s+0%s+0%.2%%', text)
    assert.matches('critical_section%s+g_lock %(app %.bss%)', text)
    assert.matches('64 %-> 127%s+: 30', text)
    assert.matches('holding stack #1: 100%.0%% of the held time, 30 holds', text)
    local j = lockhold.to_json(r)
    assert.equal('0x55d1c4a040c0', j.locks[1].addr)
    assert.equal('critical_section', j.locks[1].holder)
  end)

  it('the use rules add the holder to the Mutex row', function()
    local use = require('perf_manual.analyzers.use')
    local row = use.rules.lock({ lock = { source = 'bpf', attach = 'tp', futex_share_pct = 60, threads = 8,
      waiters_avg = 5, waiters_max = 7, hold = { sentence = 'g_lock (app .bss) held 82% of the time by `worker`' } },
      task = { cpu_pct = 100 } }, use.thresholds)
    assert.matches('; g_lock %(app %.bss%) held 82%% of the time by `worker`$', row.utilization.text)
    assert.matches('lockhold tracer', row.utilization.source)
  end)

  it('samples 4x less when over budget, and detaches when the call rate alone is too high', function()
    local calls, updates = 1000, {}
    local function counters()
      local k, v = ffi.new('uint32_t[1]', 0), ffi.new('uint64_t[1]', calls)
      return { { key = ffi.string(k, 4), value = ffi.string(v, 8) } }
    end
    local obj = { map = function(_, name)
      if name == 'counters' then return { read = counters } end
      return { update = function(_, key, value)
        updates[#updates + 1] = { key, ffi.cast('const uint64_t *', value)[0] }
      end }
    end }
    local q = { elapsed_s = 2, bpf_run_time_ns = 0.2e9 } -- 10% of a CPU
    local t = setmetatable({ obj = obj, sample_every = 1, quality = function() return q end }, lockhold.Hold)
    assert.is_false(t:over_budget(5))
    assert.equal(4, t.sample_every)
    assert.equal(4, tonumber(updates[1][2]))
    assert.matches('after 2%.0 s: 10%.0%% of a CPU, now measuring 1 lock call in 4', t.sampling_notes[1])
    -- judged on the cost since the change: 0.01 s more over 2 s is 0.5%
    q = { elapsed_s = 4, bpf_run_time_ns = 0.21e9 }
    assert.is_false(t:over_budget(5))
    assert.equal(4, t.sample_every)
    calls = 4 * 30000
    local over, why = t:over_budget(5)
    assert.is_true(over)
    assert.matches('makes 30000 lock calls/s', why)
  end)

  it('names a holder stack walked from CFI by its hash, and keeps stacks of different hashes apart', function()
    local a = 0x55d1c4a040c0
    local function walked(hash, ip, total_ns)
      local k = ffi.new('struct pm_lockhold_site_key', { addr = a, tgid = 7, stack_id = -2, ip = ip, user_hash = hash })
      local v = ffi.new('struct pm_lockhold_site', { count = 1, total_ns = total_ns })
      return lockhold.decode_site(ffi.string(k, ffi.sizeof(k)), ffi.string(v, ffi.sizeof(v)))
    end
    local r = lockhold.analyse({
      locks = { lockhold.decode_lock(lock_entry(a, 7, 0, 2, { [6] = 2 }, 70000)) },
      sites = { walked(0x1111, 21, 400), walked(0x2222, 21, 300) },
    }, 1)
    local l = r.locks[1]
    assert.equal(2, #l.sites)
    local by_hash = { [ffi.string(ffi.new('uint64_t[1]', 0x1111), 8)] = { 21, 300 },
                      [ffi.string(ffi.new('uint64_t[1]', 0x2222), 8)] = { 21, 400 } }
    local names = { [21] = 'pthread_mutex_lock', [300] = 'worker', [400] = 'flusher' }
    local resolver = { user = function(_, _, addrs)
      local out = {}
      for i, x in ipairs(addrs) do out[i] = names[x] end
      return out
    end }
    lockhold.name_all(r, function(id, site)
      assert.equal(-2, id)
      return by_hash[site.user_hash]
    end, resolver)
    assert.same({ 'pthread_mutex_lock', 'worker' }, l.sites[1].frames)
    assert.equal('worker', l.sites[1].holder)
    assert.equal('flusher', l.sites[2].holder)
    assert.equal('worker', l.holder)
  end)

  it('decodes the maps with the layout the BPF object was built with', function()
    if not test_helpers.need_root() then return end
    local bpf = require('perf_manual.bpf')
    local sz = lockhold.sizeof()
    assert.equal(bpf.btf_type('lockhold', 'struct pm_lockhold_key').size, sz.key)
    assert.equal(bpf.btf_type('lockhold', 'struct pm_lockhold_stat').size, sz.stat)
    assert.equal(bpf.btf_type('lockhold', 'struct pm_lockhold_site_key').size, sz.site_key)
    assert.equal(bpf.btf_type('lockhold', 'struct pm_lockhold_site').size, sz.site)
    assert.equal(bpf.btf_type('lockhold', 'struct held_key').size, sz.held_key)
    assert.equal(bpf.btf_type('lockhold', 'struct held').size, sz.held)
  end)
end)
