--- What every measuring verb shares: the target it is aimed at, and the
--- artifact it leaves (live: measured and stored; replay: read back from
--- the recorded data dir and judged again by today's rules).
local util = require('perf_manual.util')

local M = {}

--- The target a verb is aimed at: opts.target (text, number or resolved
--- table), else opts.pid, else the investigation's workload, else the system.
function M.target(inv, opts)
  local t = opts.target
  if t == nil then t = opts.pid end
  if type(t) == 'number' then t = tostring(t) end
  if t == nil then
    local w = rawget(inv, 'workload_info')
    if w then t = w.target or (w.pid and tostring(w.pid)) end
  end
  return t or 'system'
end

--- The next free name for an artifact: use-check.json, use-check-2.json, ...
function M.artifact_name(inv, base, ext)
  local names = rawget(inv, '_names') or {}
  rawset(inv, '_names', names)
  local n = (names[base .. ext] or 0) + 1
  names[base .. ext] = n
  return n == 1 and (base .. ext) or string.format('%s-%d%s', base, n, ext)
end

--- Reads a recorded artifact from the replay data dir: a table for JSON,
--- else text; nil, why when it is not there.
function M.recorded(inv, name)
  -- the store loads only to replay: a live command never reads a folder
  local text, path = require('perf_manual.store').read_artifact(inv.replay, name)
  if not text then return nil, path end
  if name:match('%.json$') then
    local v, err = util.json_decode(text)
    if not v then util.user_error('replay: ' .. path .. ': bad JSON: ' .. tostring(err)) end
    return v
  end
  return text
end

--- Runs `live` (or reads the recording, passed through `rejudge`), stores
--- the result as raw_data/<base>.json and returns it. A result that could
--- not be had is { available = false, why = } and a warning, never invented.
function M.adapter(inv, base, live, rejudge)
  local name = M.artifact_name(inv, base, '.json')
  local result, why
  if inv.replay then
    result, why = M.recorded(inv, name)
    if result and rejudge then result = rejudge(result) end
  else
    result, why = live()
  end
  if result == nil then result = { available = false, why = why or 'no result' } end
  -- a plain command keeps no folder: its result is printed (or refused), not stored
  if inv.playbook and not inv.playbook.investigation then return result end
  if result.available == false then
    inv:warn(base .. ': not available: ' .. tostring(result.why))
  end
  -- live-only handles (a profile's frame tree, ...) stay out of the file
  local saved = {}
  for k, v in pairs(result) do
    if type(k) ~= 'string' or k:sub(1, 1) ~= '_' then saved[k] = v end
  end
  result.artifact = inv:save_artifact(name, setmetatable(saved, getmetatable(result)), base)
  return result
end

--- A progress callback that writes to the context's progress line.
function M.progress(inv)
  return function(text) inv:progress(text) end
end

return M
