-- perf_manual.report.top: the screen of `top` as lines, at a given size.
local top = require('perf_manual.report.top')
local util = require('perf_manual.util')

local function procs()
  return {
    { pid = 10, comm = 'nginx', state = 'S', threads = 4, cpu_pct = 12.5, runq_ms = 3, offcpu_ms = 3900, iolat_ms = nil,
      iops = 0, sysc = 5200, rss_bytes = 12 * 2^20 },
    { pid = 11, comm = 'cpu_burn', state = 'R', threads = 3, cpu_pct = 198.0, runq_ms = 640, offcpu_ms = 0,
      iolat_ms = nil, iops = 0, sysc = 2, rss_bytes = 2^20 },
    { pid = 12, comm = 'fsync_writer', state = 'D', threads = 1, cpu_pct = 1.0, runq_ms = 0.5, offcpu_ms = 930,
      iolat_ms = 4.25, iops = 210, sysc = 420, rss_bytes = 900 * 1024 },
    { pid = 9, comm = 'NGINX-worker', state = 'S', threads = 1, cpu_pct = 12.5, runq_ms = 1, offcpu_ms = 990,
      iolat_ms = 0.1, iops = 3, sysc = 800, rss_bytes = 4096 },
  }
end

local function frame()
  return {
    time = 1700000000, elapsed = 1.002, procs = procs(),
    use = { rows = {
      { resource = 'cpu', name = 'CPU', status = 'warn', utilization = { text = '82% of 2 CPUs busy' },
        saturation = { text = 'PSI some 26%' }, errors = { text = '-' } },
      { resource = 'memory', name = 'Memory', status = 'ok', utilization = { text = '3% used' },
        saturation = { text = 'PSI some 0%' }, errors = { text = '0 OOM kills' } },
      { resource = 'disk', name = 'vda', status = 'idle', utilization = { text = '0% busy' },
        saturation = { text = 'aqu-sz 0.00' }, errors = { missing = 'not exposed' } },
      { resource = 'disk', name = 'vdb', status = 'HIGH', utilization = { text = '97% busy' },
        saturation = { text = 'aqu-sz 6.1' }, errors = { text = '-' } },
      { resource = 'network', name = 'lo', status = 'idle', utilization = { text = 'rx 0B/s' },
        saturation = { text = 'drops 0.00/s' }, errors = { text = '0.00/s errors' } },
      { resource = 'lock', name = 'Mutex/locks', status = 'not measured' },
    } },
    cost = { self_cpu_pct = 0.8, bpf_cpu_pct = 0.31, bpf = { { name = 'sched', cpu_pct = 0.2 },
      { name = 'offcpu', cpu_pct = 0.11 }, { name = 'io', note = 'not measured yet' } } },
    missing = {},
  }
end

local function pids(rows)
  local t = {}
  for i, r in ipairs(rows) do t[i] = r.pid end
  return t
end

