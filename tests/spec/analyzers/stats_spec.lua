local stats = require('perf_manual.analyzers.stats')

-- Reference values were computed independently with Python 3 (no scipy on
-- this machine): exact p-values by enumerating every way to split the pooled
-- values (itertools.combinations), normal p-values with the textbook
-- tie-corrected variance and math.erfc. The script is in the comment below.
--   U1 = sum over pairs of 1 if x > y, 0.5 if equal
--   exact: p = 2 * min(P(U <= u), P(U >= u)) over all C(n1+n2, n1) splits
--   normal: var = n1 n2 / 12 * ((N+1) - sum(t^3 - t) / (N (N-1))),
--           z = (|U1 - n1 n2 / 2| - 0.5) / sqrt(var), p = erfc(z / sqrt(2))
-- The first case is also the example in scipy's mannwhitneyu documentation
-- (U1 = 17, exact p = 0.1111).

local function gen(mult, mod, shift)
  local x = {}
  for i = 1, 40 do x[i] = (i * mult % mod) / 10 + shift end
  return x
end

-- normal samples from a seeded generator (Box-Muller)
local function normals(n, mu, seed)
  local rnd = stats.rng(seed)
  local x = {}
  for i = 1, n do
    local u1, u2 = rnd(1e9) / 1e9, rnd(1e9) / 1e9
    x[i] = mu + math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
  end
  return x
end

describe('perf_manual.analyzers.stats Mann-Whitney U', function()
  local cases = {
    { 'scipy docs example (exact)', { 19, 22, 16, 29, 24 }, { 20, 11, 17, 12 }, 17, 0.1111111111111111, 'exact',
      1e-12 },
    { 'small shifted samples (exact)', { 1.1, 2.3, 3.5, 4.2, 5.9, 6.1 }, { 3.3, 4.8, 7.2, 8.1, 9.4, 10.6, 11.0 }, 6,
      0.03496503496503497, 'exact', 1e-12 },
    { 'ties (normal, tie-corrected)', { 1, 2, 2, 3, 3, 3, 4, 5, 5, 6 }, { 3, 4, 4, 5, 6, 6, 7, 7, 8, 9, 9 }, 15.5,
      0.005625214779700698, 'normal', 1e-6 },
    { 'n=40, shift 1.5 (normal)', gen(37, 101, 0), gen(53, 97, 1.5), 649, 0.14753630493959655, 'normal', 1e-6 },
    { 'n=40, no shift (normal)', gen(37, 101, 0), gen(53, 97, 0), 888.5, 0.39706496807963104, 'normal', 1e-6 },
  }
  for _, c in ipairs(cases) do
    it('matches the reference for ' .. c[1], function()
      local r = assert(stats.mann_whitney(c[2], c[3]))
      assert.equal(c[4], r.u1)
      assert.equal(c[6], r.method)
      assert.is_true(math.abs(r.p - c[5]) <= c[7] * math.max(1, c[5]) , string.format('p %.12g vs %.12g', r.p, c[5]))
    end)
  end

  it('gives p = 1 when every value is the same', function()
    local r = stats.mann_whitney({ 5, 5, 5, 5 }, { 5, 5, 5 }, { method = 'normal' })
    assert.equal(1, r.p)
  end)

  it('rejects an exact test on tied data and empty samples', function()
    assert.same({ nil, 'exact p-value needs samples without ties' },
      { stats.mann_whitney({ 1, 2 }, { 2, 3 }, { method = 'exact' }) })
    assert.same({ nil, 'empty sample' }, { stats.mann_whitney({}, { 1 }) })
  end)

  it('flags about 5% of equal-distribution pairs as significant (its false-positive rate)', function()
    local hits = 0
    for s = 1, 200 do
      local r = stats.mann_whitney(normals(50, 0, s), normals(50, 0, 1000 + s))
      if r.p < 0.05 then hits = hits + 1 end
    end
    -- binomial(200, 0.05): mean 10, sd 3.1
    assert.is_true(hits >= 2 and hits <= 20, 'false positives: ' .. hits)
  end)

  it('finds a half-standard-deviation shift with 200 samples a side', function()
    for s = 1, 5 do
      local r = stats.mann_whitney(normals(200, 0, s), normals(200, 0.5, 500 + s))
      assert.is_true(r.p < 0.001, 'p ' .. r.p)
      assert.is_true(r.ps < 0.5)   -- after is higher
    end
  end)
end)

