-- diff on recorded data: two investigations replayed from the recorded
-- workloads (by id, in a store), the captured before/after report fixtures,
-- and their two CPU profiles. (The Markdown tables, expectations and the
-- fix-validation JSON are in tests/spec/report/markdown_spec.lua.)
local util = require('perf_manual.util')
local h = test_helpers

local FX = h.root .. '/tests/fixtures/report'

describe('diff', function()
  it('compares two investigations named by part of their id, one value per side untested', function()
    local root, ids = h.replay_store({ 'cpu_burn', 'fsync_writer' })
    local out, err, st = h.pm(string.format('diff --before cpu-burn --after fsync --store %s --iterations 200 --json',
      root))
    h.rmrf(root)
    assert.equal(0, st, err)
    local d = assert(util.json_decode(out))
    assert.same({ ids[1], ids[2] }, { d.before_id, d.after_id })
    local by = {}
    for _, m in ipairs(d.metrics) do by[m.metric] = m end
    -- the recorded quantify.json of each workload
    local qb = util.json_decode(h.fixture('datadirs/cpu_burn/raw_data/quantify.json'))
    local qa = util.json_decode(h.fixture('datadirs/fsync_writer/raw_data/quantify.json'))
    local m = by['quantify.process.threads']
    assert.same({ qb.process.threads, qa.process.threads }, { m.before, m.after })
    assert.equal('one value per side: no test possible', m.verdict)
    assert.near(qa.process.cpu_pct / qb.process.cpu_pct - 1, by['quantify.process.cpu_pct'].change, 1e-5)
  end)

  it('gives the same intervals for the same seed and says which seed it used', function()
    local cmd = string.format("diff --before '%s/before' --after '%s/after' --iterations 300 --seed 7", FX, FX)
    local a, err, st = h.pm(cmd)
    assert.equal(0, st, err)
    assert.equal(a, (h.pm(cmd)))
    assert.matches('bootstrap of the median change, 300 resamples, seed 7', a)
    -- metrics by their names and units, never their keys
    assert.matches('| Request latency, seconds | median 50%.4ms | median 322%.0us | %-99%.4%% |', a)
    assert.matches('| CPU busy, %% of all CPUs | median 100%% | median 51%.3%% |', a)
    assert.matches('| Errors, %% of requests | 0%% | 12%% |', a)
    assert.is_nil(a:find('red-check.', 1, true))
    assert.is_nil(a:find('_pct', 1, true))
  end)

  it('writes Markdown to --output and the differential flame graph next to it', function()
    local dir = h.tmpdir()
    local out, err, st = h.pm(string.format("diff --before '%s/before/profile-cpu.folded' "
      .. "--after '%s/after/profile-cpu.folded' --output '%s/shift.md'", FX, FX, dir))
    assert.equal(0, st, err)
    assert.equal(string.format('wrote %s/shift.md and %s/shift.flamediff.svg\n', dir, dir), out)
    local md = assert(util.readfile(dir .. '/shift.md'))
    assert.matches('No metric is present on both sides%.', md)
    assert.matches('| burn | 100%.0%% | 0%.0%% | gone |', md)
    assert.matches('| spin | 0%.0%% | 99%.7%% | new |', md)
    assert.matches('</svg>%s*$', assert(util.readfile(dir .. '/shift.flamediff.svg')))
    h.rmrf(dir)
  end)

  it('bounds --iterations and stops the bootstrap at Ctrl-C, writing nothing', function()
    local _, err, st = h.pm(string.format("diff --before '%s/before' --after '%s/after' --iterations 100000000",
      FX, FX))
    assert.equal(2, st)
    assert.equal('perf_manual: diff: --iterations must be at most 100000\n', err)
    -- 100000 resamples take seconds; SIGINT at 1 s ends them (the old loop never looked).
    -- --foreground: one SIGINT to the tool only (timeout also signals its whole
    -- process group otherwise, and a second SIGINT is the tool's hard stop)
    local dir = h.tmpdir()
    local sys = require('perf_manual._c.sys')
    local t0 = sys.now()
    local out
    out, err, st = h.sh(string.format("timeout --foreground --preserve-status -s INT -k 60 1 %s/bin/perf_manual diff "
      .. "--before '%s/before' --after '%s/after' --iterations 100000 --output '%s/d.md'", h.root, FX, FX, dir))
    local secs = sys.now() - t0
    assert.is_true(secs < 15, 'took ' .. secs .. ' s')
    assert.equal(130, st, err)
    assert.equal('', out)
    assert.equal('perf_manual: diff: stopped (Ctrl-C) during the bootstrap: nothing written\n', err)
    assert.is_nil(io.open(dir .. '/d.md'))
    h.rmrf(dir)
  end)

  it('says which lines of a profile it skipped, and refuses a profile with no valid stack', function()
    local dir = h.tmpdir()
    -- first line malformed (a trailing space): still a folded file, line 1 reported
    util.write_atomic(dir .. '/a.folded', 'main;work 3 \nmain;work 10\nmain;idle 5\n')
    util.write_atomic(dir .. '/b.folded', 'main;work 2\nmain;idle 5\n')
    util.write_atomic(dir .. '/bad.folded', 'main;work -1\nmain;idle 1.5\n')
    local out, err, st = h.pm(string.format("diff --before '%s/a.folded' --after '%s/b.folded' --json", dir, dir))
    assert.equal(0, st, err)
    assert.matches('a%.folded:1: ', err)
    local d = assert(util.json_decode(out))
    assert.is_true(#d.hotspots > 0)
    err, st = select(2, h.pm(string.format("diff --before '%s/bad.folded' --after '%s/b.folded'", dir, dir)))
    assert.equal(2, st)
    assert.matches('bad%.folded:1: ', err)
    assert.matches('bad%.folded: no valid stack %(2 bad lines%)', err)
    h.rmrf(dir)
  end)

  it('refuses a profile against a data dir, too few resamples and an unknown id, with exit 2', function()
    local _, err, st = h.pm(string.format("diff --before '%s/before/profile-cpu.folded' --after '%s/after'", FX, FX))
    assert.equal(2, st)
    assert.equal('perf_manual: diff: one side is a profile and the other a data dir; give two of a kind\n', err)
    _, err, st = h.pm(string.format("diff --before '%s/before' --after '%s/after' --iterations 10", FX, FX))
    assert.equal(2, st)
    assert.equal('perf_manual: diff: --iterations must be at least 100\n', err)
    local empty = h.tmpdir()
    _, err, st = h.pm(string.format("diff --before nothing --after '%s/after' --store '%s'", FX, empty))
    h.rmrf(empty)
    assert.equal(2, st)
    assert.matches("no investigation 'nothing'", err)
  end)
end)
