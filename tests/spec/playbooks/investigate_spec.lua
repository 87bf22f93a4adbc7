-- The built-in investigate playbook in replay mode: its logic (verdict,
-- drill-down, hypotheses, report, folder schema) run against data dirs
-- recorded from the real workloads, without root.
local store = require('perf_manual.store')
local investigation = require('perf_manual.investigation')
local util = require('perf_manual.util')
local h = test_helpers

local function replay(name, extra)
  local root = os.tmpname(); os.remove(root)
  local out, err, st = h.pm(string.format('investigate --replay %s/tests/fixtures/datadirs/%s --symptom "%s '
    .. 'is slow" --batch --store %s %s',
    h.root, name, name, root, extra or ''))
  assert.equal(0, st, err)
  local id = store.list(root)[1]
  local meta = assert(store.open(root, id):load_metadata())
  return meta, root .. '/' .. id, out, root
end

local function artifact_paths(meta)
  local out = {}
  for _, a in ipairs(meta.artifacts) do out[a.path] = true end
  return out
end

local function hyp(meta, pattern)
  for _, x in ipairs(meta.hypotheses) do if x.text:match(pattern) then return x end end
end

describe('investigate (replay of recorded workloads)', function()
  it('names the CPU for cpu_burn and drills down with an on-CPU profile', function()
    local meta, dir, out, root = replay('cpu_burn')
    assert.equal('cpu', meta.verdict)
    assert.is_true(artifact_paths(meta)['raw_data/profile-cpu.json'])
    assert.equal('supported', hyp(meta, 'CPU%-bound').status)
    assert.equal('refuted', hyp(meta, 'disk I/O').status)
    assert.equal(hyp(meta, 'CPU%-bound').text, meta.root_cause)
    local high = 0
    for _, f in ipairs(meta.findings) do if f.resource == 'cpu' and f.severity == 'high' then high = high + 1 end end
    assert.equal(1, high)
    -- the hottest function of the recorded profile is the workload's loop
    local ev = hyp(meta, 'CPU%-bound').evidence
    local notes = {}
    for _, e in ipairs(ev) do notes[#notes + 1] = e.note end
    assert.matches('burn holds 100%% of samples', table.concat(notes, '\n'))
    assert.matches('Bottleneck: cpu', out)
    assert.same({}, investigation.validate(dir))
    assert.truthy(util.readfile(dir .. '/report.md'):find('## Checklist', 1, true))
    os.execute('rm -rf ' .. root)
  end)

  it('names the disk for fsync_writer and drills down with I/O latency and fsync share', function()
    local meta, dir, _, root = replay('fsync_writer')
    assert.equal('disk', meta.verdict)
    local arts = artifact_paths(meta)
    assert.is_true(arts['raw_data/trace-io.json'])
    assert.is_true(arts['raw_data/trace-syscall.json'])
    assert.is_nil(arts['raw_data/profile-cpu.json'])
    assert.equal('supported', hyp(meta, 'disk I/O').status)
    assert.equal('refuted', hyp(meta, 'CPU%-bound').status)
    assert.same({}, investigation.validate(dir))
    os.execute('rm -rf ' .. root)
  end)

  it('names the lock for mutex_contention and drills down with the lock tracer and off-CPU', function()
    local meta, dir, _, root = replay('mutex_contention')
    assert.equal('lock', meta.verdict)
    local arts = artifact_paths(meta)
    assert.is_true(arts['raw_data/trace-lock.json'])
    assert.is_true(arts['raw_data/profile-offcpu.json'])
    local lock = hyp(meta, 'lock contention')
    assert.equal('supported', lock.status)
    local from_tracer = false
    for _, e in ipairs(lock.evidence) do
      if e.artifact == 'raw_data/trace-lock.json' and e.stance == 'supports' then from_tracer = true end
    end
    assert.is_true(from_tracer)
    assert.same({}, investigation.validate(dir))
    os.execute('rm -rf ' .. root)
  end)

  it('finds the earlier investigation as similar past work', function()
    local _, _, _, root = replay('fsync_writer')
    local out, err, st = h.pm(string.format('investigate --replay %s/tests/fixtures/datadirs/fsync_writer '
      .. '--symptom "writes slow fsync_writer" --batch --store %s',
      h.root, root))
    assert.equal(0, st, err)
    assert.matches('Similar past investigations:\n  %d%d%d%d%-%d%d%-%d%d_fsync%-writer%-is%-slow', out)
    os.execute('rm -rf ' .. root)
  end)

  it('compares with a baseline investigation', function()
    local _, _, _, root = replay('cpu_burn')
    local base = store.list(root)[1]
    -- another program: compared only with --baseline-any (tests/spec/fix_baseline_spec.lua)
    local out, err, st = h.pm(string.format('investigate --replay %s/tests/fixtures/datadirs/fsync_writer '
      .. '--symptom "after" --batch --store %s --baseline %s --baseline-any',
      h.root, root, base))
    assert.equal(0, st, err)
    assert.matches('Compared with baseline ' .. base:gsub('%-', '%%-'), out)
    assert.matches('System CPU busy +%d', out)
    os.execute('rm -rf ' .. root)
  end)

  it('rejects bad input with one line and exit 2', function()
    local _, err, st = h.pm('investigate --symptom x --batch --store /tmp/pm-none')
    assert.equal(2, st)
    assert.equal('perf_manual: investigate: missing --workload (pid, process name, service, cgroup or a command to ' ..
      'launch)\n', err)
    _, err, st = h.pm('investigate --workload 999999999 --symptom x --batch --store /tmp/pm-none-'
      .. require('perf_manual._c.sys').getpid())
    assert.equal(2, st)
    -- above the kernel's PID_MAX_LIMIT: not a pid at all (issue 17)
    assert.matches("perf_manual: investigate: bad value for %-%-workload '999999999': bad pid", err)
    -- a pid that could exist, but does not
    _, err, st = h.pm('investigate --workload 4194303 --symptom x --batch --store /tmp/pm-none-'
      .. require('perf_manual._c.sys').getpid())
    assert.equal(2, st)
    assert.matches('perf_manual: %-%-workload: no process 4194303', err)
    -- no half-made investigation is left behind
    assert.same({}, store.list('/tmp/pm-none-' .. require('perf_manual._c.sys').getpid()))
    _, err, st = h.pm('investigate --resume nothing-like-this --store /tmp/pm-none')
    assert.equal(2, st)
    assert.matches("no investigation 'nothing%-like%-this'", err)
    os.execute('rm -rf /tmp/pm-none-' .. require('perf_manual._c.sys').getpid())
  end)

  it('takes answers from a file and --answer, names the folder with --name, and records the source', function()
    local root = h.tmpdir()
    local f = io.open(root .. '/answers.yaml', 'w')
    f:write('when_did_it_start: since the deploy on monday\n'
      .. '"Who is affected (all users, a subset, some operations)?": checkout users\n')
    f:close()
    local _, err, st = h.pm(string.format('investigate --replay %s/tests/fixtures/datadirs/cpu_burn '
      .. '--symptom "cpu slow" --batch --store %s --name my-case --answers %s/answers.yaml --answer baseline=1.2s',
      h.root, root, root))
    assert.equal(0, st, err)
    local ids = store.list(root)
    assert.equal(1, #ids)
    assert.matches('^%d%d%d%d%-%d%d%-%d%d_my%-case$', ids[1])
    local meta = assert(store.open(root, ids[1]):load_metadata())
    local by = {}
    for _, q in ipairs(meta.checklist) do by[q.key] = q end
    assert.same({ 'cpu slow', 'flag' }, { by.symptom.answer, by.symptom.source })
    assert.same({ 'since the deploy on monday', 'answers', true }, { by.when.answer, by.when.source, by.when.answered })
    assert.same({ 'checkout users', 'answers' }, { by.who.answer, by.who.source })
    assert.same({ '1.2s', 'answers' }, { by.baseline.answer, by.baseline.source })
    assert.same({ false, 'default' }, { by.impact.answered, by.impact.source })
    os.execute('rm -rf ' .. root)
  end)

  it('--resume of a complete investigation says it is complete and changes nothing', function()
    local meta, _, _, root = replay('cpu_burn')
    local out, err, st = h.pm(string.format('investigate --resume cpu-burn --batch --store %s', root))
    assert.equal(0, st, err)
    assert.matches('^Investigation ' .. meta.id:gsub('%p', '%%%0') .. ' is complete: nothing to resume', out)
    local after = assert(store.open(root, meta.id):load_metadata())
    assert.equal(#meta.timeline, #after.timeline)
    assert.equal(meta.updated, after.updated)
    assert.equal('cpu', after.verdict)
    assert.equal('complete', after.status)
    os.execute('rm -rf ' .. root)
  end)
end)
