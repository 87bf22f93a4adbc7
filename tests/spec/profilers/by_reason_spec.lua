-- The off-CPU summary by blocking reason, on a profile recorded from
-- build/workloads/pipe_waiter (75% blocked in read() on a pipe from its
-- feeder, 25% in nanosleep) on a 6.18 kernel.
local profilers = require('perf_manual.profilers')
local report = require('perf_manual.report.profile')
local util = require('perf_manual.util')
local h = test_helpers

local function recorded()
  local stacks = {}
  for line in util.readfile(h.root .. '/tests/fixtures/profile/offcpu_pipe_waiter.folded'):gmatch('[^\n]+') do
    local key, n = line:match('^(.*) (%d+)$')
    local frames = {}
    for f in (key .. ';'):gmatch('(.-);') do frames[#frames + 1] = f end
    stacks[#stacks + 1] = { frames = frames, count = tonumber(n), state = 'S' }
  end
  return profilers.new { kind = 'offcpu', source = 'bpf', unit = 'us', duration = 4, stacks = stacks,
    target = 'pid 8975 (pipe_waiter)', target_kind = 'pid' }
end

describe('off-CPU profile by blocking reason', function()
  it('splits blocked time as the workload does: pipe 75%, sleep 25%', function()
    local br = recorded().by_reason
    assert.equal(2, #br.reasons)
    assert.equal('ipc', br.reasons[1].reason)
    assert.near(0.75, br.reasons[1].share, 0.02)
    assert.equal('sleep', br.reasons[2].reason)
    assert.near(0.25, br.reasons[2].share, 0.02)
    assert.equal(br.total, br.reasons[1].count + br.reasons[2].count)
    -- where the program asked to wait, not the scheduler
    assert.equal('main -> read', br.reasons[1].sites[1].site)
    assert.equal('main -> clock_nanosleep', br.reasons[2].sites[1].site)
  end)

  it('reads the syscall and kernel frames of a stack, scheduler frames left out', function()
    local w = profilers.wait_of { frames = { 'x', 'main', 'read', 'ksys_read_[k]', 'anon_pipe_read_[k]',
      'schedule_[k]', '__schedule_[k]' }, state = 'S' }
    assert.same({ 'anon_pipe_read', 'ksys_read' }, w.frames)
    assert.equal('read', w.syscall)
    assert.equal('S', w.state)
  end)

  it('writes the summary instead of a list topped by __schedule, and puts it in --json', function()
    local p = recorded()
    local text = report.render(p, { top = profilers.top(p, 10) })
    assert.matches('\nblocked 3%.97s: pipe / unix socket 74%%, sleep 26%%\n', text)
    assert.matches('main %-> read', text)
    assert.is_nil(text:find('__schedule', 1, true))
    local doc = profilers.to_json(p)
    assert.equal('ipc', doc.by_reason.reasons[1].reason)
    assert.matches('"by_reason"', util.json_encode(doc))
  end)
end)
