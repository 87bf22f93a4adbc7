--- What every BPF tracer shares: turning target options into the rodata
--- filter of bpf/common.h, loading an object with fallback program sets
--- (tp_btf, then raw_tp ...), and measurement quality — events seen and
--- lost, the attach path used, and the tracer's own cost (BPF program run
--- time from BPF_ENABLE_STATS, plus the process's rusage).
---
--- A tracer built on it:
---   local t = base.Tracer.new('syscall', obj, meta)   -- meta: attach variant etc.
---   t:quality()  -> measurement quality since start
---   t:over_budget(pct) -> true, why   when its BPF cost passed pct% of one CPU
---   t:close()
local sys = require('perf_manual._c.sys')

local M = {}

--- The message a tracer gives when the kernel lacks what it needs.
function M.unavailable(what)
  return 'unavailable on this kernel: ' .. what
end

--- cgroup v2 id (the inode number of its directory) of a path under
--- /sys/fs/cgroup, absolute or relative; a number passes through.
---@return integer?, string? err
function M.cgroup_id(cg)
  if type(cg) == 'number' then return cg end
  if type(cg) ~= 'string' or cg == '' then return nil, 'expected a cgroup path or id' end
  if cg:match('^%d+$') then return tonumber(cg) end
  local path = cg
  if path:sub(1, 1) ~= '/' or not path:match('^/sys/fs/cgroup') then
    path = '/sys/fs/cgroup/' .. path:gsub('^/', '')
  end
  local st = require('posix.sys.stat').stat(path)
  if not st then return nil, 'no cgroup ' .. cg .. ' (' .. path .. ')' end
  return st.st_ino
end

--- Target options -> the filter rodata of bpf/common.h.
--- opts.pid (process, = tgid), opts.tgid (alias), opts.tid (one thread),
--- opts.cgroup (path or id).
---@return table? config, string? err
function M.filter_config(opts)
  opts = opts or {}
  local cfg = { targ_tgid = opts.pid or opts.tgid or 0, targ_pid = opts.tid or 0, targ_cgroup_id = 0 }
  if opts.cgroup then
    local id, err = M.cgroup_id(opts.cgroup)
    if not id then return nil, err end
    cfg.targ_cgroup_id = id
  end
  return cfg
end

--- Does the kernel have this tracepoint ("sched/sched_switch")? nil when
--- tracefs is not mounted (cannot tell).
function M.tracepoint_exists(tp)
  local root = require('perf_manual._c.bpf').tracefs()
  if not root then return nil end
  return require('posix.sys.stat').stat(root .. '/events/' .. tp) ~= nil
end

