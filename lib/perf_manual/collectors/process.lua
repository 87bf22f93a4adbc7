--- Process collector: /proc/PID/stat, status, io, fd count, threads,
--- cgroup membership (v1 and v2) and run-queue delay from schedstat.
---
--- `parse_stat(text)` → { pid=, comm= (may hold spaces and parens), state=,
---   ppid=, pgrp=, session=, tty_nr=, flags=, minflt=, cminflt=, majflt=, cmajflt=,
---   utime=, stime=, cutime=, cstime= (clock ticks), priority=, nice=,
---   num_threads=, starttime= (ticks after boot), vsize= (bytes), rss= (pages),
---   processor=, rt_priority=, policy=, delayacct_blkio_ticks= }  -- fields a
---   kernel does not print are nil
--- `parse_status(text)` → { Key = value }: numbers as numbers, "kB" values in
---   bytes, other values as strings (Name, State, …)
--- `parse_io(text)` → { rchar=, wchar=, syscr=, syscw=, read_bytes=, write_bytes=,
---   cancelled_write_bytes= }
--- `parse_cgroup(text)` → { v2 = path?, v1 = { [controller] = path }, entries = { {id=, controllers=, path=} } }
---   (named hierarchies appear as v1["name=systemd"])
---
--- `sample(pid)` → snapshot or nil, "no process N":
---   { time=, pid=, stat=, status=, io=?, fd_count=?, threads = { tid, … },
---     cgroup=?, sched = cpu.sample_task shape?, missing = { io|fd_count|… = why } }
--- `rates(prev, cur)` → { elapsed=, pid=, comm=, state=,
---   cpu_pct= (% of one core), user_pct=, sys_pct=, majflt_per_s=, minflt_per_s=,
---   read_bytes_per_s=, write_bytes_per_s=, rchar_per_s=, wchar_per_s=,
---   vol_ctxt_per_s=, nonvol_ctxt_per_s=, runq_wait_pct=, wait_per_slice_ms=,
---   blkio_delay_pct= (needs kernel.task_delayacct=1),
---   rss_bytes=, vsize_bytes=, swap_bytes=, threads=, fd_count= (at cur),
---   missing = { field = why } }  or nil, "process N restarted" on pid reuse.
local lpeg = require('lpeg')
local common = require('perf_manual.collectors.common')
local cpu = require('perf_manual.collectors.cpu')
local P, C, Cg, Ct, Cf, S = lpeg.P, lpeg.C, lpeg.Cg, lpeg.Ct, lpeg.Cf, lpeg.S

local M = {}

