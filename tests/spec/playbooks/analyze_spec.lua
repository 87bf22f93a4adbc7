-- collect → analyze → root-cause, and show/hypotheses on stored folders.
local store = require('perf_manual.store')
local util = require('perf_manual.util')
local h = test_helpers

local function copy_fixture(name)
  local d = os.tmpname(); os.remove(d)
  os.execute(string.format('cp -r %s/tests/fixtures/datadirs/%s %s', h.root, name, d))
  return d
end

describe('analyze, root-cause, show', function()
  it('analyze writes findings and a section per resource', function()
    local d = copy_fixture('fsync_writer')
    local out, err, st = h.pm(string.format('analyze --data %s --output %s/report.md', d, d))
    assert.equal(0, st, err)
    assert.matches('bottleneck %(USE%): disk', out)
    local report = assert(util.readfile(d .. '/report.md'))
    for _, s in ipairs({ '## CPU', '## Memory', '## Disk I/O', '## Network', '## Locks' }) do
      assert.truthy(report:find('\n' .. s .. '\n', 1, true), s)
    end
    assert.matches('| vda | HIGH |', report)
    assert.matches('I/O latency %(io tracer', report)
    local found = util.json_decode(util.readfile(d .. '/analysis/findings.json'))
    local disk_high
    for _, f in ipairs(found) do if f.resource == 'disk' and f.severity == 'high' then disk_high = f end end
    assert.matches('^vda: ', disk_high.summary)
    local _, err2, st2 = h.pm('analyze --data /no/such/dir --output /tmp/x.md')
    assert.equal(2, st2)
    assert.equal('perf_manual: no data dir /no/such/dir\n', err2)
    os.execute('rm -rf ' .. d)
  end)

  it('analyze --json prints the findings it wrote to analysis/findings.json', function()
    local d = copy_fixture('mutex_contention')
    local out, err, st = h.pm(string.format('analyze --data %s --output %s/r.md --json', d, d))
    assert.equal(0, st, err)
    local printed = assert(util.json_decode(out))
    assert.same(util.json_decode(util.readfile(d .. '/analysis/findings.json')), printed)
    local lock = {}
    for _, f in ipairs(printed) do if f.resource == 'lock' then lock[#lock + 1] = f.metric end end
    table.sort(lock)
    assert.same({ 'futex_wait_share', 'use' }, lock)
    os.execute('rm -rf ' .. d)
  end)

  it('root-cause prints the verdict with its evidence and records it in a data dir', function()
    local d = copy_fixture('cpu_burn')
    local out, err, st = h.pm(string.format('root-cause --hypothesis "the disk is saturated" --evidence %s', d))
    assert.equal(0, st, err)
    assert.matches('Verdict: +REFUTED', out)
    assert.matches('refutes +USE names cpu as the most saturated resource +%[raw_data/use%-check%.json%]', out)
    local rec = util.json_decode(util.readfile(d .. '/analysis/hypotheses.json'))
    assert.equal('refuted', rec[1].verdict)
    os.execute('rm -rf ' .. d)
  end)

  it('root-cause records into an investigation; hypotheses lists it; show is lazy and survives corruption', function()
    local root = os.tmpname(); os.remove(root)
    local _, err, st = h.pm(string.format('investigate --replay %s/tests/fixtures/datadirs/fsync_writer '
      .. '--symptom "slow writes" --batch --store %s',
      h.root, root))
    assert.equal(0, st, err)
    local id = store.list(root)[1]
    local out
    out, err, st = h.pm(string.format('root-cause --hypothesis "synchronous writes (fsync) dominate the '
      .. 'latency" --evidence %s --store %s', id, root))
    assert.equal(0, st, err)
    assert.matches('Verdict: +SUPPORTED', out)
    out, _, st = h.pm(string.format('hypotheses slow-writes --store %s', root))
    assert.equal(0, st)
    assert.matches('H%d +supported +synchronous writes %(fsync%) dominate the latency', out)
    out, _, st = h.pm(string.format('show %s --store %s', id, root))
    assert.equal(0, st)
    assert.matches('Bottleneck: +disk', out)
    assert.matches('raw_data/trace%-io%.json', out)
    -- corrupt it: the error names file, line and field; the rest still shows
    local path = root .. '/' .. id .. '/metadata.yaml'
    local text = util.readfile(path)
    local f = io.open(path, 'w'); f:write((text:gsub('\nplaybook: investigate\n',
      '\nplaybook: [investigate\n'))); f:close()
    out, err, st = h.pm(string.format('show %s --store %s', id, root))
    assert.equal(1, st)
    assert.matches("^perf_manual: " .. path:gsub('%p', '%%%0') .. ":%d+: field 'playbook': ", err)
    assert.matches('Symptom: +slow writes', out)
    assert.matches('Bottleneck: +disk', out)
    -- unknown id: close matches, exit 2
    _, err, st = h.pm(string.format('show slow-writs --store %s', root))
    assert.equal(2, st)
    assert.equal(string.format("perf_manual: no investigation 'slow-writs' in %s; close matches: %s\n", root, id), err)
    os.execute('rm -rf ' .. root)
  end)

  it('collect writes a manifest of what it collected and what it could not', function()
    local d = os.tmpname(); os.remove(d)
    local out, err, st = h.pm(string.format('collect --suite basic --output %s --duration 1', d))
    assert.equal(0, st, err)
    local m = util.json_decode(util.readfile(d .. '/manifest.json'))
    assert.equal('basic', m.suite)
    assert.matches('^%d%d%d%d%-', m.started)
    assert.is_true(m.ended >= m.started)
    local by = {}
    for _, it in ipairs(m.items) do by[it.name] = it end
    assert.equal('raw_data/cpu.jsonl', by.cpu.file)
    assert.is_true(by.cpu.samples >= 1)
    assert.equal('not collected: needs --pid', by.process.error)
    assert.equal('raw_data/use-check.json', by['use-check'].file)
    local first = util.readfile(d .. '/raw_data/cpu.jsonl'):match('^[^\n]+')
    assert.is_number(util.json_decode(first).rates.total.busy_pct)
    assert.matches('collector +process +%- +not collected: needs %-%-pid', out)
    -- the same dir twice is refused; an unknown suite is a user error
    local _, err2, st2 = h.pm(string.format('collect --suite basic --output %s --duration 1', d))
    assert.equal(2, st2)
    assert.matches('already holds a collection', err2)
    _, err2, st2 = h.pm('collect --suite nope --output /tmp/x --duration 1')
    assert.equal(2, st2)
    assert.matches("no suite 'nope' %(suites: basic, cpu, full, io, memory%)", err2)
    os.execute('rm -rf ' .. d)
  end)
end)
