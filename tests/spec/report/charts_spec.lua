local charts = require('perf_manual.report.charts')
local lxp = require('lxp')

-- Parses SVG text as XML; returns the element counts and all text content.
local function parse(svg)
  local counts, texts = {}, {}
  local p = lxp.new({
    StartElement = function(_, name) counts[name] = (counts[name] or 0) + 1 end,
    CharacterData = function(_, s) texts[#texts + 1] = s end,
  })
  local ok, err = p:parse(svg)
  if ok then ok, err = p:parse() end
  p:close()
  assert(ok, 'SVG is not well-formed XML: ' .. tostring(err))
  return counts, table.concat(texts, '\n')
end

local HOSTILE = '<script>alert("x")</script> & \'q\' \1'

describe('perf_manual.report.charts', function()
  it('draws a time series as valid SVG with one labelled line per series', function()
    local a, b = {}, {}
    for t = 0, 59 do a[#a + 1] = { t, 50 + 40 * math.sin(t / 5) }; b[#b + 1] = { t, t % 10 } end
    local svg = charts.timeseries { title = 'CPU busy', unit = '%', ymax = 100,
      series = { { name = 'cpu.busy_pct', points = a }, { name = 'cpu.iowait_pct', points = b } } }
    local counts, text = parse(svg)
    assert.equal(2, counts.polyline)
    assert.matches('CPU busy %(%%%)', text)
    -- each line carries its name and last value at its end: no legend to hunt
    assert.matches('cpu.busy_pct [%d.]+%%', text)
    assert.matches('cpu.iowait_pct 9%%', text)
  end)

  it('breaks the line at missing values instead of drawing 0', function()
    local svg = charts.timeseries { title = 't', series = { { name = 's',
      points = { { 0, 1 }, { 1, 2 }, { 2, nil }, { 3, 2 }, { 4, 3 } } } } }
    assert.equal(2, parse(svg).polyline)
    local _, text = parse(charts.timeseries { title = 'nothing', series = {} })
    assert.matches('not measured', text)
  end)

  it('keeps a one-sample spike when an hour of samples is squeezed into the width', function()
    local pts = {}
    for t = 0, 3599 do pts[#pts + 1] = { t, t == 1800 and 97 or 3 } end
    local svg = charts.timeseries { title = 'spike', ymax = 100, series = { { name = 's', points = pts } },
      width = 600 }
    local ys = {}
    for y in svg:match('points="([^"]+)"'):gmatch(',([%d.]+)') do ys[#ys + 1] = tonumber(y) end
    assert.is_true(#ys < 3600)
    table.sort(ys)
    -- the highest point (smallest y) is the spike's 97, near the top of the plot
    assert.is_true(ys[1] < 40, 'top y ' .. ys[1])
  end)

  it('escapes every label (titles, series names, markers)', function()
    local svg = charts.timeseries { title = HOSTILE, series = { { name = HOSTILE, points = { { 0, 1 }, { 1, 2 } } } },
      markers = { { t = 0.5, label = HOSTILE } } }
    local counts, text = parse(svg)
    assert.is_nil(counts.script)
    assert.matches('<script>alert%("x"%)</script> & \'q\'', text)   -- shown as text
    assert.is_nil(svg:find('<script', 1, true))
    local h = charts.histogram { title = HOSTILE, buckets = { { 0.001, 0.002, 5 } } }
    assert.is_nil(parse(h).script)
    local m = charts.heatmap { title = HOSTILE, columns = { { t = 0, counts = { [10] = 3 } } } }
    assert.is_nil(parse(m).script)
  end)

  it('draws a latency histogram with percentile markers', function()
    local buckets = {}
    for i = 0, 9 do buckets[#buckets + 1] = { 0.001 * 2 ^ i, 0.001 * 2 ^ (i + 1), 100 - i * 9 } end
    local counts, text = parse(charts.histogram { title = 'Latency', buckets = buckets,
      percentiles = { p50 = 0.004, p99 = 0.4 } })
    assert.is_true(counts.rect >= 11)
    assert.matches('p50 4%.0ms', text)
    assert.matches('p99 400%.0ms', text)
  end)

  it('draws a heat map cell per non-empty (second, bucket) with its count', function()
    local cols = {}
    for t = 0, 9 do cols[#cols + 1] = { t = t, counts = { [16] = 100, [17] = t } } end
    local counts, text = parse(charts.heatmap { title = 'Latency over time', columns = cols })
    assert.equal(1 + 10 + 9, counts.rect)   -- background + bucket 16 every second + bucket 17 from t=1
    assert.matches('max 100 per cell', text)
  end)

  it('prints sparklines and log2 bars for the terminal', function()
    assert.equal('▁▂▃▄▅▆▇█', charts.sparkline({ 0, 1, 2, 3, 4, 5, 6, 7 }))
    assert.equal('▁ █', charts.sparkline({ 0, nil, 10 }))
    -- 1 ms falls in the 512us..1ms slot, 4.5 ms in 4..8ms: two empty slots between
    local lines = charts.log2_bars({ { 0.001, 0.0011, 10 }, { 0.0045, 0.005, 5 } }, 10)
    assert.equal(4, #lines)
    assert.matches('^ *512%.0us %.%. 1%.0ms +|##########| 10$', lines[1])
    assert.matches('|          | 0$', lines[2])
    assert.matches('|          | 0$', lines[3])
    assert.matches('^ *4%.1ms %.%. 8%.2ms +|#####     | 5$', lines[4])
  end)
end)
