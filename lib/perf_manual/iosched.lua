--- Block I/O schedulers for `iosched-compare`: which schedulers a disk
--- offers and which runs (/sys/block/DISK/queue/scheduler), switching and
--- restoring them, the disk under a path, the bounded load (sync writers
--- and one bulk writer, from our workloads and dd), and the per-process
--- figures of one run: requests, throughput, latency, fairness.
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local pstat = require('posix.sys.stat')
local unistd = require('posix.unistd')
local bit = require('bit')

local M = {}

M.sysfs = '/sys'   -- the specs point it at a copy

--- "none [mq-deadline] kyber" -> { 'none', 'mq-deadline', 'kyber' }, 'mq-deadline'
function M.parse(text)
  local list, current = {}, nil
  for word in (text or ''):gmatch('%S+') do
    local name = word:match('^%[(.+)%]$')
    if name then current = name else name = word end
    list[#list + 1] = name
  end
  return list, current
end

local function sched_path(disk) return M.sysfs .. '/block/' .. disk .. '/queue/scheduler' end

--- The schedulers of a disk and the current one, or nil, why.
function M.schedulers(disk)
  if not disk:match('^[%w_.-]+$') then return nil, "bad disk name '" .. disk .. "'" end
  local text = util.readfile(sched_path(disk))
  if not text then return nil, 'no block device ' .. disk .. ' (no ' .. sched_path(disk) .. ')' end
  local list, current = M.parse(text)
  if #list == 0 then return nil, sched_path(disk) .. ' is empty' end
  return list, current or list[1]
end

--- Makes `name` the disk's scheduler and reads it back: true, or nil, why.
function M.set(disk, name)
  local f, err = io.open(sched_path(disk), 'w')
  if not f then return nil, 'cannot open ' .. sched_path(disk) .. ': ' .. tostring(err) end
  local ok, werr = f:write(name)
  local cok, cerr = f:close()
  if not ok or not cok then
    return nil, string.format('cannot set %s on %s: %s', name, disk, tostring(werr or cerr))
  end
  local _, current = M.schedulers(disk)
  if current ~= name then
    return nil, string.format('%s: asked for %s, the kernel runs %s', disk, name, tostring(current))
  end
  return true
end

-- the kernel's dev_t encoding (new_encode_dev)
local function major_minor(dev)
  local major = bit.bor(bit.band(bit.rshift(dev, 8), 0xfff), bit.band(math.floor(dev / 2 ^ 32), bit.bnot(0xfff)))
  local minor = bit.bor(bit.band(dev, 0xff), bit.band(bit.rshift(dev, 12), bit.bnot(0xff)))
  return major, minor
end

--- The disk (the whole device, not a partition) holding the file system
--- of path: name, 'MAJ:MIN'; or nil, why (tmpfs, overlay: no block device).
function M.disk_of(path)
  local st = pstat.stat(path)
  if not st then return nil, 'no such file or directory: ' .. path end
  local major, minor = major_minor(st.st_dev)
  local id = major .. ':' .. minor
  if major == 0 then return nil, path .. ' is not on a block device (tmpfs, overlay or another virtual file system)' end
  local link = unistd.readlink(M.sysfs .. '/dev/block/' .. id)
  if not link then return nil, 'no block device ' .. id .. ' under ' .. M.sysfs .. '/dev/block' end
  local parts = util.split(link, '/')
  local name = parts[#parts]
  -- a partition's directory sits inside its disk's
  if util.readfile(M.sysfs .. '/dev/block/' .. id .. '/partition') then name = parts[#parts - 1] end
  return name, id
end

--- Jain's fairness index of a list of non-negative numbers: 1 when all are
--- equal, 1/n when one has everything; nil for an empty or all-zero list.
function M.jain(x)
  local sum, sq = 0, 0
  for _, v in ipairs(x) do
    sum = sum + v
    sq = sq + v * v
  end
  if #x == 0 or sq == 0 then return nil end
  return sum * sum / (#x * sq)
end

-- The load -------------------------------------------------------------------

--- Starts the load in dir for `seconds`: `sync` fsync_writer processes (one
--- thread each: 4 KiB writes, each followed by fsync) and one bulk writer
--- (dd, 1 MiB direct writes over a file of at most size_mb MiB, again and
--- again). Returns { procs = { {pid, role} }, files = {...} } or nil, why.
function M.start_load(dir, opts)
  local root = require('perf_manual._host').root
  local writer = root .. '/build/workloads/fsync_writer'
  if not pstat.stat(writer) then return nil, writer .. ' is missing (make workloads)' end
  local load = { procs = {}, files = {} }
  for i = 1, opts.sync do
    local pid, err = sys.spawn({ writer, tostring(opts.seconds + 1), dir, '1' },
      { stdin = 'null', stdout = 'null', stderr = 'null', setpgid = true })
    if not pid then
      M.stop_load(load)
      return nil, err
    end
    load.procs[#load.procs + 1] = { pid = pid, role = 'sync-' .. i }
  end
  if opts.bulk then
    local file = dir .. '/pm-iosched-bulk'
    load.files[#load.files + 1] = file
    local script = string.format("while :; do dd if=/dev/zero of='%s' bs=1M count=%d oflag=direct conv=notrunc "
      .. "status=none || exit 1; done", file:gsub("'", "'\\''"), opts.size_mb)
    local pid, err = sys.spawn({ '/bin/sh', '-c', script }, { stdin = 'null', stdout = 'null', stderr = 'null',
      setpgid = true })
    if not pid then
      M.stop_load(load)
      return nil, err
    end
    load.procs[#load.procs + 1] = { pid = pid, role = 'bulk', group = true }
  end
  return load
end

--- Stops the load (each process group) and removes its files.
function M.stop_load(load)
  for _, p in ipairs(load.procs) do
    sys.kill(-p.pid, 15)
    sys.wait(p.pid)
  end
  for _, f in ipairs(load.files) do os.remove(f) end
end

--- The role of a request's process: a sync writer by pid, the bulk writer
--- by its command (dd is a new process each round), else 'other COMM'.
function M.role_of(load, e)
  for _, p in ipairs(load.procs) do
    if p.pid == e.tgid and not p.group then return p.role end
  end
  if e.comm == 'dd' then return 'bulk' end
  return 'other ' .. tostring(e.comm)
end

--- One run's figures per role from its requests ({ role, lat_ns, bytes }):
--- { role = { requests, bytes, iops, mb_s, p50_ms, p99_ms, lat_ms (thinned
--- to `keep` values, for the tests between runs) } }.
function M.summarise(reqs, seconds, keep)
  local stats = require('perf_manual.analyzers.stats')
  local by = {}
  for _, r in ipairs(reqs) do
    local x = by[r.role]
    if not x then
      x = { requests = 0, bytes = 0, lat = {} }
      by[r.role] = x
    end
    x.requests = x.requests + 1
    x.bytes = x.bytes + (r.bytes or 0)
    x.lat[#x.lat + 1] = r.lat_ns / 1e6
  end
  local out = {}
  for role, x in pairs(by) do
    out[role] = { requests = x.requests, bytes = x.bytes, iops = x.requests / seconds,
      mb_s = x.bytes / seconds / 2 ^ 20, p50_ms = stats.quantile(x.lat, 0.5), p99_ms = stats.quantile(x.lat, 0.99),
      lat_ms = util.array(stats.thin(x.lat, keep or 2000)) }
  end
  return out
end

return M
