--- Memory and network culprits of a USE check, sampled on its intervals:
--- the target's cgroup memory (working set against the limit, its peak,
--- refaults and reclaim), the processes that fault most, the regular files
--- they hold open, and the target's TCP sockets (queues, retransmits, the
--- interface their peers are reached by). Gathers numbers; judges nothing.
---
---   local mn = memnet.new(target, cg_dirs, netpaths)
---                                              -- cg_dirs: cgroup.resolve() result or nil;
---                                              -- netpaths: network.netns_paths()
---   mn:sample()                                -- on every interval (and once at the start)
---   mn:finish(m)                               -- sets m.cgroup_memory_detail, m.faults, m.sockets
---
--- m.cgroup_memory_detail = { dir=, version=, limit_bytes=, high_bytes=, working_set_bytes= (last),
---   working_set_peak_bytes=, anon_peak_bytes=, usage_peak_bytes=, formula=, refault_file_per_s=,
---   refault_anon_per_s=, pgscan_per_s=, pgsteal_per_s=, reclaim_pages_per_s=, reclaim_source=,
---   pgmajfault_per_s=, oom_kills=, open_file_bytes=, open_files=, samples=, missing= }
--- m.faults = { scope = 'target'|'system', top = { { pid=, comm=, majflt_per_s=, minflt_per_s= } } }
--- m.sockets = { count=, list = { Sock + { max_tx_queue=, max_rx_queue=, max_retrnsmt= } (top 10) },
---   ifaces = { name, … }, tx_queue_bytes=, rx_queue_bytes= (sums at the end) }
local util = require('perf_manual.util')
local common = require('perf_manual.collectors.common')
local cgc = require('perf_manual.collectors.cgroup')
local memory = require('perf_manual.collectors.memory')
local network = require('perf_manual.collectors.network')
local targets = require('perf_manual.measure.target')
local sys = require('perf_manual.sys')

local M = {}
M.__index = M

local function all_pids(own)
  local out = {}
  local ok, list = pcall(require('posix.dirent').dir, '/proc')
  for _, e in ipairs(ok and list or {}) do
    local n = tonumber(e:match('^%d+$'))
    if n and n ~= own then out[#out + 1] = n end
  end
  return out
end

function M.new(t, cg_dirs, netpaths)
  local self = setmetatable({ t = t, dirs = cg_dirs, n = 0, socks = {}, netpaths = netpaths }, M)
  return self
end

function M:pids()
  if self.t.kind == 'system' then return all_pids(sys.getpid()) end
  return targets.pids(self.t)
end

function M:sample()
  local pids = self:pids()
  self.n = self.n + 1
  if self.dirs then
    local mem = cgc.memory_snapshot(self.dirs)
    if mem then
      local now = common.now()
      if not self.mem_first then self.mem_first, self.t_first = mem, now end
      self.mem_last, self.t_last = mem, now
      local ws = cgc.working_set(mem.stat, mem.version)
      if ws and (not self.ws_peak or ws > self.ws_peak) then self.ws_peak = ws end
      local anon = cgc.anon_bytes(mem.stat, mem.version)
      if anon and (not self.anon_peak or anon > self.anon_peak) then self.anon_peak = anon end
      if mem.usage_bytes and (not self.usage_peak or mem.usage_bytes > self.usage_peak) then
        self.usage_peak = mem.usage_bytes
      end
    end
  end
  local f = memory.fault_sample(pids)
  self.faults_first = self.faults_first or f
  self.faults_last = f
  if self.t.kind ~= 'system' then
    local total, count = memory.open_file_bytes(pids)
    if count > 0 and (not self.open_bytes or total > self.open_bytes) then
      self.open_bytes, self.open_files = total, count
    end
    local list = network.sockets(pids, self.netpaths)
    for _, s in ipairs(list) do
      local o = self.socks[s.inode]
      s.max_tx_queue = math.max(s.tx_queue, o and o.max_tx_queue or 0)
      s.max_rx_queue = math.max(s.rx_queue, o and o.max_rx_queue or 0)
      s.max_retrnsmt = math.max(s.retrnsmt, o and o.max_retrnsmt or 0)
      self.socks[s.inode] = s
    end
    self.sock_last = list
  end
end

function M:finish(m)
  local a, b = self.mem_first, self.mem_last
  if b then
    local e = a ~= b and self.t_last - self.t_first or nil
    local r = cgc.memory_stat_rates(a, b, e)
    local ws, formula = cgc.working_set(b.stat, b.version)
    m.cgroup_memory_detail = { dir = b.dir, version = b.version, limit_bytes = b.limit_bytes, high_bytes = b.high_bytes,
      working_set_bytes = ws, working_set_peak_bytes = self.ws_peak, anon_peak_bytes = self.anon_peak,
      usage_peak_bytes = math.max(self.usage_peak or 0, b.max_usage_bytes or 0) > 0
        and math.max(self.usage_peak or 0, b.max_usage_bytes or 0) or nil,
      formula = formula, refault_file_per_s = r.refault_file_per_s, refault_anon_per_s = r.refault_anon_per_s,
      pgscan_per_s = r.pgscan_per_s, pgsteal_per_s = r.pgsteal_per_s, reclaim_pages_per_s = r.reclaim_pages_per_s,
      reclaim_source = r.reclaim_source, pgmajfault_per_s = r.pgmajfault_per_s, oom_kills = r.oom_kills,
      oom_kills_total = b.oom_kills, limit_hits = r.limit_hits, open_file_bytes = self.open_bytes,
      open_files = self.open_files, samples = self.n, missing = r.missing }
  end
  if self.faults_first and self.faults_last ~= self.faults_first then
    m.faults = { scope = self.t.kind == 'system' and 'system' or 'target',
      top = util.array(memory.top_faulters(self.faults_first, self.faults_last, 5)) }
  end
  if self.sock_last then
    local list, ifaces, seen, tx, rx = util.array(), util.array(), {}, 0, 0
    for _, s in ipairs(self.sock_last) do
      local full = self.socks[s.inode] or s
      if #list < 10 then list[#list + 1] = full end
      tx, rx = tx + s.tx_queue, rx + s.rx_queue
      if s.iface and not seen[s.iface] then seen[s.iface] = true; ifaces[#ifaces + 1] = s.iface end
    end
    m.sockets = { count = #self.sock_last, list = list, ifaces = ifaces, tx_queue_bytes = tx, rx_queue_bytes = rx }
  end
  return m
end

return M
