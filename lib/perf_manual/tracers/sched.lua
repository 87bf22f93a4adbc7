--- Scheduler tracer: run-queue latency (wakeup or preemption -> running),
--- like runqlat, for everything, per CPU or per process; and run-queue
--- length sampled per CPU, like runqlen. Kernel side: bpf/sched.bpf.c
--- (tp_btf programs, raw_tp as the fallback; runq_sample on a perf event),
--- structs mirrored from bpf/sched.h.
---
---   local t = assert(sched.start{ per = 'process', pid = 1234 })
---   local r = t:read{ clear = true }
---   -- the text of a result is perf_manual.report.tracers' job, not this module's
local ffi = require('ffi')
local base = require('perf_manual.tracers.base')
local hist = require('perf_manual.hist')
local util = require('perf_manual.util')

local M = {}

M.name = 'sched'
M.event = 'sched'
M.summary = 'run-queue latency histogram and run-queue length (runqlat, runqlen)'
M.tracepoints = { 'sched/sched_wakeup', 'sched/sched_wakeup_new', 'sched/sched_switch' }
M.SLOTS = 32
M.RUNQ_SLOTS = 64
M.SAMPLE_HZ = 99

ffi.cdef [[
struct pm_sched_hist { uint64_t count, total; uint64_t slots[32]; };
struct pm_runq_hist { uint64_t slots[64]; };
]]

local hist_t = ffi.typeof('const struct pm_sched_hist *')
local runq_t = ffi.typeof('const struct pm_runq_hist *')
local u32_t = ffi.typeof('const uint32_t *')

--- FFI mirror sizes, checked by the spec against the object's BTF.
function M.sizeof()
  return { hist = ffi.sizeof('struct pm_sched_hist'), runq = ffi.sizeof('struct pm_runq_hist') }
end

