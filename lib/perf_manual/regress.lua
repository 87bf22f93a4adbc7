--- Regression history: results of benchmarks, red-checks and collects,
--- one value per run with its commit, version and time, kept in
--- `<store>/.regress.sqlite`; change points per series
--- (perf_manual.analyzers.changepoint) and, when runs carry a profile or a
--- latency histogram, the mechanism of a change: the differential flame
--- graph and the histogram shift between the segments before and after.
---
---   local regress = require('perf_manual.regress')
---   local db = regress.open(store_root)
---   db:record { name = 'startup.version', value = 1.9, unit = 'ms', commit = 'abc123' }
---   local res = regress.check(db, { threshold = 5 })
---   io.write(regress.format_check(res))
---   db:close()
local util = require('perf_manual.util')
local cp = require('perf_manual.analyzers.changepoint')
local sqlite3 = require('luasql.sqlite3')

local M = {}

M.FILE = '.regress.sqlite'

-- units whose larger values are better
local HIGHER = { ['MB/s'] = true, ['GB/s'] = true, ['KB/s'] = true, ['req/s'] = true, ['/s'] = true, ['ops/s'] = true }
M.HIGHER_IS_BETTER_UNITS = HIGHER

local SCHEMA = {
  [[CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL NOT NULL,
      unit TEXT, commit_id TEXT, version TEXT, time REAL NOT NULL, higher_is_better INTEGER NOT NULL DEFAULT 0,
      source TEXT, profile INTEGER REFERENCES blobs (id), hist INTEGER REFERENCES blobs (id))]],
  'CREATE INDEX IF NOT EXISTS runs_by_name ON runs (name, time, id)',
  -- a profile or histogram is stored once however many results of its run carry it
  'CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL)',
}

local function sq(s)
  if s == nil then return 'NULL' end
  return "'" .. tostring(s):gsub("'", "''") .. "'"
end

local function num(v)
  if v == nil then return 'NULL' end
  return string.format('%.17g', v)
end

local Db = {}
Db.__index = Db

local function exec(db, sql)
  local ok, err = db:execute(sql)
  if not ok then error('[perf_manual.regress] ' .. tostring(err), 2) end
  return ok
end

--- Opens (creating) the history of the store at `root`. With `opts.read`,
--- a store without a history is an empty one, and nothing is created.
function M.open(root, opts)
  local path = root .. '/' .. M.FILE
  local pstat = require('posix.sys.stat')
  local st = pstat.stat(root)
  if opts and opts.read and not pstat.stat(path) then
    if st and pstat.S_ISDIR(st.st_mode) == 0 then
      util.user_error('regress: store ' .. root .. ' is not a directory')
    end
    path = ':memory:'
  elseif not st then
    local ok, err = os.execute('mkdir -p ' .. "'" .. root:gsub("'", "'\\''") .. "'")
    if not (ok == 0 or ok == true) then util.user_error('regress: cannot create ' .. root .. ': ' .. tostring(err)) end
  elseif pstat.S_ISDIR(st.st_mode) == 0 then
    util.user_error('regress: store ' .. root .. ' is not a directory')
  end
  local db, err = sqlite3.sqlite3():connect(path)
  if not db then util.user_error('regress: ' .. path .. ': ' .. tostring(err)) end
  local c = db:execute('PRAGMA busy_timeout = 5000')
  if type(c) == 'userdata' then c:close() end
  for _, s in ipairs(SCHEMA) do
    local ok, serr = db:execute(s)
    if not ok then db:close(); util.user_error('regress: ' .. path .. ': ' .. tostring(serr)) end
  end
  return setmetatable({ db = db, path = path }, Db)
end

function Db:close()
  if self.db then self.db:close(); self.db = nil end
end

local function last_id(db)
  local cur = db:execute('SELECT last_insert_rowid()')
  local id = tonumber(cur:fetch())
  cur:close()
  return id
end

