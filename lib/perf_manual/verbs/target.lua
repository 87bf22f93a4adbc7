--- inv:target(spec) resolves what a command looks at (perf_manual.measure.target:
--- system, a pid, a service, a cgroup, a process name or a command to
--- launch), naming the command in the error when there is no such thing.
--- Launching waits for the session that measures it.
local util = require('perf_manual.util')
local targets = require('perf_manual.measure.target')

local M = {}

function M.target(inv, spec)
  if type(spec) == 'table' then return spec end
  local ok, t = pcall(targets.resolve, spec)
  if ok then return t end
  if util.is_user_error(t) then
    util.user_error(inv.playbook.name .. ': ' .. t.user_error, t.status)
  end
  error(t, 0)
end

M.verbs = { target = M.target }

return M
