--- Histograms as data: the log2 and linear slots the BPF programs fill
--- (bpf/common.h, bpf/common/pm_types.h), bucket lists, merging, count,
--- sum and mean, and quantiles. Pure: no I/O, no text (report/hist.lua draws
--- them).
---
--- A bucket list is `{ {lo = n, hi = n, count = n, open = true?}, ... }` in
--- ascending order; a bucket holds the whole numbers lo..hi, and an open one
--- also everything above hi (the kernel's last slot).
---
--- `quantile` is the rule of pm_quantile in runtime/http.c, operation for
--- operation, so both give the same double (tests/spec/hist_spec.lua holds
--- them to it): change one, change the other.
local M = {}

--- Slots of a kernel log2 histogram (PM_LOG2_SLOTS).
M.LOG2_SLOTS = 32

--- log2 slot of a value, as pm_log2_slot in bpf/common.h: floor(log2 v),
--- 0 and 1 in slot 0, clamped into the last slot.
function M.log2_slot(v, nslots)
  nslots = nslots or M.LOG2_SLOTS
  local s = 0
  while v >= 2 and s < nslots - 1 do
    v = math.floor(v / 2)
    s = s + 1
  end
  return s
end

--- Smallest and largest value of log2 slot s (0-based): slot 0 = [0, 1],
--- slot s = [2^s, 2^(s+1) - 1].
function M.log2_bounds(s)
  return s == 0 and 0 or 2 ^ s, 2 ^ (s + 1) - 1
end

--- Linear slot of a value, as pm_linear_slot in bpf/common.h.
function M.linear_slot(v, step, nslots)
  local s = (step and step > 0) and math.floor(v / step) or v
  return s >= nslots and nslots - 1 or s
end

-- slots (1-based counts) -> buckets up to the last non-empty slot
local function to_buckets(slots, bounds)
  local last = 0
  for i = 1, #slots do
    if slots[i] > 0 then last = i end
  end
  local out = {}
  for i = 1, last do
    local lo, hi = bounds(i - 1)
    out[i] = { lo = lo, hi = hi, count = slots[i] }
  end
  if last == #slots and last > 0 then out[last].open = true end -- also holds larger values
  return out
end

--- Log2 slots (1-based list: slots[1] is slot 0) -> buckets, from slot 0
--- up to the last non-empty slot (empty histogram: empty list).
---@param slots number[]
---@return {lo: number, hi: number, count: number, open: boolean?}[]
function M.log2_buckets(slots)
  return to_buckets(slots, M.log2_bounds)
end

--- Linear slots (slots[1] = values 0 .. step-1) -> buckets up to the last
--- non-empty one.
function M.linear_buckets(slots, step)
  step = step or 1
  return to_buckets(slots, function(s) return s * step, (s + 1) * step - 1 end)
end

--- Adds the slot counts of b into a; returns a.
function M.add_slots(a, b)
  for i = 1, #b do a[i] = (a[i] or 0) + b[i] end
  return a
end

--- Merges bucket lists (buckets with the same lo and hi add up; a bucket is
--- open when it is open in any list). Returns a new list in ascending order.
function M.merge(...)
  local by, out = {}, {}
  for k = 1, select('#', ...) do
    for _, b in ipairs(select(k, ...) or {}) do
      local key = b.lo .. ':' .. b.hi
      local m = by[key]
      if not m then
        m = { lo = b.lo, hi = b.hi, count = 0 }
        by[key] = m
        out[#out + 1] = m
      end
      m.count = m.count + b.count
      if b.open then m.open = true end
    end
  end
  table.sort(out, function(x, y) return x.lo < y.lo or x.lo == y.lo and x.hi < y.hi end)
  return out
end

--- Values in the buckets.
function M.count(buckets)
  local n = 0
  for _, b in ipairs(buckets) do n = n + b.count end
  return n
end

-- the value a bucket stands for: its middle (an open bucket: its lo, all
-- that is known)
local function middle(b)
  if b.open then return b.lo end
  return b.lo + (b.hi - b.lo) / 2
end

--- Sum estimated from the buckets (each value at its bucket's middle; an
--- open bucket's at its lo). An exact sum, where the kernel kept one, is
--- better.
function M.sum(buckets)
  local s = 0
  for _, b in ipairs(buckets) do s = s + b.count * middle(b) end
  return s
end

--- Mean estimated as sum / count; nil when empty.
function M.mean(buckets)
  local n = M.count(buckets)
  if n == 0 then return nil end
  return M.sum(buckets) / n
end

--- Smallest and largest value the buckets can say: the lo of the first
--- non-empty bucket, the hi of the last one (its lo when open). nil, nil
--- when empty.
function M.bounds(buckets)
  local first, last
  for _, b in ipairs(buckets) do
    if b.count > 0 then
      first = first or b
      last = b
    end
  end
  if not first then return nil, nil end
  return first.lo, last.open and last.lo or last.hi
end

--- max when it can be the largest value in these buckets (it lies in the
--- top non-empty bucket), else nil: a kernel's racy max that does not fit is
--- better left out than clamping every quantile to it.
function M.fitting_max(buckets, max)
  if max == nil then return nil end
  local last
  for _, b in ipairs(buckets) do
    if b.count > 0 then last = b end
  end
  if last and max >= last.lo and (last.open or max <= last.hi) then return max end
  return nil
end

--- Value at quantile q (0..1), nil when the histogram is empty.
--- rank = ceil(q n - 1e-9) (the 1e-9 keeps q n that should be whole, like
--- 0.07 * 100, from being rounded up a rank); rank <= 1 gives min, rank >= n
--- max; otherwise the middle of the bucket holding rank (max when that
--- bucket is open), kept inside [min, max]. min and max are the exact
--- extremes when known, else the buckets' bounds (M.bounds).
---@param buckets {lo: number, hi: number, count: number, open: boolean?}[]
---@param q number
---@param min number?
---@param max number?
---@return number?
function M.quantile(buckets, q, min, max)
  if type(q) ~= 'number' or not (q >= 0 and q <= 1) then
    error('hist.quantile: quantile must be a number in [0, 1], got ' .. tostring(q), 2)
  end
  local n = M.count(buckets)
  if n == 0 then return nil end
  if min == nil or max == nil then
    local lo, hi = M.bounds(buckets)
    min = min == nil and lo or min
    max = max == nil and hi or max
  end
  local rank = math.ceil(q * n - 1e-9)
  if rank <= 1 then return min end
  if rank >= n then return max end
  local seen = 0
  for _, b in ipairs(buckets) do
    seen = seen + b.count
    if seen >= rank then
      local v = b.open and max or b.lo + (b.hi - b.lo) / 2
      if v > max then v = max end
      if v < min then v = min end
      return v
    end
  end
  return max
end

--- The name of quantile q: 0.5 -> 'p50', 0.999 -> 'p99.9'.
function M.name(q)
  return 'p' .. string.format('%.4f', q * 100):gsub('0+$', ''):gsub('%.$', '')
end

--- Several quantiles at once: { p50 = v, p99 = v, ... } (default p50 p90 p99),
--- and count; the quantiles are absent when the histogram is empty.
---@return table
function M.summary(buckets, qs, min, max)
  local res = { count = M.count(buckets) }
  for _, q in ipairs(qs or { 0.5, 0.9, 0.99 }) do res[M.name(q)] = M.quantile(buckets, q, min, max) end
  return res
end

return M
