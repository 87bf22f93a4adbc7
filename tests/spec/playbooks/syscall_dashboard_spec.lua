-- syscall-dashboard: the files it writes pass Prometheus' own checks, its
-- rules decide right on fixed series (promtool test rules), and its
-- terminal figures, replayed from two recorded scrapes of a real serve, are
-- those the scrapes hold, with quantiles computed as Prometheus does.
local util = require('perf_manual.util')
local scrape = require('perf_manual.serve.scrape')
local prom = require('perf_manual.report.prometheus')
local h = test_helpers

local function have_promtool() return os.execute('command -v promtool >/dev/null 2>&1') == 0 end
local function skip_promtool() h.skip_unless_required('PM_REQUIRE_BPF', 'skipped: promtool is not installed') end

describe('syscall-dashboard', function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmrf(dir) end)

  it('--output writes a dashboard, the rules and a prometheus.yml that promtool accepts', function()
    local out, err, st = h.pm('syscall-dashboard --output ' .. dir .. ' --listen 127.0.0.1:19999')
    assert.equal(0, st, err)
    assert.matches('wrote ' .. dir:gsub('%p', '%%%0') .. '/{syscall%-dashboard%.json,syscalls%.rules%.yml,'
      .. 'perf_manual%.rules%.yml,prometheus%.yml}', out)
    assert.matches("targets: %['127%.0%.0%.1:19999'%]", util.readfile(dir .. '/prometheus.yml'))
    if not have_promtool() then return skip_promtool() end
    local o, e, s = h.sh('promtool check config ' .. dir .. '/prometheus.yml')
    assert.equal(0, s, o .. e)
    assert.truthy((o .. e):find('SUCCESS: 6 rules found', 1, true), o .. e)
  end)

  it("every panel of the dashboard is a query Prometheus parses, on metrics serve exports", function()
    local dash = assert(util.json_decode(util.readfile(h.root .. '/docs/prometheus/syscall-dashboard.json')))
    local served = util.readfile(h.root .. '/playbooks/metrics/default.lua')
      .. util.readfile(h.root .. '/lib/perf_manual/serve/init.lua')
    local rules = { 'groups:', '  - name: dashboard', '    rules:' }
    for i, panel in ipairs(dash.panels) do
      for _, t in ipairs(panel.targets) do
        for name in t.expr:gmatch('(perf_manual_[%w_]+)') do
          local base = name:gsub('_bucket$', ''):gsub('_count$', ''):gsub('_sum$', '')
          assert.truthy(served:find("'" .. base .. "'", 1, true), name .. ' is not served')
        end
        -- Grafana's variables, as Grafana fills them
        local expr = t.expr:gsub('%$__rate_interval', '1m'):gsub('%$instance', '.*')
        rules[#rules + 1] = string.format("      - record: panel_%d\n        expr: '%s'", i, expr)
      end
    end
    assert.equal(8, #dash.panels)
    if not have_promtool() then return skip_promtool() end
    local f = assert(io.open(dir .. '/panels.yml', 'w'))
    f:write(table.concat(rules, '\n'), '\n')
    f:close()
    local o, e, s = h.sh('promtool check rules ' .. dir .. '/panels.yml')
    assert.equal(0, s, o .. e)
  end)

  it('its rules pass promtool test rules (rates, error ratio, p50, the slow and errors alerts)', function()
    if not have_promtool() then return skip_promtool() end
    local o, e, s = h.sh('cd ' .. h.root .. ' && promtool test rules tests/fixtures/prometheus/syscalls_rules_test.yml')
    assert.equal(0, s, o .. e)
  end)

  it("computes a quantile as Prometheus does (the p99 promtool checks in rules_test.yml)", function()
    -- 10 waits up to 262143 ns, 90 more up to 524287 ns
    local b = { { le = 0.000262143, cum = 10 }, { le = 0.000524287, cum = 100 }, { le = math.huge, cum = 100 } }
    assert.near(0.000521374288888889, scrape.quantile(0.99, b), 1e-15)
    assert.equal(0.000524287, scrape.quantile(1, b))
    assert.is_nil(scrape.quantile(0.5, { { le = math.huge, cum = 0 } }))
  end)

  it('--replay: the figures between two recorded scrapes of a serve under syscall_loop', function()
    local fx = h.root .. '/tests/fixtures/runbooks/syscall_dashboard'
    local out, err, st = h.pm('syscall-dashboard --replay ' .. fx .. ' --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    local rec = util.json_decode(util.readfile(fx .. '/scrapes.json'))
    -- getppid's count, straight from the two expositions
    local function count(text)
      for _, s in ipairs((prom.parse(text))) do
        if s.name == 'perf_manual_syscall_latency_seconds_count' and s.labels.syscall == 'getppid' then
          return s.value
        end
      end
    end
    local calls = count(rec.second) - count(rec.first)
    assert.equal('getppid', r.syscalls[1].syscall)
    assert.equal(calls, r.syscalls[1].calls)
    assert.near(calls / rec.seconds, r.syscalls[1].calls_per_s, 0.1)
    assert.is_true(calls >= 60000, 'getppid calls ' .. calls)
    local text = h.pm('syscall-dashboard --replay ' .. fx .. ' --top 2')
    assert.matches('^syscalls of 127%.0%.0%.1:19464 over 3%.0 s %(11 syscalls called%):\n', text)
    assert.matches('\ngetppid +21465%.6 +0%.0037 +0%.0 +0%.2 us +0%.3 us\n', text)
  end)

  it('wants something to do, exit 2', function()
    local _, err, st = h.pm('syscall-dashboard')
    assert.equal(2, st)
    assert.matches('give %-%-output DIR, %-%-serve, %-%-from HOST:PORT or %-%-replay DIR', err)
    _, err, st = h.pm('syscall-dashboard --from 127.0.0.1:1 --interval 0.1')
    assert.equal(2, st)
    assert.matches('^perf_manual: syscall%-dashboard: cannot connect to 127%.0%.0%.1:1', err)
  end)
end)
