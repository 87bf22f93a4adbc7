--- Cgroup collector: the cgroups a pid, a cgroup path or a systemd unit
--- lives in, and their memory limits/usage/events (OOM kills, limit hits),
--- CPU quota and throttling, and pressure files. cgroup v1, v2 and the hybrid
--- layout (v1 controllers plus a v2 tree at /sys/fs/cgroup/unified) alike.
---
--- `mounts([mountinfo_text])` → { v2 = { dir=, root= }?, v1 = { [controller] = { dir=, root= } } }
--- `resolve(target)` → Dirs or nil, err; target = { pid = N } | { path = P } | { service = "x.service" }
---   Dirs = { path = cgroup path (v2's, or the first v1's), v2 = dir?, memory = dir?,
---     cpu = dir?, cpuacct = dir?, cpuset = dir? }   (dirs are filesystem directories)
---   errors: "no process N", "no cgroup P", "no cgroup for service X"
--- `sample_dirs(dirs)` / `sample(target)` → {
---   time=, path=,
---   memory = { version='v1'|'v2', dir=, usage_bytes=, limit_bytes= (nil: unlimited,
---     with unlimited=true), max_usage_bytes= (v1 / v2 memory.peak), failcnt= (v1),
---     events = { low, high, max, oom, oom_kill } (v2), oom_control = { oom_kill_disable,
---     under_oom, oom_kill } (v1), stat = { … },
---     limit_hits= (v2 events.max / v1 failcnt), oom_kills= (v2 events.oom_kill /
---     v1 oom_control.oom_kill) }?,
---   cpu = { version=, dir=, quota_us=, period_us= (quota nil when unlimited),
---     nr_periods=, nr_throttled=, throttled_us=, usage_us=,
---     quota_dir= (set when the quota is an ancestor's: the throttling
---     counters are then that ancestor's) }?,
---   cpuset = { version=, dir=, cpus = { id, ... }, count=, list= }? (effective CPUs),
---   pressure = { cpu = Psi?, memory = Psi?, io = Psi? },
---   missing = { memory|cpu|field = why } }
--- `rates(prev, cur)` → { elapsed=, path=,
---   memory = { usage_bytes=, limit_bytes=, usage_pct= (of limit), limit_hits= ,
---     oom_kills= (during the interval), oom_kills_total=, under_oom= }?,
---   cpu = { usage_pct= (of one core), quota_cores=, quota_dir=, throttled_pct= (share of
---     periods throttled), nr_periods=, nr_throttled= (during the interval), throttled_ms_per_s= }?,
---   cpuset = { count=, list= }?,
---   pressure = { cpu = PsiRate?, memory = PsiRate?, io = PsiRate? }, missing= }
local lpeg = require('lpeg')
local common = require('perf_manual.collectors.common')
-- loaded on first use: a launch that only makes a run cgroup needs none of them
local lazy = function(name) return setmetatable({}, { __index = function(t, k)
  local m = require(name)
  setmetatable(t, { __index = m })
  return m[k]
end }) end
local psi = lazy('perf_manual.collectors.psi')
local process = lazy('perf_manual.collectors.process')
local cpu_collector = lazy('perf_manual.collectors.cpu')
local P, C, Ct, S = lpeg.P, lpeg.C, lpeg.Ct, lpeg.S

local M = {}

-- mountinfo: id parent maj:min root mountpoint options [optional…] - fstype source superoptions
local field = C((1 - S(' \n')) ^ 1)
local mi_line = Ct(field * (' ' * field) ^ 0) * common.nl ^ -1
local mountinfo_grammar = Ct(mi_line ^ 0) * -P(1)

local function unescape(s) return (s:gsub('\\(%d%d%d)', function(o) return string.char(tonumber(o, 8)) end)) end

--- Cgroup mounts from /proc/self/mountinfo text (read when not given).
function M.mounts(text)
  text = text or common.read('/proc/self/mountinfo')
  local m = { v1 = {} }
  local lines = text and mountinfo_grammar:match(text)
  if not lines then return m end
  for _, f in ipairs(lines) do
    local dash
    for i = 7, #f do if f[i] == '-' then dash = i; break end end
    if dash then
      local fstype, super = f[dash + 1], f[dash + 3] or ''
      local entry = { dir = unescape(f[5]), root = unescape(f[4]) }
      if fstype == 'cgroup2' then
        m.v2 = m.v2 or entry
      elseif fstype == 'cgroup' then
        for opt in super:gmatch('[^,]+') do
          if opt ~= 'rw' and opt ~= 'ro' and not opt:match('^clone_children') and not opt:match('^release_agent')
            and opt ~= 'noprefix' and opt ~= 'xattr' and opt ~= 'cpuset_v2_mode' then
            m.v1[opt] = m.v1[opt] or entry
          end
        end
      end
    end
  end
  return m
end

local function exists(p) return require('posix.unistd').access(p) == 0 end

-- A cgroup path seen from /proc/PID/cgroup, inside a mount whose root may
-- itself be a sub-cgroup (containers).
local function dir_in(mount, path)
  if not mount then return nil end
  local rel = path
  if mount.root ~= '/' and path:sub(1, #mount.root) == mount.root then rel = path:sub(#mount.root + 1) end
  if rel == '/' then rel = '' end
  return mount.dir .. rel
end

local CONTROLLERS = { 'memory', 'cpu', 'cpuacct', 'cpuset' }

local function dirs_from_path(m, path)
  local d = { path = path }
  if m.v2 then
    local v = dir_in(m.v2, path)
    if exists(v) then d.v2 = v end
  end
  for _, c in ipairs(CONTROLLERS) do
    local v = dir_in(m.v1[c], path)
    if v and exists(v) then d[c] = v end
  end
  if not (d.v2 or d.memory or d.cpu) then return nil end
  return d
end

--- Finds the cgroup directories of a pid, a cgroup path or a systemd unit.
---@param target table { pid = N } | { path = P } | { service = S }
---@param m table? mounts() result (specs)
function M.resolve(target, m, proc)
  m = m or M.mounts()
  if target.pid then
    local cg = common.read_parse((proc or '/proc') .. '/' .. target.pid .. '/cgroup', process.parse_cgroup)
    if not cg then return nil, 'no process ' .. target.pid end
    local d = { path = cg.v2 }
    if cg.v2 and m.v2 then d.v2 = dir_in(m.v2, cg.v2) end
    for _, c in ipairs(CONTROLLERS) do
      if cg.v1[c] and m.v1[c] then d[c] = dir_in(m.v1[c], cg.v1[c]) end
    end
    if not d.path or (d.path == '/' and cg.v1.memory) then d.path = cg.v1.memory or cg.v1.cpu or d.path end
    return d
  elseif target.path then
    local p = target.path
    -- a filesystem path under a cgroup mount
    local mounts = { m.v2 }
    for _, c in ipairs(CONTROLLERS) do mounts[#mounts + 1] = m.v1[c] end
    for _, mt in pairs(mounts) do
      if mt and (p == mt.dir or p:sub(1, #mt.dir + 1) == mt.dir .. '/') and exists(p) then
        local rel = p:sub(#mt.dir + 1)
        if rel == '' then rel = '/' end
        if mt.root ~= '/' then rel = mt.root .. (rel == '/' and '' or rel) end
        return dirs_from_path(m, rel)
      end
    end
    if p:sub(1, 1) ~= '/' then p = '/' .. p end
    local d = dirs_from_path(m, p)
    if not d then return nil, 'no cgroup ' .. target.path end
    return d
  elseif target.service then
    local path = M.find_unit(target.service, m)
    if not path then return nil, 'no cgroup for service ' .. target.service end
    return dirs_from_path(m, path)
  end
  error('[perf_manual.collectors.cgroup] resolve: expected { pid= } or { path= } or { service= }', 2)
end

--- Cgroup path of a systemd unit, searched under the systemd (or v2) tree:
--- "/system.slice/x.service", or nil.
function M.find_unit(unit, m)
  m = m or M.mounts()
  local names = { unit }
  if not unit:match('%.%a+$') then names[2] = unit .. '.service' end
  local trees = {}
  if m.v1['name=systemd'] then trees[#trees + 1] = m.v1['name=systemd'] end
  if m.v2 then trees[#trees + 1] = m.v2 end
  local dirent = require('posix.dirent')
  for _, mt in ipairs(trees) do
    -- breadth-first, a few levels deep: units sit in slices (system.slice, user.slice/…)
    local queue, depth = { '' }, 0
    while #queue > 0 and depth < 4 do
      local nextq = {}
      for _, rel in ipairs(queue) do
        for _, n in ipairs(names) do
          if exists(mt.dir .. rel .. '/' .. n .. '/cgroup.procs') then
            local p = rel .. '/' .. n
            if mt.root ~= '/' then p = mt.root .. p end
            return p
          end
        end
        local ok, list = pcall(dirent.dir, mt.dir .. rel)
        if ok then
          for _, e in ipairs(list) do
            if e:match('%.slice$') or e:match('%.scope$') or e:match('%.service$') then
              nextq[#nextq + 1] = rel .. '/' .. e
            end
          end
        end
      end
      queue, depth = nextq, depth + 1
    end
  end
  return nil
end

-- Single-value files: a number, or "max" (v2: no limit).
local value_grammar = common.osp * (common.num + C(P('max'))) * common.osp * (common.nl + -P(1)) * -P(1)

function M.parse_value(text)
  local v = type(text) == 'string' and value_grammar:match(text)
  if v == nil then return nil, 'not a single value' end
  return v
end

local cpumax_grammar = (common.uint + C(P('max'))) * common.sp * common.uint * S(' \t\n') ^ 0 * -P(1)

--- v2 cpu.max: quota_us (nil when "max"), period_us
function M.parse_cpu_max(text)
  local q, p = cpumax_grammar:match(text or '')
  if not p then return nil, 'not a cpu.max text' end
  return { quota_us = q ~= 'max' and q or nil, period_us = p }
end

local function readv(dir, file)
  return common.read_parse(dir .. '/' .. file, M.parse_value)
end
local function readkv(dir, file)
  return common.read_parse(dir .. '/' .. file, common.parse_kv)
end

-- v1 reports "no limit" as a huge page-aligned number
local V1_UNLIMITED = 2 ^ 62

local function memory_v2(dir)
  local m = { version = 'v2', dir = dir }
  local max, err = readv(dir, 'memory.max')
  if max == nil then return nil, err end
  if max == 'max' then m.unlimited = true else m.limit_bytes = max end
  m.usage_bytes = readv(dir, 'memory.current')
  m.max_usage_bytes = readv(dir, 'memory.peak') -- 5.19+
  local high = readv(dir, 'memory.high')
  if type(high) == 'number' then m.high_bytes = high end
  m.events = readkv(dir, 'memory.events')
  m.stat = readkv(dir, 'memory.stat')
  if m.events then m.limit_hits, m.oom_kills = m.events.max, m.events.oom_kill end
  return m
end

local function memory_v1(dir)
  local m = { version = 'v1', dir = dir }
  local lim, err = readv(dir, 'memory.limit_in_bytes')
  if lim == nil then return nil, err end
  if lim >= V1_UNLIMITED then m.unlimited = true else m.limit_bytes = lim end
  m.usage_bytes = readv(dir, 'memory.usage_in_bytes')
  m.max_usage_bytes = readv(dir, 'memory.max_usage_in_bytes')
  m.failcnt = readv(dir, 'memory.failcnt')
  m.oom_control = readkv(dir, 'memory.oom_control')
  m.stat = readkv(dir, 'memory.stat')
  m.limit_hits = m.failcnt
  m.oom_kills = m.oom_control and m.oom_control.oom_kill -- kernel 4.13+
  return m
end

local function cpu_v2(dir)
  local cs, err = readkv(dir, 'cpu.stat')
  if not cs then return nil, err end
  local c = { version = 'v2', dir = dir, usage_us = cs.usage_usec, nr_periods = cs.nr_periods,
    nr_throttled = cs.nr_throttled, throttled_us = cs.throttled_usec }
  local mx = common.read_parse(dir .. '/cpu.max', M.parse_cpu_max)
  if mx then c.quota_us, c.period_us = mx.quota_us, mx.period_us end
  c.has_controller = mx ~= nil
  return c
end

local function cpu_v1(dir, acct)
  local cs, err = readkv(dir, 'cpu.stat')
  if not cs then return nil, err end
  local c = { version = 'v1', dir = dir, nr_periods = cs.nr_periods, nr_throttled = cs.nr_throttled,
    throttled_us = cs.throttled_time and cs.throttled_time / 1000, has_controller = true }
  local q = readv(dir, 'cpu.cfs_quota_us')
  if q and q > 0 then c.quota_us = q end
  c.period_us = readv(dir, 'cpu.cfs_period_us')
  local u = acct and readv(acct, 'cpuacct.usage')
  if u then c.usage_us = u / 1000 end
  return c
end

-- The quota that binds a cgroup may sit on an ancestor (a slice, a pod):
-- the tightest one up to the hierarchy's root, with its own throttling
-- counters, since those are the ones that count the throttled periods.
local function parent(dir)
  return dir:match('^(.+)/[^/]+$')
end

local function quota_of(dir, version)
  if version == 'v2' then
    local mx = common.read_parse(dir .. '/cpu.max', M.parse_cpu_max)
    return mx and mx.quota_us, mx and mx.period_us
  end
  local q = readv(dir, 'cpu.cfs_quota_us')
  if q and q > 0 then return q, readv(dir, 'cpu.cfs_period_us') end
end

local function tightest_ancestor(c, mount_dir)
  if not mount_dir then return end
  local best, best_cores
  if c.quota_us and c.period_us and c.period_us > 0 then best_cores = c.quota_us / c.period_us end
  local d = parent(c.dir)
  while d and #d >= #mount_dir and d:sub(1, #mount_dir) == mount_dir do
    local q, per = quota_of(d, c.version)
    if q and per and per > 0 and (not best_cores or q / per < best_cores) then
      best, best_cores = { d, q, per }, q / per
    end
    d = parent(d)
  end
  if not best then return end
  local stat = (c.version == 'v2' and cpu_v2 or cpu_v1)(best[1])
  c.quota_dir, c.quota_us, c.period_us = best[1], best[2], best[3]
  if stat then c.nr_periods, c.nr_throttled, c.throttled_us = stat.nr_periods, stat.nr_throttled, stat.throttled_us end
end

local function cpuset_of(d)
  local dir, file, version
  if d.v2 and exists(d.v2 .. '/cpuset.cpus.effective') then dir, file, version = d.v2, 'cpuset.cpus.effective', 'v2'
  elseif d.cpuset then dir, file, version = d.cpuset, 'cpuset.effective_cpus', 'v1' end
  if not dir then return nil, 'no cpuset controller for this cgroup' end
  local ids, err = common.read_parse(dir .. '/' .. file, cpu_collector.parse_cpu_list)
  if not ids then return nil, err end
  -- an empty effective list (a v1 cpuset not set up yet) confines nothing
  if #ids == 0 then return nil, 'empty ' .. file end
  return { version = version, dir = dir, cpus = ids, count = #ids, list = cpu_collector.format_cpu_list(ids) }
end

--- Snapshot of explicit cgroup directories (see resolve()).
function M.sample_dirs(d)
  local s = { time = common.now(), path = d.path, pressure = {} }
  local mem, err
  if d.v2 and exists(d.v2 .. '/memory.max') then mem, err = memory_v2(d.v2)
  elseif d.memory then mem, err = memory_v1(d.memory)
  else err = 'no memory controller for this cgroup' end
  if mem then s.memory = mem else common.miss(s, 'memory', err) end
  local cpu, v2cpu
  if d.v2 then v2cpu = cpu_v2(d.v2) end
  if v2cpu and v2cpu.has_controller then cpu = v2cpu
  elseif d.cpu then
    cpu, err = cpu_v1(d.cpu, d.cpuacct)
    if cpu and not cpu.usage_us and v2cpu then cpu.usage_us = v2cpu.usage_us end
  elseif v2cpu then cpu = v2cpu
  else err = 'no cpu controller for this cgroup' end
  if cpu then
    local mounts = d.mounts or M.mounts()
    tightest_ancestor(cpu, cpu.version == 'v2' and mounts.v2 and mounts.v2.dir or mounts.v1.cpu and mounts.v1.cpu.dir)
    s.cpu = cpu
  else
    common.miss(s, 'cpu', err)
  end
  local cs, cserr = cpuset_of(d)
  if cs then s.cpuset = cs else common.miss(s, 'cpuset', cserr) end
  if cpu and cpu.nr_throttled == nil then
    common.miss(s, 'cpu_throttling', 'cpu controller not enabled for this cgroup')
  end
  for _, res in ipairs({ 'cpu', 'memory', 'io' }) do
    local p, perr
    if d.v2 then p, perr = psi.read(d.v2 .. '/' .. res .. '.pressure') else perr = 'no cgroup v2 pressure files' end
    if p then s.pressure[res] = p else common.miss(s, 'pressure_' .. res, perr) end
  end
  return s
end

--- Snapshot of the cgroups of target ({pid=}, {path=} or {service=}).
function M.sample(target)
  local d, err = M.resolve(target)
  if not d then return nil, err end
  return M.sample_dirs(d)
end

function M.rates(prev, cur)
  local e = common.elapsed(prev, cur)
  local out = { elapsed = e, path = cur.path, pressure = {} }
  local a, b = prev.memory, cur.memory
  if b then
    local m = { usage_bytes = b.usage_bytes, limit_bytes = b.limit_bytes,
      oom_kills_total = b.oom_kills, under_oom = b.oom_control and b.oom_control.under_oom == 1 or nil }
    if b.limit_bytes and b.usage_bytes and b.limit_bytes > 0 then m.usage_pct = 100 * b.usage_bytes / b.limit_bytes end
    if b.unlimited then common.miss(out, 'memory_usage_pct', 'no memory limit') end
    if a then
      m.limit_hits = common.delta(a.limit_hits, b.limit_hits)
      m.oom_kills = common.delta(a.oom_kills, b.oom_kills)
    end
    if m.oom_kills == nil then common.miss(out, 'memory_oom_kills', 'no OOM kill counter for this cgroup') end
    out.memory = m
  else
    common.miss(out, 'memory', (cur.missing or {}).memory)
  end
  local pc, cc = prev.cpu, cur.cpu
  if cc then
    local c = {}
    if cc.quota_us and cc.period_us then c.quota_cores, c.quota_dir = cc.quota_us / cc.period_us, cc.quota_dir end
    if pc then
      local u = common.rate(pc.usage_us, cc.usage_us, e)
      c.usage_pct = u and u / 1e4
      local dp, dt = common.delta(pc.nr_periods, cc.nr_periods), common.delta(pc.nr_throttled, cc.nr_throttled)
      c.nr_throttled, c.nr_periods = dt, dp
      if dp and dt and dp > 0 then c.throttled_pct = 100 * dt / dp end
      local tu = common.rate(pc.throttled_us, cc.throttled_us, e)
      c.throttled_ms_per_s = tu and tu / 1000
    end
    if c.nr_throttled == nil then
      common.miss(out, 'cpu_throttling', (cur.missing or {}).cpu_throttling or 'no interval')
    end
    out.cpu = c
  else
    common.miss(out, 'cpu', (cur.missing or {}).cpu)
  end
  if cur.cpuset then out.cpuset = { count = cur.cpuset.count, list = cur.cpuset.list } end
  for _, res in ipairs({ 'cpu', 'memory', 'io' }) do
    local r = psi.rate(prev.pressure and prev.pressure[res], cur.pressure and cur.pressure[res], e)
    if r then out.pressure[res] = r
    else common.miss(out, 'pressure_' .. res, (cur.missing or {})['pressure_' .. res] or 'no interval') end
  end
  return out
end

-- Memory detail: the working set, refaults and reclaim from memory.stat ------

--- The working set of a cgroup from its memory.stat: anonymous memory plus
--- the active page cache (what was used more than once lately), in bytes,
--- with the formula used. v1: the hierarchical total_* fields when present.
function M.working_set(stat, version)
  if type(stat) ~= 'table' then return nil, 'no memory.stat' end
  if version == 'v1' then
    local p = stat.total_active_anon and 'total_' or ''
    local aa, ia, af = stat[p .. 'active_anon'], stat[p .. 'inactive_anon'], stat[p .. 'active_file']
    if not (aa and ia and af) then return nil, 'no active_anon/inactive_anon/active_file in memory.stat' end
    return aa + ia + af, string.format('%sactive_anon + %sinactive_anon + %sactive_file (memory.stat)', p, p, p)
  end
  if not (stat.anon and stat.active_file) then return nil, 'no anon/active_file in memory.stat' end
  return stat.anon + stat.active_file, 'anon + active_file (memory.stat)'
end

--- The anonymous part of memory.stat, bytes.
function M.anon_bytes(stat, version)
  if type(stat) ~= 'table' then return nil end
  if version == 'v1' then
    local p = stat.total_active_anon and 'total_' or ''
    local aa, ia = stat[p .. 'active_anon'], stat[p .. 'inactive_anon']
    return aa and ia and aa + ia
  end
  return stat.anon
end

--- A memory snapshot of a cgroup's directories ({ v2=, memory= }), or nil, why.
function M.memory_snapshot(d)
  if d.v2 and exists(d.v2 .. '/memory.max') then return memory_v2(d.v2) end
  if d.memory then return memory_v1(d.memory) end
  return nil, 'no memory controller for this cgroup'
end

--- Refault and reclaim rates between two memory snapshots (memory_snapshot):
--- { refault_file_per_s=, refault_anon_per_s= (pages/s), pgscan_per_s=,
---   pgsteal_per_s= (v2: pages/s), reclaim_pages_per_s=, reclaim_source=,
---   pgmajfault_per_s=, pgfault_per_s=, oom_kills=, limit_hits=, missing = { … } }
--- v1 counts no scans or steals per cgroup: its reclaim is pgpgout, the pages
--- uncharged (reclaimed, and also freed), said in reclaim_source.
function M.memory_stat_rates(a, b, elapsed)
  local out = {}
  local sa, sb = a and a.stat, b and b.stat
  if not (sa and sb and elapsed and elapsed > 0) then
    common.miss(out, 'memory_stat', 'no memory.stat at both ends of the window')
    return out
  end
  local p = (b.version == 'v1' and sb.total_pgpgin) and 'total_' or ''
  local function r(name) return common.rate(sa[p .. name], sb[p .. name], elapsed) end
  out.refault_file_per_s = r('workingset_refault_file') or r('workingset_refault')
  out.refault_anon_per_s = r('workingset_refault_anon')
  if not out.refault_file_per_s then common.miss(out, 'refaults', 'no workingset_refault in memory.stat') end
  out.pgmajfault_per_s, out.pgfault_per_s = r('pgmajfault'), r('pgfault')
  if b.version == 'v2' then
    out.pgscan_per_s, out.pgsteal_per_s = r('pgscan'), r('pgsteal')
    out.reclaim_pages_per_s, out.reclaim_source = out.pgsteal_per_s, 'memory.stat pgsteal'
    if not out.pgsteal_per_s then common.miss(out, 'reclaim', 'no pgsteal in memory.stat (kernel < 5.8?)') end
  else
    out.reclaim_pages_per_s = r('pgpgout')
    -- v1 counts uncharge events: a large folio is one, so this is a lower bound
    out.reclaim_source = 'memory.stat ' .. p .. 'pgpgout (uncharge events x page size: reclaimed or freed, '
      .. 'a lower bound; v1 counts no pgsteal)'
    common.miss(out, 'pgscan', 'cgroup v1 memory.stat has no pgscan/pgsteal')
  end
  out.oom_kills = common.delta(a.oom_kills, b.oom_kills)
  out.limit_hits = common.delta(a.limit_hits, b.limit_hits)
  return out
end

return M
