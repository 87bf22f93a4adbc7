-- hypotheses on investigations replayed from the recorded workloads.
local util = require('perf_manual.util')
local h = test_helpers

describe('hypotheses', function()
  local root, ids
  setup(function() root, ids = h.replay_store({ 'cpu_burn' }) end)
  teardown(function() h.rmrf(root) end)

  it('lists each hypothesis with its status and the evidence linked to it', function()
    local out, err, st = h.pm(string.format('hypotheses %s --store %s', ids[1], root))
    assert.equal(0, st, err)
    assert.matches('^H1 +supported +the workload is CPU%-bound', out)
    assert.matches('\n +supports +raw_data/profile%-cpu%.json: on%-CPU profile: burn holds 100%% of samples\n', out)
    assert.matches('\nH%d +refuted +the workload waits on disk I/O', out)
    assert.matches('\n +refutes +raw_data/use%-check%.json: USE names cpu as the most saturated resource\n', out)
  end)

  it('prints JSON with --json and shows a hypothesis added later by root-cause', function()
    local _, err, st = h.pm(string.format("root-cause --hypothesis 'memory pressure slows it' --evidence %s --store %s",
      ids[1], root))
    assert.equal(0, st, err)
    local out
    out, err, st = h.pm(string.format('hypotheses %s --store %s --json', ids[1], root))
    assert.equal(0, st, err)
    local list = assert(util.json_decode(out))
    local last = list[#list]
    assert.equal('memory pressure slows it', last.text)
    assert.equal('root-cause', last.source)
    assert.equal('H' .. #list, last.id)
    for _, x in ipairs(list) do assert.is_table(x.evidence) end
  end)

  it('says when there are none, and exits 1 (printing what it read) on broken metadata', function()
    local r2 = h.tmpdir()
    local id = '2026-01-01_nothing'
    os.execute(string.format("mkdir -p '%s/%s'", r2, id))
    local f = io.open(r2 .. '/' .. id .. '/metadata.yaml', 'w')
    f:write('id: ' .. id .. '\nsymptom: nothing yet\nstatus: running\n'); f:close()
    local out, err, st = h.pm(string.format('hypotheses %s --store %s', id, r2))
    assert.equal(0, st, err)
    assert.equal(id .. ': no hypotheses recorded\n', out)
    f = io.open(r2 .. '/' .. id .. '/metadata.yaml', 'a'); f:write('hypotheses: [oops\n'); f:close()
    out, err, st = h.pm(string.format('hypotheses %s --store %s', id, r2))
    h.rmrf(r2)
    assert.equal(1, st)
    assert.matches('^perf_manual: .*metadata%.yaml:%d+', err)
    assert.equal(id .. ': no hypotheses recorded\n', out)
  end)
end)
