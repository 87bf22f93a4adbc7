-- Benchmark-like series with known change points, from a seed (the same
-- seed gives the same series everywhere), for judging change-point detectors:
--   local gen = require('changepoint_series')
--   local s = gen.series(rng, 'steps')   -- { values=, changes= {index...}, kind= }
--   local set = gen.set(seed, count)     -- a mix of every kind
-- Kinds: noise (no change), spikes (isolated outliers, some at the first and
-- last points), edge (a step in the last 1-4 points: too few to call),
-- steps (1-3 steps of 3 to 10 noise sd, some up some down), drift (a slow
-- trend below one sd over the series, plus one step), mixed (steps, spikes
-- and drift together). Noise is normal, or heavy-tailed (Student t, 3 df).
local M = {}

--- A seeded uniform generator on [0, 1) (xorshift32 twice, 53 bits).
function M.rng(seed)
  local x = bit.tobit(seed * 2654435761 % 4294967296)
  if x == 0 then x = 88172645 end
  local function step()
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 17))
    x = bit.bxor(x, bit.lshift(x, 5))
    return x % 4294967296
  end
  return function()
    return (step() * 2097152 + step() % 2097152) / 9007199254740992
  end
end

local function normal(u)
  local a = u()
  while a == 0 do a = u() end
  return math.sqrt(-2 * math.log(a)) * math.cos(2 * math.pi * u())
end

local function uniform_int(u, lo, hi) return lo + math.floor(u() * (hi - lo + 1)) end

-- heavy tails: Student t with 3 df, scaled to unit sd
local function t3(u)
  local z, c = normal(u), 0
  for _ = 1, 3 do c = c + normal(u) ^ 2 end
  return z / math.sqrt(c / 3) / math.sqrt(3)
end

local function base_series(u, n)
  local level = 10 ^ (u() * 4)        -- 1 .. 10000 (ms, MB/s, req/s ...)
  local sd = level * (0.005 + u() * 0.045)   -- 0.5% .. 5% run-to-run noise
  local heavy = u() < 0.3
  local v = {}
  for i = 1, n do v[i] = level + sd * (heavy and t3(u) or normal(u)) end
  return v, level, sd
end

-- change positions at least `gap` apart and `gap` from both ends
local function positions(u, n, k, gap)
  for _ = 1, 100 do
    local p = {}
    for i = 1, k do p[i] = uniform_int(u, gap + 1, n - gap + 1) end
    table.sort(p)
    local ok = true
    for i = 2, k do ok = ok and p[i] - p[i - 1] >= gap end
    if ok then return p end
  end
  return { math.floor(n / 2) }
end

local function add_steps(u, v, sd, changes)
  local sign = u() < 0.5 and -1 or 1
  for _, c in ipairs(changes) do
    local size = (3 + u() * 7) * sd * sign
    for i = c, #v do v[i] = v[i] + size end
    if u() < 0.6 then sign = -sign end
  end
end

local function add_spikes(u, v, sd, count, edges)
  for s = 1, count do
    local i = uniform_int(u, 1, #v)
    if edges and s == 1 then i = #v elseif edges and s == 2 then i = 1 end
    v[i] = v[i] + (u() < 0.7 and 1 or -1) * (6 + u() * 20) * sd
  end
end

local function add_drift(u, v, sd)
  local total = (u() * 0.8) * sd * (u() < 0.5 and -1 or 1)
  for i = 1, #v do v[i] = v[i] + total * (i - 1) / (#v - 1) end
end

M.KINDS = { 'noise', 'spikes', 'edge', 'steps', 'drift', 'mixed' }

--- One series of a kind; `gap` is the shortest segment around a true change.
function M.series(u, kind, gap)
  gap = gap or 10
  local n = uniform_int(u, 40, 160)
  local v, _, sd = base_series(u, n)
  local changes = {}
  if kind == 'spikes' then
    add_spikes(u, v, sd, uniform_int(u, 1, 3), u() < 0.5)
  elseif kind == 'edge' then
    local k = uniform_int(u, 1, 4)
    local size = (4 + u() * 6) * sd * (u() < 0.5 and -1 or 1)
    for i = n - k + 1, n do v[i] = v[i] + size end
  elseif kind == 'steps' then
    changes = positions(u, n, uniform_int(u, 1, math.min(3, math.floor(n / gap) - 1)), gap)
    add_steps(u, v, sd, changes)
  elseif kind == 'drift' then
    changes = positions(u, n, 1, gap)
    add_steps(u, v, sd, changes)
    add_drift(u, v, sd)
  elseif kind == 'mixed' then
    changes = positions(u, n, uniform_int(u, 1, 2), gap)
    add_steps(u, v, sd, changes)
    add_drift(u, v, sd)
    add_spikes(u, v, sd, uniform_int(u, 1, 2), false)
  elseif kind ~= 'noise' then
    error('unknown kind ' .. tostring(kind))
  end
  return { values = v, changes = changes, kind = kind, sd = sd }
end

--- count series from one seed, the kinds in turn.
function M.set(seed, count)
  local u = M.rng(seed)
  local out = {}
  for i = 1, count do out[i] = M.series(u, M.KINDS[(i - 1) % #M.KINDS + 1]) end
  return out
end

--- Precision and recall of detected indices against the true ones (a
--- detection within `tol` points of an unmatched true change is a hit).
function M.score(truth, found, tol)
  tol = tol or 3
  local used, tp = {}, 0
  for _, f in ipairs(found) do
    local best, bd
    for j, t in ipairs(truth) do
      local d = math.abs(f - t)
      if not used[j] and d <= tol and (not bd or d < bd) then best, bd = j, d end
    end
    if best then used[best] = true; tp = tp + 1 end
  end
  return tp, #found - tp, #truth - tp
end

return M
