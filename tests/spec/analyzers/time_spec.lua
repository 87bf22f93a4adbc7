-- Where the time goes, judged on thread-state accounting results recorded
-- from real runs (tests/fixtures/tsa/results/): a process waiting on its
-- feeder over a pipe and over loopback TCP (75% on the peer, 25% back-off
-- sleep; the feeder itself sleeps all along), a single spinning thread, and
-- a plain `sleep` as the idle control.
local findings = require('perf_manual.analyzers.findings')
local root_cause = require('perf_manual.analyzers.root_cause')
local util = require('perf_manual.util')

local function load(name)
  local t = assert(util.json_decode(assert(util.readfile(test_helpers.root .. '/tests/fixtures/tsa/results/' .. name
    .. '.json'))))
  t.artifact = 'raw_data/tsa.json'
  return t
end

describe('findings.dominant_wait', function()
  it('names the peer of a pipe, leaving the feeder that sleeps all along out of the shares', function()
    local d = assert(findings.dominant_wait(load('wait_peer_pipe')))
    assert.equal('ipc', d.reason)
    assert.near(75, d.share, 5)
    assert.equal(1, d.threads)
    assert.matches('^pid %d+ %(feeder%) via pipe$', d.object)
    assert.equal('sleep', d.also.state)
    assert.near(25, d.also.share, 5)
    assert.matches('^pid %d+ %(feeder%) via pipe %(pipe / unix socket, 7%d%% of wall time; sleep 2%d%%%)$',
      findings.wait_phrase(d))
  end)

  it('names the remote address and the peer process of a loopback TCP wait', function()
    local d = assert(findings.dominant_wait(load('wait_peer_tcp')))
    assert.equal('net', d.reason)
    assert.near(75, d.share, 5)
    assert.matches('^tcp 127%.0%.0%.1:%d+ %(pid %d+ feeder%)$', d.object)
  end)

  it('finds no wait that holds up a sleeping process or a spinning one', function()
    assert.is_nil(findings.dominant_wait(load('sleep_idle')))
    assert.is_nil(findings.dominant_wait(load('hot_thread')))
  end)
end)

describe('findings.from_tsa', function()
  it('makes a high wait finding for the peer, a single-thread finding for the spinner, none for sleep', function()
    local f = findings.from_tsa(load('wait_peer_pipe'))
    assert.equal(1, #f)
    assert.equal('wait', f[1].resource)
    assert.equal('high', f[1].severity)
    assert.matches('waits 7%d%% of its wall time on pipe / unix socket: pid %d+ %(feeder%) via pipe', f[1].summary)
    local h = findings.from_tsa(load('hot_thread'))
    assert.equal(1, #h)
    assert.equal('hot_thread', h[1].metric)
    assert.same({}, findings.from_tsa(load('sleep_idle')))
  end)
end)

describe('root_cause on thread states', function()
  it('supports "waits on the peer" for the pipe reader, and refutes CPU-bound', function()
    local data = { tsa = load('wait_peer_pipe'), traces = {}, profiles = {} }
    local texts = root_cause.candidates(data, findings.all(data))
    assert.matches('^the workload is blocked: it waits on pid %d+ %(feeder%) via pipe', texts[1])
    assert.equal('supported', root_cause.score(texts[1], data).verdict)
    assert.equal('refuted', root_cause.score(root_cause.TEXT.cpu, data).verdict)
  end)

  it('refutes a wait hypothesis for a process that only sleeps, and for a spinning one', function()
    for _, name in ipairs({ 'sleep_idle', 'hot_thread' }) do
      local data = { tsa = load(name), traces = {}, profiles = {} }
      assert.is_nil(root_cause.wait_text(data.tsa))
      local r = root_cause.score('the workload is blocked on its peer', data)
      assert.equal('wait', r.resource)
      assert.equal('refuted', r.verdict, name)
    end
  end)

  it('supports CPU-bound for the single hot thread on the 2-CPU machine', function()
    local data = { tsa = load('hot_thread'), traces = {}, profiles = {} }
    local r = root_cause.score(root_cause.TEXT.cpu, data)
    assert.equal('supported', r.verdict)
    assert.matches('cannot go faster', r.evidence[1].note)
  end)
end)
