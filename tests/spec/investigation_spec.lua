-- The engine v2 (perf_manual.playbook + perf_manual.investigation): batch
-- answers, timeline order, resume after a failure and after Ctrl-C,
-- confinement of writes, hypotheses and the schema check. Playbooks run
-- through the real CLI, in a temporary store.
local store = require('perf_manual.store')
local inv_mod = require('perf_manual.investigation')
local util = require('perf_manual.util')
local h = test_helpers

local function tmpdir()
  local d = os.tmpname(); os.remove(d)
  assert(store.mkdir_p(d))
  return d
end

local function write(path, text)
  local f = assert(io.open(path, 'w')); f:write(text); f:close()
end

local function meta_of(root)
  local ids = store.list(root)
  assert.equal(1, #ids)
  local m = assert(store.open(root, ids[1]):load_metadata())
  return m, root .. '/' .. ids[1]
end

local function kinds(m)
  local out = {}
  for _, e in ipairs(m.timeline) do out[#out + 1] = e.kind .. ':' .. tostring(e.what) end
  return out
end

-- a playbook whose step 2 fails while FAIL_FILE exists, and whose step 2
-- asks for a stop (as Ctrl-C does) while STOP_FILE exists
local PLAYBOOK = [[
return playbook {
  name = "engine-test", summary = "engine test", investigation = true,
  params = { symptom = param.string { "s" }, dir = param.path { "control dir" } },
  step "questions" { function(inv, p)
    inv:ask { "When did it start?", key = "when", default = "unknown" }
    inv:ask { "Who is affected?", key = "who", default = "everyone" }
    inv:ask { "What changed?", default = "nothing" }
    inv:ask { "What is the symptom?", key = "symptom", given = p.symptom }
    inv.decided = "disk"
  end },
  step "work" { budget = "1ms", function(inv, p)
    local f = io.open(p.dir .. "/stop")
    if f then f:close(); os.remove(p.dir .. "/stop"); require("perf_manual._c.sys").request_stop() return end
    local path = inv:save_artifact("numbers.json", { p99_ms = 180 })
    local hyp = inv:hypothesis "the disk is slow"
    hyp:supported_by(path, "p99 is 180 ms")
    inv:finding { resource = "disk", metric = "p99", value = 180, severity = "high" }
    local g = io.open(p.dir .. "/fail")
    if g then g:close(); error("boom in work") end
    local t0 = require("perf_manual._c.sys").now()
    while require("perf_manual._c.sys").now() - t0 < 0.01 do end
    inv:print("decided " .. tostring(inv.decided))
  end },
  step "report" { function(inv)
    local h2 = inv:hypothesis "the CPU is saturated"
    h2:refuted_by("raw_data/numbers.json", "not measured as busy")
    inv:draft_report "technical"
  end },
}
]]

describe('investigation engine', function()
  local root, dir, pb
  before_each(function()
    root, dir = tmpdir(), tmpdir()
    pb = dir .. '/engine-test.lua'
    write(pb, PLAYBOOK)
  end)
  after_each(function() os.execute('rm -rf ' .. root .. ' ' .. dir) end)

  local function run(args)
    return h.pm(string.format('run %s --store %s --dir %s %s', pb, root, dir, args))
  end

  it('answers from an answers file and flags in batch mode, defaults marked not answered', function()
    write(dir .. '/answers.yaml', 'when: Monday 10:00\n"Who is affected?": the EU customers\n')
    local out, err, st = run('--symptom "p99 doubled" --batch --answers ' .. dir
      .. '/answers.yaml --answer "what_changed=deploy 4.2, config"')
    assert.equal(0, st, err)
    assert.matches('decided disk', out)
    local m = meta_of(root)
    local by = {}
    for _, q in ipairs(m.checklist) do by[q.key] = q end
    assert.same({ 'Monday 10:00', true, 'answers' }, { by.when.answer, by.when.answered, by.when.source })
    assert.same({ 'the EU customers', true }, { by.who.answer, by.who.answered })
    assert.same({ 'deploy 4.2, config', true }, { by.what_changed.answer, by.what_changed.answered })
    assert.same({ 'p99 doubled', 'flag' }, { by.symptom.answer, by.symptom.source })
    -- a run with nothing given takes the defaults and says so in the report
    os.execute('rm -rf ' .. root .. '/*')
    local _
    _, err, st = run('--symptom x --batch')
    assert.equal(0, st, err)
    local m2, folder = meta_of(root)
    for _, q in ipairs(m2.checklist) do
      if q.key ~= 'symptom' then assert.is_false(q.answered); assert.equal('default', q.source) end
    end
    local report = assert(util.readfile(folder .. '/report.md'))
    assert.matches('| When did it start%? | unknown | not answered %(default%) |', report)
  end)

  it('prompts on a terminal; Enter accepts the default', function()
    -- script(1) gives the run a pseudo-terminal; the answers come on its stdin
    local cmd = string.format("printf 'since the deploy\\n\\n\\n' | script -qec '%s/bin/perf_manual run %s "
      .. "--store %s --dir %s --symptom x' /dev/null",
      h.root, pb, root, dir)
    local out = io.popen(cmd):read('*a')
    assert.matches('%? When did it start%? %[unknown%]', out)
    local m = meta_of(root)
    assert.same({ 'since the deploy', true, 'terminal' }, { m.checklist[1].answer, m.checklist[1].answered,
      m.checklist[1].source })
    assert.same({ 'everyone', true, 'terminal (default accepted)' }, { m.checklist[2].answer,
      m.checklist[2].answered, m.checklist[2].source })
  end)

  it('keeps the timeline in order, timestamped, with every step, answer, finding and link', function()
    local _, err, st = run('--symptom x --batch')
    assert.equal(0, st, err)
    local m, folder = meta_of(root)
    local prev = ''
    for _, e in ipairs(m.timeline) do
      assert.matches('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$', e.t)
      assert.is_true(e.t >= prev)
      prev = e.t
    end
    local k = kinds(m)
    local function pos(s)
      for i, v in ipairs(k) do if v == s then return i end end
      error('not in timeline: ' .. s .. '\n' .. table.concat(k, '\n'))
    end
    assert.is_true(pos('step-start:questions') < pos('answer:When did it start? → unknown (not answered)'))
    assert.is_true(pos('step-done:questions') < pos('step-start:work'))
    assert.is_true(pos('artifact:raw_data/numbers.json') < pos('hypothesis:H1: the disk is slow'))
    local linked = pos('evidence:raw_data/numbers.json supports H1: p99 is 180 ms')
    assert.is_true(pos('hypothesis:H1: the disk is slow') < linked)
    assert.is_true(pos('finding:disk p99 = 180') < pos('step-done:work'))
    assert.equal('finished:complete', k[#k])
    -- the budget of "work" (1ms) was exceeded: a warning on screen and in the timeline
    assert.matches("step 'work' ran past its 1%.0ms budget", err)
    pos('step-done:report')
    assert.same({}, inv_mod.validate(folder))
    assert.equal('supported', m.hypotheses[1].status)
    assert.equal('refuted', m.hypotheses[2].status)
    assert.equal('disk', m.state.decided)
  end)

  it('records a failing step with its traceback in the log and resumes from it', function()
    write(dir .. '/fail', '')
    local out, err, st = run('--symptom x --batch')
    assert.equal(70, st)
    assert.not_matches('decided', out)
    local m, folder = meta_of(root)
    assert.same({ 'done', 'failed' }, { m.steps[1].status, m.steps[2].status })
    assert.equal('failed', m.status)
    assert.matches("^perf_manual: step 'work' failed: [^\n]*engine%-test%.lua:%d+: boom in work\n", err)
    assert.not_matches('stack traceback', err)
    local log = assert(util.readfile(folder .. '/log.txt'))
    assert.matches('boom in work', log)
    assert.matches('stack traceback', log)
    -- fixed: resume skips the completed step and keeps what it decided
    os.remove(dir .. '/fail')
    out, err, st = h.pm(string.format('run %s --store %s --resume %s', pb, root, m.id))
    assert.equal(0, st, err)
    assert.matches('decided disk', out)
    local m2 = meta_of(root)
    assert.same({ 'done', 'done', 'done' }, { m2.steps[1].status, m2.steps[2].status, m2.steps[3].status })
    assert.equal('complete', m2.status)
    local k = kinds(m2)
    local skipped, resumed = false, false
    for _, v in ipairs(k) do
      if v == 'step-skipped:questions' then skipped = true end
      if v:match('^resumed:') then resumed = true end
    end
    assert.is_true(skipped and resumed)
    -- the failed attempt's finding was replaced, not duplicated
    assert.equal(1, #m2.findings)
    assert.equal(1, #m2.hypotheses[1].evidence)
  end)

  it('marks a step interrupted on Ctrl-C and resumes from that step', function()
    write(dir .. '/stop', '')
    local out, err, st = run('--symptom x --batch')
    -- stopped early with everything saved: exit 0, said on stderr (README, Commands)
    assert.equal(0, st)
    assert.matches('stopped early', err)
    assert.not_matches('decided', out)
    local m = meta_of(root)
    assert.equal('interrupted', m.steps[2].status)
    assert.equal('interrupted', m.status)
    assert.matches('^stopped early', m.status_reason)
    assert.is_nil(m.steps[3])
    assert.truthy(err:find('--resume ' .. m.id, 1, true), err)
    out, err, st = h.pm(string.format('run %s --store %s --resume %s', pb, root, m.id))
    assert.equal(0, st, err)
    assert.matches('decided disk', out)
    local m2 = meta_of(root)
    assert.same({ 'done', 'done', 'done' }, { m2.steps[1].status, m2.steps[2].status, m2.steps[3].status })
  end)

  it('--resume of a complete investigation says so, runs nothing and writes nothing (exit 0)', function()
    local _, err, st = run('--symptom x --batch')
    assert.equal(0, st, err)
    local m, folder = meta_of(root)
    assert.equal('complete', m.status)
    local before = util.readfile(folder .. '/metadata.yaml')
    local out, err2, st2 = h.pm(string.format('run %s --store %s --resume %s', pb, root, m.id))
    assert.equal(0, st2, err2)
    assert.equal('Investigation ' .. m.id .. ' is complete: nothing to resume (`perf_manual show ' .. m.id
      .. '` shows it)\n', out)
    assert.equal(before, util.readfile(folder .. '/metadata.yaml'))
  end)

  it('a real SIGINT during investigate marks the step interrupted; --resume continues there', function()
    local sys = require('perf_manual._c.sys')
    local log = dir .. '/out.txt'
    local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'investigate', '--workload',
      h.workload('sleeper') .. ' 60',
      '--symptom', 'slow', '--batch', '--duration', '10', '--store', root }, { stdout = log, stderr = log }))
    -- wait until it is measuring (the quantify step), then Ctrl-C it
    local m
    for _ = 1, 100 do
      sys.sleep(0.1)
      local id = store.list(root)[1]
      m = id and store.open(root, id):load_metadata()
      if m and m.steps and m.steps[2] and m.steps[2].status == 'running' then break end
    end
    sys.kill(pid, 2)
    local how, code = sys.wait(pid)
    assert.same({ 'exited', 0 }, { how, code }, util.readfile(log))
    assert.matches('stopped early', util.readfile(log))
    m = meta_of(root)
    assert.same({ 'done', 'interrupted' }, { m.steps[1].status, m.steps[2].status })
    assert.equal('interrupted', m.status)
    -- the launched workload was stopped with the run
    local launched
    for _, e in ipairs(m.timeline) do launched = launched or tonumber(tostring(e.what):match('as pid (%d+)$')) end
    assert.is_nil(io.open('/proc/' .. launched .. '/stat'))
    local out, err, st = h.pm(string.format('investigate --resume %s --store %s --duration 1', m.id, root))
    assert.equal(0, st, err)
    assert.matches('== 2/7 quantify', out)
    assert.not_matches('== 1/6', out)
    local m2 = meta_of(root)
    assert.equal('complete', m2.status)
    assert.equal('done', m2.steps[2].status)
  end)

  it('refuses writes outside the investigation folder through inv:write', function()
    write(dir .. '/escape.lua', [[
      return playbook { name = "escape", summary = "s", investigation = true,
        step "try" { function(inv) inv:write("../../escaped.txt", "x") end } }]])
    local _, err, st = h.pm(string.format('run %s/escape.lua --store %s --batch', dir, root))
    assert.equal(2, st)
    assert.matches("refusing to write '%.%./%.%./escaped%.txt'", err)
    assert.is_nil(io.open(root .. '/../escaped.txt', 'r'))
  end)

  it('on a full disk: one clear error and no half-made investigation', function()
    if not h.need_root('mounts a tiny tmpfs to fill') then return end
    local mnt = dir .. '/full'
    os.execute('mkdir -p ' .. mnt)
    assert.is_true(os.execute('mount -t tmpfs -o size=256k tmpfs ' .. mnt) == 0)
    local ok, err = pcall(function()
      os.execute('mkdir ' .. mnt .. '/store; dd if=/dev/zero of=' .. mnt .. '/fill bs=4k count=1000 2>/dev/null')
      local _, e, st = h.pm(string.format('run %s --store %s/store --dir %s --symptom x --batch', pb, mnt, dir))
      assert.equal(2, st)
      assert.matches('^perf_manual: cannot write [^\n]*/metadata%.yaml[^\n]*: No space left on device\n$', e)
      assert.same({}, store.list(mnt .. '/store'))
    end)
    os.execute('umount ' .. mnt)
    if not ok then error(err, 0) end
  end)

  it('resolves --workload as a pid, a process name or a command to launch', function()
    local sys = require('perf_manual._c.sys')
    local pid = assert(sys.spawn({ h.workload('sleeper'), '30' }, { stdout = 'null', stderr = 'null' }))
    sys.sleep(0.2)
    local fake = { dir = dir, log = function() end }
    local ok, err = pcall(function()
      local by_pid = inv_mod.resolve_workload(fake, tostring(pid))
      assert.equal(pid, by_pid.pid)
      assert.equal('pid ' .. pid .. ' (sleeper)', by_pid.label)
      assert.is_false(by_pid.launched)
      local by_name = inv_mod.resolve_workload(fake, 'sleeper')
      assert.is_false(by_name.launched)
      assert.is_number(by_name.pid)
      local launched = inv_mod.resolve_workload(fake, h.workload('sleeper') .. ' 30')
      assert.is_true(launched.launched)
      assert.equal('running', (sys.wait(launched.pid, true)))
      inv_mod.stop_workload({ workload_info = launched, log = function() end })
      assert.is_nil(io.open('/proc/' .. launched.pid .. '/stat'))
      local e = select(2, pcall(inv_mod.resolve_workload, fake, 'no-such-thing-here'))
      assert.equal("--workload: no process, service or command named 'no-such-thing-here'", e.user_error)
    end)
    sys.kill(pid, 9); sys.wait(pid)
    if not ok then error(err, 0) end
  end)

  it('turns USE rows into findings and a verdict word', function()
    local playbook = require('perf_manual.playbook')
    local ctx = playbook.context(playbook.playbook { name = 't', summary = 's', run = function() end }, {},
      { out = io.open('/dev/null', 'w') })
    local use = require('perf_manual.analyzers.use').normalize {
      rows = { { resource = 'cpu', name = 'CPU', status = 'ok', score = 0 },
               { resource = 'disk', name = 'vda', status = 'HIGH', score = 3, why = { 'aqu-sz 4' },
                 saturation = { value = 4 } },
               { resource = 'lock', name = 'Mutex/locks', status = 'warn', score = 1, why = { '30% waits' } },
               { resource = 'memory', name = 'Memory', status = 'not measured' } },
      verdict = { resource = 'disk', name = 'vda', text = 'disk vda is the most saturated' },
    }
    assert.equal('disk', use.verdict)
    assert.equal('HIGH', use.disk.status)
    local made = ctx:finding_from(use)
    assert.same({ 'high', 'medium' }, { made[1].severity, made[2].severity })
    assert.equal('vda: aqu-sz 4', made[1].summary)
  end)
  it('runs an investigation playbook in a stored context; the engine alone refuses to', function()
    local playbook = require('perf_manual.playbook')
    local ctx_root = tmpdir()
    local ctx_pb = playbook.playbook { name = 'ctx-test', summary = 's', investigation = true,
      playbook.step 'one' { function(inv) inv:note('stored ' .. tostring(inv.dir ~= nil)) end } }
    local ok, err = pcall(playbook.run, ctx_pb, { store = ctx_root, name = 'ctx', batch = true })
    assert.is_false(ok)
    assert.matches('ctx%-test is an investigation: run it with perf_manual.investigation.run', err)
    assert.same({}, store.list(ctx_root))
    local inv = inv_mod.run(ctx_pb, { store = ctx_root, name = 'ctx', batch = true },
      { out = io.open('/dev/null', 'w') })
    assert.equal('complete', inv.status)
    local m = meta_of(ctx_root)
    assert.equal('stored true', m.notes[1].text or m.notes[1])
    os.execute('rm -rf ' .. ctx_root)
  end)
end)
