-- A CPU-quota cgroup for e2e tests and fixture recording, in whichever
-- hierarchy has the cpu controller (cgroup v2, or v1's cpu mount), with the
-- cgroup's own cpu.stat as ground truth. Made and removed by the test.
--
--   local Q = require('e2e.cpu_quota')
--   local cg = Q.make(0.25)             -- { dir=, procs=, version= }
--   local st = Q.stat(cg)               -- { nr_periods=, nr_throttled=, throttled_us= }
--   Q.remove(cg)
local sys = require('perf_manual._c.sys')
local cgc = require('perf_manual.collectors.cgroup')

local Q = {}
local seq = 0

local function read(p)
  local f = io.open(p)
  if not f then return nil end
  local s = f:read('*a'); f:close()
  return s
end

local function write(p, text)
  local f, err = io.open(p, 'w')
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then return nil, tostring(werr or cerr) end
  return true
end

--- { version = 2|1, root = dir } of the hierarchy with the cpu controller, or nil.
function Q.hierarchy()
  local m = cgc.mounts()
  if m.v2 then
    local ctrls = read(m.v2.dir .. '/cgroup.controllers') or ''
    if ctrls:match('%f[%w]cpu%f[%W]') then
      local sub = read(m.v2.dir .. '/cgroup.subtree_control') or ''
      if sub:match('%f[%w]cpu%f[%W]') or write(m.v2.dir .. '/cgroup.subtree_control', '+cpu') then
        return { version = 2, root = m.v2.dir }
      end
    end
  end
  if m.v1.cpu then return { version = 1, root = m.v1.cpu.dir } end
end

--- A fresh cgroup limited to `cores` CPUs (period 100 ms).
function Q.make(cores)
  local hier = assert(Q.hierarchy(), 'no cgroup hierarchy with the cpu controller')
  seq = seq + 1
  local dir = string.format('%s/perf_manual_e2e_cpu_%d_%d', hier.root, sys.getpid(), seq)
  assert(require('posix.sys.stat').mkdir(dir, 493), 'cannot create cgroup ' .. dir)
  local cg = { dir = dir, version = hier.version, procs = dir .. '/cgroup.procs' }
  local quota = math.floor(cores * 100000 + 0.5)
  local ok, err
  if hier.version == 2 then
    ok, err = write(dir .. '/cpu.max', quota .. ' 100000')
  else
    ok, err = write(dir .. '/cpu.cfs_period_us', '100000')
    if ok then ok, err = write(dir .. '/cpu.cfs_quota_us', tostring(quota)) end
  end
  if not ok then
    Q.remove(cg)
    error('cannot set the CPU quota of ' .. dir .. ': ' .. tostring(err))
  end
  return cg
end

--- The cgroup's throttling counters, read from its cpu.stat.
function Q.stat(cg)
  local t = assert(read(cg.dir .. '/cpu.stat'), 'no cpu.stat in ' .. cg.dir)
  local function n(k) return tonumber(t:match(k .. ' (%d+)')) end
  local st = { nr_periods = n('nr_periods'), nr_throttled = n('nr_throttled') }
  st.throttled_us = n('throttled_usec') or (n('throttled_time') and n('throttled_time') / 1000)
  return st
end

--- Kills what is left inside and removes the cgroup (retrying: the kernel
--- frees it a moment after its last task).
function Q.remove(cg)
  for _ = 1, 50 do
    if not require('posix.sys.stat').stat(cg.dir) then return true end
    for p in (read(cg.procs) or ''):gmatch('%d+') do sys.kill(tonumber(p), 9) end
    if require('posix.unistd').rmdir(cg.dir) then return true end
    sys.sleep(0.05)
  end
  return false
end

return Q