--- Decodes one `hists` entry: key = group (0, a CPU or a tgid).
function M.decode_hist(kb, vb)
  assert(#vb == ffi.sizeof('struct pm_sched_hist'), 'sched: bad hist size ' .. #vb)
  local v = ffi.cast(hist_t, vb)
  local slots = {}
  for i = 0, M.SLOTS - 1 do slots[i + 1] = tonumber(v.slots[i]) end
  return { key = tonumber(ffi.cast(u32_t, kb)[0]), count = tonumber(v.count), total = tonumber(v.total), slots = slots }
end

--- Decodes one CPU's copy of the `runq` sample histogram.
function M.decode_runq(vb)
  assert(#vb == ffi.sizeof('struct pm_runq_hist'), 'sched: bad runq size ' .. #vb)
  local v = ffi.cast(runq_t, vb)
  local slots = {}
  for i = 0, M.RUNQ_SLOTS - 1 do slots[i + 1] = tonumber(v.slots[i]) end
  return slots
end

--- Run-queue length summary of linear slots (slot i: i tasks on the run
--- queue, the running one included): samples, mean, and how often a task
--- was waiting (length > 1).
function M.runq_summary(slots)
  local n, sum, waiting = 0, 0, 0
  for i, c in ipairs(slots) do
    n = n + c
    sum = sum + (i - 1) * c
    if i - 1 > 1 then waiting = waiting + c end
  end
  if n == 0 then return { samples = 0 } end
  return { samples = n, mean = sum / n, waiting_pct = waiting / n * 100 }
end

--- Decoded groups -> result rows with buckets and summary figures.
--- per: 'all' | 'cpu' | 'process'; comm(tgid) names processes.
function M.aggregate(groups, per, unit, comm)
  local rows = {}
  local all = {}
  for i = 1, M.SLOTS do all[i] = 0 end
  local total = { count = 0, total = 0 }
  for _, g in ipairs(groups) do
    if g.count > 0 then
      local row = { key = g.key, count = g.count, total = g.total, avg = g.total / g.count,
                    buckets = hist.log2_buckets(g.slots) }
      local s = hist.summary(row.buckets)
      row.p50, row.p90, row.p99 = s.p50, s.p90, s.p99
      if per == 'cpu' then row.cpu = g.key
      elseif per == 'process' then row.pid = g.key; row.comm = comm and comm(g.key) or nil end
      rows[#rows + 1] = row
      hist.add_slots(all, g.slots)
      total.count = total.count + g.count
      total.total = total.total + g.total
    end
  end
  table.sort(rows, function(a, b)
    if per == 'cpu' then return a.key < b.key end
    if a.total ~= b.total then return a.total > b.total end
    return a.key < b.key
  end)
  local res = { per = per, unit = unit, groups = rows, buckets = hist.log2_buckets(all), count = total.count }
  if total.count > 0 then res.avg = total.total / total.count end
  local s = hist.summary(res.buckets)
  res.p50, res.p90, res.p99 = s.p50, s.p90, s.p99
  return res
end

local function read_comm(pid)
  local s = util.readfile('/proc/' .. pid .. '/comm')
  return s and s:gsub('\n$', '') or nil
end

-- Live tracer ----------------------------------------------------------------

local Sched = setmetatable({}, { __index = base.Tracer })
Sched.__index = Sched

local VARIANTS = {
  { name = 'tp_btf', progs = { 'sched_wakeup_btf', 'sched_wakeup_new_btf', 'sched_switch_btf' } },
  { name = 'raw_tp', progs = { 'sched_wakeup_raw', 'sched_wakeup_new_raw', 'sched_switch_raw' } },
}

--- Starts tracing. opts: pid | tid | cgroup (whose wakeups are measured),
--- per = 'all' (default) | 'cpu' | 'process', ns = true (histogram in ns,
--- default us), runqlen = false (no run-queue length sampling),
--- sample_hz (default 99), stats = false, attach = 'tp_btf' | 'raw_tp' (force
--- one program set; default: tp_btf, then raw_tp if the kernel refuses it).
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  local per = opts.per or 'all'
  if per ~= 'all' and per ~= 'cpu' and per ~= 'process' then
    error("[perf_manual.tracers.sched] per must be 'all', 'cpu' or 'process'", 2)
  end
  for _, tp in ipairs(M.tracepoints) do
    if base.tracepoint_exists(tp) == false then return nil, base.unavailable('tracepoint ' .. tp) end
  end
  local cfg, err = base.filter_config(opts)
  if not cfg then return nil, err end
  cfg.targ_per_cpu = per == 'cpu'
  cfg.targ_per_process = per == 'process'
  cfg.targ_ns = opts.ns and true or false
  local want_runq = opts.runqlen ~= false
  local variants = VARIANTS
  if opts.attach then -- force one program set (tests, or a kernel where tp_btf misbehaves)
    variants = {}
    for _, v in ipairs(VARIANTS) do if v.name == opts.attach then variants[1] = v end end
    if #variants == 0 then error("[perf_manual.tracers.sched] attach must be 'tp_btf' or 'raw_tp'", 2) end
  end
  local keep = { runq_sample = want_runq }
  for _, v in ipairs(VARIANTS) do
    -- a forced set leaves the other one out entirely
    if variants[1] ~= v and #variants == 1 then for _, p in ipairs(v.progs) do keep[p] = false end end
  end
  local obj, v = base.load_variants('sched', cfg, variants, { keep = keep, stats = opts.stats })
  if not obj then return nil, v end
  local t = base.Tracer.new('sched', obj, { attach_path = v })
  t.per, t.unit = per, opts.ns and 'nsecs' or 'usecs'
  t.hists = obj:map('hists')
  if want_runq then
    local ncpu = require('perf_manual.bpf').ncpu()
    for cpu = 0, ncpu - 1 do
      local ok, perr = obj:attach_perf_event('runq_sample', { cpu = cpu, freq = opts.sample_hz or M.SAMPLE_HZ })
      if not ok then
        -- offline CPUs fail with ENODEV: only a total failure makes the length unmeasured
        t.runq_err = perr
      else
        t.runq_cpus = (t.runq_cpus or 0) + 1
      end
    end
    if t.runq_cpus then t.runq = obj:map('runq'); t.runq_err = nil end
  else
    t.runq_err = 'not asked'
  end
  t.comm_cache = {}
  -- the target may be gone by the time the histograms are read
  if opts.pid then t.comm_cache[opts.pid] = read_comm(opts.pid) or false end
  return setmetatable(t, Sched)
end

--- Reads the maps. opts.clear resets them (per-interval output).
function Sched:read(opts)
  opts = opts or {}
  local now = require('perf_manual.sys').now()
  if self.closed then return self.final end
  local groups = {}
  for _, e in ipairs(assert(self.hists:read{ clear = opts.clear })) do
    groups[#groups + 1] = M.decode_hist(e.key, e.value)
  end
  local cache = self.comm_cache
  local res = M.aggregate(groups, self.per, self.unit, function(pid)
    if cache[pid] == nil then cache[pid] = read_comm(pid) or false end
    return cache[pid] or nil
  end)
  if self.runq then
    local per_cpu, all = {}, {}
    for i = 1, M.RUNQ_SLOTS do all[i] = 0 end
    local e = assert(self.runq:read{ percpu = 'list', clear = opts.clear })[1]
    for cpu, vb in ipairs(e and e.value or {}) do
      local slots = M.decode_runq(vb)
      hist.add_slots(all, slots)
      local s = M.runq_summary(slots)
      s.cpu = cpu - 1
      s.buckets = hist.linear_buckets(slots)
      per_cpu[#per_cpu + 1] = s
    end
    res.runqlen = M.runq_summary(all)
    res.runqlen.buckets = hist.linear_buckets(all)
    res.runqlen.per_cpu = per_cpu
    res.runqlen.sample_hz = M.SAMPLE_HZ
  else
    res.runqlen_note = 'not measured (' .. tostring(self.runq_err) .. ')'
  end
  return self:finish_read(res, now, opts)
end

function M.to_json(res)
  return base.json_copy(res, { 'groups', 'buckets' })
end

return M
