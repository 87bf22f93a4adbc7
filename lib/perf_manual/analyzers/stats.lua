--- Before/after statistics: is a change real or noise?
---
--- * Mann-Whitney U (two-sided) for two samples of a metric: exact p-value
---   for small samples without ties, otherwise the normal approximation with
---   tie correction and continuity correction.
--- * Bootstrap confidence intervals (percentile method, seeded, so the same
---   data always gives the same interval) for the change of the median, p99
---   or mean.
--- * `compare` puts both together into one verdict per metric, and
---   `check_expectation` tells whether a stated effect ("p99 -20%") was met.
local M = {}

-- Basics --------------------------------------------------------------------

local function copy_sorted(x)
  local s = {}
  for i = 1, #x do s[i] = x[i] end
  table.sort(s)
  return s
end

--- Quantile of a sorted array, linear interpolation between order
--- statistics (the "type 7" definition used by R and numpy).
function M.quantile_sorted(s, q)
  local n = #s
  if n == 0 then return nil end
  if n == 1 then return s[1] end
  local h = (n - 1) * q + 1
  local lo = math.floor(h)
  if lo >= n then return s[n] end
  return s[lo] + (h - lo) * (s[lo + 1] - s[lo])
end

function M.quantile(x, q) return M.quantile_sorted(copy_sorted(x), q) end
function M.median(x) return M.quantile(x, 0.5) end

function M.mean(x)
  if #x == 0 then return nil end
  local s = 0
  for i = 1, #x do s = s + x[i] end
  return s / #x
end

function M.stddev(x)
  local n = #x
  if n < 2 then return nil end
  local m = M.mean(x)
  local s = 0
  for i = 1, n do s = s + (x[i] - m) ^ 2 end
  return math.sqrt(s / (n - 1))
end

--- Complementary error function, W. J. Cody's rational approximations as
--- tabulated in Numerical Recipes' erfcc (relative error < 1.2e-7).
function M.erfc(x)
  local z = math.abs(x)
  local t = 1 / (1 + 0.5 * z)
  local r = t * math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))))
  if x >= 0 then return r end
  return 2 - r
end

--- Standard normal upper tail P(Z > z).
function M.norm_sf(z) return 0.5 * M.erfc(z / math.sqrt(2)) end

-- Mann-Whitney U ------------------------------------------------------------

-- Ranks of the pooled samples (average ranks for ties); returns the rank
-- sum of `a` and the tie correction term sum(t^3 - t).
local function rank_sum(a, b)
  local pooled = {}
  for i = 1, #a do pooled[#pooled + 1] = { a[i], 1 } end
  for i = 1, #b do pooled[#pooled + 1] = { b[i], 2 } end
  table.sort(pooled, function(x, y) return x[1] < y[1] end)
  local r1, ties, i, n = 0, 0, 1, #pooled
  while i <= n do
    local j = i
    while j < n and pooled[j + 1][1] == pooled[i][1] do j = j + 1 end
    local avg = (i + j) / 2
    local t = j - i + 1
    if t > 1 then ties = ties + t ^ 3 - t end
    for k = i, j do if pooled[k][2] == 1 then r1 = r1 + avg end end
    i = j + 1
  end
  return r1, ties
end

