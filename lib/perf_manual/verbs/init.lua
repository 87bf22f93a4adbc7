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
end

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

-- the built-in verbs, then the team's (which may replace one)
local function ensure()
  if loaded then return end
  loaded = true
  local builtin = {
    require('perf_manual.verbs.target'),
    require('perf_manual.verbs.use_check'),
    require('perf_manual.verbs.trace'),
    require('perf_manual.verbs.profile'),
    require('perf_manual.verbs.red_check'),
    require('perf_manual.verbs.collect'),
    require('perf_manual.verbs.quantify'),
  }
  for _, mod in ipairs(builtin) do
    for name, fn in pairs(mod.verbs) do M.register(name, fn) end
  end
  load_team(team_dirs)
end

--- The verb named `name`, or nil.
function M.get(name)
  ensure()
  return registry[name]
end

--- Every verb: list of { name =, from = }.
function M.list()
  ensure()
  local out = {}
  for name in pairs(registry) do out[#out + 1] = { name = name, from = origin[name] } end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

return M
