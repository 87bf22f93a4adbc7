-- numa: the kernel's formats read right, the one-node machine said plainly
-- (a real recording of this VM), and the placement logic on a two-node
-- recording written in the kernel's formats (tests/fixtures/runbooks/README.md).
local util = require('perf_manual.util')
local numa = require('perf_manual.numa')
local h = test_helpers

local function fixture(name) return h.root .. '/tests/fixtures/runbooks/' .. name end

describe('numa', function()
  it('reads cpulists, numastat and numa_maps', function()
    assert.same({ 0, 1, 2, 3, 8, 10, 11 }, numa.parse_cpulist('0-3,8,10-11\n'))
    assert.same({}, numa.parse_cpulist(''))
    local s = numa.parse_numastat('numa_hit 10\nnuma_miss 2\nlocal_node 9\nother_node 1\n')
    assert.same({ 10, 2, 9, 1 }, { s.numa_hit, s.numa_miss, s.local_node, s.other_node })
    local m = numa.parse_numa_maps('7f00 default anon=3 N0=1 N1=2 kernelpagesize_kB=4\n'
      .. '7f10 default file=/x huge N1=1 kernelpagesize_kB=2048\n7f20 default\n')
    assert.same({ [0] = 4, [1] = 2056 }, m.kb)
    assert.equal(2060, m.total_kb)
  end)

  it('one node (this VM, recorded): every allocation local, said plainly', function()
    local out, err, st = h.pm('numa --replay ' .. fixture('numa_one_node'))
    assert.equal(0, st, err)
    assert.matches('^NUMA nodes: 1\n', out)
    assert.matches('\npid %d+ mem_pressure: 66%.5 MiB resident in numa_maps\n  node0 +66%.5 MiB +100%.0%%\n', out)
    assert.matches('\nverdict: one NUMA node: every allocation is local %(100%% local%), there is no placement to '
      .. 'tune here\n$', out)
  end)

  it('two nodes: remote allocations per node and the process whose memory is away from its threads', function()
    local out, err, st = h.pm('numa --replay ' .. fixture('numa_two_nodes') .. ' --json')
    assert.equal(0, st, err)
    local r = assert(util.json_decode(out))
    assert.equal(2, r.node_count)
    -- node 0: 9000 local and 6000 other allocations a second
    assert.same({ 9000, 6000, 60 }, { r.nodes[1].local_node_per_s, r.nodes[1].other_node_per_s, r.nodes[1].local_pct })
    assert.near(8000 / 18100 * 100, r.nodes[2].local_pct, 1e-3)
    assert.near(17000 / 33100 * 100, r.local_pct, 1e-3)
    -- dbserver: threads on CPUs 1, 2, 3, 5 (node 0); memory mostly on node 1
    assert.same({ { node = 0, threads = 4 } }, r.process.threads)
    local node1 = (720896 + 262144 + 60) * 4
    assert.equal(node1, r.process.memory[2].kb)
    assert.equal(node1, r.process.remote_kb)
    assert.is_true(r.remote)
    assert.matches("^remote memory: 51%.4%% of allocations local to the allocating CPU's node; dbserver has 94%% of "
      .. 'its memory on nodes none of its threads run on$', r.verdict)
  end)

  it('says what is missing from a recording, exit 2', function()
    local _, err, st = h.pm('numa --replay ' .. fixture('runqlat_cpu_burn'))
    assert.equal(2, st)
    assert.matches('^perf_manual: numa: not in the recorded data', err)
  end)
end)
