-- Root causes through the hypothesis catalogue, on evidence recorded from
-- real investigations of the test workloads (tests/fixtures/catalogue/*,
-- recorded by tests/fixtures/catalogue/record.sh; the older
-- tests/fixtures/datadirs/* have no thread states).
local rc = require('perf_manual.analyzers.root_cause')
local catalogue = require('perf_manual.catalogue')
local F = require('perf_manual.analyzers.findings')
local store = require('perf_manual.store')
local h = test_helpers

local function data(name) return F.prepare(store.results(h.root .. '/tests/fixtures/catalogue/' .. name)) end
local function old(name) return F.prepare(store.results(h.root .. '/tests/fixtures/datadirs/' .. name)) end

-- the workload that exercises each built-in entry, and the verdict its data gives
local EXERCISED = {
  { 'cpu-bound', 'cpu_burn', 'the workload is CPU-bound: a hot loop keeps the CPUs busy' },
  { 'run-queue', 'cpu_burn', 'run queue contention: too many threads for the CPUs' },
  { 'single-thread', 'hot_thread', 'one thread is single-threaded bound' },
  { 'cpu-quota', 'cpu_quota', 'the cgroup CPU quota throttles it' },
  { 'lock-convoy', 'mutex_contention', 'lock contention on a global mutex' },
  { 'fsync-bound', 'fsync_writer', 'fsync after every write' },
  { 'disk-saturation', 'fsync_writer', 'the disk is saturated' },
  { 'memory-limit', 'mem_pressure', 'the memory limit makes it thrash the page cache' },
  { 'peer-wait', 'pipe_waiter', 'it is blocked waiting on a slow peer' },
}

describe('root_cause: mapping words onto the catalogue', function()
  it('maps each hypothesis onto its entry and says why', function()
    for _, x in ipairs(EXERCISED) do
      local m = assert(rc.match(x[3]), x[3])
      assert.equal(x[1], m.entry.id, x[3])
      assert.is_string(m.why)
    end
    assert.equal('swapping', rc.match('the box is swapping').entry.id)
    assert.equal('net-retransmits', rc.match('tcp retransmits on the link').entry.id)
    assert.equal('service-errors', rc.match('the service fails requests').entry.id)
  end)

  it('maps "the network socket write buffer is full" to the network, never the disk', function()
    local m = assert(rc.match('the network socket write buffer is full'))
    assert.equal('net-retransmits', m.entry.id)
    assert.equal('network', m.entry.resource)
    assert.matches("'write buffer'", m.why)
  end)

  it('never matches on one generic keyword, and lists the closest three', function()
    for _, t in ipairs({ 'the disk', 'cosmic rays flip bits', 'it is slow' }) do
      local m, closest = rc.match(t)
      assert.is_nil(m, t)
      assert.equal(3, #closest)
    end
    local _, closest = rc.match('the disk')
    local ids = {}
    for _, c in ipairs(closest) do ids[c.id] = c.why end
    assert.matches('keywords disk', ids['disk-saturation'])
  end)

  it('sees negation', function()
    assert.same({ 'disk', true }, { rc.classify('the disks are not the bottleneck') })
    assert.same({ 'lock', false }, { rc.classify('contention on the queue mutex') })
  end)
end)

describe('root_cause: judging on real evidence', function()
  it('supports the entry each workload exercises', function()
    for _, x in ipairs(EXERCISED) do
      local r = rc.score(x[3], data(x[2]))
      assert.equal(x[1], r.entry, x[3])
      assert.equal('supported', r.verdict, x[1] .. ' on ' .. x[2])
    end
  end)

  it('refutes or leaves unmatched a deliberately wrong hypothesis, never supports it', function()
    local wrong = {
      { 'cpu_burn', 'disk saturation' }, { 'cpu_burn', 'lock contention' }, { 'cpu_burn', 'the memory limit thrashes' },
      { 'cpu_burn', 'the network socket write buffer is full' }, { 'cpu_burn', 'it waits on a slow peer' },
      { 'mutex_contention', 'the workload is CPU-bound' }, { 'mutex_contention', 'fsync after every write' },
      { 'fsync_writer', 'lock contention on a mutex' }, { 'fsync_writer', 'a hot loop keeps the CPUs busy' },
      { 'pipe_waiter', 'CPU-bound hot loop' }, { 'pipe_waiter', 'the disk is saturated' },
      { 'hot_thread', 'lock convoy' }, { 'mem_pressure', 'fsync-bound writes' },
      { 'mem_pressure', 'CPU-bound hot loop' },
      { 'cpu_quota', 'run queue contention' }, { 'cpu_burn', 'single-threaded' },
    }
    for _, w in ipairs(wrong) do
      local r = rc.score(w[2], data(w[1]))
      assert.is_true(r.verdict == 'refuted' or r.verdict == 'unmatched', w[2] .. ' on ' .. w[1] .. ': ' .. r.verdict)
    end
  end)

  it('names the lock by its symbol, the waiters and the queue; fixes name the lock', function()
    local r = rc.score('lock contention', data('mutex_contention'))
    assert.matches('^lock contention: 8 threads queue on lock %(mutex_contention %.bss%), 7%d%% of their time ' ..
      'waiting, %d%.%d waiters on average$', r.cause)
    assert.matches('shorten the critical section guarded by lock %(mutex_contention %.bss%)', r.fixes[1])
    -- the holder (futex wake side) is not measured: that fix is left out, and said so
    assert.same({ 'holder' }, r.unfilled[1].missing)
    assert.equal('shorten what <holder> does while it holds lock (mutex_contention .bss)', r.unfilled[1].fix)
    local seen = {}
    for _, e in ipairs(r.evidence) do seen[e.artifact] = e.stance end
    assert.equal('supports', seen['raw_data/tsa.json'])
    assert.equal('supports', seen['raw_data/trace-lock.json'])
  end)

  it('names the synced files, the cgroup and its limit, the quota, the peer, the hot function', function()
    assert.matches('4 threads wait in fsync of /[^ ]+/fsync_writer%.%d+%.%d %(and 3 other files%)',
      rc.score('fsync-bound writes', data('fsync_writer')).cause)
    assert.matches('cgroup /sys/fs/cgroup/memory/pm_cat_mem lives at its 64 MiB limit',
      rc.score('memory limit', data('mem_pressure')).cause)
    assert.matches('quota of 0%.25 CPUs on cgroup /sys/fs/cgroup/cpu/pm_cat_quota throttled',
      rc.score('CPU quota throttling', data('cpu_quota')).cause)
    assert.matches('it waits on pid %d+ %(pipe_waiter%) via pipe',
      rc.score('waiting on a peer', data('pipe_waiter')).cause)
    assert.matches('burn holds 99%% of on%-CPU samples %(hot path start_thread > burn%)',
      rc.score('CPU-bound code path', data('cpu_burn')).cause)
    assert.matches('thread %d+ %(hot0%)', rc.score('single thread bound', data('hot_thread')).cause)
  end)

  it('says unmatched, with the closest entries, when no entry matches', function()
    local r = rc.score('cosmic rays flip bits', data('cpu_burn'))
    assert.equal('unmatched', r.verdict)
    assert.equal(3, #r.closest)
    assert.matches('no catalogue entry matches', rc.render(r))
  end)

  it('flips the evidence of a negated hypothesis', function()
    assert.equal('supported', rc.score('the disks are not saturated', data('cpu_burn')).verdict)
  end)

  it('proposes the supported entries with their culprits, then the usual suspects to seek disconfirmation', function()
    local c = rc.candidates(data('mutex_contention'))
    assert.matches('^lock contention: 8 threads queue on lock', c[1])
    assert.same({ rc.TEXT.cpu, rc.TEXT.disk }, { c[#c - 1], c[#c] })
    assert.equal('refuted', rc.score(c[#c], data('mutex_contention')).verdict)
    -- and the older recordings without thread states still name the lock's address
    assert.matches('^lock contention: threads queue on futex 0x%x+ %(symbol not resolved%)',
      rc.candidates(old('mutex_contention'))[1])
  end)

  it('builds recommendations from the supported entries, citing the artifacts', function()
    local d = data('mutex_contention')
    local recs = rc.recommendations(d, rc.candidates(d))
    assert.equal('lock-convoy', recs[1].entry)
    assert.matches('%[evidence: raw_data/tsa%.json, raw_data/trace%-lock%.json, raw_data/use%-check%.json%]$',
      recs[1].text)
    for _, r in ipairs(recs) do assert.is_nil(r.text:find('{', 1, true)) end
    -- a refuted hypothesis makes no recommendation
    assert.same({}, rc.recommendations(d, { 'fsync after every write' }))
    -- the memory limit: the working set is not measured, so the sentence says so rather than invent a size
    local m = rc.recommendations(data('mem_pressure'), { 'memory limit' })
    assert.matches('above 64 MiB: it refaults %d+ pages/s %(the working set it needs is not measured yet', m[1].text)
  end)
end)

describe('catalogue: team entries', function()
  after_each(function() catalogue.set_path({}) end)

  it('loads hypothesis_catalogue.lua from a playbook directory, and an entry of it is judged like a built-in one',
    function()
    local dir = h.tmpdir()
    local f = assert(io.open(dir .. '/hypothesis_catalogue.lua', 'w'))
    f:write([[
return {
  { id = 'gc-pauses', resource = 'cpu', title = 'GC pauses',
    mechanism = 'the runtime stops every thread to collect garbage',
    phrases = { 'gc pause', 'garbage collection' }, terms = { 'gc' }, keywords = { 'gc', 'garbage', 'pause' },
    needs = { 'profile' },
    predicates = { { needs = 'profile', weight = 2, test = function(ev)
      local hot = ev.profile.hot
      if hot and hot:match('gc') then return 'supports', hot .. ' is hot' end
      return 'refutes', 'no GC function is hot (' .. tostring(hot) .. ')'
    end } },
    culprit = function(ev) return { fn = ev.profile and ev.profile.hot } end,
    says = { 'GC pauses: {fn}' }, fixes = { 'tune the heap of the process running {fn}' } },
}
]])
    f:close()
    catalogue.set_path({ dir })
    local r = rc.score('long garbage collection pauses', data('cpu_burn'))
    assert.equal('gc-pauses', r.entry)
    assert.equal(dir .. '/hypothesis_catalogue.lua', r.match.from)
    assert.equal('refuted', r.verdict)
    assert.equal('no GC function is hot (burn)', r.evidence[1].note)
    h.rmrf(dir)
  end)

  it('refuses a malformed team entry with one line naming the file', function()
    local dir = h.tmpdir()
    local f = assert(io.open(dir .. '/hypothesis_catalogue.lua', 'w'))
    f:write('return { { id = "x", resource = "cpu" } }\n')
    f:close()
    catalogue.set_path({ dir })
    local ok, e = pcall(catalogue.entries)
    assert.is_false(ok)
    assert.matches('hypothesis_catalogue%.lua: entry 1: missing field mechanism', e.user_error)
    h.rmrf(dir)
  end)
end)

describe('perf_manual.analyzers.root_cause wait hypotheses', function()
  it('maps "it waits on X" onto the entry its wait reason stands for', function()
    local function id(text) local m = rc.match(text) return m and m.entry.id end
    assert.equal('lock-convoy', id('the workload is blocked: it waits on lock g_lock (0x1, a .bss) '
      .. '(lock (futex, kernel lock), 77% of wall time)'))
    assert.equal('fsync-bound', id('the workload is blocked: it waits on /var/tmp/x.dat (block I/O, 48% of wall time)'))
    assert.equal('peer-wait', id('the workload is blocked: it waits on pid 5 (feeder) via pipe '
      .. '(pipe / unix socket, 74% of wall time)'))
  end)
end)
