--- Disk collector: /proc/diskstats turned into `iostat -x` figures per
--- device, /sys/block facts telling whole disks from partitions and real
--- disks from RAM-backed or virtual devices, and /proc/pressure/io.
---
--- `parse_diskstats(text)` → { Dev, ... } in file order,
---   Dev = { major=, minor=, name=, reads=, reads_merged=, sectors_read=, read_ms=,
---     writes=, writes_merged=, sectors_written=, write_ms=, in_flight=, io_ms=,
---     weighted_ms=, discards=, discards_merged=, sectors_discarded=, discard_ms=,
---     flushes=, flush_ms=, columns = n }  -- fields older kernels lack are nil
--- `classify(name, facts)` → Kind = { kind = 'disk'|'partition'|'zram'|'ram'|'loop'|
---   'nullb'|'dm'|'md'|'virtual', is_disk = bool, whole_disk = bool,
---   partition_of = name?, skip_reason = string? (why it is "not a disk"),
---   slaves = { names }? }; `facts` comes from `sysfs_facts(name)`.
--- `sample()` → { time=, devices = { Dev + Kind fields }, psi=, missing= }
--- `rates(prev, cur)` → { elapsed=, devices = { Rate, ... } sorted by name,
---   by_name = { [name] = Rate }, psi = { some_pct, full_pct, … }, missing= }
---   Rate = { name=, kind=, is_disk=, whole_disk=, partition_of=, skip_reason=,
---     r_s=, w_s=, rkB_s=, wkB_s=, rrqm_s=, wrqm_s=, d_s=, f_s=,
---     r_await=, w_await= (ms per completed request; nil when none completed),
---     rareq_sz=, wareq_sz= (kB), aqu_sz= (average queue size), util_pct= (busy
---     time share from io_ticks, capped at 100), in_flight= (at cur) }
local lpeg = require('lpeg')
local common = require('perf_manual.collectors.common')
local psi = require('perf_manual.collectors.psi')
local P, C, Ct = lpeg.P, lpeg.C, lpeg.Ct

local M = {}

local FIELDS = { 'reads', 'reads_merged', 'sectors_read', 'read_ms', 'writes', 'writes_merged',
  'sectors_written', 'write_ms', 'in_flight', 'io_ms', 'weighted_ms', 'discards', 'discards_merged',
  'sectors_discarded', 'discard_ms', 'flushes', 'flush_ms' }