--- Opens `name`, sets config, and loads the first program set the kernel
--- accepts. variants: list of { name = 'tp_btf', progs = { ... } }: the
--- programs of one variant are loaded, those of the others are not.
--- opts.always = programs of no variant that are loaded when opts.keep[prog]
--- is true (e.g. perf_event samplers); opts.stats (default true).
---@return userdata? obj, string variant_or_err
function M.load_variants(name, config, variants, opts)
  opts = opts or {}
  local bpf = require('perf_manual.bpf')
  local errs = {}
  for _, v in ipairs(variants) do
    local obj, err = bpf.open(name)
    if not obj then return nil, err end
    obj:set_config(config)
    for _, other in ipairs(variants) do
      for _, p in ipairs(other.progs) do obj:autoload(p, other == v) end
    end
    for prog, on in pairs(opts.keep or {}) do obj:autoload(prog, on) end
    local ok, lerr = obj:load{ stats = opts.stats }
    if ok then
      ok, lerr = obj:attach(v.progs)
      if ok then return obj, v.name end
    end
    obj:close()
    errs[#errs + 1] = v.name .. ': ' .. tostring(lerr)
  end
  return nil, table.concat(errs, '; ')
end

-- Measurement quality ------------------------------------------------------

local Tracer = {}
Tracer.__index = Tracer
M.Tracer = Tracer

--- Wraps a loaded, attached object. meta.attach_path names the variant used.
function Tracer.new(name, obj, meta)
  local info = obj:info()
  return setmetatable({
    name = name, obj = obj, meta = meta or {},
    t0 = sys.now(), ru0 = sys.rusage(),
    run_ns0 = info.run_time_ns, run_cnt0 = info.run_cnt,
    detached = nil,
  }, Tracer)
end

local function attach_path(attach)
  local kinds, seen = {}, {}
  for _, kind in pairs(attach) do
    if not seen[kind] then seen[kind] = true; kinds[#kinds + 1] = kind end
  end
  table.sort(kinds)
  return table.concat(kinds, '+')
end
M.attach_path = attach_path

--- Measurement quality since the tracer started (plain table).
--- Missing figures are nil (not measured), never 0.
function Tracer:quality()
  local q = { elapsed_s = sys.now() - self.t0 }
  if self.obj and self.obj.info and not self.closed then
    local info = self.obj:info()
    local st = self.obj:stats() or {}
    q.events_seen, q.events_lost, q.events_missed = st.events, st.lost, st.missed
    q.attach = info.attach
    self.last_attach = info.attach
    if info.run_time_ns and self.run_ns0 then
      q.bpf_run_time_ns = info.run_time_ns - self.run_ns0
      q.bpf_run_cnt = info.run_cnt - self.run_cnt0
    end
    self.last_q = q
  elseif self.last_q then
    for k, v in pairs(self.last_q) do if q[k] == nil then q[k] = v end end
  end
  q.attach_path = self.meta.attach_path or (q.attach and attach_path(q.attach))
  if q.bpf_run_time_ns and q.elapsed_s > 0 then
    q.bpf_cpu_pct = q.bpf_run_time_ns / (q.elapsed_s * 1e9) * 100
    if q.bpf_run_cnt and q.bpf_run_cnt > 0 then q.bpf_ns_per_run = q.bpf_run_time_ns / q.bpf_run_cnt end
  end
  if not q.bpf_run_time_ns then q.bpf_cost_note = 'not measured (BPF_ENABLE_STATS unavailable)' end
  local ru = sys.rusage()
  q.self_cpu_s = (ru.utime + ru.stime) - (self.ru0.utime + self.ru0.stime)
  if q.elapsed_s > 0 then q.self_cpu_pct = q.self_cpu_s / q.elapsed_s * 100 end
  q.self_maxrss_kb = ru.maxrss_kb
  q.detached = self.detached
  return q
end

--- true, why when the tracer's kernel-side cost passed pct% of one CPU.
function Tracer:over_budget(pct)
  local q = self:quality()
  if q.bpf_cpu_pct and q.bpf_cpu_pct > pct then
    return true, string.format('%s tracer detached: its BPF programs used %.1f%% of one CPU (budget %g%%)',
      self.name, q.bpf_cpu_pct, pct)
  end
  return false
end

--- Detaches the programs (maps stay readable) and remembers why.
function Tracer:detach(why)
  if self.obj and not self.closed then
    self:quality() -- keep the last figures
    self.obj:detach()
  end
  self.detached = why or 'detached'
end

function Tracer:close()
  if self.obj and not self.closed then
    self:quality()
    self.obj:close()
  end
  self.closed = true
end

--- One line of measurement quality, for text output.
function M.quality_line(q)
  local util = require('perf_manual.util')
  local parts = {}
  parts[#parts + 1] = 'attach ' .. (q.attach_path or '?')
  if q.events_seen then parts[#parts + 1] = string.format('events %d', q.events_seen) end
  parts[#parts + 1] = string.format('lost %s', q.events_lost and string.format('%d', q.events_lost) or 'not measured')
  if q.events_missed and q.events_missed > 0 then parts[#parts + 1] = string.format('unpaired %d', q.events_missed) end
  if q.bpf_cpu_pct then
    parts[#parts + 1] = string.format('bpf cost %s (%.2f%% of a CPU%s)', util.fmt_duration(q.bpf_run_time_ns / 1e9),
      q.bpf_cpu_pct, q.bpf_ns_per_run and string.format(', %.0f ns/run', q.bpf_ns_per_run) or '')
  else
    parts[#parts + 1] = 'bpf cost ' .. (q.bpf_cost_note or 'not measured')
  end
  if q.self_cpu_pct then parts[#parts + 1] = string.format('tool cpu %.2f%%', q.self_cpu_pct) end
  if q.detached then parts[#parts + 1] = 'DETACHED: ' .. q.detached end
  return table.concat(parts, ', ')
end

return M
