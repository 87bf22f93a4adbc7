--- Differential flame graphs: what changed between two profiles.
---
---   local flamediff = require('perf_manual.report.flamediff')
---   local before = assert(require('perf_manual.fold').load('runs/old'))   -- file or dir
---   local after  = assert(require('perf_manual.fold').load('runs/new'))
---   local svg, info = flamediff.render(before, after, { title = 'checkout: v1.2 -> v1.3' })
---   local ch = flamediff.top_changes(before, after, 10)
---   io.write(flamediff.format_changes(ch))
---
--- render(before, after, opts) -> svg, info
---   `before`, `after`: perf_manual.fold profiles or folded text. The SVG
---   draws the AFTER profile (widths are its counts); each frame is coloured
---   by the change of its self share (samples of stacks ending at that
---   frame / all samples), after minus before: red = grew, blue = shrank,
---   white = unchanged, full colour = the largest change in the profile.
---   Shares, not raw counts, so profiles of different lengths compare.
---   Hover shows after %, before %, the change in points and the self change.
---   opts: as perf_manual.report.flamegraph (title, subtitle, inverted,
---   minwidth, width); `meta` describes the after profile.
---
--- top_changes(before, after, n [, opts]) -> { self = {...}, total = {...} }
---   Per function name, the n largest changes (by absolute points) of its self
---   share and of its total share (stacks it is on, counted once per stack).
---   Each entry: { name=, before=, after= (percent), delta= (points) }.
---   opts.skip_root leaves out the first frame of each stack (process name).
---
--- format_changes(ch [, n]) -> text: two tables, self and total.
local fold = require('perf_manual.fold')
local fg = require('perf_manual.report.flamegraph')
local util = require('perf_manual.util')

local M = {}

local function to_profile(p, which)
  if type(p) == 'string' then
    local prof, err = fold.from_folded(p)
    if not prof then error('[perf_manual.report.flamediff] ' .. which .. ': ' .. tostring(err), 3) end
    return prof
  end
  if type(p) ~= 'userdata' then
    error('[perf_manual.report.flamediff] ' .. which .. ': expected a profile or folded text', 3)
  end
  return p
end

function M.render(before, after, opts)
  before = to_profile(before, 'before')
  after = to_profile(after, 'after')
  opts = opts or {}
  util.validate('opts', opts, 'table')
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.colors = 'diff'
  o.before = before
  o.title = opts.title or 'Differential Flame Graph'
  o.subtitle = opts.subtitle or string.format(
    'after: %s samples, before: %s samples · red grew, blue shrank (change in self share)',
    fg.commas(after:total()), fg.commas(before:total()))
  if after:total() == 0 then o.empty_message = 'No samples in the after profile' end
  return fg.render(after, o)
end

local function ranked(b, a, btotal, atotal, field, n)
  local names = {}
  for k in pairs(a) do names[k] = true end
  for k in pairs(b) do names[k] = true end
  local rows = {}
  for name in pairs(names) do
    local bp = btotal > 0 and b[name] and 100 * b[name][field] / btotal or 0
    local ap = atotal > 0 and a[name] and 100 * a[name][field] / atotal or 0
    if ap ~= 0 or bp ~= 0 then
      rows[#rows + 1] = { name = name, before = bp, after = ap, delta = ap - bp }
    end
  end
  table.sort(rows, function(x, y)
    local dx, dy = math.abs(x.delta), math.abs(y.delta)
    if dx ~= dy then return dx > dy end
    return x.name < y.name
  end)
  local out = {}
  for i = 1, math.min(n, #rows) do out[i] = rows[i] end
  return out
end

function M.top_changes(before, after, n, opts)
  before = to_profile(before, 'before')
  after = to_profile(after, 'after')
  n = n or 10
  local skip = opts and opts.skip_root
  local b, bt = fold.function_totals(before, skip)
  local a, at = fold.function_totals(after, skip)
  return {
    self = ranked(b, a, bt, at, 'self', n),
    total = ranked(b, a, bt, at, 'total', n),
    before_samples = bt, after_samples = at,
  }
end

function M.format_changes(ch, n)
  local lines = {}
  local function table_of(title, rows)
    lines[#lines + 1] = title
    lines[#lines + 1] = string.format('  %8s %8s %9s  %s', 'before', 'after', 'change', 'function')
    for i, r in ipairs(rows) do
      if n and i > n then break end
      lines[#lines + 1] = string.format('  %7.2f%% %7.2f%% %+8.2f  %s', r.before, r.after, r.delta, r.name)
    end
    if #rows == 0 then lines[#lines + 1] = '  (no samples)' end
  end
  table_of('Top changes in self share (points):', ch.self)
  lines[#lines + 1] = ''
  table_of('Top changes in total share (points):', ch.total)
  return table.concat(lines, '\n') .. '\n'
end

return M
