--- Change points in a series of measurements (one value per run, in run
--- order): E-Divisive means, as MongoDB's and Apache Otava's detectors do it;
--- like Otava, a t-test instead of MongoDB's permutation test.
---
---   local cp = require('perf_manual.analyzers.changepoint')
---   for _, c in ipairs(cp.detect(values, { min_segment = 5 })) do
---     print(c.index, c.before.mean, c.after.mean, c.change, c.p)
---   end
---
--- How: a segment is split where the energy statistic (the divergence of the
--- two sides' distributions, computed from |x - y| over all pairs) is largest;
--- the split is kept when Yuen's test (Welch's t on 20%-trimmed means with
--- winsorized variances) says the two sides differ (p < p_max) and the shift
--- is at least `min_effect` times the noise; each side is then split the same
--- way. A last pass re-tests every kept point against its neighbouring
--- segments and drops the weakest insignificant one until all pass.
---
--- Deterministic: no permutation test, no random numbers. The guards against
--- the false alarms users of those detectors report:
---   * a change needs `min_segment` points on each side: the last few points
---     of a window (and the first few) never make one by themselves, even
---     when the trimmed test would let one odd point into a side;
---   * the test compares trimmed means and the effect is measured against a
---     median-based spread, so a single spike (or two in a segment) moves
---     neither;
---   * a shift smaller than the noise (`min_effect`) is not a change.
---
--- detect(values, opts) -> list of { index = first point after the change,
---   before = { n, mean (trimmed), median, spread }, after = {...},
---   change = after.mean / before.mean - 1 (nil when before.mean is 0),
---   p = Yuen's two-sided p, effect = |shift| / noise, t = , df = }
--- opts: min_segment (5), p_max (0.001), min_effect (2.0), trim (0.2).
local M = {}

M.DEFAULTS = { min_segment = 5, p_max = 0.001, min_effect = 2.0, trim = 0.2 }

-- Student's t ----------------------------------------------------------------

local function log_gamma(x)
  -- Lanczos (g = 7, n = 9): double precision over x > 0
  local c = { 0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
    -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
    1.5056327351493116e-7 }
  if x < 0.5 then return math.log(math.pi / math.abs(math.sin(math.pi * x))) - log_gamma(1 - x) end
  x = x - 1
  local a = c[1]
  local t = x + 7.5
  for i = 1, 8 do a = a + c[i + 1] / (x + i) end
  return 0.5 * math.log(2 * math.pi) + (x + 0.5) * math.log(t) - t + math.log(a)
end

-- continued fraction of the incomplete beta (modified Lentz)
local function beta_cf(a, b, x)
  local tiny = 1e-300
  local qab, qap, qam = a + b, a + 1, a - 1
  local c, d = 1, 1 - qab * x / qap
  if math.abs(d) < tiny then d = tiny end
  d = 1 / d
  local h = d
  for m = 1, 300 do
    local m2 = 2 * m
    local aa = m * (b - m) * x / ((qam + m2) * (a + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    h = h * d * c
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    local del = d * c
    h = h * del
    if math.abs(del - 1) < 1e-15 then break end
  end
  return h
end

--- The regularized incomplete beta function I_x(a, b).
function M.inc_beta(x, a, b)
  if x <= 0 then return 0 end
  if x >= 1 then return 1 end
  local lbt = log_gamma(a + b) - log_gamma(a) - log_gamma(b) + a * math.log(x) + b * math.log(1 - x)
  if x < (a + 1) / (a + b + 2) then return math.exp(lbt) * beta_cf(a, b, x) / a end
  return 1 - math.exp(lbt) * beta_cf(b, a, 1 - x) / b
end

--- Two-sided p-value of Student's t with df degrees of freedom.
function M.t_p(t, df)
  if t ~= t or df ~= df then return 1 end
  if t == math.huge or t == -math.huge then return 0 end
  return M.inc_beta(df / (df + t * t), df / 2, 0.5)
end

-- Robust summaries -------------------------------------------------------------

local function sorted_copy(xs, lo, hi)
  local s = {}
  for i = lo, hi do s[#s + 1] = xs[i] end
  table.sort(s)
  return s
end

local function median_sorted(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

--- Summary of xs[lo..hi]: n, trimmed mean, median, winsorized variance,
--- the trimmed count h, and spread (MAD scaled to a normal sd).
function M.summary(xs, lo, hi, trim)
  trim = trim or M.DEFAULTS.trim
  local s = sorted_copy(xs, lo, hi)
  local n = #s
  local g = math.floor(trim * n)
  local h = n - 2 * g
  local sum = 0
  for i = g + 1, n - g do sum = sum + s[i] end
  local tmean = sum / h
  -- winsorized: the g smallest become s[g+1], the g largest s[n-g]
  local wsum, w = 0, {}
  for i = 1, n do
    w[i] = s[math.min(math.max(i, g + 1), n - g)]
    wsum = wsum + w[i]
  end
  local wmean, wvar = wsum / n, 0
  for i = 1, n do wvar = wvar + (w[i] - wmean) ^ 2 end
  wvar = n > 1 and wvar / (n - 1) or 0
  local med = median_sorted(s)
  local dev = {}
  for i = 1, n do dev[i] = math.abs(s[i] - med) end
  table.sort(dev)
  return { n = n, mean = tmean, median = med, wvar = wvar, h = h, spread = 1.4826 * median_sorted(dev) }
end

--- Yuen's test of two summaries: t, df, two-sided p.
function M.yuen(a, b)
  local da = a.h > 1 and (a.n - 1) * a.wvar / (a.h * (a.h - 1)) or 0
  local db = b.h > 1 and (b.n - 1) * b.wvar / (b.h * (b.h - 1)) or 0
  local diff = b.mean - a.mean
  if da + db == 0 then
    if diff == 0 then return 0, 0, 1 end
    return diff > 0 and math.huge or -math.huge, 0, 0
  end
  local t = diff / math.sqrt(da + db)
  local den = (a.h > 1 and da * da / (a.h - 1) or 0) + (b.h > 1 and db * db / (b.h - 1) or 0)
  local df = den > 0 and (da + db) ^ 2 / den or 1
  return t, df, M.t_p(t, df)
end

-- The noise a shift is measured against: the spread of successive
-- differences over the whole tested range (a step moves one difference, a
-- spike two, a slow drift none), as a normal sd; the sides' winsorized sd
-- when most successive values are equal.
local function noise(xs, lo, hi, a, b)
  local d = {}
  for i = lo + 1, hi do d[#d + 1] = math.abs(xs[i] - xs[i - 1]) end
  table.sort(d)
  local s = #d > 0 and 1.4826 * median_sorted(d) / math.sqrt(2) or 0
  if s == 0 then s = math.max(math.sqrt(a.wvar), math.sqrt(b.wvar)) end
  return s
end

--- Tests the split of xs[lo..hi] before index k (k is the first point after):
--- the change-point record, and whether it passes the gates.
function M.test_split(xs, lo, k, hi, o)
  local a = M.summary(xs, lo, k - 1, o.trim)
  local b = M.summary(xs, k, hi, o.trim)
  local t, df, p = M.yuen(a, b)
  local s = noise(xs, lo, hi, a, b)
  local shift = math.abs(b.mean - a.mean)
  local effect = s > 0 and shift / s or (shift > 0 and math.huge or 0)
  local c = { index = k, before = a, after = b, p = p, t = t, df = df, effect = effect,
    change = a.mean ~= 0 and (b.mean / a.mean - 1) or nil }
  local ok = p < o.p_max and effect >= o.min_effect
  -- a side of exactly min_segment points whose point next to the cut looks
  -- like the other side holds a shorter change: 4 high points at the end of
  -- a window are not 5
  local function near(x, own, other) return math.abs(x - own.mean) <= math.abs(x - other.mean) end
  if ok and b.n <= o.min_segment and not near(xs[k], b, a) then ok = false end
  if ok and a.n <= o.min_segment and not near(xs[k - 1], a, b) then ok = false end
  return c, ok
end

-- Energy split -----------------------------------------------------------------

--- The split of xs[lo..hi] with the largest energy statistic, each side at
--- least m points long: k (first point of the right side) and the statistic,
--- or nil when the segment is too short. O(n^2).
function M.best_split(xs, lo, hi, m)
  local n = hi - lo + 1
  if n < 2 * m then return nil end
  -- WL, WR: sums of |xi - xj| over ordered pairs within each side; B: across
  local wr = 0
  for i = lo, hi do
    local xi = xs[i]
    for j = i + 1, hi do wr = wr + math.abs(xi - xs[j]) end
  end
  wr = 2 * wr
  local wl, b = 0, 0
  local best_k, best_q
  for p = lo, hi - m do
    -- point p moves from the right side to the left one
    local xp, a, r = xs[p], 0, 0
    for i = lo, p - 1 do a = a + math.abs(xp - xs[i]) end
    for j = p + 1, hi do r = r + math.abs(xp - xs[j]) end
    wl = wl + 2 * a
    wr = wr - 2 * r
    b = b - a + r
    local nl, nr = p - lo + 1, hi - p
    if nl >= m then
      local e = 2 * b / (nl * nr) - wl / (nl * nl) - wr / (nr * nr)
      local q = nl * nr / (nl + nr) * e
      if not best_q or q > best_q then best_k, best_q = p + 1, q end
    end
  end
  return best_k, best_q
end

local function options(opts)
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  if type(o.min_segment) ~= 'number' or o.min_segment < 2 then
    error('[perf_manual.analyzers.changepoint] min_segment must be a number >= 2', 3)
  end
  return o
end

--- The change points of a series; see the top of the file.
function M.detect(xs, opts)
  local o = options(opts)
  local n = #xs
  for i = 1, n do
    if type(xs[i]) ~= 'number' or xs[i] ~= xs[i] then
      error('[perf_manual.analyzers.changepoint] value ' .. i .. ' is not a number', 2)
    end
  end
  local m = o.min_segment
  -- divisive: every segment is split at its best split down to the
  -- shortest length; a split with no significance of its own is still a
  -- candidate, because two changes that cancel (a bump: up, then down)
  -- show only once the segment is cut between them
  local cuts, todo = {}, { { 1, n } }
  while #todo > 0 do
    local seg = table.remove(todo)
    local lo, hi = seg[1], seg[2]
    local k = M.best_split(xs, lo, hi, m)
    if k then
      cuts[#cuts + 1] = k
      todo[#todo + 1] = { lo, k - 1 }
      todo[#todo + 1] = { k, hi }
    end
  end
  table.sort(cuts)
  -- re-test each cut against its neighbours' segments; drop the weakest
  -- failing one and repeat (a removal changes its neighbours' segments)
  while true do
    local res, worst, worst_p = {}, nil, -1
    for i, k in ipairs(cuts) do
      local lo = i > 1 and cuts[i - 1] or 1
      local hi = i < #cuts and cuts[i + 1] - 1 or n
      local c, ok = M.test_split(xs, lo, k, hi, o)
      res[i] = c
      if not ok and c.p > worst_p then worst, worst_p = i, c.p end
    end
    if not worst then return res end
    table.remove(cuts, worst)
  end
end

return M
