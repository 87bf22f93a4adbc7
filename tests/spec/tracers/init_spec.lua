local registry = require('perf_manual.tracers')

describe('perf_manual.tracers (registry)', function()
  it('finds every tracer file that declares start()', function()
    local ev = registry.events()
    local have = {}
    for _, e in ipairs(ev) do have[e] = true end
    assert.is_true(have.syscalls and have.sched)
    local sorted = { unpack(ev) }
    table.sort(sorted)
    assert.same(sorted, ev)
    for _, t in ipairs(registry.list()) do
      assert.is_nil(t.error, t.name .. ': ' .. tostring(t.error))
      assert.is_string(t.summary)
    end
  end)

  it('resolves event names and module names, and nothing else', function()
    assert.equal(require('perf_manual.tracers.syscall'), registry.get('syscalls'))
    assert.equal(require('perf_manual.tracers.syscall'), registry.get('syscall'))
    assert.equal(require('perf_manual.tracers.sched'), registry.get('sched'))
    assert.is_nil(registry.get('base'))
    assert.is_nil(registry.get('init'))
    assert.is_nil(registry.get('bogus'))
  end)
end)
