-- Evidence correlation on data recorded from the real workloads.
local rc = require('perf_manual.analyzers.root_cause')
local F = require('perf_manual.analyzers.findings')
local store = require('perf_manual.store')
local h = test_helpers

local function data(name) return F.prepare(store.results(h.root .. '/tests/fixtures/datadirs/' .. name)) end

describe('perf_manual.analyzers.root_cause', function()
  it('ties a hypothesis to a resource, and sees negation', function()
    assert.same({ 'disk', false }, { rc.classify('the disk is saturated') })
    assert.same({ 'disk', true }, { rc.classify("disks are not the bottleneck") })
    assert.same({ 'lock', false }, { rc.classify('contention on the queue mutex') })
    assert.same({ 'memory', false }, { rc.classify('swapping under memory pressure') })
    assert.same({ 'cpu', false }, { rc.classify('a hot loop keeps the CPUs busy') })
    assert.is_nil((rc.classify('cosmic rays')))
  end)

  it('supports "disk saturated" on the fsync writer with the USE disk row', function()
    local r = rc.score('the disk is saturated', data('fsync_writer'))
    assert.equal('supported', r.verdict)
    assert.equal('raw_data/use-check.json', r.evidence[1].artifact)
    assert.equal('supports', r.evidence[1].stance)
    assert.matches('^USE vda: HIGH', r.evidence[1].note)
    -- the recorded fsync share of syscall time is evidence too
    local fsync
    for _, e in ipairs(r.evidence) do if e.artifact == 'raw_data/trace-syscall.json' then fsync = e end end
    assert.equal('supports', fsync.stance)
  end)

  it('refutes "disk saturated" on the CPU burner, and flips for a negated hypothesis', function()
    local d = data('cpu_burn')
    local r = rc.score('the disk is saturated', d)
    assert.equal('refuted', r.verdict)
    assert.equal('USE names cpu as the most saturated resource', r.evidence[#r.evidence].note)
    assert.matches('no I/O latency histogram', table.concat(r.missing, '\n'))
    assert.equal('supported', rc.score('the disks are not the bottleneck', d).verdict)
  end)

  it('uses the lock tracer for lock hypotheses', function()
    local r = rc.score('lock contention', data('mutex_contention'))
    assert.equal('supported', r.verdict)
    local seen = {}
    for _, e in ipairs(r.evidence) do seen[e.artifact] = e.stance end
    assert.equal('supports', seen['raw_data/trace-lock.json'])
    assert.equal('supports', seen['raw_data/use-check.json'])
  end)

  it('does not call an idle workload CPU-bound on a busy machine', function()
    local d = data('cpu_burn')
    d.use.measures.task.cpu_pct = 0.2          -- the same machine, a workload that sleeps
    local r = rc.score('the workload is CPU-bound', d)
    assert.equal('refuted', r.verdict)
    local seen
    for _, e in ipairs(r.evidence) do if e.note == 'the workload uses 0% of one CPU' then seen = e.stance end end
    assert.equal('refutes', seen)
  end)

  it('says inconclusive when nothing measured speaks to the hypothesis', function()
    local r = rc.score('cosmic rays flip bits', data('cpu_burn'))
    assert.equal('inconclusive', r.verdict)
    assert.matches('names no resource', r.missing[1])
  end)

  it('proposes the verdict first, then cpu and disk to seek disconfirmation', function()
    local c = rc.candidates(data('mutex_contention'), {})
    assert.equal(rc.TEXT.lock, c[1])
    assert.same({ rc.TEXT.lock, rc.TEXT.cpu, rc.TEXT.disk }, c)
  end)
end)
