-- use-check --replay: the measures a live run recorded, judged again by
-- today's rules through the same verb the live command uses.
local h = test_helpers
local util = require('perf_manual.util')

local function replay(dir, extra)
  return h.pm(string.format('use-check --replay %s/tests/fixtures/datadirs/%s %s', h.root, dir, extra or ''))
end

describe('use-check playbook (replay)', function()
  it('names the CPU of the recorded cpu_burn run, with its sources and the table', function()
    local out, err, st = replay('cpu_burn')
    assert.equal(0, st, err)
    assert.matches('^USE check of pid %d+ %(cpu_burn%) over ', out)
    assert.matches('\nCPU +HIGH ', out)
    assert.matches('\nverdict: CPU is the most saturated resource: ', out)
    assert.matches('\nsource: CPU saturation from ', out)
  end)

  it('gives the same judgement as JSON, the verdict as the analyzer table', function()
    local out, err, st = replay('fsync_writer', '--json')
    assert.equal(0, st, err)
    local doc = assert(util.json_decode(out))
    assert.equal('disk', doc.verdict.resource)
    assert.is_table(doc.measures)
    local resources = {}
    for _, r in ipairs(doc.rows) do resources[r.resource] = r.status end
    assert.equal('HIGH', resources.disk)
    assert.are_not.equal('HIGH', resources.cpu)
  end)

  it('says so when the directory holds no USE data', function()
    local _, err, st = h.pm('use-check --replay ' .. h.root .. '/tests/fixtures/replay/red')
    assert.equal(2, st)
    assert.matches('^perf_manual: use%-check: not in the recorded data %(', err)
  end)
end)
