--- Memory collector: /proc/meminfo, /proc/vmstat (page scans, reclaim,
--- swap, major faults, OOM kills, allocation stalls), /proc/pressure/memory.
---
--- `parse_meminfo(text)` → { Key = value }: "kB" values converted to bytes,
---   unitless ones (HugePages_Total…) kept as counts; keys as the kernel
---   spells them (MemTotal, MemAvailable, Active(anon), …).
--- `parse_vmstat(text)` → { key = counter }.
--- `sample()` → { time=, meminfo=, vmstat=, psi=, missing = { meminfo|vmstat|psi = why } }
--- `rates(prev, cur)` → {
---   elapsed=,
---   total_bytes=, available_bytes=, used_bytes=, used_pct= (100 - MemAvailable/MemTotal),
---   swap_total_bytes=, swap_used_bytes=, swap_used_pct= (nil when no swap),
---   dirty_bytes=, writeback_bytes=,                       -- at cur
---   pgscan_kswapd_per_s=, pgscan_direct_per_s=, pgsteal_per_s=,
---   pswpin_per_s=, pswpout_per_s=, pgmajfault_per_s=, pgfault_per_s=,
---   allocstall_per_s=, compact_stall_per_s=, refault_per_s=,
---   oom_kill= (kills during the interval), oom_kill_total= (since boot),
---   psi = { some_pct, full_pct, some_avg10, full_avg10 },
---   missing = { field = why } }
--- Page counters are pages; multiply by info().page_size for bytes.
---
--- Per process (the target's culprits):
--- `fault_sample(pids)` → { time=, procs = { [pid] = { comm=, minflt=, majflt= } } }
--- `top_faulters(prev, cur, n)` → { { pid=, comm=, majflt_per_s=, minflt_per_s= }, … }
---   most major faults first (then minor), processes alive at both ends.
--- `open_file_bytes(pids)` → bytes of the distinct regular files the pids hold
---   open (what they may read again), count
local lpeg = require('lpeg')
local common = require('perf_manual.collectors.common')
local psi = require('perf_manual.collectors.psi')
local process = require('perf_manual.collectors.process')
local P, C, Cg, Ct, Cf = lpeg.P, lpeg.C, lpeg.Cg, lpeg.Ct, lpeg.Cf

local M = {}

local key = C((1 - lpeg.S(':\n')) ^ 1)
local value = common.uint * (common.sp * P('kB') * lpeg.Cc(1024) + lpeg.Cc(1)) / function(n, mult) return n * mult end
local mline = Cg(key * P(':') * common.osp * value * common.osp * (common.nl + -P(1)))
local meminfo_grammar = Cf(Ct('') * (mline + common.skip_line) ^ 0, rawset) * -P(1)

---@return table? meminfo, string? err
function M.parse_meminfo(text)
  local t = type(text) == 'string' and meminfo_grammar:match(text)
  if not t or not t.MemTotal then return nil, 'not a /proc/meminfo text' end
  return t
end

---@return table? vmstat, string? err
function M.parse_vmstat(text)
  local t = common.parse_kv(text)
  if not t or next(t) == nil then return nil, 'not a /proc/vmstat text' end
  return t
end

M.paths = { meminfo = '/proc/meminfo', vmstat = '/proc/vmstat', psi = '/proc/pressure/memory' }

function M.sample(paths)
  paths = paths or M.paths
  local s = { time = common.now() }
  local v, err = common.read_parse(paths.meminfo, M.parse_meminfo)
  if v then s.meminfo = v else common.miss(s, 'meminfo', err) end
  v, err = common.read_parse(paths.vmstat, M.parse_vmstat)
  if v then s.vmstat = v else common.miss(s, 'vmstat', err) end
  v, err = psi.read(paths.psi)
  if v then s.psi = v else common.miss(s, 'psi', err) end
  return s
end

-- Older kernels split some counters per zone (pgscan_kswapd_normal, …); the
-- sum covers both spellings. pgscan_direct_throttle is a different event.
local ZONES = { '', '_dma', '_dma32', '_normal', '_movable', '_high', '_device' }
local function zsum(vm, base)
  local total, seen = 0, false
  for _, z in ipairs(ZONES) do
    local v = vm[base .. z]
    if v then total = total + v; seen = true end
  end
  return seen and total or nil
end

local COUNTERS = {
  pgscan_kswapd_per_s = function(vm) return zsum(vm, 'pgscan_kswapd') end,
  pgscan_direct_per_s = function(vm) return zsum(vm, 'pgscan_direct') end,
  pgsteal_per_s = function(vm)
    local a, b = zsum(vm, 'pgsteal_kswapd'), zsum(vm, 'pgsteal_direct')
    return a and b and a + b
  end,
  pswpin_per_s = function(vm) return vm.pswpin end,
  pswpout_per_s = function(vm) return vm.pswpout end,
  pgmajfault_per_s = function(vm) return vm.pgmajfault end,
  pgfault_per_s = function(vm) return vm.pgfault end,
  allocstall_per_s = function(vm) return zsum(vm, 'allocstall') end,
  compact_stall_per_s = function(vm) return vm.compact_stall end,
  refault_per_s = function(vm)
    local a, f = vm.workingset_refault_anon, vm.workingset_refault_file
    if a and f then return a + f end
    return vm.workingset_refault
  end,
}

function M.rates(prev, cur)
  local e = common.elapsed(prev, cur)
  local out = { elapsed = e }
  local mi = cur.meminfo
  if mi then
    out.total_bytes = mi.MemTotal
    out.available_bytes = mi.MemAvailable
    if mi.MemAvailable and mi.MemTotal > 0 then
      out.used_bytes = mi.MemTotal - mi.MemAvailable
      out.used_pct = 100 * out.used_bytes / mi.MemTotal
    else
      common.miss(out, 'used_pct', 'no MemAvailable in /proc/meminfo (kernel < 3.14)')
    end
    out.swap_total_bytes = mi.SwapTotal
    if mi.SwapTotal and mi.SwapFree then
      out.swap_used_bytes = mi.SwapTotal - mi.SwapFree
      if mi.SwapTotal > 0 then out.swap_used_pct = 100 * out.swap_used_bytes / mi.SwapTotal
      else common.miss(out, 'swap_used_pct', 'no swap configured') end
    end
    out.dirty_bytes, out.writeback_bytes = mi.Dirty, mi.Writeback
  else
    common.miss(out, 'meminfo', (cur.missing or {}).meminfo or 'no /proc/meminfo')
  end
  local pv, cv = prev.vmstat, cur.vmstat
  if pv and cv then
    for name, get in pairs(COUNTERS) do
      local r = common.rate(get(pv), get(cv), e)
      if r then out[name] = r else common.miss(out, name, 'not in /proc/vmstat on this kernel') end
    end
    out.oom_kill = common.delta(pv.oom_kill, cv.oom_kill)
    out.oom_kill_total = cv.oom_kill
    if out.oom_kill == nil then common.miss(out, 'oom_kill', 'no oom_kill in /proc/vmstat (kernel < 4.13)') end
  else
    common.miss(out, 'vmstat', (cur.missing or {}).vmstat or (prev.missing or {}).vmstat or 'no /proc/vmstat')
  end
  out.psi = psi.rate(prev.psi, cur.psi, e)
  if not out.psi then common.miss(out, 'psi', (cur.missing or {}).psi or (prev.missing or {}).psi or 'no interval') end
  return out
end

function M.fault_sample(pids, proc)
  proc = proc or '/proc'
  local s = { time = common.now(), procs = {} }
  for _, pid in ipairs(pids) do
    local st = common.read_parse(proc .. '/' .. pid .. '/stat', process.parse_stat)
    if st then s.procs[pid] = { comm = st.comm, minflt = st.minflt, majflt = st.majflt } end
  end
  return s
end

function M.top_faulters(prev, cur, n)
  local e = common.elapsed(prev, cur)
  local out = {}
  if not e then return out end
  for pid, b in pairs(cur.procs) do
    local a = prev.procs[pid]
    if a then
      local maj, min = common.rate(a.majflt, b.majflt, e), common.rate(a.minflt, b.minflt, e)
      if (maj or 0) + (min or 0) > 0 then
        out[#out + 1] = { pid = pid, comm = b.comm, majflt_per_s = maj, minflt_per_s = min }
      end
    end
  end
  table.sort(out, function(x, y)
    if (x.majflt_per_s or 0) ~= (y.majflt_per_s or 0) then return (x.majflt_per_s or 0) > (y.majflt_per_s or 0) end
    if (x.minflt_per_s or 0) ~= (y.minflt_per_s or 0) then return (x.minflt_per_s or 0) > (y.minflt_per_s or 0) end
    return x.pid < y.pid
  end)
  for i = #out, (n or 5) + 1, -1 do out[i] = nil end
  return out
end

function M.open_file_bytes(pids, proc)
  local dir_of = (proc or '/proc')
  local pstat = require('posix.sys.stat')
  local dirent = require('posix.dirent')
  local seen, total, count = {}, 0, 0
  for _, pid in ipairs(pids) do
    local d = dir_of .. '/' .. pid .. '/fd'
    local ok, list = pcall(dirent.dir, d)
    for _, e in ipairs(ok and list or {}) do
      local st = e:match('^%d+$') and pstat.stat(d .. '/' .. e)
      if st and pstat.S_ISREG(st.st_mode) ~= 0 then
        local id = st.st_dev .. ':' .. st.st_ino
        if not seen[id] then seen[id] = true; total = total + st.st_size; count = count + 1 end
      end
    end
  end
  return total, count
end

return M
