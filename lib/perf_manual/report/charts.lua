--- Charts for reports and terminals: SVG time series, latency histograms and
--- latency heat maps (self-contained SVG strings, every label escaped), and
--- text sparklines / log2 bars for the terminal.
---
--- Readable without a legend hunt: each line is labelled at its right end,
--- the unit is in the title, and the last value is printed next to the label.
local util = require('perf_manual.util')

local M = {}

local fmt = string.format

local XML_ESC = { ['&'] = '&amp;', ['<'] = '&lt;', ['>'] = '&gt;', ['"'] = '&quot;', ["'"] = '&#39;' }

--- Escapes text for XML/HTML text and attribute values. Control characters
--- other than tab/newline are not allowed in XML and are dropped.
function M.escape(s)
  s = tostring(s):gsub('[%z\1-\8\11\12\14-\31]', '')
  return (s:gsub('[&<>"\']', XML_ESC))
end
local esc = M.escape

-- Colours readable on white and in greyscale print, one per series.
M.palette = { '#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf', '#7f7f7f' }

local function num(v)
  -- compact, locale-free numbers for SVG coordinates
  return fmt('%.1f', v)
end

--- "Nice" axis step for a range (1, 2, 5 x 10^k).
local function nice_step(range, ticks)
  if range <= 0 then return 1 end
  local raw = range / ticks
  local mag = 10 ^ math.floor(math.log10(raw))
  local r = raw / mag
  local m = r < 1.5 and 1 or r < 3 and 2 or r < 7 and 5 or 10
  return m * mag
end
M._nice_step = nice_step

--- Formats a value with its unit for axis labels.
function M.fmt_value(v, unit)
  if v == nil then return 'n/a' end
  if unit == 's' then return util.fmt_duration(v) end
  if unit == 'B' or unit == 'bytes' then return util.fmt_bytes(v) end
  if unit == 'B/s' then return util.fmt_bytes(v) .. '/s' end
  local a = math.abs(v)
  local s
  if a >= 1e9 then s = fmt('%.1fG', v / 1e9)
  elseif a >= 1e6 then s = fmt('%.1fM', v / 1e6)
  elseif a >= 1e4 then s = fmt('%.1fk', v / 1e3)
  elseif a >= 100 or v == math.floor(v) then s = fmt('%.0f', v)
  elseif a >= 1 then s = fmt('%.1f', v)
  else s = fmt('%.2f', v) end
  if unit == '%' then return s .. '%' end
  return s
end

local function svg_open(w, h, title)
  return {
    fmt('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" ' ..
      'aria-label="%s" font-family="sans-serif" font-size="11">',
      w, h, w, h, esc(title)),
    fmt('<title>%s</title>', esc(title)),
    fmt('<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>', w, h),
    fmt('<text x="8" y="16" font-size="13" font-weight="bold" fill="#222">%s</text>', esc(title)),
  }
end

