--- Collection suites: named sets of collectors, tracers and profilers run
--- together over one window (`perf_manual collect --suite NAME`,
--- `inv:collect { NAME }`). A suite is a Lua file in this folder:
---
---   return { extends = 'basic', summary = '...',
---            collectors = { 'cpu', 'memory' },   -- /proc collectors, sampled each interval
---            use = true,                          -- a USE check over the same window
---            tracers = { { 'io' } }, profilers = { { 'cpu' } }, interval = 1 }
---
--- Every item lands in the manifest with its source, start/end, samples,
--- lost events and the error that stopped it; nothing missing is hidden.
local util = require('perf_manual.util')

local M = {}

local function sys() return require('perf_manual._c.sys') end

--- Names of the suites on disk.
function M.list()
  local dirent = require('posix.dirent')
  local host = require('perf_manual._host')
  local ok, names = pcall(dirent.dir, host.root .. '/lib/perf_manual/suites')
  local out = {}
  for _, n in ipairs(ok and names or {}) do
    local s = n:match('^(.+)%.lua$')
    if s and s ~= 'init' then out[#out + 1] = s end
  end
  table.sort(out)
  return out
end

--- A suite definition with `extends` resolved. Unknown suite → nil, why.
function M.get(name, seen)
  seen = seen or {}
  if seen[name] then return nil, 'suite ' .. name .. ' extends itself' end
  seen[name] = true
  if not tostring(name):match('^[%w_%-]+$') then return nil, 'bad suite name ' .. tostring(name) end
  local ok, def = pcall(require, 'perf_manual.suites.' .. name)
  if not ok then
    if tostring(def):match('not found') then return nil, 'no suite ' .. name end
    error(def, 0)
  end
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

local function try_require(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  if tostring(mod):match('not found') then return nil, 'module ' .. name .. ' is not installed yet' end
  return nil, tostring(mod):match('^[^\n]*')
end

-- a collector's sample() with the arguments it takes
local function sampler(name, mod, opts)
  if name == 'process' then
    if not opts.pid then return nil, 'needs --pid' end
    return function() return mod.sample(opts.pid) end
  elseif name == 'cgroup' then
    if not opts.target then return nil, 'needs a target (--pid)' end
    return function() return mod.sample(opts.target) end
  end
  return function() return mod.sample() end
end

-- profiler names people use → modules
local PROFILERS = { cpu = 'oncpu', oncpu = 'oncpu', offcpu = 'offcpu', off_cpu = 'offcpu' }

--- Starts a tracer (start/read/stop) or a profiler (start/poll/stop);
--- returns a recorder, with `.error = "not available: why"` when it could
--- not start.
function M.start_recorder(kind, spec, opts)
  if type(spec) == 'string' then spec = { spec } end
  local name = spec[1]
  local modname = kind == 'tracer' and ('perf_manual.tracers.' .. name)
    or ('perf_manual.profilers.' .. (PROFILERS[name] or name))
  local rec = { kind = kind, name = name, source = modname, started = require('perf_manual.store').iso() }
  local mod, why = try_require(modname)
  if not mod then rec.error = 'not available: ' .. why return rec end
  if not mod.start then rec.error = 'not available: ' .. modname .. ' has no start()' return rec end
  local o = {}
  for k, v in pairs(spec) do if type(k) == 'string' then o[k] = v end end
  o.pid = o.pid or opts.pid
  local ok, h, err = pcall(mod.start, o)
  if not ok or not h then
    local e = not ok and h or err
    local msg = util.is_user_error(e) and e.user_error or tostring(e or 'start failed'):match('^[^\n]*')
    rec.error = 'not available: ' .. msg
    return rec
  end
  rec.mod, rec.handle = mod, h
  return rec
end

--- Lets a recorder do its periodic work (profilers capture mappings).
function M.tick(rec)
  if rec.handle and type(rec.handle) == 'table' and rec.handle.poll and rec.kind == 'profiler' then
    pcall(rec.handle.poll, rec.handle)
  end
end

--- Stops a recorder and returns its data: a tracer's result, or a
--- profile as plain data with `folded` text (perf_manual.profilers).
function M.stop_recorder(rec)
  if not rec.handle then return nil end
  local h = rec.handle
  local ok, data = pcall(function()
    if rec.kind == 'profiler' then
      local prof = h:stop()
      local P = require('perf_manual.profilers')
      local out = P.to_json(prof)
      out.folded = P.folded(prof)
      out.lost_events = prof.lost_samples
      return out
    end
    local d
    if type(h) == 'table' and h.read then d = h:read() elseif rec.mod.read then d = rec.mod.read(h) end
    local fin
    if type(h) == 'table' and h.stop then fin = h:stop() elseif rec.mod.stop then fin = rec.mod.stop(h) end
    return type(fin) == 'table' and fin or d
  end)
  rec.ended = require('perf_manual.store').iso()
  if not ok then
    rec.error = util.is_user_error(data) and data.user_error or tostring(data):match('^[^\n]*')
    pcall(function() if h.close then h:close() end end)
    return nil
  end
  if type(data) == 'table' then
    local q = type(data.quality) == 'table' and data.quality or {}
    rec.lost_events = data.lost_events or data.lost or q.lost_events or q.lost
  end
  return data
end

--- Runs one recorder for `duration` seconds (Ctrl-C ends it early).
--- Returns data, or nil and why.
function M.record(kind, spec, opts, duration)
  local rec = M.start_recorder(kind, spec, opts)
  if rec.error then return nil, rec.error:gsub('^not available: ', '') end
  local t0 = sys().now()
  while sys().now() - t0 < duration do
    if not sys().sleep(math.min(0.1, duration - (sys().now() - t0))) then break end
    M.tick(rec)
  end
  local data = M.stop_recorder(rec)
  if not data then return nil, rec.error or 'no data' end
  if type(data) == 'table' then data.lost_events = data.lost_events or rec.lost_events end
  return data
end

--- Runs suite `name` (or, when there is no such suite, the collectors named
--- by it, e.g. "memory"). `opts`: duration, interval, pid, target,
--- progress(text). `save(name, data, kind)` stores one output file and
--- returns its path. Returns the manifest and the USE result (if any).
function M.run(name, opts, save)
  local suite, why = M.get(name)
  if not suite then
    local mod = try_require('perf_manual.collectors.' .. tostring(name))
    if not mod then util.user_error(why .. ' (suites: ' .. table.concat(M.list(), ', ') .. ')') end
    suite = { name = name, collectors = { name }, tracers = {}, profilers = {} }
  end
  local duration = opts.duration or 5
  local interval = opts.interval or suite.interval or math.min(1, duration / 2)
  if opts.pid and not opts.target then
    local ok, t = pcall(require('perf_manual.target').resolve, tostring(opts.pid))
    if ok then opts.target = t else util.user_error(util.is_user_error(t) and t.user_error or tostring(t)) end
  end
  local store = require('perf_manual.store')
  local manifest = { suite = suite.name, summary = suite.summary, pid = opts.pid, duration = duration,
    interval = interval, started = store.iso(), items = util.array() }
  for k, v in pairs(store.host_facts()) do manifest[k] = v end

  -- recorders first, so they cover the whole sampling window
  local recs = {}
  for _, spec in ipairs(suite.tracers) do recs[#recs + 1] = M.start_recorder('tracer', spec, opts) end
  for _, spec in ipairs(suite.profilers) do recs[#recs + 1] = M.start_recorder('profiler', spec, opts) end

  local cols = {}
  for _, cname in ipairs(suite.collectors) do
    local c = { name = cname, kind = 'collector',
      source = 'perf_manual.collectors.' .. cname, series = {}, samples = 0 }
    local mod, merr = try_require(c.source)
    if mod then
      local fn, serr = sampler(cname, mod, opts)
      if fn then c.mod, c.fn = mod, fn else c.error = 'not collected: ' .. serr end
    else
      c.error = 'not available: ' .. merr
    end
    cols[#cols + 1] = c
  end
  local last_sample
  local function sample_all()
    for _, rec in ipairs(recs) do M.tick(rec) end
    -- ticks closer than half an interval would give noisy rates: skip them
    local now = sys().now()
    if last_sample and now - last_sample < interval / 2 then return end
    last_sample = now
    for _, c in ipairs(cols) do
      if c.fn then
        local ok, snap = pcall(c.fn)
        if ok and snap then
          if c.prev and c.mod.rates then
            local rok, r = pcall(c.mod.rates, c.prev, snap)
            if rok and r then
              c.series[#c.series + 1] = { t = store.iso(), rates = r }
              c.samples = c.samples + 1
            end
          end
          c.prev = snap
        elseif not ok then
          c.error = tostring(util.is_user_error(snap) and snap.user_error or snap):match('^[^\n]*')
          c.fn = nil
        else
          c.ended_early = 'target gone'
          c.fn = nil
        end
      end
    end
  end

  local use_result, use_err
  sample_all()
  local use = suite.use and try_require('perf_manual.analyzers.use')
  if suite.use and not use then use_err = 'not available: perf_manual.analyzers.use is not installed yet' end
  if use then
    -- the USE check drives the clock; the collectors sample on its ticks
    local ok, r = pcall(use.check, { target = opts.target or require('perf_manual.target').resolve('system'),
      duration = duration, interval = interval,
      progress = function(text) sample_all(); if opts.progress then opts.progress(text) end end })
    if ok then
      use_result = r
      r.text = use.render(r)
    else
      use_err = util.is_user_error(r) and r.user_error or tostring(r):match('^[^\n]*')
    end
  else
    local t0 = sys().now()
    while sys().now() - t0 < duration do
      if not sys().sleep(math.min(interval, duration - (sys().now() - t0))) then manifest.stopped = true break end
      sample_all()
      if opts.progress then opts.progress(string.format('collect %s: %.0f/%.0f s',
        suite.name, sys().now() - t0, duration)) end
    end
  end
  if sys().stop_requested() then manifest.stopped = true end

  for _, rec in ipairs(recs) do
    local data = M.stop_recorder(rec)
    local item = { name = rec.name, kind = rec.kind, source = rec.source, started = rec.started,
      ended = rec.ended, lost_events = rec.lost_events, error = rec.error }
    if data then
      local base = (rec.kind == 'tracer' and 'trace-' or 'profile-') .. rec.name
      if type(data) == 'table' and type(data.folded) == 'string' then
        item.folded = save(base .. '.folded', data.folded, rec.kind)
        data.folded = nil
        data.folded_file = item.folded
      end
      if type(data) == 'table' then data.tracer = rec.kind == 'tracer' and rec.name or nil end
      item.file = save(base .. '.json', data, rec.kind)
    end
    manifest.items[#manifest.items + 1] = item
  end
  for _, c in ipairs(cols) do
    local item = { name = c.name, kind = 'collector', source = c.source, samples = c.samples,
      started = manifest.started, ended = store.iso(), error = c.error, note = c.ended_early }
    if c.samples > 0 then
      local lines = {}
      for i, s in ipairs(c.series) do lines[i] = util.json_encode(s) end
      item.file = save(c.name .. '.jsonl', table.concat(lines, '\n') .. '\n', 'series')
    elseif not c.error then
      item.error = 'no complete interval was collected'
    end
    manifest.items[#manifest.items + 1] = item
  end
  if suite.use then
    local item = { name = 'use-check', kind = 'analyzer', source = 'perf_manual.analyzers.use',
      started = manifest.started, ended = store.iso(), error = use_err }
    if use_result then
      item.file = save('use-check.json', use_result, 'use-check')
      item.samples = use_result.samples
      item.partial = use_result.partial or nil
    end
    manifest.items[#manifest.items + 1] = item
  end
  manifest.ended = store.iso()
  return manifest, use_result
end

return M
