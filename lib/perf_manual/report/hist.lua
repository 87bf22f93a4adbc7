--- Histograms as text, in the layout BCC's tools print (runqlat, biolatency,
--- syscount): log2 buckets `lo -> hi : count |****|`, linear buckets, and
--- small aligned "top" tables. Input is plain tables, so the same code
--- renders live maps, recorded bytes and stored JSON.
---
--- Buckets are lists of `{ lo = n, hi = n, count = n }`. A log2 histogram from
--- the kernel (bpf/common.h) has slot i = [2^i, 2^(i+1)-1], slot 0 = [0, 1],
--- and its last slot also holds everything above it.
local M = {}

local fmt = string.format

--- Log2 slots (1-based list: slots[1] is slot 0) -> buckets, from slot 0 up
--- to the last non-empty slot (empty histogram: empty list).
---@param slots number[]
---@return {lo: number, hi: number, count: number}[]
function M.log2_buckets(slots)
  local last = 0
  for i = 1, #slots do
    if slots[i] > 0 then last = i end
  end
  local out = {}
  for i = 1, last do
    local s = i - 1
    out[i] = { lo = s == 0 and 0 or 2 ^ s, hi = 2 ^ (s + 1) - 1, count = slots[i] }
  end
  if last == #slots and last > 0 then out[last].open = true end -- also holds larger values
  return out
end

--- Linear slots (slots[1] = value 0 .. with `step`) -> buckets up to the last
--- non-empty one.
function M.linear_buckets(slots, step)
  step = step or 1
  local last = 0
  for i = 1, #slots do
    if slots[i] > 0 then last = i end
  end
  local out = {}
  for i = 1, last do
    out[i] = { lo = (i - 1) * step, hi = i * step - 1, count = slots[i] }
  end
  if last == #slots and last > 0 then out[last].open = true end
  return out
end

--- Adds slot counts of b into a (same length); returns a.
function M.add_slots(a, b)
  for i = 1, #b do a[i] = (a[i] or 0) + b[i] end
  return a
end

--- Count and percentiles of buckets. A percentile is the upper bound of the
--- bucket that holds it (what a log2 histogram can honestly say), nil when
--- the histogram is empty.
---@return {count: number, p50: number?, p90: number?, p99: number?, max_bucket_hi: number?}
function M.summary(buckets)
  local total = 0
  for _, b in ipairs(buckets) do total = total + b.count end
  local res = { count = total }
  if total == 0 then return res end
  for _, p in ipairs({ 50, 90, 99 }) do
    local want, seen = total * p / 100, 0
    for _, b in ipairs(buckets) do
      seen = seen + b.count
      if seen >= want and b.count > 0 then
        res['p' .. p] = b.hi
        break
      end
    end
  end
  res.max_bucket_hi = buckets[#buckets].hi
  return res
end

local function stars(count, max, width)
  if max <= 0 then return string.rep(' ', width) end
  local n = math.floor(count * width / max)
  if n > width then n = width end
  local s = string.rep('*', n)
  if count > 0 and n == 0 then s = '' end
  return s .. string.rep(' ', width - #s)
end

--- BCC-style log2 histogram text.
---@param buckets {lo: number, hi: number, count: number}[]
---@param opts {unit: string?, width: integer?}?  unit names the value column ("usecs")
---@return string
function M.render_log2(buckets, opts)
  opts = opts or {}
  local unit = opts.unit or 'value'
  local width = opts.width or 40
  local wide = #buckets > 32
  local numw = wide and 20 or 10
  local lines = {}
  lines[1] = fmt('%s%-' .. (wide and 29 or 19) .. 's : count    distribution', string.rep(' ', wide and 15 or 5), unit)
  local max = 0
  for _, b in ipairs(buckets) do
    if b.count > max then max = b.count end
  end
  for _, b in ipairs(buckets) do
    local hi = b.open and '...' or fmt('%d', b.hi)
    lines[#lines + 1] = fmt('%' .. numw .. 'd -> %-' .. numw .. 's : %-8d |%s|', b.lo, hi, b.count,
      stars(b.count, max, width))
  end
  return table.concat(lines, '\n') .. '\n'
end

--- BCC-style linear histogram text (runqlen).
function M.render_linear(buckets, opts)
  opts = opts or {}
  local unit = opts.unit or 'value'
  local width = opts.width or 40
  local lines = { fmt('     %-13s : count     distribution', unit) }
  local max = 0
  for _, b in ipairs(buckets) do
    if b.count > max then max = b.count end
  end
  for _, b in ipairs(buckets) do
    local label = b.lo == b.hi and fmt('%d', b.lo) or fmt('%d-%d', b.lo, b.hi)
    if b.open then label = label .. '+' end
    lines[#lines + 1] = fmt('        %-10s : %-9d |%s|', label, b.count, stars(b.count, max, width))
  end
  return table.concat(lines, '\n') .. '\n'
end

--- Aligned text table. columns: list of {key=, title=, align='l'|'r', fmt=function(v, row)}.
--- Missing values (nil) print as "-".
function M.table(rows, columns)
  local cells, widths = {}, {}
  for c, col in ipairs(columns) do widths[c] = #col.title end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for c, col in ipairs(columns) do
      local v = row[col.key]
      local s
      if col.fmt then
        s = col.fmt(v, row)
      elseif v == nil then
        s = '-'
      elseif type(v) == 'number' and v == math.floor(v) then
        s = fmt('%d', v)
      elseif type(v) == 'number' then
        s = fmt('%.2f', v)
      else
        s = tostring(v)
      end
      s = s or '-'
      cells[r][c] = s
      if #s > widths[c] then widths[c] = #s end
    end
  end
  local function line(vals)
    local parts = {}
    for c, col in ipairs(columns) do
      local w = widths[c]
      parts[c] = col.align == 'l' and fmt('%-' .. w .. 's', vals[c]) or fmt('%' .. w .. 's', vals[c])
    end
    return (table.concat(parts, '  '):gsub('%s+$', ''))
  end
  local titles = {}
  for c, col in ipairs(columns) do titles[c] = col.title end
  local out = { line(titles) }
  for r = 1, #rows do out[#out + 1] = line(cells[r]) end
  return table.concat(out, '\n') .. '\n'
end

return M
