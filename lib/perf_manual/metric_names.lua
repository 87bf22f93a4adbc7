--- Human names for metric keys. Every number the tool records is stored under
--- a dotted key (`quantify.process.cpu_pct`, `collect-cpu.cpu.busy_pct`,
--- `disk.rates.by_name.vda.util_pct`); reports, slides and `diff` show the
--- name and unit from here instead ("CPU used by the process, % of one CPU").
---
---   names.lookup(key)        -> { name =, unit =, scale =, known = bool }
---   names.label(key)         -> "CPU busy, % of all CPUs"
---   names.format(key, value) -> "48.9%"  (value in the metric's unit)
---
--- Plain data and string functions: analyzers, renderers and playbooks may
--- all use it (it requires no measuring layer). Teams add their own keys by
--- adding rules to `M.rules` (tried first, in order) or leaves to `M.leaves`.
local util = require('perf_manual.util')

local M = {}

local fmt = string.format

-- CPU time breakdown leaves (<what>_pct)
local CPU_TIME = {
  busy = 'CPU busy', user = 'CPU in user code', system = 'CPU in the kernel', sys = 'CPU in the kernel',
  iowait = 'CPU idle with I/O outstanding (iowait)', idle = 'CPU idle', irq = 'CPU in hardware interrupts',
  softirq = 'CPU in software interrupts', steal = 'CPU stolen by the hypervisor', nice = 'CPU in niced user code',
  guest = 'CPU running guests',
}

local PSI_RESOURCE = { cpu = 'CPU', memory = 'Memory', io = 'I/O' }

-- the resource a pressure figure belongs to, from anywhere in its key
local function psi_resource(key, explicit)
  if explicit and PSI_RESOURCE[explicit] then return PSI_RESOURCE[explicit] end
  if key:find('memory') or key:find('mem') then return 'Memory' end
  if key:find('disk') or key:find('%f[%a]io%f[%A]') then return 'I/O' end
  if key:find('cpu') then return 'CPU' end
  return nil
end

-- "<Disk|Interface> <name>: <what>" for a leaf under a named device
local function object(key, dev, leaf)
  local l = M.leaves[leaf]
  if not l then return nil end
  local kind = (key:find('disk') and 'Disk ') or ((key:find('net') or key:find('interfaces')) and 'Interface ') or ''
  return kind .. dev .. ': ' .. l[1]:gsub('^%u', string.lower), l[2], l[3]
end

local PSI_KIND = {
  some_pct = { 'some task stalled (PSI some)', '% of time' },
  full_pct = { 'all tasks stalled (PSI full)', '% of time' },
  some_avg10 = { 'some task stalled (PSI some, 10 s average)', '% of time' },
  full_avg10 = { 'all tasks stalled (PSI full, 10 s average)', '% of time' },
  some_avg60 = { 'some task stalled (PSI some, 60 s average)', '% of time' },
  full_avg60 = { 'all tasks stalled (PSI full, 60 s average)', '% of time' },
}

--- Rules tried first, in order: a Lua pattern on the whole key, and a name
--- and unit, or a function of the key and the pattern's captures returning
--- name, unit[, scale]. `scale` multiplies the stored value into the unit.
M.rules = {
  -- the process a quantify step, a baseline comparison or a process collector measured
  { 'process%.cpu_pct$', 'CPU used by the process', '% of one CPU' },
  { 'process%.user_pct$', 'CPU used by the process in user code', '% of one CPU' },
  { 'process%.sys_pct$', 'CPU used by the process in the kernel', '% of one CPU' },
  -- thread-seconds spent runnable, waiting for a CPU, per second of wall time
  { 'process%.runq_wait_pct$', 'Time the process\'s threads wait for a CPU', '% of one thread\'s time' },
  { 'process%.timeslices_per_s$', 'Timeslices run by the process', 'per second' },
  { 'process%.threads$', 'Threads in the process', 'threads' },
  { 'process%.wait_per_slice_ms$', 'Wait for a CPU per timeslice', 'ms' },
  { 'cpuset%.count$', 'CPUs the cgroup may use', 'CPUs' },
  -- per-CPU lines of the CPU collector: its list of CPUs in id order, flattened
  -- from JSON, so the first (cpu0) is "cpus.1"
  { 'cpus%.(%d+)%.(%a+)_pct$', function(_, n, what)
      if CPU_TIME[what] then
        return 'CPU ' .. (tonumber(n) - 1) .. ' ' .. CPU_TIME[what]:gsub('^CPU ', ''), '% of that CPU'
      end
    end },
  -- pressure stall information, per resource ("psi.memory.some_pct", "memory.rates.psi.some_pct")
  { '([%a]+)%.([%a]+_[%w]+)$', function(key, res, kind)
      local k = PSI_KIND[kind]
      local r = k and (key:find('psi', 1, true) or key:find('pressure', 1, true)) and psi_resource(key, res)
      if r then return r .. ' pressure: ' .. k[1], k[2] end
    end },
  -- a device or interface by name: "Disk vda: busy (utilization)"
  { '%.by_name%.([^.]+)%.([%w_]+)$', function(key, dev, leaf) return object(key, dev, leaf) end },
  { '%.interfaces%.([^.]+)%.([%w_]+)$', function(key, dev, leaf) return object(key, dev, leaf) end },
  -- latency percentiles ("latency.p99", "red-check.latency.p99.9")
  { 'latency%.(p%d+%.?%d*)$', function(_, p) return 'Request latency ' .. p, 'seconds' end },
  { 'latency%.max$', 'Request latency maximum', 'seconds' },
  { 'latency%.mean$', 'Request latency mean', 'seconds' },
  -- the CPU time breakdown of the whole system
  { '([%a]+)_pct$', function(key, what)
      if CPU_TIME[what] and not key:find('disk') and not key:find('memory') and not key:find('cgroup') then
        return CPU_TIME[what], '% of all CPUs'
      end
    end },
}

--- Leaves known on their own: the last part of a key -> { name, unit, scale }.
M.leaves = {
  -- system CPU and scheduler
  load1 = { 'Load average (1 minute)', 'tasks' },
  load5 = { 'Load average (5 minutes)', 'tasks' },
  load15 = { 'Load average (15 minutes)', 'tasks' },
  procs_running = { 'Runnable tasks', 'tasks' },
  procs_blocked = { 'Tasks blocked on I/O', 'tasks' },
  ctxt_per_s = { 'Context switches', 'per second' },
  forks_per_s = { 'Processes and threads created', 'per second' },
  ncpu = { 'CPUs', 'CPUs' },
  -- a process
  vol_ctxt_per_s = { 'Voluntary context switches (blocking)', 'per second' },
  nonvol_ctxt_per_s = { 'Involuntary context switches (preempted)', 'per second' },
  minflt_per_s = { 'Minor page faults', 'per second' },
  majflt_per_s = { 'Major page faults (read from disk)', 'per second' },
  rss_bytes = { 'Resident memory (RSS)', 'bytes' },
  vsize_bytes = { 'Virtual memory size', 'bytes' },
  swap_bytes = { 'Swapped-out memory', 'bytes' },
  rchar_per_s = { 'Bytes read (all reads)', 'bytes per second' },
  wchar_per_s = { 'Bytes written (all writes)', 'bytes per second' },
  read_bytes_per_s = { 'Bytes read from storage', 'bytes per second' },
  write_bytes_per_s = { 'Bytes written to storage', 'bytes per second' },
  blkio_delay_pct = { 'Time waiting for block I/O', '% of wall time' },
  threads = { 'Threads', 'threads' },
  cpu_pct = { 'CPU used', '% of one CPU' },
  runq_wait_pct = { 'Time waiting for a CPU', '% of one thread\'s time' },
  timeslices_per_s = { 'Timeslices', 'per second' },
  wait_per_slice_ms = { 'Wait for a CPU per timeslice', 'ms' },
  -- memory
  used_pct = { 'Memory used', '% of RAM' },
  used_bytes = { 'Memory used', 'bytes' },
  available_bytes = { 'Memory available', 'bytes' },
  total_bytes = { 'Memory installed', 'bytes' },
  dirty_bytes = { 'Dirty page cache (not yet written)', 'bytes' },
  writeback_bytes = { 'Page cache being written back', 'bytes' },
  swap_used_pct = { 'Swap used', '% of swap' },
  swap_used_bytes = { 'Swap used', 'bytes' },
  swap_total_bytes = { 'Swap size', 'bytes' },
  pgfault_per_s = { 'Page faults', 'per second' },
  pgmajfault_per_s = { 'Major page faults (read from disk)', 'per second' },
  refault_per_s = { 'Page cache refaults (evicted, then needed again)', 'per second' },
  pgscan_direct_per_s = { 'Pages scanned by direct reclaim', 'per second' },
  pgscan_kswapd_per_s = { 'Pages scanned by kswapd', 'per second' },
  pgsteal_per_s = { 'Pages reclaimed', 'per second' },
  pswpin_per_s = { 'Pages swapped in', 'per second' },
  pswpout_per_s = { 'Pages swapped out', 'per second' },
  allocstall_per_s = { 'Allocation stalls (direct reclaim)', 'per second' },
  compact_stall_per_s = { 'Compaction stalls', 'per second' },
  oom_kill = { 'OOM kills in the window', 'kills' },
  oom_kill_total = { 'OOM kills since boot', 'kills' },
  -- cgroups
  usage_bytes = { 'Cgroup memory in use', 'bytes' },
  limit_bytes = { 'Cgroup memory limit', 'bytes' },
  max_usage_bytes = { 'Cgroup memory peak', 'bytes' },
  memory_usage_pct = { 'Cgroup memory in use', '% of its limit' },
  usage_pct = { 'In use', '% of the limit' },
  throttled_pct = { 'CPU quota throttling', '% of periods throttled' },
  nr_throttled = { 'CPU quota periods throttled', 'periods' },
  nr_periods = { 'CPU quota periods', 'periods' },
  limit_hits = { 'Memory limit hits', 'hits' },
  oom_kills = { 'OOM kills in the window', 'kills' },
  oom_kills_total = { 'OOM kills since the cgroup was made', 'kills' },
  fd_count = { 'Open file descriptors', 'descriptors' },
  throttled_ms_per_s = { 'Time throttled by the CPU quota', 'ms per second' },
  -- disks (iostat's names)
  util_pct = { 'Busy (utilization)', '% of time' },
  r_s = { 'Reads', 'per second' },
  w_s = { 'Writes', 'per second' },
  d_s = { 'Discards', 'per second' },
  f_s = { 'Flushes', 'per second' },
  rkB_s = { 'Read throughput', 'kB per second' },
  wkB_s = { 'Write throughput', 'kB per second' },
  rrqm_s = { 'Reads merged', 'per second' },
  wrqm_s = { 'Writes merged', 'per second' },
  aqu_sz = { 'Average queue size', 'requests' },
  rareq_sz = { 'Average read size', 'kB' },
  wareq_sz = { 'Average write size', 'kB' },
  dareq_sz = { 'Average discard size', 'kB' },
  in_flight = { 'Requests in flight', 'requests' },
  r_await = { 'Read latency (await)', 'ms' },
  w_await = { 'Write latency (await)', 'ms' },
  r_await_ms = { 'Read latency (await)', 'ms' },
  w_await_ms = { 'Write latency (await)', 'ms' },
  await_ms = { 'I/O latency (await)', 'ms' },
  -- network
  rx_bytes_per_s = { 'Received', 'bytes per second' },
  tx_bytes_per_s = { 'Sent', 'bytes per second' },
  rx_packets_per_s = { 'Packets received', 'per second' },
  tx_packets_per_s = { 'Packets sent', 'per second' },
  rx_drop_per_s = { 'Received packets dropped', 'per second' },
  tx_drop_per_s = { 'Sent packets dropped', 'per second' },
  rx_errs_per_s = { 'Receive errors', 'per second' },
  tx_errs_per_s = { 'Send errors', 'per second' },
  speed_bytes_per_s = { 'Link speed', 'bytes per second' },
  retrans_segs_per_s = { 'TCP retransmits', 'per second' },
  retrans_pct = { 'TCP retransmits', '% of segments sent' },
  in_segs_per_s = { 'TCP segments received', 'per second' },
  out_segs_per_s = { 'TCP segments sent', 'per second' },
  active_opens_per_s = { 'TCP connections opened', 'per second' },
  passive_opens_per_s = { 'TCP connections accepted', 'per second' },
  attempt_fails_per_s = { 'TCP connection attempts failed', 'per second' },
  estab_resets_per_s = { 'TCP connections reset', 'per second' },
  out_rsts_per_s = { 'TCP resets sent', 'per second' },
  listen_drops_per_s = { 'Listen queue drops', 'per second' },
  listen_overflows_per_s = { 'Listen queue overflows', 'per second' },
  -- a service (RED)
  rate_completed = { 'Throughput (requests answered)', 'per second' },
  rate_asked = { 'Requests asked', 'per second' },
  responses_per_s = { 'Requests answered in each second', 'requests' },
  errors_per_s = { 'Requests failed in each second', 'requests' },
  error_ratio = { 'Errors', '% of requests', 100 },
  errors = { 'Errors', '% of requests', 100 },
  throughput = { 'Throughput', 'requests per second' },
  rps = { 'Throughput', 'requests per second' },
  latency = { 'Request latency', 'seconds' },
}

-- The parts of a key that say where it came from, not what it is.
local NOISE = { rates = true, total = true, by_name = true, system = true, quantify = true, cpus = false }

local SUFFIX_UNITS = {
  { '_pct$', '%' }, { '_per_s$', 'per second' }, { '_bytes$', 'bytes' }, { '_ms$', 'ms' }, { '_us$', 'µs' },
  { '_ns$', 'ns' }, { '_seconds$', 'seconds' }, { '_secs$', 'seconds' },
}

local function words(s)
  return (s:gsub('[_%-.]+', ' '):gsub('^%s+', ''):gsub('%s+$', ''))
end

local function capital(s) return (s:gsub('^%l', string.upper)) end

-- A name for a key nobody described: its last part in words, the unit from
-- the suffix, and the part before it as context. Never the dotted key.
local function derive(key)
  local parts = {}
  for p in key:gmatch('[^.]+') do parts[#parts + 1] = p end
  -- a leading file name ("collect-cpu", "red-check-2") says where, not what
  if #parts > 1 and parts[1]:find('-', 1, true) then table.remove(parts, 1) end
  local leaf = parts[#parts] or key
  local unit = ''
  for _, su in ipairs(SUFFIX_UNITS) do
    if leaf:find(su[1]) then unit = su[2]; leaf = leaf:gsub(su[1], ''); break end
  end
  local ctx
  for i = #parts - 1, 1, -1 do
    if not NOISE[parts[i]] then
      ctx = parts[i]
      -- an index ("cpus.0") reads with the part before it
      if ctx:match('^%d+$') and i > 1 then ctx = parts[i - 1] .. ' ' .. ctx end
      break
    end
  end
  local name = capital(words(leaf))
  if name == '' then name = 'Value' end
  if ctx and words(ctx) ~= '' and words(ctx):lower() ~= name:lower() then name = name .. ' (' .. words(ctx) .. ')' end
  return name, unit
end

local cache = {}

--- The name and unit of a key: { name, unit, scale, known }. `known` is
--- false when the name was derived from the key itself.
function M.lookup(key)
  key = tostring(key)
  local c = cache[key]
  if c then return c end
  local r
  for _, rule in ipairs(M.rules) do
    local caps = { key:find(rule[1]) }
    if caps[1] then
      if type(rule[2]) == 'function' then
        local name, unit, scale = rule[2](key, select(3, unpack(caps)))
        if name then r = { name = name, unit = unit or '', scale = scale, known = true } end
      else
        r = { name = rule[2], unit = rule[3] or '', scale = rule[4], known = true }
      end
      if r then break end
    end
  end
  if not r then
    local leaf = key:match('([^.]+)$')
    local l = M.leaves[leaf]
    if l then
      local name = l[1]
      -- the object the leaf belongs to, when the key names one
      local obj = key:match('%.cgroup%.') and 'cgroup' or nil
      if obj then name = name .. ' (' .. obj .. ')' end
      r = { name = name, unit = l[2], scale = l[3], known = true }
    end
  end
  if not r then
    local name, unit = derive(key)
    r = { name = name, unit = unit, known = false }
  end
  cache[key] = r
  return r
end

--- "Name, unit" (the unit left out when there is none).
function M.label(key)
  local r = M.lookup(key)
  -- a count whose name says what it counts needs no unit ("Runnable tasks")
  if r.unit == '' or r.name:lower():find(r.unit:lower(), 1, true) then return r.name end
  return r.name .. ', ' .. r.unit
end

--- The name alone (for chart legends, whose axis carries the unit).
function M.name(key) return M.lookup(key).name end

local function num(v)
  local a = math.abs(v)
  if a >= 1e9 then return fmt('%.1fG', v / 1e9) end
  if a >= 1e6 then return fmt('%.1fM', v / 1e6) end
  if a >= 1e4 then return fmt('%.1fk', v / 1e3) end
  if a >= 100 or v == math.floor(v) then return fmt('%.0f', v) end
  if a >= 1 then return fmt('%.1f', v) end
  return fmt('%.2f', v)
end

--- A value of a key's metric as text in its unit ("48.9%", "5.9k/s",
--- "1.4M", "3.1ms"); nil or a non-number is "not measured".
function M.format_unit(v, unit, scale)
  if type(v) ~= 'number' then return 'not measured' end
  v = v * (scale or 1)
  unit = unit or ''
  if unit:sub(1, 1) == '%' then return num(v) .. '%' end
  if unit == 'seconds' or unit == 's' then return util.fmt_duration(v) end
  if unit == 'bytes' or unit == 'B' then return util.fmt_bytes(v) end
  if unit == 'bytes per second' or unit == 'B/s' then return util.fmt_bytes(v) .. '/s' end
  if unit == 'ms' then return num(v) .. ' ms' end
  if unit == 'per second' or unit:match(' per second$') then return num(v) .. '/s' end
  return num(v)
end

--- Text with each of `keys` (dotted metric keys) replaced by its name, for
--- sentences other code built around a key ("MET: p99 -20%: red-check.latency p99 ...").
function M.humanize(text, keys)
  text = tostring(text)
  for _, k in ipairs(keys or {}) do
    if type(k) == 'string' and k:find('.', 1, true) then
      local out, pos = {}, 1
      while true do
        local a, b = text:find(k, pos, true)
        if not a then break end
        out[#out + 1] = text:sub(pos, a - 1)
        out[#out + 1] = M.name(k)
        pos = b + 1
      end
      out[#out + 1] = text:sub(pos)
      text = table.concat(out)
    end
  end
  return text
end

function M.format(key, v)
  local r = M.lookup(key)
  return M.format_unit(v, r.unit, r.scale)
end

--- Before and after texts of a comparison row (perf_manual.analyzers.stats
--- diff: metric, kind, unit, before, after, before_text, after_text) in the
--- metric's unit; a row that carries its own unit keeps its texts.
function M.row_values(m)
  local b, a = tonumber(m.before), tonumber(m.after)
  local r = M.lookup(m.metric)
  if type(m.unit) == 'string' or r.unit == '' or not b or not a then return m.before_text, m.after_text end
  local pre = m.kind == 'samples' and 'median ' or ''
  return pre .. M.format(m.metric, b), pre .. M.format(m.metric, a)
end

return M
