-- The example playbooks run as-is, in replay mode, on recorded workloads.
local store = require('perf_manual.store')
local h = test_helpers

local function run(example, fixture, extra)
  local root = os.tmpname(); os.remove(root)
  local out, err, st = h.pm(string.format('run %s/playbooks/examples/%s.lua --replay '
    .. '%s/tests/fixtures/datadirs/%s --batch --store %s %s',
    h.root, example, h.root, fixture, root, extra or ''))
  assert.equal(0, st, out .. err)
  local meta = assert(store.open(root, store.list(root)[1]):load_metadata())
  os.execute('rm -rf ' .. root)
  return meta, out
end

describe('playbooks/examples', function()
  it('disk-latency: the fsync writer waits on its own fsyncs', function()
    local meta, out = run('disk-latency', 'fsync_writer', '--pid 1')
    assert.matches('vda', out)
    assert.equal('supported', meta.hypotheses[1].status)
    assert.equal('synchronous writes (fsync) dominate the latency', meta.root_cause)
    assert.equal('raw_data/trace-syscall.json', meta.hypotheses[1].evidence[1].artifact)
  end)

  it('disk-latency: the CPU burner is not waiting on disks, and it stops early', function()
    local meta = run('disk-latency', 'cpu_burn', '--pid 1')
    assert.equal('disks are not the bottleneck', meta.root_cause)
    assert.equal(1, #meta.steps)
  end)

  it('cpu-saturation: a failed check is a high finding, the hypothesis is supported', function()
    local meta, out = run('cpu-saturation', 'cpu_burn', '--target 1')
    assert.matches('hottest function: burn %(100%% of samples%)', out)
    local f = meta.findings[1]
    assert.same({ 'high', 'the CPUs are not saturated' }, { f.severity, f.check })
    assert.equal('supported', meta.hypotheses[1].status)
    local m2 = run('cpu-saturation', 'fsync_writer', '--target 1')
    assert.equal(0, #m2.hypotheses)
  end)
end)
