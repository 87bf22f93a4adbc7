--- Metric families as Prometheus text exposition (version 0.0.4) or
--- OpenMetrics 1.0, with a cardinality guard. Pure: families in, text out.
---
--- A family is a plain table:
---   { name = 'perf_manual_syscall_latency_seconds', help = '...',
---     type = 'gauge' | 'counter' | 'histogram', unit = 'seconds'?,
---     labels = { 'syscall' },          -- label names, in output order
---     scale = 1e-9,                    -- histogram: base unit per kernel unit (ns -> s)
---     fold = 'sum' | 'max',            -- how folded series combine (counter/histogram: sum)
---     guard = false,                   -- no top-K on this family
---     guard_key = 'syscall',           -- families sharing one choice of kept values
---     samples = { { labels = { syscall = 'read' }, value = 12 }, ... } }
--- A histogram sample holds the kernel's log2 slots instead of a value:
---   { labels = {...}, slots = { n0, n1, ... }, sum = native_sum?, count = n? }
--- slots[i] counts values of log2 slot i-1 (perf_manual.hist): the `le`
--- bounds are exactly those slots' upper ends (2^(s+1) - 1 in the kernel's
--- unit, times scale), cumulative, and the last slot (open above) is +Inf.
--- Nothing is re-binned.
---
--- Counters are named with their `_total` suffix (name = 'x_total').
local hist = require('perf_manual.hist')

local M = {}

M.CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
M.OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8'
M.OTHER = 'other'
M.FOLDED = 'perf_manual_folded_series_total'

--- true when an Accept header asks for OpenMetrics.
function M.wants_openmetrics(accept)
  return type(accept) == 'string' and accept:find('application/openmetrics-text', 1, true) ~= nil
end

--- A sample value as the formats spell it: integers without a fraction,
--- the shortest decimal that reads back as the same double otherwise.
function M.number(v)
  if v >= 0 and v < 2 ^ 53 and v % 1 == 0 then return string.format('%d', v) end
  if v ~= v then return 'NaN' end
  if v == math.huge then return '+Inf' end
  if v == -math.huge then return '-Inf' end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format('%d', v) end
  for _, f in ipairs({ '%.15g', '%.16g' }) do
    local s = string.format(f, v)
    if tonumber(s) == v then return s end
  end
  return string.format('%.17g', v)
end

-- OpenMetrics wants float-looking bucket bounds ("1.0", not "1")
local function le_text(v, om)
  local s = M.number(v)
  if om and not s:find('[%.eEIN]') then s = s .. '.0' end
  return s
end

local function escape_label(v)
  return (tostring(v):gsub('[\\"\n]', { ['\\'] = '\\\\', ['"'] = '\\"', ['\n'] = '\\n' }))
end

local function escape_help(v)
  return (tostring(v):gsub('[\\\n]', { ['\\'] = '\\\\', ['\n'] = '\\n' }))
end