-- Keeps at most `cols` points per series: min and max of each pixel column,
-- so a one-second spike in an hour of samples still shows.
local function downsample(points, cols)
  if #points <= cols * 2 then return points end
  local t0, t1 = points[1][1], points[#points][1]
  local span = (t1 - t0) / cols
  local out, col, lo, hi = {}, nil, nil, nil
  local function flush()
    if lo then
      if lo[1] <= hi[1] then out[#out + 1] = lo; if hi ~= lo then out[#out + 1] = hi end
      else out[#out + 1] = hi; out[#out + 1] = lo end
    end
  end
  for _, p in ipairs(points) do
    local c = math.floor((p[1] - t0) / span)
    if c ~= col then flush(); col, lo, hi = c, p, p
    else
      if p[2] < lo[2] then lo = p end
      if p[2] > hi[2] then hi = p end
    end
  end
  flush()
  return out
end

--- A time-series line chart.
--- opts: title, unit ('%', 's', 'B', ...), series = { {name=, points={{t, v}, ...}} },
---       ymax (fixed top, e.g. 100 for %), width, height, markers = { {t=, label=} }
--- t is seconds (relative or epoch: the x axis shows seconds from the first point).
--- Missing values (nil v) break the line instead of drawing 0.
function M.timeseries(opts)
  util.validate('opts', opts, 'table')
  local W, H = opts.width or 720, opts.height or 220
  local left, right, top, bottom = 56, 150, 28, 30
  local pw, ph = W - left - right, H - top - bottom
  local title = (opts.title or 'time series') .. (opts.unit and opts.unit ~= '' and (' (' .. opts.unit .. ')') or '')
  local out = svg_open(W, H, title)
  local tmin, tmax, vmax = math.huge, -math.huge, 0
  for _, s in ipairs(opts.series or {}) do
    for _, p in ipairs(s.points or {}) do
      if p[1] < tmin then tmin = p[1] end
      if p[1] > tmax then tmax = p[1] end
      if p[2] and p[2] > vmax then vmax = p[2] end
    end
  end
  if tmin == math.huge then
    out[#out + 1] = fmt('<text x="%d" y="%d" fill="#666">not measured</text>', left, top + ph / 2)
    out[#out + 1] = '</svg>'
    return table.concat(out, '\n')
  end
  if tmax == tmin then tmax = tmin + 1 end
  local ymax = opts.ymax or (vmax > 0 and vmax * 1.1 or 1)
  local ystep = nice_step(ymax, 4)
  ymax = math.ceil(ymax / ystep - 1e-9) * ystep
  local function X(t) return left + (t - tmin) / (tmax - tmin) * pw end
  local function Y(v) return top + ph - (v / ymax) * ph end
  -- grid and y labels
  local v = 0
  while v <= ymax + 1e-9 do
    out[#out + 1] = fmt('<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#e5e5e5"/>', left, num(Y(v)), left + pw,
      num(Y(v)))
    out[#out + 1] = fmt('<text x="%d" y="%s" text-anchor="end" fill="#555">%s</text>', left - 4, num(Y(v) + 4),
      esc(M.fmt_value(v, opts.unit)))
    v = v + ystep
  end
  -- x labels: seconds from the start
  local span = tmax - tmin
  local xstep = nice_step(span, 6)
  local t = 0
  while t <= span + 1e-9 do
    out[#out + 1] = fmt('<text x="%s" y="%d" text-anchor="middle" fill="#555">%s</text>', num(X(tmin + t)),
      top + ph + 16,
      esc(span >= 120 and fmt('%gm', util.round(t / 60, 1)) or fmt('%gs', util.round(t, 2))))
    t = t + xstep
  end
  out[#out + 1] = fmt('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>', left, top + ph, left + pw, top + ph)
  -- series, each labelled at its right end with its last value
  local labels = {}
  for i, s in ipairs(opts.series or {}) do
    local colour = s.colour or M.palette[(i - 1) % #M.palette + 1]
    local pts = downsample(s.points or {}, pw)
    local segs, cur = {}, {}
    for _, p in ipairs(pts) do
      if p[2] == nil then
        if #cur > 0 then segs[#segs + 1] = cur; cur = {} end
      else
        cur[#cur + 1] = num(X(p[1])) .. ',' .. num(Y(math.min(p[2], ymax)))
      end
    end
    if #cur > 0 then segs[#segs + 1] = cur end
    for _, seg in ipairs(segs) do
      out[#out + 1] = fmt('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>', colour,
        table.concat(seg, ' '))
    end
    local last
    for j = #(s.points or {}), 1, -1 do if s.points[j][2] ~= nil then last = s.points[j]; break end end
    if last then
      labels[#labels + 1] = { y = Y(math.min(last[2], ymax)), colour = colour,
        text = fmt('%s %s', s.name or ('series ' .. i), M.fmt_value(last[2], opts.unit)) }
    end
  end
  -- spread labels so they do not overlap
  table.sort(labels, function(a, b) return a.y < b.y end)
  local prev = -math.huge
  for _, l in ipairs(labels) do
    if l.y < prev + 13 then l.y = prev + 13 end
    prev = l.y
    out[#out + 1] = fmt('<text x="%d" y="%s" fill="%s">%s</text>', left + pw + 6, num(l.y + 4), l.colour, esc(l.text))
  end
  for _, m in ipairs(opts.markers or {}) do
    if m.t >= tmin and m.t <= tmax then
      out[#out + 1] = fmt('<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#444" stroke-dasharray="4 3"/>', num(X(m.t)),
        top, num(X(m.t)), top + ph)
      out[#out + 1] = fmt('<text x="%s" y="%d" fill="#444">%s</text>', num(X(m.t) + 3), top + 10, esc(m.label or ''))
    end
  end
  out[#out + 1] = '</svg>'
  return table.concat(out, '\n')
end

--- A latency histogram: buckets {{lo, hi, count}, ...} (seconds), drawn as
--- bars on a log-spaced axis; percentile markers from opts.percentiles
--- ({p50 = v, p99 = v, ...}).
function M.histogram(opts)
  util.validate('opts', opts, 'table')
  local W, H = opts.width or 720, opts.height or 220
  local left, right, top, bottom = 56, 20, 28, 34
  local pw, ph = W - left - right, H - top - bottom
  local out = svg_open(W, H, opts.title or 'latency histogram')
  local b = opts.buckets or {}
  if #b == 0 then
    out[#out + 1] = fmt('<text x="%d" y="%d" fill="#666">not measured</text>', left, top + ph / 2)
    out[#out + 1] = '</svg>'
    return table.concat(out, '\n')
  end
  -- regroup into bins of equal width on a log axis: whole octaves for wide
  -- distributions, finer (up to 1/32 octave) when everything is close together
  local lmin, lmax = math.huge, -math.huge
  for _, x in ipairs(b) do
    local l = math.log(math.max(x[1], 1e-7)) / math.log(2)
    if l < lmin then lmin = l end
    if l > lmax then lmax = l end
  end
  local sub = 1
  while sub < 32 and (lmax - lmin) * sub < 12 do sub = sub * 2 end
  local bins, bmin, bmax = {}, math.huge, -math.huge
  for _, x in ipairs(b) do
    local k = math.floor(math.log(math.max(x[1], 1e-7)) / math.log(2) * sub + 1e-9)
    bins[k] = (bins[k] or 0) + x[3]
    if k < bmin then bmin = k end
    if k > bmax then bmax = k end
  end
  local function edge(k) return 2 ^ (k / sub) end
  local n = bmax - bmin + 1
  local cmax = 0
  for k = bmin, bmax do if (bins[k] or 0) > cmax then cmax = bins[k] end end
  local bw = pw / n
  local total = 0
  for _, x in ipairs(b) do total = total + x[3] end
  for k = bmin, bmax do
    local c = bins[k] or 0
    local h = cmax > 0 and c / cmax * ph or 0
    local x = left + (k - bmin) * bw
    out[#out + 1] = fmt('<rect x="%s" y="%s" width="%s" height="%s" fill="#1f77b4"><title>%s - %s: %d ' ..
      '(%.1f%%)</title></rect>',
      num(x + 1), num(top + ph - h), num(math.max(bw - 2, 1)), num(h), esc(util.fmt_duration(edge(k))),
      esc(util.fmt_duration(edge(k + 1))),
      c, total > 0 and c / total * 100 or 0)
    if n <= 12 or (k - bmin) % math.ceil(n / 8) == 0 then
      out[#out + 1] = fmt('<text x="%s" y="%d" text-anchor="middle" fill="#555">%s</text>', num(x + bw / 2),
        top + ph + 14, esc(util.fmt_duration(edge(k))))
    end
  end
  out[#out + 1] = fmt('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>', left, top + ph, left + pw, top + ph)
  out[#out + 1] = fmt('<text x="%d" y="%d" text-anchor="end" fill="#555">%d</text>', left - 4, top + 8, cmax)
  out[#out + 1] = fmt('<text x="%d" y="%d" text-anchor="end" fill="#555">0</text>', left - 4, top + ph)
  out[#out + 1] = fmt('<text x="%d" y="%d" fill="#555">latency (log scale); bar height = requests</text>', left, H - 4)
  local py = top + 12
  for _, k in ipairs({ 'p50', 'p90', 'p99', 'p99.9' }) do
    local v = opts.percentiles and opts.percentiles[k]
    local x = v and v > 0 and left + (math.log(v) / math.log(2) * sub - bmin) * bw
    if x and x >= left and x <= left + pw then
      out[#out + 1] = fmt('<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#d62728" stroke-dasharray="3 2"/>', num(x),
        top, num(x), top + ph)
      out[#out + 1] = fmt('<text x="%s" y="%d" fill="#d62728">%s %s</text>', num(x + 3), py, esc(k),
        esc(util.fmt_duration(v)))
      py = py + 12
    end
  end
  out[#out + 1] = '</svg>'
  return table.concat(out, '\n')
end

-- one colour per thread state: CPU warm, waits cool, idle-ish states grey
M.STATE_COLOURS = { cpu = '#d62728', runq = '#ff7f0e', lock = '#9467bd', io = '#8c564b', net = '#1f77b4',
  ipc = '#17becf', poll = '#c7c7c7', sleep = '#aec7e8', memory = '#e377c2', child = '#bcbd22', other = '#7f7f7f' }

--- Stacked bars of thread states: one bar per row, each the 100% of its
--- wall time split by state.
--- opts: title, states = { 'cpu', 'runq', ... } (order), labels = {state = text},
---       rows = { {label=, shares = {state = pct}} }, width
function M.state_bars(opts)
  util.validate('opts', opts, 'table')
  local rows, states = opts.rows or {}, opts.states or {}
  local W = opts.width or 720
  local left, right, top, barh, gap = 170, 20, 30, 16, 6
  local used = {}
  for _, r in ipairs(rows) do
    for _, st in ipairs(states) do
      if (r.shares[st] or 0) >= 0.05 then used[st] = true end
    end
  end
  local legend = {}
  for _, st in ipairs(states) do if used[st] then legend[#legend + 1] = st end end
  local legend_rows = math.ceil(#legend / 4)
  local H = top + #rows * (barh + gap) + 20 + legend_rows * 16
  local out = svg_open(W, H, opts.title or 'where the time goes')
  local pw = W - left - right
  if #rows == 0 then
    out[#out + 1] = fmt('<text x="%d" y="%d" fill="#666">not measured</text>', left, top + 12)
  end
  for i, r in ipairs(rows) do
    local y = top + (i - 1) * (barh + gap)
    out[#out + 1] = fmt('<text x="%d" y="%s" text-anchor="end" fill="#222">%s</text>', left - 6, num(y + barh - 4),
      esc(r.label))
    local x = left
    for _, st in ipairs(states) do
      local pct = r.shares[st] or 0
      if pct > 0 then
        local w = pct / 100 * pw
        out[#out + 1] = fmt('<rect x="%s" y="%d" width="%s" height="%d" fill="%s"><title>%s: %.1f%%</title></rect>',
          num(x), y, num(w), barh, M.STATE_COLOURS[st] or '#7f7f7f', esc((opts.labels or {})[st] or st), pct)
        if w >= 34 then
          out[#out + 1] = fmt('<text x="%s" y="%s" text-anchor="middle" fill="#fff" font-size="10">%.0f%%</text>',
            num(x + w / 2), num(y + barh - 4), pct)
        end
        x = x + w
      end
    end
  end
  local ly = top + #rows * (barh + gap) + 10
  for i, st in ipairs(legend) do
    local lx = left + ((i - 1) % 4) * (pw / 4)
    local yy = ly + math.floor((i - 1) / 4) * 16
    out[#out + 1] = fmt('<rect x="%s" y="%d" width="10" height="10" fill="%s"/>', num(lx), yy,
      M.STATE_COLOURS[st] or '#7f7f7f')
    out[#out + 1] = fmt('<text x="%s" y="%d" fill="#333">%s</text>', num(lx + 14), yy + 9,
      esc((opts.labels or {})[st] or st))
  end
  out[#out + 1] = '</svg>'
  return table.concat(out, '\n')
end

--- A latency heat map: x = time, y = latency bucket, colour = count.
--- opts.columns = { {t=, counts = {[bucket]=n}} }, opts.bucket_label(i) -> text,
--- buckets are log2 slots (bucket i covers [2^(i-1), 2^i) of opts.unit, default us).
function M.heatmap(opts)
  util.validate('opts', opts, 'table')
  local W, H = opts.width or 720, opts.height or 260
  local left, right, top, bottom = 64, 20, 28, 30
  local pw, ph = W - left - right, H - top - bottom
  local out = svg_open(W, H, opts.title or 'latency heat map')
  local cols = opts.columns or {}
  local bmin, bmax, cmax = math.huge, -math.huge, 0
  for _, c in ipairs(cols) do
    for i, n in pairs(c.counts or {}) do
      if n > 0 then
        if i < bmin then bmin = i end
        if i > bmax then bmax = i end
        if n > cmax then cmax = n end
      end
    end
  end
  if #cols == 0 or cmax == 0 then
    out[#out + 1] = fmt('<text x="%d" y="%d" fill="#666">not measured</text>', left, top + ph / 2)
    out[#out + 1] = '</svg>'
    return table.concat(out, '\n')
  end
  local label = opts.bucket_label or function(i) return util.fmt_duration(2 ^ (i - 1) / 1e6) end
  local nb = bmax - bmin + 1
  local cw, rh = pw / #cols, ph / nb
  local lc = math.log(cmax + 1)
  for ci, c in ipairs(cols) do
    for i, n in pairs(c.counts or {}) do
      if n > 0 then
        -- log colour scale: rare slow requests stay visible next to the bulk
        local a = math.log(n + 1) / lc
        local r = math.floor(255 - a * (255 - 180))
        local g = math.floor(255 - a * (255 - 30))
        local bl = math.floor(255 - a * (255 - 40))
        out[#out + 1] = fmt('<rect x="%s" y="%s" width="%s" height="%s" fill="#%02x%02x%02x"><title>%s: ' ..
          '%d</title></rect>',
          num(left + (ci - 1) * cw), num(top + ph - (i - bmin + 1) * rh), num(cw + 0.2), num(rh + 0.2), r, g, bl,
          esc(label(i)), n)
      end
    end
  end
  local every = math.max(1, math.ceil(nb / 8))
  for i = bmin, bmax do
    if (i - bmin) % every == 0 then
      out[#out + 1] = fmt('<text x="%d" y="%s" text-anchor="end" fill="#555">%s</text>', left - 4,
        num(top + ph - (i - bmin + 0.5) * rh + 4), esc(label(i)))
    end
  end
  local xevery = math.max(1, math.ceil(#cols / 8))
  for ci, c in ipairs(cols) do
    if (ci - 1) % xevery == 0 then
      out[#out + 1] = fmt('<text x="%s" y="%d" text-anchor="middle" fill="#555">%ss</text>',
        num(left + (ci - 0.5) * cw), top + ph + 16, esc(tostring(c.t or ci - 1)))
    end
  end
  out[#out + 1] = fmt('<text x="%d" y="%d" text-anchor="end" fill="#555">darker = more requests (max %d per ' ..
    'cell)</text>', W - right, 16, cmax)
  out[#out + 1] = '</svg>'
  return table.concat(out, '\n')
end

-- Terminal -----------------------------------------------------------------

local TICKS = { '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█' }

--- A one-line sparkline of values (nil values are shown as spaces).
function M.sparkline(values, opts)
  opts = opts or {}
  local lo, hi = opts.min, opts.max
  for i = 1, opts.n or table.maxn(values) do
    local v = values[i]
    if v ~= nil then
      if lo == nil or v < lo then lo = v end
      if hi == nil or v > hi then hi = v end
    end
  end
  local out = {}
  for i = 1, opts.n or table.maxn(values) do
    local v = values[i]
    if v == nil then out[i] = ' '
    elseif hi == lo then out[i] = TICKS[v > 0 and 4 or 1]
    else out[i] = TICKS[math.min(8, math.floor((v - lo) / (hi - lo) * 7 + 0.5) + 1)] end
  end
  return table.concat(out)
end

--- log2 bars of a histogram {{lo, hi, count}} (seconds): list of lines.
function M.log2_bars(buckets, width)
  width = width or 40
  local bins, kmin, kmax, cmax = {}, math.huge, -math.huge, 0
  for _, x in ipairs(buckets or {}) do
    local k = math.floor(math.log(math.max(x[1], 1e-7) * 1e6) / math.log(2) + 1e-9)
    bins[k] = (bins[k] or 0) + x[3]
    if k < kmin then kmin = k end
    if k > kmax then kmax = k end
  end
  for k = kmin, kmax do if (bins[k] or 0) > cmax then cmax = bins[k] end end
  local lines = {}
  if cmax == 0 then return lines end
  for k = kmin, kmax do
    local c = bins[k] or 0
    local n = math.floor(c / cmax * width + 0.5)
    if c > 0 and n == 0 then n = 1 end
    lines[#lines + 1] = fmt('%9s .. %-9s |%-' .. width .. 's| %d', util.fmt_duration(2 ^ k / 1e6),
      util.fmt_duration(2 ^ (k + 1) / 1e6), string.rep('#', n), c)
  end
  return lines
end

return M
