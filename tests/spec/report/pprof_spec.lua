-- profile.proto written and read back, gzip through zlib, and a profile Go's
-- runtime/pprof wrote (tests/fixtures/pprof/go_cpu.pprof, made by burn.go
-- there: main -> alpha -> beta, main -> gamma, main -> delta).
local pprof = require('perf_manual.report.pprof')
local gzip = require('perf_manual.gzip')
local profilers = require('perf_manual.profilers')

-- an on-CPU profile of two processes, with addresses, a kernel frame
-- above 2^53 and a shared library, as the BPF profiler returns it
local function oncpu()
  return profilers.new {
    kind = 'oncpu', source = 'bpf', unit = 'samples', freq = 99, duration = 2.5,
    stacks = {
      { frames = { 'app', 'main', 'work', 'leaf' }, count = 30, pid = 42,
        addrs = { nil, 0x401000, 0x401100, 0x401200 } },
      { frames = { 'app', 'main', 'other' }, count = 10, pid = 42, addrs = { nil, 0x401000, 0x401300 } },
      { frames = { 'app', 'main', 'work', 'read', 'vfs_read_[k]' }, count = 5, pid = 42,
        addrs = { nil, 0x401000, 0x401100, 0x7f0000001010, '0xffffffff81234567' } },
      -- another process with other code at the same address
      { frames = { 'tool', 'start', 'run;it' }, count = 7, pid = 7, addrs = { nil, 0x401000, 0x401200 } },
      -- no addresses (perf fallback, replay): named frames still make locations
      { frames = { 'tool', 'start', '[unknown]' }, count = 1, pid = 7 },
    },
    mappings = {
      [42] = { { start = 0x400000, stop = 0x500000, offset = 0, path = '/usr/bin/app', build_id = 'aa11' },
               { start = 0x7f0000000000, stop = 0x7f0000100000, offset = 0x1000, path = '/lib/libc.so.6',
                 build_id = 'cc33' } },
      [7] = { { start = 0x400000, stop = 0x410000, offset = 0, path = '/usr/bin/tool', build_id = 'bb22' } },
    },
  }
end

