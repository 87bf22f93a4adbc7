-- numa: is memory where the CPUs that use it are? The NUMA nodes (CPUs,
-- memory), the kernel's allocation counters per node over a window
-- (numa_hit, numa_miss, local_node, other_node per second: how many
-- allocations landed on the node of the allocating CPU), and for a process
-- its memory per node against the nodes its threads run on. On a machine
-- with one node it says so: there is nothing to place.
local numa = require('perf_manual.numa')
local text = require('perf_manual.report.hist')

local function rate(v) return v and string.format('%.1f', v) or '-' end
local function mib(kb) return kb and string.format('%.1f', kb / 1024) or '-' end

return playbook {
  name = 'numa',
  topic = 'memory',
  summary = 'NUMA placement: allocations local to their node, and a process\'s memory per node against its threads',
  examples = '  perf_manual numa --duration 5\n'
    .. '  perf_manual numa --pid 1234 --duration 10 --json\n'
    .. '  perf_manual numa --pid 1234 --save /tmp/numa && perf_manual numa --replay /tmp/numa',
  params = {
    target = param.target { 'a process whose memory placement to show (optional)', optional = true,
      aliases = param.target_aliases },
    duration = param.duration { 'the window of the per-node counters', default = '5s', above = 0 },
    json = param.flag { 'print the result as one JSON document' },
    save = param.path { 'also write DIR/numa.json (the files read), for --replay', optional = true },
    replay = param.path { 'judge the snapshots in DIR/numa.json again', optional = true },
    root = param.path { 'read sys/ and proc/ under this directory instead of / (a copy of another machine\'s)',
      optional = true, hidden = true },
  },

  step 'snapshots' {
    function(inv, p)
      if p.replay then
        local rec, why = require('perf_manual.verbs.common').recorded(inv, 'numa.json')
        if not rec then inv:fail('numa: ' .. why) end
        inv.rec = rec
        return
      end
      inv:check_output(p.save, 'dir', '--save')
      local pid
      if p.target then
        local t = inv:target(p.target)
        pid = t.pid
        if not pid then inv:fail('numa: --target must be one process (a PID or a process name)') end
      end
      local before = numa.snapshot(p.root, pid)
      if #before.nodes == 0 then
        inv:fail('numa: no NUMA nodes under ' .. (p.root or '') .. '/sys/devices/system/node (kernel without NUMA)')
      end
      local t0 = require('perf_manual.sys').now()
      require('perf_manual.sys').sleep(p.duration)
      local after = numa.snapshot(p.root, pid)
      local rec = { seconds = require('perf_manual.sys').now() - t0, before = before, after = after }
      if p.save then inv:save_file(inv:mkdir(p.save) .. '/numa.json', rec) end
      inv.rec = rec
    end,
  },

  step 'judge' {
    function(inv, p)
      local rec = inv.rec
      local r = numa.judge(rec.before, rec.after, rec.seconds)
      if p.json then
        inv:json(r)
        return
      end
      inv:printf('NUMA nodes: %d\n', r.node_count)
      inv:show(text.table(r.nodes, {
        { key = 'node', title = 'NODE' },
        { key = 'cpus', title = 'CPUS', align = 'l', fmt = function(v) return tostring(#v) end },
        { key = 'mem_total_kb', title = 'MEM(MiB)', fmt = mib },
        { key = 'mem_free_kb', title = 'FREE(MiB)', fmt = mib },
        { key = 'numa_hit_per_s', title = 'HIT/s', fmt = rate },
        { key = 'numa_miss_per_s', title = 'MISS/s', fmt = rate },
        { key = 'numa_foreign_per_s', title = 'FOREIGN/s', fmt = rate },
        { key = 'local_node_per_s', title = 'LOCAL/s', fmt = rate },
        { key = 'other_node_per_s', title = 'OTHER/s', fmt = rate },
        { key = 'local_pct', title = 'LOCAL%', fmt = rate },
      }))
      local pr = r.process
      if pr then
        inv:printf('\npid %s %s: %s MiB resident in numa_maps\n', tostring(pr.pid), pr.comm, mib(pr.total_kb))
        for _, m in ipairs(pr.memory) do
          inv:printf('  node%d  %10s MiB  %5.1f%%\n', m.node, mib(m.kb), m.pct or 0)
        end
        local ran = {}
        for _, t in ipairs(pr.threads) do ran[#ran + 1] = string.format('node%d: %d', t.node, t.threads) end
        inv:printf('  threads last ran on  %s\n', table.concat(ran, ', '))
      end
      inv:print('verdict: ' .. r.verdict)
    end,
  },
}
