-- present --slides on an investigation replayed from the recorded
-- cpu_burn workload. (The deck's content and keys are checked in
-- tests/spec/report/html_spec.lua and the Chromium e2e test.)
local util = require('perf_manual.util')
local h = test_helpers

describe('present', function()
  local root, id
  setup(function()
    local ids
    root, ids = h.replay_store({ 'cpu_burn' })
    id = ids[1]
  end)
  teardown(function() h.rmrf(root) end)

  it('writes a self-contained deck of the investigation and counts its slides', function()
    local dir = h.tmpdir()
    local out, err, st = h.pm(string.format('present --slides --data cpu-burn --store %s --output %s/deck.html',
      root, dir))
    assert.equal(0, st, err)
    local n = tonumber(out:match('^wrote ' .. dir:gsub('%p', '%%%0')
      .. '/deck%.html %((%d+) slides; arrow keys to move'))
    local html = assert(util.readfile(dir .. '/deck.html'))
    assert.equal(n, select(2, html:gsub('<section class="slide', '')))
    assert.is_true(n >= 5)
    assert.matches('cpu_burn is slow', html)
    assert.matches('the workload is CPU%-bound', html)
    h.rmrf(dir)
  end)

  it('uses a template of one\'s own, and names the line of a broken one', function()
    local dir = h.tmpdir()
    local f = io.open(dir .. '/mine.html', 'w')
    f:write('<html><section class="slide">{{ summary.issue }}</section>'
      .. '<section class="slide">{{ summary.bottleneck }}</section></html>\n')
    f:close()
    local out, err, st = h.pm(string.format('present --slides --data %s --store %s --output %s/d.html '
      .. '--template %s/mine.html', id, root, dir, dir))
    assert.equal(0, st, err)
    assert.matches('%(2 slides;', out)
    assert.equal('<html><section class="slide">cpu_burn is slow</section><section class="slide">cpu</section></html>\n',
      util.readfile(dir .. '/d.html'))
    f = io.open(dir .. '/bad.html', 'w'); f:write('<html>\n{{ nosuch\n'); f:close()
    local _
    _, err, st = h.pm(string.format('present --slides --data %s --store %s --output %s/d2.html --template %s/bad.html',
      id, root, dir, dir))
    h.rmrf(dir)
    assert.equal(2, st)
    assert.equal("perf_manual: present: bad.html:2: unclosed '{{'\n", err)
  end)

  it('asks for --slides and an .html output', function()
    local _, err, st = h.pm(string.format('present --data %s --store %s', id, root))
    assert.equal(2, st)
    assert.equal('perf_manual: present: say --slides (the deck is the only presentation form)\n', err)
    _, err, st = h.pm(string.format('present --slides --data %s --store %s --output deck.pdf', id, root))
    assert.equal(2, st)
    assert.equal('perf_manual: present: --output must end in .html (got deck.pdf)\n', err)
  end)
end)
