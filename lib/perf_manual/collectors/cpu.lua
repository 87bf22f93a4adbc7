--- CPU collector: /proc/stat (aggregate and per-CPU jiffies, ctxt,
--- procs_running, procs_blocked), /proc/loadavg, /proc/pressure/cpu and
--- per-task /proc/PID/task/TID/schedstat (run time, run-queue wait).
---
--- Parsed /proc/stat (`parse_stat`):
---   { total = Jiffies, cpus = { Jiffies with .id, ... } (in file order),
---     ctxt=, btime=, processes=, procs_running=, procs_blocked= }
---   Jiffies = { user=, nice=, system=, idle=, iowait=, irq=, softirq=, steal=,
---     guest=, guest_nice=, columns = n }  -- fields an older kernel does not
---     print are nil (columns says how many were there)
--- `parse_loadavg` → { load1=, load5=, load15=, runnable=, threads=, last_pid= }
--- `parse_schedstat` → { run_ns=, wait_ns=, timeslices= }
---
--- `sample()` → { time= (monotonic s), stat=, loadavg=, psi= (psi.parse shape),
---   missing = { stat|loadavg|psi = why } }
--- `rates(prev, cur)` → {
---   elapsed=, ncpu=,
---   total = Pct, cpus = { Pct with .id, ... },
---     Pct = { busy_pct, user_pct, nice_pct, system_pct, iowait_pct, irq_pct,
---       softirq_pct, steal_pct, idle_pct }  -- busy = user+nice+system+irq+softirq
---       (steal and iowait are not busy; they are reported on their own)
---   ctxt_per_s=, forks_per_s=, procs_running=, procs_blocked=,  -- running/blocked: at cur
---   load1=, load5=, load15=,
---   psi = { some_pct, full_pct, some_avg10, full_avg10 },
---   missing = { field = why } }
---
--- Per task: `sample_task(pid)` sums schedstat over the threads of pid →
--- { time=, pid=, run_ns=, wait_ns=, timeslices=, threads= } or nil, "no process N";
--- `task_rates(prev, cur[, elapsed])` → { elapsed=, cpu_pct= (% of one core),
---   runq_wait_pct= (thread-seconds waiting for a CPU per second, in %),
---   wait_per_slice_ms=, timeslices_per_s= }.
---
--- Per thread (the single hot thread): `sample_threads(pids | nil[, opts])`
--- reads schedstat of every thread of pids (nil: every process, minus
--- opts.exclude = { [pid] = true }) → { time=, threads = { [tid] = { pid=, run_ns= } }, count= };
--- `thread_rates(prev, cur)` → { elapsed=, threads = { { tid=, pid=, pct= (% of one
---   core over the window), wait_pct= (waiting for a CPU) }, ... } busiest first } (a thread born in the
---   window counts from 0; one that died is gone);
--- `thread_comm(pid, tid)` → name or nil.
--- CPU lists: `parse_cpu_list("0-3,6\n")` → { 0, 1, 2, 3, 6 } (Cpus_allowed_list,
--- cpuset.cpus, /sys/devices/system/cpu/online); `affinity(pid)` → the union
--- of its threads' Cpus_allowed_list → { cpus = {…}, count=, list = "0-1" } or nil, err.
local lpeg = require('lpeg')
local common = require('perf_manual.collectors.common')
local psi = require('perf_manual.collectors.psi')
local P, Cg, Ct = lpeg.P, lpeg.Cg, lpeg.Ct
local dirent = require('posix.dirent')

local M = {}

local COLS = { 'user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal', 'guest', 'guest_nice' }

