-- show on investigations replayed from the recorded workloads.
local util = require('perf_manual.util')
local h = test_helpers

local function q(s) return (s:gsub('%p', '%%%0')) end

describe('show', function()
  local root, ids
  setup(function() root, ids = h.replay_store({ 'fsync_writer', 'mutex_contention' }) end)
  teardown(function() h.rmrf(root) end)

  it('prints the investigation at a glance: fields, checklist, steps, findings, hypotheses, files', function()
    local out, err, st = h.pm(string.format('show %s --store %s', ids[1], root))
    assert.equal(0, st, err)
    assert.matches('^Investigation: ' .. q(ids[1]) .. '\n', out)
    assert.matches('\nFolder: +' .. q(root .. '/' .. ids[1]) .. '\n', out)
    assert.matches('\nSymptom: +fsync_writer is slow\n', out)
    assert.matches('\nStatus: +complete\n', out)
    assert.matches('\nPlaybook: +investigate\n', out)
    assert.matches('\nBottleneck: +disk\n', out)
    assert.matches('\nChecklist:\n', out)
    assert.matches('\nSteps:\n  1%. ', out)
    assert.matches('\nFindings:\n  MEDIUM +CPU: 78%% busy\n  HIGH +vda: tasks stall on I/O', out)
    assert.matches('\nHypotheses:\n  H1 ', out)
    assert.matches('\nTimeline %(last 10 of %d+; %-%-timeline for all%):\n', out)
    assert.matches('\nFiles: %d+ %(', out)
    assert.matches('raw_data/trace%-io%.json', out)
    assert.matches('\nReport: +' .. q(root .. '/' .. ids[1]) .. '/report%.md\n$', out)
  end)

  it('takes a unique part of an id, prints the whole timeline, and the metadata as JSON', function()
    local out, err, st = h.pm(string.format('show mutex --store %s --timeline', root))
    assert.equal(0, st, err)
    assert.matches('^Investigation: ' .. q(ids[2]), out)
    assert.matches('\nTimeline:\n', out)
    local meta = util.json_decode(util.readfile(root .. '/' .. ids[2] .. '/metadata.yaml') and
      h.pm(string.format('show %s --store %s --json', ids[2], root)))
    assert.equal('lock', meta.verdict)
    assert.equal('mutex_contention is slow', meta.symptom)
    -- every timeline entry is printed with --timeline
    local n = select(2, out:match('\nTimeline:\n(.*)\nFiles:'):gsub('\n', '\n'))
    assert.equal(#meta.timeline, n)
  end)

  it('names a close match for an unknown id, exit 2', function()
    local typo = ids[1]:gsub('writer', 'writr')
    local _, err, st = h.pm(string.format('show %s --store %s', typo, root))
    assert.equal(2, st)
    -- the closest first
    assert.matches(string.format("^perf_manual: no investigation '%s' in %s; close matches: %s[,\n]",
      q(typo), q(root), q(ids[1])), err)
    -- nothing close: it says where to look
    _, err, st = h.pm(string.format('show zzz --store %s', root))
    assert.equal(2, st)
    assert.matches('`perf_manual list%-investigations` shows them', err)
  end)
end)
