local h = test_helpers
package.path = h.root .. '/tests/spec/?.lua;' .. package.path
local mk = require('report.make_investigation')
local lxp = require('lxp')

local function slurp(p) local f = assert(io.open(p)); local s = f:read('*a'); f:close(); return s end

-- every inline <svg>...</svg> must be well-formed XML
local function check_svgs(html)
  local n = 0
  for svg in html:gmatch('<svg.-</svg>') do
    n = n + 1
    local p = lxp.new({})
    local ok, err = p:parse(svg)
    if ok then ok, err = p:parse() end
    p:close()
    assert(ok, 'inline SVG ' .. n .. ' is not well-formed: ' .. tostring(err))
  end
  return n
end

-- a self-contained page: nothing loaded from elsewhere
local function check_self_contained(html)
  assert.is_nil(html:find('<link', 1, true))
  assert.is_nil(html:find('<img', 1, true))
  assert.is_nil(html:find('<iframe', 1, true))
  assert.is_nil(html:find(' src="', 1, true))
  assert.is_nil(html:find('url%(http'))
  assert.is_nil(html:find('@import', 1, true))
end

describe('perf_manual report (HTML) and present', function()
  local dir
  setup(function() dir = mk.make() end)
  teardown(function() mk.remove(dir) end)

  it('writes a self-contained technical report with inline, valid SVG and escaped text', function()
    local out = dir .. '/r.html'
    local _, err, status = h.pm(string.format("report '%s' --output '%s'", dir, out))
    assert.equal(0, status, err)
    local html = slurp(out)
    check_self_contained(html)
    -- CPU, run queue, RED rate, latency histogram and heat map; the flame graph when H4's renderer is there
    assert.is_true(check_svgs(html) >= 5)
    -- the hostile symptom is shown as text, never as markup
    assert.is_nil(html:find('<script>alert', 1, true))
    assert.is_nil(html:find('<b>bold</b>', 1, true))
    assert.matches('&lt;script&gt;alert%(&quot;pwned&quot;%)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;', html)
    assert.is_nil(html:find('hunter2', 1, true))
    assert.matches('<tr class="high"><td>CPU</td>', html)
    assert.matches('<table id="fix%-validation">', html)
    assert.matches('<table id="hotspots">', html)
  end)

  it('writes the executive summary with exactly one chart', function()
    local out = dir .. '/e.html'
    local _, err, status = h.pm(string.format("report '%s' --format executive --output '%s'", dir, out))
    assert.equal(0, status, err)
    local html = slurp(out)
    check_self_contained(html)
    assert.equal(1, check_svgs(html))
    assert.matches('<dt>Root cause</dt><dd>burn%(%) spins', html)
  end)

  it('makes an 8-slide self-contained deck', function()
    local out = dir .. '/s.html'
    local stdout, err, status = h.pm(string.format("present --slides --data '%s' --output '%s'", dir, out))
    assert.equal(0, status, err)
    assert.matches('wrote .*s.html %(8 slides', stdout)
    local html = slurp(out)
    check_self_contained(html)
    check_svgs(html)
    local ids = {}
    for id in html:gmatch('<section class="slide[^"]*" id="([^"]+)"') do ids[#ids + 1] = id end
    -- findings first, then the evidence
    assert.same({ 's-title', 's-symptom', 's-root-cause', 's-fix', 's-recommendations', 's-use', 's-chart',
      's-flamegraph' }, ids)
    assert.is_nil(html:find('<script>alert', 1, true))
  end)

  it('refuses present without --slides and a non-HTML output', function()
    local _, err, status = h.pm(string.format("present --data '%s'", dir))
    assert.equal(2, status)
    assert.equal('perf_manual: present: say --slides (the deck is the only presentation form)\n', err)
    _, err, status = h.pm(string.format("present --slides --data '%s' --output deck.pdf", dir))
    assert.equal(2, status)
    assert.equal('perf_manual: present: --output must end in .html (got deck.pdf)\n', err)
  end)
end)
