-- use-check names the memory and network culprits of real workloads, judged
-- against the kernel's own figures read by the test: the cgroup's memory.stat
-- and oom_control for a page-cache thrash under a 64 MiB limit, and `ss -tni`
-- for a sender to a slow local reader.
local h = test_helpers
local W = require('e2e.workload')
local U = require('e2e.use')
local sys = require('perf_manual._c.sys')
local common = require('perf_manual.collectors.common')
local use = require('perf_manual.analyzers.use')

local MiB = 1024 * 1024

-- the target summary's culprit lines, rendered from the JSON document
local function lines(d) return table.concat(use.memnet_lines(d), '\n') end

local function stat_of(dir) return common.parse_kv(common.read(dir .. '/memory.stat')) end

describe('use-check memory and network culprits end to end', function()
  teardown(function() W.cleanup_scratch() end)

  it('names the cgroup, its limit, working set, refaults and the limit it needs', function()
    if not h.need_root('memory cgroups') then return end
    h.with_machine_lock(function()
      W.with('mem_pressure', { 20, W.scratch(), 96, 40 }, { memory_limit = 64 * MiB }, function(w)
        assert(W.wait_until(function() return (W.io(w.pid, 'rchar') or 0) > 128 * MiB end, 20),
          'mem_pressure did not start re-reading its file')
        local v1 = w.cgroup.version == 1
        local refault = v1 and 'total_workingset_refault_file' or 'workingset_refault_file'
        local s0, t0 = stat_of(w.cgroup.dir), sys.now()
        local d = U.check(w.pid, 4)
        local s1, t1 = stat_of(w.cgroup.dir), sys.now()
        local mem = U.row(d, 'memory')
        local c = mem.culprit
        assert.is_table(c, U.explain(d))
        assert.equal(w.cgroup.dir, c.cgroup)
        assert.equal(64 * MiB, c.limit_bytes)
        -- the kernel's refaults over a window that holds the tool's
        local outer = (s1[refault] - s0[refault]) / (t1 - t0)
        assert.is_true(c.refault_per_s > 0.3 * outer and c.refault_per_s < 1.5 * outer,
          string.format('tool %.0f/s, memory.stat %.0f/s', c.refault_per_s, outer))
        -- working set by the test's own reading of the formula, at the end
        local ws1 = v1 and (s1.total_active_anon + s1.total_inactive_anon + s1.total_active_file)
          or (s1.anon + s1.active_file)
        assert.is_true(c.working_set_peak_bytes <= 64 * MiB and ws1 <= 64 * MiB)
        assert.is_true(c.working_set_peak_bytes > 40 * MiB, c.working_set_peak_bytes)
        -- it holds 40 MiB of anon and re-reads a 96 MiB file: it needs about 136 MiB
        assert.is_true(c.need_bytes > 120 * MiB and c.need_bytes < 200 * MiB, c.need_bytes / MiB)
        -- no OOM kill, as the cgroup's own counter says
        local oom = v1 and common.parse_kv(common.read(w.cgroup.dir .. '/memory.oom_control')).oom_kill
          or common.parse_kv(common.read(w.cgroup.dir .. '/memory.events')).oom_kill
        assert.equal(0, oom)
        assert.equal(0, c.oom_kills)
        assert.matches('memory culprit: cgroup ' .. w.cgroup.dir:gsub('%p', '%%%0'), lines(d))
        assert.matches('needs about', lines(d))
      end)
    end)
  end)

  it('shows the target\'s socket, its interface and queues as ss does', function()
    h.with_machine_lock(function()
      W.with('tcp_slow_peer', { 20, 32768 }, {}, function(w)
        sys.sleep(1)
        local d = U.check(w.pid, 2)
        local p = io.popen('ss -tni 2>/dev/null')
        local ss = p:read('*a'); p:close()
        local so = d.measures.sockets
        assert.is_table(so, U.explain(d))
        assert.equal(1, so.count)
        local x = so.list[1]
        assert.equal('lo', x.iface)
        assert.equal('ESTABLISHED', x.state)
        local send_q
        for line in ss:gmatch('[^\n]+') do
          local _, sq, l = line:match('^ESTAB%s+(%d+)%s+(%d+)%s+(%S+)')
          if l == string.format('127.0.0.1:%d', x.local_port) then send_q = tonumber(sq) end
        end
        assert.is_number(send_q, ss)
        -- the queue stays full: the two reads agree within a bite of the reader
        assert.is_true(math.abs(send_q - x.tx_queue) <= 256 * 1024, send_q .. ' vs ' .. x.tx_queue)
        assert.is_true(x.tx_queue > 1e6)
        assert.matches('target sockets %(1 TCP, via lo%)', lines(d))
      end)
    end)
  end)
end)
