local cp = require('perf_manual.analyzers.changepoint')
package.path = require('perf_manual._host').root .. '/tests/?.lua;' .. package.path
local gen = require('changepoint_series')

local function indices(res)
  local out = {}
  for i, c in ipairs(res) do out[i] = c.index end
  return out
end

local function run(set)
  local tp, fp, fn = 0, 0, 0
  local false_in = {}
  for _, s in ipairs(set) do
    local a, b, c = gen.score(s.changes, indices(cp.detect(s.values)))
    tp, fp, fn = tp + a, fp + b, fn + c
    false_in[s.kind] = (false_in[s.kind] or 0) + b
  end
  return tp, fp, fn, false_in
end

describe('perf_manual.analyzers.changepoint Student t', function()
  -- two-sided critical values from printed t tables (p = 0.05 and 0.01)
  for _, c in ipairs({ { 2.228, 10, 0.05 }, { 2.571, 5, 0.05 }, { 4.032, 5, 0.01 }, { 2.042, 30, 0.05 },
    { 1.960, 1e7, 0.05 }, { 12.706, 1, 0.05 } }) do
    it(string.format('p(t = %g, df = %g) is %g', c[1], c[2], c[3]), function()
      assert.is_true(math.abs(cp.t_p(c[1], c[2]) - c[3]) < 2e-4 * 1 + c[3] * 1e-3)
    end)
  end
  it('is 1 at t = 0 and symmetric', function()
    assert.are.equal(1, cp.t_p(0, 7))
    assert.is_true(math.abs(cp.t_p(-2.5, 12) - cp.t_p(2.5, 12)) < 1e-15)
  end)
end)

describe('perf_manual.analyzers.changepoint Yuen test', function()
  it('ignores one wild value in a side (trimmed means)', function()
    local a = { 10, 11, 9, 10, 10, 11, 9, 10, 10, 10 }
    local b = { 10, 11, 9, 10, 10, 11, 9, 10, 500, 10 }
    local _, _, p = cp.yuen(cp.summary(a, 1, #a), cp.summary(b, 1, #b))
    assert.is_true(p > 0.5)
    assert.are.equal(10, cp.summary(b, 1, #b).median)
  end)
  it('finds a shift of both sides', function()
    local a = { 10, 11, 9, 10, 10, 11, 9, 10, 10, 10 }
    local b = { 14, 15, 13, 14, 14, 15, 13, 14, 14, 14 }
    local t, _, p = cp.yuen(cp.summary(a, 1, #a), cp.summary(b, 1, #b))
    assert.is_true(t > 0 and p < 1e-6)
  end)
  it('treats constant sides exactly', function()
    local s1, s2 = cp.summary({ 5, 5, 5, 5, 5 }, 1, 5), cp.summary({ 7, 7, 7, 7, 7 }, 1, 5)
    assert.are.equal(0, select(3, cp.yuen(s1, s2)))
    assert.are.equal(1, select(3, cp.yuen(s1, s1)))
  end)
end)

describe('perf_manual.analyzers.changepoint detect', function()
  it('places one clear step where it is, with its size', function()
    local u = gen.rng(7)
    local xs = {}
    for i = 1, 60 do xs[i] = (i > 35 and 120 or 100) + (u() - 0.5) * 4 end
    local res = cp.detect(xs)
    assert.are.equal(1, #res)
    assert.are.equal(36, res[1].index)
    assert.are.equal(35, res[1].before.n)
    assert.is_true(math.abs(res[1].change - 0.2) < 0.02)
    assert.is_true(res[1].p < 1e-10)
  end)

  it('finds a bump (up then back down) that no single split shows', function()
    local u = gen.rng(8)
    local xs = {}
    for i = 1, 120 do xs[i] = (i > 60 and i <= 75 and 106 or 100) + (u() - 0.5) * 3 end
    assert.are.same({ 61, 76 }, indices(cp.detect(xs)))
  end)

  it('is deterministic', function()
    local s = gen.set(3, 12)
    for _, x in ipairs(s) do assert.are.same(cp.detect(x.values), cp.detect(x.values)) end
  end)

  it('needs min_segment points on both sides: a step in the last points waits for more', function()
    local xs = {}
    for i = 1, 40 do xs[i] = 100 + (i % 3) end
    for _ = 1, 4 do xs[#xs + 1] = 150 end
    assert.are.same({}, cp.detect(xs))
    xs[#xs + 1] = 150
    local more = cp.detect(xs)
    assert.are.same({ 41 }, indices(more))
    assert.are.same({}, cp.detect(xs, { min_segment = 6 }))
  end)

  it('says nothing on series too short to split, and refuses a value that is not a number', function()
    assert.are.same({}, cp.detect({ 1, 2, 3 }))
    assert.are.same({}, cp.detect({}))
    assert.has_error(function() cp.detect({ 1, 'x', 3 }) end,
      '[perf_manual.analyzers.changepoint] value 2 is not a number')
    assert.has_error(function() cp.detect({ 1, 0 / 0 }) end)
  end)

  -- 600 generated series: 100 of each kind (noise, spikes, edge, steps,
  -- drift, mixed), seed 14
  local tp, fp, fn, false_in = run(gen.set(14, 600))
  local precision, recall = tp / (tp + fp), tp / (tp + fn)
  print(string.format('changepoint: seed 14, 600 series: precision %.3f recall %.3f (tp %d fp %d fn %d)',
    precision, recall, tp, fp, fn))
  it('finds the generated change points: precision and recall >= 0.95 over 600 series', function()
    assert.is_true(tp + fn > 300)
    assert.is_true(precision >= 0.95, 'precision ' .. precision)
    assert.is_true(recall >= 0.95, 'recall ' .. recall)
  end)
  it('raises no alarm on pure noise, on single spikes (also at the first and last point) or at the window edge',
  function()
    assert.are.equal(0, false_in.noise)
    assert.are.equal(0, false_in.spikes)
    assert.are.equal(0, false_in.edge)
  end)
  it('calls two or three wild values in a row no change, also at the window edges', function()
    for _, k in ipairs({ 2, 3 }) do
      for _, at in ipairs({ 1, 10, 20, 41 - k }) do
        local xs = {}
        for i = 1, 40 do xs[i] = 100 + ((i * 7) % 5) end
        for j = 0, k - 1 do xs[at + j] = 1e6 * (j + 1) end
        assert.are.same({}, cp.detect(xs), k .. ' wild values from ' .. at)
      end
    end
  end)
  it('calls a single spike of any size no change', function()
    for _, at in ipairs({ 1, 2, 20, 39, 40 }) do
      local xs = {}
      for i = 1, 40 do xs[i] = 100 + ((i * 7) % 5) end
      xs[at] = 1e6
      assert.are.same({}, cp.detect(xs), 'spike at ' .. at)
    end
  end)
end)
