--- Runs a collection suite (perf_manual.suites: /proc collectors sampled
--- each interval, tracers, profilers, a USE check) over one measurement
--- session. Every item lands in the manifest with its source, start/end,
--- samples, lost events and the error that stopped it; nothing missing is
--- hidden.
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local store = require('perf_manual.store')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local measure_use = require('perf_manual.measure.use')
local suites = require('perf_manual.suites')
local collectors = require('perf_manual.collectors')
local tracers = require('perf_manual.tracers')
local profilers = require('perf_manual.profilers')
local oncpu = require('perf_manual.profilers.oncpu')
local offcpu = require('perf_manual.profilers.offcpu')

local M = {}

-- profiler names people use → modules
local PROFILERS = { cpu = oncpu, oncpu = oncpu, offcpu = offcpu, off_cpu = offcpu }

-- a collector's sample() with the arguments it takes
local function sampler(name, mod, t)
  if name == 'process' then
    if t.kind ~= 'pid' then return nil, 'needs --pid' end
    return function() return mod.sample(t.pid) end
  elseif name == 'cgroup' then
    if t.kind == 'system' then return nil, 'needs a target (--pid)' end
    return function() return mod.sample(t) end
  end
  return function() return mod.sample() end
end

local function first_line(e)
  return (util.is_user_error(e) and e.user_error or tostring(e or 'failed')):match('^[^\n]*')
end

-- starts one tracer or profiler of the suite; errors are kept, not raised
local function start_recorder(s, kind, spec, filter)
  if type(spec) == 'string' then spec = { spec } end
  local name = spec[1]
  local rec = { kind = kind, name = name, started = store.iso() }
  local mod
  if kind == 'tracer' then
    mod = tracers.get(name)
    rec.source = 'perf_manual.tracers.' .. (mod and mod.name or name)
  else
    mod = PROFILERS[name]
    rec.source = 'perf_manual.profilers.' .. (mod == offcpu and 'offcpu' or 'oncpu')
  end
  if not mod or mod.error then rec.error = 'not available: no ' .. kind .. ' ' .. name; return rec end
  if filter.off then rec.error = 'not available: ' .. filter.off; return rec end
  local o = { pid = filter.pid, cgroup = filter.cgroup }
  for k, v in pairs(spec) do if type(k) == 'string' then o[k] = v end end
  if kind == 'tracer' then
    -- under the session's overhead budget, named apart from the USE check's own
    local h, err = s:start_tracer('suite:' .. name, mod, o)
    if not h then rec.error = 'not available: ' .. tostring(err); return rec end
    rec.key, rec.handle = 'suite:' .. name, h
  else
    local ok, h, err = pcall(mod.start, o)
    if not ok or not h then rec.error = 'not available: ' .. first_line(not ok and h or err); return rec end
    rec.handle = h
  end
  return rec
end

local function stop_recorder(s, rec)
  if not rec.handle then return nil end
  local ok, data = pcall(function()
    if rec.kind == 'profiler' then
      local prof = rec.handle:stop()
      local out = profilers.to_json(prof)
      out.folded = profilers.folded(prof)
      out.lost_events = prof.lost_samples
      return out
    end
    local res = s:stop_tracers({ rec.key })[rec.key]
    if not res then error(s.errors[rec.key] or 'no result', 0) end
    return res
  end)
  rec.ended = store.iso()
  if not ok then
    rec.error = first_line(data)
    pcall(function() rec.handle:close() end)
    return nil
  end
  if type(data) == 'table' then
    local q = type(data.quality) == 'table' and data.quality or {}
    rec.lost_events = data.lost_events or data.lost or q.lost_events or q.lost
    rec.detached = s.detached[rec.key]
  end
  return data
end

--- Runs suite `name` (or, when there is no such suite, the collector named
--- by it, e.g. "memory"). opts: duration, interval, target (text or
--- resolved; pid = N is target pid:N), progress, note, judge(measures) →
--- the USE result stored as use-check.json. save(name, data, kind) stores
--- one output file and returns its path. Returns the manifest and the USE
--- result (if the suite has one).
--- Streaming (the `collect` command): opts.stream(name) → an appender
--- (perf_manual.store Inv:appender) each collector's samples go to as they
--- are taken, and opts.checkpoint(manifest) writes the manifest: once at the
--- start (status running, partial) and at the end. A kill -9 leaves every
--- completed interval on disk and a manifest that says the run was cut.
function M.run(name, opts, save)
  local suite, why = suites.get(name)
  if not suite then
    if not collectors.get(name) then
      util.user_error(string.format("collect: %s (suites: %s)", why:gsub('^no suite (.*)$', "no suite '%1'"),
        table.concat(suites.list(), ', ')))
    end
    suite = { name = name, collectors = { name }, tracers = {}, profilers = {} }
  end
  local target = opts.target or (opts.pid and ('pid:' .. opts.pid)) or 'system'
  return measure.with_session({ target = target, duration = opts.duration or 5, what = 'collect ' .. suite.name,
    max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note },
    function(s) return M.run_on(s, suite, opts, save) end)
end