local function lines_of(text)
  local t = {}
  for l in text:gmatch('[^\n]+') do t[#t + 1] = l end
  table.sort(t)
  return t
end

describe('perf_manual.report.pprof', function()
  it('writes varints as protobuf does, kernel addresses above 2^53 exactly', function()
    assert.equal('\0', pprof._varint(0))
    assert.equal('\127', pprof._varint(127))
    assert.equal('\172\2', pprof._varint(300))  -- the protobuf documentation's example
    assert.equal('\255\255\255\255\255\255\255\15', pprof._varint(2 ^ 53 - 1))
    local ffi = require('ffi')
    assert.equal('\255\255\255\255\255\255\255\255\255\1', pprof._varint(ffi.cast('uint64_t', ffi.cast('int64_t', -1))))
    assert.has_error(function() pprof._varint(-1) end)
  end)

  it('round-trips an on-CPU profile: the folded stacks, types, period and duration come back', function()
    local p = oncpu()
    local bytes = pprof.encode(p, { time_nanos = 1700000000 * 1e9, comments = { 'made by a spec' } })
    local d = assert(pprof.decode(bytes))
    assert.same({ { type = 'samples', unit = 'count' }, { type = 'cpu', unit = 'nanoseconds' } }, d.sample_type)
    assert.same({ type = 'cpu', unit = 'nanoseconds' }, d.period_type)
    assert.equal(10101010, d.period)  -- 1e9 / 99, rounded
    assert.equal(2.5e9, d.duration_nanos)
    assert.equal(1700000000 * 1e9, d.time_nanos)
    assert.same({ 'made by a spec' }, d.comments)
    assert.equal('samples', d.default_sample_type)
    -- the default type gives back exactly our folded stacks (';' in a name made safe)
    local text, info = pprof.to_folded(d)
    assert.same(lines_of(profilers.folded(p)), lines_of(text))
    assert.same({ sample_type = 'samples', unit = 'count', total = 53, samples = 5 }, info)
    -- CPU time is samples x period
    local cpu = assert(pprof.to_folded(d, 'cpu'))
    assert.matches('app;main;work;leaf 303030300\n', cpu, 1, true)
  end)

  it('keeps a string table that starts with "" and holds each string once', function()
    -- read the raw string table: field 6 of the message
    local bytes = pprof.encode(oncpu())
    local seen, first = {}, nil
    local pos = 1
    while pos <= #bytes do
      local k, v = bytes:byte(pos), 0
      pos = pos + 1
      local wire = k % 8
      assert.is_true(k < 128, 'one-byte keys only in this message')
      if wire == 0 then
        repeat local c = bytes:byte(pos); pos = pos + 1 until c < 128
      else
        local mul = 1
        repeat local c = bytes:byte(pos); pos = pos + 1; v = v + (c % 128) * mul; mul = mul * 128 until c < 128
        if math.floor(k / 8) == 6 then
          local s = bytes:sub(pos, pos + v - 1)

          first = first or s
          assert.is_nil(seen[s], 'string twice: ' .. s)
          seen[s] = true
        end
        pos = pos + v
      end
    end
    assert.equal('', first)
    for _, s in ipairs({ 'samples', 'count', 'cpu', 'nanoseconds', 'comm', 'pid', 'app', 'main', 'run;it',
                         '/usr/bin/app', 'aa11', '[kernel.kallsyms]', 'vfs_read' }) do
      assert.is_true(seen[s], s)
    end
  end)

  it('gives user frames their mapping, build-id and address, kernel frames the kernel mapping', function()
    local d = assert(pprof.decode(pprof.encode(oncpu())))
    local by_name = {}
    for _, l in pairs(d.locations) do
      local fn = d.functions[l.lines[1].function_id]
      by_name[fn.name] = by_name[fn.name] or {}
      table.insert(by_name[fn.name], { address = l.address, mapping = d.mappings[l.mapping], file = fn.filename })
    end
    local leaf = by_name.leaf[1]
    assert.equal(0x401200, leaf.address)
    assert.same({ start = 0x400000, limit = 0x500000, file = '/usr/bin/app', build_id = 'aa11' }, leaf.mapping)
    assert.equal('/usr/bin/app', leaf.file)
    assert.equal('/lib/libc.so.6', by_name.read[1].mapping.file)
    assert.equal('cc33', by_name.read[1].mapping.build_id)
    assert.equal(0x1000, by_name.read[1].mapping.offset)
    -- the kernel frame: its own mapping, the _[k] suffix dropped from the name
    assert.equal('[kernel.kallsyms]', by_name.vfs_read[1].mapping.file)
    assert.is_nil(by_name['vfs_read_[k]'])
    -- same address, two processes: two locations in two mappings
    assert.equal('/usr/bin/tool', by_name['run;it'][1].mapping.file)
    assert.equal(0x401200, by_name['run;it'][1].address)
    -- a frame without an address: a location without a mapping
    assert.is_nil(by_name['[unknown]'][1].mapping)
    -- each sample says its process
    local comms = {}
    for _, s in ipairs(d.samples) do comms[s.labels.comm .. '/' .. s.labels.pid] = true end
    assert.same({ ['app/42'] = true, ['tool/7'] = true }, comms)
  end)

  it('puts the program first among the mappings (pprof\'s main binary), libraries next, the kernel last', function()
    local p = profilers.new { kind = 'offcpu', source = 'bpf', unit = 'us', duration = 1,
      stacks = { { frames = { 'app', '__libc_start_call_main', 'main', 'read', 'schedule_[k]' }, count = 9, pid = 3,
                   addrs = { nil, 0x7f0000001000, 0x401000, 0x7f0000002000, '0xffffffff81000000' } } },
      mappings = { [3] = {
        { start = 0x400000, stop = 0x500000, offset = 0, path = '/usr/bin/app', build_id = 'aa' },
        { start = 0x600000, stop = 0x700000, offset = 0, path = '/memfd:jit (deleted)' },
        { start = 0x7f0000000000, stop = 0x7f0000100000, offset = 0, path = '/lib/libc.so.6', build_id = 'cc' } } } }
    p.stacks[2] = { frames = { 'app', 'main', 'jitted' }, count = 1, pid = 3, addrs = { nil, 0x401000, 0x600010 },
                    key = 'app;main;jitted' }
    local d = assert(pprof.decode(pprof.encode(p)))
    assert.equal('/usr/bin/app', d.mappings[1].file)
    assert.equal('/lib/libc.so.6', d.mappings[2].file)
    assert.equal('/memfd:jit (deleted)', d.mappings[3].file)
    assert.equal('[kernel.kallsyms]', d.mappings[4].file)
  end)

  it('takes mappings and build-ids from a live resolver (this process, its own binary)', function()
    local sym = require('perf_manual.sym')
    local pid = require('perf_manual._c.sys').getpid()
    local f = assert(io.open('/proc/self/maps'))
    local maps = f:read('*a')
    f:close()
    -- the first file-backed executable mapping (LuaJIT's machine code is anonymous)
    local m
    for _, x in ipairs(sym.parse_maps(maps)) do
      if x.path and x.path:sub(1, 1) == '/' then m = x break end
    end
    assert.truthy(m, maps)
    local r = sym.new()
    local names = r:user(pid, { m.start + 16 })
    assert.is_string(names[1])
    local list = assert(r:mappings()[pid])
    assert.equal(1, #list)
    assert.same({ start = m.start, stop = m.stop, offset = m.offset, path = m.path,
                  build_id = assert(sym.binary(m.path)).info.build_id }, list[1])
    -- written into a profile, the build-id is the one readelf reads from the file
    local re = io.popen("readelf -n '" .. m.path .. "' 2>/dev/null")
    local notes = re:read('*a')
    re:close()
    assert.equal(assert(notes:match('Build ID: (%x+)'), notes), list[1].build_id)
  end)

  it('writes off-CPU time as off_cpu/nanoseconds, and the number of blocks when counted', function()
    local p = profilers.new { kind = 'offcpu', source = 'bpf', unit = 'us', duration = 1,
      stacks = { { frames = { 'app', 'main', 'read', 'schedule_[k]' }, count = 1500, pid = 3 } } }
    local d = assert(pprof.decode(pprof.encode(p)))
    assert.same({ { type = 'off_cpu', unit = 'nanoseconds' } }, d.sample_type)
    assert.same({ type = 'off_cpu', unit = 'nanoseconds' }, d.period_type)
    assert.equal('app;main;read;schedule_[k] 1500000\n', (pprof.to_folded(d)))
    p.stacks[1].blocks = 12
    d = assert(pprof.decode(pprof.encode(p)))
    assert.same({ { type = 'off_cpu', unit = 'nanoseconds' }, { type = 'blocks', unit = 'count' } }, d.sample_type)
    assert.equal('off_cpu', d.default_sample_type)
    assert.equal('app;main;read;schedule_[k] 1500000\n', (pprof.to_folded(d)))
    assert.equal('app;main;read;schedule_[k] 12\n', (pprof.to_folded(d, 'blocks')))
  end)

  it('names the sample types there are when asked for another', function()
    local d = assert(pprof.decode(pprof.encode(oncpu())))
    assert.same({ nil, "no sample type 'wall' (there are: samples, cpu)" }, { pprof.sample_index(d, 'wall') })
    assert.equal(2, pprof.sample_index(d, 'cpu'))
  end)

  it('reads a profile Go wrote (short lists unpacked, the last type by default)', function()
    local bytes = test_helpers.fixture('pprof/go_cpu.pprof')
    assert.is_true(gzip.is_gzip(bytes))
    assert.is_true(pprof.looks_like(bytes))
    local d = assert(pprof.decode(bytes))
    assert.same({ { type = 'samples', unit = 'count' }, { type = 'cpu', unit = 'nanoseconds' } }, d.sample_type)
    assert.equal(10000000, d.period)  -- Go samples at 100 Hz
    local text, info = pprof.to_folded(d)
    assert.equal('cpu', info.sample_type)
    local counts, cpu = {}, 0
    for line in text:gmatch('[^\n]+') do
      local stack, n = line:match('^(.*) (%d+)$')
      assert.matches('^runtime%.main;main%.main;', stack)
      counts[stack] = tonumber(n)
      cpu = cpu + tonumber(n)
    end
    assert.equal(info.total, cpu)
    assert.truthy(counts['runtime.main;main.main;main.alpha;main.beta;main.spin'])
    -- samples x period = CPU time, stack by stack
    local samples = assert(pprof.to_folded(d, 'samples'))
    for line in samples:gmatch('[^\n]+') do
      local stack, n = line:match('^(.*) (%d+)$')
      assert.equal(tonumber(n) * 1e7, counts[stack])
    end
  end)

  it('leaves out samples whose value is negative (diff profiles)', function()
    local pos = pprof.encode(profilers.new { kind = 'offcpu', unit = 'us', duration = 1,
      stacks = { { frames = { 'a', 'f' }, count = 1, pid = 1 } } })
    local d = assert(pprof.decode(pos))
    d.samples[2] = { locations = d.samples[1].locations, values = { 2 ^ 64 - 5000 }, labels = {} }  -- int64 -5000
    assert.equal('a;f 1000\n', (pprof.to_folded(d)))
  end)

  it('never fails with a traceback on damaged profiles', function()
    local good = pprof.encode(oncpu())
    math.randomseed(14)
    local decoded, refused = 0, 0
    for _ = 1, 300 do
      local b = { good:byte(1, -1) }
      for _ = 1, math.random(1, 4) do b[math.random(#b)] = math.random(0, 255) end
      local cut = math.random(1, 10) == 1 and math.random(#b) or #b
      local bytes = string.char(unpack(b, 1, cut))
      local d, err = pprof.decode(bytes)
      if d then
        local text, info = pprof.to_folded(d)
        assert.is_true(type(text) == 'string' or (text == nil and type(info) == 'string'))
        decoded = decoded + 1
      else
        assert.matches('^not a pprof profile: ', err)
        assert.is_nil(err:find('\n'))
        refused = refused + 1
      end
    end
    assert.is_true(decoded > 0 and refused > 0, decoded .. ' decoded, ' .. refused .. ' refused')
  end)

  it('refuses what is not a profile, in one line', function()
    assert.is_false(pprof.looks_like('main;work 10\n'))
    assert.is_false(pprof.looks_like('\n\nmain;work 10\n'))
    local p, err = pprof.decode('\10\200')
    assert.is_nil(p)
    assert.equal('not a pprof profile: bad varint', err)
    p, err = pprof.decode(gzip.compress('main;work 10\n'))
    assert.is_nil(p)
    assert.matches('^not a pprof profile: ', err)
    local gz = assert(gzip.compress(pprof.encode(oncpu())))
    p, err = pprof.decode(gz:sub(1, #gz - 20))
    assert.is_nil(p)
    assert.equal('gunzip: the data is cut short', err)
  end)
end)

describe('perf_manual.gzip', function()
  it('round-trips text, including several members one after another', function()
    local text = string.rep('frame;frame;frame 1\n', 20000) .. '\0\255'
    local gz = assert(gzip.compress(text))
    assert.is_true(gzip.is_gzip(gz))
    assert.is_true(#gz < #text / 50)
    assert.equal(text, gzip.decompress(gz))
    assert.equal(text .. 'b', gzip.decompress(gz .. gzip.compress('b')))
    assert.equal('', gzip.decompress(gzip.compress('')))
  end)

  it('writes what gzip -d reads', function()
    local path = os.tmpname()
    local p = oncpu()
    assert(pprof.write(path, p, { time_nanos = 1 }))
    local f = io.popen("gzip -dc '" .. path .. "'")
    local raw = f:read('*a')
    f:close()
    os.remove(path)
    assert.equal(pprof.encode(p, { time_nanos = 1 }), raw)
  end)

  it('says why data is not gzip', function()
    assert.same({ nil, 'gunzip: incorrect header check' }, { gzip.decompress('plain text') })
  end)
end)
