-- exec-monitor on events recorded from a real run of
-- tests/fixtures/runbooks/exec-monitor/scenario.sh (`exec-monitor --target
-- 'cmd:sh scenario.sh' --rules rules.lua --save`): the built-in rules and a
-- team's file judged again, the rules' checks, and the matching logic.
local h = test_helpers
local util = require('perf_manual.util')
local em = require('perf_manual.runbooks.exec_monitor')
local DIR = h.root .. '/tests/fixtures/runbooks/exec-monitor/'

local function replay(extra)
  local out, err, st = h.pm('exec-monitor --replay ' .. DIR .. 'scenario ' .. (extra or ''))
  assert.equal(0, st, err)
  local alerts = {}
  for line in out:gmatch('[^\n]+') do alerts[#alerts + 1] = assert(util.json_decode(line), line) end
  return alerts, err
end

local function rules_of(alerts)
  local r = {}
  for _, a in ipairs(alerts) do r[#r + 1] = a.rule end
  table.sort(r)
  return r
end

describe('exec-monitor (replay)', function()
  it('raises the built-in alerts as JSON lines, each with its event', function()
    local alerts, err = replay()
    assert.same({ 'program run from a temporary directory', 'program run from a temporary directory',
      'sensitive file opened', 'shell started by a service' }, rules_of(alerts))
    for _, a in ipairs(alerts) do
      assert.matches('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$', a.time)
      assert.is_table(a.event)
      assert.is_string(a.priority)
    end
    local by = {}
    for _, a in ipairs(alerts) do by[a.rule] = a end
    assert.equal('/etc/shadow', by['sensitive file opened'].event.path)
    assert.equal('cat', by['sensitive file opened'].event.comm)
    assert.equal('nginx', by['shell started by a service'].event.parent_comm)
    assert.matches('^exec%-monitor: .* %(recorded%): %d+ events %(%d+ exec, 2 open, 1 connect%), 4 alerts from 4 rules',
      err)
  end)

  it('adds a team\'s rules from a file, or uses only them', function()
    local alerts = replay('--rules ' .. DIR .. 'rules.lua')
    assert.equal(6, #alerts)
    alerts = replay('--rules ' .. DIR .. 'rules.lua --no-default-rules')
    assert.same({ 'connect to the discard port', 'host files read' }, rules_of(alerts))
    for _, a in ipairs(alerts) do
      if a.rule == 'connect to the discard port' then
        assert.equal(9, a.event.dport)
        assert.equal('127.0.0.1', a.event.daddr)
        assert.matches('connects to 127%.0%.0%.1:9$', a.output)
      end
    end
  end)

  it('prints every event with --events', function()
    local lines = replay('--events --no-default-rules --rules ' .. DIR .. 'rules.lua')
    local rec = assert(util.json_decode(h.fixture('runbooks/exec-monitor/scenario/exec-monitor.json')))
    local events = 0
    for _, l in ipairs(lines) do if l.event and not l.rule then events = events + 1 end end
    assert.equal(#rec.events, events)
  end)

  it('refuses bad rules in one line, and survives a rule that fails', function()
    local tmp = os.tmpname()
    local f = io.open(tmp, 'w')
    f:write("return { { name = 'x', on = 'fork' } }")
    f:close()
    local _, err, st = h.pm('exec-monitor --replay ' .. DIR .. 'scenario --rules ' .. tmp)
    assert.equal(2, st)
    assert.matches("^perf_manual: " .. tmp:gsub('%p', '%%%0') .. ": rule 1 'x': 'on' must be exec, open or connect\n$",
      err)
    f = io.open(tmp, 'w')
    f:write("return { { name = 'boom', on = 'exec', when = function(e) return e.nothing.there end } }")
    f:close()
    local out
    out, err, st = h.pm('exec-monitor --replay ' .. DIR .. 'scenario --no-default-rules --rules ' .. tmp)
    os.remove(tmp)
    assert.equal(0, st, err)
    assert.equal('', out)
    assert.matches("rule 'boom': its when%(%) failed", err)
  end)
end)

describe('perf_manual.runbooks.exec_monitor', function()
  local rule = { name = 'r', on = 'exec', paths = { '/usr/bin/' }, match = { comm = { '^cu', '^wg' } },
    unless = { parent_comm = '^cron$' }, output = '{comm} ran {cmdline} ({missing})' }
  it('matches on kind, paths, match, unless and when', function()
    local e = { kind = 'exec', path = '/usr/bin/curl', comm = 'curl', parent_comm = 'bash', args = { 'curl', 'x' } }
    assert.is_true(em.fires(rule, e))
    assert.is_false(em.fires(rule, { kind = 'open', path = '/usr/bin/curl', comm = 'curl' }))
    assert.is_false(em.fires(rule, { kind = 'exec', path = '/bin/curl', comm = 'curl' }))
    assert.is_false(em.fires(rule, { kind = 'exec', path = '/usr/bin/ls', comm = 'ls' }))
    assert.is_false(em.fires(rule, { kind = 'exec', path = '/usr/bin/curl', comm = 'curl', parent_comm = 'cron' }))
    assert.equal('curl ran curl x ({missing})', em.format(rule.output, e))
    local w = { name = 'w', on = 'exec', when = function(x) return x.uid == 0 end }
    assert.is_true(em.fires(w, { kind = 'exec', uid = 0 }))
    assert.is_false(em.fires(w, { kind = 'exec', uid = 1000 }))
  end)

  it('watches in the kernel the prefixes of the open rules only', function()
    local rules = em.load_rules { file = DIR .. 'rules.lua' }
    local w = em.watched(rules)
    assert.is_true(#w >= 2)
    local set = {}
    for _, p in ipairs(w) do set[p] = true end
    assert.is_true(set['/etc/shadow'] and set['/etc/host'])
    assert.is_false(em.all_opens(rules))
    assert.is_true(em.all_opens({ { name = 'x', on = 'open' } }))
  end)

  it('mirrors the event struct of the BPF object', function()
    local bpf = require('perf_manual.bpf')
    local t = require('perf_manual.runbooks.execmon_tracer')
    assert.equal(assert(bpf.btf_type('execmon', 'struct execmon_event')).size, t.sizeof().event)
    assert.equal(132, #t.prefix_key('/etc/shadow'))
  end)
end)
