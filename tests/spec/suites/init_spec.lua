-- perf_manual.suites: the suite definitions on disk, `extends` resolution,
-- and the manifest of a short real run.
local suites = require('perf_manual.suites')

-- a playbook folder with suites/<name>.lua files
local function write_team(files)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "/suites'"))
  for name, text in pairs(files) do
    local f = assert(io.open(dir .. '/suites/' .. name .. '.lua', 'w'))
    f:write(text, '\n')
    f:close()
  end
  return dir
end

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
    local dir = write_team({
      spec_loop_a = "return { extends = 'spec_loop_b' }",
      spec_loop_b = "return { extends = 'spec_loop_a' }",
      spec_child = "return { extends = 'spec_missing', collectors = { 'cpu' } }",
    })
    suites.set_path({ dir })
    local ok, err = pcall(function()
      assert.same({ nil, 'suite spec_loop_a extends itself' }, { suites.get('spec_loop_a') })
      assert.same({ nil, 'no suite spec_missing' }, { suites.get('spec_child') })
    end)
    suites.set_path({})
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
  end)

  it("finds a team's suites first, beside its playbooks, and lists them with the built-in ones", function()
    local dir = write_team({
      quick = "return { summary = 'cpu only', collectors = { 'cpu' } }",
      basic = "return { summary = 'our basic', extends = 'memory', collectors = { 'cpu' } }",
    })
    suites.set_path({ dir })
    local ok, err = pcall(function()
      assert.same({ 'basic', 'cpu', 'full', 'io', 'memory', 'quick' }, suites.list())
      assert.equal('our basic', suites.get('basic').summary)
      -- extends still reaches the built-in memory suite
      assert.same({ 'memory', 'psi', 'process', 'cgroup', 'cpu' }, suites.get('basic').collectors)
      assert.same({ 'cpu' }, suites.get('quick').collectors)
    end)
    suites.set_path({})
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
    assert.equal('basic', suites.get('basic').name)
    assert.is_nil(suites.get('quick'))
  end)
end)
