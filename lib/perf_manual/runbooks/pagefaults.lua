--- pagefaults' measurement: minor and major fault counts per process and
--- thread (/proc/PID/task/TID/stat at both edges of the window), and the
--- faults themselves — where in the code (user stack) and where in memory
--- (the mapping of the faulting address, from /proc/PID/maps) — from the
--- exceptions:page_fault_user tracepoint recorded by `perf record -g`.
--- No BPF object of the project reads that tracepoint, so perf is the
--- source of the stacks (said in the result's `source`).
---
---   local rec = require('perf_manual.runbooks.pagefaults').run { target = '1234', duration = 5 }
---   local sum = M.summarize(rec)
local bit = require('bit')
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local process = require('perf_manual.collectors.process')
local command = require('perf_manual.runbooks.command')

local M = {}

M.proc = '/proc'
M.perf = os.getenv('PERF') or 'perf'
--- Distinct stacks and mappings kept in a recording (the rest summed).
M.KEEP = 200

--- /proc/.../stat → { comm, minflt, majflt }.
function M.parse_stat(text)
  if not text then return nil end
  local comm, rest = text:match('^%d+ %((.*)%) (.*)$')
  if not rest then return nil end
  local f = {}
  for w in rest:gmatch('%S+') do f[#f + 1] = w end
  -- after the comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt
  return { comm = comm, minflt = tonumber(f[8]), majflt = tonumber(f[10]) }
end

--- /proc/PID/maps → sorted list of { lo, hi, path } (path: a file, [heap],
--- [stack], ... or '[anon]').
function M.parse_maps(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    local lo, hi, path = line:match('^(%x+)%-(%x+)%s+%S+%s+%x+%s+%S+%s+%d+%s*(.*)$')
    if lo then
      out[#out + 1] = { lo = tonumber(lo, 16), hi = tonumber(hi, 16), path = path ~= '' and path or '[anon]' }
    end
  end
  table.sort(out, function(a, b) return a.lo < b.lo end)
  return out
end

--- The mapping holding addr (binary search), or nil.
function M.find_map(maps, addr)
  local lo, hi = 1, #maps
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local m = maps[mid]
    if addr < m.lo then hi = mid - 1 elseif addr >= m.hi then lo = mid + 1 else return m end
  end
end

local KERNEL_ENTRY = { exc_page_fault = true, asm_exc_page_fault = true }

--- `perf script -F comm,pid,tid,time,event,trace,ip,sym,dso` with -g →
--- list of { comm, pid, tid, address, ip, error_code, frames = { user frames, innermost first } }.
function M.parse_script(text)
  local out, cur = {}, nil
  for line in (text or ''):gmatch('([^\n]*)\n?') do
    local comm, pid, tid, addr, ip, code = line:match(
      '^(.-)%s+(%d+)/(%d+)%s+[%d.]+:%s+exceptions:page_fault_user:%s+address=0x(%x+)%s+ip=0x(%x+)%s+error_code=0x(%x+)')
    if comm then
      cur = { comm = util.trim(comm), pid = tonumber(pid), tid = tonumber(tid), address = tonumber(addr, 16),
        ip = tonumber(ip, 16), error_code = tonumber(code, 16), frames = {} }
      out[#out + 1] = cur
    elseif cur then
      local sym, dso = line:match('^%s+%x+%s+(.-)%s+%((.*)%)%s*$')
      if sym then
        sym = sym:gsub('%+0x%x+$', '')
        if not KERNEL_ENTRY[sym] and dso ~= '[kernel.kallsyms]' then
          if sym == '[unknown]' then sym = '[unknown] (' .. dso:match('[^/]*$') .. ')' end
          cur.frames[#cur.frames + 1] = sym
        end
      elseif line == '' then
        cur = nil
      end
    end
  end
  return out
end

--- The kind of access from the x86 error code: 'write' (bit 1), 'exec'
--- (bit 4, instruction fetch), else 'read'.
function M.access(code)
  if bit.band(code or 0, 0x10) ~= 0 then return 'exec' end
  if bit.band(code or 0, 0x2) ~= 0 then return 'write' end
  return 'read'
end

-- per thread of pids: tid → { pid, comm, minflt, majflt }
local function fault_counts(pids)
  local out = {}
  for _, pid in ipairs(pids) do
    for _, tid in ipairs(process.threads(pid, M.proc) or {}) do
      local s = M.parse_stat(util.readfile(M.proc .. '/' .. pid .. '/task/' .. tid .. '/stat'))
      if s then
        s.pid, s.tid = pid, tid
        out[tid] = s
      end
    end
  end
  return out
end

local function vmstat()
  local t = util.readfile(M.proc .. '/vmstat') or ''
  return { pgfault = tonumber(t:match('\npgfault (%d+)')), pgmajfault = tonumber(t:match('\npgmajfault (%d+)')) }
end

-- the top `keep` of a key → count table, the rest summed under `rest`
local function top(map, keep, fields)
  local list = {}
  for _, v in pairs(map) do list[#list + 1] = v end
  table.sort(list, function(a, b) return a.count > b.count end)
  local out, rest = {}, 0
  for i, v in ipairs(list) do
    if i <= keep then out[#out + 1] = v else rest = rest + v.count end
  end
  if rest > 0 then
    local r = { count = rest }
    for k, v in pairs(fields) do r[k] = v end
    out[#out + 1] = r
  end
  return out
end

--- Aggregates parsed faults into stacks and mappings (maps: pid → parsed maps).
function M.aggregate(faults, maps, keep)
  keep = keep or M.KEEP
  local stacks, mappings = {}, {}
  for _, f in ipairs(faults) do
    local frames = #f.frames > 0 and table.concat(f.frames, ';') or '[no user stack]'
    local sk = f.pid .. '|' .. frames
    local s = stacks[sk]
    if not s then
      s = { pid = f.pid, comm = f.comm, frames = f.frames, count = 0 }
      stacks[sk] = s
    end
    s.count = s.count + 1
    local m = maps[f.pid] and M.find_map(maps[f.pid], f.address)
    local path = m and m.path or '[unmapped or gone]'
    local mk = f.pid .. '|' .. path
    local e = mappings[mk]
    if not e then
      e = { pid = f.pid, comm = f.comm, path = path, count = 0, read = 0, write = 0, exec = 0 }
      mappings[mk] = e
    end
    e.count = e.count + 1
    local a = M.access(f.error_code)
    e[a] = e[a] + 1
  end
  return top(stacks, keep, { frames = { '[other stacks]' } }), top(mappings, keep, { path = '[other mappings]' })
end

--- True once process pid holds a perf_event fd.
function M.perf_attached(pid)
  local ok, names = pcall(require('posix.dirent').dir, M.proc .. '/' .. pid .. '/fd')
  for _, n in ipairs(ok and names or {}) do
    local link = require('perf_manual.measure.tsa').readlink(M.proc .. '/' .. pid .. '/fd/' .. n)
    if link == 'anon_inode:[perf_event]' then return true end
  end
  return false
end

--- Measures. opts: target (processes), duration, every (record one fault
--- in N), progress, note.
---@return table? recording, string? why
function M.run(opts)
  return measure.with_session({ target = opts.target or 'system', duration = opts.duration or 5,
    what = 'page faults', progress = opts.progress, note = opts.note, command = 'pagefaults', soft = true },
  function(s)
    s:start()
    if s.target.kind == 'system' then
      return nil, 'needs a target (a PID, a process name, a service or a command): the stacks of '
        .. 'every process are too many to record'
    end
    if not command.run({ M.perf, '--version' }) then
      return nil, "'perf' (Debian package linux-perf) is not installed or does not run"
    end
    local pids = targets.pids(s.target)
    if #pids == 0 then return nil, 'the target has no process' end
    local plist = {}
    for i, p in ipairs(pids) do plist[i] = tostring(p) end
    local dir = os.tmpname()
    os.remove(dir)
    assert(require('posix.sys.stat').mkdir(dir, 448))
    local data = dir .. '/perf.data'
    local every = opts.every or 1
    local argv = { M.perf, 'record', '-e', 'exceptions:page_fault_user', '-c', tostring(every), '-g', '-o', data,
      '-p', table.concat(plist, ',') }
    local ppid, perr = sys.spawn(argv, { stdout = 'null', stderr = dir .. '/record.err' })
    if not ppid then os.execute("rm -rf '" .. dir .. "'") return nil, 'perf record: ' .. tostring(perr) end
    -- the counts start once perf holds its events (it opens them after
    -- loading, a few hundred milliseconds): then no counted fault goes unrecorded
    local t_wait = sys.now()
    while sys.now() - t_wait < 5 and not M.perf_attached(ppid) do sys.sleep(0.02) end
    sys.sleep(0.05)
    local c0, v0 = fault_counts(pids), vmstat()
    s:begin()
    local maps = {}
    local function note_maps()
      for _, p in ipairs(pids) do
        local m = util.readfile(M.proc .. '/' .. p .. '/maps')
        if m then maps[p] = M.parse_maps(m) end
      end
    end
    note_maps()
    local c1 = {}
    local ended = s:run { interval = 1, on_interval = note_maps, tick = function()
      for tid, v in pairs(fault_counts(pids)) do c1[tid] = v end
    end }
    for tid, v in pairs(fault_counts(pids)) do c1[tid] = v end
    note_maps()
    local v1 = vmstat()
    local window = sys.now() - s.t0
    sys.kill(ppid, 2)
    sys.wait(ppid)
    local info = s:finish()
    local script = dir .. '/script.txt'
    local ok = command.run({ M.perf, 'script', '-i', data, '-F', 'comm,pid,tid,time,event,trace,ip,sym,dso' }, script,
      dir .. '/script.err')
    local text = ok and util.readfile(script)
    local rerr = util.readfile(dir .. '/record.err') or ''
    os.execute("rm -rf '" .. dir .. "'")
    if not text then return nil, 'perf record/script failed: ' .. util.trim(rerr) end
    local faults = M.parse_script(text)
    local stacks, mappings = M.aggregate(faults, maps)
    local threads = {}
    for tid, b in pairs(c1) do
      local a = c0[tid] or { minflt = 0, majflt = 0 }
      threads[#threads + 1] = { tid = tid, pid = b.pid, comm = b.comm, minor = b.minflt - a.minflt,
        major = b.majflt - a.majflt, new = c0[tid] == nil or nil }
    end
    table.sort(threads, function(a, b) return a.minor + a.major > b.minor + b.major end)
    return {
      kind = 'pagefaults', target = s.target.label, window_s = window, ended_by = ended, every = every,
      threads = util.array(threads), stacks = util.array(stacks), mappings = util.array(mappings),
      recorded = #faults, notes = info.notes,
      system = { minor = v1.pgfault and v0.pgfault and (v1.pgfault - v0.pgfault) - (v1.pgmajfault - v0.pgmajfault),
        major = v1.pgmajfault and v0.pgmajfault and v1.pgmajfault - v0.pgmajfault },
      source = 'counts: /proc/PID/task/TID/stat (minflt, majflt); stacks: perf record -e '
        .. 'exceptions:page_fault_user -g (no BPF object reads the fault tracepoint); files: /proc/PID/maps',
    }
  end)
end

--- The recording → per process and thread (minor, major, rates), the top
--- stacks and mappings with their shares of the faults recorded.
function M.summarize(rec)
  local w = rec.window_s or 0
  local sum = { window_s = w, minor = 0, major = 0, processes = {}, threads = rec.threads or {} }
  local byp = {}
  for _, t in ipairs(rec.threads or {}) do
    sum.minor, sum.major = sum.minor + t.minor, sum.major + t.major
    local p = byp[t.pid]
    if not p then
      p = { pid = t.pid, comm = t.comm, minor = 0, major = 0, threads = 0 }
      byp[t.pid] = p
      sum.processes[#sum.processes + 1] = p
    end
    p.minor, p.major, p.threads = p.minor + t.minor, p.major + t.major, p.threads + 1
    if t.tid == t.pid then p.comm = t.comm end
  end
  local function rates(x)
    x.minor_rate = w > 0 and x.minor / w or 0
    x.major_rate = w > 0 and x.major / w or 0
  end
  for _, p in ipairs(sum.processes) do rates(p) end
  for _, t in ipairs(sum.threads) do rates(t) end
  rates(sum)
  table.sort(sum.processes, function(a, b) return a.minor + a.major > b.minor + b.major end)
  local n = rec.recorded or 0
  sum.recorded = n
  -- the share of the counted faults perf recorded (sampling aside)
  local counted = sum.minor + sum.major
  sum.coverage = counted > 0 and n * (rec.every or 1) / counted or nil
  sum.stacks, sum.mappings = rec.stacks or {}, rec.mappings or {}
  for _, x in ipairs(sum.stacks) do x.share = n > 0 and x.count / n or 0 end
  for _, x in ipairs(sum.mappings) do x.share = n > 0 and x.count / n or 0 end
  return sum
end

return M
