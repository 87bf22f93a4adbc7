--- Profiles: what the on-CPU, off-CPU and perf-fallback profilers return,
--- and what is done with one: stack quality, top functions, folded text,
--- output files (folded, SVG flame graph, speedscope) and the text summary.
---
--- A profile is a table
---   { kind = 'oncpu'|'offcpu'|'memory'|'faults', source = 'bpf'|'perf',
---     unit = 'samples'|'us'|'bytes'|'faults',
---     stacks = { {frames = {comm, root…leaf}, count, pid, truncated}, … },
---     total, duration, freq, lost_samples, lost_stacks, idle_samples,
---     binaries = { {path, name, symbols, frame_pointers}, … }, quality = {…} }
local util = require('perf_manual.util')
local waits = require('perf_manual.waits')

local M = {}

-- frames that begin a complete user stack: a stack whose outermost user
-- frame is something else was cut short (usually a missing frame pointer)
M.ROOT_FRAMES = {
  _start = true, __libc_start_main = true, __libc_start_call_main = true,
  start_thread = true, clone = true, clone3 = true, __clone = true, __clone3 = true,
  _dl_start_user = true, ['runtime.goexit'] = true, ['runtime.main'] = true,
}

--- Frames that name no function: an address outside every mapping, inside a
--- file without a symbol there, or a stack the kernel could not store.
function M.is_unknown(name)
  if name == '[unknown]' then return true end
  if name:sub(1, 1) == '[' and name:sub(-1) == ']' then
    return not (name == '[vdso]' or name == '[vsyscall]')
  end
  return false
end

local function is_kernel(name) return name:sub(-4) == '_[k]' end

--- Measures stack quality: samples, lost samples and stacks, shares of
--- samples with unnamed frames, truncated at the depth limit, or whose user
--- stack stops before reaching a start function; binaries without frame pointers.
--- How the user stacks were unwound (nil for a profile of the kernel's
--- frame-pointer walk): perf_manual.unwind.summary with the mode, the
--- tables built and the walker's counters.
function M.unwind_quality(p)
  if not p.unwind or p.unwind.mode == 'fp' then return p.unwind and { mode = 'fp' } or nil end
  local q = require('perf_manual.unwind').summary(p.stacks)
  q.mode, q.tables, q.counters = p.unwind.mode, p.unwind.tables, p.unwind.counters
  return q
end

