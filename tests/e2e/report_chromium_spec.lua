-- The HTML report and the slide deck as a browser sees them: headless
-- Chromium loads the files (no network), takes screenshots, dumps the DOM
-- after the scripts ran, prints the deck to PDF, and presses keys in the deck
-- through playwright-core (tests/e2e/slides_keys.mjs).
local h = test_helpers
package.path = h.root .. '/tests/spec/?.lua;' .. package.path
local mk = require('report.make_investigation')
local cjson = require('cjson')

local CHROMIUM = '/usr/bin/chromium'
local FLAGS = '--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking '
  .. '--disable-component-update --disable-sync --hide-scrollbars'

local function slurp(p)
  local f = io.open(p, 'rb'); if not f then return nil end
  local s = f:read('*a'); f:close(); return s
end

local function have_chromium()
  if io.open(CHROMIUM) then return true end
  local why = 'chromium is not installed (apt-get install chromium)'
  if os.getenv('PM_REQUIRE_BPF') == '1' then error(why) end
  pending(why)
  return false
end

-- node and playwright-core (make deps puts it in build/node) drive the real
-- key presses; missing them is a failure in CI, like a missing chromium
local PLAYWRIGHT = h.root .. '/build/node/node_modules/playwright-core/package.json'
local function have_node()
  local why
  local rc = os.execute('command -v node >/dev/null 2>&1')
  if rc ~= 0 and rc ~= true then why = 'node is not installed (make deps)'
  elseif not io.open(PLAYWRIGHT) then why = 'playwright-core is not in build/node (make deps)' end
  if not why then return true end
  if os.getenv('PM_REQUIRE_BPF') == '1' then error(why) end
  pending(why)
  return false
end

