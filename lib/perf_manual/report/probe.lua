--- A probe's result (perf_manual.probe) as text: the counts per key as a
--- table, or per key a histogram; stacks leaf first, as bpftrace prints
--- them; then the measurement-quality line every tracer ends with.
local report_tracers = require('perf_manual.report.tracers')
local text = require('perf_manual.report.hist')
local util = require('perf_manual.util')

local M = {}

local fmt = string.format

local function num(v)
  if v == nil then return '-' end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return fmt('%d', v) end
  return fmt('%.1f', v)
end

local function bar(count, max, width)
  local n = max > 0 and math.floor(count * width / max) or 0
  return '|' .. string.rep('*', n) .. string.rep(' ', width - n) .. '|'
end

local function label(b, unit_ns)
  local function v(x) return unit_ns and util.fmt_duration(x / 1e9) or num(x) end
  if b.neg then return '< 0' end
  if b.under then return '< ' .. v(b.hi + 1) end
  if b.open then return '>= ' .. v(b.lo) end
  if b.lo == b.hi then return v(b.lo) end
  return v(b.lo) .. ' -> ' .. v(b.hi)
end

--- Histogram text: one line per bucket, `lo -> hi : count |***|`.
function M.histogram(buckets, opts)
  opts = opts or {}
  local labels, w, max = {}, #(opts.title or 'value'), 0
  for i, b in ipairs(buckets) do
    labels[i] = label(b, opts.unit == 'ns')
    if #labels[i] > w then w = #labels[i] end
    if b.count > max then max = b.count end
  end
  local lines = { fmt('  %' .. w .. 's : %-9s distribution', opts.title or 'value', 'count') }
  for i, b in ipairs(buckets) do
    lines[#lines + 1] = fmt('  %' .. w .. 's : %-9d %s', labels[i], b.count, bar(b.count, max, 40))
  end
  return table.concat(lines, '\n') .. '\n'
end

-- "comm=ls pid=12 arg1=3"
local function key_text(res, row)
  local parts = {}
  if row.comm then parts[#parts + 1] = 'comm=' .. row.comm end
  if row.pid then parts[#parts + 1] = 'pid=' .. row.pid end
  if row.tid then parts[#parts + 1] = 'tid=' .. row.tid end
  if row.key then parts[#parts + 1] = res.key .. '=' .. num(row.key) end
  return table.concat(parts, ' ')
end

local function stack_text(row)
  local lines = {}
  for i = #row.stack, 1, -1 do lines[#lines + 1] = '    ' .. row.stack[i] end
  if #lines == 0 then lines[1] = '    [no stack]' end
  return table.concat(lines, '\n') .. '\n'
end

local function stats_text(res, r)
  local s = 'count ' .. num(r.count)
  if r.rate then s = s .. fmt(' (%s/s)', num(r.rate)) end
  if res.action ~= 'count' and r.mean then
    s = s .. ', mean ' .. (res.unit == 'ns' and util.fmt_duration(r.mean / 1e9) or num(r.mean))
  end
  return s
end

--- The whole result. opts.top: rows shown (default 10).
function M.render(res, opts)
  opts = opts or {}
  local top = opts.top or 10
  local out = {}
  local rows = res.rows or {}
  local total = res.total or { count = 0 }
  out[#out + 1] = fmt('%s: %s events', res.probe, num(total.count))
  local keyed = #rows > 0 and (rows[1].comm or rows[1].pid or rows[1].tid or rows[1].key or rows[1].stack)
  if res.action ~= 'count' then
    if keyed then
      out[#out + 1] = fmt('all: %s\n', stats_text(res, { count = total.count, mean = total.mean }))
      out[#out + 1] = M.histogram(res.buckets or {}, { unit = res.unit, title = res.hist }):sub(1, -2)
    end
    for i, r in ipairs(rows) do
      if i > top then break end
      out[#out + 1] = ''
      if r.stack then out[#out + 1] = stack_text(r):sub(1, -2) end
      local k = key_text(res, r)
      out[#out + 1] = (k ~= '' and ('[' .. k .. '] ') or '') .. stats_text(res, r)
      out[#out + 1] = M.histogram(r.buckets or {}, { unit = res.unit, title = res.hist }):sub(1, -2)
    end
    out[#out + 1] = ''
  elseif rows[1] and rows[1].stack then
    for i, r in ipairs(rows) do
      if i > top then break end
      out[#out + 1] = ''
      out[#out + 1] = stack_text(r):sub(1, -2)
      local k = key_text(res, r)
      out[#out + 1] = (k ~= '' and ('[' .. k .. '] ') or '') .. stats_text(res, r)
    end
  elseif keyed then
    local cols = {}
    if rows[1].comm then cols[#cols + 1] = { key = 'comm', title = 'COMM', align = 'l' } end
    if rows[1].pid then cols[#cols + 1] = { key = 'pid', title = 'PID' } end
    if rows[1].tid then cols[#cols + 1] = { key = 'tid', title = 'TID' } end
    if rows[1].key then cols[#cols + 1] = { key = 'key', title = res.key:upper(), fmt = num } end
    cols[#cols + 1] = { key = 'count', title = 'COUNT' }
    cols[#cols + 1] = { key = 'rate', title = 'PER_S', fmt = function(v) return v and fmt('%.1f', v) or '-' end }
    local shown = {}
    for i = 1, math.min(top, #rows) do shown[i] = rows[i] end
    out[#out + 1] = text.table(shown, cols)
  end
  if #rows > top then out[#out + 1] = fmt('(%d more keys; --top N shows more)', #rows - top) end
  if res.quality then
    local q = report_tracers.quality_line(res.quality)
    if res.quality.unpaired_note and (res.quality.events_missed or 0) > 0 then
      q = q .. ' (unpaired: ' .. res.quality.unpaired_note .. ')'
    end
    out[#out + 1] = 'quality: ' .. q
    local ul = require('perf_manual.report.profile').unwind_line(res.quality.unwind)
    if ul then out[#out + 1] = ul end
  end
  return table.concat(out, '\n') .. '\n'
end

return M