function M.run_on(s, suite, opts, save)
  s:start()
  local t = s.target
  local duration = s.duration
  local interval = opts.interval or suite.interval or math.min(1, duration / 2)
  local manifest = { suite = suite.name, summary = suite.summary, pid = t.pid, target = targets.describe(t),
    duration = duration, interval = interval, started = store.iso(), items = util.array() }
  for k, v in pairs(store.host_facts()) do manifest[k] = v end

  -- recorders first, so they cover the whole sampling window
  local filter = {}
  if #suite.tracers + #suite.profilers > 0 then
    local off = measure.bpf_unavailable()
    local f, ferr = targets.bpf_filter(t)
    filter = off and { off = off } or f or { off = ferr }
  end
  local recs = {}
  for _, spec in ipairs(suite.tracers) do recs[#recs + 1] = start_recorder(s, 'tracer', spec, filter) end
  for _, spec in ipairs(suite.profilers) do recs[#recs + 1] = start_recorder(s, 'profiler', spec, filter) end

  local cols = {}
  for _, cname in ipairs(suite.collectors) do
    local c = { name = cname, kind = 'collector', source = 'perf_manual.collectors.' .. cname, series = {},
      samples = 0 }
    local mod = collectors.get(cname)
    if mod then
      local fn, serr = sampler(cname, mod, t)
      if fn then c.mod, c.fn = mod, fn else c.error = 'not collected: ' .. serr end
    else
      c.error = 'not available: no collector ' .. cname
    end
    cols[#cols + 1] = c
  end
  if opts.stream then
    for _, c in ipairs(cols) do
      if c.fn then c.out = opts.stream(c.name .. '.jsonl') end
    end
  end
  if opts.checkpoint then
    -- what a cut run leaves: this manifest, rewritten at the end
    local m = {}
    for k, v in pairs(manifest) do m[k] = v end
    m.status, m.partial = 'running', true
    m.note = 'written at the start and rewritten at the end: a manifest still marked running means the run '
      .. 'was cut (killed); the .jsonl series hold every interval completed before'
    m.items = util.array()
    for _, rec in ipairs(recs) do
      -- one final read at the end: a cut run has none of these
      m.items[#m.items + 1] = { name = rec.name, kind = rec.kind, source = rec.source, started = rec.started,
        error = rec.error, note = not rec.error and 'written at the end of the run' or nil }
    end
    for _, c in ipairs(cols) do
      m.items[#m.items + 1] = { name = c.name, kind = 'collector', source = c.source, file = c.out and c.out.rel,
        error = c.error }
    end
    opts.checkpoint(m)
  end
  local last_sample
  local function sample_all()
    -- ticks closer than half an interval would give noisy rates: skip them
    local now = sys.now()
    if last_sample and now - last_sample < interval / 2 then return end
    last_sample = now
    for _, c in ipairs(cols) do
      if c.fn then
        local ok, snap = pcall(c.fn)
        if ok and snap then
          if c.prev and c.mod.rates then
            local rok, r = pcall(c.mod.rates, c.prev, snap)
            if rok and r then
              local x = { t = store.iso(), rates = r }
              if c.out then
                c.out:append(util.json_encode(x)) -- on disk now, not held until the end
              else
                c.series[#c.series + 1] = x
              end
              c.samples = c.samples + 1
            end
          end
          c.prev = snap
        elseif not ok then
          c.error = first_line(snap)
          c.fn = nil
        else
          c.ended_early = 'target gone'
          c.fn = nil
        end
      end
    end
  end
  local function poll_profilers()
    for _, rec in ipairs(recs) do
      if rec.kind == 'profiler' and rec.handle then pcall(rec.handle.poll, rec.handle) end
    end
  end

  local use_result, use_err
  sample_all()
  if suite.use then
    -- the USE check samples on the session's clock; the collectors on its intervals
    local ok, m = pcall(measure_use.collect_on, s, { interval = interval, on_interval = sample_all,
      on_tick = poll_profilers })
    sample_all()
    if ok and opts.judge then
      use_result = opts.judge(m)
    elseif ok then
      use_result = { measures = m }
    else
      use_err = first_line(m)
    end
  else
    s:run { interval = interval, tick = poll_profilers, on_interval = sample_all }
    sample_all()
  end
  if s.ended_by == 'interrupted' then manifest.stopped = true end
  manifest.status = manifest.stopped and 'stopped early' or 'complete'

  for _, rec in ipairs(recs) do
    local data = stop_recorder(s, rec)
    local item = { name = rec.name, kind = rec.kind, source = rec.source, started = rec.started,
      ended = rec.ended, lost_events = rec.lost_events, error = rec.error, detached = rec.detached }
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
    if c.out then c.out:close() end
    if c.out and c.samples > 0 then
      item.file = c.out.rel
    elseif c.samples > 0 then
      local lines = {}
      for i, x in ipairs(c.series) do lines[i] = util.json_encode(x) end
      item.file = save(c.name .. '.jsonl', table.concat(lines, '\n') .. '\n', 'series')
    elseif not c.error then
      item.error = 'no complete interval was collected'
    end
    manifest.items[#manifest.items + 1] = item
  end
  if suite.use then
    local item = { name = 'use-check', kind = 'analyzer', source = 'perf_manual.measure.use',
      started = manifest.started, ended = store.iso(), error = use_err }
    if use_result then
      item.file = save('use-check.json', use_result, 'use-check')
      item.samples = use_result.samples
      item.partial = use_result.partial or nil
    end
    manifest.items[#manifest.items + 1] = item
  end
  if #s.notes > 0 then manifest.notes = s.notes end
  -- a launched command (collect -- CMD) stops now: the manifest says how it ended
  if s.owns_target then targets.stop(s.target); manifest.target = targets.describe(s.target) end
  manifest.ended = store.iso()
  return manifest, use_result
end

return M