-- tests/e2e/slides_keys.mjs: presses keys in the deck; returns one decoded
-- state per line (as loaded, then after each key)
local function press(dir, deck, args)
  local out, err = dir .. '/keys.out', dir .. '/keys.err'
  local rc = os.execute(string.format("node '%s/tests/e2e/slides_keys.mjs' '%s' %s >'%s' 2>'%s'",
    h.root, deck, args, out, err))
  assert(rc == 0 or rc == true, 'slides_keys.mjs failed: ' .. (slurp(err) or '') .. (slurp(out) or ''))
  local states = {}
  for line in slurp(out):gmatch('[^\n]+') do states[#states + 1] = cjson.decode(line) end
  return states
end

-- runs chromium with a fresh profile dir; returns stdout
local function chromium(dir, args, url)
  local profile = dir .. '/chromium-profile-' .. math.random(1e9)
  local out = dir .. '/chromium.out'
  local cmd = string.format("%s %s --user-data-dir='%s' %s '%s' >'%s' 2>/dev/null",
    CHROMIUM, FLAGS, profile, args, url, out)
  os.execute(cmd)
  os.execute("rm -rf '" .. profile .. "'")
  return slurp(out) or ''
end

-- width and height from a PNG's IHDR chunk
local function png_size(data)
  assert(data and data:sub(1, 8) == '\137PNG\r\n\26\n', 'not a PNG')
  local function u32(i) local a, b, c, d = data:byte(i, i + 3); return ((a * 256 + b) * 256 + c) * 256 + d end
  return u32(17), u32(21)
end

describe('report and slides in headless Chromium', function()
  local dir
  setup(function() dir = mk.make() end)
  teardown(function() mk.remove(dir) end)

  it('renders the technical report: DOM has every section and chart, screenshot is drawn', function()
    if not have_chromium() then return end
    local html = dir .. '/report.html'
    local _, err, status = h.pm(string.format("report '%s' --output '%s'", dir, html))
    assert.equal(0, status, err)
    local dom = chromium(dir, '--window-size=1280,900 --virtual-time-budget=2000 --dump-dom', 'file://' .. html)
    assert.matches('<h1 id="title">Performance Investigation Report: slow%-api</h1>', dom)
    local svgs = select(2, dom:gsub('<svg', ''))
    assert.is_true(svgs >= 5, 'svg elements in the DOM: ' .. svgs)
    assert.matches('<table id="use">', dom)
    assert.matches('<table id="fix%-validation">', dom)
    -- findings before the details, the timeline last
    local function at(s) return assert(dom:find(s, 1, true), s .. ' missing') end
    assert.is_true(at('id="root-cause"') < at('id="fix-and-validation"'))
    assert.is_true(at('id="fix-and-validation"') < at('id="recommendations"'))
    assert.is_true(at('id="recommendations"') < at('<table id="use">'))
    assert.is_true(at('<table id="use">') < at('id="timeline"'))
    -- the hostile symptom stayed text in the live DOM
    assert.is_nil(dom:find('<script>alert', 1, true))
    assert.matches('&lt;script&gt;alert', dom)
    local png = dir .. '/report.png'
    chromium(dir, '--window-size=1280,900 --screenshot=' .. png, 'file://' .. html)
    local data = slurp(png)
    assert.same({ 1280, 900 }, { png_size(data) })
    -- a blank white page compresses to a few KB; text, tables and colours do not
    assert.is_true(#data > 20000, 'screenshot is ' .. #data .. ' bytes')
  end)

  it('moves between slides by URL and keyboard script, and prints one slide per PDF page', function()
    if not have_chromium() then return end
    local deck = dir .. '/deck.html'
    local _, err, status = h.pm(string.format("present --slides --data '%s' --output '%s'", dir, deck))
    assert.equal(0, status, err)
    local dom = chromium(dir, '--window-size=1280,720 --virtual-time-budget=2000 --dump-dom', 'file://' .. deck)
    assert.matches('<section class="slide title%-slide active" id="s%-title">', dom)
    assert.matches('<div class="footer" id="counter">1 / 8</div>', dom)
    -- findings first: the root cause is the third slide, the USE table the sixth
    dom = chromium(dir, '--window-size=1280,720 --virtual-time-budget=2000 --dump-dom', 'file://' .. deck .. '#3')
    assert.matches('<section class="slide active" id="s%-root%-cause">', dom)
    assert.matches('<div class="footer" id="counter">3 / 8</div>', dom)
    dom = chromium(dir, '--window-size=1280,720 --virtual-time-budget=2000 --dump-dom', 'file://' .. deck .. '#6')
    assert.matches('<section class="slide active" id="s%-use">', dom)
    local png = dir .. '/slide5.png'
    chromium(dir, '--window-size=1280,720 --virtual-time-budget=2000 --screenshot=' .. png, 'file://' .. deck .. '#5')
    assert.same({ 1280, 720 }, { png_size(slurp(png)) })
    local pdf = dir .. '/deck.pdf'
    chromium(dir, '--no-pdf-header-footer --print-to-pdf=' .. pdf, 'file://' .. deck)
    local data = assert(slurp(pdf), 'no PDF written')
    assert.equal('%PDF', data:sub(1, 4))
    local pages = select(2, data:gsub('/Type%s*/Page[^s]', ''))
    assert.equal(8, pages)
  end)

  it('moves between slides on real key presses; the counter and the URL fragment follow', function()
    if not have_chromium() or not have_node() then return end
    local deck = dir .. '/deck-keys.html'
    local _, err, status = h.pm(string.format("present --slides --data '%s' --output '%s'", dir, deck))
    assert.equal(0, status, err)
    local ids = { 's-title', 's-symptom', 's-root-cause', 's-fix', 's-recommendations', 's-use', 's-chart',
      's-flamegraph' }
    -- key pressed, slide number expected after it
    local steps = {
      { false, 1 }, { 'ArrowRight', 2 }, { 'ArrowDown', 3 }, { 'PageDown', 4 }, { 'Space', 5 },
      { 'ArrowLeft', 4 }, { 'ArrowUp', 3 }, { 'PageUp', 2 }, { 'Shift+Space', 1 },
      { 'ArrowLeft', 1 }, { 'PageUp', 1 },             -- stays on the first
      { 'End', 8 }, { 'ArrowRight', 8 }, { 'Space', 8 }, -- stays on the last
      { 'ArrowLeft', 7 }, { 'Home', 1 }, { 'End', 8 }, { 'Home', 1 },
      -- browser shortcuts are left to the browser
      { 'ArrowRight', 2 }, { 'Alt+ArrowRight', 2 }, { 'Alt+ArrowLeft', 2 }, { 'Control+End', 2 },
      { 'Escape', 2 }, { 'Enter', 2 }, { 'a', 2 },
    }
    local keys = {}
    for i = 2, #steps do keys[#keys + 1] = "'" .. steps[i][1] .. "'" end
    local states = press(dir, deck, table.concat(keys, ' '))
    assert.equal(#steps, #states)
    for i, st in ipairs(states) do
      local key, n = steps[i][1], steps[i][2]
      local want = { key = key or cjson.null, visible = { ids[n] }, active = { ids[n] },
        counter = n .. ' / 8', hash = '#' .. n }
      assert.same(want, st, 'after step ' .. i .. ' (' .. tostring(key) .. ')')
    end
    -- a deck opened at #6 starts there and moves on from there
    states = press(dir, deck, "--hash 6 'PageDown' 'PageUp' 'PageUp'")
    local got = {}
    for i, st in ipairs(states) do got[i] = st.counter .. ' ' .. st.hash .. ' ' .. st.visible[1] end
    assert.same({ '6 / 8 #6 s-use', '7 / 8 #7 s-chart', '6 / 8 #6 s-use', '5 / 8 #5 s-recommendations' }, got)
  end)
end)
