-- perf_manual.tracers.offcpu: decoding and stack resolution on bytes recorded
-- from the real offcpu object (tests/fixtures/bpfmaps/offcpu.json:
-- offcpu_blocker, whose main thread blocks in main -> blocker_wait ->
-- blocker_read every 20 ms; the recording keeps its maps and symbols).
local off = require('perf_manual.tracers.offcpu')
local bpf = require('perf_manual.bpf')
local util = require('perf_manual.util')

local function unhex(h) return (h:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) end
local rec = assert(util.json_decode(fixture('bpfmaps/offcpu.json')))

local function entries()
  local out = {}
  for _, e in ipairs(rec.maps.blocked) do out[#out + 1] = off.decode(unhex(e.key), unhex(e.value)) end
  return out
end

local function recorded_stack(id)
  local hx = rec.stacks[tostring(id)]
  return hx and off.unpack(unhex(hx)) or nil
end

-- name of the workload's function holding a user address, from the
-- recorded /proc/PID/maps and `nm` symbols (PIE: link address = addr - base)
local function workload_symbol(addr)
  local base
  for line in rec.maps_text:gmatch('[^\n]+') do
    local s, offset, path = line:match('^(%x+)%-%x+ %S+ (%x+) %S+ %d+%s+(%S+)$')
    if path and path:match('offcpu_blocker$') and tonumber(offset, 16) == 0 then base = tonumber(s, 16) end
  end
  assert(base, 'no mapping of the workload in the recording')
  local vaddr, best, best_at = addr - base, nil, -1
  for name, at in pairs(rec.symbols) do
    if at <= vaddr and at > best_at then best, best_at = name, at end
  end
  return best
end

describe('perf_manual.tracers.offcpu', function()
  it('mirrors the structs of bpf/offcpu.h as the object was compiled', function()
    local sz = off.sizeof()
    assert.equal(assert(bpf.btf_type('offcpu', 'struct pm_offcpu_key')).size, sz.key)
    local v = assert(bpf.btf_type('offcpu', 'struct pm_offcpu_val'))
    assert.equal(v.size, sz.val)
    assert.equal(32, v.members.comm)
  end)

  it('decodes recorded blocked time of the workload only, in microseconds', function()
    local es = entries()
    assert.is_true(#es >= 1)
    local main
    for _, e in ipairs(es) do
      assert.equal(rec.pid, e.tgid)
      assert.equal('offcpu_blocker', e.comm)
      assert.is_true(e.total_us >= e.max_us and e.max_us * e.count >= e.total_us)
      assert.is_true(e.max_us >= 100)        -- min_us = 100 at capture time
      if e.pid == rec.pid then main = e end
    end
    assert.truthy(main, 'the main thread did not block')
    -- 0.5 s of 20 ms blocks: most of it off-CPU
    assert.is_true(main.total_us > 200000, 'main blocked ' .. main.total_us .. ' us')
    assert.equal('S', main.state)
  end)

  it('resolves stack ids to address lists: kernel as exact hex, user as numbers', function()
    local es, total = off.resolve(entries(), recorded_stack)
    local sum = 0
    for _, e in ipairs(es) do sum = sum + e.total_us end
    assert.equal(sum, total)
    for i = 2, #es do assert.is_true(es[i - 1].total_us >= es[i].total_us) end
    local main
    for _, e in ipairs(es) do if e.pid == rec.pid then main = e end end
    assert.is_true(#main.kern_stack >= 3)
    for _, a in ipairs(main.kern_stack) do assert.matches('^0xffffffff%x+$', a) end
    assert.is_true(#main.user_stack >= 3)
    for _, a in ipairs(main.user_stack) do assert.equal('number', type(a)) end
  end)

  it('the blocked user stack walks blocker_read -> blocker_wait -> main', function()
    local es = off.resolve(entries(), recorded_stack)
    local main
    for _, e in ipairs(es) do if e.pid == rec.pid then main = e end end
    local names = {}
    for i = 1, 3 do names[i] = workload_symbol(main.user_stack[i]) end
    assert.same({ 'blocker_read', 'blocker_wait', 'main' }, names)
  end)

  it('unpacks a stack map value up to the first zero', function()
    local ffi = require('ffi')
    local buf = ffi.new('uint64_t[4]', { 0x401000, 0xffffffff81000130ULL, 0, 0x5 })
    local addrs = off.unpack(ffi.string(buf, 32))
    assert.same({ 0x401000, '0xffffffff81000130' }, addrs)
    assert.same({}, off.unpack(''))
  end)

  it('keeps a missing stack missing', function()
    local e = entries()[1]
    e.kern_stack_id, e.user_stack_id = -14, 99999
    local es = off.resolve({ e }, function() return nil end)
    assert.is_nil(es[1].kern_stack)
    assert.is_nil(es[1].user_stack)
  end)

  it('sums blocked time per task', function()
    local es = entries()
    local dup = {}
    for k, v in pairs(es[1]) do dup[k] = v end
    es[#es + 1] = dup
    local want_us, want_n = {}, {}
    for _, e in ipairs(es) do
      want_us[e.pid] = (want_us[e.pid] or 0) + e.total_us
      want_n[e.pid] = (want_n[e.pid] or 0) + e.count
    end
    local tasks = off.by_task(es)
    local n = 0
    for _ in pairs(want_us) do n = n + 1 end
    assert.equal(n, #tasks)
    for _, t in ipairs(tasks) do
      assert.equal(want_us[t.pid], t.total_us)
      assert.equal(want_n[t.pid], t.count)
    end
    for i = 2, #tasks do assert.is_true(tasks[i - 1].total_us >= tasks[i].total_us) end
  end)

  it('names task states', function()
    local cases = { { 0, 'R' }, { 1, 'S' }, { 2, 'D' }, { 0x402, 'DI' }, { 4, 'T' }, { 0x1000, '0x1000' } }
    for _, c in ipairs(cases) do assert.equal(c[2], off.state_name(c[1])) end
  end)

  it('renders tasks and raw stacks', function()
    local es, total = off.resolve(entries(), recorded_stack)
    local res = { entries = es, tasks = off.by_task(es), total_us = total, min_us = 100 }
    local render = require('perf_manual.report.tracers').render
    local text = render('offcpu', res)
    assert.matches('PID%s+TID%s+COMM%s+BLOCKS%s+OFF%-CPU %(ms%)', text)
    assert.matches('offcpu_blocker %(pid ' .. rec.pid, text)
    assert.matches('0xffffffff%x+ %[k%]', text)
    assert.equal('no task blocked longer than 100 us\n', render('offcpu', { entries = {}, tasks = {}, min_us = 100 }))
    local j = util.json_encode(off.to_json(res))
    assert.matches('"user_stack":%[%d', j)
  end)
end)
