-- Reports read findings first: summary, root cause with its evidence, fix and
-- validation, recommendations, then the technical details, the timeline as an
-- appendix; every metric by its human name. On stored real investigations
-- (tests/fixtures/report/investigations: a lock convoy and a CPU burn compared
-- with it as a baseline, made by `investigate --batch`).
local report = require('perf_manual.report')
local store = require('perf_manual.store')
local util = require('perf_manual.util')
local h = test_helpers

local FX = h.root .. '/tests/fixtures/report'

local function copy(name)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute(string.format("cp -r '%s/investigations/%s' '%s'", FX, name, dir)) == 0)
  return dir
end

-- a fix and its validation as `fix --validate` records them
local VALIDATION = {
  verdict = 'fixed',
  summary = 'fixed: lock wait -91%, 95% CI [-93%, -88%], U test p < 0.001',
  after = '2026-12-03_it-is-slow/validation-1',
  at = '2026-12-03T18:20:00.000Z',
  metrics = {
    { name = 'Time waiting on locks', key = 'tsa.lock_pct', unit = '% of wall time', before = 78.8, after = 7.1,
      change_pct = -91.0, ci_lo = -93.2, ci_hi = -88.4, p = 0.00001, test = 'Mann-Whitney U' },
    { key = 'quantify.process.cpu_pct', before = 104.82, after = 188.3, change_pct = 79.6, ci_lo = 70.1, ci_hi = 85.0,
      p = 0.0004, test = 'Mann-Whitney U' },
    { key = 'quantify.system.ctxt_per_s', before = 5919.18, after = 410.2, change_pct = -93.1 },
  },
}

local function with_fix(dir, fix, validation)
  local meta = assert(store.read_metadata(dir))
  meta.fix, meta.validation = fix, validation
  assert(util.write_atomic(dir .. '/' .. store.METADATA, store.yaml_dump(meta)))
end

-- the raw keys a report must not show: every key the data holds, and the
-- same without its file name ("cpu.busy_pct" of "collect-cpu.cpu.busy_pct")
local function raw_keys(dir)
  local ds = assert(report.load(dir))
  local keys = {}
  local function add(k)
    keys[k] = true
    local short = k:gsub('^[^.]*%.', '', 1)
    if short:find('.', 1, true) then keys[short] = true end
  end
  for _, t in ipairs({ ds.series, ds.samples, ds.scalars, ds.histograms }) do for k in pairs(t) do add(k) end end
  for _, r in ipairs(ds.baseline and ds.baseline.rows or {}) do add(r.metric) end
  for _, m in ipairs(VALIDATION.metrics) do add(m.key) end
  return util.keys(keys)
end

local function assert_no_raw_keys(text, keys, what)
  -- Markdown escapes underscores: read it as a person would
  local plain = text:gsub('\\', '')
  for _, k in ipairs(keys) do
    assert.is_nil(plain:find(k, 1, true), what .. ' shows the raw key ' .. k)
  end
  -- nor any other key-shaped word
  for _, suffix in ipairs({ '_pct', '_per_s', '_bytes' }) do
    assert.is_nil(plain:find('%w' .. suffix .. '%f[%W]'), what .. ' shows a key ending in ' .. suffix)
  end
end

-- the positions of `headings` in `text`, which must be in this order
local function assert_order(text, headings, what)
  local last = 0
  for _, hd in ipairs(headings) do
    local at = text:find(hd, 1, true)
    assert.is_truthy(at, what .. ': ' .. hd .. ' missing')
    assert.is_true(at > last, what .. ': ' .. hd .. ' out of order')
    last = at
  end
end

