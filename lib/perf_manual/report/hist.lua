--- Histograms as text, in the layout BCC's tools print (runqlat, biolatency,
--- syscount): log2 buckets `lo -> hi : count |****|`, linear buckets, and
--- small aligned "top" tables. Input is plain tables, so the same code
--- renders live maps, recorded bytes and stored JSON.
---
--- Buckets are the bucket lists of perf_manual.hist (`{ lo = n, hi = n,
--- count = n, open = true? }`), which also does the arithmetic: slots to
--- buckets, merging, quantiles. This module only draws.
local M = {}

local fmt = string.format

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