local function device(major, minor, name, nums)
  local d = { major = major, minor = minor, name = name, columns = #nums }
  if #nums == 4 then
    -- partitions on kernels before 2.6.25: reads, sectors read, writes, sectors written
    d.reads, d.sectors_read, d.writes, d.sectors_written = nums[1], nums[2], nums[3], nums[4]
    return d
  end
  for i, f in ipairs(FIELDS) do d[f] = nums[i] end
  return d
end

local sp, uint = common.sp, common.uint
local dline = common.osp * uint * sp * uint * sp * C((1 - lpeg.S(' \t\n')) ^ 1)
  * Ct((sp * uint) ^ 1) * common.osp * (common.nl + -P(1)) / device
local diskstats_grammar = Ct(dline ^ 0) * -P(1)

---@return table? devices, string? err
function M.parse_diskstats(text)
  local t = type(text) == 'string' and diskstats_grammar:match(text)
  if not t then return nil, 'not a /proc/diskstats text' end
  return t
end

--- What /sys says about a block device: { whole = bool (has /sys/block/NAME),
--- parent = name (for a partition), slaves = { names }, backing_file = path? }.
function M.sysfs_facts(name, sys_root)
  sys_root = sys_root or '/sys'
  local unistd = require('posix.unistd')
  local dirent = require('posix.dirent')
  local f = { whole = unistd.access(sys_root .. '/block/' .. name) == 0 }
  if not f.whole then
    local link = unistd.readlink(sys_root .. '/class/block/' .. name)
    if link then f.parent = link:match('/([^/]+)/' .. name:gsub('%p', '%%%0') .. '$') end
  else
    local ok, list = pcall(dirent.dir, sys_root .. '/block/' .. name .. '/slaves')
    if ok then
      f.slaves = {}
      for _, s in ipairs(list) do if s:byte(1) ~= 46 then f.slaves[#f.slaves + 1] = s end end
      table.sort(f.slaves)
    end
    local bf = common.read(sys_root .. '/block/' .. name .. '/loop/backing_file')
    if bf then f.backing_file = bf:gsub('%s+$', '') end
  end
  return f
end

--- Classifies a device from its name and sysfs facts. Callers skip devices
--- with is_disk == false as "not a disk" (their I/O is RAM, or is counted
--- again on the disk underneath).
function M.classify(name, facts)
  facts = facts or {}
  local k = { whole_disk = facts.whole ~= false and not facts.parent, partition_of = facts.parent }
  if name:match('^zram%d+$') then
    k.kind, k.skip_reason = 'zram', 'RAM-backed (zram)'
  elseif name:match('^ram%d+$') then
    k.kind, k.skip_reason = 'ram', 'RAM-backed (ram disk)'
  elseif name:match('^loop%d+') then
    k.kind = 'loop'
    k.skip_reason = facts.backing_file and ('loop device over ' .. facts.backing_file .. ' (counted on its disk)')
      or 'loop device (no backing file)'
  elseif name:match('^nullb%d+') then
    k.kind, k.skip_reason = 'nullb', 'null block device'
  elseif name:match('^dm%-%d+$') or name:match('^md%d+') then
    k.kind = name:sub(1, 2)
    k.slaves = facts.slaves
    if not facts.slaves or #facts.slaves == 0 then
      k.skip_reason = k.kind .. ' device without backing devices'
    end
  elseif facts.parent then
    k.kind = 'partition'
  else
    k.kind = 'disk'
  end
  k.is_disk = k.skip_reason == nil
  return k
end

local kind_cache = {}

local function kind_of(dev, sys_root)
  local key = dev.name .. ' ' .. dev.major .. ':' .. dev.minor
  local k = kind_cache[key]
  if not k then
    k = M.classify(dev.name, M.sysfs_facts(dev.name, sys_root))
    kind_cache[key] = k
  end
  return k
end

M.paths = { diskstats = '/proc/diskstats', psi = '/proc/pressure/io', sys = '/sys' }

--- One snapshot. With paths.classify == false, sysfs is not consulted and
--- devices are classified from their names alone (fixtures from elsewhere).
function M.sample(paths)
  paths = paths or M.paths
  local s = { time = common.now() }
  local devs, err = common.read_parse(paths.diskstats, M.parse_diskstats)
  if devs then
    for _, d in ipairs(devs) do
      local k = paths.classify == false and M.classify(d.name, paths.facts and paths.facts[d.name])
        or kind_of(d, paths.sys)
      for kk, v in pairs(k) do d[kk] = v end
    end
    s.devices = devs
  else
    common.miss(s, 'devices', err)
  end
  local v, perr = psi.read(paths.psi)
  if v then s.psi = v else common.miss(s, 'psi', perr) end
  return s
end

local function per_req(dms, dn)
  if dms == nil or dn == nil or dn == 0 then return nil end
  return dms / dn
end

--- iostat -x figures for one device between two snapshots.
function M.device_rates(a, b, e)
  local r = { name = b.name, kind = b.kind, is_disk = b.is_disk, whole_disk = b.whole_disk,
    partition_of = b.partition_of, skip_reason = b.skip_reason, in_flight = b.in_flight }
  local function d(f) return common.delta(a[f], b[f]) end
  local dr, dw = d('reads'), d('writes')
  r.r_s, r.w_s = dr and dr / e, dw and dw / e
  local dsr, dsw = d('sectors_read'), d('sectors_written')
  r.rkB_s, r.wkB_s = dsr and dsr / 2 / e, dsw and dsw / 2 / e -- 512-byte sectors
  local dmr, dmw = d('reads_merged'), d('writes_merged')
  r.rrqm_s, r.wrqm_s = dmr and dmr / e, dmw and dmw / e
  local dd, df = d('discards'), d('flushes')
  r.d_s, r.f_s = dd and dd / e, df and df / e
  r.r_await, r.w_await = per_req(d('read_ms'), dr), per_req(d('write_ms'), dw)
  r.rareq_sz, r.wareq_sz = per_req(dsr and dsr / 2, dr), per_req(dsw and dsw / 2, dw)
  local wms, io = d('weighted_ms'), d('io_ms')
  r.aqu_sz = wms and wms / (e * 1000)
  r.util_pct = io and math.min(100, io / (e * 10))
  if r.util_pct == nil then common.miss(r, 'util_pct', 'no io_ticks for this device on this kernel') end
  return r
end

function M.rates(prev, cur)
  local e = common.elapsed(prev, cur)
  local out = { elapsed = e, devices = {}, by_name = {} }
  if prev.devices and cur.devices and e then
    local before = {}
    for _, d in ipairs(prev.devices) do before[d.name] = d end
    for _, d in ipairs(cur.devices) do
      local a = before[d.name]
      if a and a.major == d.major and a.minor == d.minor then
        local r = M.device_rates(a, d, e)
        out.devices[#out.devices + 1] = r
        out.by_name[d.name] = r
      end
    end
    table.sort(out.devices, function(x, y) return x.name < y.name end)
  else
    common.miss(out, 'devices', (cur.missing or {}).devices or (prev.missing or {}).devices or 'no interval')
  end
  out.psi = psi.rate(prev.psi, cur.psi, e)
  if not out.psi then common.miss(out, 'psi', (cur.missing or {}).psi or (prev.missing or {}).psi or 'no interval') end
  return out
end

return M
