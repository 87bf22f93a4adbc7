--- NUMA placement for the `numa` runbook: the nodes (CPUs, memory), the
--- kernel's per-node allocation counters (nodeN/numastat) between two
--- snapshots, and a process's memory per node (/proc/PID/numa_maps) against
--- the nodes its threads run on. Snapshots are plain tables of the files'
--- text, so a recording (or a fixture of a machine with more nodes) is
--- judged by the same code as the live system.
local util = require('perf_manual.util')
local dirent = require('posix.dirent')

local M = {}

M.COUNTERS = { 'numa_hit', 'numa_miss', 'numa_foreign', 'interleave_hit', 'local_node', 'other_node' }

--- "0-3,8-11" -> { 0, 1, 2, 3, 8, 9, 10, 11 }
function M.parse_cpulist(text)
  local out = {}
  for part in (text or ''):gmatch('[^,%s]+') do
    local a, b = part:match('^(%d+)%-(%d+)$')
    if a then
      for c = tonumber(a), tonumber(b) do out[#out + 1] = c end
    elseif part:match('^%d+$') then
      out[#out + 1] = tonumber(part)
    end
  end
  return out
end

--- numastat text -> { numa_hit = n, ... }
function M.parse_numastat(text)
  local t = {}
  for k, v in (text or ''):gmatch('(%S+)%s+(%d+)') do t[k] = tonumber(v) end
  return t
end

--- numa_maps text -> { pages_kb = { [node] = kB }, total_kb }
function M.parse_numa_maps(text)
  local by, total = {}, 0
  for line in (text or ''):gmatch('[^\n]+') do
    local page_kb = tonumber(line:match('kernelpagesize_kB=(%d+)')) or 4
    for node, pages in line:gmatch(' N(%d+)=(%d+)') do
      node = tonumber(node)
      local kb = tonumber(pages) * page_kb
      by[node] = (by[node] or 0) + kb
      total = total + kb
    end
  end
  return { kb = by, total_kb = total }
end

local function nodes_in(dir)
  local ok, names = pcall(dirent.dir, dir)
  local out = {}
  if ok and names then
    for _, n in ipairs(names) do
      local id = n:match('^node(%d+)$')
      if id then out[#out + 1] = tonumber(id) end
    end
  end
  table.sort(out)
  return out
end

--- The text of the files the runbook reads, under root ('' for the live
--- system): { nodes = { [i] = { id, numastat, cpulist, meminfo } },
--- process = { pid, comm, numa_maps, cpus = { tid = cpu } } }.
function M.snapshot(root, pid)
  root = root or ''
  local base = root .. '/sys/devices/system/node'
  local snap = { nodes = {} }
  for _, id in ipairs(nodes_in(base)) do
    local d = base .. '/node' .. id
    snap.nodes[#snap.nodes + 1] = { id = id, numastat = util.readfile(d .. '/numastat'),
      cpulist = util.readfile(d .. '/cpulist'), meminfo = util.readfile(d .. '/meminfo') }
  end
  if pid then
    local p = root .. '/proc/' .. pid
    local proc = { pid = pid, comm = (util.readfile(p .. '/comm') or ''):gsub('\n$', ''),
      numa_maps = util.readfile(p .. '/numa_maps'), cpus = {} }
    local ok, tids = pcall(dirent.dir, p .. '/task')
    for _, tid in ipairs(ok and tids or {}) do
      local stat = tid:match('^%d+$') and util.readfile(p .. '/task/' .. tid .. '/stat')
      -- field 39 (processor), counted after the ")" that ends the command
      local rest = stat and stat:match('%) (.*)$')
      if rest then
        local f = util.split(rest, ' ')
        proc.cpus[tid] = tonumber(f[37])
      end
    end
    snap.process = proc
  end
  return snap
end

--- Judges two snapshots `seconds` apart: per node the counters per second
--- and the local share of allocations; the process's memory per node and
--- where its threads ran; a verdict. Returns a table (see the runbook).
function M.judge(before, after, seconds)
  local out = { nodes = {}, node_count = #after.nodes }
  local cpu_node = {}
  local b_by = {}
  for _, n in ipairs(before.nodes or {}) do b_by[n.id] = M.parse_numastat(n.numastat) end
  local other_total, local_total = 0, 0
  for _, n in ipairs(after.nodes) do
    local a, b = M.parse_numastat(n.numastat), b_by[n.id] or {}
    local row = { node = n.id, cpus = M.parse_cpulist(n.cpulist),
      mem_total_kb = tonumber((n.meminfo or ''):match('MemTotal:%s+(%d+)')),
      mem_free_kb = tonumber((n.meminfo or ''):match('MemFree:%s+(%d+)')) }
    for _, c in ipairs(row.cpus) do cpu_node[c] = n.id end
    for _, k in ipairs(M.COUNTERS) do
      if a[k] and b[k] then row[k .. '_per_s'] = (a[k] - b[k]) / seconds end
    end
    local l, o = row.local_node_per_s or 0, row.other_node_per_s or 0
    if l + o > 0 then row.local_pct = l / (l + o) * 100 end
    local_total, other_total = local_total + l, other_total + o
    out.nodes[#out.nodes + 1] = row
  end
  if local_total + other_total > 0 then out.local_pct = local_total / (local_total + other_total) * 100 end
  local p = after.process
  if p then
    local maps = M.parse_numa_maps(p.numa_maps)
    local ran = {}
    for _, cpu in pairs(p.cpus or {}) do
      local node = cpu_node[cpu]
      if node then ran[node] = (ran[node] or 0) + 1 end
    end
    local proc = { pid = p.pid, comm = p.comm, total_kb = maps.total_kb, memory = {}, threads = {} }
    for node, kb in pairs(maps.kb) do
      proc.memory[#proc.memory + 1] = { node = node, kb = kb, pct = maps.total_kb > 0 and kb / maps.total_kb * 100 }
    end
    table.sort(proc.memory, function(x, y) return x.node < y.node end)
    for node, n in pairs(ran) do proc.threads[#proc.threads + 1] = { node = node, threads = n } end
    table.sort(proc.threads, function(x, y) return x.node < y.node end)
    -- memory on nodes none of its threads ran on is remote to all of them
    local remote = 0
    for node, kb in pairs(maps.kb) do if not ran[node] then remote = remote + kb end end
    proc.remote_kb = remote
    proc.remote_pct = maps.total_kb > 0 and remote / maps.total_kb * 100 or nil
    out.process = proc
  end
  if out.node_count <= 1 then
    out.verdict = string.format('one NUMA node: every allocation is local (%s), there is no placement to tune here',
      out.local_pct and string.format('%.0f%% local', out.local_pct) or 'nothing allocated in the window')
    out.single_node = true
  else
    local parts = {}
    if out.local_pct then
      parts[#parts + 1] = string.format('%.1f%% of allocations local to the allocating CPU\'s node', out.local_pct)
    end
    if out.process and out.process.remote_pct then
      parts[#parts + 1] = string.format('%s has %.0f%% of its memory on nodes none of its threads run on',
        out.process.comm ~= '' and out.process.comm or ('pid ' .. out.process.pid), out.process.remote_pct)
    end
    local bad = (out.local_pct and out.local_pct < 90) or (out.process and (out.process.remote_pct or 0) > 25)
    out.remote = bad and true or false
    out.verdict = (bad and 'remote memory: ' or 'placement is mostly local: ') .. table.concat(parts, '; ')
  end
  return out
end

return M
