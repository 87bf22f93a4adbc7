-- perf_manual.measure.collect: a suite over one session, its manifest, and
-- what it refuses.
local collect = require('perf_manual.measure.collect')
local util = require('perf_manual.util')

describe('perf_manual.measure.collect', function()
  it('runs the memory suite for a second and lists every item in the manifest', function()
    local saved = {}
    local manifest, use = collect.run('memory', { duration = 1 }, function(name, data, kind)
      saved[name] = { data = data, kind = kind }
      return 'raw_data/' .. name
    end)
    assert.is_nil(use)
    assert.equal('memory', manifest.suite)
    assert.equal(1, manifest.duration)
    assert.equal(0.5, manifest.interval)
    assert.equal('system', manifest.target.kind)
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

  it('samples the process and cgroup collectors of a process target', function()
    local sys = require('perf_manual.sys')
    local saved = {}
    local manifest = collect.run('memory', { duration = 1, target = tostring(sys.getpid()) },
      function(name, data) saved[name] = data; return name end)
    local by = {}
    for _, it in ipairs(manifest.items) do by[it.name] = it end
    assert.equal(sys.getpid(), manifest.pid)
    assert.is_nil(by.process.error)
    assert.is_true(by.process.samples >= 1)
    assert.is_string(saved['process.jsonl'])
  end)

  it('refuses an unknown suite as a user error that lists the suites', function()
    local ok, e = pcall(collect.run, 'nope', { duration = 1 }, function() end)
    assert.is_false(ok)
    assert.equal("collect: no suite 'nope' (suites: basic, cpu, full, io, memory)", e.user_error)
  end)
end)
