--- Reports: what an investigation (or a plain data dir) leaves behind for
--- other people. This module reads the data into one plain table (a
--- "dataset"), builds the view a template fills (`view`), and renders it
--- (`render`: Markdown, self-contained HTML, or slides).
---
--- Data it understands, in <dir>/raw_data/ (or <dir>/ itself for a data dir):
---   metadata.yaml            (investigation) symptom, checklist, findings, hypotheses, timeline, artifacts
---   use-check*.json          USE rows (perf_manual.analyzers.use shape)
---   *.jsonl                  time series: one JSON object per line, a time field
---                            (t, time, ts or timestamp) and numbers (nested objects
---                            are flattened to dotted names: cpu.busy_pct)
---   *.samples.json           samples: { name = {v, ...} } or { metric=, unit=, values= }
---   red-check*.json          a RED check (latency histogram, per-second series)
---   *.hist.json              { name=, unit=, buckets = {{lo, hi, count}, ...} }
---   *.folded                 folded stacks (profiles)
---   quantify*.json           single numbers
---   analysis/findings.json, analysis/fix-validation.json (from `diff --output`)
local util = require('perf_manual.util')
local store = require('perf_manual.store')
local bundle = require('perf_manual.bundle')
local host = require('perf_manual._host')
local fold = require('perf_manual.fold')
local use = require('perf_manual.analyzers.use')
local findings = require('perf_manual.analyzers.findings')
local charts = require('perf_manual.report.charts')
local waits = require('perf_manual.waits')
local names = require('perf_manual.metric_names')
local flamegraph = require('perf_manual.report.flamegraph')
local flamediff = require('perf_manual.report.flamediff')
local redact = require('perf_manual.report.redact')
local markdown = require('perf_manual.report.markdown')
local html = require('perf_manual.report.html')
local slides = require('perf_manual.report.slides')
local cjson = require('cjson')

local M = {}
local redact_view

local is_dir = store.is_dir
M.is_dir = is_dir

local function decode_json(text, path)
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, path .. ': bad JSON: ' .. tostring(v):gsub('^.-: ', '') end
  return v
end

local function null_to_nil(v)
  if v == cjson.null then return nil end
  return v
end

-- numbers in a nested table, flattened to dotted names
local function flatten(t, prefix, out)
  for k, v in pairs(t) do
    v = null_to_nil(v)
    local key = prefix and (prefix .. '.' .. tostring(k)) or tostring(k)
    if type(v) == 'number' then out[key] = v
    elseif type(v) == 'table' then flatten(v, key, out) end
  end
  return out
end
M.flatten = flatten

local TIME_KEYS = { 't', 'time', 'ts', 'timestamp' }

--- Series not worth a chart or a test: sampling bookkeeping, devices that
--- are not disks, and per-index duplicates of per-name tables. Editable.
M.ignore_series = { '%.elapsed$', '%.ncpu$', '%.id$', '%.pid$', 'loop%d+', 'zram%d+', '%.ram%d+%.', '%.devices%.%d+%.' }

local function ignored(name)
  for _, p in ipairs(M.ignore_series) do
    if name:find(p) then return true end
  end
  return false
end

-- days since 1970-01-01 of a civil date (proleptic Gregorian)
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- "2026-11-22T05:44:17.703Z" (or a number) -> epoch seconds, else nil.
function M.parse_time(v)
  if type(v) == 'number' then return v end
  if type(v) ~= 'string' then return nil end
  local Y, Mo, D, h, mi, sec, rest = v:match('^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d%.?%d*)(.*)$')
  if not Y then return nil end
  local t = days_from_civil(tonumber(Y), tonumber(Mo),
    tonumber(D)) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
  local sign, oh, om = rest:match('^([+-])(%d%d):?(%d%d)$')
  if sign then t = t - (sign == '+' and 1 or -1) * (tonumber(oh) * 3600 + tonumber(om) * 60) end
  return t
end

