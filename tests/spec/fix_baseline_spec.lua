-- investigate --baseline: the symptom (latency percentiles, error ratio,
-- throughput, with their tests) and the USE figures against a baseline, and
-- the refusal of another workload's baseline unless --baseline-any. On
-- investigations recorded from real runs (tests/fixtures/fixval, datadirs),
-- replayed through the real CLI.
local util = require('perf_manual.util')
local store = require('perf_manual.store')
local investigation = require('perf_manual.investigation')
local vz = require('perf_manual.analyzers.validate')
local h = test_helpers

local FV = h.root .. '/tests/fixtures/fixval'
local ENDPOINT = 'http://127.0.0.1:18801/'   -- where the fixtures' service listened

local function fixture_store(names) return h.fixture_store('fixval', names) end

local function newest(root, except)
  for _, id in ipairs(store.list(root)) do if not except[id] then return id end end
end

local function rows_by_key(root, id)
  local c = util.json_decode(assert(store.read_artifact(root .. '/' .. id, 'compare.json')))
  local by = {}
  for _, r in ipairs(c.rows) do by[r.key] = r end
  return by, c
end

describe('investigate --baseline', function()
  local root, ids
  before_each(function() root, ids = fixture_store({ 'slow' }) end)
  after_each(function() h.rmrf(root) end)

  it('compares the symptom and the USE figures with the baseline of the same service', function()
    local out, err, st = h.pm(string.format("investigate --replay '%s/fast' --endpoint %s "
      .. "--symptom 'requests are slow' --baseline %s --batch --store '%s'", FV, ENDPOINT, ids[1], root))
    assert.equal(0, st, err)
    assert.matches('Compared with baseline ' .. ids[1]:gsub('%-', '%%-'), out)
    local id = newest(root, { [ids[1]] = true })
    local by, c = rows_by_key(root, id)
    assert.equal(ids[1], c.baseline)
    -- latency percentiles with a test, against the red checks' own figures
    local b = util.json_decode(h.fixture('fixval/slow/raw_data/red-check.json'))
    local a = util.json_decode(h.fixture('fixval/fast/raw_data/red-check.json'))
    for _, q in ipairs({ 'p50', 'p90', 'p99' }) do
      local r = assert(by['red.latency.' .. q], q)
      assert.equal('mann-whitney', r.test)
      assert.is_true(r.p < 0.001)
      assert.near(b.latency[q] * 1000, r.before, b.latency[q] * 1000 * 0.05)
      assert.near(a.latency[q] * 1000, r.after, math.max(a.latency[q] * 1000 * 0.05, 0.01))
      assert.is_true(r.ci_hi < 0)
    end
    -- errors and throughput
    assert.equal(0, by['red.error_ratio'].before)
    assert.equal(0, by['red.error_ratio'].after)
    assert.near(b.rate.completed, by['red.throughput'].before, 0.01 * b.rate.completed)
    assert.near(a.rate.completed, by['red.throughput'].after, 0.01 * a.rate.completed)
    assert.is_true(by['red.throughput'].ci_lo > 0)
    -- USE figures: CPU utilization from both use-checks, one value per side
    local ub = util.json_decode(h.fixture('fixval/slow/raw_data/use-check.json'))
    local cpu = assert(by['use.cpu.CPU.utilization'])
    for _, row in ipairs(ub.rows) do
      if row.resource == 'cpu' then assert.equal(row.utilization.value, cpu.before) end
    end
    assert.equal('one value per side', cpu.test)
    -- quantify figures
    assert.truthy(by['quantify.system.busy_pct'])
  end)

  it('refuses the baseline of another workload, in one line, exit 2; --baseline-any compares all the same', function()
    local before = {}
    for _, id in ipairs(store.list(root)) do before[id] = true end
    local _, err, st = h.pm(string.format("investigate --replay '%s/tests/fixtures/datadirs/cpu_burn' --symptom 'slow' "
      .. "--baseline %s --batch --store '%s'", h.root, ids[1], root))
    assert.equal(2, st, err)
    assert.matches('^perf_manual: %-%-baseline %S+ looked at another workload %(program differs: program fixval_http, '
      .. 'endpoint http://127%.0%.0%.1:18801/; this run: program cpu_burn%); compare like with like, or give '
      .. '%-%-baseline%-any\n$', err)
    -- nothing was created
    assert.is_nil(newest(root, before))
    local out
    out, err, st = h.pm(string.format("investigate --replay '%s/tests/fixtures/datadirs/cpu_burn' --symptom 'slow' "
      .. "--baseline %s --baseline-any --batch --store '%s'", h.root, ids[1], root))
    assert.equal(0, st, err)
    assert.matches('baseline %S+ looked at another workload', err)
    assert.matches('Compared with baseline', out)
    local by = rows_by_key(root, newest(root, before))
    assert.truthy(by['quantify.process.cpu_pct'])
  end)

  it('refuses another endpoint of the same program', function()
    local _, err, st = h.pm(string.format("investigate --replay '%s/fast' --endpoint http://127.0.0.1:18801/other "
      .. "--symptom s --baseline %s --batch --store '%s'", FV, ids[1], root))
    assert.equal(2, st, err)
    assert.matches('endpoint differs', err)
  end)
end)

describe('workload identity', function()
  it('is the program, the service or cgroup, and the endpoint', function()
    local id = vz.identity({ workload = '/opt/app/bin/fixval_http 8080 /etc/app.conf',
      endpoint = 'http://Localhost:8080/api?x=1' })
    assert.same({ program = 'fixval_http', endpoint = 'http://localhost:8080/api' }, id)
    assert.same({ program = 'postgres' }, vz.identity({ workload = '4242', comm = 'postgres' }))
    assert.same({ program = 'a_very_long_pro' }, vz.identity({ workload = 'cmd:./a_very_long_program_name --x' }))
    assert.same({ service = 'nginx.service' }, vz.identity({ workload = 'nginx.service' }))
    assert.same({ cgroup = '/system.slice/x' }, vz.identity({ workload = 'cgroup:/system.slice/x' }))
    assert.same({ system = true }, vz.identity({ workload = 'system' }))
    assert.same({ endpoint = 'http://h:80/' }, vz.identity({ workload = '4242', endpoint = 'http://h' }))
  end)

  it('tells the same workload from another, and says when it cannot tell', function()
    local app = vz.identity({ workload = './app --threads 4', endpoint = 'http://h:1/a' })
    assert.is_true(vz.same_workload(app, vz.identity({ workload = '/srv/app --threads 8', endpoint = 'http://h:1/a' })))
    assert.is_true(vz.same_workload(app, vz.identity({ workload = '77', comm = 'app' })))
    assert.is_false(vz.same_workload(app, vz.identity({ workload = './other' })))
    assert.is_false(vz.same_workload(app, vz.identity({ workload = './app', endpoint = 'http://h:1/b' })))
    assert.is_false(vz.same_workload(app, vz.identity({ workload = 'app.service' })))
    local same, why = vz.same_workload(app, vz.identity({ workload = '77' }))
    assert.is_nil(same)
    assert.matches('no workload identity', why)
  end)

  it('reads the comm a recorded use-check saw for a pid', function()
    local id = investigation.recorded_identity(h.root .. '/tests/fixtures/datadirs/mutex_contention', {})
    -- the kernel's comm keeps 15 characters, and so does the identity of a command
    assert.equal('mutex_contentio', id.program)
    assert.is_true(vz.same_workload(id, vz.identity({ workload = h.root .. '/build/workloads/mutex_contention 8 30' })))
  end)
end)