local function jiffies(nums)
  local t = { columns = #nums }
  for i, name in ipairs(COLS) do t[name] = nums[i] end
  return t
end

local sp, nl, uint = common.sp, common.nl, common.uint
local eol = common.osp * (nl + -P(1))
local nums = Ct((sp * uint) ^ 1) / jiffies
local cpu_total = P('cpu') * Cg(nums, 'total') * eol
local cpu_one = P('cpu') * Ct(Cg(uint, 'id') * Cg(nums, 'j')) * eol
local keyed = P(false)
for _, k in ipairs({ 'ctxt', 'btime', 'processes', 'procs_running', 'procs_blocked' }) do
  keyed = keyed + P(k) * sp * Cg(uint, k) * eol
end
local stat_grammar = Ct(cpu_total * Cg(Ct(cpu_one ^ 0), 'cpus') * (keyed + common.skip_line) ^ 0) * -P(1)

--- Parses /proc/stat.
---@return table? stat, string? err
function M.parse_stat(text)
  local t = type(text) == 'string' and stat_grammar:match(text)
  if not t then return nil, 'not a /proc/stat text' end
  for i, c in ipairs(t.cpus) do
    local j = c.j; j.id = c.id; t.cpus[i] = j
  end
  return t
end

local loadavg_grammar = Ct(Cg(common.num, 'load1') * sp * Cg(common.num, 'load5') * sp * Cg(common.num, 'load15')
  * sp * Cg(uint, 'runnable') * '/' * Cg(uint, 'threads') * sp * Cg(uint, 'last_pid') * eol) * -P(1)

function M.parse_loadavg(text)
  local t = type(text) == 'string' and loadavg_grammar:match(text)
  if not t then return nil, 'not a /proc/loadavg text' end
  return t
end

local schedstat_grammar = Ct(Cg(uint, 'run_ns') * sp * Cg(uint, 'wait_ns') * sp * Cg(uint, 'timeslices') * eol) * -P(1)

function M.parse_schedstat(text)
  local t = type(text) == 'string' and schedstat_grammar:match(text)
  if not t then return nil, 'not a schedstat text' end
  return t
end

M.paths = { stat = '/proc/stat', loadavg = '/proc/loadavg', psi = '/proc/pressure/cpu' }

--- One snapshot. `paths` overrides file locations (specs, containers).
function M.sample(paths)
  paths = paths or M.paths
  local s = { time = common.now() }
  local v, err = common.read_parse(paths.stat, M.parse_stat)
  if v then s.stat = v else common.miss(s, 'stat', err) end
  v, err = common.read_parse(paths.loadavg, M.parse_loadavg)
  if v then s.loadavg = v else common.miss(s, 'loadavg', err) end
  v, err = psi.read(paths.psi)
  if v then s.psi = v else common.miss(s, 'psi', err) end
  return s
end

local BUSY = { 'user', 'nice', 'system', 'irq', 'softirq' }
local ALL = { 'user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal' }

--- Percentages of one jiffies delta; fields absent on either side stay nil.
local function pct(a, b)
  local total = 0
  local d = {}
  for _, k in ipairs(ALL) do
    local x = common.delta(a[k], b[k])
    d[k] = x
    if x then total = total + x end
  end
  local out = {}
  if total <= 0 then return out end
  for _, k in ipairs(ALL) do
    if d[k] then out[k .. '_pct'] = 100 * d[k] / total end
  end
  local busy = 0
  for _, k in ipairs(BUSY) do
    if d[k] == nil then busy = nil; break end
    busy = busy + d[k]
  end
  out.busy_pct = busy and 100 * busy / total
  return out
end

function M.rates(prev, cur)
  local e = common.elapsed(prev, cur)
  local out = { elapsed = e }
  local ps, cs = prev.stat, cur.stat
  if ps and cs then
    out.total = pct(ps.total, cs.total)
    local byid = {}
    for _, c in ipairs(ps.cpus) do byid[c.id] = c end
    out.cpus = {}
    for _, c in ipairs(cs.cpus) do
      if byid[c.id] then
        local p = pct(byid[c.id], c); p.id = c.id
        out.cpus[#out.cpus + 1] = p
      end
    end
    out.ncpu = #cs.cpus
    out.ctxt_per_s = common.rate(ps.ctxt, cs.ctxt, e)
    out.forks_per_s = common.rate(ps.processes, cs.processes, e)
    out.procs_running, out.procs_blocked = cs.procs_running, cs.procs_blocked
    for _, k in ipairs({ 'ctxt_per_s', 'forks_per_s', 'procs_running', 'procs_blocked' }) do
      if out[k] == nil then common.miss(out, k, 'not in /proc/stat on this kernel') end
    end
  else
    common.miss(out, 'stat', (cur.missing or {}).stat or (prev.missing or {}).stat or 'no /proc/stat')
  end
  if cur.loadavg then
    out.load1, out.load5, out.load15 = cur.loadavg.load1, cur.loadavg.load5, cur.loadavg.load15
  else
    common.miss(out, 'loadavg', (cur.missing or {}).loadavg)
  end
  out.psi = psi.rate(prev.psi, cur.psi, e)
  if not out.psi then common.miss(out, 'psi', (cur.missing or {}).psi or (prev.missing or {}).psi or 'no interval') end
  return out
end

--- Sums schedstat of every thread of pid (a process's own /proc/PID/schedstat
--- covers only its main thread).
---@return table? snapshot, string? err  -- err "no process N" when pid is gone
function M.sample_task(pid, proc)
  proc = proc or '/proc'
  local s = { time = common.now(), pid = pid, run_ns = 0, wait_ns = 0, timeslices = 0, threads = 0 }
  local dir = proc .. '/' .. pid .. '/task'
  local ok, tids = pcall(require('posix.dirent').dir, dir)
  if not ok then tids = nil end
  if not tids then
    local v = common.read_parse(proc .. '/' .. pid .. '/schedstat', M.parse_schedstat)
    if not v then return nil, 'no process ' .. tostring(pid) end
    s.run_ns, s.wait_ns, s.timeslices, s.threads = v.run_ns, v.wait_ns, v.timeslices, 1
    return s
  end
  for _, tid in ipairs(tids) do
    if tid:byte(1) ~= 46 then -- skip . and ..
      local v = common.read_parse(dir .. '/' .. tid .. '/schedstat', M.parse_schedstat)
      if v then -- a thread that exited between listing and reading is skipped
        s.run_ns = s.run_ns + v.run_ns
        s.wait_ns = s.wait_ns + v.wait_ns
        s.timeslices = s.timeslices + v.timeslices
        s.threads = s.threads + 1
      end
    end
  end
  if s.threads == 0 then return nil, 'no process ' .. tostring(pid) end
  return s
end

--- Rates between two task snapshots. Threads that exit between samples take
--- their counters with them, so a negative delta is reported as missing.
--- `elapsed` overrides the snapshots' own clocks (a caller that timed them).
function M.task_rates(prev, cur, elapsed)
  local e = elapsed or common.elapsed(prev, cur)
  local out = { elapsed = e }
  local run = common.rate(prev.run_ns, cur.run_ns, e)
  local wait = common.rate(prev.wait_ns, cur.wait_ns, e)
  local slices = common.delta(prev.timeslices, cur.timeslices)
  out.cpu_pct = run and run / 1e7
  out.runq_wait_pct = wait and wait / 1e7
  out.timeslices_per_s = common.rate(prev.timeslices, cur.timeslices, e)
  if slices and slices > 0 and wait then
    out.wait_per_slice_ms = (cur.wait_ns - prev.wait_ns) / slices / 1e6
  end
  for _, k in ipairs({ 'cpu_pct', 'runq_wait_pct', 'timeslices_per_s' }) do
    if out[k] == nil then common.miss(out, k, 'threads exited or no interval') end
  end
  return out
end

-- ---------------------------------------------------------------------------
-- Per-thread CPU: a thread at one core's worth is the workload's bottleneck
-- even when other cores idle.
-- ---------------------------------------------------------------------------

local function listdir(dir)
  local ok, names = pcall(dirent.dir, dir)
  return ok and names or nil
end

local function read_sched(path)
  return common.read_parse(path, M.parse_schedstat)
end

--- Schedstat run time of every thread of `pids` (a list), or of every
--- process when pids is nil (opts.exclude: pids to leave out, the checker).
function M.sample_threads(pids, opts)
  opts = opts or {}
  local proc = opts.proc or '/proc'
  local exclude = opts.exclude or {}
  local s = { time = common.now(), threads = {}, count = 0 }
  if not pids then
    pids = {}
    for _, n in ipairs(listdir(proc) or {}) do
      local p = tonumber(n)
      if p and not exclude[p] then pids[#pids + 1] = p end
    end
  end
  for _, pid in ipairs(pids) do
    local dir = proc .. '/' .. pid .. '/task'
    for _, n in ipairs(listdir(dir) or {}) do
      local tid = tonumber(n)
      local v = tid and read_sched(dir .. '/' .. n .. '/schedstat')
      if v then
        s.threads[tid] = { pid = pid, run_ns = v.run_ns, wait_ns = v.wait_ns }
        s.count = s.count + 1
      end
    end
  end
  return s
end

--- Each thread's share of one core between two sample_threads snapshots,
--- busiest first.
function M.thread_rates(prev, cur)
  local e = common.elapsed(prev, cur)
  local out = { elapsed = e, threads = {} }
  if not e or e <= 0 then common.miss(out, 'threads', 'no interval'); return out end
  for tid, t in pairs(cur.threads) do
    local p = prev.threads[tid]
    -- same tid, other process: a reused id counts from its birth
    local base = (p and p.pid == t.pid and p.run_ns <= t.run_ns) and p.run_ns or 0
    local d = t.run_ns - base
    if d > 0 then
      local x = { tid = tid, pid = t.pid, pct = math.min(100, d / e / 1e7) }
      if t.wait_ns then
        local w = t.wait_ns - ((base > 0 and p.wait_ns) or 0)
        if w >= 0 then x.wait_pct = math.min(100, w / e / 1e7) end
      end
      out.threads[#out.threads + 1] = x
    end
  end
  table.sort(out.threads, function(a, b) return a.pct > b.pct end)
  return out
end

function M.thread_comm(pid, tid, proc)
  local s = common.read((proc or '/proc') .. '/' .. pid .. '/task/' .. tid .. '/comm')
  return s and (s:gsub('\n$', ''))
end

local cpu_range = Ct(Cg(uint, 'lo') * (P('-') * Cg(uint, 'hi')) ^ -1)
local cpu_list_grammar = Ct(cpu_range * (P(',') * cpu_range) ^ 0) * common.osp * (nl + -P(1)) * -P(1)

--- Parses a kernel CPU list ("0-3,6"); an empty list (an unset cpuset) is {}.
function M.parse_cpu_list(text)
  if type(text) ~= 'string' then return nil, 'no text' end
  if text:match('^%s*$') then return {} end
  local ranges = cpu_list_grammar:match(text)
  if not ranges then return nil, 'not a CPU list' end
  local out = {}
  for _, r in ipairs(ranges) do
    for id = r.lo, r.hi or r.lo do out[#out + 1] = id end
  end
  return out
end

--- Formats a sorted list of CPU ids the way the kernel does ("0-1,3").
function M.format_cpu_list(ids)
  local parts, i = {}, 1
  while i <= #ids do
    local j = i
    while ids[j + 1] == ids[j] + 1 do j = j + 1 end
    parts[#parts + 1] = j > i and (ids[i] .. '-' .. ids[j]) or tostring(ids[i])
    i = j + 1
  end
  return table.concat(parts, ',')
end

--- The CPUs a process may run on: the union of its threads' affinity
--- (taskset, sched_setaffinity, and the cpuset the kernel applies).
function M.affinity(pid, proc)
  proc = proc or '/proc'
  local dir = proc .. '/' .. pid .. '/task'
  local seen, ids = {}, {}
  for _, n in ipairs(listdir(dir) or { '' }) do
    local path = n == '' and (proc .. '/' .. pid .. '/status') or (dir .. '/' .. n .. '/status')
    local text = common.read(path)
    local list = text and text:match('\nCpus_allowed_list:%s*([^\n]*)')
    for _, id in ipairs(list and M.parse_cpu_list(list) or {}) do
      if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
    end
  end
  if #ids == 0 then return nil, 'no Cpus_allowed_list for process ' .. tostring(pid) end
  table.sort(ids)
  return { cpus = ids, count = #ids, list = M.format_cpu_list(ids) }
end

return M
