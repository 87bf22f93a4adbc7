-- regress: results recorded per commit into <store>/.regress.sqlite, and
-- `regress check` as a CI gate over their history. Inputs are real: the text
-- tests/bench printed on this VM (tests/fixtures/regress/bench-output.txt),
-- red-check JSON and CPU profiles recorded from real nginx runs
-- (tests/fixtures/gates: /err10 answers at once, /delay50 after 50 ms;
-- tests/fixtures/report: the same endpoints on another day).
local util = require('perf_manual.util')
local regress = require('perf_manual.regress')
local h = test_helpers
package.path = h.root .. '/tests/?.lua;' .. package.path
local gen = require('changepoint_series')

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function pm(store, args) return h.pm(args .. ' --store ' .. q(store)) end

local function fx(rel) return h.root .. '/tests/fixtures/' .. rel end

describe('regress: reading results', function()
  local text = util.readfile(fx('regress/bench-output.txt'))

  it('names each measurement of the real bench output after its bench and the words around it', function()
    local by = {}
    for _, r in ipairs(regress.parse_bench(text)) do by[r.name] = r end
    local function is(name, value, unit, higher)
      local r = by[name]
      assert.is_not_nil(r, name)
      assert.same({ value, unit, higher }, { r.value, r.unit, r.higher_is_better })
    end
    is('startup/perf_manual --version: median ms', 5.34, 'ms', nil)
    is("startup/luajit -e '': p90 ms", 6.63, 'ms', nil)
    is('collectors/cpu: sample us', 63.8, 'us', nil)
    is('collectors/cpu: floor us', 38.8, 'us', nil)
    is('collectors/100 threads, 20 ms naps: % of one CPU', 2.8, '%', nil)
    is('fold/perf_manual fold: MB/s', 1337.5, 'MB/s', true)
    is('fold/perf_manual fold: seconds', 0.077, 's', nil)
    is('report/technical HTML in process: s', 0.133, 's', nil)
  end)

  it('reads units written against the number and a first column that holds a colon', function()
    -- the shapes tests/bench/red.lua and tests/bench/store.lua print
    local res = regress.parse_bench('== tests/bench/red.lua\n'
      .. '  red-check                  20000 req/s   p50 1.2ms     p90 2.0ms     p99 3.1ms\n'
      .. '== tests/bench/store.lua\n'
      .. '  peer: grep -ril fsync (no ranking)       median   30.10 ms   p90   35.00 ms\n')
    local got = {}
    for i, r in ipairs(res) do got[i] = { r.name, r.value, r.unit } end
    assert.same({
      { 'red/red-check: req/s', 20000, 'req/s' }, { 'red/red-check: p50 ms', 1.2, 'ms' },
      { 'red/red-check: p90 ms', 2.0, 'ms' }, { 'red/red-check: p99 ms', 3.1, 'ms' },
      { 'store/peer: grep -ril fsync no ranking: median ms', 30.1, 'ms' },
      { 'store/peer: grep -ril fsync no ranking: p90 ms', 35, 'ms' },
    }, got)
    assert.is_true(res[1].higher_is_better)
  end)

  it('takes no target, budget or ratio for a measurement', function()
    for _, r in ipairs(regress.parse_bench(text)) do
      assert.is_nil(r.name:match('target'), r.name)
      assert.is_nil(r.name:match('budget'), r.name)
      assert.is_not.equal(15, r.value)   -- "target < 15 ms"
      assert.is_not.equal('x', r.unit)
    end
  end)

  it('reads red-check JSON: percentiles, throughput and errors, with the histogram', function()
    local doc = util.json_decode(util.readfile(fx('gates/slow/red-check.json')))
    local res = regress.from_red(doc, 'api')
    local by = {}
    for _, r in ipairs(res) do by[r.name] = r end
    assert.equal(doc.latency.p99, by['api.p99'].value)
    assert.equal('s', by['api.p99'].unit)
    assert.is_true(by['api.rps'].higher_is_better)
    assert.equal(doc.rate.completed / doc.duration_s, by['api.rps'].value)
    assert.equal(0, by['api.error_ratio'].value)
    assert.equal(#doc.histogram, #by['api.p50'].hist)
    local b1 = doc.histogram[1]
    assert.same({ lo = b1[1], hi = b1[2], count = b1[3] }, by['api.p50'].hist[1])
  end)

  it('turns civil times into unix seconds without a time zone', function()
    assert.equal(0, regress.parse_time('1970-01-01'))
    assert.equal(951782400, regress.parse_time('2000-02-29'))
    assert.equal(1796389200, regress.parse_time('2026-12-04T13:00Z'))
    assert.equal(1796389230, regress.parse_time('2026-12-04 13:00:30'))
    assert.is_nil(regress.parse_time('2026-13-01'))
    assert.is_nil(regress.parse_time('yesterday'))
  end)
end)

describe('regress record and check', function()
  local store
  before_each(function() store = h.tmpdir() end)
  after_each(function() h.rmrf(store) end)

  it('records the real bench output in the store database and finds nothing in a steady history', function()
    local n = #regress.parse_bench(util.readfile(fx('regress/bench-output.txt')))
    for i = 1, 6 do
      local out, err, st = pm(store, string.format('regress record --from %s --commit %07x --time %d',
        q(fx('regress/bench-output.txt')), i, 1796389200 + i * 60))
      assert.equal(0, st, err)
      assert.equal(string.format('recorded %d results for commit %07x in %s/.regress.sqlite\n', n, i, store), out)
    end
    -- `make bench | regress record --from -` reads the same from stdin
    local out, err, st = h.sh(string.format('%s/bin/perf_manual regress record --from - --commit 0000007 '
      .. '--store %s < %s', h.root, q(store), q(fx('regress/bench-output.txt'))))
    assert.equal(0, st, err)
    assert.equal(string.format('recorded %d results for commit 0000007 in %s/.regress.sqlite\n', n, store), out)
    -- the rows are in SQLite, where any client reads them
    local db = require('luasql.sqlite3').sqlite3():connect(store .. '/.regress.sqlite')
    local cur = db:execute("SELECT count(*), count(DISTINCT name), min(commit_id) FROM runs")
    local rows, names, first = cur:fetch()
    cur:close(); db:close()
    assert.same({ 7 * n, n, '0000001' }, { tonumber(rows), tonumber(names), first })
    out, err, st = pm(store, 'regress check')
    assert.equal(0, st, err)
    assert.equal(string.format('regress check: %d series, 0 change points, 0 regressions beyond 5%% in effect\n', n),
      out)
  end)

  it('exits 1 on a regression in effect in a noisy history, 0 on noise alone, and names the commit', function()
    local u = gen.rng(20)
    local function add(i, v)
      local _, err, st = pm(store, string.format('regress record --name api.p99 --value %.6f --unit ms --commit c%06d '
        .. '--time %d', v, i, 1796389200 + i * 3600))
      assert.equal(0, st, err)
    end
    for i = 1, 30 do add(i, 20 + 0.4 * math.sqrt(-2 * math.log(1 - u())) * math.cos(2 * math.pi * u())) end
    local out, err, st = pm(store, 'regress check')
    assert.equal(0, st, err .. out)
    assert.matches('0 change points', out)
    -- a 15% slowdown from c000031 on
    for i = 31, 38 do add(i, 23 + 0.4 * math.sqrt(-2 * math.log(1 - u())) * math.cos(2 * math.pi * u())) end
    out, err, st = pm(store, 'regress check --threshold 5')
    assert.equal(1, st, err .. out)
    assert.matches('1 regression beyond 5%% in effect', out)
    assert.matches('\n  at run 31 %(commit c000031, 2026%-12%-05 20:00%): 20%.%d+ ms %-> 2[23]%.%d+ ms  '
      .. '%+1[45]%.%d%%  p=[%d.e-]+  '
      .. '%[30 | 8 runs%]  REGRESSION %(in effect%)\n', out)
    -- beyond the threshold it is still reported, not failed
    out, err, st = pm(store, 'regress check --threshold 20')
    assert.equal(0, st, out .. err)
    assert.matches('regression within threshold', out)
    -- judged only since a later commit: the change is before it
    out, err, st = pm(store, 'regress check --since c000035')
    assert.equal(0, st, out .. err)
    assert.matches('%(in effect, before %-%-since%)', out)
    -- or since a time: the change's first run was at 2026-12-05 20:00 UTC
    out, err, st = pm(store, 'regress check --since 2026-12-05T20:00Z')
    assert.equal(1, st, out .. err)
    out, err, st = pm(store, 'regress check --since 2026-12-05T20:01Z')
    assert.equal(0, st, out .. err)
    out, err, st = pm(store, 'regress check --since c000099')
    assert.equal(2, st, out)
    assert.equal('perf_manual: regress: --since c000099: no run has that commit\n', err)
    out, err, st = pm(store, 'regress check --since c000031 --json')
    assert.equal(1, st, out .. err)
    local doc = util.json_decode(out)
    assert.equal(1, #doc.regressions)
    assert.same({ 'api.p99', 31, 'c000031', true, true },
      { doc.regressions[1].name, doc.regressions[1].change.index, doc.regressions[1].change.commit,
        doc.regressions[1].change.in_effect, doc.regressions[1].change.judged })
    -- fixed: back to the old level, the regression is no longer in effect
    for i = 39, 46 do add(i, 20 + 0.4 * math.sqrt(-2 * math.log(1 - u())) * math.cos(2 * math.pi * u())) end
    out, err, st = pm(store, 'regress check')
    assert.equal(0, st, out .. err)
    assert.matches('REGRESSION %(no longer in effect%)', out)
    assert.matches('at run 39 .- improvement', out)
  end)

  it('a throughput that drops is a regression when higher is better', function()
    for i = 1, 24 do
      local v = (i > 12 and 800 or 1000) + (i * 37 % 11) - 5
      local _, err, st = pm(store, string.format('regress record --name fold.mbps --value %d --unit MB/s '
        .. '--higher-is-better --time %d', v, 1796389200 + i))
      assert.equal(0, st, err)
    end
    local out, err, st = pm(store, 'regress check')
    assert.equal(1, st, out .. err)
    assert.matches('fold.mbps %(MB/s, higher is better%): 24 runs\n  at run 13 .- %-20%.%d%%.- REGRESSION', out)
  end)

  it('carries the mechanism: the latency-histogram shift and the profile shift across the change', function()
    -- before: the /err10 endpoint twice (two real runs), after: /delay50 (two real runs)
    local before = { 'gates/errs', 'report/after' }
    local after = { 'gates/slow', 'report/before' }
    local i = 0
    local function add(dir)
      i = i + 1
      local _, err, st = pm(store, string.format('regress record --from %s --name api --commit r%02d --time %d '
        .. '--profile %s', q(fx(dir .. '/red-check.json')), i, 1796389200 + i * 60,
        q(fx(dir .. '/profile-cpu.folded'))))
      assert.equal(0, st, err)
    end
    for k = 1, 10 do add(before[k % 2 + 1]) end
    for k = 1, 6 do add(after[k % 2 + 1]) end
    local svgdir = store .. '/fd'
    local out, err, st = pm(store, 'regress check --name api.p50 --flamediff ' .. q(svgdir))
    assert.equal(1, st, err .. out)
    assert.matches('api.p50 %(s, lower is better%): 16 runs\n  at run 11 %(commit r11, ', out)
    -- the histograms are the red-check ones: p50 from well under 1 ms to 50 ms
    assert.matches('\n    latency histogram %(10 runs, %d+ values | 6 runs, %d+ values%): p50 [%d.]+ us %-> 50%.%d ms, '
      .. 'p90 [%d.]+ us %-> 5%d%.%d ms, p99 [%d.]+ [mu]s %-> 5%d%.%d ms\n', out)
    assert.matches('\n      100%.0%% of the values after are above the p99 before', out)
    -- the profiles (folded with the files' own weights): before, the calltree
    -- workload (spin) in every run and cpu_burn (burn) in half; after, one
    -- run in two is cpu_burn alone: burn's share grows, spin's shrinks
    local function share(path, fn)
      local t, all = 0, 0
      for stack, n in util.readfile(path):gmatch('([^\n]+) (%d+)\n') do
        all = all + n
        if stack:match(';' .. fn .. '$') then t = t + n end
      end
      return t, all
    end
    local tb, ab = 0, 0
    for _, d in ipairs(before) do
      local t, a = share(fx(d .. '/profile-cpu.folded'), 'burn'); tb, ab = tb + t, ab + a
    end
    local ta, aa = 0, 0
    for _, d in ipairs(after) do
      local t, a = share(fx(d .. '/profile-cpu.folded'), 'burn'); ta, aa = ta + t, aa + a
    end
    assert.matches('\n    profile %(10 runs | 6 runs%), largest changes of self share:\n', out)
    assert.matches(string.format('\n +%%+%.2f points +%.2f%%%% %%-> +%.2f%%%%  burn\n', (ta / aa - tb / ab) * 100,
      tb / ab * 100, ta / aa * 100), out)
    assert.matches('\n +%-%d+%.%d+ points +%d+%.%d+%% %-> +%d+%.%d+%%  spin\n', out)
    local svg = util.readfile(svgdir .. '/api.p50-run11.svg')
    assert.is_not_nil(svg, 'flame graph written')
    assert.matches('^<%?xml', svg)
    assert.matches('burn', svg)
    -- JSON carries the same
    out = pm(store, 'regress check --name api.p50 --json')
    local doc = util.json_decode(out)
    local c = doc.series[1].changes[1]
    assert.equal(11, c.index)
    assert.equal('p99', c.hist.quantiles[3].name)
    assert.is_true(c.hist.quantiles[1].after > 0.05 and c.hist.quantiles[1].before < 0.005)
    assert.is_true(#c.profile.self >= 2)
    -- the error ratio went from 10-12% to 0: an improvement, with the same
    -- profile shift, and no histogram (red-check's is of latency)
    out, err, st = pm(store, 'regress check --name api.error_ratio')
    assert.equal(0, st, out .. err)
    assert.matches('at run 11 %(commit r11, [^\n]+ improvement\n    profile', out)
    assert.is_nil(out:match('latency histogram'))
  end)

  it('records a collect data dir: the median of each sampled series, and its scalars', function()
    local dir = fx('report/collect')
    local out, err, st = pm(store, 'regress record --json --name host --commit c1 --from ' .. q(dir))
    assert.equal(0, st, err)
    local by = {}
    for _, r in ipairs(util.json_decode(out)) do by[r.name] = r end
    -- the context switches per second of each sample in the real collect's cpu.jsonl
    local xs = {}
    for line in util.readfile(dir .. '/raw_data/cpu.jsonl'):gmatch('[^\n]+') do
      local v = util.json_decode(line)
      if v.rates and v.rates.ctxt_per_s then xs[#xs + 1] = v.rates.ctxt_per_s end
    end
    table.sort(xs)
    assert.is_true(#xs >= 3)
    local med = #xs % 2 == 1 and xs[(#xs + 1) / 2] or (xs[#xs / 2] + xs[#xs / 2 + 1]) / 2
    assert.equal(med, by['host.cpu.rates.ctxt_per_s.median'].value)
    assert.equal('c1', by['host.cpu.rates.ctxt_per_s.median'].commit)
    assert.is_false(by['host.cpu.rates.ctxt_per_s.median'].profile)   -- this collect has no profile
    -- a data dir with a red-check and a profile: every result carries the
    -- profile, the latency percentiles the histogram
    out, err, st = pm(store, 'regress record --json --name run --from ' .. q(fx('report/after')))
    assert.equal(0, st, err)
    by = {}
    for _, r in ipairs(util.json_decode(out)) do by[r.name] = r end
    local p99 = by['run.red.p99']
    assert.same({ 0.0030235, true, true }, { p99.value, p99.profile, p99.hist })
    assert.same({ 0.12, true, false }, { by['run.red.error_ratio'].value, by['run.red.error_ratio'].profile,
      by['run.red.error_ratio'].hist })
    assert.is_true(#util.json_decode(pm(store, 'regress list --json')) > 20)
  end)

  it('lists and shows the series, marking the change and the attachments', function()
    for i = 1, 12 do
      local _, err, st = pm(store, string.format('regress record --name t.ms --value %d --unit ms --commit %07x '
        .. '--time %d %s', i > 6 and 130 + i % 3 or 100 + i % 3, i, 1796389200 + i * 60,
        i == 7 and ('--hist ' .. q(fx('gates/slow/red-check.json'))) or ''))
      assert.equal(0, st, err)
    end
    local out, err, st = pm(store, 'regress list')
    assert.equal(0, st, err)
    assert.matches('\nt%.ms +12 ms +2026%-12%-04 13:01 +2026%-12%-04 13:12 +1 histograms\n', out)
    out, err, st = pm(store, 'regress show t.ms')
    assert.equal(0, st, err)
    assert.matches('\n   7  2026%-12%-04 13:07  0000007 +131%.0 ms  H  <%- change %+29%.7%% %(regression%)\n', out)
    out = pm(store, 'regress show t.ms --json')
    assert.equal(12, #util.json_decode(out).runs)
  end)
end)

describe('regress on this project\'s own benchmark history', function()
  -- tests/fixtures/regress/history: what `make bench-record BENCHES="startup report"`
  -- printed, run after run on this VM; runs 11-16 are of a copy of the tool with
  -- 2 ms of busy work added to cli.main (see the README there)
  local dir = fx('regress/history')
  local files = {}
  for _, f in ipairs(require('posix.dirent').dir(dir)) do
    if f:match('%.txt$') then files[#files + 1] = f end
  end
  table.sort(files)
  local store
  setup(function()
    store = h.tmpdir()
    for i, f in ipairs(files) do
      local _, err, st = pm(store, string.format('regress record --from %s --commit %s --time %d',
        q(dir .. '/' .. f), q(f:match('^%d+%-(.-)%.txt$')), 1796389200 + i * 600))
      assert.equal(0, st, err)
    end
  end)
  teardown(function() h.rmrf(store) end)

  it('finds the slower start at the first slow run, in the figure measured against luajit in the same run', function()
    assert.equal(16, #files)
    local out, err, st = pm(store, "regress check --name 'startup/' --json")
    assert.equal(1, st, err)
    local doc = util.json_decode(out)
    assert.equal(1, #doc.regressions, out)
    local r = doc.regressions[1]
    assert.equal('startup/perf_manual --version: ms above the luajit floor', r.name)
    assert.same({ 11, 'a321047-slow-start' }, { r.change.index, r.change.commit })
    assert.is_true(r.change.change_pct > 100, tostring(r.change.change_pct))
    -- --window: the last 12 runs still hold it (numbered in the whole series);
    -- the last 8 hold 2 runs before it, fewer than a side needs
    out, err, st = pm(store, "regress check --name 'startup/' --window 12")
    assert.equal(1, st, err)
    assert.matches(': last 12 of 16 runs\n  at run 11 %(commit a321047%-slow, ', out)
    out, err, st = pm(store, "regress check --name 'startup/' --window 8")
    assert.equal(0, st, err)
    assert.matches(' 0 change points', out)
    -- the baseline runs alone: quiet
    local quiet = h.tmpdir()
    for i = 1, 10 do
      pm(quiet, string.format('regress record --from %s --time %d', q(dir .. '/' .. files[i]), 1796389200 + i * 600))
    end
    out, err, st = pm(quiet, "regress check --name 'startup/'")
    h.rmrf(quiet)
    assert.equal(0, st, out .. err)
    assert.matches(' 0 change points', out)
  end)

  it('sees the machine get busier as a change of the absolute timings, not of the code', function()
    -- the report bench's peer (reading its inputs) rose from run 6 on with
    -- no change to what it times: real, and why CI should gate on figures
    -- measured against a peer in the same run
    local out, _, st = pm(store, "regress check --name 'report/read'")
    assert.equal(1, st, out)
    assert.matches('\n  at run 6 %(commit a32104735e56, ', out)
  end)
end)

describe('regress bad input', function()
  local store
  setup(function() store = h.tmpdir() end)
  teardown(function() h.rmrf(store) end)
  local cases = {
    { 'regress record --name x', 'regress: record needs --name and --value, or --from FILE' },
    { 'regress record --name x --value abc', "regress: bad value for --value 'abc': expected a number" },
    { 'regress record --name x --value 1 --time tuesday', "regress: bad value for --time 'tuesday': expected " },
    { 'regress record --from /nonexistent/bench.txt', 'regress: --from /nonexistent/bench.txt: ' },
    { 'regress record --name x --value 1 --hist ' .. q(fx('regress/bench-output.txt')),
      'regress: --hist ' .. fx('regress/bench-output.txt') .. ': not JSON' },
    { 'regress record --name x --value 1 --profile /nonexistent.folded', 'regress: --profile cannot read' },
    { 'regress list --threshold 3', 'regress: --threshold is for regress check, not list' },
    { 'regress check --value 3', 'regress: --value is for regress record, not check' },
    { 'regress check --since not-a-commit', "regress: bad value for --since 'not-a-commit'" },
    { 'regress show', 'regress: show needs a series name' },
    { 'regress show nothing.here', 'regress: no series nothing.here' },
    { 'regress frobnicate',
      "regress: bad value for <action> 'frobnicate': expected one of: record, check, list, show" },
    { 'regress check --threshold -1', 'regress: --threshold must be at least 0' },
  }
  for _, c in ipairs(cases) do
    it('refuses `' .. c[1]:sub(1, 60) .. '` with one line and status 2', function()
      local out, err, st = pm(store, c[1])
      assert.equal(2, st, out .. err)
      assert.equal(1, err:find('perf_manual: ' .. c[2], 1, true), err)
      assert.is_nil(err:match('\n.'), 'one line: ' .. err)
    end)
  end
  it('refuses a --from file with no measurement in it', function()
    local _, err, st = pm(store, 'regress record --from ' .. q(fx('regress/README')))
    assert.equal(2, st)
    assert.equal('perf_manual: regress: --from ' .. fx('regress/README') .. ': no result in it\n', err)
  end)
  it('refuses JSON that is not red-check output', function()
    local f = store .. '/x.json'
    util.write_atomic(f, '{"a": 1}')
    local _, err, st = pm(store, 'regress record --from ' .. q(f))
    assert.equal(2, st)
    assert.matches('JSON that is not red%-check output', err)
  end)
  it('reads a store without a history as an empty one, and creates nothing', function()
    local none = store .. '/none'
    local out, err, st = pm(none, 'regress check')
    assert.equal(0, st, err)
    assert.equal('regress check: 0 series, 0 change points, 0 regressions beyond 5% in effect\n', out)
    out = pm(none, 'regress list')
    assert.equal('no results recorded in ' .. none .. '/.regress.sqlite\n', out)
    assert.is_nil(require('posix.sys.stat').stat(none))
    local _, err2, st2 = pm(h.root .. '/Makefile', 'regress check')
    assert.equal(2, st2)
    assert.equal('perf_manual: regress: store ' .. h.root .. '/Makefile is not a directory\n', err2)
  end)
  it('says --help', function()
    local out, _, st = h.pm('regress --help')
    assert.equal(0, st)
    assert.matches('Usage: perf_manual regress', out)
    assert.matches('%-%-higher%-is%-better', out)
  end)
end)
