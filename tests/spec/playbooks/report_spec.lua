-- report on an investigation replayed from the recorded mutex_contention
-- workload, named by id in a store or by its folder. (The report fixtures
-- with charts, secrets and HTML are in tests/spec/report/.)
local util = require('perf_manual.util')
local h = test_helpers

describe('report', function()
  local root, id
  setup(function()
    local ids
    root, ids = h.replay_store({ 'mutex_contention' })
    id = ids[1]
  end)
  teardown(function() h.rmrf(root) end)

  it('prints the technical report in Markdown on stdout, from what the investigation recorded', function()
    local out, err, st = h.pm(string.format('report mutex --store %s', root))
    assert.equal(0, st, err)
    assert.matches('^# Performance Investigation Report: mutex%-contention%-is%-slow\n', out)
    assert.matches('from investigation ' .. id:gsub('_', '\\_'):gsub('%p', '%%%0'), out)
    assert.matches('\n%- %*%*Issue%*%*: mutex\\_contention is slow\n', out)
    assert.matches('\n%- %*%*Root cause%*%*: lock contention: threads queue on futex 0x%x+ %(symbol not resolved%), ' ..
      '%d%.%d waiters on average\n', out)
    assert.matches('\n%- %*%*Status%*%*: The investigation is complete%.\n', out)
    assert.matches('\n| Mutex/locks | 64%% of thread%-time in futex waits %(9 threads%) | '
      .. '5%.7 threads waiting at once %(max 7%) | %- | HIGH |\n', out)
    assert.matches('supports raw\\_data/trace%-lock%.json: threads wait on futexes 62%% of their time', out)
    local sections = {}
    for s in out:gmatch('\n## ([^\n]+)') do sections[#sections + 1] = s end
    -- findings first, the timeline last
    assert.same({ 'Summary', 'Root Cause', 'Fix and Validation', 'Recommendations', 'Technical Details',
      'Appendix A: Timeline', 'Appendix B: Files' }, sections)
  end)

  it('writes the executive summary to a file, and the technical one from the folder path', function()
    local dir = h.tmpdir()
    local out, err, st = h.pm(string.format('report %s --store %s --format executive --output %s/summary.md',
      id, root, dir))
    assert.equal(0, st, err)
    assert.equal(string.format('wrote %s/summary.md (executive, Markdown)\n', dir), out)
    local md = assert(util.readfile(dir .. '/summary.md'))
    assert.matches('Summary for decision makers', md)
    -- the lock convoy entry's fix, with the lock the evidence names
    assert.matches('1%. %[OPEN%] shorten the critical section guarded by futex 0x%x+ %(symbol not resolved%)', md)
    out, err, st = h.pm(string.format('report %s/%s --output %s/tech.html', root, id, dir))
    assert.equal(0, st, err)
    assert.equal(string.format('wrote %s/tech.html (technical, self-contained HTML)\n', dir), out)
    local html = assert(util.readfile(dir .. '/tech.html'))
    assert.matches('^<!DOCTYPE html>', html)
    assert.is_nil(html:find('<script src=', 1, true))  -- self-contained
    h.rmrf(dir)
  end)

  it('rejects an output that is neither .md nor .html, a broken template and an unknown id, with exit 2', function()
    local _, err, st = h.pm(string.format('report %s --store %s --output /tmp/x.pdf', id, root))
    assert.equal(2, st)
    assert.equal('perf_manual: report: --output must end in .md or .html (got /tmp/x.pdf)\n', err)
    local dir = h.tmpdir()
    local f = io.open(dir .. '/t.md', 'w'); f:write('# {{ title }}\n{{# nosuch }}\n'); f:close()
    _, err, st = h.pm(string.format('report %s --store %s --template %s/t.md', id, root, dir))
    h.rmrf(dir)
    assert.equal(2, st)
    assert.matches('^perf_manual: report: t%.md:2', err)
    _, err, st = h.pm(string.format('report nothing-like-it --store %s', root))
    assert.equal(2, st)
    assert.matches("no investigation 'nothing%-like%-it'", err)
  end)
end)
