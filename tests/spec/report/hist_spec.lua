local hist = require('perf_manual.report.hist')

describe('perf_manual.report.hist', function()
  it('turns log2 slots into BCC buckets up to the last non-empty slot', function()
    local b = hist.log2_buckets({ 1, 0, 4, 2, 0, 0 })
    assert.same({
      { lo = 0, hi = 1, count = 1 },
      { lo = 2, hi = 3, count = 0 },
      { lo = 4, hi = 7, count = 4 },
      { lo = 8, hi = 15, count = 2 },
    }, b)
    assert.same({}, hist.log2_buckets({ 0, 0, 0 }))
  end)

  it('marks the last kernel slot as open-ended (it also holds larger values)', function()
    local b = hist.log2_buckets({ 0, 1, 3 })
    assert.is_true(b[3].open)
    assert.is_nil(b[2].open)
    assert.matches('4 %-> %.%.%.', hist.render_log2(b))
  end)

  it('renders a log2 histogram in the BCC layout', function()
    local text = hist.render_log2(hist.log2_buckets({ 0, 2, 4, 1, 0 }), { unit = 'usecs' })
    assert.equal(table.concat({
      '     usecs               : count    distribution',
      '         0 -> 1          : 0        |                                        |',
      '         2 -> 3          : 2        |********************                    |',
      '         4 -> 7          : 4        |****************************************|',
      '         8 -> 15         : 1        |**********                              |',
    }, '\n') .. '\n', text)
  end)

  it('gives percentiles as the upper bound of the bucket holding them', function()
    local s = hist.summary(hist.log2_buckets({ 0, 50, 40, 9, 1 }))
    assert.equal(100, s.count)
    assert.equal(3, s.p50)
    assert.equal(7, s.p90)
    assert.equal(15, s.p99)
    assert.same({ count = 0 }, hist.summary({}))
  end)

  it('renders linear histograms and adds slot lists', function()
    local b = hist.linear_buckets({ 5, 10, 0, 1, 0 })
    assert.equal(4, #b)
    assert.equal(3, b[4].lo)
    local text = hist.render_linear(b, { unit = 'runqlen', width = 10 })
    assert.matches('runqlen', text)
    assert.matches('\n        1          : 10        |%*%*%*%*%*%*%*%*%*%*|', text)
    assert.same({ 2, 4, 3 }, hist.add_slots({ 1, 2, 3 }, { 1, 2, 0 }))
  end)

  it('prints aligned tables with missing values as "-"', function()
    local t = hist.table({ { n = 'read', c = 12, t = 1.5 }, { n = 'openat', c = 3 } }, {
      { key = 'n', title = 'NAME', align = 'l' }, { key = 'c', title = 'COUNT' }, { key = 't', title = 'TIME' },
    })
    assert.equal('NAME    COUNT  TIME\nread       12  1.50\nopenat      3     -\n', t)
  end)
end)
