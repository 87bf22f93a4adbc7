-- root-cause against the recorded data dirs and an investigation replayed
-- from one. (The first verdicts are in analyze_spec.lua; the scoring
-- rules in tests/spec/analyzers/root_cause_spec.lua.)
local store = require('perf_manual.store')
local util = require('perf_manual.util')
local h = test_helpers

describe('root-cause', function()
  it('supports lock contention for the mutex workload with both pieces of evidence', function()
    local d = h.copy_datadir('mutex_contention')
    local out, err, st = h.pm(string.format("root-cause --hypothesis 'lock contention on a mutex' --evidence %s", d))
    assert.equal(0, st, err)
    assert.matches('^Hypothesis: lock contention on a mutex\nVerdict: +SUPPORTED %(for 3, against 0;', out)
    assert.matches('\n  supports USE Mutex/locks: HIGH [^\n]+%[raw_data/use%-check%.json%]\n', out)
    assert.matches('\n  supports threads wait on futexes 62%% of their time  %[raw_data/trace%-lock%.json%]\n', out)
    assert.matches('\nrecorded in ' .. d:gsub('%p', '%%%0') .. '/analysis/hypotheses%.json\n$', out)
    h.rmrf(d)
  end)

  it('keeps every scored hypothesis of a data dir, and says when the data cannot judge one', function()
    local d = h.copy_datadir('fsync_writer')
    assert.equal(0, select(3, h.pm(string.format("root-cause --hypothesis 'the disk is saturated' --evidence %s", d))))
    local out, err, st = h.pm(string.format("root-cause --hypothesis 'the moon is full' --evidence %s --json", d))
    assert.equal(0, st, err)
    local res = assert(util.json_decode(out))
    assert.equal('inconclusive', res.verdict)
    assert.same({ 0, 0 }, { res.supports, res.refutes })
    assert.same({ 'the hypothesis names no resource this tool measures (cpu, memory, disk, network, lock, '
      .. 'a wait: blocked, peer, sleeping, or the service: errors, failed requests)' },
      res.missing)
    local rec = util.json_decode(util.readfile(d .. '/analysis/hypotheses.json'))
    assert.equal(2, #rec)
    assert.same({ 'the disk is saturated', 'supported' }, { rec[1].text, rec[1].verdict })
    assert.same({ 'the moon is full', 'inconclusive' }, { rec[2].text, rec[2].verdict })
    h.rmrf(d)
  end)

  it('adds the hypothesis to an investigation, open when inconclusive, and logs it', function()
    local root, ids = h.replay_store({ 'cpu_burn' })
    local before = #assert(store.open(root, ids[1]):load_metadata()).hypotheses
    local out, err, st = h.pm(string.format("root-cause --hypothesis 'the moon is full' --evidence %s --store %s",
      ids[1], root))
    assert.equal(0, st, err)
    local hid = 'H' .. (before + 1)
    assert.matches('\nrecorded in ' .. ids[1]:gsub('%p', '%%%0') .. ' ' .. hid .. '\n$', out)
    local meta = assert(store.open(root, ids[1]):load_metadata())
    local x = meta.hypotheses[before + 1]
    assert.same({ hid, 'the moon is full', 'open', 'root-cause' }, { x.id, x.text, x.status, x.source })
    assert.equal(hid .. ': the moon is full → inconclusive', meta.timeline[#meta.timeline].what)
    h.rmrf(root)
  end)

  it('refuses evidence that is neither a data dir nor a stored investigation, with exit 2', function()
    local empty = h.tmpdir()
    local _, err, st = h.pm(string.format("root-cause --hypothesis x --evidence nothing-here --store %s", empty))
    h.rmrf(empty)
    assert.equal(2, st)
    assert.matches("^perf_manual: no investigation 'nothing%-here' in ", err)
    _, err, st = h.pm("root-cause --evidence /tmp")
    assert.equal(2, st)
    assert.matches('missing %-%-hypothesis', err)
  end)
end)
