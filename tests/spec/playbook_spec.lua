-- perf_manual.playbook: the language (params, steps, declarations), loading
-- and its errors, the search path, --help, and running steps.
local playbook = require('perf_manual.playbook')
local util = require('perf_manual.util')
local h = test_helpers
local param, step = playbook.param, playbook.step

local function tmpdir()
  local d = os.tmpname(); os.remove(d); os.execute('mkdir -p ' .. d)
  return d
end

local function write(path, text)
  local f = assert(io.open(path, 'w')); f:write(text); f:close()
  return path
end

local function user_error_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok)
  assert.is_true(util.is_user_error(e), tostring(e))
  return e.user_error
end

-- a sink for inv.out that keeps what was written
local function buffer()
  local b = { parts = {} }
  function b:write(...) for i = 1, select('#', ...) do self.parts[#self.parts + 1] = select(i, ...) end end
  function b.flush() end
  function b:text() return table.concat(self.parts) end
  return b
end

describe('playbook params', function()
  it('convert command-line text into typed values or say what was expected', function()
    local function conv(p, v) return p:convert(v) end
    assert.equal(2.5, conv(param.number {}, '2.5'))
    assert.same({ nil, 'expected a number' }, { conv(param.number {}, 'x') })
    assert.equal(7, conv(param.integer {}, '7'))
    assert.same({ nil, 'expected an integer' }, { conv(param.integer {}, '7.5') })
    assert.equal(0.5, conv(param.duration {}, '500ms'))
    assert.equal(120, conv(param.duration {}, '2m'))
    assert.same({ nil, 'expected a duration like 10, 10s, 500ms or 2m' }, { conv(param.duration {}, 'soon') })
    assert.equal(42, conv(param.pid {}, '42'))
    for _, bad in ipairs({ '0', '-3', '1.5', 'init' }) do
      assert.same({ nil, 'expected a process id' }, { conv(param.pid {}, bad) }, bad)
    end
    assert.same({ 'io', 'lock', 'sched' }, conv(param.list {}, 'io, lock  sched'))
    assert.same({ 'a', 'b' }, conv(param.list {}, { 'a', 'b' }))
    assert.same({ 'KEY=a, b' }, conv(param.strings {}, 'KEY=a, b'))
    assert.is_true(conv(param.flag {}, 'yes'))
    assert.equal('nginx.service', conv(param.target {}, 'nginx.service'))
    assert.equal('/x/y', conv(param.path {}, '/x/y'))
    local c = param.choice { choices = { 'svg', 'folded' } }
    assert.equal('svg', conv(c, 'svg'))
    assert.same({ nil, 'expected one of: svg, folded' }, { conv(c, 'png') })
  end)

  it('keep their description, default and options; defaults and flags are optional', function()
    local p = param.duration { 'how long', default = '10s', short = 'd' }
    assert.same({ 'duration', 'how long', '10s', true, 'd' }, { p.kind, p.desc, p.default, p.optional, p.short })
    assert.is_falsy(param.string { 'must give' }.optional)
    assert.is_true(param.flag { 'f' }.optional)
    assert.is_true(param.string { 'x', optional = true }.optional)
  end)
end)

describe('playbook declarations', function()
  local function body() end

  it('collect params in the order they were declared and the steps in order', function()
    local pb = playbook.playbook {
      name = 'decl', summary = 'sum',
      params = { zeta = param.string { 'z' }, alpha = param.number { 'a' }, mid = param.flag { 'm' } },
      step 'one' { body }, step 'two' { budget = '2m', run = body },
    }
    local names = {}
    for _, p in ipairs(pb.params) do names[#names + 1] = p.name end
    assert.same({ 'zeta', 'alpha', 'mid' }, names)
    assert.equal('one', pb.steps[1].name)
    assert.equal(120, pb.steps[2].budget)
    assert.equal('sum', pb.summary)
    assert.same({}, pb.needs)
  end)

  it('reject malformed declarations with the reason', function()
    assert.has_error(function() playbook.playbook('x') end, 'playbook: expected a table')
    assert.has_error(function() playbook.playbook { summary = 'x', step 's' { body } } end, "playbook: missing 'name'")
    assert.has_error(function() playbook.playbook { name = 'e' } end, "playbook 'e': no steps and no run function")
    assert.has_error(function() playbook.playbook { name = 'p', params = { x = 'text' }, run = body } end,
      "playbook 'p': param 'x' must be made with param.<type>{}")
    assert.has_error(function() playbook.playbook { name = 'l', run = body, 'not a step' } end,
      "playbook 'l': list entries must be steps")
    assert.has_error(function() step 'nofn' { budget = '1s' } end, "step 'nofn': expected a function")
  end)

  it('give investigation playbooks the engine options, and their own required ones become checked', function()
    local pb = playbook.playbook {
      name = 'inv', investigation = true, run = body,
      params = { symptom = param.string { 'what is slow' } },
    }
    local have = {}
    for _, p in ipairs(pb.params) do have[p.name] = p end
    for _, n in ipairs({ 'store', 'answers', 'answer', 'batch', 'resume', 'replay', 'name' }) do
      assert.is_true(have[n] ~= nil and have[n].engine, n)
    end
    assert.is_true(have.symptom.optional)
    assert.equal('inv: missing --symptom (what is slow)', user_error_of(pb.check, {}))
    assert.has_no.errors(function() pb.check({ resume = 'earlier' }) end)
    assert.has_no.errors(function() pb.check({ symptom = 'x' }) end)
  end)
end)

describe('playbook loading', function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute('rm -rf ' .. dir) end)

  it('loads a file and records where it came from', function()
    local path = h.root .. '/playbooks/examples/cpu-saturation.lua'
    local pb = playbook.load(path)
    assert.equal('cpu-saturation', pb.name)
    assert.equal(path, pb.path)
    assert.is_true(#pb.steps >= 1)
  end)

  it('names the file and line of a syntax error, a declaration error, and a wrong return', function()
    local p = write(dir .. '/syntax.lua', 'return playbook {\n  name = "s"\n  summary = "x"\n}\n')
    assert.matches('^playbook .*/syntax%.lua:3: ', user_error_of(playbook.load, p))
    p = write(dir .. '/decl.lua', 'local x = 1\nreturn playbook { name = "d" }\n')
    assert.matches('^playbook ' .. p:gsub('%p', '%%%0') .. ": .*playbook 'd': no steps and no run function$",
      user_error_of(playbook.load, p))
    p = write(dir .. '/nothing.lua', 'return { name = "n" }\n')
    assert.equal('playbook ' .. p .. ': the file must return playbook { ... }', user_error_of(playbook.load, p))
    assert.matches('^playbook .*/absent%.lua', user_error_of(playbook.load, dir .. '/absent.lua'))
  end)

  it('runs the file with playbook, param and step and the ordinary globals, setting no new globals', function()
    local p = write(dir .. '/env.lua', 'leaked = 1\n'
      .. 'return playbook { name = "env", summary = tostring(type(string.format)), run = function() end }\n')
    local pb = playbook.load(p)
    assert.equal('function', pb.summary)
    assert.is_nil(rawget(_G, 'leaked'))
  end)

  it('searches --playbooks dirs, then $PERF_MANUAL_PLAYBOOKS, ~/.config, the built-in ones', function()
    local dirs = playbook.search_path({ '/first' })
    assert.equal('/first', dirs[1])
    assert.equal(h.root .. '/playbooks', dirs[#dirs])
    local home = os.getenv('HOME')
    if home then assert.equal(home .. '/.config/perf_manual/playbooks', dirs[#dirs - 1]) end
    -- through the command line, where the environment variable can be set
    write(dir .. '/fold.lua',
      'return playbook { name = "fold", summary = "mine", run = function(inv) inv:print("shadowed") end }\n')
    local out, err, st = h.pm('fold', 'PERF_MANUAL_PLAYBOOKS=/nowhere:' .. dir)
    assert.equal(0, st, err)
    assert.equal('shadowed\n', out)
  end)

  it('finds the first match on the path and lists every playbook once, with load errors', function()
    write(dir .. '/fold.lua', 'return playbook { name = "fold", summary = "mine", run = function() end }\n')
    write(dir .. '/bad.lua', 'return 1\n')
    local dirs = { dir, h.root .. '/playbooks' }
    assert.equal(dir .. '/fold.lua', playbook.find('fold', dirs))
    assert.equal(h.root .. '/playbooks/show.lua', playbook.find('show', dirs))
    assert.is_nil(playbook.find('no-such', dirs))
    local by, n = {}, {}
    for _, e in ipairs(playbook.list(dirs)) do by[e.name] = e; n[e.name] = (n[e.name] or 0) + 1 end
    assert.equal(1, n.fold)
    assert.equal('mine', by.fold.pb.summary)
    assert.is_nil(by.bad.pb)
    assert.matches('the file must return playbook', by.bad.err)
    assert.equal('show', by.show.pb.name)
  end)
end)

describe('playbook --help', function()
  it('renders the summary, every option with its type, choices and default, and the examples', function()
    local dir = tmpdir()
    local p = write(dir .. '/helpme.lua', [[return playbook {
  name = 'helpme', summary = 'Shows help.', examples = '  perf_manual run helpme.lua --depth 3',
  params = {
    depth = param.integer { 'how deep', default = 2 },
    out_format = param.choice { 'output format', choices = { 'text', 'json' }, default = 'text' },
    verbose = param.flag { 'say more', short = 'v' },
    where = param.path { 'input file', positional = true },
  },
  run = function() end,
}
]])
    local out, err, st = h.pm('run ' .. p .. ' --help')
    os.execute('rm -rf ' .. dir)
    assert.equal(0, st, err)
    assert.matches('^Usage: ', out)
    assert.matches('Shows help%.', out)
    assert.matches('%-%-depth <integer> +how deep %[default: 2%]', out)
    assert.matches('%-%-out%-format <choice> +output format %(text|json%) %[default: text%]', out)
    assert.matches('%-v, %-%-verbose +say more', out)
    assert.matches('where +input file', out)
    assert.matches('Examples:\n  perf_manual run helpme%.lua %-%-depth 3', out)
  end)
end)

describe('playbook runs', function()
  it('run the steps in order with the params, print through inv, and record the timeline', function()
    local order = {}
    local pb = playbook.playbook {
      name = 'steps',
      step 'first' { function(inv, p) order[#order + 1] = 'first'; inv:print('n is', p.n) end },
      step 'second' { function(inv) order[#order + 1] = 'second'; inv:printf('%d%%\n', 50) end },
    }
    local out = buffer()
    local inv = playbook.run(pb, { n = 3 }, { out = out, err = buffer() })
    assert.same({ 'first', 'second' }, order)
    assert.equal('n is 3\n50%\n', out:text())
    local kinds = {}
    for _, e in ipairs(inv.timeline) do kinds[#kinds + 1] = e.kind .. ':' .. e.what end
    assert.same({ 'step-start:first', 'step-done:first', 'step-start:second', 'step-done:second' }, kinds)
    assert.matches('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$', inv.timeline[1].t)
  end)

  it('stop after the step that calls inv:stop()', function()
    local ran = {}
    local pb = playbook.playbook {
      name = 'stopper',
      step 'a' { function(inv) ran[#ran + 1] = 'a'; inv:stop() end },
      step 'b' { function() ran[#ran + 1] = 'b' end },
    }
    playbook.run(pb, {}, { out = buffer(), err = buffer() })
    assert.same({ 'a' }, ran)
  end)

  it('pass a user error through and turn any other error into one naming the step', function()
    local pb = playbook.playbook { name = 'u', step 'bad input' { function() util.user_error('no such disk') end } }
    assert.equal('no such disk', user_error_of(playbook.run, pb, {}, { out = buffer(), err = buffer() }))
    pb = playbook.playbook { name = 'crash', step 'explode' { function() error('kaboom') end } }
    local ok, e = pcall(playbook.run, pb, {}, { out = buffer(), err = buffer() })
    assert.is_false(ok)
    assert.matches("^crash: step 'explode' failed: .*kaboom", e)
    assert.matches('stack traceback', e)
  end)

  it('refuse to run a playbook whose needs are not met, except in replay', function()
    local pb = playbook.playbook { name = 'needy', needs = { 'root' }, run = function(inv) inv:print('ran') end }
    local out = buffer()
    playbook.run(pb, { replay = '/some/dir' }, { out = out, err = buffer() })
    assert.equal('ran\n', out:text())
    if require('perf_manual._c.sys').geteuid() == 0 then
      -- as root the check passes; as nobody it says what is needed
      local dir = tmpdir()
      write(dir .. '/needy.lua', 'return playbook { name = "needy", needs = { "root" }, run = function() end }\n')
      os.execute('chmod -R a+rX ' .. dir)
      local copy, remove = h.readable_copy()
      local _, err, st = h.pm_at(copy, 'run ' .. dir .. '/needy.lua',
        'setpriv --reuid=65534 --regid=65534 --clear-groups')
      remove(); os.execute('rm -rf ' .. dir)
      assert.equal(2, st)
      assert.equal('perf_manual: needy: needs root (or CAP_BPF and CAP_PERFMON): run it with sudo\n', err)
    end
  end)

  it('warn when a step runs past its budget', function()
    local sys = require('perf_manual._c.sys')
    local pb = playbook.playbook { name = 'slow', step 'nap' { budget = '10ms', function() sys.sleep(0.05) end } }
    local err = buffer()
    local inv = playbook.run(pb, {}, { out = buffer(), err = err })
    assert.matches("^perf_manual: step 'nap' ran past its 10%.0ms budget %(%d+%.%dms%)", err:text())
    assert.equal('warning', inv.timeline[#inv.timeline - 1].kind)
  end)
end)

describe('playbook context', function()
  local function ctx() return playbook.context(playbook.playbook { name = 'c', run = function() end }, {},
    { out = buffer(), err = buffer(), batch = true }) end

  it('records checks, findings and findings from USE rows of a recorded result', function()
    local inv = ctx()
    assert.is_true(inv:check('run queue is short', true))
    assert.is_false(inv:check('CPUs not saturated', false, { resource = 'cpu', severity = 'high' }))
    assert.same({ 'high', 'failed check: CPUs not saturated', 'CPUs not saturated' },
      { inv.findings[1].severity, inv.findings[1].summary, inv.findings[1].check })
    local use = util.json_decode(h.fixture('datadirs/fsync_writer/raw_data/use-check.json'))
    use.artifact = 'raw_data/use-check.json'
    local made = inv:finding_from(use)
    local disk
    for _, f in ipairs(made) do if f.resource == 'disk' then disk = f end end
    assert.equal('high', disk.severity)
    assert.equal('vda', disk.name)
    assert.equal('raw_data/use-check.json', disk.evidence)
    assert.equal(#made + 1, #inv.findings)
  end)

  it('answers questions by key, question text or its slug, then the flag, then the default, once per key', function()
    local inv = ctx()
    inv.answers = { baseline = 'yes', when_did_it_start = 'monday', ['Which host?'] = 'vm' }
    assert.equal('yes', inv:ask { 'Is there a baseline?', key = 'baseline', default = 'no' })
    assert.equal('monday', inv:ask('When did it start?'))
    assert.equal('vm', inv:ask('Which host?'))
    assert.equal('given', inv:ask { 'What is slow?', key = 'symptom', given = 'given' })
    local a, entry = inv:ask { 'Anything else?', default = 'nothing' }
    assert.equal('nothing', a)
    assert.same({ false, 'default', 'anything_else' }, { entry.answered, entry.source, entry.key })
    assert.equal('yes', inv:ask { 'Baseline, again?', key = 'baseline' })
    assert.equal(5, #inv.checklist)
  end)

  it('weighs evidence against a hypothesis double and ranks the best supported first', function()
    local inv = ctx()
    local disk = inv:hypothesis('the disk is slow')
    local cpu = inv:hypothesis('the CPU is saturated')
    assert.equal(disk, inv:hypothesis('the disk is slow'))
    assert.equal('open', disk.status)
    disk:supported_by('raw_data/trace-io.json', 'p99 high')
    disk:supported_by({ artifact = 'raw_data/use-check.json' }, 'disk HIGH')
    assert.equal('supported', disk.status)
    disk:refuted_by('raw_data/trace-syscall.json', 'few syscalls')
    assert.equal('contested', disk.status)  -- 2 for, 1 against weighing 2
    disk:supported_by('raw_data/trace-io.json', 'p99 high')  -- the same evidence again: kept once
    assert.equal(3, #disk.evidence)
    cpu:refuted_by('raw_data/use-check.json', 'idle')
    assert.equal('refuted', cpu.status)
    local ranked = inv:rank_hypotheses()
    assert.same({ 'H1', 'H2' }, { ranked[1].id, ranked[2].id })
    assert.has_error(function() inv:evidence(disk, 'x', 'maybe') end,
      "[perf_manual.playbook] evidence: stance must be 'supports' or 'refutes'")
  end)

  it('shows text, rendered objects and unavailable results', function()
    local inv = ctx()
    inv:show('line')
    inv:show({ text = 'from text\n' })
    inv:show({ render = function() return 'rendered' end })
    inv:show({ available = false, why = 'no BTF' })
    inv:show(nil)
    assert.equal('line\nfrom text\nrendered\nnot available: no BTF\n', inv.out:text())
  end)
end)
