-- perf_manual.measure.trace on the real kernel: tracers started on a
-- session against a launched command, checked against what the workload
-- itself does (syscall_loop makes exactly N getppid calls).
local trace = require('perf_manual.measure.trace')
local sys = require('perf_manual.sys')
local util = require('perf_manual.util')
local h = test_helpers

local function count_of(res, name)
  for _, sc in ipairs(res.syscalls or {}) do
    if sc.name == name then return sc.count end
  end
  return 0
end

describe('perf_manual.measure.trace', function()
  it('counts every getppid of a launched command and ends when it exits', function()
    if not h.need_root('BPF syscall tracing') then return end
    h.with_machine_lock(function()
      local n = 200000
      local intervals = 0
      local r = trace.run {
        events = { 'syscalls' }, target = h.workload('syscall_loop') .. ' ' .. n .. ' wait', duration = 20,
        mode = 'count', interval = 60,
        -- the probes are on: let the loop start
        on_start = function(names, s)
          assert.same({ 'syscalls' }, names)
          sys.kill(s.target.pid, 10)
        end,
        on_interval = function() intervals = intervals + 1 end,
      }
      assert.equal('target exited', r.ended_by)
      assert.equal(n, count_of(r.results.syscalls, 'getppid'))
      assert.is_true(r.duration_s < 15, 'ran ' .. r.duration_s .. ' s')
      assert.equal(0, intervals)
      assert.same({ 'syscalls' }, r.order)
      assert.matches('^process %d+ exited after ', r.notes[#r.notes])
      assert.is_true(r.target.launched)
      assert.equal(0, r.target.exit_status)
      assert.is_true(r.target.follows_children)
    end)
  end)

  it('names the valid events for an unknown one, and reports every tracer that could not start', function()
    local ok, e = pcall(trace.tracers, { 'nope' })
    assert.is_false(ok)
    assert.matches("^trace: unknown event 'nope'; valid events: ", e.user_error)
    assert.is_true(util.is_user_error(e))
    -- an existing name twice is one tracer
    assert.equal(1, #trace.tracers({ 'syscalls', 'syscall' }))
  end)
end)
