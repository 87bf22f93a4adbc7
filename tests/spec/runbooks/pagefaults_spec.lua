-- pagefaults on recordings of real runs (tests/fixtures/runbooks/pagefaults/,
-- made with `pagefaults --save` on build/workloads): fault_touch re-reading
-- an 8 MiB mapped file and rewriting 16 MiB of anonymous memory (touch),
-- the same with a 1 MiB file and 64 MiB of memory (anon), and sleeper (quiet).
local h = test_helpers
local util = require('perf_manual.util')
local pf = require('perf_manual.runbooks.pagefaults')
local DIR = h.root .. '/tests/fixtures/runbooks/pagefaults/'

local R = require('spec.runbooks.replay')
local function replay(name, extra) return R.run('pagefaults', name, extra) end

local function kinds(doc)
  local k = {}
  for _, f in ipairs(doc.findings) do k[f.kind] = f.severity end
  return k
end

describe('pagefaults (replay)', function()
  it('names the mapped file behind the major faults and the stack that reads it', function()
    local doc = assert(util.json_decode(replay('touch', '--json')))
    assert.is_true(doc.replayed)
    assert.equal('high', kinds(doc).major)
    assert.is_true(doc.major_rate > 1000)
    local rec = assert(util.json_decode(h.fixture('runbooks/pagefaults/touch/pagefaults.json')))
    local major = 0
    for _, t in ipairs(rec.threads) do major = major + t.major end
    assert.equal(major, doc.major)
    assert.near(major / rec.window_s, doc.major_rate, doc.major_rate * 1e-4)
    -- the file mapping takes reads only, the anonymous one writes only
    local file, anon
    for _, m in ipairs(doc.mappings) do
      if m.path:match('/fault_touch%.%d+$') then file = m elseif m.path == '[anon]' then anon = m end
    end
    assert.is_table(file)
    assert.equal(file.count, file.read)
    assert.equal(anon.count, anon.write)
    local frames = {}
    for _, s in ipairs(doc.stacks) do frames[s.frames[1]] = s.count end
    assert.equal(file.count, frames.read_file)
    assert.equal(anon.count, frames.write_anon)
    -- perf recorded (nearly) every fault /proc counted
    assert.is_true(doc.coverage > 0.9 and doc.coverage < 1.1, tostring(doc.coverage))
  end)

  it('calls 64 MiB of memory mapped fresh each pass a minor-fault problem from write_anon', function()
    local out = replay('anon')
    assert.matches('\nmedium: %d+ minor faults/s: memory is mapped in fresh again and again, most from write_anon, '
      .. 'in %[anon%]', out)
    assert.matches('%d+%.%d%%  write_anon <%- ', out)
  end)

  it('finds nothing on the sleeper, and thresholds are the user\'s', function()
    local doc = assert(util.json_decode(replay('quiet', '--json')))
    assert.same({ none = 'ok' }, kinds(doc))
    doc = assert(util.json_decode(replay('touch', '--json --major-rate 1e9 --minor-rate 1e9')))
    assert.same({ none = 'ok' }, kinds(doc))
  end)

  it('refuses bad input in one line', function()
    local _, err, st = h.pm('pagefaults --replay ' .. DIR)
    assert.equal(2, st)
    assert.matches('^perf_manual: pagefaults: not in the recorded data: ', err)
    _, err, st = h.pm('pagefaults')
    assert.equal(2, st)
    assert.matches('target', err)
    local out
    out, _, st = h.pm('pagefaults --help')
    assert.equal(0, st)
    assert.matches('exceptions:page_fault_user', out .. '')
  end)
end)

describe('perf_manual.runbooks.pagefaults', function()
  it('reads perf script output of the fault tracepoint (real, fault_touch)', function()
    local faults = pf.parse_script(h.fixture('runbooks/pagefaults/script.txt'))
    assert.is_true(#faults >= 5)
    local f = faults[1]
    assert.equal('fault_touch', f.comm)
    assert.equal(f.pid, f.tid)
    assert.same({ 'read_file', '__libc_start_call_main' }, f.frames)
    assert.equal('read', pf.access(f.error_code))
    assert.equal('write', pf.access(0x6))
    assert.equal('exec', pf.access(0x14))
  end)

  it('maps addresses to the mappings of /proc/PID/maps', function()
    local maps = pf.parse_maps('7f0000000000-7f0000001000 r--s 00000000 fe:00 1234   /var/tmp/x\n'
      .. '7f0000002000-7f0000004000 rw-p 00000000 00:00 0 \n'
      .. '55d000000000-55d000021000 rw-p 00000000 00:00 0      [heap]\n')
    assert.equal('[heap]', pf.find_map(maps, 0x55d000000010).path)
    assert.equal('/var/tmp/x', pf.find_map(maps, 0x7f0000000fff).path)
    assert.is_nil(pf.find_map(maps, 0x7f0000001000))
    assert.equal('[anon]', pf.find_map(maps, 0x7f0000003000).path)
    local stacks, mappings = pf.aggregate({
      { pid = 1, comm = 'a', address = 0x7f0000000010, error_code = 4, frames = { 'f' } },
      { pid = 1, comm = 'a', address = 0x7f0000003000, error_code = 6, frames = { 'g' } },
      { pid = 1, comm = 'a', address = 0x7f0000003008, error_code = 6, frames = { 'g' } },
    }, { [1] = maps }, 1)
    assert.same({ 'g' }, stacks[1].frames)
    assert.equal(1, stacks[2].count)
    assert.same({ '[other stacks]' }, stacks[2].frames)
    assert.equal('[anon]', mappings[1].path)
    assert.equal(2, mappings[1].write)
  end)

  it('reads minflt and majflt from a stat line whose name has spaces and parentheses', function()
    local s = pf.parse_stat('42 (a (b) c) S 1 42 42 0 -1 4194560 1234 0 56 0 1 2 0 0 20 0 1 0 100 1000 10')
    assert.equal('a (b) c', s.comm)
    assert.equal(1234, s.minflt)
    assert.equal(56, s.majflt)
  end)
end)
