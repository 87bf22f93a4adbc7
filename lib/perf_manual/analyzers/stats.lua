--- Before/after statistics: is a change real or noise?
---
--- * Mann-Whitney U (two-sided) for two samples of a metric: exact p-value
---   for small samples without ties, otherwise the normal approximation with
---   tie correction and continuity correction.
--- * Bootstrap confidence intervals (percentile method, seeded, so the same
---   data always gives the same interval) for the change of the median, p99
---   or mean.
--- * `compare` puts both together into one verdict per metric; `judge`
---   tells whether stated effects ("p99 -20%, errors < 1%") were met.
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
--- as missing on one side. opts: seed, iterations, alpha. Returns
--- { metrics = { {metric, kind, n_before, n_after, before, after, change, ci, p, verdict, ...} },
---   latency = { {metric, p50 = {before, after}, ...} }, only_before = {}, only_after = {} }
--- (stated expectations: `judge`)
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
      else
        row.before_text, row.after_text, row.change_text = fmt_val(M.median(sa.values), unit),
        fmt_val(M.median(sb.values), unit), 'n/a'
      end
      res.metrics[#res.metrics + 1] = row
      if is_latency(name, unit) then
        local lat = { metric = name, unit = unit, percentiles = {} }
        local pl = lat.percentiles
        for _, q in ipairs({ 'median', 'p90', 'p99', 'p99.9' }) do
          pl[#pl + 1] = { stat = q == 'median' and 'p50' or q, before = M.statistic(sa.values, q),
            after = M.statistic(sb.values, q) }
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
        before_text = fmt_val(ca), after_text = fmt_val(cb),
        change_text = rel and string.format('%+.1f%%', rel * 100) or 'n/a',
        ci_text = '', verdict = 'one value per side: no test possible' }
    else
      res.only_before[#res.only_before + 1] = name .. ' (samples on one side, a single value on the other)'
    end
  end
  return res
end

-- Gates: several expectations, each judged MET / NOT MET / NOT JUDGED ------------
--
-- Grammar of one expectation (several: repeat --expect, or separate them
-- with ',' or ';'):
--   SUBJECT +N% | SUBJECT -N%         relative change of the subject, after vs before
--   SUBJECT < V | <= V | > V | >= V   bound on the after value
-- SUBJECT: [latency] STAT (p50 median mean p90 p99 p99.9 ...; "latency" alone is
-- the median) | errors | error ratio | error rate | throughput | rps | rate |
-- profile FUNC [share] | function FUNC [share] | METRIC [STAT] (a metric the diff
-- compares, by name or part of it; median unless a STAT follows).
-- V: a duration for latency (5ms, 200us, 1.5s), a % for errors and profile
-- shares, req/s for throughput (1000, 1000/s), the metric's own unit otherwise.
-- The rule: a change is met only when it is significant at the diff's level
-- (p < alpha) and the end of its 95% CI nearest to no change clears the stated
-- amount; a bound is met only when the whole 95% CI of the after value lies on
-- its side.

local DUR = { ns = 1e-9, us = 1e-6, ['µs'] = 1e-6, ms = 1e-3, s = 1, m = 60 }
local STAT_WORDS = { median = true, mean = true, latency = true }
local function is_stat(w)
  if w == 'p50' or STAT_WORDS[w] and w ~= 'latency' then return true end
  local q = tonumber((w:match('^p([%d.]+)$')))
  return q ~= nil and q > 0 and q <= 100
end

local GRAMMAR = "expected 'SUBJECT +/-N%' or 'SUBJECT < VALUE' (subjects: p99, latency median, errors, "
  .. "error ratio, throughput, rps, profile FUNC, function FUNC share, or a metric name)"

-- subject words -> {kind, metric, stat}
local function parse_subject(words)
  local w1 = words[1]
  local n = #words
  if n == 0 then return nil, GRAMMAR end
  -- a percentile lies in (0, 100]: p101 or p0 is a typo, not a metric's name
  for _, w in ipairs(words) do
    local q = tonumber((w:match('^p([%d.]+)$')))
    if q and (q <= 0 or q > 100) then return nil, "'" .. w .. "' is not a percentile (above p0, at most p100)" end
  end
  if w1 == 'latency' and n == 1 then return { kind = 'latency', stat = 'median' } end
  if (w1 == 'latency' and n == 2 and is_stat(words[2])) or (n == 1 and is_stat(w1)) then
    local st = words[n]
    return { kind = 'latency', stat = st == 'p50' and 'median' or st }
  end
  if n == 1 and (w1 == 'errors' or w1 == 'error_ratio') or n == 2 and w1 == 'error'
    and (words[2] == 'ratio' or words[2] == 'rate') then
    return { kind = 'errors', stat = 'ratio' }
  end
  if n == 1 and (w1 == 'throughput' or w1 == 'rps' or w1 == 'rate') then
    return { kind = 'throughput', stat = 'rate' }
  end
  if w1 == 'profile' or w1 == 'function' then
    local last = words[n] == 'share' and n - 1 or n
    if last < 2 then return nil, "name the function: 'profile FUNC -30%' or 'function FUNC share < 10%'" end
    return { kind = 'profile', metric = table.concat(words, ' ', 2, last), stat = 'share' }
  end
  if n == 1 then return { kind = 'metric', metric = w1, stat = 'median' } end
  if n == 2 and is_stat(words[2]) then
    return { kind = 'metric', metric = w1, stat = words[2] == 'p50' and 'median' or words[2] }
  end
  if n == 2 and is_stat(w1) then return nil, "unknown subject '" .. table.concat(words, ' ') .. "': " .. GRAMMAR end
  return nil, "unknown subject '" .. table.concat(words, ' ') .. "': " .. GRAMMAR
end

-- a bound's value in the subject's unit: seconds, a ratio, req/s, or as written
local function parse_value(kind, v)
  local num, unit = v:match('^([%d.]+[eE]?[+-]?%d*)(.*)$')
  num = tonumber(num)
  if not num then return nil, "'" .. v .. "' is not a number" end
  if kind == 'latency' then
    local f = DUR[unit]
    if not f then return nil, "a latency bound needs a unit: '" .. v .. "' (ns, us, ms, s)" end
    return num * f
  elseif kind == 'errors' or kind == 'profile' then
    if unit == '%' then return num / 100 end
    if unit == '' and num <= 1 then return num end
    return nil, "a share is a % (like 1%) or a ratio from 0 to 1: '" .. v .. "'"
  elseif kind == 'throughput' then
    if unit == '' or unit == '/s' or unit == 'rps' or unit == 'req/s' then return num end
    return nil, "a throughput bound is in requests per second: '" .. v .. "'"
  end
  if unit == '' or unit == '%' then return num end
  local f = DUR[unit]
  if f then return num * f end
  return nil, "'" .. v .. "': unknown unit '" .. unit .. "'"
end

--- One expectation (see the grammar above) -> {text, kind, metric, stat,
--- change = relative change} or {..., op, bound}; nil, err when it does not parse.
function M.parse_expect(text)
  if type(text) ~= 'string' or not text:match('%S') then return nil, 'empty expectation' end
  local t = text:gsub('^%s+', ''):gsub('%s+$', '')
  local subj, op, val = t:match('^(.-)%s*([<>]=?)%s*(%S+)$')
  local change
  if not subj then
    local s2, pct = t:match('^(.-)%s+([+-][%d.]+)%%$')
    if not s2 then
      if t:match('%s[%d.]+%%$') then return nil, 'the change must be signed with a %, like -20% or +5%' end
      return nil, GRAMMAR
    end
    subj, change = s2, tonumber(pct)
    if not change then return nil, "'" .. pct .. "%' is not a number" end
    if change < -100 then return nil, 'a change below -100% cannot happen' end
    change = change / 100
  end
  local words = {}
  for w in subj:lower():gmatch('%S+') do words[#words + 1] = w end
  -- keep a metric's or a function's own spelling
  local orig = {}
  for w in subj:gmatch('%S+') do orig[#orig + 1] = w end
  local e, err = parse_subject(words)
  if not e then return nil, err end
  if e.kind == 'metric' then e.metric = orig[1]
  elseif e.kind == 'profile' then
    local last = words[#words] == 'share' and #orig - 1 or #orig
    e.metric = table.concat(orig, ' ', 2, last)
  end
  e.text = t
  if change then e.change = change
  else
    local b, verr = parse_value(e.kind, val)
    if not b then return nil, verr end
    e.op, e.bound = op, b
  end
  return e
end

--- Every expectation of a list of --expect values (each split at ',' and
--- ';'). Returns the list, or nil and the error naming the bad one.
function M.parse_expects(list)
  local out = {}
  for _, item in ipairs(type(list) == 'table' and list or { list }) do
    for piece in tostring(item):gmatch('[^,;]+') do
      if piece:match('%S') then
        local e, err = M.parse_expect(piece)
        if not e then
          return nil, string.format('bad --expect "%s": %s', piece:gsub('^%s+', ''):gsub('%s+$', ''), err)
        end
        out[#out + 1] = e
      end
    end
  end
  if #out == 0 then return nil, 'bad --expect: no expectation given' end
  return out
end

-- Tests on counts --------------------------------------------------------------

local Z95 = 1.959964

--- Two-proportion z-test (pooled, two-sided) of k1/n1 against k2/n2, with the
--- relative change k2/n2 over k1/n1 and its 95% CI (log risk ratio, Katz; 0.5
--- added to every cell when a count is 0). Returns {p1, p2, p, rel, rel_lo, rel_hi}.
function M.two_proportions(k1, n1, k2, n2)
  if n1 <= 0 or n2 <= 0 then return nil, 'no counts' end
  local p1, p2 = k1 / n1, k2 / n2
  local pool = (k1 + k2) / (n1 + n2)
  local se = math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
  local r = { p1 = p1, p2 = p2, n1 = n1, n2 = n2, k1 = k1, k2 = k2 }
  if se == 0 then r.z, r.p = 0, 1 else
    r.z = (p2 - p1) / se
    r.p = math.min(1, 2 * M.norm_sf(math.abs(r.z)))
  end
  if p1 > 0 then
    r.rel = p2 / p1 - 1
    local a, b, c, d = k1, n1, k2, n2
    if a == 0 or c == 0 or a == b or c == d then a, b, c, d = a + 0.5, b + 1, c + 0.5, d + 1 end
    local lrr = math.log((c / d) / (a / b))
    local s = math.sqrt(1 / a - 1 / b + 1 / c - 1 / d)
    r.rel_lo, r.rel_hi = math.exp(lrr - Z95 * s) - 1, math.exp(lrr + Z95 * s) - 1
  end
  return r
end

--- Wilson 95% interval of a proportion k/n.
function M.wilson(k, n)
  local p = k / n
  local z2 = Z95 * Z95
  local den = 1 + z2 / n
  local mid = (p + z2 / (2 * n)) / den
  local half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
  return math.max(0, mid - half), math.min(1, mid + half)
end

--- Two Poisson rates n1/t1 and n2/t2: z-test (two-sided) and the 95% CI of the
--- relative change (log rate ratio). Returns {r1, r2, p, rel, rel_lo, rel_hi}.
function M.two_rates(n1, t1, n2, t2)
  if n1 <= 0 or n2 <= 0 or t1 <= 0 or t2 <= 0 then return nil, 'no counts' end
  local r1, r2 = n1 / t1, n2 / t2
  local z = (r2 - r1) / math.sqrt(n1 / (t1 * t1) + n2 / (t2 * t2))
  local s = math.sqrt(1 / n1 + 1 / n2)
  local lrr = math.log(r2 / r1)
  return { r1 = r1, r2 = r2, z = z, p = math.min(1, 2 * M.norm_sf(math.abs(z))), rel = r2 / r1 - 1,
    rel_lo = math.exp(lrr - Z95 * s) - 1, rel_hi = math.exp(lrr + Z95 * s) - 1 }
end

--- Seeded bootstrap 95% interval of one statistic of one sample.
function M.bootstrap_stat(x, opts)
  opts = opts or {}
  local f = stat_fn(opts.stat or 'median')
  local iters = opts.iterations or 2000
  local rnd = M.rng(opts.seed or 20260101)
  local t = M.thin(x, M.BOOT_MAX)
  local n = #t
  local s, vals = table_new(n, 0), table_new(iters, 0)
  for it = 1, iters do
    if opts.stop and it % 64 == 0 and opts.stop() then break end
    for i = 1, n do s[i] = t[rnd(n)] end
    vals[#vals + 1] = f(s, n)
  end
  table.sort(vals)
  return M.quantile_sorted(vals, 0.025), M.quantile_sorted(vals, 0.975)
end

-- What a dataset holds for each kind of expectation ---------------------------

M.MIN_INTERVALS = 5   -- per-interval values a side needs before they are tested instead of the counts

local function red_counts(ds)
  local r = ds.red
  if type(r) ~= 'table' or type(r.errors) ~= 'table' then return nil end
  local e = r.errors
  local n, k = tonumber(e.attempts), tonumber(e.total)
  if not n or not k or n <= 0 then return nil end
  return { errors = k, attempts = n, duration = tonumber(r.duration_s),
    responses = r.rate and tonumber(r.rate.completed) and tonumber(r.duration_s)
      and tonumber(r.rate.completed) * tonumber(r.duration_s) or nil }
end

-- per-interval error ratios and request rates of a RED run's series
local function red_intervals(ds)
  local r = ds.red
  if type(r) ~= 'table' or type(r.series) ~= 'table' then return nil end
  local ratio, rate = {}, {}
  for _, s in ipairs(r.series) do
    local ok, bad = tonumber(s.responses) or 0, tonumber(s.errors) or 0
    if ok + bad > 0 then ratio[#ratio + 1] = bad / (ok + bad) end
    rate[#rate + 1] = ok + bad
  end
  return ratio, rate
end

local function sample_named(ds, patterns)
  local names = {}
  for k in pairs(ds.samples or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, p in ipairs(patterns) do
    for _, k in ipairs(names) do if k:find(p) then return k, ds.samples[k] end end
  end
end

local function latency_metric(before, after)
  local both = {}
  for k, s in pairs(before.samples or {}) do
    if after.samples and after.samples[k] then both[#both + 1] = { k, s.unit or after.samples[k].unit } end
  end
  table.sort(both, function(a, b) return a[1] < b[1] end)
  for _, e in ipairs(both) do if e[1]:find('latency') then return e[1] end end
  for _, e in ipairs(both) do if is_latency(e[1], e[2]) then return e[1] end end
end

local function metric_named(before, after, name)
  local function has(ds, k) return (ds.samples and ds.samples[k]) or (ds.scalars and ds.scalars[k]) end
  if has(before, name) and has(after, name) then return name end
  local all = {}
  for _, ds in ipairs({ before }) do
    for k in pairs(ds.samples or {}) do all[k] = true end
    for k in pairs(ds.scalars or {}) do all[k] = true end
  end
  local sorted = {}
  for k in pairs(all) do if has(after, k) and k:find(name, 1, true) then sorted[#sorted + 1] = k end end
  table.sort(sorted)
  return sorted[1]
end

-- Judging ---------------------------------------------------------------------

local function pct(x) return x and string.format('%+.1f%%', x * 100) or 'n/a' end
local function fmt_p(p)
  if p == nil then return 'p n/a' end
  if p < 0.001 then return 'p < 0.001' end
  return string.format('p = %.3g', p)
end

local function fmt_in(kind, unit)
  if kind == 'latency' or unit == 's' then return function(v) return fmt_val(v, 's') end end
  if kind == 'errors' or kind == 'profile' then
    return function(v) return v and string.format('%.2f%%', v * 100) or 'n/a' end
  end
  if kind == 'throughput' then return function(v) return v and string.format('%.1f/s', v) or 'n/a' end end
  return function(v) return fmt_val(v) end
end

-- a relative-change verdict from {rel, rel_lo, rel_hi, p}
local function judge_change(e, r, alpha)
  if not r.rel or not r.rel_lo then
    return false, 'not judged', 'no relative change: the value before is 0'
  end
  local want = e.change
  local near = want < 0 and r.rel_hi or r.rel_lo
  local met = r.p < alpha and (want < 0 and near <= want or want >= 0 and near >= want)
  return met, met and 'met' or 'not met'
end

local function judge_bound(e, lo, hi)
  local met
  if e.op == '<' then met = hi < e.bound
  elseif e.op == '<=' then met = hi <= e.bound
  elseif e.op == '>' then met = lo > e.bound
  else met = lo >= e.bound end
  return met, met and 'met' or 'not met'
end

local function on_samples(e, res, a, b, unit, opts)
  local fmt = fmt_in(e.kind, unit)
  -- a ratio or a rate per interval: their mean is the run's figure
  local st = (e.stat == 'ratio' or e.stat == 'rate') and 'mean' or e.stat
  res.n_before, res.n_after = #a, #b
  if e.change then
    local c = M.compare(a, b, { seed = opts.seed, iterations = opts.iterations,
      stats = { 'median', st ~= 'median' and st or nil },
      alpha = opts.alpha, stop = opts.stop })
    if not c.ci then
      res.status, res.why = 'not judged', c.verdict
      return res
    end
    local ci = c.ci[st]
    res.before, res.after, res.measured, res.ci_lo, res.ci_hi, res.p = ci.before, ci.after, ci.rel, ci.rel_lo,
    ci.rel_hi, c.p
    res.met, res.status, res.why = judge_change(e, { rel = ci.rel, rel_lo = ci.rel_lo, rel_hi = ci.rel_hi, p = c.p },
      opts.alpha or M.ALPHA)
    res.detail = string.format('%s %s → %s, %s (95%% CI %s .. %s), %s', st, fmt(ci.before), fmt(ci.after), pct(ci.rel),
      pct(ci.rel_lo), pct(ci.rel_hi), fmt_p(c.p))
  else
    if #b < 2 then res.status, res.why = 'not judged', 'fewer than 2 values after'; return res end
    local lo, hi = M.bootstrap_stat(b, { stat = st, seed = opts.seed, iterations = opts.iterations, stop = opts.stop })
    res.before, res.after, res.ci_lo, res.ci_hi = M.statistic(a, st), M.statistic(b, st), lo, hi
    res.met, res.status = judge_bound(e, lo, hi)
    res.detail = string.format('%s after %s (95%% CI %s .. %s; before %s)', st, fmt(res.after), fmt(lo), fmt(hi),
      fmt(res.before))
  end
  return res
end

-- proportions: counts k of n on each side
local function on_counts(e, res, k1, n1, k2, n2)
  local fmt = fmt_in(e.kind)
  res.n_before, res.n_after = n1, n2
  res.before, res.after = k1 / n1, k2 / n2
  if e.change then
    local r = M.two_proportions(k1, n1, k2, n2)
    res.measured, res.ci_lo, res.ci_hi, res.p = r.rel, r.rel_lo, r.rel_hi, r.p
    res.met, res.status, res.why = judge_change(e, r, res.alpha)
    res.detail = string.format('%s → %s (%d of %d → %d of %d), %s (95%% CI %s .. %s), %s', fmt(r.p1), fmt(r.p2),
      k1, n1, k2, n2, pct(r.rel), pct(r.rel_lo), pct(r.rel_hi), fmt_p(r.p))
  else
    local lo, hi = M.wilson(k2, n2)
    res.ci_lo, res.ci_hi = lo, hi
    res.met, res.status = judge_bound(e, lo, hi)
    res.detail = string.format('after %s (%d of %d, 95%% CI %s .. %s; before %s)', fmt(res.after), k2, n2, fmt(lo),
      fmt(hi),
      fmt(res.before))
  end
  return res
end

local function judge_one(e, before, after, opts)
  local res = { text = e.text, kind = e.kind, metric = e.metric, stat = e.stat, expected = e.change,
    op = e.op, bound = e.bound, alpha = opts.alpha or M.ALPHA }
  local function nj(why) res.status, res.why = 'not judged', why; return res end
  if e.kind == 'latency' then
    local m = latency_metric(before, after)
    if not m then return nj('no latency metric with samples on both sides') end
    res.metric, res.method = m, 'Mann-Whitney U on the samples, seeded bootstrap CI'
    if e.op then res.method = 'seeded bootstrap CI of the after value' end
    return on_samples(e, res, before.samples[m].values, after.samples[m].values, 's', opts)
  elseif e.kind == 'errors' then
    res.metric = 'error ratio'
    local name_b = sample_named(before, { '[%._]error_ratio$' })
    local name_a = name_b and after.samples[name_b] and name_b
    local ib, _ = red_intervals(before)
    local ia, _ = red_intervals(after)
    if name_a and #before.samples[name_b].values >= M.MIN_INTERVALS
      and #after.samples[name_a].values >= M.MIN_INTERVALS then
      res.metric = name_a
      res.method = 'per-interval values of ' .. name_a .. (e.op and ': bootstrap CI of the after mean'
        or ': Mann-Whitney U, bootstrap CI of the mean')
      return on_samples(e, res, before.samples[name_b].values, after.samples[name_a].values, nil, opts)
    end
    if ib and ia and #ib >= M.MIN_INTERVALS and #ia >= M.MIN_INTERVALS then
      res.method = string.format('per-second error ratios of the RED runs (%d and %d intervals): %s', #ib, #ia,
        e.op and 'bootstrap CI of the after mean' or 'Mann-Whitney U, bootstrap CI of the mean')
      return on_samples(e, res, ib, ia, nil, opts)
    end
    local cb, ca = red_counts(before), red_counts(after)
    if cb and ca then
      res.method = e.op and 'Wilson interval of the after ratio (request counts)'
        or 'two-proportion z-test on the request counts, log risk-ratio CI'
      return on_counts(e, res, cb.errors, cb.attempts, ca.errors, ca.attempts)
    end
    return nj('no error counts on both sides (a red-check.json, or an error_ratio series)')
  elseif e.kind == 'throughput' then
    res.metric = 'throughput'
    local name_b = sample_named(before, { 'requests_per_s$', '[%._]rps$', 'throughput$' })
    if name_b and after.samples[name_b] and #before.samples[name_b].values >= M.MIN_INTERVALS
      and #after.samples[name_b].values >= M.MIN_INTERVALS then
      res.metric = name_b
      res.method = 'per-interval values of ' .. name_b .. ': Mann-Whitney U, bootstrap CI of the mean'
      return on_samples(e, res, before.samples[name_b].values, after.samples[name_b].values, nil, opts)
    end
    local _, rb = red_intervals(before)
    local _, ra = red_intervals(after)
    if rb and ra and #rb >= M.MIN_INTERVALS and #ra >= M.MIN_INTERVALS then
      res.method = string.format('requests per second of the RED runs (%d and %d intervals): %s', #rb, #ra,
        e.op and 'bootstrap CI of the after mean' or 'Mann-Whitney U, bootstrap CI of the mean')
      return on_samples(e, res, rb, ra, nil, opts)
    end
    local cb, ca = red_counts(before), red_counts(after)
    if cb and ca and cb.responses and ca.responses and cb.duration and ca.duration then
      local r = M.two_rates(cb.responses, cb.duration, ca.responses, ca.duration)
      if not r then return nj('no requests answered on one side') end
      local fmt = fmt_in('throughput')
      res.before, res.after, res.n_before, res.n_after = r.r1, r.r2, cb.responses, ca.responses
      if e.change then
        res.method = 'Poisson rate test on the answered requests, log rate-ratio CI'
        res.measured, res.ci_lo, res.ci_hi, res.p = r.rel, r.rel_lo, r.rel_hi, r.p
        res.met, res.status, res.why = judge_change(e, r, res.alpha)
        res.detail = string.format('%s → %s, %s (95%% CI %s .. %s), %s', fmt(r.r1), fmt(r.r2), pct(r.rel),
          pct(r.rel_lo),
          pct(r.rel_hi), fmt_p(r.p))
      else
        res.method = 'Poisson interval of the after rate'
        local s = 1 / math.sqrt(ca.responses)
        local lo, hi = r.r2 * math.exp(-Z95 * s), r.r2 * math.exp(Z95 * s)
        res.ci_lo, res.ci_hi = lo, hi
        res.met, res.status = judge_bound(e, lo, hi)
        res.detail = string.format('after %s (95%% CI %s .. %s; before %s)', fmt(r.r2), fmt(lo), fmt(hi), fmt(r.r1))
      end
      return res
    end
    return nj('no request rate on both sides (a red-check.json, or a requests_per_s series)')
  elseif e.kind == 'profile' then
    local pb, pa = opts.profile_before, opts.profile_after
    if not (pb and pa) then return nj('no folded profile on both sides') end
    local function count(p, name)
      local r = p.funcs[name]
      if r then return r.total end
      -- perf's suffixes (_[k], _[j]) and a bare name are the same function
      local n = 0
      for k, v in pairs(p.funcs) do if k:gsub('_%[%a%]$', '') == name then n = n + v.total end end
      return n
    end
    local k1, k2 = count(pb, e.metric), count(pa, e.metric)
    if k1 == 0 and k2 == 0 then return nj(string.format("'%s' is in neither profile", e.metric)) end
    if pb.total == 0 or pa.total == 0 then return nj('an empty profile') end
    res.method = e.op and "Wilson interval of the after share (the function's samples on the stack)"
      or 'two-proportion z-test on the samples with the function on the stack, log risk-ratio CI'
    return on_counts(e, res, k1, pb.total, k2, pa.total)
  end
  -- a metric by name
  local m = metric_named(before, after, e.metric)
  if not m then return nj(string.format("no metric '%s' on both sides", e.metric)) end
  res.metric = m
  local sa, sb = before.samples and before.samples[m], after.samples and after.samples[m]
  if not (sa and sb) then return nj(m .. ': one value per side, no test possible') end
  res.method = e.op and 'seeded bootstrap CI of the after value' or 'Mann-Whitney U on the samples, seeded bootstrap CI'
  return on_samples(e, res, sa.values, sb.values, sa.unit or sb.unit, opts)
end

M.STATUS_WORD = { met = 'MET', ['not met'] = 'NOT MET', ['not judged'] = 'NOT JUDGED' }

--- Judges parsed expectations against two datasets (as perf_manual.report.load
--- reads them). opts: seed, iterations, alpha, stop, profile_before/after =
--- {funcs = perf_manual.fold.function_totals(...), total = samples}. Returns a list
--- of {text, kind, metric, met, status = 'met'|'not met'|'not judged', method,
--- before, after, measured, ci_lo, ci_hi, p, why, line}.
function M.judge(exps, before, after, opts)
  opts = opts or {}
  local out = {}
  for i, e in ipairs(exps) do
    local r = judge_one(e, before or {}, after or {}, opts)
    r.met = r.status == 'met'
    r.judged = r.status ~= 'not judged'
    if r.status == 'not judged' then
      r.line = string.format('NOT JUDGED: %s: %s', r.text, r.why or '?')
    else
      r.line = string.format('%s: %s: %s %s [%s]', M.STATUS_WORD[r.status], r.text,
        r.kind == 'profile' and (r.metric .. ' share') or r.metric, r.detail, r.method)
    end
    out[i] = r
  end
  return out
end

return M
