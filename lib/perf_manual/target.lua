--- What a command looks at: `--target system | PID | SERVICE | CGROUP_PATH`.
---
--- resolve(spec) returns one of
---   { kind = 'system', label = 'system' }
---   { kind = 'pid', pid = 123, comm = 'nginx', label = 'pid 123 (nginx)' }
---   { kind = 'cgroup', cgroup = '/a/b', dirs = { [ctrl] = '/sys/fs/cgroup/...' }, label = }
---   { kind = 'service', unit = 'x.service', cgroup = '/system.slice/x.service', dirs =, label = }
--- `cgroup` is the path inside the hierarchies; `dirs` maps a controller
--- ('memory', 'cpu', 'cpuacct', ... or 'unified' for v2) to the directory of
--- that cgroup where it exists. Bad input is a user error (exit 2).
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

--- Cgroup mounts from mountinfo text: list of { dir=, version = 1|2,
--- controllers = { name = true } } (v1 named hierarchies like name=systemd
--- appear as controller 'name=systemd').
function M.parse_mounts(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    -- fields: id parent maj:min root mountpoint opts [optional...] - fstype source superopts
    local pre, post = line:match('^(.-) %- (.*)$')
    if pre then
      local mnt = select(5, pre:match('^(%S+) (%S+) (%S+) (%S+) (%S+)'))
      local fstype, _, superopts = post:match('^(%S+) (%S+) (%S+)')
      if fstype == 'cgroup2' then
        out[#out + 1] = { dir = mnt, version = 2, controllers = {} }
      elseif fstype == 'cgroup' then
        local ctrls = {}
        for o in superopts:gmatch('[^,]+') do
          if o ~= 'rw' and o ~= 'ro' and not o:match('^relatime') and o ~= 'clone_children'
            and o ~= 'noprefix' and not o:match('^release_agent') and o ~= 'xattr' then
            ctrls[o] = true
          end
        end
        out[#out + 1] = { dir = mnt, version = 1, controllers = ctrls }
      end
    end
  end
  return out
end

local mounts_cache
--- The cgroup mounts of this machine (cached).
function M.mounts()
  if not mounts_cache then
    mounts_cache = M.parse_mounts(read(M.proc .. '/self/mountinfo'))
    for _, m in ipairs(mounts_cache) do
      if m.version == 2 then
        local c = read(m.dir .. '/cgroup.controllers') or ''
        for name in c:gmatch('%S+') do m.controllers[name] = true end
      end
    end
  end
  return mounts_cache
end

--- The directories of cgroup path `rel` in every hierarchy where it exists:
--- { memory = dir, cpu = dir, ..., unified = dir }.
function M.cgroup_dirs(rel, mounts)
  local dirs, any = {}, false
  for _, m in ipairs(mounts or M.mounts()) do
    local d = (m.dir .. rel):gsub('/+$', '')
    if isdir(d) then
      if m.version == 2 then
        dirs.unified = d; any = true
      else
        for c in pairs(m.controllers) do dirs[c] = d; any = true end
      end
    end
  end
  return any and dirs or nil
end

--- Parses /proc/PID/cgroup: list of { id=, controllers = {..}, path = }.
function M.parse_proc_cgroup(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    local id, ctrls, path = line:match('^(%d+):([^:]*):(.*)$')
    if id then
      local list = {}
      for c in ctrls:gmatch('[^,]+') do list[#list + 1] = c end
      out[#out + 1] = { id = tonumber(id), controllers = list, path = path }
    end
  end
  return out
end

--- The cgroups a process lives in: { [controller or 'unified'] = dir }.
function M.process_cgroups(pid, mounts)
  local text, err = read(M.proc .. '/' .. pid .. '/cgroup')
  if not text then return nil, err end
  mounts = mounts or M.mounts()
  local dirs = {}
  for _, e in ipairs(M.parse_proc_cgroup(text)) do
    for _, m in ipairs(mounts) do
      if e.id == 0 and m.version == 2 then
        dirs.unified = (m.dir .. e.path):gsub('/+$', '')
      elseif e.id ~= 0 and m.version == 1 then
        for _, c in ipairs(e.controllers) do
          if m.controllers[c] then dirs[c] = (m.dir .. e.path):gsub('/+$', '') end
        end
      end
    end
  end
  return dirs
end

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
    for _, d in pairs(t.dirs) do
      if isdir(d) then return true end
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
  for _, d in pairs(t.dirs) do
    for p in (read(d .. '/cgroup.procs') or ''):gmatch('%d+') do
      local n = tonumber(p)
      if not seen[n] then seen[n] = true; out[#out + 1] = n end
    end
  end
  table.sort(out)
  return out
end

local function service_cgroup(unit, mounts)
  -- systemd knows best when it is running; otherwise look for the unit's
  -- cgroup under the usual slices
  if isdir('/run/systemd/system') then
    local f = io.popen("systemctl show -p ControlGroup --value -- '" .. unit:gsub("'", '') .. "' 2>/dev/null")
    if f then
      local cg = util.trim(f:read('*a') or '')
      f:close()
      if cg ~= '' then
        local dirs = M.cgroup_dirs(cg, mounts)
        if dirs then return cg, dirs end
      end
    end
  end
  for _, slice in ipairs({ '/system.slice/', '/user.slice/', '/' }) do
    local dirs = M.cgroup_dirs(slice .. unit, mounts)
    if dirs then return slice .. unit, dirs end
  end
end

--- Resolves --target text into a target table (see the top of this file).
---@param spec string|number
---@param opts table? { mounts = list } for specs
function M.resolve(spec, opts)
  opts = opts or {}
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
  local mounts = opts.mounts or M.mounts()
  if spec:sub(1, 1) == '/' then
    -- a directory inside a mounted hierarchy, or a path relative to the roots
    for _, m in ipairs(mounts) do
      if spec == m.dir or spec:sub(1, #m.dir + 1) == m.dir .. '/' then
        local rel = spec:sub(#m.dir + 1)
        if rel == '' then rel = '/' end
        local dirs = M.cgroup_dirs(rel, mounts)
        if dirs then return { kind = 'cgroup', cgroup = rel, dirs = dirs, label = 'cgroup ' .. rel } end
      end
    end
    local dirs = M.cgroup_dirs(spec, mounts)
    if dirs then return { kind = 'cgroup', cgroup = spec, dirs = dirs, label = 'cgroup ' .. spec } end
    util.user_error('no cgroup ' .. spec)
  end
  if not spec:match('^[%w:_.@\\-]+$') then
    util.user_error("bad target '" .. spec .. "': expected system, a PID, a systemd service or a cgroup path")
  end
  local unit = spec:match('%.%a+$') and spec or (spec .. '.service')
  local cg, dirs = service_cgroup(unit, mounts)
  if not cg then
    util.user_error(string.format("no systemd service '%s' (no cgroup for %s)", spec, unit))
  end
  return { kind = 'service', unit = unit, cgroup = cg, dirs = dirs, label = 'service ' .. unit }
end

return M
