local h = test_helpers
package.path = h.root .. '/tests/spec/?.lua;' .. package.path
local mk = require('report.make_investigation')
local md = require('perf_manual.report.markdown')
local cjson = require('cjson')

local function slurp(p) local f = assert(io.open(p)); local s = f:read('*a'); f:close(); return s end

describe('perf_manual.report.markdown', function()
  it('escapes text so Markdown shows it literally', function()
    assert.equal('a\\_b \\*c\\* \\[x\\](y) &lt;i&gt; a\\|b \\`c\\`', md.escape('a_b *c* [x](y) <i> a|b `c`'))
    assert.equal('\\# not a heading', md.escape('# not a heading'))
    assert.equal('1\\. not a list', md.escape('1. not a list'))
    assert.equal('version 0.1.0 and 50.4ms', md.escape('version 0.1.0 and 50.4ms'))
    assert.equal('two lines', md.escape('two\nlines'))
  end)
end)

describe('perf_manual report (Markdown)', function()
  local dir
  setup(function() dir = mk.make() end)
  teardown(function() mk.remove(dir) end)

  it('writes the technical report with every section, charts as files, secrets redacted', function()
    local out = dir .. '/out/report.md'
    os.execute("mkdir -p '" .. dir .. "/out'")
    local stdout, err, status = h.pm(string.format("report '%s' --format technical --output '%s'", dir, out))
    assert.equal(0, status, err)
    assert.matches('wrote .*report.md %(technical, Markdown, %d+ charts in .*report%-charts%)', stdout)
    local text = slurp(out)
    -- findings first, the details after, the timeline last
    local last = 0
    for _, section in ipairs({ '## Summary', '## Root Cause', '## Fix and Validation', '## Recommendations',
      '## Technical Details', '### Symptom Quantification', '### Resource Analysis %(USE Method%)',
      '### Profile Evidence', '## Appendix A: Timeline', '## Appendix B: Files' }) do
      local at = text:find('\n' .. section .. '\n')
      assert.is_true(at and at > last, section .. ' missing or out of order')
      last = at
    end
    assert.matches('| CPU | 100%% of 2 CPUs busy', text)
    -- the engine's comparison with a baseline investigation (compare.json)
    assert.matches('Compared with baseline 2026%-11%-22\\_batch%-job', text)
    assert.matches("| Time the process's threads wait for a CPU, % of one thread's time | 206% | 2.3% | -99% |", text,
      1, true)
    assert.matches('Hotspot shift %(profile%-cpu → profile%-cpu%-2', text)
    assert.matches('| Request latency, seconds | median 5%d.%dms | median %d+.%dus | %-99.%d%% |', text)
    assert.matches('Expectation: MET: p99 %-20%%: Request latency p99 5%d.%dms → %d.%dms, %-9%d.%d%% %(95%% CI', text)
    assert.matches('%(report%-charts/cpu.svg%)', text)
    assert.is_truthy(io.open(dir .. '/out/report-charts/cpu.svg'))
    assert.is_truthy(io.open(dir .. '/out/report-charts/flamegraph.svg'))
    -- secrets and hostile text
    assert.is_nil(text:find('hunter2', 1, true))
    assert.is_nil(text:find('id_rsa', 1, true))
    assert.matches('\\%[REDACTED\\%]%(secret path%)', text)
    assert.is_nil(text:find('<script>', 1, true))
    assert.matches('&lt;script&gt;', text)
  end)

  it('writes the executive summary in plain words with one chart', function()
    local text = h.pm(string.format("report '%s' --format executive", dir))
    assert.matches('%*%*Root cause%*%*: burn%(%) spins', text)
    assert.matches('%*%*Status%*%*: The investigation is complete%.', text)
    assert.matches('%*%*Validation%*%*: MET: p99 %-20%%: Request latency p99 ', text)
    assert.matches('\nFix check: MET', text)
    -- on stdout there is no folder for chart files: the chart is named, not lost silently
    assert.matches('chart in the HTML report', text)
  end)

  it('names template, line and field for a template typo, exit 2', function()
    local t = dir .. '/bad.md'
    local f = assert(io.open(t, 'w')); f:write('# {{title}}\n\n{{summary.isue}}\n'); f:close()
    local out, err, status = h.pm(string.format("report '%s' --template '%s'", dir, t))
    assert.equal(2, status)
    assert.equal('', out)
    assert.equal("perf_manual: report: bad.md:3: unknown field 'summary.isue'\n", err)
  end)

  it('refuses an unknown investigation and a bad output name', function()
    local _, err, status = h.pm("report /nonexistent/nowhere --store /nonexistent")
    assert.equal(2, status)
    assert.matches('^perf_manual: ', err)
    _, err, status = h.pm(string.format("report '%s' --output x.pdf", dir))
    assert.equal(2, status)
    assert.equal('perf_manual: report: --output must end in .md or .html (got x.pdf)\n', err)
  end)
end)

