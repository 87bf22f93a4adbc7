-- The text renderer; the buckets come from perf_manual.hist (its spec
-- checks the arithmetic).
local hist = require('perf_manual.report.hist')
local data = require('perf_manual.hist')

describe('perf_manual.report.hist', function()
  it('draws the kernel\'s last slot as open-ended (it also holds larger values)', function()
    local b = data.log2_buckets({ 0, 1, 3 })
    assert.matches('4 %-> %.%.%.', hist.render_log2(b))
    assert.not_matches('2 %-> %.%.%.', hist.render_log2(b))
  end)

  it('renders a log2 histogram in the BCC layout', function()
    local text = hist.render_log2(data.log2_buckets({ 0, 2, 4, 1, 0 }), { unit = 'usecs' })
    assert.equal(table.concat({
      '     usecs               : count    distribution',
      '         0 -> 1          : 0        |                                        |',
      '         2 -> 3          : 2        |********************                    |',
      '         4 -> 7          : 4        |****************************************|',
      '         8 -> 15         : 1        |**********                              |',
    }, '\n') .. '\n', text)
  end)

  it('renders linear histograms', function()
    local b = data.linear_buckets({ 5, 10, 0, 1, 0 })
    assert.equal(4, #b)
    assert.equal(3, b[4].lo)
    local text = hist.render_linear(b, { unit = 'runqlen', width = 10 })
    assert.matches('runqlen', text)
    assert.matches('\n        1          : 10        |%*%*%*%*%*%*%*%*%*%*|', text)
  end)

  it('prints aligned tables with missing values as "-"', function()
    local t = hist.table({ { n = 'read', c = 12, t = 1.5 }, { n = 'openat', c = 3 } }, {
      { key = 'n', title = 'NAME', align = 'l' }, { key = 'c', title = 'COUNT' }, { key = 't', title = 'TIME' },
    })
    assert.equal('NAME    COUNT  TIME\nread       12  1.50\nopenat      3     -\n', t)
  end)
end)