describe('reports read findings first', function()
  local dir
  before_each(function() dir = copy('lock') end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it('technical Markdown: summary, root cause with evidence, fix, recommendations, details, timeline last', function()
    local text = report.render(assert(report.load(dir)), { format = 'technical', output = 'md' })
    assert_order(text, { '## Summary', '## Root Cause', 'Evidence:', '## Fix and Validation', '## Recommendations',
      '## Technical Details', '### Symptom Quantification', '### Resource Analysis (USE Method)',
      '### Where the Time Goes',
      '### Drill-down', '### Profile Evidence', '## Appendix A: Timeline', '## Appendix B: Files' }, 'technical.md')
    -- the timeline's first entry comes after every finding
    assert.is_true(text:find('started: started by root', 1, true) > text:find('## Appendix A: Timeline', 1, true))
    -- the root cause with the evidence behind it, linked to its artifact
    assert.matches('## Root Cause\n\nlock contention: threads wait on a shared mutex\n\nEvidence:\n\n%- USE ' ..
      'Mutex/locks: HIGH', text)
    assert.matches('6%.6 waiters%) %(%[raw_data/use%-check%.json%]%(raw_data/use%-check%.json%)%)', text)
    -- no fix: said plainly, with the command that records one
    assert.matches('%*%*Fix%*%*: no fix recorded', text)
    assert.matches('No fix recorded%. Record one, .- with `perf_manual fix 2026%-12%-03_it%-is%-slow "text" ' ..
      '%-%-validate`', text)
    -- quantify numbers by name and unit
    assert.matches('| CPU used by the process, %% of one CPU |  | 105%% |  |', text)
    assert.matches('| Context switches, per second |  | 5919/s |  |', text)
    assert_no_raw_keys(text, raw_keys(dir), 'technical.md')
  end)

  it('technical HTML and the executive report in the same order, without raw keys', function()
    local ds = assert(report.load(dir))
    local html = report.render(ds, { format = 'technical', output = 'html' })
    assert_order(html, { '<h2>Summary</h2>', '<h2 id="root-cause-section">Root Cause</h2>', 'id="root-cause-evidence"',
      '<h2 id="fix-and-validation">Fix and Validation</h2>', '<h2>Recommendations</h2>', '<h2>Technical Details</h2>',
      '<table id="use">', '<table id="time-states">', '<h3>Drill-down</h3>', '<h3>Profile Evidence</h3>',
      '<h2 id="timeline">Appendix A: Timeline</h2>' }, 'technical.html')
    assert.matches('<code>perf_manual fix 2026%-12%-03_it%-is%-slow &quot;text&quot; %-%-validate</code>', html)
    assert_no_raw_keys(html, raw_keys(dir), 'technical.html')
    local exec = report.render(ds, { format = 'executive', output = 'md' })
    assert_order(exec, { '**Root cause**', '**Fix**: no fix recorded', '## Fix and Validation',
      '## What happens next' }, 'executive.md')
    assert_no_raw_keys(exec, raw_keys(dir), 'executive.md')
  end)

  it('renders a recorded fix and its validation: verdict, summary, before/after by name', function()
    with_fix(dir, { text = 'shard g_lock into 16 stripes', at = '2026-12-03T18:10:00.000Z' }, VALIDATION)
    local ds = assert(report.load(dir))
    local text = report.render(ds, { format = 'technical', output = 'md' })
    assert.matches('%*%*Fix%*%*: shard g\\_lock into 16 stripes\n', text)
    assert.matches('%*%*Validation%*%*: fixed: lock wait %-91%%', text)
    assert.matches('## Fix and Validation\n\n%*%*Fix%*%*: shard g\\_lock into 16 stripes %(recorded ' ..
      '2026%-12%-03T18:10:00%.000Z%)', text)
    assert.matches('%*%*Verdict: fixed%*%*: lock wait %-91%%, 95%% CI \\%[%-93%%, %-88%%\\%], U test p &lt; 0%.001',
      text)
    assert.matches('| Time waiting on locks, %% of wall time | 78%.8%% | 7%.1%% | %-91%.0%% | \\%[%-93%.2%%, ' ..
      '%-88%.4%%\\%] | Mann%-Whitney U, p &lt; 0%.001 |', text)
    -- a metric given by key alone gets the name and unit from the names table
    assert.matches('| CPU used by the process, %% of one CPU | 105%% | 188%% | %+79%.6%% | \\%[%+70%.1%%, ' ..
      '%+85%.0%%\\%] | Mann%-Whitney U, p &lt; 0%.001 |', text)
    assert.matches('| Context switches, per second | 5919/s | 410/s | %-93%.1%% | %- | %- |', text)
    assert_order(text, { '## Root Cause', '## Fix and Validation', '**Verdict: fixed**', '## Recommendations' },
      'technical.md')
    assert_no_raw_keys(text, raw_keys(dir), 'technical.md with a validation')
    local html = report.render(ds, { format = 'technical', output = 'html' })
    assert.matches('<span class="verdict ok">Verdict: fixed</span>', html)
    assert.matches('<tr><td>Time waiting on locks, %% of wall time</td><td>78%.8%%</td><td>7%.1%%</td>', html)
    local exec = report.render(ds, { format = 'executive', output = 'html' })
    assert.matches('<dt>Fix</dt><dd>shard g_lock into 16 stripes</dd>', exec)
    assert.matches('<span class="verdict ok">Verdict: fixed</span>', exec)
    assert.matches('<tr><td>CPU used by the process, %% of one ' ..
      'CPU</td><td>105%%</td><td>188%%</td><td>%+79%.6%%</td></tr>', exec)
    local slides = report.render(ds, { format = 'slides' })
    local fix = slides:match('<section class="slide" id="s%-fix">(.-)</section>')
    assert.matches('<strong>Fix:</strong> shard g_lock into 16 stripes', fix)
    assert.matches('<span class="verdict ok">fixed</span> lock wait', fix)
    assert.matches('<td>Time waiting on locks, %% of wall time</td>', fix)
    assert_no_raw_keys(slides, raw_keys(dir), 'slides')
  end)

  it('says a fix that is not validated yet, and a worse verdict, plainly', function()
    -- an older investigation: the fix as a plain string, no validation
    with_fix(dir, 'moved the lock out of the loop', nil)
    local text = report.render(assert(report.load(dir)), { format = 'technical', output = 'md' })
    assert.matches('%*%*Fix%*%*: moved the lock out of the loop\n%- %*%*Validation%*%*: not validated yet', text)
    assert.matches('Not validated yet: `perf_manual fix 2026%-12%-03_it%-is%-slow "text" %-%-validate` measures again',
      text)
    with_fix(dir, { text = 'bigger buffer' }, { verdict = 'worse', summary = 'worse: p99 +40%', metrics = {} })
    local html = report.render(assert(report.load(dir)), { format = 'technical', output = 'html' })
    assert.matches('<span class="verdict high">Verdict: worse</span> p99 %+40%%', html)
  end)

  it('slides: findings first, then the evidence', function()
    local deck = report.render(assert(report.load(dir)), { format = 'slides' })
    local ids = {}
    for id in deck:gmatch('<section class="slide[^"]*" id="([^"]+)"') do ids[#ids + 1] = id end
    assert.same({ 's-title', 's-symptom', 's-root-cause', 's-fix', 's-recommendations', 's-use', 's-chart',
      's-flamegraph' }, ids)
    assert.matches('No fix recorded: <code>perf_manual fix 2026%-12%-03_it%-is%-slow', deck)
  end)

  it('a baseline comparison names its rows and leaves no key in any format', function()
    local cpu = copy('cpu')
    local ok, err = pcall(function()
      local ds = assert(report.load(cpu))
      local text = report.render(ds, { format = 'technical', output = 'md' })
      assert.matches('Compared with baseline 2026%-12%-03\\_it%-is%-slow', text)
      assert.matches('| CPU used by the process, %% of one CPU | 105%% | 195%% | %+86%% |', text)
      for _, f in ipairs({ { 'technical', 'md' }, { 'technical', 'html' }, { 'executive', 'md' },
        { 'executive', 'html' } }) do
        assert_no_raw_keys(report.render(ds, { format = f[1], output = f[2] }), raw_keys(cpu), f[1] .. '.' .. f[2])
      end
      assert_no_raw_keys(report.render(ds, { format = 'slides' }), raw_keys(cpu), 'slides')
    end)
    os.execute("rm -rf '" .. cpu .. "'")
    assert(ok, err)
  end)
end)
