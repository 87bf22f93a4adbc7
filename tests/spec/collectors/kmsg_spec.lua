-- OOM victims from the kernel log, on records this machine's kernel wrote
-- when the e2e test's mem_pressure was killed in its 64 MiB cgroup
-- (tests/fixtures/kmsg/oom.txt: the messages, as dmesg prints them).
local kmsg = require('perf_manual.collectors.kmsg')

describe('perf_manual.collectors.kmsg', function()
  it('names the OOM killer\'s victim once, with its memory cgroup', function()
    local msgs = {}
    for line in test_helpers.fixture('kmsg/oom.txt'):gmatch('[^\n]+') do msgs[#msgs + 1] = line end
    local v = kmsg.parse_oom(msgs)
    assert.equal(1, #v)
    assert.equal(11553, v[1].pid)
    assert.equal('mem_pressure', v[1].comm)
    assert.equal('/perf_manual_e2e_11539_1', v[1].memcg)
    assert.equal('CONSTRAINT_MEMCG', v[1].constraint)
    assert.is_true(v[1].in_cgroup)
  end)

  it('reads nothing written before it opened, and nothing that is not an OOM record', function()
    if not io.open('/dev/kmsg') then return pending('no readable /dev/kmsg') end
    local h = assert(kmsg.open())
    assert.same({}, kmsg.oom_victims(h))
    kmsg.close(h)
    assert.same({}, kmsg.parse_oom({ 'EXT4-fs (vda): mounted filesystem', 'Out of memory: not a kill line' }))
  end)
end)
