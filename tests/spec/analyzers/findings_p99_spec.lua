-- perf_manual.analyzers.findings: the I/O p99 from a row's histogram. It used
-- to call io.percentile, which never existed, so a row that had buckets but
-- no p99 field gave no p99 at all; now perf_manual.hist computes it.
local findings = require('perf_manual.analyzers.findings')
local hist = require('perf_manual.hist')
local util = require('perf_manual.util')

local function recorded_io()
  return assert(util.json_decode(test_helpers.fixture('datadirs/fsync_writer/raw_data/trace-io.json')))
end

describe('perf_manual.analyzers.findings p99 from buckets', function()
  it('computes the p99 of a recorded io row from its buckets, with no p99 field', function()
    local row = recorded_io().devices[1]
    row.p99_us, row.p50_us = nil, nil
    -- 21892 requests: rank 21674 falls in [64, 127] us
    assert.equal(95.5 / 1e3, findings.p99_ms(row))
    assert.equal(hist.quantile(row.buckets, 0.99) / 1e3, findings.p99_ms(row))
  end)

  it('prefers the buckets to a p99 field another rule wrote', function()
    local row = recorded_io().devices[1]
    assert.equal(127, row.p99_us) -- recorded with the old "upper bound of the bucket" rule
    assert.equal(95.5 / 1e3, findings.p99_ms(row))
    assert.equal(12.5, findings.p99_ms({ p99_us = 12500 }))
    assert.is_nil(findings.p99_ms({ buckets = {} }))
  end)

  it('raises an I/O latency finding from buckets alone', function()
    local slots = {}
    for i = 1, 32 do slots[i] = 0 end
    slots[7], slots[15] = 970, 30   -- 3% of requests in slot 14, [16384, 32767] us
    local row = { device = 'vda', op = 'write', buckets = hist.log2_buckets(slots), max_ns = 30e6 }
    local out = findings.from_trace('io', { devices = { row }, artifact = 'raw_data/trace-io.json' })
    assert.equal(1, #out)
    assert.equal('io_latency_p99_ms', out[1].metric)
    assert.equal((16384 + (32767 - 16384) / 2) / 1e3, out[1].value)
    assert.equal('medium', out[1].severity)
  end)
end)
