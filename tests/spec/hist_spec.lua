-- perf_manual.hist: the kernel's log2 slots, buckets, and a quantile that is
-- the C one (runtime/http.c pm_quantile, reached through
-- perf_manual._c.http.hist_quantile) to the bit, on histograms recorded from
-- the real tracers and on made-up edge cases.
local hist = require('perf_manual.hist')
local c = require('perf_manual._c.http')
local util = require('perf_manual.util')

local function unhex(h) return (h:gsub('%x%x', function(x) return string.char(tonumber(x, 16)) end)) end

-- every quantile a report asks for, every whole percent, and the ends
local QS = { 0, 1e-12, 0.001, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1 }
for k = 1, 99 do QS[#QS + 1] = k / 100 end

-- Lua and C on one histogram, every q; returns how many quantiles compared
local function agree(name, buckets, min, max)
  local n = 0
  for _, q in ipairs(QS) do
    local l, cv = hist.quantile(buckets, q, min, max), c.hist_quantile(buckets, q, min, max)
    if l ~= cv then
      error(string.format('%s q=%.17g: Lua %s, C %s', name, q, tostring(l), tostring(cv)), 2)
    end
    n = n + 1
  end
  return n
end

-- histograms recorded by the tracers ------------------------------------------

local function walk_buckets(t, path, out)
  if type(t) ~= 'table' then return end
  for k, v in pairs(t) do
    if (k == 'buckets' or k == 'size_buckets') and type(v) == 'table' and #v > 0 and v[1].lo then
      out[#out + 1] = { name = path .. '.' .. k, buckets = v }
    elseif k == 'slots' and type(v) == 'table' and #v > 0 then
      out[#out + 1] = { name = path .. '.slots', buckets = hist.log2_buckets(v) }
    else
      walk_buckets(v, path .. '.' .. tostring(k), out)
    end
  end
end

local function recorded()
  local out = {}
  for _, f in ipairs({ 'datadirs/fsync_writer/raw_data/trace-io.json',
                       'datadirs/fsync_writer/raw_data/trace-syscall.json',
                       'datadirs/mutex_contention/raw_data/trace-lock.json' }) do
    walk_buckets(assert(util.json_decode(test_helpers.fixture(f))), f, out)
  end
  -- raw map bytes, through the tracers' decoders
  local sched = require('perf_manual.tracers.sched')
  for line in test_helpers.fixture('bpf/maps.txt'):gmatch('[^\n]+') do
    local m, k, v = line:match('^(%S+)\t(%S+)\t(%S+)$')
    if m == 'sched.hists' then
      out[#out + 1] = { name = 'sched ' .. k, buckets = hist.log2_buckets(sched.decode_hist(unhex(k), unhex(v)).slots) }
    end
  end
  local io_t = require('perf_manual.tracers.io')
  for i, e in ipairs(assert(util.json_decode(test_helpers.fixture('bpfmaps/io.json'))).maps.hists) do
    local h = io_t.decode_hist(unhex(e.key), unhex(e.value))
    local b = hist.log2_buckets(h.latency)
    out[#out + 1] = { name = 'io.json ' .. i, buckets = b,
                      max = hist.fitting_max(b, math.floor(h.max_ns / 1e3)) }
  end
  -- the request tracer's log-linear ns slots with its exact min and max
  local red = require('perf_manual.tracers.red')
  local percpu = {}
  for v in test_helpers.fixture('red/nginx_delay50.txt'):gmatch('red%.stats\t%d+\t(%x+)') do
    percpu[#percpu + 1] = unhex(v)
  end
  local d = red.decode_stats(percpu)
  out[#out + 1] = { name = 'red nginx_delay50', buckets = red.buckets(d.slots), min = d.min_ns, max = d.max_ns,
                    red = d }
  return out
end

describe('perf_manual.hist slots', function()
  it('puts values in log2 slots as bpf/common.h does', function()
    local cases = { { 0, 0 }, { 1, 0 }, { 2, 1 }, { 3, 1 }, { 4, 2 }, { 1023, 9 }, { 1024, 10 },
                    { 2 ^ 31, 31 }, { 2 ^ 40, 31 } }
    for _, t in ipairs(cases) do assert.equal(t[2], hist.log2_slot(t[1]), 'value ' .. t[1]) end
    for s = 0, 30 do
      local lo, hi = hist.log2_bounds(s)
      assert.equal(s, hist.log2_slot(lo))
      assert.equal(s, hist.log2_slot(hi))
      assert.equal(s + 1, hist.log2_slot(hi + 1))
    end
    assert.equal(3, hist.linear_slot(35, 10, 64))
    assert.equal(63, hist.linear_slot(9999, 10, 64))
  end)

  it('turns slots into buckets up to the last non-empty one, the kernel\'s last slot open', function()
    assert.same({ { lo = 0, hi = 1, count = 1 }, { lo = 2, hi = 3, count = 0 }, { lo = 4, hi = 7, count = 4 } },
      hist.log2_buckets({ 1, 0, 4, 0, 0 }))
    assert.same({}, hist.log2_buckets({ 0, 0 }))
    assert.is_true(hist.log2_buckets({ 0, 1, 3 })[3].open)
    assert.same({ { lo = 0, hi = 9, count = 5 }, { lo = 10, hi = 19, count = 2 } },
      hist.linear_buckets({ 5, 2, 0 }, 10))
    assert.same({ 2, 4, 3 }, hist.add_slots({ 1, 2, 3 }, { 1, 2, 0 }))
  end)

  it('merges bucket lists and counts, sums and averages them', function()
    local a = hist.log2_buckets({ 1, 0, 4, 0 })
    local b = hist.log2_buckets({ 0, 2, 1, 3, 0 })
    local m = hist.merge(a, b)
    assert.same({ { lo = 0, hi = 1, count = 1 }, { lo = 2, hi = 3, count = 2 }, { lo = 4, hi = 7, count = 5 },
                  { lo = 8, hi = 15, count = 3 } }, m)
    assert.equal(11, hist.count(m))
    assert.equal(hist.count(a) + hist.count(b), hist.count(m))
    -- middles: 0.5, 2.5, 5.5, 11.5
    assert.equal(0.5 + 2 * 2.5 + 5 * 5.5 + 3 * 11.5, hist.sum(m))
    assert.equal(hist.sum(m) / 11, hist.mean(m))
    assert.is_nil(hist.mean({}))
    assert.same({ 0, 15 }, { hist.bounds(m) })
  end)
end)

describe('perf_manual.hist.quantile', function()
  it('follows the C rule: the ends are min and max, in between the middle of the bucket', function()
    local b = hist.log2_buckets({ 0, 0, 0, 0, 50, 40, 9, 1, 0 }) -- 100 values in [16, 255]
    assert.equal(16, hist.quantile(b, 0))      -- rank 1: min (the lowest bucket's lo)
    assert.equal(23.5, hist.quantile(b, 0.5))  -- rank 50 in [16, 31]
    assert.equal(47.5, hist.quantile(b, 0.9))  -- rank 90 in [32, 63]
    assert.equal(95.5, hist.quantile(b, 0.99)) -- rank 99 in [64, 127]
    assert.equal(255, hist.quantile(b, 1))     -- rank n: max (the highest bucket's hi)
    -- exact extremes, when known, replace the bounds and clamp the middles
    assert.equal(20, hist.quantile(b, 0.01, 20, 130))
    assert.equal(130, hist.quantile(b, 1, 20, 130))
    assert.equal(90, hist.quantile(b, 0.99, 20, 90))
    assert.same({ count = 100, p50 = 23.5, p90 = 47.5, p99 = 95.5 }, hist.summary(b))
    assert.equal('p99.9', hist.name(0.999))
    assert.equal('p50', hist.name(0.5))
  end)

  it('does not let rounding push a whole rank up (p7 of 100 values is the 7th)', function()
    local q, n = 0.07, 100
    assert.is_true(q * n > 7) -- 7.000000000000001 in doubles
    local b = { { lo = 0, hi = 0, count = 7 }, { lo = 10, hi = 10, count = 93 } }
    assert.equal(0, hist.quantile(b, q))
    assert.equal(0, c.hist_quantile(b, q))
  end)

  it('answers nil for an empty histogram and rejects q outside [0, 1]', function()
    assert.is_nil(hist.quantile({}, 0.5))
    assert.is_nil(hist.quantile(hist.log2_buckets({ 0, 0, 0 }), 0.5))
    assert.is_nil(c.hist_quantile({}, 0.5))
    for _, q in ipairs({ -0.1, 1.5, 0 / 0 }) do
      assert.has_error(function() hist.quantile({}, q) end)
      assert.has_error(function() c.hist_quantile({}, q) end)
    end
    assert.has_error(function() c.hist_quantile({ { lo = 0, hi = 1, count = -1 } }, 0.5) end,
      'http: hist_quantile: bucket 1: count is not a whole number >= 0')
    assert.has_error(function() c.hist_quantile({ 5 }, 0.5) end, 'http: hist_quantile: bucket 1: not a table')
  end)

  it('gives the open top bucket\'s max (or, unknown, its lo) rather than a made-up middle', function()
    local slots = {}
    for i = 1, 32 do slots[i] = 0 end
    slots[5], slots[32] = 10, 90
    local b = hist.log2_buckets(slots)
    assert.equal(2 ^ 31, hist.quantile(b, 0.5))
    assert.equal(5e9, hist.quantile(b, 0.5, nil, 5e9))
  end)
end)

describe('perf_manual.hist.quantile agrees with the C rule exactly', function()
  it('on every histogram recorded from the tracers', function()
    local hs = recorded()
    local n = 0
    for _, h in ipairs(hs) do
      if hist.count(h.buckets) > 0 then n = n + agree(h.name, h.buckets, h.min, h.max) end
    end
    assert.is_true(#hs >= 20, #hs .. ' recorded histograms')
    assert.is_true(n >= 20 * #QS, n .. ' quantiles compared')
  end)

  it('in the request tracer, whose percentiles are these quantiles', function()
    local red = require('perf_manual.tracers.red')
    local h = recorded()
    h = h[#h]
    local lat = red.latency(h.red.slots, h.red.min_ns, h.red.max_ns, h.red.sum_ns)
    assert.is_true(h.red.requests > 100)
    for _, q in ipairs({ 0.5, 0.9, 0.99, 0.999 }) do
      assert.equal(c.hist_quantile(h.buckets, q, h.min, h.max) / 1e9, lat[hist.name(q)])
    end
    -- the recorder's endpoint answers after 50 ms
    assert.is_true(math.abs(lat.p50 - 0.050) < 0.005, 'p50 ' .. lat.p50)
  end)

  it('on made-up edge cases: one bucket, all in the zero bucket, huge counts, open tops', function()
    local cases = {
      { name = 'one value', b = { { lo = 7, hi = 7, count = 1 } } },
      { name = 'one bucket', b = { { lo = 16, hi = 31, count = 1000 } } },
      { name = 'zero bucket', b = hist.log2_buckets({ 12345 }) },
      { name = 'two values', b = hist.log2_buckets({ 1, 0, 0, 1 }) },
      { name = 'huge counts', b = { { lo = 0, hi = 1, count = 2 ^ 50 }, { lo = 2, hi = 3, count = 2 ^ 51 + 1 },
                                    { lo = 1024, hi = 2047, count = 3 } } },
      { name = 'open top', b = hist.log2_buckets((function()
          local s = {}
          for i = 1, 32 do s[i] = i % 3 end
          return s
        end)()) },
      { name = 'exact extremes', b = hist.log2_buckets({ 0, 3, 5, 7 }), min = 3, max = 9 },
      { name = 'empty buckets between', b = { { lo = 0, hi = 1, count = 0 }, { lo = 2, hi = 3, count = 5 },
                                              { lo = 4, hi = 7, count = 0 }, { lo = 8, hi = 15, count = 5 } } },
    }
    for _, t in ipairs(cases) do agree(t.name, t.b, t.min, t.max) end
    -- and many random ones, counts from 0 to 2^40
    math.randomseed(42)
    for i = 1, 300 do
      local slots = {}
      local nslots = math.random(1, 32)
      for s = 1, nslots do
        local r = math.random()
        slots[s] = r < 0.4 and 0 or r < 0.8 and math.random(1, 100) or math.floor(2 ^ (math.random() * 40))
      end
      local b = hist.log2_buckets(slots)
      local lo, hi = hist.bounds(b)
      if lo and i % 2 == 0 then
        agree('random ' .. i .. ' exact', b, lo + 0.25, hi)
      else
        agree('random ' .. i, b)
      end
    end
  end)
end)
