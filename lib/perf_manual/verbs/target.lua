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

-- the nearest existing directory at or above `path`'s parent
local function existing_parent(path)
  local pstat = require('posix.sys.stat')
  local dir = path:match('^(.*)/[^/]*$') or '.'
  if dir == '' then dir = '/' end
  while true do
    local st = pstat.stat(dir)
    if st then return dir, pstat.S_ISDIR(st.st_mode) ~= 0 end
    local up = dir:match('^(.*)/[^/]*$')
    if not up or up == dir then return '.', true end
    dir = up == '' and '/' or up
  end
end

--- inv:check_output(path, 'dir' | 'file', flag): before anything is
--- measured, a user error when `path` cannot be written as asked (a file
--- where a directory is wanted, a directory where a file is, a parent that
--- is a file or read-only), so a long measurement is never thrown away at
--- the end. flag names the option in the message (default --output).
function M.check_output(inv, path, kind, flag)
  if path == nil then return end
  local pstat = require('posix.sys.stat')
  local unistd = require('posix.unistd')
  local name = inv.playbook.name .. ': ' .. (flag or '--output') .. ' ' .. tostring(path)
  path = tostring(path)
  if path == '' then util.user_error(name .. ': expected a path') end
  local st = pstat.stat(path)
  if st then
    local isdir = pstat.S_ISDIR(st.st_mode) ~= 0
    if kind == 'dir' and not isdir then util.user_error(name .. ' is a file, not a directory') end
    if kind == 'file' and isdir then util.user_error(name .. ' is a directory, not a file') end
    local target = kind == 'dir' and path or existing_parent(path)
    if unistd.access(target, 'w') ~= 0 then util.user_error(name .. ': ' .. target .. ' is not writable') end
    return
  end
  local parent, isdir = existing_parent(path)
  if not isdir then util.user_error(name .. ': ' .. parent .. ' is a file, not a directory') end
  if unistd.access(parent, 'w') ~= 0 then util.user_error(name .. ': ' .. parent .. ' is not writable') end
end

M.verbs = { target = M.target, check_output = M.check_output }

return M
