-- collect records (it has nothing to replay): a short real run of the
-- /proc-only memory collector into a data dir, and what it refuses.
local h = test_helpers
local util = require('perf_manual.util')

describe('collect playbook', function()
  it('writes a manifest and the series of a collector asked for by name', function()
    local d = os.tmpname()
    os.remove(d)
    local out, err, st = h.pm(string.format('collect --suite psi --output %s --duration 1.2 --interval 0.5 --json', d))
    assert.equal(0, st, err)
    local manifest = assert(util.json_decode(out))
    assert.equal('psi', manifest.suite)
    assert.equal('system', manifest.target.kind)
    assert.equal(1, #manifest.items)
    assert.equal('raw_data/psi.jsonl', manifest.items[1].file)
    assert.is_true(manifest.items[1].samples >= 1)
    assert.equal(d, manifest.dir)
    manifest.dir = nil
    assert.same(manifest, util.json_decode(util.readfile(d .. '/manifest.json')))
    local first = util.readfile(d .. '/raw_data/psi.jsonl'):match('^[^\n]+')
    assert.is_number(util.json_decode(first).rates.cpu.some_pct)
    os.execute("rm -rf '" .. d .. "'")
  end)

  it('needs --output, and a duration above 0', function()
    local _, err, st = h.pm('collect --suite basic')
    assert.equal(2, st)
    assert.matches('^perf_manual: collect: missing %-%-output', err)
    _, err, st = h.pm('collect --output /tmp/never --duration 0')
    assert.equal(2, st)
    assert.equal('perf_manual: collect: --duration must be more than 0\n', err)
  end)
end)
