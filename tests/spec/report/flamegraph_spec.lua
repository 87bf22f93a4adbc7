local fold = require('perf_manual.fold')
local fg = require('perf_manual.report.flamegraph')

-- every frame of the SVG: {name, n, x, y, w, k, fill, label}
local function frames(svg)
  local out = {}
  for title, x, y, w, fill, n, k, label in svg:gmatch(
      '<g><title>(.-)</title><rect x="([%d%.]+)" y="([%d%.]+)" width="([%d%.]+)" height="[%d%.]+" '
      .. 'fill="(rgb%([%d,]+%))" data%-n="(%d+)" data%-k="(%a)"/><text [^>]*>(.-)</text></g>') do
    out[#out + 1] = { title = title, name = title:match('^(.*) %([%d,]+ samples'), n = tonumber(n),
      x = tonumber(x), y = tonumber(y), w = tonumber(w), fill = fill, k = k, label = label }
  end
  return out
end

-- A small well-formedness check: tags balance, text has no raw '<' or bare '&'.
local function well_formed(svg)
  local body = svg:gsub('<!%[CDATA%[.-%]%]>', '')
  body = body:gsub('^<%?xml[^>]*%?>', '')
  local stack = {}
  local pos = 1
  while true do
    local s, e, tag = body:find('<([^>]*)>', pos)
    local text = body:sub(pos, (s or #body + 1) - 1)
    if text:find('<', 1, true) then return false, 'raw < in text' end
    for amp in text:gmatch('&[^;%s]*;?') do
      if not amp:match('^&[#%w]+;$') then return false, 'bare & in text: ' .. amp end
    end
    if not s then break end
    if tag:sub(1, 1) == '/' then
      if table.remove(stack) ~= tag:sub(2) then return false, 'unbalanced </' .. tag:sub(2) .. '>' end
    elseif tag:sub(-1) ~= '/' then
      stack[#stack + 1] = tag:match('^([%w:]+)')
    end
    pos = e + 1
  end
  if #stack > 0 then return false, 'unclosed <' .. stack[#stack] .. '>' end
  return true
end

local function calltree()
  return assert(fold.from_perf_script(test_helpers.fixture('perf/calltree_user.perf.txt')))
end

describe('perf_manual.report.flamegraph', function()
  it('draws one frame per unique stack prefix, widths exact to the counts', function()
    local p = calltree()
    local svg, info = fg.render(p, { minwidth = 0 })
    assert.truthy(well_formed(svg))
    local fr = frames(svg)
    -- unique prefixes of every stack, plus the root
    local prefixes = {}
    for _, e in ipairs(p:stacks()) do
      local acc
      for f in e[1]:gmatch('[^;]+') do acc = acc and (acc .. ';' .. f) or f; prefixes[acc] = true end
    end
    local n = 0
    for _ in pairs(prefixes) do n = n + 1 end
    assert.equal(n + 1, #fr)
    assert.equal(#fr, info.frames)
    local scale = (1200 - 20) / p:total()
    local root
    for _, f in ipairs(fr) do
      assert.near(f.n * scale, f.w, 0.006)
      if f.k == 'a' then root = f end
    end
    assert.equal(p:total(), root.n)
    assert.equal('all', root.name)
    -- children never exceed their parent: for each frame, frames one row
    -- above inside its span sum to its count minus its self samples
    for _, parent in ipairs(fr) do
      local sum = 0
      for _, c in ipairs(fr) do
        local above = math.abs(c.y - (parent.y - 16)) < 0.01
        if above and c.x >= parent.x - 0.01 and c.x + c.w <= parent.x + parent.w + 0.01 then
          sum = sum + c.n
        end
      end
      assert.truthy(sum <= parent.n)
    end
  end)

  it('keeps a frame whole when a sibling name extends it (a;b, a;b!x, a;b;c)', function()
    local long = string.rep('f', 40)
    local p = fold.from_table({ ['a;' .. long] = 2, ['a;' .. long .. '!x'] = 3, ['a;' .. long .. ';c'] = 5,
      ['a;' .. long .. ' x;d'] = 7 })
    local count = {}
    for _, f in ipairs(frames((fg.render(p, { minwidth = 0 })))) do
      count[f.name] = (count[f.name] or 0) + 1
      if f.name == long then assert.equal(7, f.n) end
    end
    assert.equal(1, count[long])
    assert.equal(1, count[long .. '!x'])
    assert.equal(1, count[long .. ' x'])
  end)

  it('escapes frame names: <script> stays text', function()
    local p = fold.from_table({ ['app;<script>alert(1)</script>;a&b "q" \'x\''] = 5, ['app;bad\1byte\255'] = 5 })
    local svg = fg.render(p, { title = '<b>title</b>', subtitle = 'x & y' })
    assert.truthy(well_formed(svg))
    assert.is_nil(svg:find('<script>alert', 1, true))
    assert.is_nil(svg:find('<b>', 1, true))
    assert.truthy(svg:find('&lt;script&gt;alert(1)&lt;/script&gt; (5 samples, 50.00%)', 1, true))
    assert.truthy(svg:find('a&amp;b &quot;q&quot; &#39;x&#39; (5 samples', 1, true))
    assert.truthy(svg:find('bad?byte? (5 samples', 1, true))
    assert.truthy(svg:find('&lt;b&gt;title&lt;/b&gt;', 1, true))
    assert.truthy(svg:find('x &amp; y', 1, true))
    assert.equal('caf\195\169 ? ?x? \226\130\172', fg.utf8_clean('caf\195\169 \255 \195x\237 \226\130\172'))
    assert.equal('???', fg.utf8_clean('\237\160\128')) -- a UTF-16 surrogate is not UTF-8
    local t = fg.render(fold.new(), { title = 'bad \255 title' })
    assert.truthy(t:find('>bad ? title<', 1, true))
  end)

  it('prunes narrow frames but keeps their samples in the totals', function()
    local t = { ['app;big'] = 1000 }
    for i = 1, 50 do t['app;tiny' .. i .. ';leaf'] = 1 end
    local p = fold.from_table(t)
    local svg, info = fg.render(p, { minwidth = 5 })
    local fr = frames(svg)
    -- root, app, big: the 100 tiny frames (1 sample = 1.12 px) are gone
    assert.equal(3, #fr)
    assert.equal(100, info.pruned_frames)
    assert.equal(50, info.pruned_samples)
    for _, f in ipairs(fr) do
      if f.name == 'app' or f.k == 'a' then assert.equal(1050, f.n) end
    end
    assert.truthy(svg:find('100 narrow frames not drawn (their 50 samples', 1, true))
    -- "N%" is a share of the width
    assert.near(11.8, fg.minwidth_px('1%', 1200), 1e-9)
  end)

  it('draws icicles with the root at the top', function()
    local p = calltree()
    local function root_y(svg)
      for _, f in ipairs(frames(svg)) do if f.k == 'a' then return f.y end end
    end
    local up = fg.render(p, {})
    local down = fg.render(p, { inverted = true })
    assert.equal(64, root_y(down))
    local maxy = 0
    for _, f in ipairs(frames(up)) do maxy = math.max(maxy, f.y) end
    assert.equal(maxy, root_y(up))
    assert.truthy(down:find('data-inverted="1"', 1, true))
    assert.truthy(down:find('>Icicle Graph<', 1, true))
  end)

  it('colours frames by kind', function()
    local p = fold.from_table({ ['app;main;read;sys_read_[k]'] = 10, ['app;main;Lfoo;.bar_[j]'] = 10,
      ['app;main;inl_[i]'] = 10 })
    local kinds = {}
    for _, f in ipairs(frames(fg.render(p, {}))) do
      local r, g, b = f.fill:match('rgb%((%d+),(%d+),(%d+)%)')
      kinds[f.k] = { tonumber(r), tonumber(g), tonumber(b) }
    end
    assert.truthy(kinds.k[1] >= 225 and kinds.k[2] >= 160) -- amber kernel
    assert.truthy(kinds.j[2] >= 190 and kinds.j[1] <= 120) -- green JIT
    assert.truthy(kinds.u[1] >= 205 and kinds.u[2] <= 130) -- red user
    local blue = frames(fg.render(p, { colors = 'offcpu' }))
    for _, f in ipairs(blue) do
      if f.k ~= 'a' then
        local r, _, b = f.fill:match('rgb%((%d+),(%d+),(%d+)%)')
        assert.truthy(tonumber(b) >= 190 and tonumber(r) <= 40)
      end
    end
    assert.has_error(function() fg.render(p, { colors = 'plaid' }) end)
  end)

  it('writes the title and a subtitle from the profile facts', function()
    local svg = fg.render(calltree(), { title = 'calltree on-CPU',
      meta = { target = 'pid 14478', duration = 1, samples = 40, lost = 0 } })
    assert.truthy(svg:find('>calltree on%-CPU<'))
    assert.truthy(svg:find('target: pid 14478 · duration: 1.00s · 40 samples · lost samples: 0', 1, true))
    local s2 = fg.render(calltree(), { meta = { samples = 40 } })
    assert.truthy(s2:find('lost samples: not measured', 1, true))
    local s3 = fg.render(fold.from_table({ ['app;read'] = 1500 }), { unit = 'us', colors = 'offcpu' })
    assert.truthy(s3:find('<title>read (1,500 us, 100.00%)</title>', 1, true))
  end)

  it('draws an empty but valid SVG for an empty profile', function()
    local svg, info = fg.render(fold.new(), {})
    assert.truthy(well_formed(svg))
    assert.equal(0, #frames(svg))
    assert.equal(0, info.frames)
    assert.truthy(svg:find('No samples', 1, true))
    assert.truthy(svg:find('</svg>\n$'))
  end)

  it('labels only frames wide enough, cutting long names with ..', function()
    local p = fold.from_table({ ['app;' .. string.rep('x', 300)] = 10, ['app;short'] = 1000 })
    for _, f in ipairs(frames(fg.render(p, {}))) do
      if f.name and f.name:sub(1, 3) == 'xxx' then
        assert.equal('', f.label)  -- 11 px: no room
      elseif f.name == 'short' then
        assert.equal('short', f.label)
      end
    end
    local q = fold.from_table({ ['app;' .. string.rep('y', 300)] = 10 })
    for _, f in ipairs(frames(fg.render(q, {}))) do
      if f.name and f.name:sub(1, 3) == 'yyy' then assert.matches('^y+%.%.$', f.label) end
    end
  end)

  describe('the flamegraph command', function()
    local h = test_helpers
    it('draws folded stacks from a file or stdin', function()
      local path = os.tmpname()
      local f = io.open(path, 'w'); f:write('app;main;work 30\napp;main;idle 10\n'); f:close()
      local out, err, status = h.pm('flamegraph --title "My <app>" --inverted ' .. path)
      assert.equal(0, status, err)
      assert.truthy(well_formed(out))
      assert.truthy(out:find('>My &lt;app&gt;<', 1, true))
      assert.truthy(out:find('data-inverted="1"', 1, true))
      assert.equal(5, #frames(out))
      local out2 = h.pm('flamegraph --title "My <app>" --inverted < ' .. path)
      assert.equal(out, out2)
      -- perf script text goes through the folder first
      local out3, _, st3 = h.pm('flamegraph ' .. h.root .. '/tests/fixtures/perf/calltree_user.perf.txt')
      assert.equal(0, st3)
      assert.truthy(out3:find('<title>alpha (', 1, true))
      os.remove(path)
    end)

    it('writes an empty flame graph for no samples, and says so', function()
      local out, err, status = h.pm('flamegraph /dev/null')
      assert.equal(0, status)
      assert.truthy(well_formed(out))
      assert.equal('perf_manual: flamegraph: /dev/null: no samples; writing an empty flame graph\n', err)
    end)

    it('rejects bad options and bad lines under --strict', function()
      local _, err, status = h.pm('flamegraph --minwidth wide /dev/null')
      assert.equal(2, status)
      assert.equal("perf_manual: flamegraph: bad value for --minwidth 'wide': expected pixels or N%\n", err)
      local path = os.tmpname()
      local f = io.open(path, 'w'); f:write('a;b 1\na;b\n'); f:close()
      local _, err2, status2 = h.pm('flamegraph --strict - < ' .. path)
      os.remove(path)
      assert.equal(2, status2)
      assert.equal('perf_manual: flamegraph: <stdin>: line 2: no sample count at the end of the line\n', err2)
    end)
  end)
end)