-- Exact two-sided p-value of U for sizes m, n without ties: counts the
-- arrangements giving each U by the recurrence f(m,n,u) = f(m-1,n,u-n) + f(m,n-1,u).
local function exact_p(u, m, n)
  -- dp[j][k]: number of arrangements of i a's and j b's with U = k, for the current i
  local maxu = m * n
  local prev = {}
  for j = 0, n do
    prev[j] = {}
    for k = 0, maxu do prev[j][k] = 0 end
    prev[j][0] = 1                           -- zero a's: U = 0
  end
  for _ = 1, m do
    local cur = {}
    for j = 0, n do
      cur[j] = {}
      for k = 0, maxu do
        -- the largest element is an a (it beats all j b's) or a b
        local v = (k - j >= 0) and prev[j][k - j] or 0
        if j > 0 then v = v + cur[j - 1][k] end
        cur[j][k] = v
      end
    end
    prev = cur
  end
  local dist = prev[n]
  local total = 0
  for k = 0, maxu do total = total + dist[k] end
  -- two-sided: twice the smaller tail, capped at 1
  local lo, hi = 0, 0
  for k = 0, maxu do
    if k <= u then lo = lo + dist[k] end
    if k >= u then hi = hi + dist[k] end
  end
  return math.min(1, 2 * math.min(lo, hi) / total)
end

M.EXACT_MAX = 20   -- exact p-values when both samples are at most this size

--- Two-sided Mann-Whitney U test of a against b.
--- Returns {u1, u2, n1, n2, z, p, method, ps} where u1 counts pairs with
--- a > b (ties half) and ps = u1/(n1*n2) is the probability that a value
--- from a exceeds one from b (0.5: no shift).
function M.mann_whitney(a, b, opts)
  opts = opts or {}
  local n1, n2 = #a, #b
  if n1 == 0 or n2 == 0 then return nil, 'empty sample' end
  local r1, ties = rank_sum(a, b)
  local u1 = r1 - n1 * (n1 + 1) / 2
  local u2 = n1 * n2 - u1
  local res = { u1 = u1, u2 = u2, n1 = n1, n2 = n2, ps = u1 / (n1 * n2) }
  local method = opts.method
  if not method then
    method = (ties == 0 and n1 <= M.EXACT_MAX and n2 <= M.EXACT_MAX) and 'exact' or 'normal'
  end
  if method == 'exact' then
    if ties ~= 0 then return nil, 'exact p-value needs samples without ties' end
    res.p = exact_p(math.min(u1, u2), n1, n2)
  else
    local N = n1 + n2
    local mu = n1 * n2 / 2
    local var = n1 * n2 / 12 * ((N + 1) - ties / (N * (N - 1)))
    if var <= 0 then
      res.z, res.p = 0, 1                      -- every value equal: no evidence of a shift
    else
      local d = math.abs(u1 - mu) - 0.5        -- continuity correction
      if d < 0 then d = 0 end
      res.z = (u1 > mu and 1 or -1) * d / math.sqrt(var)
      res.p = math.min(1, 2 * M.norm_sf(math.abs(res.z)))
    end
  end
  res.method = method
  return res
end

-- Seeded bootstrap -------------------------------------------------------------

local bit = require('bit')
-- LuaJIT's preallocating constructor; a plain table elsewhere
local table_new = (function()
  local ok, tn = pcall(require, 'table.new')
  return ok and tn or function() return {} end
end)()

--- A small seeded generator (xorshift32): the same seed gives the same
--- intervals on every machine; math.random's state is left alone.
function M.rng(seed)
  local x = bit.tobit(seed or 2463534242)
  if x == 0 then x = 2463534242 end
  return function(n)
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 17))
    x = bit.bxor(x, bit.lshift(x, 5))
    local u = (x % 4294967296) / 4294967296
    return math.floor(u * n) + 1
  end
end

-- k-th smallest of x[1..n] (in place, Hoare quickselect): O(n) per resample.
local function select_k(x, n, k)
  local lo, hi = 1, n
  while lo < hi do
    local pivot = x[math.floor((lo + hi) / 2)]
    local i, j = lo, hi
    while i <= j do
      while x[i] < pivot do i = i + 1 end
      while x[j] > pivot do j = j - 1 end
      if i <= j then x[i], x[j] = x[j], x[i]; i = i + 1; j = j - 1 end
    end
    if k <= j then hi = j elseif k >= i then lo = i else return x[k] end
  end
  return x[k]
end

-- A statistic on a scratch array of n values (reordered freely).
local function stat_fn(name)
  if name == 'mean' then
    return function(x, n) local s = 0; for i = 1, n do s = s + x[i] end; return s / n end
  end
  local q = name == 'median' and 0.5 or tonumber((name:match('^p([%d.]+)$'))) / 100
  if not q then error('[perf_manual.analyzers.stats] unknown statistic: ' .. tostring(name), 3) end
  return function(x, n)
    if n == 1 then return x[1] end
    local h = (n - 1) * q + 1
    local lo = math.floor(h)
    local a = select_k(x, n, lo)
    if lo >= n then return a end
    -- after selecting lo, the (lo+1)-th smallest is the minimum of the upper part
    local b = math.huge
    for i = lo + 1, n do if x[i] < b then b = x[i] end end
    return a + (h - lo) * (b - a)
  end
end
M.stat_fn = stat_fn

