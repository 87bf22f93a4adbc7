--- speedscope export: a profile as a speedscope file
--- (https://www.speedscope.app/file-format-schema.json), one "sampled"
--- profile whose frames are shared in `shared.frames`. Each unique stack is
--- one sample (frame indexes root first) with its count as the weight, so the
--- file stays as small as the folded text.
---
---   local speedscope = require('perf_manual.report.speedscope')
---   local json = speedscope.encode(profile, { name = 'calltree on-CPU', unit = 'none' })
---   local doc  = speedscope.document(profile, opts)   -- the same as a Lua table
---
--- opts: name (profile name), unit ("none" for sample counts; "microseconds"
--- for off-CPU time, ...), exporter (defaults to "perf_manual <version>").
local host = require('perf_manual._host')
local util = require('perf_manual.util')
local clean = require('perf_manual.report.flamegraph').utf8_clean

local M = {}

M.SCHEMA = 'https://www.speedscope.app/file-format-schema.json'
local UNITS = { none = true, nanoseconds = true, microseconds = true, milliseconds = true, seconds = true,
  bytes = true }

function M.document(profile, opts)
  opts = opts or {}
  util.validate('opts', opts, 'table')
  if type(profile) == 'string' then
    local p, err = require('perf_manual.fold').from_folded(profile)
    if not p then error('[perf_manual.report.speedscope] ' .. tostring(err), 2) end
    profile = p
  end
  local unit = opts.unit or 'none'
  if not UNITS[unit] then error('[perf_manual.report.speedscope] unknown unit: ' .. tostring(unit), 2) end
  local frames, index = util.array(), {}
  local samples, weights = util.array(), util.array()
  local total = 0
  for _, e in ipairs(profile:stacks()) do
    local idx = util.array()
    for name in (e[1] .. ';'):gmatch('([^;]*);') do
      local i = index[name]
      if not i then
        -- JSON must be UTF-8: broken bytes become '?'
        frames[#frames + 1] = { name = clean(name) }
        i = #frames - 1
        index[name] = i
      end
      idx[#idx + 1] = i
    end
    samples[#samples + 1] = idx
    weights[#weights + 1] = e[2]
    total = total + e[2]
  end
  return {
    ['$schema'] = M.SCHEMA,
    exporter = opts.exporter or ('perf_manual ' .. host.version),
    name = opts.name or 'profile',
    activeProfileIndex = 0,
    shared = { frames = frames },
    profiles = { {
      type = 'sampled',
      name = opts.name or 'profile',
      unit = unit,
      startValue = 0,
      endValue = total,
      samples = samples,
      weights = weights,
    } },
  }
end

function M.encode(profile, opts)
  return util.json_encode(M.document(profile, opts))
end

--- Writes the JSON file atomically. Returns true | nil, err.
function M.write(path, profile, opts)
  return util.write_atomic(path, M.encode(profile, opts))
end

return M
