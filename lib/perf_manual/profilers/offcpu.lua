--- Off-CPU profiler: blocked time per stack, in microseconds, from the
--- offcpu tracer's BPF object (bpf/offcpu.bpf.c: sched_switch, blocks
--- shorter than a threshold counted but not kept), symbolised like on-CPU
--- profiles. Decoding is the tracer's (perf_manual.tracers.offcpu).
local bpf = require('perf_manual.bpf')
local sym = require('perf_manual.sym')
local sys = require('perf_manual.sys')
local ffi = require('ffi')
local tracer = require('perf_manual.tracers.offcpu')
local profilers = require('perf_manual.profilers')
local unwind = require('perf_manual.unwind')

local M = {}

M.MAX_DEPTH = 127

local function u64(b) return tonumber(ffi.cast('const uint64_t *', b)[0]) end

local function load(opts, prog)
  local obj, err = bpf.open('offcpu')
  if not obj then return nil, err end
  obj:set_config {
    targ_tgid = opts.pid or 0,
    targ_cgroup_id = opts.cgroup_id or 0,
    offcpu_min_us = math.floor(opts.min_us or 1),
  }
  unwind.prepare(obj, opts.unwind)
  -- one of the two sched_switch programs: tp_btf where the kernel has BTF
  -- for it, the raw tracepoint otherwise
  for _, p in ipairs(obj:programs()) do obj:autoload(p.name, p.name == prog) end
  local ok, lerr = obj:load { stats = opts.stats }
  -- the target's unwind tables before the first switch-out is seen
  if ok and opts.ready then opts.ready(obj) end
  if ok then ok, lerr = obj:attach() end
  if not ok then obj:close() return nil, lerr end
  return obj
end

local Session = {}
Session.__index = Session

--- Starts tracing blocked time. opts: pid, cgroup_id, min_us (blocks
--- shorter than this are counted, not kept; default 1), unwind ("auto"
--- (default), "fp", "dwarf": perf_manual.unwind).
function M.start(opts)
  opts = opts or {}
  local mode, merr = unwind.check_mode(opts.unwind)
  if not mode then return nil, merr end
  local tables
  opts = setmetatable({ unwind = mode, ready = function(obj)
    if mode == 'fp' then return end
    tables = unwind.tables(obj, mode)
    if opts.pid then tables:add(opts.pid) end
  end }, { __index = opts })
  local obj, err = load(opts, 'offcpu_switch_btf')
  if not obj then
    local err2
    obj, err2 = load(opts, 'offcpu_switch_raw')
    if not obj then return nil, err .. '; ' .. err2 end
  end
  local s = setmetatable({ obj = obj, resolver = opts.resolver or sym.new(), t0 = sys.now(),
                           last_poll = 0, min_us = opts.min_us or 1, unwind_mode = mode,
                           tables = tables }, Session)
  if opts.pid then s.resolver:snapshot(opts.pid) end
  return s
end

--- Captures the mappings of processes that blocked since the last look
--- (at most once a second: the blocked map is read whole).
function Session:poll()
  -- tables for processes the walker met without them: every call, they are few
  if self.tables then
    for _, pid in ipairs(self.tables:poll()) do self.resolver:snapshot(pid, true) end
  end
  local now = sys.now()
  if now - self.last_poll < 1 then return end
  self.last_poll = now
  for _, e in ipairs(self.obj:map('blocked'):read() or {}) do
    local tgid = tracer.decode(e.key, e.value).tgid
    if not self.resolver.snaps[tgid] and not self.resolver.failed[tgid] then
      self.resolver:snapshot(tgid)
    end
  end
end

--- Stops, reads the maps once and returns the profile (unit: microseconds).
function Session:stop()
  self:poll()
  self.last_poll = 0
  self:poll()
  self.obj:detach()
  local obj = self.obj
  local duration = sys.now() - self.t0
  local entries = {}
  for _, e in ipairs(obj:map('blocked'):read() or {}) do entries[#entries + 1] = tracer.decode(e.key, e.value) end
  local r = self.resolver
  local stacks = {}
  for i, f in ipairs(profilers.bpf_frames(obj, r, entries, M.MAX_DEPTH)) do
    local e = entries[i]
    stacks[i] = { frames = f.frames, count = e.total_us, pid = e.tgid, blocks = e.count,
                  truncated = f.truncated, state = e.state, addrs = f.addrs, unwind = f.unwind }
  end
  local counters = {}
  for _, e in ipairs(obj:map('counters'):read() or {}) do
    counters[ffi.cast('const uint32_t *', e.key)[0] + 1] = u64(e.value)
  end
  local st = obj:stats() or {}
  local info = obj:info() or {}
  local p = profilers.new {
    kind = 'offcpu', source = 'bpf', unit = 'us', duration = duration, stacks = stacks,
    lost_samples = st.lost or 0, lost_stacks = counters[2] or 0,
    short_blocks = counters[1] or 0, min_us = self.min_us,
    binaries = r:binaries(), mappings = r:mappings(), unsnapshotted = r.failed, bpf_run_time_ns = info.run_time_ns,
    unwind = self.tables and {
      mode = self.unwind_mode, tables = self.tables.stats, counters = unwind.counters(obj),
    } or { mode = 'fp' },
  }
  obj:close()
  self.obj = nil
  return p
end

function Session:close()
  if self.obj then self.obj:close() self.obj = nil end
end

return M