--- Value of a named statistic ('median', 'mean', 'p99', 'p99.9') on x.
function M.statistic(x, name)
  local s = {}
  for i = 1, #x do s[i] = x[i] end
  return stat_fn(name)(s, #s)
end

--- Bootstrap percentile CI of the relative change stat(b)/stat(a) - 1
--- (and the absolute difference). opts: stat ('median'), iterations (2000),
--- level (0.95), seed, stop (a function: true ends the resampling early; the
--- result then says stopped = true and how many resamples it holds).
function M.bootstrap_change(a, b, opts)
  opts = opts or {}
  local f = stat_fn(opts.stat or 'median')
  local iters = opts.iterations or 2000
  local level = opts.level or 0.95
  local rnd = M.rng(opts.seed or 20260101)
  local stop = opts.stop
  local na, nb = #a, #b
  if na == 0 or nb == 0 then return nil, 'empty sample' end
  -- every array sized once: the loop below allocates nothing
  local sa, sb = table_new(na, 0), table_new(nb, 0)
  local rel, diff = table_new(iters, 0), table_new(iters, 0)
  local rel_defined = true   -- a relative change from 0 has no meaning
  local done, stopped = 0, false
  for it = 1, iters do
    if stop and it % 64 == 0 and stop() then stopped = true; break end
    for i = 1, na do sa[i] = a[rnd(na)] end
    for i = 1, nb do sb[i] = b[rnd(nb)] end
    local va, vb = f(sa, na), f(sb, nb)
    diff[it] = vb - va
    if va == 0 then rel_defined = false; rel[it] = 0 else rel[it] = vb / va - 1 end
    done = it
  end
  iters = done
  table.sort(rel)
  table.sort(diff)
  local alpha = (1 - level) / 2
  local pa, pb = M.statistic(a, opts.stat or 'median'), M.statistic(b, opts.stat or 'median')
  local r = {
    stat = opts.stat or 'median', before = pa, after = pb,
    diff = pb - pa, rel = pa ~= 0 and (pb / pa - 1) or nil,
    diff_lo = M.quantile_sorted(diff, alpha), diff_hi = M.quantile_sorted(diff, 1 - alpha),
    level = level, iterations = iters, stopped = stopped or nil,
  }
  if rel_defined and r.rel then
    r.rel_lo, r.rel_hi = M.quantile_sorted(rel, alpha), M.quantile_sorted(rel, 1 - alpha)
  end
  return r
end

-- Verdicts ------------------------------------------------------------------

M.ALPHA = 0.05
M.BOOT_MAX = 1000

--- At most n values of x, evenly spaced over the sorted order (keeps the
--- shape of the distribution).
function M.thin(x, n)
  if #x <= n then return x end
  local s = copy_sorted(x)
  local out = {}
  for i = 1, n do out[i] = s[math.floor((i - 0.5) * #s / n) + 1] end
  return out
end

--- Compares two samples of one metric. Returns
--- {n_before, n_after, median/p99 before and after, test = mann_whitney,
---  ci = {median = bootstrap, p99 = bootstrap}, significant, verdict}.
--- Needs at least 2 values on each side.
function M.compare(a, b, opts)
  opts = opts or {}
  if #a < 2 or #b < 2 then
    return { n_before = #a, n_after = #b, verdict = 'not enough samples (need 2 on each side)' }
  end
  local mw = M.mann_whitney(a, b)
  -- the bootstrap resamples at most BOOT_MAX values a side (evenly thinned):
  -- an hour of 1 s samples stays quick, and the test above used every value
  local ta, tb = M.thin(a, M.BOOT_MAX), M.thin(b, M.BOOT_MAX)
  local bo = { seed = opts.seed, iterations = opts.iterations, stop = opts.stop }
  local ci = {}
  -- intervals cost resamples: the median always, others when asked
  for _, st in ipairs(opts.stats or { 'median' }) do
    bo.stat = st
    ci[st] = M.bootstrap_change(ta, tb, bo)
    -- the point estimates come from all values
    ci[st].before, ci[st].after = M.statistic(a, st), M.statistic(b, st)
    local pa, pb = ci[st].before, ci[st].after
    ci[st].diff, ci[st].rel = pb - pa, pa ~= 0 and (pb / pa - 1) or nil
    if not ci[st].rel then ci[st].rel_lo, ci[st].rel_hi = nil, nil end
  end
  local alpha = opts.alpha or M.ALPHA
  local m = ci.median
  local significant = mw.p < alpha
  local verdict
  if not significant then
    verdict = 'no significant change'
  else
    local dir = mw.ps < 0.5 and 'higher' or 'lower'   -- ps < 0.5: after tends to exceed before
    if m.rel and m.rel_lo then
      verdict = string.format('%s: median %+.1f%% (%d%% CI %+.1f%% .. %+.1f%%)', dir, m.rel * 100,
        math.floor(m.level * 100 + 0.5), m.rel_lo * 100, m.rel_hi * 100)
    else
      verdict = dir
    end
  end
  return {
    n_before = #a, n_after = #b, test = mw, ci = ci, significant = significant,
    p = mw.p, verdict = verdict,
  }
end

--- Parses an expectation: "p99 -20%", "median +5%", "latency p99 -20%",
--- "mean -10%". Returns {metric=?, stat=, change=} or nil, err.
function M.parse_expectation(text)
  if type(text) ~= 'string' then return nil, 'empty expectation' end
  local words = {}
  for w in text:gmatch('%S+') do words[#words + 1] = w end
  if #words < 2 or #words > 3 then return nil, "expected '<statistic> <+/-N%>' like 'p99 -20%'" end
  local pct = words[#words]:match('^([+-]%d+%.?%d*)%%$')
  if not pct then return nil, "the change must be signed with a %, like -20% or +5%" end
  local stat = words[#words - 1]
  if stat == 'p50' then stat = 'median' end
  if not (stat == 'median' or stat == 'mean' or stat:match('^p%d+%.?%d*$')) then
    return nil, "unknown statistic '" .. stat .. "' (median, mean, p90, p99, p99.9 ...)"
  end
  -- a percentile lies in (0, 100]: p101 or p0 is a typo, not a statistic
  local q = tonumber(stat:match('^p(.*)$'))
  if q and (q <= 0 or q > 100) then
    return nil, "'" .. stat .. "' is not a percentile (above p0, at most p100)"
  end
  -- a measure that cannot go below 0 cannot fall by more than 100%
  if tonumber(pct) < -100 then return nil, 'a change below -100% cannot happen' end
  return { metric = #words == 3 and words[1] or nil, stat = stat, change = tonumber(pct) / 100, text = text }
end

--- Whether a measured change meets the expectation. `ci` is a
--- bootstrap_change result for the expectation's statistic.
--- met: the whole interval is at least the expected effect;
--- likely: the estimate is, but the interval reaches past it;
--- not met: the estimate falls short.
function M.check_expectation(exp, ci)
  if not ci or not ci.rel or not ci.rel_lo then
    return { status = 'not measured', text = 'no relative change of ' .. exp.stat .. ' (no data, or it was 0 before)' }
  end
  local want = exp.change
  local better = want < 0 and function(x) return x <= want end or function(x) return x >= want end
  local far = want < 0 and ci.rel_hi or ci.rel_lo   -- the interval end farthest from the goal
  local status
  if better(far) then status = 'met'
  elseif better(ci.rel) then status = 'likely met (the interval reaches past the goal)'
  else status = 'not met' end
  return {
    status = status, expected = want, measured = ci.rel, lo = ci.rel_lo, hi = ci.rel_hi,
    text = string.format('expected %s %+.0f%%, measured %+.1f%% (%d%% CI %+.1f%% .. %+.1f%%): %s',
      exp.stat, want * 100, ci.rel * 100, math.floor(ci.level * 100 + 0.5), ci.rel_lo * 100, ci.rel_hi * 100, status),
  }
end

-- Dataset diff ---------------------------------------------------------------

local function fmt_val(v, unit)
  if v == nil then return 'not measured' end
  if unit == 's' then
    local util = require('perf_manual.util')
    return util.fmt_duration(v)
  end
  local a = math.abs(v)
  if a >= 1e6 then return string.format('%.3g', v) end
  if a >= 100 then return string.format('%.0f', v) end
  if a >= 1 then return string.format('%.2f', v) end
  return string.format('%.3g', v)
end
M.fmt_val = fmt_val

local function is_latency(name, unit)
  return unit == 's' or name:find('latency') or name:find('duration') or name:find('await')
end

--- Compares two datasets ({samples = {name = {values=, unit=}}, scalars =
--- {name = number}, histograms = {...}}, as perf_manual.report.load reads
--- them). Metrics present on both sides are compared; the rest are listed
--- as missing on one side. opts: expect (parsed expectation), seed,
--- iterations, alpha. Returns
--- { metrics = { {metric, kind, n_before, n_after, before, after, change, ci, p, verdict, ...} },
---   latency = { {metric, p50 = {before, after}, ...} }, only_before = {}, only_after = {},
---   expectation = {...} }
function M.diff(before, after, opts)
  opts = opts or {}
  local res = { metrics = {}, latency = {}, only_before = {}, only_after = {} }
  local names = {}
  for k in pairs(before.samples or {}) do names[k] = true end
  for k in pairs(after.samples or {}) do names[k] = true end
  for k in pairs(before.scalars or {}) do names[k] = true end
  for k in pairs(after.scalars or {}) do names[k] = true end
  local sorted = {}
  for k in pairs(names) do sorted[#sorted + 1] = k end
  table.sort(sorted)
  for _, name in ipairs(sorted) do
    local sa, sb = before.samples and before.samples[name], after.samples and after.samples[name]
    local ca, cb = before.scalars and before.scalars[name], after.scalars and after.scalars[name]
    if (sa or ca) and not (sb or cb) then res.only_before[#res.only_before + 1] = name
    elseif (sb or cb) and not (sa or ca) then res.only_after[#res.only_after + 1] = name
    elseif sa and sb then
      local unit = sa.unit or sb.unit
      local want = { 'median' }
      if is_latency(name, unit) then want[#want + 1] = 'p99' end
      if opts.expect and opts.expect.stat ~= 'median' and opts.expect.stat ~= 'p99' then want[#want + 1] = opts.expect.stat end
      local copts = { seed = opts.seed, iterations = opts.iterations, alpha = opts.alpha, stats = want,
        stop = opts.stop }
      local c = M.compare(sa.values, sb.values, copts)
      local row = { metric = name, kind = 'samples', unit = unit, n_before = #sa.values, n_after = #sb.values,
        verdict = c.verdict, p = c.p, significant = c.significant }
      if c.ci then
        local m = c.ci.median
        row.before, row.after, row.change = m.before, m.after, m.rel
        row.ci_lo, row.ci_hi = m.rel_lo, m.rel_hi
        if c.ci.p99 then
          row.p99_before, row.p99_after, row.p99_change = c.ci.p99.before, c.ci.p99.after, c.ci.p99.rel
          row.p99_ci_lo, row.p99_ci_hi = c.ci.p99.rel_lo, c.ci.p99.rel_hi
        end
        row.mean_before, row.mean_after = M.mean(sa.values), M.mean(sb.values)
        row.u = c.test.u1
        row.before_text, row.after_text = 'median ' .. fmt_val(m.before, unit), 'median ' .. fmt_val(m.after, unit)
        row.change_text = m.rel and string.format('%+.1f%%', m.rel * 100) or 'n/a'
        row.ci_text = m.rel_lo and string.format('%+.1f%% .. %+.1f%%', m.rel_lo * 100, m.rel_hi * 100) or ''
        row._ci = c.ci
      else
        row.before_text, row.after_text, row.change_text = fmt_val(M.median(sa.values), unit), fmt_val(M.median(sb.values), unit), 'n/a'
      end
      res.metrics[#res.metrics + 1] = row
      if is_latency(name, unit) then
        local lat = { metric = name, unit = unit, percentiles = {} }
        local pl = lat.percentiles
        for _, q in ipairs({ 'median', 'p90', 'p99', 'p99.9' }) do
          pl[#pl + 1] = { stat = q == 'median' and 'p50' or q, before = M.statistic(sa.values, q), after = M.statistic(sb.values, q) }
        end
        local ha = before.histograms and before.histograms[name]
        local hb = after.histograms and after.histograms[name]
        if ha and hb and ha.percentiles and hb.percentiles then
          -- the exact histogram percentiles beat the ones of thinned samples
          for _, e in ipairs(pl) do
            e.before = ha.percentiles[e.stat] or e.before
            e.after = hb.percentiles[e.stat] or e.after
          end
          pl[#pl + 1] = { stat = 'max', before = ha.percentiles.max, after = hb.percentiles.max }
        end
        res.latency[#res.latency + 1] = lat
      end
    elseif ca and cb then
      local rel = ca ~= 0 and (cb / ca - 1) or nil
      res.metrics[#res.metrics + 1] = { metric = name, kind = 'single value', before = ca, after = cb, change = rel,
        before_text = fmt_val(ca), after_text = fmt_val(cb), change_text = rel and string.format('%+.1f%%', rel * 100) or 'n/a',
        ci_text = '', verdict = 'one value per side: no test possible' }
    else
      res.only_before[#res.only_before + 1] = name .. ' (samples on one side, a single value on the other)'
    end
  end
  if opts.expect then
    local e = opts.expect
    local target
    for _, row in ipairs(res.metrics) do
      if row._ci and (not e.metric and is_latency(row.metric, row.unit) or (e.metric and row.metric:find(e.metric, 1, true))) then
        target = row
        break
      end
    end
    if not target then
      res.expectation = { status = 'not measured', text = 'expected ' .. e.text .. ': no matching metric with samples on both sides' }
    else
      local ci = target._ci[e.stat] or M.bootstrap_change(before.samples[target.metric].values, after.samples[target.metric].values,
        { stat = e.stat, seed = opts.seed, iterations = opts.iterations, stop = opts.stop })
      res.expectation = M.check_expectation(e, ci)
      res.expectation.metric = target.metric
      res.expectation.text = target.metric .. ': ' .. res.expectation.text
    end
  end
  for _, row in ipairs(res.metrics) do row._ci = nil end
  return res
end

return M
