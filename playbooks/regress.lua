-- regress: a history of results (benchmarks, red-checks, collects) per
-- commit, and the change points in it, for CI: `regress check` exits 1 when
-- a regression beyond the threshold is in effect. When runs carry a profile
-- or a latency histogram, a change point's report says what changed inside:
-- the differential flame graph and the histogram shift across it.
-- The history is <store>/.regress.sqlite (lib/perf_manual/regress.lua);
-- change points: lib/perf_manual/analyzers/changepoint.lua.
local util = require('perf_manual.util')

local function is_dir(path)
  local st = require('posix.sys.stat')
  local s = st.stat(path)
  return s and st.S_ISDIR(s.st_mode) ~= 0
end

local function read_input(path)
  if path == '-' then return io.stdin:read('*a') end
  local text, err = util.readfile(path)
  if not text then util.user_error('regress: --from ' .. util.printable(path) .. ': ' .. tostring(err)) end
  return text
end

-- the results in --from: a collect data dir, red-check JSON, or the text of
-- `make bench`
local function results_from(p, regress)
  if p.from ~= '-' and is_dir(p.from) then
    local list, err = regress.from_dir(p.from, p.name)
    if not list then util.user_error('regress: --from ' .. err) end
    return list, 'collect'
  end
  local list, source = regress.from_text(read_input(p.from), p.name)
  if not list then util.user_error('regress: --from ' .. util.printable(p.from) .. ': ' .. source) end
  return list, source
end

local function since_of(p, regress)
  if not p.since then return nil end
  local s = regress.parse_since(p.since)
  if not s then
    util.user_error("regress: bad value for --since '" .. util.printable(p.since)
      .. "': expected a commit (hex), a date (2026-12-04[T13:00Z]) or unix seconds")
  end
  return s
end

local ACTIONS = { 'record', 'check', 'list', 'show' }

