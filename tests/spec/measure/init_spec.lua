-- The measurement session: clock, stop flag, target exit, the overhead
-- budget of its tracers, intervals and the source ladder, on real
-- processes and the real clock.
local measure = require('perf_manual.measure')
local sys = require('perf_manual.sys')
local util = require('perf_manual.util')

-- a tracer whose cost we set: over budget once `cost` passes the budget
local function fake_tracer(cost)
  local t = { cost = cost, stopped = false }
  function t.over_budget(self, pct)
    if self.cost > pct then return true, string.format('fake tracer detached: %.1f%% of one CPU', self.cost) end
    return false
  end
  function t.detach(self, why) self.detached = why end
  function t.stop(self) self.stopped = true; return { events = 3 } end
  function t.close(self) self.closed = true end
  return t
end

describe('perf_manual.measure session', function()
  it('runs for its duration and calls the interval hook in between', function()
    local s = measure.session { target = 'system', duration = 0.6, what = 'spec' }
    local ticks = 0
    local ended = s:run { interval = 0.2, on_interval = function() ticks = ticks + 1 end }
    local info = s:finish()
    assert.equal('duration', ended)
    assert.is_true(ticks >= 1 and ticks <= 2, 'intervals ' .. ticks)
    assert.is_true(info.elapsed >= 0.6 and info.elapsed < 1.5, 'elapsed ' .. info.elapsed)
    assert.equal('system', info.target.kind)
  end)

  it('ends when Ctrl-C is requested', function()
    local s = measure.session { target = 'system', duration = 5 }
    sys.request_stop()
    local ended = s:run {}
    sys.clear_stop()
    assert.equal('interrupted', ended)
    assert.is_true(s:elapsed() < 1)
  end)

  it('ends when the target exits, and says when', function()
    local pid = assert(sys.spawn({ 'sleep', '0.3' }))
    local s = measure.session { target = tostring(pid), duration = 5 }
    local reaped = false
    local ended = s:run { tick = function() if not reaped and sys.wait(pid,
      true) ~= 'running' then reaped = true end end }
    if not reaped then sys.wait(pid) end
    assert.equal('target exited', ended)
    assert.is_true(s.exited_after > 0.2 and s.exited_after < 2, 'exited after ' .. tostring(s.exited_after))
  end)

  it('detaches a tracer over the budget, keeps one under it, and notes when', function()
    local notes = {}
    local s = measure.session { target = 'system', duration = 0.8, max_overhead = 5,
      note = function(text) notes[#notes + 1] = text end }
    local hot, cool = fake_tracer(12), fake_tracer(1)
    s:add_tracer('hot', hot)
    s:add_tracer('cool', cool)
    s:run {}
    local res = s:stop_tracers()
    s:finish()
    assert.matches('^fake tracer detached: 12%.0%% of one CPU', hot.detached)
    assert.is_nil(cool.detached)
    -- the session's record says when, like the note (the fallback reason of use-check)
    assert.equal(hot.detached .. notes[1]:match(' after [%d.]+ s$'), s.detached.hot)
    assert.matches(' after [%d.]+ s$', notes[1])
    assert.same({ events = 3 }, res.cool)
  end)

  it('closes what a failed caller left attached, and stops only a target it launched', function()
    local tr = fake_tracer(0)
    local launched
    local ok, err = pcall(measure.with_session, { target = test_helpers.workload('sleeper') .. ' 30', duration = 1 },
      function(s)
        s:start()
        launched = s.target.pid
        s:add_tracer('t', tr)
        util.user_error('failed on purpose')
      end)
    assert.is_false(ok)
    assert.equal('failed on purpose', err.user_error)
    assert.is_true(tr.closed)
    assert.is_number(launched)
    assert.is_nil(io.open('/proc/' .. launched .. '/stat'))
    -- a process it was given is left running
    local s = measure.session { target = tostring(sys.getpid()), duration = 1 }
    s:finish()
    assert.is_true(measure.target.alive(s.target))
  end)

  it('takes the best source that works and records why the better ones did not', function()
    local s = measure.session { target = 'system', duration = 1 }
    local v, name, skipped = s:ladder('thing', {
      { 'bpf', function() return nil, 'no BTF' end },
      { 'perf', function() return 'perf-result' end },
      { 'proc', function() return 'proc-result' end },
    })
    assert.equal('perf-result', v)
    assert.equal('perf', name)
    assert.same({ 'bpf: no BTF' }, skipped)
    assert.same({ source = 'perf', skipped = { 'bpf: no BTF' } }, s.sources.thing)
  end)

  it('names the command in a bad-target error', function()
    local ok, e = pcall(measure.session, { target = '999999999', duration = 1, command = 'red-check' })
    assert.is_false(ok)
    assert.equal('red-check: no process 999999999', e.user_error)
    ok, e = pcall(measure.session, { target = 'system', duration = 0 })
    assert.is_false(ok)
    assert.matches('duration must be more than 0', e.user_error)
  end)
end)
