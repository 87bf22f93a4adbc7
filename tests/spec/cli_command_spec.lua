-- `perf_manual COMMAND [options] -- prog args`: the command after `--` is the
-- target, argv kept as given, and the window is its life unless --duration.
local cli = require('perf_manual.cli')
local playbook = require('perf_manual.playbook')
local targets = require('perf_manual.measure.target')
local h = test_helpers

local function pb(name) return playbook.load(h.root .. '/playbooks/' .. name .. '.lua') end

local function parse(name, argv)
  return cli.parse_params(pb(name), argv, 'perf_manual ' .. name)
end

local function user_error(fn)
  local ok, e = pcall(fn)
  assert.is_false(ok)
  assert.is_table(e, tostring(e))
  return e.user_error
end

describe('-- COMMAND on the command line', function()
  it('makes everything after -- the target, its own dashes included', function()
    local p = parse('trace', { '--events', 'syscalls', '--', 'sh', '-c', 'x --y', '--duration', '3' })
    assert.same({ 'syscalls' }, p.events)
    assert.equal(targets.argv_spec({ 'sh', '-c', 'x --y', '--duration', '3' }), p.target)
    -- the --duration after -- is the command's, not ours: the window is the command's life
    assert.equal(math.huge, p.duration)
    local t = targets.resolve(p.target)
    assert.equal('command', t.kind)
    assert.is_true(t.exact)
    assert.same({ '-c', 'x --y', '--duration', '3' }, { t.argv[2], t.argv[3], t.argv[4], t.argv[5] })
    assert.matches('/sh$', t.argv[1])
    assert.equal("sh -c 'x --y' --duration 3", t.label)
  end)

  it('keeps a --duration given before --', function()
    local p = parse('profile', { '--duration', '30', '--off-cpu', '--', './a.out', '-v' })
    assert.equal(30, p.duration)
    assert.is_true(p.off_cpu)
    assert.equal(targets.argv_spec({ './a.out', '-v' }), p.target)
  end)

  it('works on every command that takes a target', function()
    for _, name in ipairs({ 'trace', 'profile', 'use-check', 'collect' }) do
      local argv = { '--', 'sleep', '1' }
      if name == 'collect' then argv = { '--output', '/tmp/x', '--', 'sleep', '1' } end
      local p = parse(name, argv)
      assert.equal(targets.argv_spec({ 'sleep', '1' }), p.target, name)
    end
    local p = parse('red-check', { '--', 'sleep', '1' })
    assert.equal(targets.argv_spec({ 'sleep', '1' }), p.command)
  end)

  it('refuses a target given twice, and -- with no command', function()
    assert.equal('trace: give --pid or -- COMMAND, not both',
      user_error(function() parse('trace', { '--pid', '1', '--', 'sleep', '1' }) end))
    assert.equal('trace: give --target or -- COMMAND, not both',
      user_error(function() parse('trace', { '--target', 'system', '--', 'sleep', '1' }) end))
    assert.matches('^trace: expected a command after %-%-',
      user_error(function() parse('trace', { '--' }) end))
    assert.equal('red-check: give --passive or -- COMMAND, not both',
      user_error(function() parse('red-check', { '--passive', '1', '--', 'sleep', '1' }) end))
  end)

  it('says when the command cannot be run', function()
    assert.matches("cannot run 'no%-such%-prog%-x'",
      user_error(function() targets.resolve(targets.argv_spec({ 'no-such-prog-x' })) end))
  end)

  it('prints the usage line from the real binary for -- without a command', function()
    local _, err, st = h.pm('trace --events syscalls --')
    assert.equal(2, st)
    assert.matches('expected a command after %-%-', err)
  end)
end)

describe('-- COMMAND and the window', function()
  it('keeps the default window of commands whose duration is not until_exit', function()
    local p = cli.parse_params(playbook.load(test_helpers.root .. '/playbooks/use-check.lua'), { '--', 'sleep', '1' },
      'perf_manual use-check')
    assert.equal(5, p.duration)
  end)
end)
