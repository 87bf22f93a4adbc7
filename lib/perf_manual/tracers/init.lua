--- The tracer registry: every lib/perf_manual/tracers/<name>.lua that
--- declares `name` and `start` is a tracer; adding a file adds an event to
--- `perf_manual trace --events`.
---
--- The tracer contract (see syscall.lua / sched.lua, built on base.lua):
---   M.name        'syscall'            module name
---   M.event       'syscalls'           event name on the command line (default: name)
---   M.aliases     { 'syscall' }        other accepted spellings (optional)
---   M.summary     one line for --help and the list of valid events
---   M.start(opts) -> tracer | nil, err opts: pid, tid, cgroup, and the tracer's own
---   tracer:read{ clear = bool } -> result (plain table, result.quality = measurement quality)
---   tracer:stop() -> final result (detaches and frees; idempotent)
---   tracer:over_budget(pct) -> bool, why     tracer:detach(why)
---   M.to_json(result) -> table (optional)
---   (text: perf_manual.report.tracers.render(M.name, result, opts); tracers draw nothing)
---   M.snoop = true and tracer:snoop(max) -> { line, ... }  for `trace --snoop` (optional)
local M = {}

local NOT_TRACERS = { init = true, base = true }

local cache

--- All tracers: list of modules sorted by event name (modules that fail to
--- load are reported, not hidden: { name=, error= }).
function M.list()
  if cache then return cache end
  local root = require('perf_manual._host').root
  local dirent = require('posix.dirent')
  local ok, files = pcall(dirent.dir, root .. '/lib/perf_manual/tracers')
  local out = {}
  for _, f in ipairs(ok and files or {}) do
    local name = f:match('^([%w_]+)%.lua$')
    if name and not NOT_TRACERS[name] then
      local lok, mod = pcall(require, 'perf_manual.tracers.' .. name)
      if not lok then
        out[#out + 1] = { name = name, event = name, error = tostring(mod) }
      elseif type(mod) == 'table' and type(mod.start) == 'function' then
        out[#out + 1] = mod
      end
    end
  end
  table.sort(out, function(a, b) return (a.event or a.name) < (b.event or b.name) end)
  cache = out
  return out
end

--- Event names accepted on the command line, sorted.
function M.events()
  local ev = {}
  for _, t in ipairs(M.list()) do ev[#ev + 1] = t.event or t.name end
  return ev
end

--- The tracer for an event name (or its module name / an alias), or nil.
function M.get(event)
  for _, t in ipairs(M.list()) do
    if (t.event or t.name) == event or t.name == event then return t end
    for _, a in ipairs(t.aliases or {}) do
      if a == event then return t end
    end
  end
end

return M
