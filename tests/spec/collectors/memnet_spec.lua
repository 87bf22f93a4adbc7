-- Memory and network culprits on recorded data: /proc/net/tcp and `ss -tni`
-- taken together while tcp_slow_peer ran (a sender to a slow local reader),
-- and a v1 memory cgroup's memory.stat 2 s apart while mem_pressure thrashed
-- its page cache under a 64 MiB limit (tests/fixtures/memnet).
local network = require('perf_manual.collectors.network')
local memory = require('perf_manual.collectors.memory')
local process = require('perf_manual.collectors.process')
local cgc = require('perf_manual.collectors.cgroup')
local common = require('perf_manual.collectors.common')
local use = require('perf_manual.analyzers.use')
local findings = require('perf_manual.analyzers.findings')

local function fx(name) return fixture('memnet/' .. name) end

-- `ss -tni` rows: { recv_q, send_q, local, peer }
local function ss_rows(text)
  local out = {}
  for line in text:gmatch('[^\n]+') do
    local rq, sq, l, p = line:match('^ESTAB%s+(%d+)%s+(%d+)%s+(%S+)%s+(%S+)')
    if rq then out[#out + 1] = { recv_q = tonumber(rq), send_q = tonumber(sq), ['local'] = l, peer = p } end
  end
  return out
end

describe('memory and network culprits', function()
  it('reads the queues of a socket from /proc/net/tcp as ss reports them', function()
    local socks = assert(network.parse_tcp(fx('tcp_slow_peer.tcp')))
    local ino = tonumber(fx('tcp_slow_peer.fd'):match('socket:%[(%d+)%]'))
    local mine
    for _, s in ipairs(socks) do if s.inode == ino then mine = s end end
    assert.is_truthy(mine, 'the sender socket is in /proc/net/tcp')
    assert.equal('ESTABLISHED', mine.state)
    assert.equal('127.0.0.1', mine.remote_addr)
    local found = 0
    for _, r in ipairs(ss_rows(fx('tcp_slow_peer.ss'))) do
      if r['local'] == string.format('127.0.0.1:%d', mine.local_port) then
        found = found + 1
        -- read a moment apart: the full send queue moves by at most a bite
        assert.is_true(math.abs(r.send_q - mine.tx_queue) <= 65536, r.send_q .. ' vs ' .. mine.tx_queue)
        assert.is_true(mine.tx_queue > 1e6)
      elseif r.peer == string.format('127.0.0.1:%d', mine.local_port) then
        -- the slow reader's side: its receive queue
        for _, s in ipairs(socks) do
          if s.local_port == mine.remote_port and s.remote_port == mine.local_port then
            found = found + 1
            assert.is_true(math.abs(r.recv_q - s.rx_queue) <= 65536, r.recv_q .. ' vs ' .. s.rx_queue)
            assert.is_true(s.rx_queue > 0)
          end
        end
      end
    end
    assert.equal(2, found)
  end)

  it('names the interface a peer is reached by from the route table', function()
    local routes = assert(network.parse_route(fx('route')))
    assert.equal('lo', network.route_iface('127.0.0.1', routes, '127.0.0.1'))
    assert.equal('eth0', network.route_iface('8.8.8.8', routes, '10.0.0.1'))
    assert.equal('eth0', network.route_iface('192.0.2.7', routes, '192.0.2.9'))
    assert.is_nil(network.parse_route('nonsense'))
    assert.is_nil(network.parse_tcp('nonsense'))
  end)

  it('measures a thrashing v1 cgroup: working set, refaults and reclaim over the window', function()
    local a = { version = 'v1', stat = common.parse_kv(fx('v1_thrash.memory.stat.0')) }
    local b = { version = 'v1', stat = common.parse_kv(fx('v1_thrash.memory.stat.1')) }
    local ws, formula = cgc.working_set(b.stat, 'v1')
    assert.matches('total_active_file', formula)
    local limit = 64 * 2 ^ 20
    assert.is_true(ws <= limit and ws > 40 * 2 ^ 20, ws) -- 40 MiB of anon held, plus active cache
    local r = cgc.memory_stat_rates(a, b, 2)
    local d = b.stat.total_workingset_refault_file - a.stat.total_workingset_refault_file
    assert.near(d / 2, r.refault_file_per_s, 1e-9)
    assert.is_true(r.refault_file_per_s > 1000)
    assert.is_true(r.reclaim_pages_per_s > 0)
    assert.matches('lower bound', r.reclaim_source)
    assert.truthy(r.missing.pgscan)
  end)

  it('estimates the limit a thrashing workload needs, and says how', function()
    local b = common.parse_kv(fx('v1_thrash.memory.stat.1'))
    local ws = cgc.working_set(b, 'v1')
    local anon = cgc.anon_bytes(b, 'v1')
    local d = { working_set_peak_bytes = ws, anon_peak_bytes = anon, refault_file_per_s = 100000,
      open_file_bytes = 96 * 2 ^ 20, open_files = 1 }
    local n = use.memory_need(d, 4096)
    -- what mem_pressure holds: 40 MiB anon and a 96 MiB file it re-reads
    assert.is_true(math.abs(n.bytes - 136 * 2 ^ 20) < 4 * 2 ^ 20, n.bytes / 2 ^ 20)
    assert.matches('holds open', n.method)
    d.open_file_bytes = nil
    n = use.memory_need(d, 4096)
    assert.near(ws + 100000 * 4096, n.bytes, 1)
    assert.matches('1 s of refaulted bytes', n.method)
    d.refault_file_per_s = 0
    assert.equal(ws, use.memory_need(d, 4096).bytes)
  end)

  it('ranks faulting processes by their /proc/PID/stat counters', function()
    local s0 = assert(process.parse_stat(fx('v1_thrash.pid_stat.0')))
    local s1 = assert(process.parse_stat(fx('v1_thrash.pid_stat.1')))
    local a = { time = 0, procs = { [s0.pid] = { comm = s0.comm, minflt = s0.minflt, majflt = s0.majflt },
      [1] = { comm = 'init', minflt = 5, majflt = 0 } } }
    local b = { time = 2, procs = { [s1.pid] = { comm = s1.comm, minflt = s1.minflt, majflt = s1.majflt },
      [1] = { comm = 'init', minflt = 6, majflt = 0 } } }
    a.procs[7] = { comm = 'faulter', minflt = 0, majflt = 10 }
    b.procs[7] = { comm = 'faulter', minflt = 0, majflt = 30 }
    local top = memory.top_faulters(a, b, 5)
    -- mem_pressure re-reads its file with pread: no page faults in the window, so not listed
    assert.equal(s0.minflt, s1.minflt)
    assert.equal(2, #top)
    assert.same({ 'faulter', 'init' }, { top[1].comm, top[2].comm })
    assert.equal(10, top[1].majflt_per_s)
    assert.equal(0.5, top[2].minflt_per_s)
  end)

  it('names a cgroup in the culprits when memory is flagged or bounded, not an unlimited one with memory ok',
    function()
    local function lines(status, culprit)
      return table.concat(use.memnet_lines({ rows = { { resource = 'memory', status = status, culprit = culprit } } }),
        '\n')
    end
    local free = { cgroup = '/sys/fs/cgroup/memory/session', working_set_bytes = 2 ^ 27, reclaim_bytes_per_s = 6e5,
      top_faulters = { { pid = 7, comm = 'job', majflt_per_s = 0, minflt_per_s = 3 } } }
    assert.equal('', lines('ok', free))
    assert.matches('^memory culprit: cgroup /sys/fs/cgroup/memory/session: limit none', lines('warn', free))
    free.limit_bytes = 2 ^ 28
    assert.matches('^memory culprit: cgroup /sys/fs/cgroup/memory/session: limit 256', lines('ok', free))
    free.limit_bytes, free.oom_kills = nil, 1
    assert.matches('1 OOM kills', lines('ok', free))
  end)

  it('turns the culprits into findings naming the cgroup, its limit and the socket', function()
    local res = { rows = {
      { resource = 'memory', name = 'Memory', status = 'HIGH', culprit = { cgroup = '/sys/fs/cgroup/memory/x',
        limit_bytes = 64 * 2 ^ 20, working_set_peak_bytes = 61 * 2 ^ 20, refault_per_s = 150000,
        reclaim_bytes_per_s = 40e6, need_bytes = 136 * 2 ^ 20, need_method = 'anon + open files' } },
      { resource = 'network', name = 'lo', status = 'ok',
        culprit = { sockets = { network.parse_tcp(fx('tcp_slow_peer.tcp'))[1] } } },
    } }
    res.rows[2].culprit.sockets[1].tx_queue = 3763200
    local f = findings.from_use_culprits(res)
    assert.matches('cgroup /sys/fs/cgroup/memory/x lives at its 64 MiB limit: working set 61 MiB, 150000 refaults/s',
      f[1].summary)
    assert.matches('needs about 136 MiB', f[1].summary)
    assert.equal('socket_queue', f[2].metric)
    assert.matches('send%-q 3%.6M', f[2].summary)
  end)
end)
