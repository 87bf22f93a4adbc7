--- The fix → validate step of an investigation: records the fix, measures
--- "after" the way the investigation measured "before" (its quantify step
--- and, when it had an endpoint, its RED check with the same endpoint and
--- load), or takes an "after" data dir, and judges the symptom
--- (perf_manual.analyzers.validate) with the diff's statistics. The verdict
--- goes in metadata.yaml (fix, validation) and the full diff in
--- analysis/fix-validation.json.
local util = require('perf_manual.util')
local store = require('perf_manual.store')
local report = require('perf_manual.report')
local stats = require('perf_manual.analyzers.stats')
local validate = require('perf_manual.analyzers.validate')
local targets = require('perf_manual.measure.target')

local M = {}

--- Records `text` as the fix of the investigation behind `handle`.
--- Returns the fix ({text=, at=}).
function M.record_fix(handle, text)
  if type(text) ~= 'string' or not text:match('%S') then util.user_error('fix: the fix text is empty') end
  local fix
  handle:update_metadata(function(meta) fix = store.set_fix(meta, text) end)
  return fix
end

-- the first recorded RED result of the investigation ("before"), or nil
local function before_red(dir)
  local text = store.read_artifact(dir, 'red-check.json')
  return text and util.json_decode(text) or nil
end

--- What the investigation measured, to measure it again: {workload=,
--- endpoint=, duration=, connections=, rate=, quantify=bool}.
function M.plan(meta, dir)
  local p = meta.params or {}
  local red = before_red(dir)
  local plan = { workload = p.workload, endpoint = p.endpoint, duration = tonumber(p.duration) or 5,
    quantify = store.read_artifact(dir, 'quantify.json') ~= nil }
  if type(red) == 'table' and red.mode ~= 'passive' then
    plan.endpoint = plan.endpoint or red.url
    plan.duration = tonumber(red.duration_s) or plan.duration
    plan.connections = tonumber(red.connections)
    plan.rate = type(red.rate) == 'table' and tonumber(red.rate.asked) or nil
  end
  return plan
end

-- the target to measure again: --target given, else the recorded workload
-- (a command is launched again, its output in DIR/workload.log)
local function after_target(plan, target_text, after_dir)
  local spec = target_text or plan.workload
  if spec == nil then return nil end
  local ok, t = pcall(targets.resolve, tostring(spec))
  if not ok then
    if util.is_user_error(t) then
      util.user_error(string.format('fix --validate: the workload %s: %s (give --target, or --after DIR)',
        tostring(spec), t.user_error))
    end
    error(t, 0)
  end
  if t.kind == 'pid' and not util.readfile(targets.proc .. '/' .. t.pid .. '/stat') then
    util.user_error(string.format('fix --validate: process %d is gone; give --target (the fixed workload) '
      .. 'or --after DIR', t.pid))
  end
  if t.kind == 'command' then
    targets.launch(t, { log = after_dir .. '/workload.log' })
  end
  return t
end

--- Measures "after" into a new after/ dir of the investigation. inv is the
--- running context (its verbs measure). Returns the dir's full path and
--- its path relative to the investigation.
function M.measure_after(inv, handle, meta, opts)
  opts = opts or {}
  local plan = M.plan(meta, handle.dir)
  if not plan.endpoint and not plan.quantify then
    util.user_error('fix --validate: investigation ' .. handle.id .. ' recorded neither a RED check nor quantify '
      .. 'figures: nothing to measure again (give --after DIR)')
  end
  local dir, rel = handle:new_after_dir()
  local t
  local ok, err = pcall(function()
    t = after_target(plan, opts.target, dir)
    local manifest = { recorded_with = 'perf_manual fix --validate', investigation = handle.id,
      recorded = store.iso(), workload = opts.target or plan.workload, endpoint = plan.endpoint }
    if plan.quantify and t then
      local q = inv:quantify { target = t, duration = math.min(plan.duration, 3) }
      util.write_atomic(dir .. '/quantify.json', util.json_encode(inv:without(q, { 'artifact' }), true) .. '\n')
    end
    if plan.endpoint then
      local s = inv:red_check { endpoint = plan.endpoint, duration = plan.duration, connections = plan.connections,
        rate = plan.rate }
      if s.available == false then util.user_error('fix --validate: RED check: ' .. tostring(s.why)) end
      if s.unreachable then
        util.user_error(string.format('fix --validate: not one connection to %s succeeded (%s)', tostring(s.url),
          tostring(s.errors and s.errors.last_error or 'no answer')))
      end
      util.write_atomic(dir .. '/red-check.json',
        util.json_encode(inv:without(s, { 'text', 'findings', 'artifact' }), true) .. '\n')
      manifest.red = { connections = s.connections, duration_s = s.duration_s, rate = plan.rate }
    end
    util.write_atomic(dir .. '/manifest.json', util.json_encode(manifest, true) .. '\n')
  end)
  if t and t.launched then pcall(targets.stop, t) end
  if not ok then error(err, 0) end
  return dir, rel
end

--- The "after" dataset of --after: a data dir, or an investigation id.
function M.open_after(arg, root)
  if store.is_dir(arg) then
    local ds, err = report.load(arg)
    if not ds then util.user_error('fix --after: ' .. err) end
    return ds, arg
  end
  local h = store.open(root, arg)   -- unknown: a user error with the close matches
  local ds, err = report.load(h.dir)
  if not ds then util.user_error('fix --after: ' .. err) end
  return ds, h.id
end

--- Judges before (the investigation) against after, stores the verdict
--- and the diff. opts: after_ds, after (its name for the record), seed,
--- iterations, stop. Returns the validation.
function M.judge(handle, meta, opts)
  local before = report.load(handle.dir)
  local after = opts.after_ds
  local v = validate.validation(before, after, { symptom = meta.symptom or (meta.params or {}).symptom,
    seed = opts.seed or 1, iterations = opts.iterations or 2000, stop = opts.stop })
  -- the diff of every metric both sides hold, as `diff --output` writes it
  local d = stats.diff(before, after, { seed = opts.seed or 1, iterations = opts.iterations or 2000, stop = opts.stop })
  d.before, d.after, d.before_id, d.after_id = handle.id, opts.after, handle.id, opts.after
  d.alpha, d.seed, d.iterations = stats.ALPHA, opts.seed or 1, opts.iterations or 2000
  d.verdict, d.summary = v.verdict, v.summary
  handle:write_analysis_json('fix-validation.json', d)
  local metrics = {}
  for i, r in ipairs(v.metrics) do
    metrics[i] = { name = r.name, key = r.key, unit = r.unit, before = r.before, after = r.after,
      change_pct = r.change_pct, ci_lo = r.ci_lo, ci_hi = r.ci_hi, p = r.p, test = r.test, why = r.why }
  end
  local rec = { verdict = v.verdict, summary = v.summary, metrics = metrics, after = opts.after, at = store.iso() }
  handle:update_metadata(function(m)
    store.set_validation(m, rec)
    -- the report drafted during the run says the fix and its verdict too
    if util.readfile(store.report_path(handle.dir)) then
      local view = {}
      for k, x in pairs(m) do view[k] = x end
      view.id = handle.id
      local rok, text = pcall(report.investigation, view, { format = 'technical', dir = handle.dir })
      if rok and type(text) == 'string' then util.write_atomic(store.report_path(handle.dir), text) end
    end
  end)
  local res = { primary = v.primary }
  for k, x in pairs(rec) do res[k] = x end
  return res
end

return M