describe('perf_manual.analyzers.stats quantiles and bootstrap', function()
  it('interpolates quantiles like numpy (type 7)', function()
    -- numpy.percentile([1,2,3,4,10], [50, 90, 99]) = 3, 7.6, 9.76
    local x = { 4, 1, 10, 3, 2 }
    assert.equal(3, stats.quantile(x, 0.5))
    assert.is_true(math.abs(stats.quantile(x, 0.9) - 7.6) < 1e-12)
    assert.is_true(math.abs(stats.statistic(x, 'p99') - 9.76) < 1e-12)
    assert.equal(4, stats.statistic(x, 'mean'))
  end)

  it('gives the same interval for the same seed, and it contains the true shift', function()
    local a, b = normals(300, 10, 1), normals(300, 8, 2)
    local c1 = stats.bootstrap_change(a, b, { stat = 'median', seed = 42, iterations = 500 })
    local c2 = stats.bootstrap_change(a, b, { stat = 'median', seed = 42, iterations = 500 })
    assert.same(c1, c2)
    assert.is_true(c1.diff_lo < -2 + 0.3 and c1.diff_hi > -2 - 0.3, c1.diff_lo .. ' .. ' .. c1.diff_hi)
    assert.is_true(c1.diff_lo < c1.diff and c1.diff < c1.diff_hi)
    assert.is_true(c1.rel_hi < 0)
  end)

  it('ends the resampling when stop() says so, and says how many resamples it holds', function()
    local a, b = normals(50, 10, 1), normals(50, 8, 2)
    local calls = 0
    local c = stats.bootstrap_change(a, b, { seed = 1, iterations = 100000, stop = function()
      calls = calls + 1
      return calls >= 3
    end })
    assert.is_true(c.stopped)
    assert.is_true(c.iterations > 0 and c.iterations < 1000, tostring(c.iterations))
    assert.is_true(c.diff_lo <= c.diff_hi)
    local full = stats.bootstrap_change(a, b, { seed = 1, iterations = 300, stop = function() return false end })
    assert.is_nil(full.stopped)
    assert.equal(300, full.iterations)
  end)

  it('covers the true median change about 95% of the time', function()
    -- coverage check: 60 independent repeats, the true change is -20%
    local covered = 0
    for s = 1, 60 do
      local a, b = normals(120, 10, s * 3), normals(120, 8, s * 7 + 1)
      local ci = stats.bootstrap_change(a, b, { stat = 'median', seed = s, iterations = 400 })
      if ci.rel_lo <= -0.2 and ci.rel_hi >= -0.2 then covered = covered + 1 end
    end
    assert.is_true(covered >= 50, 'covered ' .. covered .. ' of 60')
  end)
end)

describe('perf_manual.analyzers.stats verdicts', function()
  it('says "no significant change" for noise', function()
    local r = stats.compare(normals(100, 5, 11), normals(100, 5, 12), { iterations = 300 })
    assert.equal('no significant change', r.verdict)
    assert.is_false(r.significant)
  end)

  it('states the direction, size and interval of a real change', function()
    local r = stats.compare(normals(100, 10, 11), normals(100, 8, 12), { iterations = 300 })
    assert.is_true(r.significant)
    assert.matches('^lower: median %-%d+%.%d%% %(95%% CI %-%d+%.%d%% %.%. %-%d+%.%d%%%)$', r.verdict)
  end)

end)
