--- The inv: verbs a playbook calls (`inv:use_check{}`, `inv:trace{}`, ...).
--- Built-in verbs are the modules below; a team adds its own by dropping
--- `verbs/NAME.lua` into a playbook directory on the search path (it returns
--- a function(inv, opts), or a table of them). Built-in commands and
--- investigations call the same functions, so a verb behaves the same from
--- every entry point.
local util = require('perf_manual.util')

local M = {}

local registry = {}
local origin = {}

--- Registers verb `name` (a function(inv, opts)); `from` says where it came from.
function M.register(name, fn, from)
  if type(name) ~= 'string' or not name:match('^[%a_][%w_]*$') then
    util.user_error("verbs: bad verb name '" .. tostring(name) .. "'")
  end
  if type(fn) ~= 'function' then util.user_error('verbs: ' .. name .. ' must be a function(inv, opts)') end
  registry[name] = fn
  origin[name] = from or 'built-in'
end

local team_dirs = {}
local loaded = false

--- The playbook directories whose verbs/ folders hold team verbs (search
--- order, first wins). Nothing is loaded until a verb is asked for.
function M.set_path(dirs)
  team_dirs = dirs or {}
  loaded = false
  -- a team's wait rules live beside its verbs, and its hypothesis catalogue
  -- entries (hypothesis_catalogue.lua): told now if loaded, else they ask
  -- M.team_dirs() when first loaded (a probe's start needs neither)
  for _, name in ipairs { 'perf_manual.waits', 'perf_manual.catalogue' } do
    if package.loaded[name] then package.loaded[name].set_path(team_dirs) end
  end
end

--- The directories of the last set_path.
function M.team_dirs() return team_dirs end

-- loads a team's verbs/*.lua: a function(inv, opts), or a table of them
local function load_team(dirs)
  local dirent = require('posix.dirent')
  local taken = {}
  for _, d in ipairs(dirs) do
    local ok, names = pcall(dirent.dir, d .. '/verbs')
    if ok and names then
      table.sort(names)
      for _, f in ipairs(names) do
        local base = f:match('^([%w_]+)%.lua$')
        if base then
          local path = d .. '/verbs/' .. f
          local chunk, err = loadfile(path)
          if not chunk then util.user_error('verb ' .. err) end
          local lok, v = pcall(chunk)
          if not lok then util.user_error('verb ' .. path .. ': ' .. tostring(v)) end
          local fns = type(v) == 'function' and { [base] = v } or v
          if type(fns) ~= 'table' then
            util.user_error('verb ' .. path .. ': must return a function or a table of them')
          end
          for name, fn in pairs(fns) do
            if not taken[name] then taken[name] = true; M.register(name, fn, path) end
          end
        end
      end
    end
  end
end

-- The built-in verbs by name, each loaded with its module when first asked
-- for: a command that traces does not load the profiler, the HTTP client
-- or the store.
local BUILTIN = {
  target = function() return require('perf_manual.verbs.target') end,
  check_output = function() return require('perf_manual.verbs.target') end,
  use_check = function() return require('perf_manual.verbs.use_check') end,
  trace = function() return require('perf_manual.verbs.trace') end,
  render_tracer = function() return require('perf_manual.verbs.trace') end,
  tracer_json = function() return require('perf_manual.verbs.trace') end,
  profile = function() return require('perf_manual.verbs.profile') end,
  memory_profile = function() return require('perf_manual.verbs.profile') end,
  write_profile = function() return require('perf_manual.verbs.profile') end,
  check_profile_formats = function() return require('perf_manual.verbs.profile') end,
  render_profile = function() return require('perf_manual.verbs.profile') end,
  profile_json = function() return require('perf_manual.verbs.profile') end,
  red_check = function() return require('perf_manual.verbs.red_check') end,
  collect = function() return require('perf_manual.verbs.collect') end,
  quantify = function() return require('perf_manual.verbs.quantify') end,
  tsa = function() return require('perf_manual.verbs.tsa') end,
  probe = function() return require('perf_manual.verbs.probe') end,
  render_probe = function() return require('perf_manual.verbs.probe') end,
  probe_json = function() return require('perf_manual.verbs.probe') end,
  -- the catalogue runbooks
  fsync_audit = function() return require('perf_manual.verbs.runbooks') end,
  pagefaults = function() return require('perf_manual.verbs.runbooks') end,
  tcp_check = function() return require('perf_manual.verbs.runbooks') end,
  conn_storm = function() return require('perf_manual.verbs.runbooks') end,
  exec_monitor = function() return require('perf_manual.verbs.runbooks') end,
  json_line = function() return require('perf_manual.verbs.runbooks') end,
  save_recording = function() return require('perf_manual.verbs.runbooks') end,
}

-- the team's verbs, read once per search path (they may replace a built-in one)
local function ensure()
  if loaded then return end
  loaded = true
  load_team(team_dirs)
end

--- The verb named `name`, or nil.
function M.get(name)
  ensure()
  if registry[name] == nil and BUILTIN[name] then
    local mod = BUILTIN[name]()
    for n, fn in pairs(mod.verbs) do
      if registry[n] == nil then M.register(n, fn) end
    end
  end
  return registry[name]
end

--- Every verb: list of { name =, from = }.
function M.list()
  for name in pairs(BUILTIN) do M.get(name) end
  local out = {}
  for name in pairs(registry) do out[#out + 1] = { name = name, from = origin[name] } end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

return M
