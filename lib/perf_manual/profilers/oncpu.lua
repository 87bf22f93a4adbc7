--- On-CPU profiler: bpf/profile.bpf.c sampling every CPU through perf
--- events, stacks counted in the kernel per (process, thread name, user
--- stack, kernel stack); the maps are read once when the profile stops, then
--- symbolised in a batch with perf_manual.sym.
---
---   local s = assert(oncpu.start{ pid = 123, freq = 99 })
---   while collecting do s:poll() sys.sleep(0.1) end  -- names processes that exit
---   local profile = s:stop()
local ffi = require('ffi')
local bpf = require('perf_manual.bpf')
local sym = require('perf_manual.sym')
local sys = require('perf_manual.sys')
local profilers = require('perf_manual.profilers')
local unwind = require('perf_manual.unwind')

local M = {}

M.MAX_DEPTH = 127  -- bpf/profile.h PROFILE_MAX_DEPTH

ffi.cdef [[
struct pm_profile_key { uint32_t tgid; int32_t user_stack_id, kern_stack_id; uint32_t pad; char comm[16];
                        uint64_t user_hash; };
]]
local key_t = ffi.typeof('const struct pm_profile_key *')
local KEY_SIZE = ffi.sizeof('struct pm_profile_key')

--- Size of the key as Lua decodes it (a spec checks it against the object's BTF).
function M.key_size() return KEY_SIZE end

--- Decodes a counts-map key.
function M.decode_key(kb)
  assert(#kb == KEY_SIZE, 'oncpu: bad key size ' .. #kb)
  local k = ffi.cast(key_t, kb)
  return { tgid = k.tgid, user_stack_id = k.user_stack_id, kern_stack_id = k.kern_stack_id,
           comm = ffi.string(k.comm), user_hash = k.user_hash ~= 0 and kb:sub(33, 40) or nil }
end

local function u32(b) return ffi.cast('const uint32_t *', b)[0] end
local function u64(b) return tonumber(ffi.cast('const uint64_t *', b)[0]) end

local Session = {}
Session.__index = Session

--- Starts sampling. opts: pid, cgroup_id, freq (default 99), user_stacks,
--- kernel_stacks (default true), unwind ("auto" (default), "fp", "dwarf":
--- perf_manual.unwind). Returns the session or nil, err.
function M.start(opts)
  opts = opts or {}
  local freq = opts.freq or 99
  local obj, err = bpf.open('profile')
  if not obj then return nil, err end
  obj:set_config {
    targ_tgid = opts.pid or 0,
    targ_cgroup_id = opts.cgroup_id or 0,
    profile_user_stacks = opts.user_stacks ~= false,
    profile_kernel_stacks = opts.kernel_stacks ~= false,
  }
  local mode, merr = unwind.check_mode(opts.unwind)
  if not mode then obj:close() return nil, merr end
  if opts.user_stacks == false then mode = 'fp' end
  unwind.prepare(obj, mode)
  local ok, lerr = obj:load { stats = opts.stats }
  if not ok then obj:close() return nil, lerr end
  local tables = mode ~= 'fp' and unwind.tables(obj, mode) or nil
  -- the target's tables before the first sample: its stacks are whole from the start
  if tables and opts.pid then tables:add(opts.pid) end
  local ncpu = sys.info().ncpu
  local attached = 0
  for cpu = 0, ncpu - 1 do
    local aok, aerr, code = obj:attach_perf_event('do_sample', { cpu = cpu, freq = freq })
    if aok then
      attached = attached + 1
    elseif code ~= 19 then  -- ENODEV: an offline CPU
      obj:close()
      return nil, aerr
    end
  end
  local s = setmetatable({
    obj = obj, resolver = opts.resolver or sym.new(), freq = freq, ncpu = attached,
    t0 = sys.now(), pid = opts.pid, tables = tables, unwind_mode = mode,
  }, Session)
  if opts.pid then s.resolver:snapshot(opts.pid) end
  return s
end

--- Captures the mappings of processes sampled for the first time since the
--- last poll, while they are alive. Call it every ~100 ms while sampling.
function Session:poll()
  local fresh = self.obj:map('fresh'):read { clear = true }
  for _, e in ipairs(fresh or {}) do
    local pid = u32(e.key)
    -- mappings that changed since the tables were made (an exec or dlopen
    -- before the first sample) need a new symbol snapshot too
    local _, changed = false, false
    if self.tables then _, changed = self.tables:add(pid) end
    self.resolver:snapshot(pid, changed)
  end
  if self.tables then
    -- an exec or dlopen since the snapshot: the new code's names too
    for _, pid in ipairs(self.tables:poll()) do self.resolver:snapshot(pid, true) end
  end
end

--- Stops sampling, reads the maps once and returns the profile (see
--- perf_manual.profilers): stacks symbolised, stack quality measured.
function Session:stop()
  self:poll()
  self.obj:detach()
  self.duration = sys.now() - self.t0
  local obj = self.obj
  local entries = assert(obj:map('counts'):read())
  local counters = assert(obj:map('counters'):read())
  local c = {}
  for _, e in ipairs(counters) do c[u32(e.key) + 1] = u64(e.value) end
  local stats = obj:stats() or {}
  local info = obj:info()

  local samples = {}
  for i, e in ipairs(entries) do
    local k = M.decode_key(e.key)
    k.count = u64(e.value)
    samples[i] = k
  end
  local r = self.resolver
  local stacks = {}
  for i, f in ipairs(profilers.bpf_frames(obj, r, samples, M.MAX_DEPTH)) do
    local k = samples[i]
    stacks[i] = { frames = f.frames, count = k.count, pid = k.tgid, truncated = f.truncated, addrs = f.addrs,
      unwind = f.unwind }
  end

  local prog = info and info.progs and info.progs.do_sample
  local p = profilers.new {
    kind = 'oncpu', source = 'bpf', unit = 'samples', freq = self.freq, ncpu = self.ncpu,
    duration = self.duration, stacks = stacks,
    lost_samples = stats.lost or 0,
    lost_stacks = c[2] or 0,
    idle_samples = c[1] or 0,
    bpf_run_time_ns = prog and prog.run_time_ns,
    bpf_run_cnt = prog and prog.run_cnt,
    binaries = r:binaries(), mappings = r:mappings(),
    unsnapshotted = r.failed,
    unwind = self.tables and {
      mode = self.unwind_mode, tables = self.tables.stats, counters = unwind.counters(obj),
    } or { mode = 'fp' },
  }
  obj:close()
  self.obj = nil
  return p
end

--- Closes without reading (error paths).
function Session:close()
  if self.obj then self.obj:close() self.obj = nil end
end

return M
