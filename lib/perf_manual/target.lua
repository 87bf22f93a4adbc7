--- What a command looks at: `--target system | PID | SERVICE | CGROUP_PATH`.
---
--- resolve(spec) returns one of
---   { kind = 'system', label = 'system' }
---   { kind = 'pid', pid = 123, comm = 'nginx', label = 'pid 123 (nginx)' }
---   { kind = 'cgroup', cgroup = '/a/b', dirs = Dirs, label = }
---   { kind = 'service', unit = 'x.service', cgroup = '/system.slice/x.service', dirs = Dirs, label = }
--- `cgroup` is the path inside the hierarchies; Dirs is what
--- perf_manual.collectors.cgroup.resolve returns ({ path=, v2=, memory=,
--- cpu=, cpuacct= } filesystem directories). Bad input is a user error (exit 2).
local util = require('perf_manual.util')

local M = {}

--- The place /proc is read from (specs point it at fixtures).
M.proc = '/proc'

local function isdir(p)
  local pstat = require('posix.sys.stat')
  local st = pstat.stat(p)
  return st ~= nil and pstat.S_ISDIR(st.st_mode) ~= 0
end

local function read(p) return util.readfile(p) end

--- The command name of a process, or nil when it does not exist.
function M.comm(pid)
  local s = read(M.proc .. '/' .. pid .. '/comm')
  return s and (s:gsub('\n$', ''))
end

--- True while the target can still be measured.
function M.alive(t)
  if t.kind == 'pid' then
    local s = read(M.proc .. '/' .. t.pid .. '/stat')
    -- a zombie has exited: nothing left to measure
    return s ~= nil and not s:match('%) Z ')
  elseif t.kind == 'cgroup' or t.kind == 'service' then
    for k, d in pairs(t.dirs) do
      if k ~= 'path' and isdir(d) then return true end
    end
    return false
  end
  return true
end

--- Pids inside a cgroup target (from any hierarchy it exists in).
function M.pids(t)
  if t.kind == 'pid' then return { t.pid } end
  if not t.dirs then return {} end
  local seen, out = {}, {}
  for k, d in pairs(t.dirs) do
    local procs = k ~= 'path' and read(d .. '/cgroup.procs') or ''
    for p in procs:gmatch('%d+') do
      local n = tonumber(p)
      if not seen[n] then seen[n] = true; out[#out + 1] = n end
    end
  end
  table.sort(out)
  return out
end

local function cgroups() return require('perf_manual.collectors.cgroup') end

local function service_cgroup(unit)
  -- systemd knows best when it is running; otherwise look for the unit's
  -- cgroup in the hierarchies
  if isdir('/run/systemd/system') then
    local f = io.popen("systemctl show -p ControlGroup --value -- '" .. unit:gsub("'", '') .. "' 2>/dev/null")
    if f then
      local cg = util.trim(f:read('*a') or '')
      f:close()
      if cg ~= '' then
        local dirs = cgroups().resolve({ path = cg })
        if dirs then return cg, dirs end
      end
    end
  end
  local path = cgroups().find_unit(unit)
  if not path then return nil end
  local dirs = cgroups().resolve({ path = path })
  if not dirs then
    -- only in systemd's own named hierarchy: no controllers, but its processes
    local sd = cgroups().mounts().v1['name=systemd']
    dirs = { path = path, systemd = sd and (sd.dir .. path) }
  end
  return path, dirs
end

--- Resolves --target text into a target table (see the top of this file).
---@param spec string|number
function M.resolve(spec)
  spec = util.trim(tostring(spec or 'system'))
  if spec == '' or spec == 'system' then
    return { kind = 'system', label = 'system' }
  end
  if spec:match('^%d+$') then
    local pid = tonumber(spec)
    local comm = M.comm(pid)
    if not comm or pid == 0 then util.user_error('no process ' .. spec) end
    return { kind = 'pid', pid = pid, comm = comm, label = string.format('pid %d (%s)', pid, comm) }
  end
  if spec:sub(1, 1) == '/' then
    -- a directory inside a mounted hierarchy, or a path relative to the roots
    local dirs = cgroups().resolve({ path = spec })
    if not dirs then util.user_error('no cgroup ' .. spec) end
    return { kind = 'cgroup', cgroup = dirs.path, dirs = dirs, label = 'cgroup ' .. dirs.path }
  end
  if not spec:match('^[%w:_.@\\-]+$') then
    util.user_error("bad target '" .. spec .. "': expected system, a PID, a systemd service or a cgroup path")
  end
  local unit = spec:match('%.%a+$') and spec or (spec .. '.service')
  local cg, dirs = service_cgroup(unit)
  if not cg then
    util.user_error(string.format("no systemd service '%s' (no cgroup for %s)", spec, unit))
  end
  return { kind = 'service', unit = unit, cgroup = cg, dirs = dirs, label = 'service ' .. unit }
end

return M
