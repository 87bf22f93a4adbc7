--- Collection suites: named sets of collectors, tracers and profilers run
--- together over one window (`perf_manual collect --suite NAME`,
--- `inv:collect { NAME }`; perf_manual.measure.collect runs them). A suite
--- is a Lua file in this folder, or in the `suites/` folder of a playbook
--- directory on the search path (a team's suites, found first):
---
---   return { extends = 'basic', summary = '...',
---            collectors = { 'cpu', 'memory' },   -- /proc collectors, sampled each interval
---            use = true,                          -- a USE check over the same window
---            tracers = { { 'io' } }, profilers = { { 'cpu' } }, interval = 1 }
local util = require('perf_manual.util')
local host = require('perf_manual._host')
local dirent = require('posix.dirent')

local M = {}

local builtin_dir = host.root .. '/lib/perf_manual/suites'
local team_dirs = {}

--- The playbook directories whose `suites/` folders hold team suites
--- (search order, first wins).
function M.set_path(dirs)
  team_dirs = {}
  for _, d in ipairs(dirs or {}) do team_dirs[#team_dirs + 1] = d .. '/suites' end
end

local function dirs()
  local out = {}
  for _, d in ipairs(team_dirs) do out[#out + 1] = d end
  out[#out + 1] = builtin_dir
  return out
end

--- Names of the suites on disk.
function M.list()
  local seen, out = {}, {}
  for _, d in ipairs(dirs()) do
    local ok, names = pcall(dirent.dir, d)
    for _, n in ipairs(ok and names or {}) do
      local s = n:match('^([%w_%-]+)%.lua$')
      if s and s ~= 'init' and not seen[s] then seen[s] = true; out[#out + 1] = s end
    end
  end
  table.sort(out)
  return out
end

-- the definition file of a suite: first on the path wins
local function load_def(name)
  for _, d in ipairs(dirs()) do
    local path = d .. '/' .. name .. '.lua'
    local f = io.open(path, 'r')
    if f then
      f:close()
      local chunk, err = loadfile(path)
      if not chunk then util.user_error('suite ' .. err) end
      local ok, def = pcall(chunk)
      if not ok then util.user_error('suite ' .. path .. ': ' .. tostring(def)) end
      if type(def) ~= 'table' then util.user_error('suite ' .. path .. ': must return a table') end
      return def
    end
  end
end

--- A suite definition with `extends` resolved. Unknown suite → nil, why.
function M.get(name, seen)
  seen = seen or {}
  if seen[name] then return nil, 'suite ' .. name .. ' extends itself' end
  seen[name] = true
  if not tostring(name):match('^[%w_%-]+$') or name == 'init' then return nil, 'bad suite name ' .. tostring(name) end
  local def = load_def(name)
  if not def then return nil, 'no suite ' .. name end
  local out = { name = name, summary = def.summary, collectors = {}, tracers = {}, profilers = {},
    use = def.use, interval = def.interval }
  if def.extends then
    local base, why = M.get(def.extends, seen)
    if not base then return nil, why end
    for _, k in ipairs({ 'collectors', 'tracers', 'profilers' }) do
      for _, x in ipairs(base[k]) do out[k][#out[k] + 1] = x end
    end
    if out.use == nil then out.use = base.use end
    out.interval = out.interval or base.interval
  end
  for _, k in ipairs({ 'collectors', 'tracers', 'profilers' }) do
    for _, x in ipairs(def[k] or {}) do out[k][#out[k] + 1] = x end
  end
  return out
end

return M