describe('perf_manual.report.top', function()
  it('sorts by each key, biggest first, unmeasured last, ties by pid', function()
    assert.same({ 11, 9, 10, 12 }, pids(top.sort(procs(), 'cpu')))
    assert.same({ 11, 10, 9, 12 }, pids(top.sort(procs(), 'runq')))
    assert.same({ 10, 9, 12, 11 }, pids(top.sort(procs(), 'offcpu')))
    -- nil I/O latency (no request completed) sorts after every measured one
    assert.same({ 12, 9, 10, 11 }, pids(top.sort(procs(), 'iolat')))
    assert.same({ 10, 9, 12, 11 }, pids(top.sort(procs(), 'sysc')))
    assert.has_error(function() top.sort(procs(), 'rss') end, 'top: unknown sort key rss')
  end)

  it('maps keys to sort orders and cycles through them', function()
    assert.equal('cpu', top.sort_for_key('c'))
    assert.equal('runq', top.sort_for_key('r'))
    assert.equal('offcpu', top.sort_for_key('o'))
    assert.equal('iolat', top.sort_for_key('i'))
    assert.equal('sysc', top.sort_for_key('s'))
    assert.is_nil(top.sort_for_key('x'))
    assert.equal('runq', top.cycle_sort('cpu', 1))
    assert.equal('sysc', top.cycle_sort('cpu', -1))
    assert.equal('cpu', top.cycle_sort('sysc', 1))
  end)

  it('filters by command name, case-insensitive, as plain text', function()
    assert.same({ 10, 9 }, pids(top.filter(procs(), 'nginx')))
    assert.same({ 12 }, pids(top.filter(procs(), 'sync_')))
    assert.same({}, pids(top.filter(procs(), '.')))
    assert.equal(4, #top.filter(procs(), ''))
  end)

  it('lays a frame out at the given width and height', function()
    local lines = top.frame(frame(), { sort = 'cpu' }, 120, 20)
    assert.equal(20, #lines)
    for _, l in ipairs(lines) do assert.is_true(#l <= 120, l) end
    assert.matches('^perf_manual top  %d%d:%d%d:%d%d  every 1%.0s  4 processes  sort CPU%%', lines[1])
    -- one USE line per resource; of two disks, the saturated one, and the count of the others
    assert.matches('^CPU%s+warn  U 82%% of 2 CPUs busy | S PSI some 26%% | E %-', lines[2])
    assert.matches('^Memory%s+ok ', lines[3])
    assert.matches('^disk vdb %+1%s+HIGH  U 97%% busy', lines[4])
    assert.matches('^net lo%s+idle', lines[5])
    assert.equal('cost: perf_manual [##........] 0.80% of one CPU  BPF 0.31% (sched 0.20%, offcpu 0.11%, io n/a)',
      lines[6])
    assert.equal('', lines[7])
    assert.matches('^%s+PID COMM%s+S%s+THR%s+CPU%%%*%s+RUNQms/s%s+OFFCPUms/s%s+IOLATms%s+IO/s%s+SYSC/s%s+RSS$',
      lines[8])
    assert.matches('^%s+11 cpu_burn%s+R%s+3%s+198%.0%s+640%.0%s+0%s+%-%s+0%s+2%s+1%.0M', lines[9])
    assert.matches('^%s+9 NGINX%-worker ', lines[10])
    assert.matches('^%s+12 fsync_writer%s+D%s+1%s+1%.0%s+0%.5%s+930%s+4%.25%s+210%s+420%s+900K', lines[12])
    for i = 13, 19 do assert.equal('', lines[i]) end
    assert.matches('^c r o i s sort', lines[20])
  end)

  it('cuts rows to the height and lines to the width', function()
    local lines = top.frame(frame(), { sort = 'offcpu' }, 40, 10)
    assert.equal(10, #lines)
    for _, l in ipairs(lines) do assert.is_true(#l <= 40, l) end
    -- 8 lines above the table, one process row, the footer
    assert.matches('^%s+10 nginx', lines[9])
    assert.matches('OFFCPU', top.frame(frame(), { sort = 'offcpu' }, 200, 10)[8])
  end)

  it('shows the filter, the prompt being typed, the pause and the help', function()
    local lines = top.frame(frame(), { sort = 'cpu', filter = 'NGINX', paused = true, prompt = 'ngi' }, 100, 16)
    assert.matches('2 processes  sort CPU%%  filter "NGINX"  PAUSED$', lines[1])
    assert.equal('filter: ngi_', lines[16])
    local help = top.frame(frame(), { sort = 'cpu', help = true }, 100, 5)
    assert.equal(5, #help)
    assert.equal('perf_manual top: keys', help[1])
  end)

  it('says which columns are not measured and why', function()
    local f = frame()
    local no_block = 'io: no block tracepoints'
    f.missing = { runq = 'needs root', offcpu = 'needs root', iolat = no_block, iops = no_block }
    local lines = top.frame(f, { sort = 'cpu' }, 200, 20)
    assert.equal('not measured: RUNQms/s OFFCPUms/s: needs root; IOLATms IO/s: io: no block tracepoints', lines[7])
    assert.is_nil(top.missing_line({}))
  end)

  it('draws batch frames with every row when there is no height', function()
    local lines = top.frame(frame(), { sort = 'cpu', rows = 2 }, 120, nil)
    assert.equal(10, #lines)
    assert.matches('^%s+11 cpu_burn', lines[9])
    assert.matches('^%s+9 NGINX', lines[10])
  end)

  it('gives the frame as JSON: USE rows, cost, missing columns, processes in order', function()
    local doc = util.json_decode(util.json_encode(top.json(frame(), { sort = 'runq', rows = 2 })))
    assert.equal('runq', doc.sort)
    assert.equal(2, #doc.processes)
    assert.equal(11, doc.processes[1].pid)
    assert.equal(640, doc.processes[1].runq_ms_per_s)
    assert.equal(2, doc.processes[1].syscalls_per_s)
    assert.same({ 'cpu', 'memory', 'disk', 'network' },
      { doc.use[1].resource, doc.use[2].resource, doc.use[3].resource, doc.use[4].resource })
    assert.equal('vdb', doc.use[3].name)
    assert.equal(1, doc.use[3].others)
    assert.equal(0.8, doc.cost.self_cpu_pct)
    assert.equal('sched', doc.cost.bpf[1].name)
  end)

  it('draws a bar on a scale', function()
    assert.equal('[..........]', top.bar(nil, 5, 10))
    assert.equal('[#####.....]', top.bar(2.5, 5, 10))
    assert.equal('[##########]', top.bar(50, 5, 10))
  end)
end)
