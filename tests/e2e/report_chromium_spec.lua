-- The HTML report and the slide deck as a browser sees them: headless
-- Chromium loads the files (no network), takes screenshots, dumps the DOM
-- after the scripts ran, and prints the deck to PDF.
local h = test_helpers
package.path = h.root .. '/tests/spec/?.lua;' .. package.path
local mk = require('report.make_investigation')

local CHROMIUM = '/usr/bin/chromium'
local FLAGS = '--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking '
  .. '--disable-component-update --disable-sync --hide-scrollbars'

local function slurp(p) local f = io.open(p, 'rb'); if not f then return nil end local s = f:read('*a'); f:close(); return s end

local function have_chromium()
  if io.open(CHROMIUM) then return true end
  local why = 'chromium is not installed (apt-get install chromium)'
  if os.getenv('PM_REQUIRE_BPF') == '1' then error(why) end
  pending(why)
  return false
end

-- runs chromium with a fresh profile dir; returns stdout
local function chromium(dir, args, url)
  local profile = dir .. '/chromium-profile-' .. math.random(1e9)
  local out = dir .. '/chromium.out'
  local cmd = string.format("%s %s --user-data-dir='%s' %s '%s' >'%s' 2>/dev/null", CHROMIUM, FLAGS, profile, args, url, out)
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
    dom = chromium(dir, '--window-size=1280,720 --virtual-time-budget=2000 --dump-dom', 'file://' .. deck .. '#3')
    assert.matches('<section class="slide active" id="s%-use">', dom)
    assert.matches('<div class="footer" id="counter">3 / 8</div>', dom)
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
end)
