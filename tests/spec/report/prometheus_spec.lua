-- The exposition: text format and OpenMetrics, histogram bounds that are
-- the kernel's log2 slots, and the cardinality guard.
local prom = require('perf_manual.report.prometheus')
local hist = require('perf_manual.hist')

local function slots_of(list)
  local s = {}
  for i = 1, hist.LOG2_SLOTS do s[i] = list[i] or 0 end
  return s
end

local function by_name(samples, name)
  local out = {}
  for _, s in ipairs(samples) do if s.name == name then out[#out + 1] = s end end
  return out
end

local function have_promtool()
  return os.execute('command -v promtool >/dev/null 2>&1') == 0
end

describe('report.prometheus', function()
  it('spells numbers as the formats read them', function()
    assert.equal('42', prom.number(42))
    assert.equal('-3', prom.number(-3))
    assert.equal('0.1', prom.number(0.1))
    assert.equal('NaN', prom.number(0 / 0))
    assert.equal('+Inf', prom.number(math.huge))
    assert.equal(1 / 3, tonumber(prom.number(1 / 3)))
  end)

  it('gives a histogram the le bounds of the kernel log2 slots, cumulative, with +Inf, _sum and _count', function()
    -- values 0..1 in slot 0, 2^s .. 2^(s+1)-1 in slot s; the last slot is open
    local raw = { 3, 0, 5, 7 }
    raw[32] = 2
    local slots = slots_of(raw)
    local fam = { name = 'x_seconds', type = 'histogram', help = 'h', scale = 1e-9,
      samples = { { labels = {}, slots = slots, sum = 12345, count = 17 } } }
    local text = prom.render({ fam })
    local samples = assert(prom.parse(text))
    local buckets = by_name(samples, 'x_seconds_bucket')
    assert.equal(32, #buckets) -- 31 closed slots and +Inf
    local cum = 0
    for s = 0, 30 do
      local b = buckets[s + 1]
      local le_ns = tonumber(b.labels.le) * 1e9
      local hi = 2 ^ (s + 1) - 1
      assert.is_true(math.abs(le_ns - hi) < 1e-6 * hi, 'slot ' .. s .. ': le ' .. b.labels.le)
      -- exactly the kernel's slot: its upper end is in slot s, one more is in s+1
      assert.equal(s, hist.log2_slot(math.floor(le_ns + 0.5)))
      assert.equal(s + 1, hist.log2_slot(math.floor(le_ns + 0.5) + 1))
      cum = cum + slots[s + 1]
      assert.equal(cum, b.value)
    end
    assert.equal('+Inf', buckets[32].labels.le)
    assert.equal(17, buckets[32].value)
    assert.equal(17, by_name(samples, 'x_seconds_count')[1].value)
    assert.is_true(math.abs(by_name(samples, 'x_seconds_sum')[1].value - 12345e-9) < 1e-15)
    -- the bound prints as the decimal it is, not a float product's tail
    assert.truthy(text:find('le="1.023e-06"', 1, true))
  end)

  it('writes OpenMetrics when asked: counter family without _total, units, float bounds, # EOF', function()
    assert.is_true(prom.wants_openmetrics('application/openmetrics-text; version=1.0.0,text/plain;q=0.5'))
    assert.is_false(prom.wants_openmetrics('text/plain'))
    local fams = {
      { name = 'a_total', type = 'counter', help = 'c', samples = { { labels = {}, value = 5 } } },
      { name = 'b_seconds', type = 'histogram', help = 'h', unit = 'seconds', samples = {
        { labels = {}, slots = slots_of({ 1, 1 }) } } },
    }
    local text = prom.render(fams, { openmetrics = true })
    assert.truthy(text:find('# TYPE a counter\n', 1, true))
    assert.truthy(text:find('\na_total 5\n', 1, true))
    assert.truthy(text:find('# UNIT b_seconds seconds\n', 1, true))
    assert.truthy(text:find('b_seconds_bucket{le="1.0"} 1\n', 1, true))
    assert.equal('# EOF\n', text:sub(-6))
    local plain = prom.render(fams)
    assert.truthy(plain:find('# TYPE a_total counter\n', 1, true))
    assert.falsy(plain:find('# EOF', 1, true))
  end)

  it('escapes label values and help text', function()
    local text = prom.render({ { name = 'g', type = 'gauge', help = 'a\\b\nc', labels = { 'l' },
      samples = { { labels = { l = 'say "hi"\\\n' }, value = 1 } } } })
    assert.truthy(text:find('# HELP g a\\\\b\\nc\n', 1, true))
    assert.truthy(text:find('g{l="say \\"hi\\"\\\\\\n"} 1', 1, true))
    local back = assert(prom.parse(text))
    assert.equal('say "hi"\\\n', back[1].labels.l)
  end)

  describe('cardinality guard', function()
    local function fam(values)
      local samples = {}
      for name, v in pairs(values) do
        samples[#samples + 1] = { labels = { syscall = name }, slots = slots_of({ 0, v }), count = v }
      end
      return { name = 'sc_seconds', type = 'histogram', labels = { 'syscall' }, samples = samples }
    end

    it('keeps the top K values per label, folds the rest into "other" and counts them', function()
      local values = {}
      for i = 1, 15 do values['s' .. i] = i * 10 end
      local state = {}
      local text, folded = prom.render({ fam(values) }, { top_k = 10, state = state })
      local samples = assert(prom.parse(text))
      local counts = {}
      for _, s in ipairs(by_name(samples, 'sc_seconds_count')) do counts[s.labels.syscall] = s.value end
      for i = 6, 15 do assert.equal(i * 10, counts['s' .. i]) end
      for i = 1, 5 do assert.is_nil(counts['s' .. i]) end
      assert.equal(10 + 20 + 30 + 40 + 50, counts.other)
      assert.equal(5, folded.sc_seconds)
      local f = by_name(samples, 'perf_manual_folded_series_total')
      assert.equal(1, #f)
      assert.equal('sc_seconds', f[1].labels.metric)
      assert.equal(5, f[1].value)
      -- nothing is lost: the series add up to every observation
      local total = 0
      for _, v in pairs(counts) do total = total + v end
      assert.equal(1200, total)
    end)

    it('is sticky: a value kept stays kept, a newcomer past K joins "other", so counters never go back', function()
      local state = {}
      local values = {}
      for i = 1, 12 do values['s' .. i] = i end
      prom.render({ fam(values) }, { top_k = 10, state = state })
      -- s1 grows past everyone: it was folded, it stays folded
      values.s1 = 1000
      values.s13 = 500
      local samples = assert(prom.parse((prom.render({ fam(values) }, { top_k = 10, state = state }))))
      local counts = {}
      for _, s in ipairs(by_name(samples, 'sc_seconds_count')) do counts[s.labels.syscall] = s.value end
      assert.is_nil(counts.s1)
      assert.is_nil(counts.s13)
      assert.equal(1000 + 2 + 500, counts.other)
      assert.equal(3, by_name(samples, 'perf_manual_folded_series_total')[1].value)
    end)

    it('shares the kept values between families with one guard_key, and folds gauges by max', function()
      local state = {}
      local lat = fam({ a = 100, b = 50, c = 1 })
      lat.guard_key = 'k'
      local errs = { name = 'e_total', type = 'counter', labels = { 'syscall' }, guard_key = 'k',
        samples = { { labels = { syscall = 'c' }, value = 99 }, { labels = { syscall = 'a' }, value = 1 },
          { labels = { syscall = 'b' }, value = 2 } } }
      local g = { name = 'g', type = 'gauge', labels = { 'disk' }, samples = {
        { labels = { disk = 'x' }, value = 90 }, { labels = { disk = 'y' }, value = 20 },
        { labels = { disk = 'z' }, value = 30 }, { labels = { disk = 'w' }, value = 10 } } }
      local samples = assert(prom.parse((prom.render({ lat, errs, g }, { top_k = 2, state = state }))))
      local e = {}
      for _, s in ipairs(by_name(samples, 'e_total')) do e[s.labels.syscall] = s.value end
      assert.same({ a = 1, b = 2, other = 99 }, e)
      local gv = {}
      for _, s in ipairs(by_name(samples, 'g')) do gv[s.labels.disk] = s.value end
      -- x and z kept; y and w are levels: "other" is the larger, not the sum
      assert.same({ x = 90, z = 30, other = 20 }, gv)
    end)
  end)

  it('passes promtool check metrics', function()
    if not have_promtool() then pending('skipped: promtool is not installed') return end
    local raw = { 1, 2, 3 }
    local text = prom.render({
      { name = 'pm_level', type = 'gauge', help = 'g', labels = { 'r' },
        samples = { { labels = { r = 'cpu' }, value = 1.5 } } },
      { name = 'pm_events_total', type = 'counter', help = 'c', samples = { { labels = {}, value = 3 } } },
      { name = 'pm_latency_seconds', type = 'histogram', help = 'h', scale = 1e-9,
        samples = { { labels = {}, slots = slots_of(raw), sum = 10 } } },
    })
    local path = os.tmpname()
    local f = assert(io.open(path, 'w')); f:write(text); f:close()
    local _, err, st = test_helpers.sh('promtool check metrics < ' .. path)
    os.remove(path)
    assert.equal(0, st, err)
  end)
end)
