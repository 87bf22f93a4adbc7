-- perf_manual.report.tracers: tracer results as text. The tracers' own specs
-- render their recorded results through it too; here: the quality line, the
-- percentiles the tables print, the request tracer, and unknown names.
local rt = require('perf_manual.report.tracers')
local hist = require('perf_manual.hist')
local util = require('perf_manual.util')

local function unhex(h) return (h:gsub('%x%x', function(x) return string.char(tonumber(x, 16)) end)) end

describe('perf_manual.report.tracers', function()
  it('prints measurement quality in one line, missing figures as missing', function()
    local line = rt.quality_line({ attach_path = 'raw_tp', events_seen = 10, events_lost = 0, events_missed = 2,
      bpf_run_time_ns = 5e6, bpf_cpu_pct = 0.5, bpf_ns_per_run = 120, bpf_stats_coverage = 0.1, self_cpu_pct = 1.25 })
    assert.equal('attach raw_tp, events 10, lost 0, unpaired 2, bpf cost 5.0ms (0.50% of a CPU, 120 ns/run, '
      .. 'sampled 10% of the time), tool cpu 1.25%', line)
    local missing = rt.quality_line({ attach_path = 'tp_btf', bpf_cost_note = 'not measured (stats off)',
      detached = 'over budget' })
    assert.equal('attach tp_btf, lost not measured, bpf cost not measured (stats off), DETACHED: over budget', missing)
  end)

  it('has a renderer for every tracer and refuses a name it does not know', function()
    local names = {}
    for _, t in ipairs(require('perf_manual.tracers').list()) do
      assert.is_nil(t.error, t.error)
      assert.is_nil(t.render, t.name .. ' still draws text itself')
      names[#names + 1] = t.name
    end
    table.sort(names)
    assert.same(names, rt.names())
    assert.has_error(function() rt.render('nope', {}) end, "report.tracers: no text renderer for tracer 'nope'")
  end)

  it('prints the io p99 the tracer computed by the one quantile rule', function()
    local io_t = require('perf_manual.tracers.io')
    local rec = assert(util.json_decode(test_helpers.fixture('bpfmaps/io.json')))
    local hs = {}
    for _, e in ipairs(rec.maps.hists) do hs[#hs + 1] = io_t.decode_hist(unhex(e.key), unhex(e.value)) end
    local rows, devices = io_t.aggregate(hs, 0.5, function() return 'vda' end)
    for _, list in ipairs({ rows, devices }) do
      for _, r in ipairs(list) do
        r.buckets, r.size_buckets = hist.log2_buckets(r.latency), hist.log2_buckets(r.size)
        r.p99_us = io_t.p_us(r.buckets, 0.99, r.max_ns)
      end
    end
    local r = rows[1]
    assert.equal(hist.quantile(r.buckets, 0.99, nil, hist.fitting_max(r.buckets, math.floor(r.max_ns / 1e3))), r.p99_us)
    local text = rt.render('io', { rows = rows, devices = devices })
    assert.matches('P99 %(us%)', text)
    assert.matches(string.format('%.1f', r.p99_us):gsub('%.', '%%.'), text)
  end)

  it('renders the request tracer\'s recorded nginx run: percentiles and log2 bars', function()
    local red = require('perf_manual.tracers.red')
    local percpu = {}
    for v in test_helpers.fixture('red/nginx_delay50.txt'):gmatch('red%.stats\t%d+\t(%x+)') do
      percpu[#percpu + 1] = unhex(v)
    end
    local res = red.aggregate(red.decode_stats(percpu), { live = 0, pending = 0 }, 1.0, 0)
    local text = rt.render('red', res)
    assert.matches('^requests %d+ %(%d+%.%d/s%)', text)
    assert.is_true(math.abs(res.latency.p50 - 0.050) < 0.002, 'p50 ' .. res.latency.p50) -- answers after 50 ms
    assert.matches('latency  p50 ' .. util.fmt_duration(res.latency.p50):gsub('%.', '%%.') .. '  p90', text)
    assert.matches('\n  ', text)                    -- the bars
    res.latency = nil
    assert.matches('latency  not measured', rt.render('red', res))
  end)
end)
