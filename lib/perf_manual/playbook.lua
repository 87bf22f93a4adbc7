--- The playbook language and its engine.
---
--- A playbook file returns `playbook { name=, summary=, params=, step "..." {...}, ... }`.
--- `playbook`, `param` and `step` are provided in the file's environment; the
--- rest of the environment is the ordinary Lua globals (no new globals are set).
local util = require('perf_manual.util')

local M = {}

-- Parameters ---------------------------------------------------------------

local seq = 0
local param = {}
M.param = param

local Param = {}
Param.__index = Param

local function make(kind, conv)
  return function(spec)
    spec = spec or {}
    seq = seq + 1
    local p = setmetatable({
      kind = kind,
      desc = spec[1] or spec.desc,
      default = spec.default,
      optional = spec.optional or spec.default ~= nil or kind == 'flag',
      positional = spec.positional,
      choices = spec.choices,
      short = spec.short,
      hidden = spec.hidden,
      seq = seq,
      conv = conv,
    }, Param)
    return p
  end
end

local function conv_number(v)
  local n = tonumber(v)
  if not n then return nil, 'expected a number' end
  return n
end

param.string = make('string', function(v) return tostring(v) end)
param.path = make('path', function(v) return tostring(v) end)
param.investigation = make('investigation', function(v) return tostring(v) end)
param.number = make('number', conv_number)
param.integer = make('integer', function(v)
  local n = tonumber(v)
  if not n or n ~= math.floor(n) then return nil, 'expected an integer' end
  return n
end)
param.flag = make('flag', function(v) return v and true or false end)
param.duration = make('duration', function(v)
  local s = util.parse_duration(v)
  if not s or s < 0 then return nil, 'expected a duration like 10, 10s, 500ms or 2m' end
  return s
end)
param.pid = make('pid', function(v)
  local n = tonumber(v)
  if not n or n <= 0 or n ~= math.floor(n) then return nil, 'expected a process id' end
  return n
end)
-- "system", a pid, a systemd service name or a cgroup path: resolved by the
-- playbook (perf_manual.target), kept as text here
param.target = make('target', function(v) return tostring(v) end)
param.list = make('list', function(v)
  if type(v) == 'table' then return v end
  local out = {}
  for item in tostring(v):gmatch('[^,%s]+') do out[#out + 1] = item end
  return out
end)
param.choice = make('choice', function(v, p)
  for _, c in ipairs(p.choices or {}) do
    if c == v then return v end
  end
  return nil, 'expected one of: ' .. table.concat(p.choices or {}, ', ')
end)

function Param:convert(v)
  return self.conv(v, self)
end

-- Declarations -------------------------------------------------------------

local Step = {}
Step.__index = Step

--- step "name" { budget = "10m", function(inv, p) ... end }
function M.step(name)
  return function(def)
    local fn = def[1] or def.run
    if type(fn) ~= 'function' then
      error(string.format("step '%s': expected a function", name), 2)
    end
    return setmetatable({
      name = name, fn = fn,
      budget = def.budget and util.parse_duration(def.budget),
    }, Step)
  end
end

local Playbook = {}
Playbook.__index = Playbook
M.Playbook = Playbook

--- playbook { name=, summary=, params=, needs=, step... | run= }
function M.playbook(def)
  if type(def) ~= 'table' then error('playbook: expected a table', 2) end
  if type(def.name) ~= 'string' then error("playbook: missing 'name'", 2) end
  local pb = setmetatable({
    name = def.name,
    summary = def.summary or '',
    description = def.description,
    examples = def.examples,
    needs = def.needs or {},
    params = {},
    steps = {},
    run_fn = def.run,
    hidden = def.hidden,
  }, Playbook)
  for name, p in pairs(def.params or {}) do
    if getmetatable(p) ~= Param then
      error(string.format("playbook '%s': param '%s' must be made with param.<type>{}", def.name, name), 2)
    end
    p.name = name
    pb.params[#pb.params + 1] = p
  end
  table.sort(pb.params, function(a, b) return a.seq < b.seq end)
  for _, s in ipairs(def) do
    if getmetatable(s) ~= Step then
      error(string.format("playbook '%s': list entries must be steps", def.name), 2)
    end
    pb.steps[#pb.steps + 1] = s
  end
  if not pb.run_fn and #pb.steps == 0 then
    error(string.format("playbook '%s': no steps and no run function", def.name), 2)
  end
  return pb
end

-- Loading ------------------------------------------------------------------

--- The environment a playbook file runs in.
function M.env()
  return setmetatable({ playbook = M.playbook, param = param, step = M.step }, { __index = _G })
end

--- Loads a playbook file. Syntax and declaration errors are user errors that
--- name the file and line.
function M.load(path)
  local chunk, err = loadfile(path)
  if not chunk then
    util.user_error('playbook ' .. err)
  end
  setfenv(chunk, M.env())
  local ok, pb = xpcall(chunk, debug.traceback)
  if not ok then
    util.user_error('playbook ' .. path .. ': ' .. tostring(pb):gsub('\nstack traceback:.*', ''))
  end
  if getmetatable(pb) ~= Playbook then
    util.user_error('playbook ' .. path .. ': the file must return playbook { ... }')
  end
  pb.path = path
  return pb
end

--- The playbook search path, first match wins: --playbooks DIR,
--- $PERF_MANUAL_PLAYBOOKS (colon-separated), ~/.config/perf_manual/playbooks,
--- then the built-in playbooks/.
function M.search_path(extra)
  local dirs = {}
  for _, d in ipairs(extra or {}) do dirs[#dirs + 1] = d end
  local env = os.getenv('PERF_MANUAL_PLAYBOOKS')
  if env and env ~= '' then
    for d in env:gmatch('[^:]+') do dirs[#dirs + 1] = d end
  end
  local home = os.getenv('HOME')
  if home then dirs[#dirs + 1] = home .. '/.config/perf_manual/playbooks' end
  dirs[#dirs + 1] = require('perf_manual._host').root .. '/playbooks'
  return dirs
end

local function exists(p)
  local f = io.open(p, 'r')
  if f then f:close() return true end
  return false
end

function M.find(name, dirs)
  for _, d in ipairs(dirs) do
    local p = d .. '/' .. name .. '.lua'
    if exists(p) then return p end
  end
end

--- Every playbook on the path: list of {name, path, pb} (first wins).
function M.list(dirs)
  local dirent = require('posix.dirent')
  local seen, out = {}, {}
  for _, d in ipairs(dirs) do
    local ok, names = pcall(dirent.dir, d)
    if ok and names then
      table.sort(names)
      for _, f in ipairs(names) do
        local name = f:match('^(.+)%.lua$')
        if name and not seen[name] then
          seen[name] = true
          local lok, pb = pcall(M.load, d .. '/' .. f)
          out[#out + 1] = { name = name, path = d .. '/' .. f, pb = lok and pb or nil,
                            err = not lok and (util.is_user_error(pb) and pb.user_error or tostring(pb)) or nil }
        end
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- Running ------------------------------------------------------------------

local Context = {}
Context.__index = Context
M.Context = Context

--- A run's context: what steps see as `inv`. perf_manual.investigation
--- extends it with the on-disk store.
function M.context(pb, params, opts)
  opts = opts or {}
  return setmetatable({
    playbook = pb,
    params = params,
    out = opts.out or io.stdout,
    err = opts.err or io.stderr,
    findings = {},
    notes = {},
    timeline = {},
    quiet = opts.quiet,
  }, Context)
end

function Context:printf(fmt, ...)
  self.out:write(string.format(fmt, ...))
end

function Context:print(...)
  local parts = {}
  for i = 1, select('#', ...) do parts[#parts + 1] = tostring(select(i, ...)) end
  self.out:write(table.concat(parts, ' '), '\n')
end

--- Shows text, or anything with a :render() method.
function Context:show(x)
  if type(x) == 'table' and x.render then x = x:render() end
  self.out:write(tostring(x))
  if not tostring(x):match('\n$') then self.out:write('\n') end
end

function Context:log(kind, what)
  local sys = require('perf_manual._c.sys')
  self.timeline[#self.timeline + 1] = { t = sys.realtime(), kind = kind, what = what }
end

function Context:note(text)
  self.notes[#self.notes + 1] = text
  self:log('note', text)
end

--- Records a finding {resource=, metric=, value=, severity=, evidence=, summary=}.
function Context:finding(f)
  self.findings[#self.findings + 1] = f
  self:log('finding', f.summary or (tostring(f.resource) .. ' ' .. tostring(f.metric)))
  return f
end

--- Ends the run after the current step.
function Context:stop() self._stopped = true end

--- A progress line on stderr when it is a terminal; silent otherwise.
function Context:progress(text)
  if self.quiet then return end
  local sys = require('perf_manual._c.sys')
  if sys.isatty(2) then
    self.err:write('\r\27[K', text)
    self.err:flush()
  end
end

function Context:progress_done()
  local sys = require('perf_manual._c.sys')
  if not self.quiet and sys.isatty(2) then self.err:write('\r\27[K') self.err:flush() end
end

local checks = {
  root = function()
    if require('perf_manual._c.sys').geteuid() ~= 0 then
      return 'needs root (or CAP_BPF and CAP_PERFMON): run it with sudo'
    end
  end,
}
M.checks = checks

--- Runs a playbook with converted params. Returns the context.
function M.run(pb, params, opts)
  for _, need in ipairs(pb.needs) do
    local check = checks[need]
    local why = check and check(params)
    if why then util.user_error(pb.name .. ': ' .. why) end
  end
  local inv = (opts and opts.context) or M.context(pb, params, opts)
  local steps = pb.steps
  if pb.run_fn then steps = { { name = pb.name, fn = pb.run_fn } } end
  local sys = require('perf_manual._c.sys')
  for i, s in ipairs(steps) do
    if i > 1 and sys.stop_requested() then
      inv:log('step-skipped', s.name)
      break
    end
    inv:log('step-start', s.name)
    local t0 = sys.now()
    local ok, err = xpcall(function() return s.fn(inv, params) end, function(e)
      if util.is_user_error(e) then return e end
      return debug.traceback(tostring(e), 2)
    end)
    inv:log(ok and 'step-done' or 'step-failed', s.name)
    if not ok then
      if util.is_user_error(err) then error(err, 0) end
      error(string.format("%s: step '%s' failed: %s", pb.path or pb.name, s.name, err), 0)
    end
    if s.budget and sys.now() - t0 > s.budget then
      inv.err:write(string.format("perf_manual: step '%s' ran past its %s budget\n", s.name, util.fmt_duration(s.budget)))
    end
    if inv._stopped then break end
  end
  return inv
end

return M
