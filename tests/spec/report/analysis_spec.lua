-- The `analyze` report (templates/analysis.md) on data recorded from the real
-- workloads: a section per resource with the USE rows, tracer figures and
-- the findings of that resource.
local report = require('perf_manual.report')
local store = require('perf_manual.store')
local F = require('perf_manual.analyzers.findings')
local h = test_helpers

local function analyse(name)
  local data = F.prepare(store.results(h.root .. '/tests/fixtures/datadirs/' .. name))
  local found = F.all(data)
  return report.analysis(data, found), data, found
end

describe('perf_manual.report analysis', function()
  it('names the saturated disk, its I/O latency and its findings under Disk I/O', function()
    local text, _, found = analyse('fsync_writer')
    assert.matches('%- %*%*Bottleneck %(USE%)%*%*: disk — disk vda is the most saturated', text)
    assert.matches('%- %*%*Findings%*%*: ' .. #found .. '\n', text)
    local disk = text:match('\n## Disk I/O\n(.-)\n## Network\n')
    assert.matches('| vda | HIGH |', disk)
    assert.matches('I/O latency %(io tracer, raw\\_data/trace%-io%.json%):', disk)
    assert.matches('%- vda: %d+ requests/s, mean [%d.]+us, p99 [%d.]+us', disk)
    assert.matches('%- %*%*HIGH%*%* vda: ', disk)
    assert.matches('\n## Network\n\nNo interface carried traffic%.\n', text)
    -- a recorded fixture's manifest is not a collect manifest: no suite table
    assert.is_nil(text:find('Suite', 1, true))
  end)

  it('shows the lock tracer figures under Locks', function()
    local text = analyse('mutex_contention')
    local locks = text:match('\n## Locks\n(.*)$')
    assert.matches('Lock tracer %(raw\\_data/trace%-lock%.json%): threads wait %d+%% of their time; [%d.]+ waiters ' ..
      'on average%.', locks)
  end)

  it('names the hottest function of the CPU profile under CPU', function()
    local text = analyse('cpu_burn')
    local cpu = text:match('\n## CPU\n(.-)\n## Memory\n')
    local hot = F.hot_function(F.prepare(store.results(h.root .. '/tests/fixtures/datadirs/cpu_burn')).profiles.cpu)
    assert.matches('On%-CPU profile %(raw\\_data/profile%-cpu%.json%): hottest function ', cpu)
    assert.truthy(cpu:find(string.format('(%.0f%% of samples)', hot.share * 100), 1, true))
  end)

  it('lists a collect manifest, and says when there is no USE check', function()
    local data = { dir = 'd', traces = {}, profiles = {}, manifest = { suite = 'basic', host = 'h', kernel = 'k',
      started = 'a', ended = 'b', stopped = true, items = { { name = 'cpu', kind = 'collector',
        file = 'raw_data/cpu.jsonl',
        samples = 3 }, { name = 'process', kind = 'collector', error = 'not collected: needs --pid' } } } }
    local text = report.analysis(data, {})
    assert.matches('Suite %*%*basic%*%* on h %(kernel k%), a to b, stopped early%.', text)
    assert.matches('| cpu | collector | raw\\_data/cpu%.jsonl | 3 samples |', text)
    assert.matches('| process | collector | %- | not collected: needs %-%-pid |', text)
    assert.matches('Bottleneck %(USE%)%*%*: not measured %(no USE check in the data%)', text)
    assert.matches('\n## CPU\n\nNot measured %(no USE check%)%.\n', text)
  end)
end)