return playbook {
  name = 'regress',
  topic = 'comparison',
  summary = 'Record results per commit and find regressions in their history (change points, with the mechanism)',
  examples = [[
  perf_manual regress record --name startup --value 5.3 --unit ms --commit "$(git rev-parse HEAD)"
  make bench | perf_manual regress record --from - --commit "$(git rev-parse HEAD)"
  perf_manual red-check --endpoint http://127.0.0.1:8080/ --json > r.json
  perf_manual regress record --from r.json --name api --commit abc123 --profile cpu.folded
  perf_manual regress check --threshold 5            (CI gate: exit 1 on a regression in effect)
  perf_manual regress check --name api.p99 --flamediff out/ --json
  perf_manual regress list
  perf_manual regress show api.p99]],
  params = {
    action = param.choice { 'what to do', choices = ACTIONS, positional = true },
    series = param.string { 'show: the series to show', positional = true, optional = true },
    name = param.string { 'record: the series name (with --from: a prefix); check/list: only series whose name '
      .. 'contains this', optional = true },
    value = param.number { 'record: the value measured', optional = true },
    unit = param.string { 'record: its unit (ms, s, MB/s, req/s, %...)', optional = true },
    higher_is_better = param.flag { 'record: larger values are better (throughput); default: smaller are' },
    commit = param.string { 'record: the commit measured', optional = true },
    version = param.string { 'record: the version measured', optional = true },
    time = param.string { 'record: when (2026-12-04T13:00Z, a date, or unix seconds; default now)', optional = true },
    from = param.path { 'record: read the results from FILE (- for stdin): `make bench` output, red-check --json, '
      .. 'or a collect data dir', optional = true, conflicts = { 'value' } },
    profile = param.path { 'record: attach this profile (folded stacks or perf script) to the run', optional = true },
    hist = param.path { 'record: attach this latency histogram (red-check JSON, or [[lo, hi, count], ...])',
      optional = true },
    threshold = param.number { 'check: a change for the worse beyond PCT% is a regression', default = 5, min = 0,
      max = 1e6 },
    since = param.string { 'check: judge only the changes at or after this commit or time', optional = true },
    min_segment = param.integer { 'check: runs needed on each side of a change', default = 5, min = 2, max = 10000 },
    window = param.integer { 'check: analyse only the last N runs of each series (default: all)', optional = true,
      min = 4, max = 1e9 },
    flamediff = param.path { 'check: write the differential flame graph of each change with profiles into DIR',
      optional = true },
    all = param.flag { 'check: list the series without a change point too' },
    json = param.flag { 'print JSON' },
    store = param.path { 'investigation store holding the history (default ./investigations or $PERF_MANUAL_STORE)',
      optional = true },
  },
  check = function(p)
    local only = {
      record = { 'value', 'unit', 'higher_is_better', 'commit', 'version', 'time', 'from', 'profile', 'hist' },
      check = { 'threshold', 'since', 'min_segment', 'flamediff', 'all', 'window' },
    }
    local defaults = { threshold = 5, min_segment = 5, higher_is_better = false, all = false }
    for act, names in pairs(only) do
      if p.action ~= act then
        for _, n in ipairs(names) do
          if p[n] ~= nil and p[n] ~= defaults[n] then
            util.user_error(string.format('regress: --%s is for regress %s, not %s', n:gsub('_', '-'), act, p.action))
          end
        end
      end
    end
    if p.series and p.action ~= 'show' then
      util.user_error("regress: unexpected argument '" .. util.printable(p.series) .. "' (only show takes a series)")
    end
  end,

  run = function(inv, p)
    local regress = require('perf_manual.regress')
    local store = require('perf_manual.store')
    local root = store.root(p.store)
    if p.action == 'record' then
      if not p.from and (not p.name or p.value == nil) then
        util.user_error('regress: record needs --name and --value, or --from FILE')
      end
      local time = os.time()
      if p.time then
        time = regress.parse_time(p.time)
          or util.user_error("regress: bad value for --time '" .. util.printable(p.time)
            .. "': expected 2026-12-04T13:00Z, a date, or unix seconds")
      end
      local profile, hist
      if p.profile then
        local prof, err = require('perf_manual.fold').load(p.profile)
        if not prof then util.user_error('regress: --profile ' .. tostring(err)) end
        if prof:total() == 0 then util.user_error('regress: --profile ' .. p.profile .. ': no stack in it') end
        profile = prof:folded()
      end
      if p.hist then
        local text, err = util.readfile(p.hist)
        if not text then util.user_error('regress: --hist ' .. p.hist .. ': ' .. tostring(err)) end
        local why
        hist, why = regress.parse_hist(text)
        if not hist then util.user_error('regress: --hist ' .. p.hist .. ': ' .. why) end
      end
      local list, source
      if p.from then
        list, source = results_from(p, regress)
        if #list == 0 then util.user_error('regress: --from ' .. util.printable(p.from) .. ': no result in it') end
      else
        list, source = { { name = p.name, value = p.value, unit = p.unit, higher_is_better = p.higher_is_better } },
          'value'
      end
      for _, r in ipairs(list) do
        r.commit, r.version, r.time, r.source = p.commit, p.version, time, source
        r.unit = r.unit or p.unit
        if p.higher_is_better then r.higher_is_better = true end
        r.profile = profile or r.profile
        r.hist = hist or r.hist
      end
      local db = regress.open(root)
      db:record_all(list)
      db:close()
      if p.json then
        -- what was recorded, the attachments said, not repeated
        local out = util.array()
        for i, r in ipairs(list) do
          out[i] = { name = r.name, value = r.value, unit = r.unit, higher_is_better = r.higher_is_better or false,
            commit = r.commit, version = r.version, time = r.time, source = r.source,
            profile = r.profile ~= nil, hist = r.hist ~= nil }
        end
        inv:json(out)
      else
        inv:printf('recorded %d result%s%s in %s\n', #list, #list == 1 and '' or 's',
          p.commit and (' for commit ' .. p.commit:sub(1, 12)) or '', root .. '/' .. regress.FILE)
      end
      return
    end
    local db = regress.open(root, { read = true })
    if p.action == 'list' then
      local names = db:names(p.name)
      db:close()
      if p.json then inv:json(util.array(names)) return end
      if #names == 0 then inv:print('no results recorded in ' .. root .. '/' .. regress.FILE) return end
      inv:printf('%-64s %5s %-6s %-17s %-17s %s\n', 'series', 'runs', 'unit', 'first', 'last', 'attached')
      for _, s in ipairs(names) do
        local att = {}
        if s.profiles > 0 then att[#att + 1] = s.profiles .. ' profiles' end
        if s.hists > 0 then att[#att + 1] = s.hists .. ' histograms' end
        inv:printf('%-64s %5d %-6s %-17s %-17s %s\n', util.printable(s.name), s.runs, s.unit or '-',
          os.date('!%Y-%m-%d %H:%M', math.floor(s.first)), os.date('!%Y-%m-%d %H:%M', math.floor(s.last)),
          table.concat(att, ', '))
      end
    elseif p.action == 'show' then
      if not p.series then db:close(); util.user_error('regress: show needs a series name (see regress list)') end
      local runs = db:series(p.series)
      if #runs == 0 then
        local near = {}
        for _, s in ipairs(db:names(p.series:match('[^/:.%s]+$') or p.series)) do near[#near + 1] = s.name end
        db:close()
        util.user_error('regress: no series ' .. util.printable(p.series)
          .. (#near > 0 and ('; did you mean: ' .. util.printable(table.concat(near, ', ', 1, math.min(3, #near))))
            or ' (see regress list)'))
      end
      local res = regress.check(db, { name = p.series, threshold = 5 })
      db:close()
      local cps = {}
      for _, s in ipairs(res.series) do
        if s.name == p.series then for _, c in ipairs(s.changes) do cps[c.index] = c end end
      end
      if p.json then
        local out = util.array()
        for i, r in ipairs(runs) do
          out[i] = { id = r.id, value = r.value, unit = r.unit, commit = r.commit, version = r.version, time = r.time,
            profile = r.has_profile, hist = r.has_hist, change = cps[i] and cps[i].change_pct or nil }
        end
        inv:json({ name = p.series, runs = out })
        return
      end
      inv:printf('%s: %d runs (%s is better)\n', p.series, #runs, runs[1].higher_is_better and 'higher' or 'lower')
      for i, r in ipairs(runs) do
        local c = cps[i]
        inv:printf('%4d  %s  %-12s %14s %s%s\n', i, os.date('!%Y-%m-%d %H:%M', math.floor(r.time)),
          util.printable((r.commit or '-'):sub(1, 12)), regress.fmt_value(r.value, r.unit),
          (r.has_profile and 'P' or ' ') .. (r.has_hist and 'H' or ' '),
          c and string.format('  <- change %+.1f%% (%s)', c.change_pct or 0, c.kind) or '')
      end
    else -- check
      if p.flamediff then
        if not is_dir(p.flamediff) then
          local ok = os.execute("mkdir -p '" .. p.flamediff:gsub("'", "'\\''") .. "'")
          if not (ok == 0 or ok == true) then
            db:close(); util.user_error('regress: cannot create --flamediff ' .. p.flamediff)
          end
        end
      end
      local ok, res = pcall(regress.check, db, { name = p.name, threshold = p.threshold,
        since = since_of(p, regress), min_segment = p.min_segment, flamediff_dir = p.flamediff, window = p.window })
      db:close()
      if not ok then error(res, 0) end
      if p.name and #res.series == 0 then
        util.user_error('regress: no series name contains ' .. util.printable(p.name) .. ' (see regress list)')
      end
      if p.json then inv:json(res) else inv.out:write(regress.format_check(res, { all = p.all })) end
      if #res.regressions > 0 then inv.exit_status = 1 end
    end
  end,
}
