-- trace --replay: the results a live `trace --save` recorded (calltree
-- block, sleeping in clock_nanosleep), shown again by the same renderers.
local h = test_helpers
local util = require('perf_manual.util')
local DIR = h.root .. '/tests/fixtures/replay/trace'

describe('trace playbook (replay)', function()
  it('shows the recorded syscall and scheduler tables', function()
    local out, err, st = h.pm('trace --replay ' .. DIR .. ' --top 3')
    assert.equal(0, st, err)
    assert.matches('\n== syscalls\n', out)
    assert.matches('\nclock_nanosleep +%d+ +0 ', out)
    assert.matches('\n== sched\n', out)
    assert.matches('quality: attach ', out)
    assert.is_nil(out:find('Tracing ', 1, true), 'nothing is traced in a replay')
  end)

  it('gives the recorded results as JSON', function()
    local out, err, st = h.pm('trace --replay ' .. DIR .. ' --json')
    assert.equal(0, st, err)
    local doc = assert(util.json_decode(out))
    assert.same({ 'syscalls', 'sched' }, doc.events)
    assert.equal('duration', doc.ended_by)
    local calls = doc.intervals[1].results.syscalls
    assert.is_table(calls)
    local rec = assert(util.json_decode(h.fixture('replay/trace/trace.json')))
    assert.equal(rec.target.pid, doc.target.pid)
  end)

  it('refuses a directory with no recorded trace', function()
    local _, err, st = h.pm('trace --replay ' .. h.root .. '/tests/fixtures/replay/red')
    assert.equal(2, st)
    assert.matches('^perf_manual: trace: not in the recorded data', err)
  end)
end)
