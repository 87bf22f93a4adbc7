-- diff: did it change, or is it noise? Before/after comparison of two data
-- dirs or investigations (every metric on both sides, with a real test and
-- a confidence interval), latency percentiles side by side, the hotspot
-- shift between two CPU profiles, and whether a stated expectation was met.
local util = require('perf_manual.util')
local names = require('perf_manual.metric_names')

local function labels(keys)
  local out = {}
  for i, k in ipairs(keys) do out[i] = names.label(k) end
  return out
end

local function fmt_change(b, a)
  if not b or not a or b == 0 then return 'n/a' end
  return string.format('%+.1f%%', (a / b - 1) * 100)
end

local function is_file(p)
  local st = require('posix.sys.stat').stat(p)
  return st and require('posix.sys.stat').S_ISREG(st.st_mode) ~= 0
end

-- a folded file, or a dir whose only data is a folded profile (a bundle
-- file is an investigation)
local function profile_path(p)
  if is_file(p) and not require('perf_manual.bundle').looks_like(p) then return p end
  local report = require('perf_manual.report')
  if report.is_dir(p) then
    local ds = report.load(p)
    if ds and #ds.profiles > 0 and next(ds.samples) == nil and next(ds.scalars) == nil then
      return ds.profiles[#ds.profiles].path
    end
  end
end

-- A profile, its skipped lines said on stderr with their numbers; one with
-- no stack left is an error, not a hotspot shift from nothing.
local function load_profile(inv, path)
  local fold = require('perf_manual.fold')
  local prof, st, file = fold.load(path)
  if not prof then return nil end
  for _, l in ipairs(fold.format_errors(st, 'perf_manual: diff: ' .. file)) do inv.err:write(l, '\n') end
  if prof:total() == 0 and (st.bad or 0) > 0 then
    util.user_error(string.format('diff: %s: no valid stack (%d bad lines)', file, st.bad))
  end
  return prof
end

local function flamediff_svg(before, after, path)
  local fd = require('perf_manual.report.flamediff')
  local rok, svg = pcall(fd.render, before, after, { title = 'Differential flame graph (red: more after, blue: less)' })
  if not rok or type(svg) ~= 'string' then return nil, 'flamediff failed: ' .. tostring(svg):match('^[^\n]*') end
  local wok, err = util.write_atomic(path, svg)
  if not wok then util.user_error('diff: ' .. err) end
  return path
end

return playbook {
  name = 'diff',
  topic = 'comparison',
  summary = 'Before/after comparison with significance tests, percentiles and hotspot shift',
  -- luacheck: push no max line length
  examples = [[
  perf_manual diff --before runs/before --after runs/after
  perf_manual diff --before 2026-01-20_slow-api --after 2026-01-21_after-fix --expect "p99 -20%"
  perf_manual diff --before runs/before --after runs/after --expect "p99 -20%, errors < 1%" --expect "throughput +10%"   (CI gate: exit 1 when one is not met)
  perf_manual diff --before old.folded --after new.folded --output shift.md
  perf_manual diff --before a --after b --output inv/analysis/fix-validation.json   (the report's Fix Validation table)]],
  -- luacheck: pop
  params = {
    before = param.string { 'data dir, investigation, bundle file, or folded profile before the change' },
    after = param.string { 'data dir, investigation, bundle file, or folded profile after the change' },
    expect = param.strings { 'an expected effect, stated before measuring (repeatable, or several separated by , or ' ..
      ';): '
      .. '"p99 -20%", "p50 < 5ms", "errors < 1%", "error ratio -50%", "throughput +10%", "rps >= 1000", '
      .. '"profile spin -30%", "function spin share < 10%", "METRIC [STAT] -10%". Exit 0: all met; 1: one not met '
      .. 'or not judged (the data lacks its metric); 2: one does not parse. Met: significant (p < alpha) and the CI ' ..
        'end '
      .. 'nearest no change clears the amount; a bound: the whole 95% CI of the after value on its side',
        optional = true },
    output = param.path { 'write the result to FILE (.md, or .json for the data)', optional = true },
    flamediff = param.path { 'write the differential flame graph (SVG) of the two profiles here (default with ' ..
      '--output: next to it)', optional = true },
    json = param.flag { 'print JSON instead of Markdown' },
    seed = param.integer { 'bootstrap seed (same seed, same intervals)', default = 1 },
    iterations = param.integer { 'bootstrap resamples', default = 2000, min = 100, max = 100000 },
    store = param.path { 'investigation store (default ./investigations or $PERF_MANUAL_STORE)', optional = true },
  },

  step 'compare' {
    function(inv, p)
      local stats = require('perf_manual.analyzers.stats')
      local report = require('perf_manual.report')
      local template = require('perf_manual.report.template')
      -- each side must be there before its kind is judged: a missing path
      -- is not "a data dir" (nor, with a profile on the other side, a mismatch)
      local store = require('perf_manual.store')
      for _, side in ipairs({ 'before', 'after' }) do
        local v = p[side]
        if not store.exists(v) then
          if v:find('/', 1, true) then
            util.user_error(string.format('diff: --%s %s does not exist', side, util.printable(v)))
          end
          store.open(store.root(p.store), v)   -- an investigation id: a user error naming it when unknown
        end
      end
      local exps
      if p.expect and #p.expect > 0 then
        local err
        exps, err = stats.parse_expects(p.expect)
        if not exps then util.user_error('diff: ' .. err) end
      end
      -- Ctrl-C ends the resampling (the bootstrap checks it); nothing half-done is written
      local stop = require('perf_manual.sys').stop_requested
      local function stopped()
        if stop() then util.user_error('diff: stopped (Ctrl-C) during the bootstrap: nothing written', 130) end
      end
      local out = { before = p.before, after = p.after, alpha = stats.ALPHA, seed = p.seed, iterations = p.iterations }
      local pb, pa = profile_path(p.before), profile_path(p.after)
      local hot_before, hot_after
      local ds_before, ds_after = { samples = {} }, { samples = {} }
      if pb and pa then
        -- two profiles: the hotspot shift and the differential flame graph only
        hot_before = load_profile(inv, pb) or util.user_error('diff: cannot read profile ' .. pb)
        hot_after = load_profile(inv, pa) or util.user_error('diff: cannot read profile ' .. pa)
        out.before_id, out.after_id = p.before, p.after
        out.metrics, out.latency, out.only_before, out.only_after = {}, {}, {}, {}
      else
        if pb or pa then util.user_error('diff: one side is a profile and the other a data dir; give two of a kind') end
        local db = report.open(p.before, p.store)
        local da = report.open(p.after, p.store)
        out.before_id, out.after_id = db.id, da.id
        local d = stats.diff(db, da, { seed = p.seed, iterations = p.iterations, stop = stop })
        stopped()
        for k, v in pairs(d) do out[k] = v end
        if #db.profiles > 0 and #da.profiles > 0 then
          hot_before = load_profile(inv, db.profiles[#db.profiles].path)
          hot_after = load_profile(inv, da.profiles[#da.profiles].path)
        end
        ds_before, ds_after = db, da
      end
      if exps then
        local function counts(prof)
          if not prof then return nil end
          local funcs, total = require('perf_manual.fold').function_totals(prof, true)
          -- perf script's folded counts can be periods (ns of cpu-clock), not
          -- samples: the tests need samples, so weights of 1000 and more are
          -- divided by the smallest stack's (one sample's) weight
          local unit = math.huge
          for _, e in ipairs(prof:stacks()) do if e[2] > 0 and e[2] < unit then unit = e[2] end end
          if unit >= 1000 and unit < math.huge then
            for _, r in pairs(funcs) do r.total = math.floor(r.total / unit + 0.5) end
            total = math.floor(total / unit + 0.5)
          end
          return { funcs = funcs, total = total, weighted = unit >= 1000 and unit < math.huge or nil }
        end
        out.expectations = stats.judge(exps, ds_before, ds_after, { seed = p.seed, iterations = p.iterations,
          stop = stop, profile_before = counts(hot_before), profile_after = counts(hot_after) })
        stopped()
        local lines, all = {}, true
        for i, e in ipairs(out.expectations) do
          -- the sentence names the metric as people read it, not by its key
          if type(e.line) == 'string' then e.line = names.humanize(e.line, { e.metric }) end
          lines[i] = e.line; all = all and e.met
        end
        -- the one-line summary the reports show as "Fix check"
        out.expectation = { status = all and 'met' or 'not met', text = table.concat(lines, '; ') }
        if not all then inv.exit_status = 1 end
      end
      if hot_before and hot_after then
        out.hotspots = report.hotspot_shift(hot_before, hot_after, 10)
        local svgpath = p.flamediff or (p.output and (p.output:gsub('%.%w+$', '') .. '.flamediff.svg'))
        if svgpath then
          local path, why = flamediff_svg(hot_before, hot_after, svgpath)
          out.flamediff = path
          if not path then inv:note(why); out.flamediff_missing = why end
        end
      end
      if #out.metrics == 0 and not out.hotspots then
        inv.err:write('perf_manual: diff: nothing to compare: no metric on both sides\n')
      end

      -- each metric's human name and unit next to its key
      for _, m in ipairs(out.metrics or {}) do m.name = m.name or names.label(m.metric) end
      local as_json = p.json or (p.output and p.output:match('%.json$'))
      local text
      if as_json then
        text = util.json_encode(out, true) .. '\n'
      else
        local rows = {}
        for i, m in ipairs(out.metrics) do
          local before, after = names.row_values(m)
          rows[i] = { metric = names.label(m.metric), before = before, after = after, change = m.change_text,
            ci = m.ci_text ~= '' and m.ci_text or '-', p = m.p and string.format('%.3g', m.p) or '-',
            verdict = m.verdict }
        end
        local lat = {}
        for _, l in ipairs(out.latency) do
          for _, e in ipairs(l.percentiles) do
            lat[#lat + 1] = { metric = names.name(l.metric), stat = e.stat, before = stats.fmt_val(e.before, 's'),
              after = stats.fmt_val(e.after, 's'), change = fmt_change(e.before, e.after) }
          end
        end
        local view = {
          before_id = out.before_id, after_id = out.after_id, expectations = out.expectations, rows = rows,
          latency = lat,
          hotspots = out.hotspots, flamediff = out.flamediff,
          only_before = table.concat(labels(out.only_before), '; '),
          only_after = table.concat(labels(out.only_after), '; '),
          alpha = out.alpha, iterations = out.iterations, seed = out.seed,
        }
        local tree = template.load(require('perf_manual._host').root .. '/templates/diff.md', 'diff.md')
        text = template.render(tree, view, { escape = require('perf_manual.report.markdown').escape })
        if out.flamediff_missing then text = text .. '\n*' .. out.flamediff_missing .. '.*\n' end
      end
      if p.output then
        local ok, err = util.write_atomic(p.output, text)
        if not ok then util.user_error('diff: ' .. err) end
        inv:print('wrote ' .. p.output .. (out.flamediff and (' and ' .. out.flamediff) or ''))
        -- a CI gate reads its verdicts on the terminal, whatever the file holds
        for _, e in ipairs(out.expectations or {}) do inv:print(e.line) end
      else
        inv.out:write(text)
      end
    end,
  },
}
