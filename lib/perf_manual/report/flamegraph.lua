--- Flame graph SVG: an interactive, self-contained SVG of a profile.
---
---   local fg = require('perf_manual.report.flamegraph')
---   local svg, info = fg.render(profile, { title = 'CPU', inverted = false })
---   fg.write(io.stdout, profile, opts)   -- same, streamed to a file handle
---
--- `profile` is a perf_manual.fold profile (or folded text). Options:
---   title, subtitle      text at the top (escaped); without a subtitle one is
---                        made from `meta`
---   meta                 { target=, duration= (s), samples=, lost=, unit= }
---                        ("lost samples: not measured" when lost is nil)
---   inverted             icicle graph: roots at the top
---   minwidth             narrowest frame drawn, in pixels (0.1), or "N%" of
---                        the width; pruned frames' samples stay in their
---                        ancestors' widths and are counted in info
---   colors               a palette of perf_manual.report.palettes by name:
---                        "kind" (default: user red-yellow, kernel _[k] orange,
---                        JIT _[j] green, inline _[i] aqua, off-CPU _[o] blue),
---                        "hot", "offcpu" (all blue), "mem" (green); or a
---                        palette table of the same shape (a team's own)
---   width                pixels (1200)
---   unit                 what a count is ("samples", "us" for off-CPU time)
---
--- Frame widths are exact to the counts: width = count * (width - 20) / total.
--- Each frame is `<g><title>NAME (N samples, P%)</title><rect ... data-n="N"
--- data-k="KIND"/><text>label</text></g>`. In a browser: hover shows details,
--- click zooms (`?zoom=REGEX` in the URL opens zoomed into the widest match),
--- "Reset Zoom" resets, "Search" (or Ctrl-F, or `?s=REGEX` in the URL)
--- highlights matches and shows the share of samples matched.
--- `info` = { frames=, pruned_frames=, pruned_samples=, total=, max_depth= }.
local util = require('perf_manual.util')
local PALETTES = require('perf_manual.report.palettes')

local M = {}

local WIDTH, XPAD, FRAME_H, TOP, FONT, FONT_W = 1200, 10, 16, 64, 12, 0.59

--- s with every byte that is not part of valid UTF-8 replaced by '?'.
local function utf8_clean(s)
  if not s:find('[\128-\255]') then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local need = c < 0x80 and 1 or (c >= 0xc2 and c <= 0xdf) and 2 or (c >= 0xe0 and c <= 0xef) and 3
      or (c >= 0xf0 and c <= 0xf4) and 4 or 0
    local ok = need > 0 and i + need - 1 <= n
    for k = 1, need - 1 do
      local d = ok and s:byte(i + k)
      if not d or d < 0x80 or d > 0xbf then ok = false end
    end
    if ok and need == 3 then
      local d = s:byte(i + 1)
      if (c == 0xe0 and d < 0xa0) or (c == 0xed and d >= 0xa0) then ok = false end
    elseif ok and need == 4 then
      local d = s:byte(i + 1)
      if (c == 0xf0 and d < 0x90) or (c == 0xf4 and d >= 0x90) then ok = false end
    end
    if ok then
      out[#out + 1] = s:sub(i, i + need - 1)
      i = i + need
    else
      out[#out + 1] = '?'
      i = i + 1
    end
  end
  return table.concat(out)
end
M.utf8_clean = utf8_clean

local function esc(s)
  s = utf8_clean(tostring(s)):gsub('[%z\1-\8\11\12\14-\31\127]', '?')
  return (s:gsub('[&<>"\']', { ['&'] = '&amp;', ['<'] = '&lt;', ['>'] = '&gt;', ['"'] = '&quot;', ["'"] = '&#39;' }))
end
M.escape = esc

local function commas(n)
  local s = string.format('%d', n)
  local out = s:reverse():gsub('(%d%d%d)', '%1,'):reverse()
  return (out:gsub('^,', ''))
end
M.commas = commas

--- The subtitle made from meta: "target … · 10.0s · 4,321 samples · lost samples: 0".
function M.subtitle(meta)
  if not meta then return nil end
  local parts = {}
  if meta.target then parts[#parts + 1] = 'target: ' .. tostring(meta.target) end
  if meta.duration then parts[#parts + 1] = 'duration: ' .. util.fmt_duration(meta.duration) end
  if meta.samples then parts[#parts + 1] = commas(meta.samples) .. ' ' .. (meta.unit or 'samples') end
  if meta.lost then
    parts[#parts + 1] = 'lost samples: ' .. commas(meta.lost)
  else
    parts[#parts + 1] = 'lost samples: not measured'
  end
  return table.concat(parts, ' · ')
end

-- The page script: written for this project (hover, zoom, search).
local SCRIPT = [[
"use strict";
var svg, frames = [], details, matchedText, resetBtn, searchBtn, searching = null;
var XPAD = 10, PLOT = 0, CW = 7;
function num(e, a) { return parseFloat(e.getAttribute(a)); }
function init(evt) {
  svg = document.documentElement;
  details = document.getElementById("details");
  matchedText = document.getElementById("matched");
  resetBtn = document.getElementById("reset");
  searchBtn = document.getElementById("search");
  PLOT = num(svg, "width") - 2 * XPAD;
  CW = num(svg, "data-fontsize") * num(svg, "data-fontwidth");
  var gs = document.getElementById("frames").getElementsByTagName("g");
  for (var i = 0; i < gs.length; i++) {
    var g = gs[i], r = g.getElementsByTagName("rect")[0], t = g.getElementsByTagName("title")[0];
    var title = t.textContent, m = /^([\s\S]*) \([\d,]+ [^,]*, /.exec(title);
    var f = { g: g, r: r, t: g.getElementsByTagName("text")[0], name: m ? m[1] : title,
              x: num(r, "x"), w: num(r, "width"), y: num(r, "y"), n: num(r, "data-n"),
              fill: r.getAttribute("fill"), root: r.getAttribute("data-k") === "a" };
    frames.push(f);
    g.addEventListener("mouseover", (function (tt) { return function () { details.textContent = tt; }; })(title));
    g.addEventListener("mouseout", function () { details.textContent = " "; });
    g.addEventListener("click", (function (ff) { return function () { zoom(ff); }; })(f));
  }
  resetBtn.addEventListener("click", unzoom);
  searchBtn.addEventListener("click", function () { if (searching) clearSearch(); else askSearch(); });
  window.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && e.keyCode === 70) { e.preventDefault(); askSearch(); }
    if (e.keyCode === 27) { clearSearch(); unzoom(); }
  });
  var q = /[?&]s=([^&]*)/.exec(window.location.search || "");
  if (q) search(decodeURIComponent(q[1].replace(/\+/g, " ")));
  // ?zoom=REGEX: open zoomed into the widest frame whose name matches
  var z = /[?&]zoom=([^&]*)/.exec(window.location.search || "");
  if (z) {
    var re = new RegExp(decodeURIComponent(z[1].replace(/\+/g, " "))), best = null;
    for (var k = 0; k < frames.length; k++) {
      if (!frames[k].root && re.test(frames[k].name) && (!best || frames[k].w > best.w)) best = frames[k];
    }
    if (best) zoom(best);
  }
}
function label(f, w) {
  var fit = Math.floor((w - 3) / CW);
  if (fit < 3) return "";
  return f.name.length <= fit ? f.name : f.name.substring(0, fit - 2) + "..";
}
function place(f, x, w) {
  f.r.setAttribute("x", x.toFixed(2)); f.r.setAttribute("width", w.toFixed(2));
  f.t.setAttribute("x", (x + 3).toFixed(2)); f.t.textContent = label(f, w);
}
function zoom(z) {
  var inv = svg.getAttribute("data-inverted") === "1", scale = PLOT / z.w;
  resetBtn.setAttribute("class", "");
  for (var i = 0; i < frames.length; i++) {
    var f = frames[i], inside = f.x >= z.x - 0.0001 && f.x + f.w <= z.x + z.w + 0.0001;
    var above = inv ? f.y < z.y : f.y > z.y;
    f.g.setAttribute("class", "");
    if (above && f.x <= z.x + 0.0001 && f.x + f.w >= z.x + z.w - 0.0001) {
      place(f, XPAD, PLOT); f.g.setAttribute("class", "parent");
    } else if (inside && !above) {
      place(f, XPAD + (f.x - z.x) * scale, f.w * scale);
    } else {
      f.g.setAttribute("class", "hide");
    }
  }
}
function unzoom() {
  resetBtn.setAttribute("class", "hide");
  for (var i = 0; i < frames.length; i++) {
    frames[i].g.setAttribute("class", ""); place(frames[i], frames[i].x, frames[i].w);
  }
}
function askSearch() {
  var term = window.prompt("Search frames (regular expression):", searching || "");
  if (term) search(term);
}
function search(term) {
  var re;
  try { re = new RegExp(term); } catch (e) { matchedText.textContent = "bad expression: " + term; return; }
  clearSearch();
  var spans = [], total = 0;
  for (var i = 0; i < frames.length; i++) {
    var f = frames[i];
    if (f.root) { total = f.n; continue; }
    if (re.test(f.name)) {
      f.r.setAttribute("fill", "rgb(230,0,230)"); f.g.setAttribute("data-match", "1");
      spans.push([f.x, f.x + f.w, f.n]);
    }
  }
  // nested matches count once: merge overlapping spans, counting samples
  spans.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; });
  var matched = 0, end = -1;
  for (var j = 0; j < spans.length; j++) {
    if (spans[j][0] >= end - 0.0001) { matched += spans[j][2]; end = spans[j][1]; }
    else if (spans[j][1] > end + 0.0001) { end = spans[j][1]; }
  }
  var pct = total > 0 ? 100 * matched / total : 0;
  searching = term;
  svg.setAttribute("data-matched", pct.toFixed(2));
  searchBtn.textContent = "Clear search";
  matchedText.textContent = "Matched: " + pct.toFixed(2) + "% (" + spans.length + " frames)";
}
function clearSearch() {
  searching = null;
  for (var i = 0; i < frames.length; i++) {
    var f = frames[i];
    if (f.g.getAttribute("data-match")) { f.r.setAttribute("fill", f.fill); f.g.removeAttribute("data-match"); }
  }
  svg.removeAttribute("data-matched");
  searchBtn.textContent = "Search";
  matchedText.textContent = " ";
}
]]

local STYLE = [[
text { font-family: Verdana, sans-serif; font-size: 12px; fill: #000; }
#title { font-size: 17px; } #subtitle { fill: #555; }
#frames g { cursor: pointer; } #frames g:hover rect { stroke: #000; stroke-width: 0.5; }
#frames text { pointer-events: none; }
.hide { display: none; } .parent { opacity: 0.55; }
#reset, #search { cursor: pointer; fill: #335; }
]]

local function to_profile(p)
  if type(p) == 'string' then
    local fold = require('perf_manual.fold')
    local prof, stats = fold.from_folded(p)
    if not prof then error('[perf_manual.report.flamegraph] ' .. tostring(stats), 3) end
    return prof
  end
  if type(p) ~= 'userdata' then error('[perf_manual.report.flamegraph] expected a profile or folded text', 3) end
  return p
end

local function minwidth_px(v, width)
  if v == nil then return 0.1 end
  if type(v) == 'number' then return v end
  local pct = tostring(v):match('^%s*([%d%.]+)%%%s*$')
  if pct then return tonumber(pct) / 100 * (width - 2 * XPAD) end
  local n = tonumber(v)
  if not n or n < 0 then
    error("[perf_manual.report.flamegraph] minwidth: expected pixels or 'N%', got " .. tostring(v), 3)
  end
  return n
end
M.minwidth_px = minwidth_px

M.palettes = PALETTES
M.COLORS = { 'kind', 'hot', 'offcpu', 'mem' }

local KINDS = { kernel = 'k', jit = 'j', inline = 'i', offcpu = 'o', user = 'u' }
local MAX_RULES = 64 -- what the C side holds
local GREY = { 200, 200, 200 }

local function is_byte(v) return type(v) == 'number' and v >= 0 and v <= 255 end

local function rgb(v, what)
  if type(v) ~= 'table' or not (is_byte(v[1]) and is_byte(v[2]) and is_byte(v[3])) then
    return nil, what .. ': expected {r, g, b} with values 0..255'
  end
  return { v[1], v[2], v[3] }
end

-- a rule's channel, {from, to, n} or a fixed value, as C takes it: {base, span, n}
local function channel(v, what)
  if is_byte(v) then return { v, 0, 1 } end
  if type(v) == 'table' and is_byte(v[1]) and is_byte(v[2]) and (v[3] == 1 or v[3] == 2 or v[3] == 3) then
    return { v[1], v[2] - v[1], v[3] }
  end
  return nil, what .. ': expected a value 0..255 or {from, to, n} (n = 1, 2 or 3)'
end

local function list(v) return type(v) == 'table' and v or { v } end

--- A palette (see perf_manual.report.palettes) checked and put in the form
--- profile:svg_frames takes. Returns it | nil, err.
function M.compile_palette(p)
  if type(p) ~= 'table' then return nil, 'expected a palette table' end
  local root, err = rgb(p.root or GREY, 'root')
  if not root then return nil, err end
  if p.diff ~= nil then
    local d = p.diff
    if type(d) ~= 'table' then return nil, 'diff: expected a table' end
    local grow, shrink
    grow, err = rgb(d.grow, 'diff.grow')
    if grow then shrink, err = rgb(d.shrink, 'diff.shrink') end
    if not shrink then return nil, err end
    if not is_byte(d.fade) then return nil, 'diff.fade: expected a value 0..255' end
    return { root = root, diff = { grow = grow, shrink = shrink, fade = d.fade } }
  end
  if type(p.rules) ~= 'table' then return nil, 'expected rules = { ... } or diff = { ... }' end
  local rules = {}
  for i, r in ipairs(p.rules) do
    local what = 'rule ' .. i
    if type(r) ~= 'table' then return nil, what .. ': expected a table' end
    local kinds = ''
    if r.kind ~= nil then
      for _, k in ipairs(list(r.kind)) do
        if not KINDS[k] then
          return nil, what .. ': unknown kind ' .. tostring(k) .. ' (kernel, jit, inline, offcpu, user)'
        end
        kinds = kinds .. KINDS[k]
      end
      if kinds == '' then return nil, what .. ': kind: empty list' end
    end
    local c = {}
    for _, ch in ipairs({ 'r', 'g', 'b' }) do
      c[ch], err = channel(r[ch], what .. ' ' .. ch)
      if not c[ch] then return nil, err end
    end
    -- a list of substrings: one C rule per substring, same colours
    local needles = r.contains == nil and { false } or list(r.contains)
    if #needles == 0 then return nil, what .. ': contains: empty list' end
    for _, s in ipairs(needles) do
      if s ~= false and (type(s) ~= 'string' or s == '') then
        return nil, what .. ': contains: expected a non-empty string or a list of them'
      end
      rules[#rules + 1] = { kinds = kinds ~= '' and kinds or nil, contains = s or nil, r = c.r, g = c.g, b = c.b }
    end
  end
  if #rules > MAX_RULES then return nil, 'more than ' .. MAX_RULES .. ' rules' end
  return { root = root, rules = rules }
end

-- `colors`: a name in perf_manual.report.palettes or a palette table. Checked
-- on every call: a handful of rules, and the tables may change between calls.
local function palette_for(colors)
  local p = colors
  if type(colors) ~= 'table' then
    p = PALETTES[colors]
    if not p then error('[perf_manual.report.flamegraph] unknown colors: ' .. tostring(colors), 3) end
  end
  local c, err = M.compile_palette(p)
  if not c then error('[perf_manual.report.flamegraph] colors: ' .. err, 3) end
  return c
end

--- Writes the SVG in parts through `emit(str)`. Returns info.
function M.emit(emit, profile, opts)
  opts = opts or {}
  util.validate('opts', opts, 'table')
  profile = to_profile(profile)
  local width = opts.width or WIDTH
  local palette = palette_for(opts.colors or 'kind')
  local frames, info = profile:svg_frames({
    width = width, xpad = XPAD, frame_height = FRAME_H, top = TOP, font_size = FONT, font_width = FONT_W,
    minwidth = minwidth_px(opts.minwidth, width), inverted = opts.inverted and true or false,
    palette = palette, before = opts.before, unit = opts.unit,
  })
  local total = profile:total()
  local height = (total > 0 and info.bottom or TOP + 40) + 46
  local title = opts.title or (opts.inverted and 'Icicle Graph' or 'Flame Graph')
  local subtitle = opts.subtitle or M.subtitle(opts.meta)
  emit(string.format('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    .. '<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'data-inverted="%s" data-fontsize="%g" data-fontwidth="%g" data-total="%d" data-unit="%s" onload="init(evt)">\n',
    width, height, width, height, opts.inverted and '1' or '0', FONT, FONT_W, total, esc(opts.unit or 'samples')))
  emit('<style type="text/css"><![CDATA[' .. STYLE .. ']]></style>\n')
  emit('<script type="text/ecmascript"><![CDATA[' .. SCRIPT .. ']]></script>\n')
  emit(string.format('<rect x="0" y="0" width="%d" height="%d" fill="#f6f6f2"/>\n', width, height))
  emit(string.format('<text id="title" x="%d" y="24" text-anchor="middle">%s</text>\n', width / 2, esc(title)))
  if subtitle and subtitle ~= '' then
    emit(string.format('<text id="subtitle" x="%d" y="44" text-anchor="middle">%s</text>\n', width / 2, esc(subtitle)))
  end
  emit('<text id="reset" class="hide" x="10" y="24">Reset Zoom</text>\n')
  emit(string.format('<text id="search" x="%d" y="24" text-anchor="end">Search</text>\n', width - 10))
  emit(string.format('<text id="details" x="10" y="%d"> </text>\n', height - 26))
  local prune_note = ''
  if info.pruned_frames > 0 then
    prune_note = string.format('%s narrow frames not drawn (their %s %s are in their parents\' widths)',
      commas(info.pruned_frames), commas(info.pruned_samples), opts.unit or 'samples')
  end
  emit(string.format('<text id="pruned" x="10" y="%d" fill="#777">%s</text>\n', height - 8, esc(prune_note)))
  emit(string.format('<text id="matched" x="%d" y="%d" text-anchor="end"> </text>\n', width - 10, height - 26))
  if total == 0 then
    emit(string.format('<text id="empty" x="%d" y="%d" text-anchor="middle">%s</text>\n', width / 2, TOP + 20,
      esc(opts.empty_message or 'No samples: the profile is empty')))
  end
  emit('<g id="frames">\n')
  emit(frames)
  emit('</g>\n</svg>\n')
  info.height = height
  return info
end

--- SVG text of a profile. Returns svg, info.
function M.render(profile, opts)
  local parts = {}
  local info = M.emit(function(s) parts[#parts + 1] = s end, profile, opts)
  return table.concat(parts), info
end

--- Writes the SVG to an open file handle. Returns info.
function M.write(fh, profile, opts)
  return M.emit(function(s) fh:write(s) end, profile, opts)
end

--- Writes the SVG to a path atomically. Returns info | nil, err.
function M.write_file(path, profile, opts)
  local svg, info = M.render(profile, opts)
  local ok, err = util.write_atomic(path, svg)
  if not ok then return nil, err end
  return info
end

return M