describe('perf_manual diff', function()
  local fx = h.root .. '/tests/fixtures/report'

  it('reports significant changes and noise, percentiles side by side, JSON too', function()
    local out, err, status = h.pm(string.format("diff --before '%s/before' --after '%s/after' --iterations 300 --json",
      fx, fx))
    assert.equal(0, status, err)
    local d = cjson.decode(out)
    local by = {}
    for _, m in ipairs(d.metrics) do by[m.metric] = m end
    assert.is_true(by['red-check.latency'].significant)
    assert.is_true(by['red-check.latency'].p < 1e-50)
    assert.is_true(by['red-check.latency'].ci_hi < -0.9)
    assert.is_true(by['collect-cpu.cpu.busy_pct'].significant)   -- a burner before, idle after
    assert.equal('one value per side: no test possible', by['red-check.rate_completed'].verdict)
    assert.equal('red-check.latency', d.latency[1].metric)
    assert.equal('burn', d.hotspots[1].func)
  end)

  it('finds no significant change between a data dir and itself', function()
    local out, err, status = h.pm(string.format("diff --before '%s/before' --after '%s/before' --iterations 200 --json",
      fx, fx))
    assert.equal(0, status, err)
    local d = cjson.decode(out)
    assert.is_true(#d.metrics >= 6)
    for _, m in ipairs(d.metrics) do
      if m.kind == 'samples' then
        assert.equal('no significant change', m.verdict, m.metric)
        assert.equal(1, m.p)
      end
    end
  end)

  it('compares the intersection and lists what is missing on each side', function()
    local a, b = os.tmpname(), os.tmpname()
    os.remove(a); os.remove(b)
    os.execute(string.format("mkdir -p '%s' '%s' && cp '%s/before/red-check.json' '%s/' && cp " ..
      "'%s/after/red-check.json' '%s/after/collect-cpu.jsonl' '%s/'",
      a, b, fx, a, fx, fx, b))
    local out, err, status = h.pm(string.format("diff --before '%s' --after '%s' --iterations 200", a, b))
    os.execute(string.format("rm -rf '%s' '%s'", a, b))
    assert.equal(0, status, err)
    assert.matches('Only after %(not compared%): CPU busy, %% of all CPUs; Load average %(1 minute%), tasks; ' ..
      'Runnable tasks', out)
    assert.matches('| Request latency, seconds |', out)
  end)

  it('says whether an expectation is met, and rejects a malformed one', function()
    local out, _, status = h.pm(string.format("diff --before '%s/before' --after '%s/after' --iterations 300 " ..
      "--expect 'p99 -20%%'", fx, fx))
    assert.equal(0, status)
    assert.matches('\n%- MET: p99 %-20%%: Request latency p99 5%d.%dms → %d.%dms, %-9%d.%d%% '
      .. '%(95%% CI %-%d+.%d%% .. %-%d+.%d%%%), p < 0.001', out)
    out, _, status = h.pm(string.format("diff --before '%s/after' --after '%s/before' --iterations 300 "
      .. "--expect 'p99 -20%%'", fx, fx))
    assert.equal(1, status)
    assert.matches('\n%- NOT MET: p99 %-20%%: ', out)
    local err
    _, err, status = h.pm(string.format("diff --before '%s/before' --after '%s/after' --expect 'faster'", fx, fx))
    assert.equal(2, status)
    assert.matches('^perf_manual: diff: bad %-%-expect "faster": expected \'SUBJECT %+/%-N%%\' or \'SUBJECT < VALUE\'',
      err)
  end)

  it('shows the hotspot shift of two folded profiles and writes the differential flame graph', function()
    local svg = os.tmpname()
    local out, err, status = h.pm(string.format("diff --before '%s/before/profile-cpu.folded' --after " ..
      "'%s/after/profile-cpu.folded' --flamediff '%s'",
      fx, fx, svg))
    assert.equal(0, status, err)
    local data = io.open(svg):read('*a')
    os.remove(svg)
    assert.matches('^<%?xml', data)
    assert.matches('<svg', data)
    assert.matches('spin', data)
    assert.matches('| burn | 100.0%% | 0.0%% | gone |', out)
    assert.matches('| spin | 0.0%% | 9%d.%d%% | new |', out)
  end)
end)
