-- perf_manual.suites: the suite definitions on disk, `extends` resolution,
-- and the manifest of a short real run.
local suites = require('perf_manual.suites')
local util = require('perf_manual.util')

local function names(list)
  local out = {}
  for _, x in ipairs(list) do out[#out + 1] = type(x) == 'table' and x[1] or x end
  return out
end

describe('suites', function()
  it('lists the suites on disk, sorted, without the module itself', function()
    assert.same({ 'basic', 'cpu', 'full', 'io', 'memory' }, suites.list())
  end)

  it('gives every listed suite a summary and something to run', function()
    for _, n in ipairs(suites.list()) do
      local s = assert(suites.get(n))
      assert.equal(n, s.name)
      assert.is_string(s.summary, n)
      assert.is_true(#s.collectors + #s.tracers + #s.profilers > 0, n)
    end
  end)

  it('resolves extends: the base items come first, then the suite\'s own', function()
    local basic = assert(suites.get('basic'))
    assert.same({ 'cpu', 'memory', 'disk', 'psi', 'process', 'cgroup' }, basic.collectors)
    assert.is_true(basic.use)
    local full = assert(suites.get('full'))
    assert.same(basic.collectors, full.collectors)
    assert.is_true(full.use)
    assert.same({ 'io', 'sched', 'lock', 'syscall' }, names(full.tracers))
    assert.same({ 'cpu', 'offcpu' }, names(full.profilers))
    assert.same({ 'sched' }, names(assert(suites.get('cpu')).tracers))
    assert.same({ 'io' }, names(assert(suites.get('io')).tracers))
    local mem = assert(suites.get('memory'))
    assert.same({ 'memory', 'psi', 'process', 'cgroup' }, mem.collectors)
    assert.equal(0.5, mem.interval)
    assert.is_nil(mem.use)
  end)

  it('says why a suite cannot be had', function()
    assert.same({ nil, 'no suite nope' }, { suites.get('nope') })
    assert.same({ nil, 'bad suite name ../x' }, { suites.get('../x') })
    package.preload['perf_manual.suites.spec_loop_a'] = function() return { extends = 'spec_loop_b' } end
    package.preload['perf_manual.suites.spec_loop_b'] = function() return { extends = 'spec_loop_a' } end
    package.preload['perf_manual.suites.spec_child'] = function()
      return { extends = 'spec_missing', collectors = { 'cpu' } }
    end
    assert.same({ nil, 'suite spec_loop_a extends itself' }, { suites.get('spec_loop_a') })
    assert.same({ nil, 'no suite spec_missing' }, { suites.get('spec_child') })
    for _, n in ipairs({ 'spec_loop_a', 'spec_loop_b', 'spec_child' }) do
      package.preload['perf_manual.suites.' .. n] = nil
      package.loaded['perf_manual.suites.' .. n] = nil
    end
  end)

  it('runs the memory suite for a second and lists every item in the manifest', function()
    local saved = {}
    local manifest, use = suites.run('memory', { duration = 1 }, function(name, data, kind)
      saved[name] = { data = data, kind = kind }
      return 'raw_data/' .. name
    end)
    assert.is_nil(use)
    assert.equal('memory', manifest.suite)
    assert.equal(1, manifest.duration)
    assert.equal(0.5, manifest.interval)
    assert.matches('^%d%d%d%d%-%d%d%-%d%dT', manifest.started)
    assert.is_true(manifest.ended >= manifest.started)
    local by = {}
    for _, it in ipairs(manifest.items) do by[it.name] = it end
    assert.same({ 'cgroup', 'memory', 'process', 'psi' }, util.keys(by))
    assert.equal('perf_manual.collectors.memory', by.memory.source)
    assert.equal('collector', by.memory.kind)
    assert.equal('raw_data/memory.jsonl', by.memory.file)
    assert.is_true(by.memory.samples >= 1)
    assert.equal('series', saved['memory.jsonl'].kind)
    -- one JSON line per sample, each with its rates
    local lines = 0
    for line in saved['memory.jsonl'].data:gmatch('[^\n]+') do
      lines = lines + 1
      assert.is_table(util.json_decode(line).rates)
    end
    assert.equal(by.memory.samples, lines)
    assert.equal('not collected: needs --pid', by.process.error)
    assert.is_nil(by.process.file)
    assert.equal('not collected: needs a target (--pid)', by.cgroup.error)
  end)

  it('refuses an unknown suite as a user error that lists the suites', function()
    local ok, e = pcall(suites.run, 'nope', { duration = 1 }, function() end)
    assert.is_false(ok)
    assert.equal('no suite nope (suites: basic, cpu, full, io, memory)', e.user_error)
  end)
end)