--- Upper bound (in the kernel's unit) of log2 slot s (0-based), nil for
--- the last, open slot.
function M.slot_le(s, nslots)
  nslots = nslots or hist.LOG2_SLOTS
  if s >= nslots - 1 then return nil end
  local _, hi = hist.log2_bounds(s)
  return hi
end

local function label_text(names, labels, extra_k, extra_v)
  local parts = {}
  for _, k in ipairs(names) do
    local v = labels[k]
    if v ~= nil then parts[#parts + 1] = k .. '="' .. escape_label(v) .. '"' end
  end
  if extra_k then parts[#parts + 1] = extra_k .. '="' .. extra_v .. '"' end
  if #parts == 0 then return '' end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function weight(fam, s)
  if fam.type == 'histogram' then
    if s.count then return s.count end
    local n = 0
    for _, c in ipairs(s.slots) do n = n + c end
    return n
  end
  return math.abs(s.value or 0)
end

-- Cardinality guard ----------------------------------------------------------
--
-- Per family and label, at most k values are kept; the rest become "other"
-- and their samples combine (sum, or max for gauges that are levels). Kept
-- values are sticky (chosen by weight when first seen, never dropped), so a
-- counter folded into "other" only ever grows there: a value that moved in
-- and out of the top would make both series reset.

--- Folds the samples of fam under the guard. state (kept by the caller
--- across scrapes): per family and label the kept values and those folded.
--- Returns a new sample list and the number of label values folded so far.
function M.fold(fam, k, state)
  if fam.guard == false or not k or #(fam.labels or {}) == 0 then return fam.samples, 0 end
  -- families with the same guard_key share their kept values (a syscall's
  -- latency and its errors fold the same syscalls)
  local key = fam.guard_key or fam.name
  local fst = state[key] or { labels = {} }
  state[key] = fst
  local samples = fam.samples
  for _, lname in ipairs(fam.labels) do
    local lst = fst.labels[lname] or { kept = {}, nkept = 0, folded = {}, nfolded = 0 }
    fst.labels[lname] = lst
    -- weight of each value in this scrape, heaviest first
    local w, order = {}, {}
    for _, s in ipairs(samples) do
      local v = s.labels[lname]
      if v ~= nil then
        if not w[v] then w[v] = 0; order[#order + 1] = v end
        w[v] = w[v] + weight(fam, s)
      end
    end
    table.sort(order, function(a, b) if w[a] ~= w[b] then return w[a] > w[b] end return tostring(a) < tostring(b) end)
    for _, v in ipairs(order) do
      if not lst.kept[v] and lst.nkept < k and v ~= M.OTHER then lst.kept[v] = true; lst.nkept = lst.nkept + 1 end
    end
    local any = false
    for _, v in ipairs(order) do
      if not lst.kept[v] then
        any = true
        if not lst.folded[v] then lst.folded[v] = true; lst.nfolded = lst.nfolded + 1 end
      end
    end
    if any then
      -- merge samples whose labels are equal once folded
      local by, out = {}, {}
      for _, s in ipairs(samples) do
        local labels = {}
        for kk, vv in pairs(s.labels) do labels[kk] = vv end
        if labels[lname] ~= nil and not lst.kept[labels[lname]] then labels[lname] = M.OTHER end
        local skey = label_text(fam.labels, labels)
        local m = by[skey]
        if not m then
          m = { labels = labels }
          if fam.type == 'histogram' then m.slots, m.sum, m.count = {}, 0, 0 end
          by[skey] = m
          out[#out + 1] = m
        end
        if fam.type == 'histogram' then
          for i, c in ipairs(s.slots) do m.slots[i] = (m.slots[i] or 0) + c end
          m.sum = (m.sum and s.sum) and m.sum + s.sum or nil
          m.count = (m.count and s.count) and m.count + s.count or nil
        elseif m.value == nil then
          m.value = s.value
        elseif (fam.fold or (fam.type == 'gauge' and 'max' or 'sum')) == 'max' then
          m.value = math.max(m.value, s.value)
        else
          m.value = m.value + s.value
        end
      end
      samples = out
    end
  end
  local nfolded = 0
  for _, lst in pairs(fst.labels) do nfolded = nfolded + lst.nfolded end
  return samples, nfolded
end

-- Rendering --------------------------------------------------------------------

-- x * scale, divided when scale is 1/integer (1e-9): 1023 / 1e9 is the
-- double nearest 1.023e-06 and prints so; 1023 * 1e-9 is not
local function scaler(scale)
  scale = scale or 1
  local inv = 1 / scale
  local r = math.floor(inv + 0.5)
  if scale < 1 and math.abs(inv - r) < 1e-6 * r then return function(x) return x / r end end
  return function(x) return x * scale end
end
M.scaler = scaler

-- the le texts of a family's buckets, computed once per family and format
local le_cache = setmetatable({}, { __mode = 'k' })
local function le_texts(fam, nslots, om)
  local c = le_cache[fam]
  if c and c.om == om and c.n == nslots and c.scale == fam.scale then return c.texts end
  local scale, texts = scaler(fam.scale), {}
  for i = 1, nslots do
    local le = M.slot_le(i - 1, nslots)
    texts[i] = le and ('le="' .. le_text(scale(le), om) .. '"') or nil
  end
  le_cache[fam] = { om = om, n = nslots, scale = fam.scale, texts = texts }
  return texts
end

local function render_histogram(out, fam, s, om)
  local names = fam.labels or {}
  local scale = scaler(fam.scale)
  local nslots = #s.slots
  local les = le_texts(fam, nslots, om)
  local lbl = label_text(names, s.labels)
  local open = fam.name .. '_bucket' .. (lbl == '' and '{' or lbl:sub(1, -2) .. ',')
  local cum = 0
  local n = #out
  for i = 1, nslots do
    cum = cum + s.slots[i]
    if les[i] then
      n = n + 1
      out[n] = open .. les[i] .. '} ' .. M.number(cum)
    end
  end
  local count = s.count or cum
  out[n + 1] = open .. 'le="+Inf"} ' .. M.number(count)
  local sum = s.sum
  if sum == nil then sum = hist.sum(hist.log2_buckets(s.slots)) end
  out[n + 2] = fam.name .. '_sum' .. lbl .. ' ' .. M.number(scale(sum))
  out[n + 3] = fam.name .. '_count' .. lbl .. ' ' .. M.number(count)
end

--- The exposition of families. opts.openmetrics: OpenMetrics 1.0 instead
--- of the text format; opts.top_k (nil: no guard) and opts.state (kept
--- across calls) for the cardinality guard, which adds the counter
--- perf_manual_folded_series_total{metric}. Returns the text and a table
--- { [family name] = label values folded so far }.
function M.render(families, opts)
  opts = opts or {}
  local om = opts.openmetrics
  local state = opts.state or {}
  local out, folded = {}, {}
  local list, guard = {}, { name = M.FOLDED, type = 'counter', labels = { 'metric' }, guard = false,
    help = 'Label values folded into "other" by the cardinality guard (top-K per label), per metric', samples = {} }
  for _, fam in ipairs(families) do
    local samples, nf = M.fold(fam, opts.top_k, state)
    folded[fam.name] = nf
    list[#list + 1] = { fam = fam, samples = samples }
    if opts.top_k and fam.guard ~= false and #(fam.labels or {}) > 0 then
      guard.samples[#guard.samples + 1] = { labels = { metric = fam.name }, value = nf }
    end
  end
  if opts.top_k then list[#list + 1] = { fam = guard, samples = guard.samples } end
  for _, item in ipairs(list) do
    local fam, samples = item.fam, item.samples
    if #samples > 0 or fam.always then
      local name = fam.name
      -- OpenMetrics names the counter family without _total, its sample with it
      local famname = (om and fam.type == 'counter') and name:gsub('_total$', '') or name
      out[#out + 1] = '# HELP ' .. famname .. ' ' .. escape_help(fam.help or famname)
      out[#out + 1] = '# TYPE ' .. famname .. ' ' .. fam.type
      if om and fam.unit then out[#out + 1] = '# UNIT ' .. famname .. ' ' .. fam.unit end
      for _, s in ipairs(samples) do
        if fam.type == 'histogram' then
          render_histogram(out, fam, s, om)
        elseif s.value ~= nil then
          out[#out + 1] = name .. label_text(fam.labels or {}, s.labels or {}) .. ' ' .. M.number(s.value)
        end
      end
    end
  end
  if om then out[#out + 1] = '# EOF' end
  out[#out + 1] = ''
  return table.concat(out, '\n'), folded
end

-- k="v",k2="v2" with \\ \" \n escapes -> table, ok
local function parse_labels(s)
  local labels, i = {}, 1
  while i <= #s do
    local k, j = s:match('^%s*([%w_]+)="()', i)
    if not k then return labels, false end
    local buf = {}
    while true do
      local c = s:sub(j, j)
      if c == '' then return labels, false end
      if c == '"' then break end
      if c == '\\' then
        local e = s:sub(j + 1, j + 1)
        buf[#buf + 1] = e == 'n' and '\n' or e
        j = j + 2
      else
        buf[#buf + 1] = c
        j = j + 1
      end
    end
    labels[k] = table.concat(buf)
    i = s:match('^%s*,?()', j + 1)
  end
  return labels, true
end

--- Parses an exposition (text format or OpenMetrics) into samples
--- { {name=, labels={}, value=} ... } and metadata { [family] = {type=, help=} }:
--- what the tests and the e2e read back. Returns nil, err on a line that
--- is neither a comment nor a sample.
function M.parse(text)
  local samples, meta = {}, {}
  local n = 0
  for line in text:gmatch('[^\n]+') do
    n = n + 1
    local kind, fam, rest = line:match('^# (%u+) (%S+) ?(.*)$')
    if kind then
      meta[fam] = meta[fam] or {}
      meta[fam][kind:lower()] = rest
    elseif line:sub(1, 1) ~= '#' then
      local name, lbl, val = line:match('^([%w_:]+)(%b{}) (%S+)')
      if not name then
        name, val = line:match('^([%w_:]+) (%S+)')
        lbl = '{}'
      end
      if not name then return nil, 'line ' .. n .. ': not a sample: ' .. line end
      local labels, ok = parse_labels(lbl:sub(2, -2))
      if not ok then return nil, 'line ' .. n .. ': bad labels: ' .. line end
      local num = val == '+Inf' and math.huge or val == '-Inf' and -math.huge or tonumber(val)
      samples[#samples + 1] = { name = name, labels = labels, value = num }
    end
  end
  return samples, meta
end

return M