function M.quality(p)
  local total, unknown, truncated, user_total, short = 0, 0, 0, 0, 0
  for _, s in ipairs(p.stacks) do
    total = total + s.count
    local has_unknown, outer_user = false, nil
    for i = 2, #s.frames do
      local f = s.frames[i]
      if M.is_unknown(f) then has_unknown = true end
      if not outer_user and not is_kernel(f) then outer_user = f end
    end
    if has_unknown then unknown = unknown + s.count end
    if s.truncated then truncated = truncated + s.count end
    if outer_user and outer_user ~= '[missing user stack]' then
      user_total = user_total + s.count
      -- a walk from CFI that ended at the outermost frame is whole, named or not
      -- (a stripped program's _start is [prog])
      local whole = s.unwind and s.unwind.end_reason == 'root'
      if not M.ROOT_FRAMES[outer_user] and not s.truncated and not whole then short = short + s.count end
    end
  end
  local no_fp = {}
  for _, b in ipairs(p.binaries or {}) do
    if b.frame_pointers == false then no_fp[#no_fp + 1] = b.name end
  end
  table.sort(no_fp)
  local function share(n, d) return d > 0 and n / d or nil end
  return {
    samples = total,
    lost_samples = p.lost_samples,
    lost_stacks = p.lost_stacks,
    idle_samples = p.idle_samples,
    unknown_share = share(unknown, total),
    truncated_share = share(truncated, total),
    short_user_share = share(short, user_total),
    without_frame_pointers = util.array(no_fp),
    unwind = M.unwind_quality(p),
  }
end

--- Symbolised frames of stacks counted by a BPF object (its `stacks` map):
--- entries carry tgid, comm, user_stack_id, kern_stack_id. Returns, per
--- entry, { frames = {comm, root…leaf}, truncated } (at max_depth frames).
--- An entry with user_hash has a user stack walked from CFI: the entry's
--- `unwind` says how (perf_manual.unwind).
--- User stacks resolve in one batch per process; each stack id is read once.
function M.bpf_frames(obj, resolver, entries, max_depth)
  local EFAULT = -14 -- bpf_get_stackid had no frames to record (a kernel thread's user stack)
  local raw = {}
  local function stack(id)
    if id < 0 then return nil end
    if raw[id] == nil then
      local _, bytes = obj:stack('stacks', id)
      raw[id] = bytes or false
    end
    return raw[id] or nil
  end
  -- a user stack walked from CFI: unwind_stacks[user_hash], with how it was walked
  local walked = require('perf_manual.unwind').stack_reader(obj)
  local function ustack(e)
    if not e.user_hash then return stack(e.user_stack_id) end
    local st = walked(e.user_hash)
    return st and st.nr > 0 and st.ips or nil, st or nil
  end
  local sym = require('perf_manual.sym')
  local per_pid, user, kern, user_frames, user_addrs, how = {}, {}, {}, {}, {}, {}
  for i, e in ipairs(entries) do
    user[i], how[i] = ustack(e)
    kern[i] = stack(e.kern_stack_id)
    if user[i] then
      local g = per_pid[e.tgid]
      if not g then g = { stacks = {}, idx = {} }; per_pid[e.tgid] = g end
      user_addrs[i] = sym.unpack(user[i])
      g.stacks[#g.stacks + 1] = user_addrs[i]
      g.idx[#g.idx + 1] = i
    end
  end
  for pid, g in pairs(per_pid) do
    local names = resolver:user_stacks(pid, g.stacks)
    for j, i in ipairs(g.idx) do user_frames[i] = names[j] end
  end
  local kcache, out = {}, {}
  for i, e in ipairs(entries) do
    local frames = { e.comm ~= '' and e.comm or ('pid ' .. e.tgid) }
    -- each frame's address (nil for the process name): pprof locations keep them
    local addrs = {}
    local truncated = false
    local uf = user_frames[i]
    if uf then
      local ua = user_addrs[i]
      for j = #uf, 1, -1 do frames[#frames + 1] = uf[j]; addrs[#frames] = ua[j] end
      truncated = #uf >= max_depth
    elseif e.user_stack_id ~= EFAULT and e.user_stack_id < 0 then
      frames[#frames + 1] = '[missing user stack]'
    end
    if kern[i] then
      local kf = kcache[e.kern_stack_id]
      if not kf then kf = resolver:kernel(kern[i]); kcache[e.kern_stack_id] = kf end
      local ka = sym.unpack(kern[i])
      local skip = math.max(#ka - #kf, 0)  -- the BPF program's own frames, trimmed from the names
      for j = #kf, 1, -1 do frames[#frames + 1] = kf[j]; addrs[#frames] = ka[j + skip] end
      truncated = truncated or #kf >= max_depth
    elseif e.kern_stack_id ~= EFAULT and e.kern_stack_id < 0 then
      frames[#frames + 1] = '[missing kernel stack]'
    end
    local u = how[i]
    out[i] = { frames = frames, truncated = truncated, addrs = addrs, unwind = u and {
      dwarf = u.dwarf, fp = u.fp, end_reason = u.end_reason, no_table = u.no_table, fp_no_cfi = u.fp_no_cfi,
      fp_no_map = u.fp_no_map } or nil }
  end
  return out
end

--- Completes a profile table (total, quality) and returns it.
function M.new(p)
  p.total = 0
  for _, s in ipairs(p.stacks) do p.total = p.total + s.count end
  -- the folded line's stack, joined once: breaks ties here, keys the output
  for _, s in ipairs(p.stacks) do
    if not s.key then
      local parts = {}
      for i, f in ipairs(s.frames) do parts[i] = M.clean(f) end
      s.key = table.concat(parts, ';')
    end
  end
  table.sort(p.stacks, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.key < b.key
  end)
  p.quality = M.quality(p)
  if p.kind == 'offcpu' then p.by_reason = M.by_reason(p) end
  return p
end

-- frames every blocked stack ends in: they say nothing about why it blocked
local SCHED = { schedule = true, __schedule = true, schedule_timeout = true, schedule_hrtimeout_range = true,
  schedule_hrtimeout_range_clock = true, schedule_preempt_disabled = true, finish_task_switch = true,
  ['finish_task_switch.isra.0'] = true }

--- What one off-CPU stack waited for (perf_manual.waits reasons): its
--- kernel frames innermost first, the syscall named by its entry frame
--- (__x64_sys_read → read), and the task state when recorded.
function M.wait_of(s)
  local kframes, syscall = {}, nil
  for i = #s.frames, 2, -1 do
    local f = s.frames[i]
    if is_kernel(f) then
      local name = f:sub(1, -5)
      if not SCHED[name] then kframes[#kframes + 1] = name end
      syscall = syscall or name:match('^__%w+_sys_([%w_]+)$') or name:match('^__se_sys_([%w_]+)$')
        or name:match('^ksys_([%w_]+)$')
    end
  end
  local st = s.state
  return { frames = kframes, syscall = syscall, state = st and (st:find('D') and 'D' or st:find('S') and 'S') or nil }
end

-- a shared library's path: its frames are how the program waits, not where
local function is_library(path)
  return path:match('%.so$') or path:match('%.so%.[%d.]+$') or path:match('/ld%-linux[^/]*$')
end

-- per pid, the sorted mappings of shared libraries (from the profile's mappings)
local function library_ranges(p)
  local out = {}
  for pid, list in pairs(p.mappings or {}) do
    local libs = {}
    for _, m in ipairs(list) do
      if m.path and is_library(m.path) then libs[#libs + 1] = m end
    end
    out[tonumber(pid)] = libs
  end
  return out
end

local function in_library(libs, addr)
  if type(addr) ~= 'number' then return false end
  for _, m in ipairs(libs) do
    if addr >= m.start and addr < m.stop then return true end
  end
  return false
end

-- Where the program asked to wait: its innermost own frame and the library
-- function it called ("deep_sleep -> __nanosleep"); without mappings, the
-- two innermost user frames ("caller -> callee").
local function call_site(s, libs)
  local user, idx = {}, {}
  for i = 2, #s.frames do
    local f = s.frames[i]
    if not is_kernel(f) and not f:match('^%[') then user[#user + 1] = f; idx[#user] = i end
  end
  if #user == 0 then return '[no user stack]' end
  local mine = libs and s.addrs and libs[s.pid]
  if mine and #mine > 0 then
    for j = #user, 1, -1 do
      if not in_library(mine, s.addrs[idx[j]]) then
        if j < #user then return user[j] .. ' -> ' .. user[j + 1] end
        break
      end
    end
  end
  if #user == 1 then return user[1] end
  return user[#user - 1] .. ' -> ' .. user[#user]
end

--- An off-CPU profile summarised by blocking reason (perf_manual.waits
--- classifies each stack): { total =, reasons = { { reason, label, count,
--- share, sites = { { site, count, share } } } } }, biggest first; sites
--- are the top `n` user call sites of each reason.
function M.by_reason(p, n)
  n = n or 3
  local per, order = {}, {}
  local libs = library_ranges(p)
  for _, s in ipairs(p.stacks) do
    local reason = waits.classify(M.wait_of(s))
    local r = per[reason]
    if not r then
      r = { reason = reason, label = waits.LABELS[reason] or reason, count = 0, sites = {} }
      per[reason] = r
      order[#order + 1] = r
    end
    r.count = r.count + s.count
    local site = call_site(s, libs)
    r.sites[site] = (r.sites[site] or 0) + s.count
  end
  for _, r in ipairs(order) do
    r.share = p.total > 0 and r.count / p.total or 0
    local sites = {}
    for site, c in pairs(r.sites) do
      sites[#sites + 1] = { site = site, count = c, share = r.count > 0 and c / r.count or 0 }
    end
    table.sort(sites, function(a, b)
      if a.count ~= b.count then return a.count > b.count end
      return a.site < b.site
    end)
    while #sites > n do sites[#sites] = nil end
    r.sites = util.array(sites)
  end
  table.sort(order, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.reason < b.reason
  end)
  return { total = p.total, unit = p.unit, reasons = util.array(order) }
end

--- A frame name made safe for the folded format (no ';', no line breaks).
function M.clean(name)
  if not name:find('[;\r\n]') then return name end
  return (name:gsub('[;\r\n]', ':'))
end

--- Folded lines ("comm;root;…;leaf count"), one per distinct stack, sorted.
function M.folded(p)
  local merged, keys = {}, {}
  for _, s in ipairs(p.stacks) do
    local k = s.key
    if not merged[k] then merged[k] = 0; keys[#keys + 1] = k end
    merged[k] = merged[k] + s.count
  end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do out[i] = string.format('%s %d', k, merged[k]) end
  return table.concat(out, '\n') .. (#out > 0 and '\n' or '')
end

--- Top functions by self (leaf) and inclusive share, process names left
--- out. Returns { self = {{name, count, share}}, inclusive = {…} }, n each.
function M.top(p, n)
  n = n or 15
  local self_c, incl_c = {}, {}
  for _, s in ipairs(p.stacks) do
    local seen = {}
    for i = 2, #s.frames do
      local f = s.frames[i]
      if not seen[f] then seen[f] = true; incl_c[f] = (incl_c[f] or 0) + s.count end
    end
    if #s.frames >= 2 then
      local leaf = s.frames[#s.frames]
      self_c[leaf] = (self_c[leaf] or 0) + s.count
    end
  end
  local function list(t)
    local out = {}
    for name, c in pairs(t) do out[#out + 1] = { name = name, count = c, share = p.total > 0 and c / p.total or 0 } end
    table.sort(out, function(a, b)
      if a.count ~= b.count then return a.count > b.count end
      return a.name < b.name
    end)
    while #out > n do out[#out] = nil end
    return util.array(out)
  end
  return { self = list(self_c), inclusive = list(incl_c) }
end

--- Inclusive share of the first frame whose name matches `pattern`
--- (a Lua pattern) anywhere in a stack.
function M.inclusive_share(p, pattern)
  if p.total == 0 then return 0 end
  local c = 0
  for _, s in ipairs(p.stacks) do
    for i = 2, #s.frames do
      if s.frames[i]:match(pattern) then c = c + s.count; break end
    end
  end
  return c / p.total
end

--- For an on-CPU profile of one process: its samples as a share of what
--- one thread always on a CPU would give (freq x duration); nil otherwise.
function M.on_cpu_share(p)
  -- measured: the target's CPU time over the window (/proc, cgroup cpu.stat)
  if p.kind ~= 'offcpu' and p.on_cpu then return p.on_cpu.share end
  if p.kind == 'offcpu' or p.target_kind ~= 'pid' or not p.freq or not p.duration or p.duration <= 0 then
    return nil
  end
  return p.total / (p.freq * p.duration)
end

--- The profile as a perf_manual.fold profile (folded stacks with counts).
function M.to_fold(p)
  local fold = require('perf_manual.fold')
  local t = {}
  for _, s in ipairs(p.stacks) do t[s.key] = (t[s.key] or 0) + s.count end
  return fold.from_table(t)
end

--- The n biggest stacks: { {stack = folded frames, count, allocs, share} }.
function M.top_stacks(p, n)
  local out = {}
  for i, s in ipairs(p.stacks) do
    if i > n then break end
    out[i] = { stack = s.key, count = s.count, allocs = s.allocs, share = p.total > 0 and s.count / p.total or 0 }
  end
  return util.array(out)
end

--- The profile as plain data for --json (stacks as folded lines).
function M.to_json(p, opts)
  local top = M.top(p, (opts and opts.top) or 20)
  return {
    kind = p.kind, source = p.source, unit = p.unit, target = p.target,
    duration_s = p.duration, freq = p.freq, total = p.total, target_kind = p.target_kind,
    on_cpu_share = M.on_cpu_share(p), on_cpu = p.kind ~= 'offcpu' and p.on_cpu or nil,
    by_reason = p.by_reason,
    command = p.command and p.command.launched and p.command or nil,
    exit_status = p.command and p.command.exit_status, exit_signal = p.command and p.command.exit_signal,
    fallback = p.fallback_why, quality = p.quality, top = top,
    binaries = util.array(p.binaries or {}), files = p.files and util.array(p.files) or nil,
    bpf_run_time_ns = p.bpf_run_time_ns, cost = p.cost,
    stop_to_files_s = p.stop_to_files_s, stop_to_svg_s = p.stop_to_svg_s,
    memory = p.memory,
    -- the leak view's stacks themselves (the top ones; all are in the folded file)
    stacks = p.kind == 'memory' and M.top_stacks(p, (opts and opts.top) or 20) or nil,
    faults = p.faults and { total = p.faults.total, unit = 'faults', quality = p.faults.quality,
                            top = M.top(p.faults, (opts and opts.top) or 20) } or nil,
  }
end

return M
