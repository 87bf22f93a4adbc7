--- Thread states of a process over a window: the thread-state sampler
--- (perf_manual.collectors.threads) ticked at its rate by a measurement
--- session, which ends early when the process exits or Ctrl-C comes.
---
---   local r = require('perf_manual.measure.threads').sample(1234, { duration = 2, hz = 50 })
local sys = require('perf_manual.sys')
local measure = require('perf_manual.measure')
local threads = require('perf_manual.collectors.threads')

local M = {}

--- Samples target (a pid, or any target text that names one process) for
--- opts.duration seconds (default 1). Returns the sampler's result, or nil
--- and "no process N".
function M.sample(target, opts)
  opts = opts or {}
  local pid = tonumber(target)
  if pid and not io.open('/proc/' .. pid .. '/stat') then return nil, 'no process ' .. pid end
  return measure.with_session({ target = pid and ('pid:' .. pid) or target, duration = opts.duration or 1,
    what = 'thread states' }, function(s)
    s:start()
    local sp, err = threads.sampler(s.target.pid, opts)
    if not sp then return nil, err end
    s:begin()
    local c0 = sys.thread_cpu()
    local gone = not sp:tick()
    local ended = gone and 'target exited' or s:run {
      poll = 1 / sp.hz,
      tick = function() if not sp:tick() then return false end end,
    }
    if ended == 'duration' and sp.exited then ended = 'target exited' end
    sp:account_run(sys.now() - s.t0, sys.thread_cpu() - c0,
      { stopped = ended == 'interrupted', exited = ended == 'target exited' })
    local r = sp:result()
    sp:close()
    return r
  end)
end

return M