--- Reads a JSON-lines series file into ds.series[name] = {points = {{t, v}}}.
local function read_jsonl(ds, path, base)
  local f = io.open(path, 'rb')
  if not f then return end
  local n, bad = 0, 0
  local t0
  for line in f:lines() do
    n = n + 1
    if line:match('%S') then
      local ok, rec = pcall(cjson.decode, line)
      if ok and type(rec) == 'table' then
        local t
        for _, k in ipairs(TIME_KEYS) do
          local v = M.parse_time(null_to_nil(rec[k]))
          if v then t = v; rec[k] = nil; break end
        end
        t = t or n
        t0 = t0 or t
        for name, v in pairs(flatten(rec, nil, {})) do
          local full = base .. '.' .. name
          local s = ds.series[full]
          if not s and ignored(full) then goto skip end
          if not s then s = { name = full, points = {} }; ds.series[full] = s end
          s.points[#s.points + 1] = { t - t0, v }
          ::skip::
        end
      else
        bad = bad + 1
      end
    end
  end
  f:close()
  if bad > 0 then ds.warnings[#ds.warnings + 1] = string.format('%s: %d unreadable lines skipped', path, bad) end
end

local function add_samples(ds, name, values, unit)
  local clean = {}
  for _, v in ipairs(values) do
    v = null_to_nil(v)
    if type(v) == 'number' then clean[#clean + 1] = v end
  end
  ds.samples[name] = { name = name, values = clean, unit = unit }
end

-- A histogram as samples for the tests: every bucket's middle, `count`
-- times, thinned evenly to at most `cap` values so a bootstrap stays quick.
function M.histogram_samples(buckets, cap)
  cap = cap or 4000
  local total = 0
  for _, b in ipairs(buckets) do total = total + b[3] end
  local step = total > cap and total / cap or 1
  local out, acc, nexti = {}, 0, 0
  for _, b in ipairs(buckets) do
    local mid = (b[1] + b[2]) / 2
    local c = b[3]
    while nexti < acc + c do
      out[#out + 1] = mid
      nexti = nexti + step
    end
    acc = acc + c
  end
  return out
end

local function read_red(ds, path, name)
  local text = util.readfile(path)
  local r = text and decode_json(text, path)
  if type(r) ~= 'table' then
    ds.warnings[#ds.warnings + 1] = path .. ': unreadable RED result'
    return
  end
  ds.red = ds.red or r
  local hist = null_to_nil(r.histogram)
  if type(hist) == 'table' and #hist > 0 then
    local key = name .. '.latency'
    ds.histograms[key] = { name = key, unit = 's', buckets = hist, percentiles = r.latency }
    ds.samples[key] = { name = key, unit = 's', values = M.histogram_samples(hist), from_histogram = true }
  end
  if type(r.series) == 'table' then
    local rps, eps, cols = {}, {}, {}
    for _, s in ipairs(r.series) do
      rps[#rps + 1] = { s.t, s.responses }
      eps[#eps + 1] = { s.t, s.errors }
      local counts = {}
      for i, c in ipairs(s.lat_log2_us or {}) do if c > 0 then counts[i] = c end end
      cols[#cols + 1] = { t = s.t, counts = counts }
    end
    ds.series[name .. '.responses_per_s'] = { name = name .. '.responses_per_s', points = rps }
    ds.series[name .. '.errors_per_s'] = { name = name .. '.errors_per_s', points = eps }
    ds.heatmap = ds.heatmap or { name = name, columns = cols }
  end
  local rate = r.rate or {}
  ds.scalars[name .. '.rate_completed'] = null_to_nil(rate.completed)
  if type(r.errors) == 'table' then ds.scalars[name .. '.error_ratio'] = null_to_nil(r.errors.ratio) end
end

local function read_file(ds, dir, fname)
  local path = dir .. '/' .. fname
  local base = fname:gsub('%.[%w]+$', '')
  if fname:match('%.jsonl$') then
    read_jsonl(ds, path, base)
  elseif fname:match('%.folded$') then
    ds.profiles[#ds.profiles + 1] = { name = base, path = path }
  elseif fname:match('^use%-check.*%.json$') then
    local r = decode_json(util.readfile(path) or '', path)
    if type(r) == 'table' then
      ds.use = ds.use or use.normalize(r)
    end
  elseif fname:match('^red%-check.*%.json$') then
    read_red(ds, path, base)
  elseif fname:match('^tsa.*%.json$') then
    local r = decode_json(util.readfile(path) or '', path)
    if type(r) == 'table' and type(r.threads) == 'table' then ds.tsa = r end
  elseif fname:match('%.samples%.json$') then
    local r = decode_json(util.readfile(path) or '', path)
    if type(r) == 'table' and r.values then
      add_samples(ds, r.metric or r.name or base:gsub('%.samples$', ''), r.values, r.unit)
    elseif type(r) == 'table' then
      for k, v in pairs(r) do if type(v) == 'table' then add_samples(ds, k, v) end end
    end
  elseif fname:match('%.hist%.json$') then
    local r = decode_json(util.readfile(path) or '', path)
    if type(r) == 'table' and type(r.buckets) == 'table' then
      local key = r.name or base:gsub('%.hist$', '')
      ds.histograms[key] = { name = key, unit = r.unit, buckets = r.buckets, percentiles = r.percentiles }
      ds.samples[key] = { name = key, unit = r.unit, values = M.histogram_samples(r.buckets), from_histogram = true }
    end
  elseif fname:match('^compare.*%.json$') then
    -- the engine's comparison with a baseline investigation
    local r = decode_json(util.readfile(path) or '', path)
    if type(r) == 'table' and type(r.rows) == 'table' then ds.baseline = r end
  elseif fname:match('^quantify.*%.json$') then
    local r = decode_json(util.readfile(path) or '', path)
    if type(r) == 'table' then
      for k, v in pairs(flatten(r, base, {})) do
        if not k:match('%.duration$') and not k:match('%.pid$') then ds.scalars[k] = v end
      end
    end
  end
end

--- Reads an investigation folder or a data dir into a dataset:
--- { dir, id, kind, meta, use, series, samples, histograms, scalars,
---   profiles, red, heatmap, findings, fix_validation, artifacts, warnings }.
--- Returns nil, why when the path is not a readable directory.
function M.load(path)
  if not is_dir(path) then return nil, path .. ': not a directory' end
  local ds = { dir = path, id = path:gsub('/+$', ''):match('[^/]+$'), meta = {}, series = {}, samples = {},
    histograms = {}, scalars = {}, profiles = {}, findings = {}, artifacts = {}, warnings = {} }
  local meta, err = store.read_metadata(path)
  if type(meta) == 'table' then
    ds.meta = meta; ds.kind = 'investigation'
    if type(meta.id) == 'string' then ds.id = meta.id end
  elseif err then ds.warnings[#ds.warnings + 1] = tostring(err) end
  ds.kind = ds.kind or 'data dir'
  local data_dir = store.data_dir(path)
  for _, a in ipairs(store.artifacts(path)) do
    read_file(ds, data_dir, a.name)
    ds.artifacts[#ds.artifacts + 1] = { path = a.path, bytes = a.bytes }
  end
  -- profile-cpu.folded before profile-cpu-2.folded: recording order
  local function order(name)
    local b, n = name:match('^(.-)%-(%d+)$')
    if b then return b, tonumber(n) end
    return name, 1
  end
  table.sort(ds.profiles, function(a, b)
    local ba, na = order(a.name)
    local bb, nb = order(b.name)
    if ba ~= bb then return ba < bb end
    return na < nb
  end)
  local ftext = store.read_analysis(path, 'findings.json')
  if ftext then ds.findings = decode_json(ftext, 'analysis/findings.json') or {} end
  if #ds.findings == 0 and type(ds.meta.findings) == 'table' then ds.findings = ds.meta.findings end
  local fv = store.read_analysis(path, 'fix-validation.json')
  if fv then ds.fix_validation = decode_json(fv, 'analysis/fix-validation.json') end
  -- values of each time series are samples too (for diff)
  for name, s in pairs(ds.series) do
    if not ds.samples[name] then
      local v = {}
      for i, p in ipairs(s.points) do v[i] = p[2] end
      ds.samples[name] = { name = name, values = v, from_series = true }
    end
  end
  return ds
end

--- Resolves a command-line argument: an investigation id in the store, a
--- directory, or a bundle file. Returns the dataset or raises a user error.
function M.open(arg, store_root)
  if is_dir(arg) then
    local ds, err = M.load(arg)
    if not ds then util.user_error(err) end
    return ds
  end
  -- a bundle file (perf_manual.bundle), else an id: a user error with close matches when unknown
  local h = bundle.resolve(arg, store_root)
  local ds, err = M.load(h.dir)
  if not ds then util.user_error(err) end
  ds.id = h.id or ds.id
  ds.bundle = h.bundle
  return ds
end

-- Rendering -------------------------------------------------------------------

-- The view ---------------------------------------------------------------------

--- Which series go on which chart: the first spec whose pattern matches a
--- series name takes it. Teams add their own metric names here.
M.chart_specs = {
  { key = 'cpu', title = 'CPU busy', unit = '%', ymax = 100,
    match = { 'total%.busy_pct$', 'busy_pct$', 'cpu_pct$', 'cpu%.util' } },
  { key = 'runq', title = 'Run queue', unit = '', match = { 'procs_running$', 'runq', 'run_queue', 'load1$' } },
  { key = 'psi_mem', title = 'Memory pressure (PSI some)', unit = '%',
    match = { 'memory.*some_pct$', 'psi.*mem.*some' } },
  { key = 'disk_util', title = 'Disk utilization', unit = '%', ymax = 100, match = { 'disk.*util_pct$', 'util_pct$' } },
  { key = 'disk_await', title = 'Disk await', unit = 'ms', match = { 'await' } },
  { key = 'net', title = 'Network', unit = 'B/s', match = { 'rx_bytes', 'tx_bytes', 'net.*bytes' } },
  { key = 'red_rate', title = 'Requests answered and failed', unit = 'req/s',
    match = { 'responses_per_s$', 'errors_per_s$' } },
}
M.MAX_SERIES_PER_CHART = 6

local function fmt_metric(v, unit)
  if v == nil then return 'not measured' end
  return charts.fmt_value(v, unit)
end
M.fmt_metric = fmt_metric

local function build_charts(ds)
  local taken, out = {}, {}
  local keys = util.keys(ds.series)
  for _, spec in ipairs(M.chart_specs) do
    local series = {}
    -- earlier patterns first (the total before per-CPU lines)
    for _, pat in ipairs(spec.match) do
      for _, n in ipairs(keys) do
        if not taken[n] and #series < M.MAX_SERIES_PER_CHART and n:lower():find(pat) then
          taken[n] = true
          series[#series + 1] = { name = names.name(n), points = ds.series[n].points }
        end
      end
    end
    if #series > 0 then
      out[#out + 1] = { key = spec.key, title = spec.title, file = spec.key .. '.svg',
        svg = charts.timeseries { title = spec.title, unit = spec.unit, ymax = spec.ymax, series = series } }
    end
  end
  return out
end

local function latency_charts(ds)
  local out = {}
  for _, name in ipairs(util.keys(ds.histograms)) do
    local h = ds.histograms[name]
    local b = {}
    for i, x in ipairs(h.buckets) do b[i] = { x[1] or x.lo, x[2] or x.hi, x[3] or x.count } end
    local label = name:gsub('%.latency$', '')
    out[#out + 1] = { key = 'hist', title = 'Latency distribution (' .. label .. ')',
      file = 'latency-' .. label:gsub('[^%w]+', '-') .. '.svg',
      svg = charts.histogram { title = 'Latency distribution (' .. label .. ')', buckets = b,
        percentiles = h.percentiles } }
  end
  if ds.heatmap then
    out[#out + 1] = { key = 'heatmap', title = 'Latency over time', file = 'latency-heatmap.svg',
      svg = charts.heatmap { title = 'Latency over time (each column one second)', columns = ds.heatmap.columns } }
  end
  return out
end

-- CPU profile evidence: flame graph of the last profile, hotspot shift
-- between the first and the last when there are two.
local function profile_evidence(ds, v)
  if #ds.profiles == 0 then return end
  local last = ds.profiles[#ds.profiles]
  local prof, err = fold.load(last.path)
  if not prof then v.profile_note = 'could not read ' .. last.name .. ': ' .. tostring(err); return end
  local ok, svg = pcall(flamegraph.render, prof, { title = 'CPU flame graph: ' .. last.name, minwidth = '0.1%' })
  if ok and svg then
    v.flamegraph = { svg = svg, file = 'flamegraph.svg', name = last.name }
  else
    v.profile_note = 'no flame graph (' .. tostring(svg):match('^[^\n]*') .. '): top functions shown instead'
  end
  local totals, total = fold.function_totals(prof, true)
  local top = {}
  for name, t in pairs(totals) do top[#top + 1] = { func = name, self = t.self, total = t.total } end
  table.sort(top, function(a, b) if a.self ~= b.self then return a.self > b.self end return a.func < b.func end)
  v.top_functions = {}
  for i = 1, math.min(10, #top) do
    local t = top[i]
    v.top_functions[i] = { func = t.func, self_pct = string.format('%.1f%%', t.self / total * 100),
      total_pct = string.format('%.1f%%', t.total / total * 100) }
  end
  v.profile_samples = total
  if #ds.profiles >= 2 then
    local before = fold.load(ds.profiles[1].path)
    if before then v.hotspots = M.hotspot_shift(before, prof, 8) end
    v.hotspot_from, v.hotspot_to = ds.profiles[1].name, last.name
  end
end

--- Hotspot shift between two profiles: functions whose share of samples
--- (anywhere on the stack) changed most (perf_manual.report.flamediff).
function M.hotspot_shift(before, after, n)
  local ch = flamediff.top_changes(before, after, n or 10, { skip_root = true })
  local out = {}
  for i, r in ipairs(ch.total) do
    local b, a = r.before or 0, r.after or 0
    out[i] = { func = tostring(r.name), before = string.format('%.1f%%', b), after = string.format('%.1f%%', a),
      change = (b == 0 and 'new' or a == 0 and 'gone' or string.format('%+.1f pts', r.delta or (a - b))) }
  end
  return out
end

local function cell_text(c)
  if type(c) ~= 'table' then return c and tostring(c) or 'not measured' end
  return tostring(c.text or (c.missing and ('not measured (' .. c.missing .. ')')) or 'not measured')
end

local PLAIN_STATUS = {
  complete = 'The investigation is complete.',
  running = 'The investigation is still running.',
  interrupted = 'The investigation was interrupted before it finished; what it found so far is below.',
  failed = 'A step of the investigation failed; the results are partial.',
}

-- The thread states of the recorded accounting: a table row and a chart bar
-- for the target as a whole and for its busiest threads, and the top waits.
local function time_states(ds, v)
  local t = ds.tsa
  if type(t) ~= 'table' or t.available == false then return end
  local rows, bars = {}, {}
  local function add(label, shares)
    if type(shares) ~= 'table' then return end
    local parts = {}
    for _, st in ipairs(waits.STATES) do
      local x = tonumber(null_to_nil(shares[st]))
      if x and x >= 0.5 then parts[#parts + 1] = string.format('%s %.0f%%', waits.LABELS[st], x) end
    end
    rows[#rows + 1] = { who = label, states = table.concat(parts, ', ') }
    local clean = {}
    for _, st in ipairs(waits.STATES) do clean[st] = tonumber(null_to_nil(shares[st])) or 0 end
    bars[#bars + 1] = { label = label, shares = clean }
  end
  add('all threads', t.total and t.total.shares)
  for i, th in ipairs(t.threads) do
    if i > 8 then break end
    add(string.format('%s %s', tostring(th.comm or '?'), tostring(th.tid or '')), th.shares)
  end
  v.time_states = rows
  -- the target's label is its command line, secrets and all
  v.time_target = (redact.string(tostring(null_to_nil(t.target) or 'the target')))
  v.time_window = t.window_s and util.fmt_duration(t.window_s) or 'the window'
  v.time_waits = {}
  for i, w in ipairs(t.waits or {}) do
    if i > 5 then break end
    v.time_waits[#v.time_waits + 1] = { text = tostring(null_to_nil(w.text) or null_to_nil(w.object)
      or (tostring(w.syscall or '?') .. (w.fd and (' fd ' .. tostring(w.fd)) or ''))),
      reason = waits.LABELS[w.reason] or tostring(w.reason), share = string.format('%.0f%%', tonumber(w.share) or 0) }
  end
  v.time_chart = { key = 'tsa', title = 'Where the time goes', file = 'thread-states.svg',
    svg = charts.state_bars { title = 'Where the time goes: share of wall time by thread state', states = waits.STATES,
      labels = waits.LABELS, rows = bars } }
end

-- Text of a value that may be a string, a { text = } table or nothing.
local function text_of(x)
  x = null_to_nil(x)
  if type(x) == 'table' then x = null_to_nil(x.text) or null_to_nil(x.summary) end
  if x == nil or x == '' then return nil end
  return tostring(x)
end

-- Evidence items (a path, a sentence, or { text|note, artifact }) as
-- { text =, artifact = } rows, without repeats.
local function evidence_rows(list, out, seen)
  list = null_to_nil(list)
  if type(list) ~= 'table' or list.artifact or list.text or list.note then list = { list } end
  for _, e in ipairs(list) do
    e = null_to_nil(e)
    local row
    if type(e) == 'string' then
      row = e:match('^[%w_.%-/]+%.%w+$') and { text = '', artifact = e } or { text = e, artifact = '' }
    elseif type(e) == 'table' and e.stance ~= 'refutes' and e.stance ~= 'against' then
      row = { text = tostring(null_to_nil(e.text) or null_to_nil(e.note) or null_to_nil(e.summary) or ''),
        artifact = tostring(null_to_nil(e.artifact) or null_to_nil(e.path) or '') }
    end
    if row and (row.text ~= '' or row.artifact ~= '') then
      local k = row.text .. '\0' .. row.artifact
      if not seen[k] then seen[k] = true; out[#out + 1] = row end
    end
  end
  return out
end

-- Links to the artifacts behind a sentence: each path (relative to the
-- investigation folder, where report.md lives) that names a file there, as
-- { path =, href = } (href percent-encoded); a path that is not there is
-- kept apart in `missing` so a sentence never links to nothing.
local function artifact_links(ds, paths)
  local links, missing, seen = {}, {}, {}
  for _, p in ipairs(paths) do
    p = null_to_nil(p)
    if type(p) == 'string' and p ~= '' and not seen[p] then
      seen[p] = true
      local f = ds.dir and not p:match('^/') and not p:match('%.%.') and io.open(ds.dir .. '/' .. p, 'rb')
      if f then
        f:close()
        local href = ((ds.link_base or '') .. p):gsub('[^%w_.~/%-]',
          function(c) return string.format('%%%02X', c:byte()) end)
        links[#links + 1] = { path = p, href = href }
      else
        missing[#missing + 1] = p
      end
    end
  end
  return links, table.concat(missing, ', ')
end

-- A recommendation's artifacts: its `evidence` list, else the
-- "[evidence: a, b]" suffix of its text; returns them and the text without
-- the suffix (the links say it).
local function recommendation_evidence(r)
  local text = tostring(null_to_nil(r.text) or '')
  local body, cite = text:match('^(.-)%s*%[evidence: ([^%]]*)%]$')
  local arts = {}
  local ev = null_to_nil(r.evidence)
  if type(ev) == 'string' then ev = { ev } end
  if type(ev) == 'table' then
    for _, a in ipairs(ev) do arts[#arts + 1] = a end
  elseif cite then
    for a in cite:gmatch('[^,%s]+') do arts[#arts + 1] = a end
  end
  return body or text, arts
end

local VERDICT_CLASS = { fixed = 'ok', ['not fixed'] = 'high', worse = 'high', inconclusive = 'warn' }

local function pct_text(x)
  x = tonumber(null_to_nil(x))
  if not x then return '' end
  return string.format('%+.1f%%', x)
end

local function p_text(p, test)
  p = tonumber(null_to_nil(p))
  local t = null_to_nil(test)
  if not p then return t and tostring(t) or '-' end
  local ps = p < 0.001 and 'p < 0.001' or string.format('p = %.3g', p)
  return t and (tostring(t) .. ', ' .. ps) or ps
end

-- The fix (meta.fix: { text, at }, or a plain string in older investigations)
-- and its validation (meta.validation: verdict, summary, metrics before/after).
local function fix_and_validation(ds, meta, v)
  local fix = null_to_nil(meta.fix)
  local fix_text = text_of(fix)
  v.fix = fix_text and { text = fix_text, at = type(fix) == 'table' and tostring(null_to_nil(fix.at) or '') or '' }
    or false
  -- shown in a code span as is: the id keeps only the characters ids are made of
  v.fix_command = string.format('perf_manual fix %s "text" --validate',
    (tostring(ds.id or 'ID'):gsub('[^%w._:+-]', '')))
  local val = null_to_nil(meta.validation)
  v.validation = false
  if type(val) == 'table' then
    local verdict = tostring(null_to_nil(val.verdict) or 'inconclusive')
    local rows = {}
    for _, m in ipairs(type(val.metrics) == 'table' and val.metrics or {}) do
      local key = null_to_nil(m.key)
      local known = key and names.lookup(key) or nil
      local unit = null_to_nil(m.unit) or (known and known.unit) or ''
      local scale = not null_to_nil(m.unit) and known and known.scale or nil
      local name = text_of(m.name) or (key and names.label(key)) or 'unnamed metric'
      -- a name given by the validator without its unit gets the unit added
      if text_of(m.name) and unit ~= '' and unit ~= 's' and not name:find(unit, 1, true) then
        name = name .. ', ' .. unit
      end
      local lo, hi = tonumber(null_to_nil(m.ci_lo)), tonumber(null_to_nil(m.ci_hi))
      rows[#rows + 1] = { metric = name, before = names.format_unit(tonumber(null_to_nil(m.before)), unit, scale),
        after = names.format_unit(tonumber(null_to_nil(m.after)), unit, scale), change = pct_text(m.change_pct),
        ci = (lo and hi) and string.format('[%+.1f%%, %+.1f%%]', lo, hi) or '-', p = p_text(m.p, m.test) }
    end
    local summary = text_of(val.summary) or ''
    -- "fixed: p99 -38% ..." under "Verdict: fixed" says the verdict once
    local lead = summary:sub(1, #verdict + 1)
    if lead:lower() == verdict:lower() .. ':' then summary = summary:sub(#verdict + 2):gsub('^%s+', '') end
    v.validation = { verdict = verdict, verdict_class = VERDICT_CLASS[verdict] or 'warn',
      summary = summary, at = tostring(null_to_nil(val.at) or ''),
      after = tostring(null_to_nil(type(val.after) == 'table' and (val.after.id or val.after.dir) or val.after) or ''),
      rows = rows }
  end
  -- the table `perf_manual diff --output <inv>/analysis/fix-validation.json` leaves
  v.fix_validation = {}
  local fv = ds.fix_validation
  if type(fv) == 'table' and type(fv.metrics) == 'table' then
    for _, m in ipairs(fv.metrics) do
      if m.before_text then
        local before, after = names.row_values(m)
        v.fix_validation[#v.fix_validation + 1] = { metric = names.label(m.metric), before = before, after = after,
          change = m.change_text, ci = m.ci_text or '', verdict = m.verdict or '' }
      end
    end
    if type(fv.expectation) == 'table' then
      local keys = {}
      for _, e in ipairs(type(fv.expectations) == 'table' and fv.expectations or {}) do
        keys[#keys + 1] = null_to_nil(e.metric)
      end
      v.fix_expectation = names.humanize(fv.expectation.text, keys)
    end
  end
  v.has_fix_validation = #v.fix_validation > 0 or nil
  local verdict_line
  if v.validation then
    verdict_line = v.validation.verdict .. (v.validation.summary ~= '' and (': ' .. v.validation.summary) or '')
  elseif v.fix_expectation then
    verdict_line = v.fix_expectation
  end
  v.summary.fix = fix_text or 'no fix recorded'
  v.summary.validation = verdict_line or (fix_text and 'not validated yet' or 'nothing to validate (no fix recorded)')
end

-- Fields of the view that are kept as they are: drawings (their text is
-- the data's own labels, already redacted where it came from) and function
-- names (code, not secrets).
local VERBATIM = { svg = true, func = true }

-- Every text of the view goes through the redaction rules: the view is
-- built from raw artifacts (a target's command line, a wait's object, a
-- RED check's URL) as well as from the redacted metadata.
redact_view = function(t, seen)
  seen = seen or {}
  if seen[t] then return t end
  seen[t] = true
  for k, x in pairs(t) do
    if type(x) == 'string' then
      if not VERBATIM[k] then t[k] = (redact.string(x)) end
    elseif type(x) == 'table' and not VERBATIM[k] then
      redact_view(x, seen)
    end
  end
  return t
end

--- Builds the view of a dataset: every field a template may name.
function M.view(ds)
  local meta = redact.deep(ds.meta or {})
  local finds = redact.deep(ds.findings or {})
  local v = {
    title = 'Performance Investigation Report' .. (meta.name and (': ' .. tostring(meta.name))
      or (ds.id and (': ' .. ds.id) or '')),
    id = ds.id or 'data', kind = ds.kind or 'data dir',
    generated = os.date('!%Y-%m-%d %H:%M UTC'),
    tool_version = host.version or '',
    warnings = ds.warnings or {},
  }
  -- executive summary
  local impact
  for _, q in ipairs(meta.checklist or {}) do
    if q.key == 'impact' and q.answered then impact = tostring(q.answer) end
  end
  local best
  for _, h in ipairs(meta.hypotheses or {}) do
    if h.status == 'supported' and (not best or (h.score or 0) > (best.score or 0)) then best = h end
  end
  local root_cause = text_of(meta.root_cause) or text_of(meta.conclusion) or (best and best.text)
  v.summary = {
    issue = tostring(meta.symptom or (ds.red and ('RED check of ' .. tostring(ds.red.url))) or 'not stated'),
    impact = impact or 'not answered',
    root_cause = root_cause or 'not established',
    status = tostring(meta.status or (ds.kind == 'data dir' and 'data only' or 'unknown')),
    status_plain = PLAIN_STATUS[meta.status] or 'Collected data, without a recorded investigation.',
    bottleneck = meta.verdict and meta.verdict ~= '' and tostring(meta.verdict) or 'no saturated resource found',
  }
  -- timeline
  v.timeline = {}
  for _, e in ipairs(meta.timeline or {}) do
    if e.kind ~= 'artifact' and e.kind ~= 'step-start' and e.kind ~= 'check-passed' then
      v.timeline[#v.timeline + 1] = { t = tostring(e.t or ''),
        what = tostring(e.kind or '') .. ': ' .. tostring(e.what or '') }
    end
  end
  -- the checklist questions and what was answered
  v.checklist = {}
  for _, q in ipairs(meta.checklist or {}) do
    v.checklist[#v.checklist + 1] = { question = tostring(q.question or q.key or ''), answer = tostring(q.answer or ''),
      note = q.answered and '' or 'not answered (default)' }
  end
  -- symptom quantification: RED numbers, quantify scalars
  v.quantification = {}
  if ds.red then
    local r = ds.red
    local lat = r.latency or {}
    local rate = r.rate or {}
    local errs = r.errors or {}
    local add = function(m, val) v.quantification[#v.quantification + 1] = { metric = m, value = val, baseline = '',
      change = '' } end
    add(names.label('rate_completed'), fmt_metric(rate.completed))
    if rate.asked then add(names.label('rate_asked'), fmt_metric(rate.asked)) end
    add(names.label('error_ratio'), errs.ratio and string.format('%.2f%%', errs.ratio * 100) or 'not measured')
    for _, k in ipairs({ 'p50', 'p90', 'p99', 'p99.9', 'max' }) do
      add(names.label('latency.' .. k), lat[k] and util.fmt_duration(lat[k]) or 'not measured')
    end
  end
  -- baseline comparison rows replace the plain quantify values they cover
  local covered = {}
  if ds.baseline then
    v.baseline_id = tostring(null_to_nil(ds.baseline.baseline) or 'baseline')
    for _, r in ipairs(ds.baseline.rows) do
      local b, a, c = null_to_nil(r.before), null_to_nil(r.after), null_to_nil(r.change_pct)
      local key = tostring(null_to_nil(r.key) or r.metric)
      v.quantification[#v.quantification + 1] = { metric = text_of(r.name) or names.label(key),
        baseline = names.format(key, b),
        value = names.format(key, a), change = c and string.format('%+.0f%%', c) or '' }
      covered['quantify.' .. tostring(r.metric)] = true
      if null_to_nil(r.key) then covered[tostring(r.key)] = true end
    end
  end
  for _, k in ipairs(util.keys(ds.scalars)) do
    if not k:match('^red%-check') and not covered[k] then
      v.quantification[#v.quantification + 1] = { metric = names.label(k), value = names.format(k, ds.scalars[k]),
        baseline = '', change = '' }
    end
  end
  -- USE table
  v.use_rows = {}
  if type(ds.use) == 'table' and ds.use.available ~= false then
    for _, r in ipairs(ds.use.rows or {}) do
      v.use_rows[#v.use_rows + 1] = {
        resource = tostring(r.name or r.resource or '?'),
        utilization = cell_text(r.utilization), saturation = cell_text(r.saturation), errors = cell_text(r.errors),
        status = tostring(r.status or ''), status_class = (r.status == 'HIGH' and 'high')
          or (r.status == 'warn' and 'warn') or 'ok',
      }
    end
    local vd = ds.use.verdict_detail
    v.use_verdict = (type(vd) == 'table' and vd.text) or (ds.use.verdict and (tostring(ds.use.verdict) .. ' is the ' ..
      'saturated resource'))
      or 'No resource is saturated.'
  elseif type(ds.use) == 'table' then
    v.use_verdict = 'USE check not available: ' .. tostring(ds.use.why)
  end
  -- where the time goes (thread-state accounting), what each drill-down found
  time_states(ds, v)
  v.drill = {}
  local st = type(meta.state) == 'table' and meta.state or {}
  for _, d in ipairs(type(st.drill) == 'table' and st.drill or {}) do
    for _, l in ipairs(type(d.lines) == 'table' and d.lines or {}) do
      v.drill[#v.drill + 1] = { kind = tostring(d.kind or ''), line = tostring(l) }
    end
  end
  -- charts
  v.charts = build_charts(ds)
  if v.time_chart then table.insert(v.charts, 1, v.time_chart) end
  for _, c in ipairs(latency_charts(ds)) do v.charts[#v.charts + 1] = c end
  -- the key chart: latency first (what users feel), then CPU
  local order = { heatmap = 1, hist = 2, red_rate = 3, cpu = 4 }
  local key
  for _, c in ipairs(v.charts) do
    if not key or (order[c.key] or 9) < (order[key.key] or 9) then key = c end
  end
  v.key_chart = key
  -- profile evidence
  profile_evidence(ds, v)
  -- without a time series or latency chart, the flame graph is the key chart
  if not v.key_chart and v.flamegraph then v.key_chart = v.flamegraph end
  -- root cause and hypotheses
  v.root_cause = root_cause or 'Not established.'
  v.hypotheses = {}
  for _, h in ipairs(meta.hypotheses or {}) do
    local ev = {}
    for _, e in ipairs(h.evidence or {}) do
      ev[#ev + 1] = tostring(e.stance or '') .. ' ' .. tostring(e.artifact or '')
        .. (e.note and (': ' .. tostring(e.note)) or '')
    end
    v.hypotheses[#v.hypotheses + 1] = { id = tostring(h.id or ''), text = tostring(h.text or ''),
      status = tostring(h.status or ''),
      evidence = table.concat(ev, '; ') }
  end
  v.findings = {}
  for _, f in ipairs(finds) do
    v.findings[#v.findings + 1] = { severity = tostring(f.severity or ''):upper(),
      resource = tostring(f.resource or ''),
      summary = tostring(null_to_nil(f.summary) or (f.metric and names.label(f.metric)) or '') }
    local row = v.findings[#v.findings]
    local missing
    row.links, missing = artifact_links(ds, { null_to_nil(f.evidence) or null_to_nil(f.artifact) })
    row.missing = missing ~= '' and missing or nil
  end
  -- the evidence behind the root cause: what the conclusion names, then the
  -- supporting evidence of the hypothesis it came from
  local seen = {}
  v.root_cause_evidence = {}
  evidence_rows(type(meta.root_cause) == 'table' and meta.root_cause.evidence, v.root_cause_evidence, seen)
  evidence_rows(type(meta.conclusion) == 'table' and meta.conclusion.evidence, v.root_cause_evidence, seen)
  for _, h in ipairs(meta.hypotheses or {}) do
    if h.status == 'supported' and root_cause and tostring(h.text) == root_cause then
      evidence_rows(h.evidence, v.root_cause_evidence, seen)
    end
  end
  -- a bare path repeated with a sentence is said once, with the sentence
  local with_text = {}
  for _, e in ipairs(v.root_cause_evidence) do if e.text ~= '' then with_text[e.artifact] = true end end
  local ev = {}
  for _, e in ipairs(v.root_cause_evidence) do
    if e.text ~= '' or not with_text[e.artifact] then ev[#ev + 1] = e end
  end
  v.root_cause_evidence = ev
  for _, e in ipairs(ev) do
    e.links, e.missing = artifact_links(ds, { e.artifact })
    if e.missing == '' then e.missing = nil end
  end
  fix_and_validation(ds, meta, v)
  -- recommendations: recorded ones, else one per HIGH finding; each links
  -- the artifacts behind it
  v.recommendations = {}
  local function add_rec(status, text, arts)
    local links, missing = artifact_links(ds, arts or {})
    v.recommendations[#v.recommendations + 1] = { status = status, text = text, links = links,
      missing = missing ~= '' and missing or nil }
  end
  for _, r in ipairs(meta.recommendations or {}) do
    if type(r) == 'table' then
      local text, arts = recommendation_evidence(r)
      -- none named: the supporting evidence of the hypothesis it answers
      if #arts == 0 and null_to_nil(r.hypothesis) then
        for _, hy in ipairs(meta.hypotheses or {}) do
          if tostring(hy.text) == tostring(r.hypothesis) then
            for _, e in ipairs(hy.evidence or {}) do
              if e.stance == 'supports' then arts[#arts + 1] = e.artifact end
            end
          end
        end
      end
      add_rec(tostring(null_to_nil(r.status) or 'PLANNED'), text, arts)
    else add_rec('PLANNED', tostring(r)) end
  end
  if #v.recommendations == 0 then
    for i, f in ipairs(v.findings) do
      if f.severity == 'HIGH' then
        local src = finds[i] or {}
        add_rec('OPEN', 'Address: ' .. f.summary, { null_to_nil(src.evidence) or null_to_nil(src.artifact) })
      end
    end
  end
  if #v.recommendations == 0 then
    add_rec('OPEN', 'No recommendation recorded.')
  end
  -- appendix
  v.appendix = {}
  for _, a in ipairs(ds.artifacts or {}) do
    v.appendix[#v.appendix + 1] = { path = redact.string(a.path), size = util.fmt_bytes(a.bytes) }
  end
  v.has_quantification = #v.quantification > 0 or nil
  return redact_view(v)
end

--- Renders a dataset. opts.format = 'technical' | 'executive' | 'slides',
--- opts.output = 'md' | 'html'; opts.link_base = a folder prefix for the
--- artifact links (default: relative to the investigation folder). Returns text (and, for Markdown, a list of
--- {name=, svg=} chart files to write next to it).
function M.render(ds, opts)
  opts = opts or {}
  -- a report written away from its investigation links to the files there
  ds.link_base = opts.link_base
  local v = M.view(ds, opts)
  if opts.format == 'slides' then
    return slides.render(v, opts)
  elseif opts.output == 'html' then
    return html.render(v, opts)
  end
  return markdown.render(v, opts)
end

-- The `analyze` report ----------------------------------------------------------

local RESOURCES = {
  { 'cpu', 'CPU' }, { 'memory', 'Memory' }, { 'disk', 'Disk I/O' }, { 'network', 'Network' }, { 'lock', 'Locks' },
  { 'service', 'Service (RED)' },
}

local function use_cell(c)
  if type(c) ~= 'table' then return c ~= nil and tostring(c) or 'not measured' end
  return tostring(c.text or c.missing or 'not measured')
end

--- The view of templates/analysis.md: the results of a data dir
--- (perf_manual.store.results + analyzers.findings.prepare) and their findings.
function M.analysis_view(data, found)
  local v = { dir = tostring(data.dir), findings_count = #found, resources = {}, manifest = false }
  local m = data.manifest
  -- a `collect` manifest (a recorded fixture's manifest says how it was made instead)
  if m and m.suite then
    local items = {}
    for _, it in ipairs(m.items or {}) do
      items[#items + 1] = { name = tostring(it.name), kind = tostring(it.kind), file = it.file or '-',
        notes = it.error or ((it.samples and (it.samples .. ' samples') or 'ok')
          .. ((it.lost_events or 0) > 0 and (', ' .. it.lost_events .. ' lost events') or '')) }
    end
    v.manifest = { suite = tostring(m.suite), host = tostring(m.host), kernel = tostring(m.kernel),
      started = tostring(m.started), ended = tostring(m.ended), stopped = m.stopped and ', stopped early' or '',
      items = items }
  end
  local use_res = data.use
  if use_res and use_res.available ~= false then
    v.bottleneck = (use_res.verdict or 'no saturated resource')
      .. (use_res.verdict_detail and use_res.verdict_detail.text and (' — ' .. use_res.verdict_detail.text) or '')
  else
    v.bottleneck = 'not measured (no USE check in the data)'
  end
  for _, r in ipairs(RESOURCES) do
    local key = r[1]
    local sec = { title = r[2], rows = {}, io = false, lock = false, hot = false, findings = {} }
    for _, row in ipairs(use_res and use_res.rows or {}) do
      if row.resource == key then
        sec.rows[#sec.rows + 1] = { name = tostring(row.name), status = tostring(row.status),
          utilization = use_cell(row.utilization), saturation = use_cell(row.saturation),
          errors = use_cell(row.errors) }
      end
    end
    if key == 'service' then sec.empty = data.red and ('From the RED result ('
      .. tostring(data.red.artifact or 'red-check.json') .. ').') or 'Not measured (no red-check.json).'
    elseif not use_res then sec.empty = 'Not measured (no USE check).'
    elseif key == 'disk' then sec.empty = 'No disk was busy enough for a USE row.'
    elseif key == 'network' then sec.empty = 'No interface carried traffic.'
    else sec.empty = 'Not measured.' end
    local io = data.traces and data.traces.io
    if key == 'disk' and io then
      sec.io = { artifact = tostring(io.artifact), devices = {} }
      for _, d in ipairs(io.devices or {}) do
        local p = findings.p99_ms(d)
        sec.io.devices[#sec.io.devices + 1] = { name = tostring(d.device or d.name or d.dev),
          iops = d.iops and string.format('%.0f', d.iops) or 'not measured',
          mean = d.mean_ns and util.fmt_duration(d.mean_ns / 1e9) or 'not measured',
          p99 = p and util.fmt_duration(p / 1e3) or 'not measured' }
      end
    end
    local lock = data.traces and data.traces.lock
    if key == 'lock' and lock and type(lock.use) == 'table' then
      local u = lock.use
      sec.lock = { artifact = tostring(lock.artifact),
        wait = u.utilisation and string.format('%.0f%%', u.utilisation * 100) or 'not measured',
        waiters = type(u.saturation) == 'table' and u.saturation.mean_waiters
          and string.format('%.1f', u.saturation.mean_waiters) or 'not measured' }
    end
    local cpu = data.profiles and data.profiles.cpu
    local hot = key == 'cpu' and cpu and findings.hot_function(cpu)
    if hot then
      sec.hot = { artifact = tostring(cpu.artifact), name = tostring(hot.name),
        share = string.format('%.0f%%', (hot.share or 0) * 100) }
    end
    for _, f in ipairs(found) do
      if f.resource == key then
        sec.findings[#sec.findings + 1] = { severity = tostring(f.severity):upper(), summary = tostring(f.summary) }
      end
    end
    v.resources[#v.resources + 1] = sec
  end
  return v
end

--- The Markdown report of `perf_manual analyze` (templates/analysis.md).
function M.analysis(data, found, opts)
  return markdown.render(M.analysis_view(data, found), { format = 'analysis', template = opts and opts.template })
end

--- The hook the investigation engine calls for report.md: metadata as the
--- engine holds it, the folder for the data.
function M.investigation(meta, opts)
  opts = opts or {}
  local ds
  if opts.dir then ds = M.load(opts.dir) end
  ds = ds or { meta = {}, series = {}, samples = {}, histograms = {}, scalars = {}, profiles = {}, findings = {},
    artifacts = {}, warnings = {} }
  ds.meta = meta
  ds.id = meta.id or ds.id
  ds.kind = 'investigation'
  if meta.findings then ds.findings = meta.findings end
  local text = M.render(ds, { format = opts.format or 'technical', output = 'md', assets_dir = nil })
  return text
end

return M