-- comm runs to the LAST ')' of the line: a program may be called "a) (b c".
local noparen = (1 - P(')')) ^ 0
local comm = C(noparen * (P(')') * noparen * #P(')')) ^ 0)
local stat_grammar = common.uint * ' (' * comm * ') ' * C(lpeg.R('AZ', 'az')) * Ct((common.sp * common.num) ^ 0)
  * common.osp * (common.nl + -P(1))

-- field numbers of proc(5), counted from 4 (ppid) after pid, comm, state
local STAT_FIELDS = { [4] = 'ppid', [5] = 'pgrp', [6] = 'session', [7] = 'tty_nr', [8] = 'tpgid', [9] = 'flags',
  [10] = 'minflt', [11] = 'cminflt', [12] = 'majflt', [13] = 'cmajflt', [14] = 'utime', [15] = 'stime',
  [16] = 'cutime', [17] = 'cstime', [18] = 'priority', [19] = 'nice', [20] = 'num_threads',
  [22] = 'starttime', [23] = 'vsize', [24] = 'rss', [39] = 'processor', [40] = 'rt_priority',
  [41] = 'policy', [42] = 'delayacct_blkio_ticks', [43] = 'guest_time' }

---@return table? stat, string? err
function M.parse_stat(text)
  if type(text) ~= 'string' then return nil, 'no text' end
  local pid, name, state, nums = stat_grammar:match(text)
  if not pid then return nil, 'not a /proc/PID/stat text' end
  if #nums < 21 then return nil, 'truncated /proc/PID/stat' end
  local t = { pid = pid, comm = name, state = state }
  for i, f in pairs(STAT_FIELDS) do t[f] = nums[i - 3] end
  return t
end

local skey = C((1 - S(':\n')) ^ 1)
local snum = common.uint * common.osp * (P('kB') * lpeg.Cc(1024) + lpeg.Cc(1)) * common.osp * #(common.nl + -P(1))
  / function(n, m) return n * m end
local sval = snum + C((1 - common.nl) ^ 0) / function(s) return (s:gsub('%s+$', '')) end
local status_grammar = Cf(Ct('') * (Cg(skey * ':' * common.osp * sval) * common.nl ^ -1) ^ 0, rawset) * -P(1)

---@return table? status, string? err
function M.parse_status(text)
  local t = type(text) == 'string' and status_grammar:match(text)
  if not t or not t.Name then return nil, 'not a /proc/PID/status text' end
  return t
end

local io_line = Cg(C(common.word) * ':' * common.sp * common.uint) * common.nl ^ -1
local io_grammar = Cf(Ct('') * io_line ^ 0, rawset) * -P(1)

function M.parse_io(text)
  local t = type(text) == 'string' and io_grammar:match(text)
  if not t or not t.rchar then return nil, 'not a /proc/PID/io text' end
  return t
end

local cg_line = Ct(Cg(common.uint, 'id') * ':' * Cg(C((1 - S(':\n')) ^ 0), 'controllers') * ':'
  * Cg(C((1 - common.nl) ^ 0), 'path')) * common.nl ^ -1
local cg_grammar = Ct(cg_line ^ 0) * -P(1)

function M.parse_cgroup(text)
  local entries = type(text) == 'string' and cg_grammar:match(text)
  if not entries or #entries == 0 then return nil, 'not a /proc/PID/cgroup text' end
  local t = { v1 = {}, entries = entries }
  for _, e in ipairs(entries) do
    if e.id == 0 and e.controllers == '' then
      t.v2 = e.path
    else
      for ctrl in e.controllers:gmatch('[^,]+') do t.v1[ctrl] = e.path end
    end
  end
  return t
end

local function list_dir(path)
  local ok, list = pcall(require('posix.dirent').dir, path)
  if not ok then
    local why = tostring(list)
    if why:match('ermission') then return nil, 'permission denied: ' .. path end
    return nil, 'not present: ' .. path
  end
  return list
end

--- Thread ids of pid (numbers, sorted) or nil, reason.
function M.threads(pid, proc)
  local list, err = list_dir((proc or '/proc') .. '/' .. pid .. '/task')
  if not list then return nil, err end
  local out = {}
  for _, n in ipairs(list) do
    local tid = tonumber(n)
    if tid then out[#out + 1] = tid end
  end
  table.sort(out)
  return out
end

--- Number of open file descriptors of pid, or nil, reason.
function M.fd_count(pid, proc)
  local list, err = list_dir((proc or '/proc') .. '/' .. pid .. '/fd')
  if not list then return nil, err end
  return #list - 2 -- . and ..
end

---@param pid integer
---@param proc string? /proc root (specs, containers)
---@return table? snapshot, string? err  -- "no process N" when pid does not exist
function M.sample(pid, proc)
  require('perf_manual.util').validate('pid', pid, 'number')
  proc = proc or '/proc'
  local base = proc .. '/' .. pid .. '/'
  local s = { time = common.now(), pid = pid }
  local st = common.read_parse(base .. 'stat', M.parse_stat)
  if not st then return nil, 'no process ' .. pid end
  s.stat = st
  local v, err = common.read_parse(base .. 'status', M.parse_status)
  if v then s.status = v else common.miss(s, 'status', err) end
  v, err = common.read_parse(base .. 'io', M.parse_io)
  if v then s.io = v else common.miss(s, 'io', err) end
  v, err = M.fd_count(pid, proc)
  if v then s.fd_count = v else common.miss(s, 'fd_count', err) end
  v, err = M.threads(pid, proc)
  if v then s.threads = v else common.miss(s, 'threads', err) end
  v, err = common.read_parse(base .. 'cgroup', M.parse_cgroup)
  if v then s.cgroup = v else common.miss(s, 'cgroup', err) end
  v, err = cpu.sample_task(pid, proc)
  if v then s.sched = v else common.miss(s, 'sched', err) end
  return s
end

local delayacct
local function delayacct_on()
  if delayacct == nil then
    local t = common.read('/proc/sys/kernel/task_delayacct')
    delayacct = t and t:match('^1') ~= nil or false
  end
  return delayacct
end

function M.rates(prev, cur)
  local e = common.elapsed(prev, cur)
  local a, b = prev.stat, cur.stat
  if a.starttime and b.starttime and a.starttime ~= b.starttime then
    return nil, 'process ' .. cur.pid .. ' restarted'
  end
  local out = { elapsed = e, pid = cur.pid, comm = b.comm, state = b.state }
  local tck = common.clk_tck()
  local du, ds = common.delta(a.utime, b.utime), common.delta(a.stime, b.stime)
  if e and du and ds then
    out.user_pct = 100 * du / tck / e
    out.sys_pct = 100 * ds / tck / e
    out.cpu_pct = out.user_pct + out.sys_pct
  else
    common.miss(out, 'cpu_pct', 'no interval')
  end
  out.majflt_per_s = common.rate(a.majflt, b.majflt, e)
  out.minflt_per_s = common.rate(a.minflt, b.minflt, e)
  out.rss_bytes = b.rss and b.rss * (require('perf_manual.sys').info().page_size)
  out.vsize_bytes = b.vsize
  out.threads = b.num_threads
  out.fd_count = cur.fd_count
  if cur.fd_count == nil then common.miss(out, 'fd_count', (cur.missing or {}).fd_count) end
  if cur.status then
    out.rss_bytes = cur.status.VmRSS or out.rss_bytes
    out.swap_bytes = cur.status.VmSwap
  end
  if prev.status and cur.status then
    out.vol_ctxt_per_s = common.rate(prev.status.voluntary_ctxt_switches, cur.status.voluntary_ctxt_switches, e)
    out.nonvol_ctxt_per_s = common.rate(prev.status.nonvoluntary_ctxt_switches,
      cur.status.nonvoluntary_ctxt_switches, e)
  end
  if prev.io and cur.io then
    for _, k in ipairs({ 'read_bytes', 'write_bytes', 'rchar', 'wchar' }) do
      out[k .. '_per_s'] = common.rate(prev.io[k], cur.io[k], e)
    end
  else
    common.miss(out, 'io', (cur.missing or {}).io or (prev.missing or {}).io or 'no /proc/PID/io')
  end
  if prev.sched and cur.sched then
    local tr = cpu.task_rates(prev.sched, cur.sched, e)
    out.runq_wait_pct, out.wait_per_slice_ms = tr.runq_wait_pct, tr.wait_per_slice_ms
    if tr.runq_wait_pct == nil then common.miss(out, 'runq_wait_pct', 'threads exited during the interval') end
  else
    common.miss(out, 'runq_wait_pct', (cur.missing or {}).sched or 'no schedstat')
  end
  if cur.delayacct == false or (cur.delayacct == nil and not delayacct_on()) then
    common.miss(out, 'blkio_delay_pct', 'kernel.task_delayacct is off')
  else
    local d = common.rate(a.delayacct_blkio_ticks, b.delayacct_blkio_ticks, e)
    out.blkio_delay_pct = d and 100 * d / tck
  end
  return out
end

return M
