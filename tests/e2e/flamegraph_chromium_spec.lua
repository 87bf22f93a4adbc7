-- Opens generated flame graphs in headless Chromium (Debian's chromium) and
-- reads back the DOM after the page script ran: the search given in the URL
-- (?s=REGEX) must highlight exactly the matching frames and report the share
-- of samples they cover, and a frame named <script> must stay text.
local fold = require('perf_manual.fold')
local fg = require('perf_manual.report.flamegraph')

local function have_chromium()
  local ok = os.execute('command -v chromium >/dev/null 2>&1')
  return ok == 0 or ok == true
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs chromium --dump-dom on file://path?query; returns the DOM text.
local function dump_dom(path, query)
  local profile_dir = os.tmpname(); os.remove(profile_dir)
  local out = os.tmpname()
  local cmd = table.concat({
    'timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run',
    '--disable-background-networking --disable-component-update --disable-sync',
    '--user-data-dir=' .. sh_quote(profile_dir),
    '--dump-dom', sh_quote('file://' .. path .. (query or '')),
    '>' .. out, '2>/dev/null',
  }, ' ')
  os.execute(cmd)
  os.execute('rm -rf ' .. sh_quote(profile_dir))
  local f = io.open(out, 'rb')
  local dom = f and f:read('*a') or ''
  if f then f:close() end
  os.remove(out)
  return dom
end

describe('flame graph in headless Chromium', function()
  local svg_path
  local profile

  before_each(function()
    if not have_chromium() then
      if os.getenv('PM_REQUIRE_BPF') == '1' then error('chromium is not installed (make deps installs it)') end
      pending('chromium is not installed (make deps installs it)')
      return
    end
    profile = assert(fold.from_perf_script(test_helpers.fixture('perf/calltree_user.perf.txt')))
    profile:add('calltree;__libc_start_call_main;main;<script>document.title="pwned"</script>', 10000000)
    svg_path = os.tmpname() .. '.svg'
    local f = assert(io.open(svg_path, 'wb'))
    f:write((fg.render(profile, { title = 'calltree', minwidth = 0 })))
    f:close()
  end)

  after_each(function()
    if svg_path then os.remove(svg_path); os.remove((svg_path:gsub('%.svg$', ''))) end
  end)

  it('renders, runs its script and searches from the URL', function()
    if not svg_path then return end
    local dom = dump_dom(svg_path, '?s=%5Ealpha%24')
    assert.truthy(dom:find('<svg', 1, true), 'no SVG in the DOM: ' .. dom:sub(1, 200))
    -- the share the page computed equals alpha's inclusive share
    local alpha = 0
    for _, e in ipairs(profile:stacks()) do
      if (';' .. e[1] .. ';'):find(';alpha;', 1, true) then alpha = alpha + e[2] end
    end
    local want = string.format('%.2f', 100 * alpha / profile:total())
    assert.equal(want, dom:match('data%-matched="([%d%.]+)"'))
    -- every frame named alpha is highlighted, and nothing else
    local highlighted, alphas = 0, 0
    for g in dom:gmatch('<g data%-match="1"[^>]*>.-</g>') do
      highlighted = highlighted + 1
      assert.truthy(g:find('<title>alpha (', 1, true), g)
    end
    for _ in dom:gmatch('<title>alpha %(') do alphas = alphas + 1 end
    assert.truthy(alphas > 0)
    assert.equal(alphas, highlighted)
    assert.truthy(dom:find('Matched: ' .. want .. '%', 1, true))
  end)

  it('zooms into a frame from the URL', function()
    if not svg_path then return end
    local dom = dump_dom(svg_path, '?zoom=%5Ealpha%24')
    local function g_of(name)
      return dom:match('<g[^>]*><title>' .. name:gsub('%p', '%%%0') .. ' %(.-</g>')
    end
    -- alpha fills the plot (1200 - 2 * 10 px), its ancestors stay as faded parents
    local alpha = assert(g_of('alpha'), 'no alpha frame in the DOM')
    assert.equal('1180.00', alpha:match('<rect[^>]- width="([%d%.]+)"'))
    assert.truthy(g_of('main'):find('^<g class="parent"'))
    -- a frame outside alpha's subtree is hidden; spin under alpha is scaled up
    local hidden, spins = 0, 0
    for g in dom:gmatch('<g class="hide"><title>(.-)</title>') do
      hidden = hidden + 1
      assert.falsy(g:find('^alpha '))
    end
    assert.truthy(hidden > 0)
    for g in dom:gmatch('<g class=""><title>spin .-</g>') do
      spins = spins + 1
      assert.equal('1180.00', g:match('width="([%d%.]+)"'))
    end
    assert.equal(1, spins)
    assert.truthy(dom:find('<text id="reset" class="" ', 1, true) or dom:find('id="reset" class=""', 1, true))
  end)

  it('keeps a frame named <script> as text', function()
    if not svg_path then return end
    local dom = dump_dom(svg_path, '?s=script')
    -- only the page's own script element exists; the frame name is text
    local scripts = 0
    for _ in dom:gmatch('<script') do scripts = scripts + 1 end
    assert.equal(1, scripts)
    assert.truthy(dom:find('&lt;script&gt;document.title="pwned"&lt;/script&gt;', 1, true)
      or dom:find('&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;', 1, true))
    -- and the search still finds it by name
    assert.truthy(dom:match('data%-matched="([%d%.]+)"'))
    assert.is_not.equal('0.00', dom:match('data%-matched="([%d%.]+)"'))
  end)
end)