-- the blob id of a profile text or histogram, inserted once per open handle
function Db:blob(kind, v)
  self.blobs = self.blobs or {}
  local key = kind .. '\0' .. (type(v) == 'string' and v or util.json_encode(v))
  local id = self.blobs[key]
  if not id then
    exec(self.db, string.format('INSERT INTO blobs (kind, body) VALUES (%s, %s)', sq(kind), sq(key:sub(#kind + 2))))
    id = last_id(self.db)
    self.blobs[key] = id
  end
  return id
end

--- Records one run: { name, value, unit?, commit?, version?, time? (unix s,
--- default now), higher_is_better?, source?, profile? (folded text), hist?
--- (bucket list) }. Returns its id.
function Db:record(r)
  util.validate('r.name', r.name, 'string')
  util.validate('r.value', r.value, 'number')
  local pid = r.profile and self:blob('profile', r.profile)
  local hid = r.hist and self:blob('hist', r.hist)
  exec(self.db, string.format('INSERT INTO runs (name, value, unit, commit_id, version, time, higher_is_better, '
    .. 'source, profile, hist) VALUES (%s, %s, %s, %s, %s, %s, %d, %s, %s, %s)',
    sq(r.name), num(r.value), sq(r.unit), sq(r.commit), sq(r.version), num(r.time or os.time()),
    r.higher_is_better and 1 or 0, sq(r.source), num(pid), num(hid)))
  return last_id(self.db)
end

--- Several runs in one transaction (all or none).
function Db:record_all(list)
  exec(self.db, 'BEGIN IMMEDIATE')
  local ids = {}
  local ok, err = pcall(function() for i, r in ipairs(list) do ids[i] = self:record(r) end end)
  self.blobs = nil
  if not ok then self.db:execute('ROLLBACK'); error(err, 0) end
  exec(self.db, 'COMMIT')
  return ids
end

local COLS = 'id, name, value, unit, commit_id, version, time, higher_is_better, source, '
  .. 'profile IS NOT NULL, hist IS NOT NULL'

local function row_of(t)
  return { id = tonumber(t[1]), name = t[2], value = tonumber(t[3]), unit = t[4], commit = t[5], version = t[6],
    time = tonumber(t[7]), higher_is_better = tonumber(t[8]) == 1, source = t[9],
    has_profile = tonumber(t[10]) == 1, has_hist = tonumber(t[11]) == 1 }
end

local function rows(db, sql)
  local cur = db:execute(sql)
  if not cur then error('[perf_manual.regress] query failed: ' .. sql, 2) end
  local out = {}
  local t = cur:fetch({}, 'n')
  while t do
    out[#out + 1] = t
    t = cur:fetch({}, 'n')
  end
  cur:close()
  return out
end

--- The runs of one series in order (time, then recording order).
function Db:series(name)
  local out = {}
  for i, t in ipairs(rows(self.db, 'SELECT ' .. COLS .. ' FROM runs WHERE name = ' .. sq(name)
    .. ' ORDER BY time, id')) do
    out[i] = row_of(t)
  end
  return out
end

--- The series: { name, runs, unit, first, last (times), profiles, hists } by name;
--- `like` keeps names containing it.
function Db:names(like)
  local where = like and (" WHERE instr(name, " .. sq(like) .. ") > 0") or ''
  local out = {}
  for i, t in ipairs(rows(self.db, 'SELECT name, count(*), max(unit), min(time), max(time), count(profile), '
    .. 'count(hist) FROM runs' .. where .. ' GROUP BY name ORDER BY name')) do
    out[i] = { name = t[1], runs = tonumber(t[2]), unit = t[3], first = tonumber(t[4]), last = tonumber(t[5]),
      profiles = tonumber(t[6]), hists = tonumber(t[7]) }
  end
  return out
end

--- The attachments of some runs: profiles (folded texts) and histograms,
--- each stored blob once.
function Db:attachments(ids)
  if #ids == 0 then return {}, {} end
  local list = {}
  for i, id in ipairs(ids) do list[i] = string.format('%d', id) end
  local profiles, hists = {}, {}
  for _, t in ipairs(rows(self.db, 'SELECT kind, body FROM blobs WHERE id IN (SELECT profile FROM runs WHERE id IN ('
    .. table.concat(list, ',') .. ') UNION SELECT hist FROM runs WHERE id IN (' .. table.concat(list, ',')
    .. ')) ORDER BY id')) do
    if t[1] == 'profile' then profiles[#profiles + 1] = t[2] else hists[#hists + 1] = util.json_decode(t[2]) end
  end
  return profiles, hists
end

-- Inputs ---------------------------------------------------------------------------

--- A latency histogram from JSON text: red-check --json/--save output (its
--- `histogram`: [[lo, hi, count], ...] in seconds), or a list of those
--- triples, or of { lo =, hi =, count = }. Returns buckets | nil, why.
function M.parse_hist(text)
  local ok, v = pcall(util.json_decode, text)
  if not ok or type(v) ~= 'table' then return nil, 'not JSON' end
  local list = v.histogram or v.buckets or v
  if type(list) ~= 'table' or #list == 0 then
    return nil, 'no histogram (expected red-check JSON or a list of [lo, hi, count])'
  end
  local out = {}
  for i, b in ipairs(list) do
    local lo, hi, count
    if type(b) == 'table' then
      lo, hi, count = b.lo or b[1], b.hi or b[2], b.count or b[3]
    end
    if type(lo) ~= 'number' or type(hi) ~= 'number' or type(count) ~= 'number' or hi < lo or count < 0 then
      return nil, 'bucket ' .. i .. ' is not [lo, hi, count]'
    end
    out[i] = { lo = lo, hi = hi, count = count }
  end
  table.sort(out, function(a, b) return a.lo < b.lo end)
  return out
end

--- The results in red-check JSON: latency percentiles, throughput and
--- error ratio, the histogram attached to each.
function M.from_red(doc, prefix)
  local out = {}
  local hist = type(doc.histogram) == 'table' and M.parse_hist(util.json_encode(doc.histogram)) or nil
  local lat = type(doc.latency) == 'table' and doc.latency or {}
  for _, q in ipairs({ 'p50', 'p90', 'p99', 'mean' }) do
    if type(lat[q]) == 'number' then
      out[#out + 1] = { name = prefix .. '.' .. q, value = lat[q], unit = 's', hist = hist }
    end
  end
  local rate = type(doc.rate) == 'table' and doc.rate or {}
  if type(rate.completed) == 'number' and type(doc.duration_s) == 'number' and doc.duration_s > 0 then
    out[#out + 1] = { name = prefix .. '.rps', value = rate.completed / doc.duration_s, unit = 'req/s',
      higher_is_better = true }
  end
  local errs = type(doc.errors) == 'table' and doc.errors or {}
  if type(errs.ratio) == 'number' then
    out[#out + 1] = { name = prefix .. '.error_ratio', value = errs.ratio, unit = 'ratio' }
  end
  return out
end



--- The results of a data dir (a `collect`, or an investigation): its
--- scalars, the median of each sampled series, its red-check results, each
--- with the dir's last profile attached. Returns list | nil, why.
function M.from_dir(dir, prefix)
  local ds, err = require('perf_manual.report').load(dir)
  if not ds then return nil, err end
  prefix = prefix or 'collect'
  local out = {}
  for k, v in pairs(ds.scalars) do
    if type(v) == 'number' then out[#out + 1] = { name = prefix .. '.' .. k, value = v } end
  end
  for k, smp in pairs(ds.samples) do
    local xs = {}
    for _, v in ipairs(smp.values or {}) do if type(v) == 'number' and v == v then xs[#xs + 1] = v end end
    if #xs > 0 then
      table.sort(xs)
      local m = #xs % 2 == 1 and xs[(#xs + 1) / 2] or (xs[#xs / 2] + xs[#xs / 2 + 1]) / 2
      out[#out + 1] = { name = prefix .. '.' .. k .. '.median', value = m, unit = smp.unit }
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  if ds.red then
    for _, r in ipairs(M.from_red(ds.red, prefix .. '.red')) do out[#out + 1] = r end
  end
  if #ds.profiles > 0 then
    local prof = require('perf_manual.fold').load(ds.profiles[#ds.profiles].path)
    if prof then
      local text = prof:folded()
      for _, r in ipairs(out) do r.profile = text end
    end
  end
  return out
end

--- The results in a text: red-check JSON, else the text of `make bench`.
--- Returns list, source ('red-check' or 'bench') | nil, why.
function M.from_text(text, name)
  if text:match('^%s*[{%[]') then
    local ok, doc = pcall(util.json_decode, text)
    if ok and type(doc) == 'table' and (doc.latency or doc.histogram) then
      return M.from_red(doc, name or 'red-check'), 'red-check'
    end
    return nil, 'JSON that is not red-check output'
  end
  return M.parse_bench(text, name), 'bench'
end

-- the units a bench line's measurement may carry (a number followed by one
-- of these is a measurement; "100 threads" is part of a label)
local UNITS = {}
for u in ([[ns us µs ms s min KB MB GB KiB MiB GiB kB B % MB/s GB/s KB/s req/s ops/s /s
    us/tick ns/op]]):gmatch('%S+') do
  UNITS[u] = true
end
local HEADER_UNITS = { seconds = 's', ['RSS MB'] = 'MB', ['MB/s'] = 'MB/s', ['SVG MB'] = 'MB', ms = 'ms', us = 'us' }

local function clean(s)
  return util.trim((s:gsub('[%(%)]', ' '):gsub('%s+', ' '):gsub('^[%s,;:]+', ''):gsub('[%s,;:]+$', '')))
end

-- measurements in one line: { pos, stop (after the unit), value, unit }
local function measurements(line)
  local out, init = {}, 1
  while true do
    local s, digits, e = line:match('()(%d[%d,]*%.?%d*)()', init)
    if not s then break end
    init = e
    local prev = s > 1 and line:sub(s - 1, s - 1) or ' '
    local unit, stop
    if not prev:match('[%w_%.%-%+/]') then
      local attached = line:match('^%%', e) and '%' or line:match('^(%a[%a/]*)', e)
      if attached and UNITS[attached] then
        unit, stop = attached, e + #attached   -- 2.51%, 1.2ms
      elseif not attached then
        local sp, u, ue = line:match('^( +)([^%s,;:%)]+)()', e)
        if sp and UNITS[u] then unit, stop = u, ue end
      end
      -- "1.6M", "3.5x", "threads100": not measurements
      if unit and line:sub(stop, stop):match('[%w]') then unit = nil end
    end
    if unit then
      local v = tonumber((digits:gsub(",", "")))
      if v then out[#out + 1] = { pos = s, stop = stop, value = v, unit = unit } end
      init = stop
    end
  end
  return out
end

--- Results in the text `make bench` (tests/bench/run.sh) prints: each
--- "== tests/bench/NAME.lua" starts a bench; a number with a unit is a
--- measurement, named "NAME/subject: label unit [stat]" after the words
--- around it (the subject: the text before ": ", or the first column);
--- table rows under a header of column names are "NAME/row: column".
--- Targets and budgets ("target < 15 ms") and progress lines ("...") are
--- not measurements. `bench` names results before the first header.
function M.parse_bench(text, bench)
  local out, header = {}, nil
  bench = bench or 'bench'
  for raw in (text .. '\n'):gmatch('([^\n]*)\n') do
    local line = raw:gsub('\r$', '')
    local b = line:match('^== .-([^/%s]+)%.%a+%s*$')
    local t = util.trim(line)
    if b then
      bench, header = b, nil
    elseif t == '' then
      header = nil
    elseif t:match('%.%.%.$') or t:match('^target') or t:match('^budget') then -- luacheck: ignore 542
    else
      -- a table header: column names, no digits, columns 2+ spaces apart
      local cols = {}
      if not t:match('%d') then
        for c in (t .. '  '):gmatch('(%S.-)%s%s+') do cols[#cols + 1] = c end
      end
      if #cols >= 2 then
        header = cols
      elseif header then
        local vals, label = {}, t
        while true do
          local rest, n = label:match('^(.-)%s+(%-?%d[%d%.]*)$')
          if not rest then break end
          table.insert(vals, 1, tonumber(n)); label = rest
        end
        if #vals == #header - 1 and #vals > 0 then
          for i, v in ipairs(vals) do
            local col = header[i + 1]
            local unit = HEADER_UNITS[col] or col
            out[#out + 1] = { name = bench .. '/' .. clean(label) .. ': ' .. col, value = v, unit = unit,
              higher_is_better = HIGHER[unit] or nil }
          end
        else
          header = nil
        end
      end
      if not header then
        local ms = measurements(t)
        local colon = t:find(': ', 1, true)
        local subject, from
        local first = t:match('^(%S.-)%s%s+')
        if colon and (not ms[#ms] or colon < ms[#ms].pos) and not (first and colon < #first) then
          subject, from = t:sub(1, colon - 1), colon + 2
        else
          -- a first column ("peer: grep -ril fsync (no ranking)   median ...")
          subject, from = first or '', first and #first + 1 or 1
        end
        local prev_end = from
        for i, m in ipairs(ms) do
          if m.pos >= from then
            local before = t:sub(prev_end, m.pos - 1)
            -- "target < 2 ms", "budget 1 s": stated, not measured
            if not (before:match('[<>]=?%s*$') or before:match('target%s*$') or before:match('budget%s*$')) then
              local label = before:match('[,;%(%)]([^,;%(%)]*)$') or before
              -- words after the unit up to a , ; or ( belong to this one,
              -- unless the next measurement comes first
              local nxt = ms[i + 1] and ms[i + 1].pos or #t + 1
              local after = t:sub(m.stop, nxt - 1)
              local suffix = after:match('^([^,;%(%)]*)[,;%(%)]') or (not ms[i + 1] and after) or ''
              local name = clean(table.concat({ clean(label), m.unit, clean(suffix) }, ' '))
              out[#out + 1] = { name = bench .. '/' .. clean(subject) .. ': ' .. name, value = m.value, unit = m.unit,
                higher_is_better = HIGHER[m.unit] or nil }
            end
            prev_end = m.stop
          end
        end
      end
    end
  end
  return out
end


-- Checking ----------------------------------------------------------------------

local function fmt_value(v, unit)
  if v == nil then return '?' end
  -- seconds read best scaled: 129us, 50.4ms
  if unit == 's' and v >= 0 and v < 60 then
    local t = util.fmt_duration(v)
    return (t:gsub('^([%d.]+)(%a+)$', '%1 %2'))
  end
  local a = math.abs(v)
  local s
  if a ~= 0 and (a >= 1e6 or a < 1e-3) then s = string.format('%.3g', v)
  elseif a >= 100 then s = string.format('%.1f', v)
  else s = string.format('%.4g', v) end
  return unit and unit ~= '' and (s .. ' ' .. unit) or s
end
M.fmt_value = fmt_value

local function merged_hist(list)
  local by = {}
  for _, h in ipairs(list) do
    for _, b in ipairs(h) do
      local k = string.format('%.17g %.17g', b.lo, b.hi)
      local e = by[k]
      if not e then e = { lo = b.lo, hi = b.hi, count = 0 }; by[k] = e end
      e.count = e.count + b.count
    end
  end
  local out = {}
  for _, e in pairs(by) do out[#out + 1] = e end
  table.sort(out, function(a, b) return a.lo < b.lo or (a.lo == b.lo and a.hi < b.hi) end)
  return out
end

-- share of the values of buckets above v (a bucket straddling v counts in
-- proportion)
local function share_above(buckets, v)
  local n, above = 0, 0
  for _, b in ipairs(buckets) do
    n = n + b.count
    if b.lo > v then above = above + b.count
    elseif b.hi > v and b.hi > b.lo then above = above + b.count * (b.hi - v) / (b.hi - b.lo) end
  end
  return n > 0 and above / n or nil
end

--- The latency-histogram shift between two lists of histograms.
function M.hist_shift(before, after)
  local hist = require('perf_manual.hist')
  local b, a = merged_hist(before), merged_hist(after)
  if hist.count(b) == 0 or hist.count(a) == 0 then return nil end
  local out = { before_runs = #before, after_runs = #after, before_count = hist.count(b), after_count = hist.count(a),
    quantiles = {} }
  for _, q in ipairs({ 0.5, 0.9, 0.99 }) do
    out.quantiles[#out.quantiles + 1] = { name = hist.name(q), before = hist.quantile(b, q),
      after = hist.quantile(a, q) }
  end
  local p99 = out.quantiles[3].before
  out.after_above_before_p99 = share_above(a, p99)
  out.before_above_before_p99 = share_above(b, p99)
  return out
end

--- The profile shift between two lists of folded texts: the largest changes
--- of self share, and the differential flame graph written to `svg` when given.
function M.profile_shift(before, after, svg)
  local fold = require('perf_manual.fold')
  local fd = require('perf_manual.report.flamediff')
  local function merged(list)
    local profs = {}
    for i, text in ipairs(list) do profs[i] = assert(fold.from_folded(text)) end
    return fold.merge(unpack(profs))
  end
  local b, a = merged(before), merged(after)
  if b:total() == 0 or a:total() == 0 then return nil end
  local ch = fd.top_changes(b, a, 5)
  local out = { before_runs = #before, after_runs = #after, self = ch.self, total = ch.total }
  if svg then
    local text = fd.render(b, a, { title = 'Differential flame graph across the change (red: more after, blue: less)' })
    local ok, err = util.write_atomic(svg, text)
    if not ok then util.user_error('regress: ' .. err) end
    out.flamediff = svg
  end
  return out
end

-- the position of --since in a series: the index of its first run at or
-- after that time
local function since_index(runs, since)
  if not since then return 1 end
  for i, r in ipairs(runs) do if r.time >= since.time then return i end end
  return #runs + 1
end

--- The time a commit (a prefix) was first recorded, in any series; nil when
--- no run has it.
function Db:commit_time(prefix)
  local t = rows(self.db, 'SELECT min(time) FROM runs WHERE substr(commit_id, 1, ' .. #prefix .. ') = '
    .. sq(prefix))
  return t[1] and tonumber(t[1][1])
end

--- A --since value: a time (unix seconds, or an ISO date/time in UTC) or a commit.
function M.parse_since(v)
  if v == nil then return nil end
  local n = tonumber(v)
  if n then return { time = n, text = v } end
  local t = M.parse_time(v)
  if t then return { time = t, text = v } end
  if v:match('^[%x]+$') and #v >= 4 then return { commit = v:lower(), text = v } end
  return nil
end

--- "2026-12-04", "2026-12-04T13:00:00Z", "2026-12-04 13:00" (UTC) or unix
--- seconds -> unix seconds, nil when it is none of those.
function M.parse_time(v)
  if tonumber(v) then return tonumber(v) end
  local y, mo, d, rest = tostring(v):match('^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$')
  if not y then return nil end
  local h, mi, se = 0, 0, 0
  if rest ~= '' then
    local a, b, c = rest:match('^[T ](%d%d):(%d%d):?(%d?%d?)Z?$')
    if not a then return nil end
    h, mi, se = tonumber(a), tonumber(b), tonumber(c) or 0
  end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or se > 60 then return nil end
  -- days from the civil date (proleptic Gregorian), no time zone involved
  local yy = mo <= 2 and y - 1 or y
  local era = math.floor(yy / 400)
  local yoe = yy - era * 400
  local doy = math.floor((153 * (mo + (mo > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + h * 3600 + mi * 60 + se
end

--- Change points of every series (or those whose name contains opts.name),
--- judged against opts.threshold (percent, default 5): a regression is a
--- change for the worse beyond the threshold that is still in effect (the
--- latest segment is still worse than the level before it by more than the
--- threshold); with opts.since, only changes at or after it are judged.
--- opts.flamediff_dir: write each change's differential flame graph there;
--- opts.window: analyse only the last N runs of each series.
function M.check(db, opts)
  opts = opts or {}
  local threshold = opts.threshold or 5
  local res = { threshold = threshold, series = {}, regressions = {}, changes = 0,
    since = opts.since and opts.since.text }
  local since = opts.since
  if since and since.commit then
    -- a commit judges from its first run on, in every series (a bench added
    -- later is judged from the same moment)
    local t = db:commit_time(since.commit)
    if not t then util.user_error('regress: --since ' .. util.printable(since.text) .. ': no run has that commit') end
    since = { time = t, text = since.text }
  end
  for _, s in ipairs(db:names(opts.name)) do
    local runs = db:series(s.name)
    -- the last `window` runs only: the cost is O(n^2) in the runs analysed
    local offset = 0
    if opts.window and #runs > opts.window then
      offset = #runs - opts.window
      local keep = {}
      for i = #runs - opts.window + 1, #runs do keep[#keep + 1] = runs[i] end
      runs = keep
    end
    local values = {}
    for i, r in ipairs(runs) do values[i] = r.value end
    local hib = runs[#runs].higher_is_better
    local entry = { name = s.name, unit = runs[#runs].unit, runs = #runs, higher_is_better = hib, changes = {},
      recorded = s.runs }
    res.series[#res.series + 1] = entry
    local first = since_index(runs, since)
    local cps = cp.detect(values, { min_segment = opts.min_segment })
    local last = cps[#cps]
    local current = last and last.after.mean
    for i, c in ipairs(cps) do
      local run = runs[c.index]
      local sign = hib and -1 or 1
      local pct = c.before.mean ~= 0 and (c.after.mean / c.before.mean - 1) * 100 or nil
      local worse = pct and pct * sign or nil
      local now_worse = c.before.mean ~= 0 and (current / c.before.mean - 1) * 100 * sign or nil
      local e = {
        index = c.index + offset, run = run.id, commit = run.commit, version = run.version, time = run.time,
        before = { n = c.before.n, mean = c.before.mean, median = c.before.median },
        after = { n = c.after.n, mean = c.after.mean, median = c.after.median },
        change_pct = pct, p = c.p,
        kind = (worse and worse > 0) and 'regression' or 'improvement',
        judged = c.index >= first,
      }
      e.beyond = worse ~= nil and math.abs(worse) > threshold
      e.in_effect = e.kind == 'regression' and now_worse ~= nil and now_worse > threshold
      e.failing = e.kind == 'regression' and e.beyond and e.in_effect and e.judged
      -- the mechanism: what the runs of the two segments carried
      local lo = i > 1 and cps[i - 1].index or 1
      local hi = i < #cps and cps[i + 1].index - 1 or #runs
      local bids, aids = {}, {}
      for j = lo, c.index - 1 do if runs[j].has_profile or runs[j].has_hist then bids[#bids + 1] = runs[j].id end end
      for j = c.index, hi do if runs[j].has_profile or runs[j].has_hist then aids[#aids + 1] = runs[j].id end end
      if #bids > 0 and #aids > 0 then
        local bp, bh = db:attachments(bids)
        local ap, ah = db:attachments(aids)
        if #bp > 0 and #ap > 0 then
          local svg = opts.flamediff_dir and string.format('%s/%s-run%d.svg', opts.flamediff_dir,
            s.name:gsub('[^%w%.%-_]+', '_'), c.index + offset)
          e.profile = M.profile_shift(bp, ap, svg)
        end
        if #bh > 0 and #ah > 0 then e.hist = M.hist_shift(bh, ah) end
      end
      entry.changes[#entry.changes + 1] = e
      res.changes = res.changes + 1
      if e.failing then res.regressions[#res.regressions + 1] = { name = s.name, change = e } end
    end
  end
  return res
end

local function fmt_time(t)
  return t and os.date('!%Y-%m-%d %H:%M', math.floor(t)) or '?'
end

local function fmt_pct(p) return p and string.format('%+.1f%%', p) or 'n/a' end

--- The text of a check result.
function M.format_check(res, opts)
  opts = opts or {}
  local lines = {}
  local function add(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
  add('regress check: %d series, %d change points, %d regression%s beyond %g%% in effect%s',
    #res.series, res.changes, #res.regressions, #res.regressions == 1 and '' or 's', res.threshold,
    res.since and (' (judged since ' .. res.since .. ')') or '')
  for _, s in ipairs(res.series) do
    if #s.changes > 0 or opts.all then
      add('')
      add('%s (%s, %s is better): %s runs%s', s.name, s.unit or 'no unit', s.higher_is_better and 'higher' or 'lower',
        s.recorded > s.runs and string.format('last %d of %d', s.runs, s.recorded) or tostring(s.runs),
        #s.changes == 0 and ', no change point' or '')
      for _, c in ipairs(s.changes) do
        local verdict = c.kind == 'regression' and (c.beyond and 'REGRESSION' or 'regression within threshold')
          or (c.beyond and 'improvement' or 'improvement within threshold')
        if c.kind == 'regression' and c.beyond then
          verdict = verdict .. (c.in_effect and (c.judged and ' (in effect)' or ' (in effect, before --since)')
            or ' (no longer in effect)')
        end
        add('  at run %d (%s%s): %s -> %s  %s  p=%.2g  [%d | %d runs]  %s', c.index,
          c.commit and ('commit ' .. c.commit:sub(1, 12) .. ', ') or '', fmt_time(c.time),
          fmt_value(c.before.mean, s.unit), fmt_value(c.after.mean, s.unit), fmt_pct(c.change_pct), c.p,
          c.before.n, c.after.n, verdict)
        if c.hist then
          local h, q = c.hist, {}
          for _, e in ipairs(h.quantiles) do
            q[#q + 1] = string.format('%s %s -> %s', e.name, fmt_value(e.before, 's'), fmt_value(e.after, 's'))
          end
          add('    latency histogram (%d runs, %d values | %d runs, %d values): %s', h.before_runs, h.before_count,
            h.after_runs, h.after_count, table.concat(q, ', '))
          if h.after_above_before_p99 then
            add('      %.1f%% of the values after are above the p99 before (%.1f%% before)',
              h.after_above_before_p99 * 100, (h.before_above_before_p99 or 0) * 100)
          end
        end
        if c.profile then
          add('    profile (%d runs | %d runs), largest changes of self share:', c.profile.before_runs,
            c.profile.after_runs)
          for i, r in ipairs(c.profile.self) do
            if i > 5 then break end
            add('      %+7.2f points  %6.2f%% -> %6.2f%%  %s', r.delta, r.before, r.after, util.printable(r.name))
          end
          if c.profile.flamediff then add('    differential flame graph: %s', c.profile.flamediff) end
        end
      end
    end
  end
  return table.concat(lines, '\n') .. '\n'
end

return M
