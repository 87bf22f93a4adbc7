--- fsync-audit's measurement: over one window, the fsync tracer
--- (bpf/fsync.bpf.c) counts fsync/fdatasync/sync_file_range calls and their
--- latency per thread and file descriptor; the fds are named the way
--- thread-state accounting names them (perf_manual.measure.tsa: the
--- /proc/PID/fd links noted at the start, every second and at the end);
--- /proc/PID/io and /proc/diskstats are read at both edges for the bytes
--- the application wrote against the bytes its disk wrote.
---
---   local rec = require('perf_manual.runbooks.fsync_audit').run { target = '1234', duration = 5 }
---   local sum = M.summarize(rec)   -- pure: files, threads, calls, amplification
local util = require('perf_manual.util')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local mtsa = require('perf_manual.measure.tsa')
local fsync = require('perf_manual.runbooks.fsync_tracer')
local hist = require('perf_manual.hist')
local pstat = require('posix.sys.stat')

local M = {}

M.proc = '/proc'

--- /proc/PID/io → { rchar, wchar, syscr, syscw, read_bytes, write_bytes, cancelled_write_bytes }.
function M.parse_io(text)
  if not text then return nil end
  local r = {}
  for k, v in text:gmatch('([%w_]+):%s*(%d+)') do r[k] = tonumber(v) end
  return next(r) and r or nil
end

--- /proc/diskstats → "maj:min" → { name, writes, sectors_written, flushes }.
function M.parse_diskstats(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    local f = {}
    for w in line:gmatch('%S+') do f[#f + 1] = w end
    if #f >= 14 then
      out[f[1] .. ':' .. f[2]] = { name = f[3], writes = tonumber(f[8]), sectors_written = tonumber(f[10]),
        flushes = tonumber(f[19] or '') }
    end
  end
  return out
end

local function io_of(pids)
  local out = {}
  for _, pid in ipairs(pids) do
    local r = M.parse_io(util.readfile(M.proc .. '/' .. pid .. '/io'))
    if r then out[tostring(pid)] = r end
  end
  return out
end

local function comm_of(pid, tid)
  local c = util.readfile(M.proc .. '/' .. pid .. '/task/' .. tid .. '/comm')
  return c and (c:gsub('\n$', '')) or nil
end

-- "maj:min" of the file system an open fd's file lives on (through
-- /proc/PID/fd, so an unlinked file still answers)
local function dev_of(pid, fd)
  local st = pstat.stat(M.proc .. '/' .. pid .. '/fd/' .. fd)
  if not st then return nil end
  local d = st.st_dev
  return string.format('%d:%d', math.floor(d / 256) % 4096, d % 256 + math.floor(d / 1048576) * 256)
end

--- Measures. opts: target, duration, max_overhead, progress, note.
---@return table? recording, string? why
function M.run(opts)
  return measure.with_session({ target = opts.target or 'system', duration = opts.duration or 5,
    what = 'fsync audit', max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note,
    command = 'fsync-audit', soft = true }, function(s)
    s:start()
    local off = measure.bpf_unavailable()
    if off then return nil, 'fsync-audit needs BPF: ' .. off end
    local filter, ferr = targets.bpf_filter(s.target)
    if not filter then return nil, ferr end
    local tr, terr = s:start_tracer('fsync', fsync, filter)
    if not tr then return nil, 'fsync tracer: ' .. tostring(terr) end
    local links = {}
    local function note_fds() mtsa.fd_links(mtsa.target_pids(s.target), links, M.proc) end
    note_fds()
    local pids = mtsa.target_pids(s.target)
    local io0 = io_of(pids)
    local disk0 = M.parse_diskstats(util.readfile(M.proc .. '/diskstats'))
    s:begin()
    -- a process that exits takes its /proc/PID/io along: keep the last read
    local io1 = {}
    local function note_io()
      for pid, v in pairs(io_of(pids)) do io1[pid] = v end
    end
    local ended = s:run { interval = 1, on_interval = note_fds,
      tick = s.target.kind ~= 'system' and note_io or nil }
    note_io()
    local disk1 = M.parse_diskstats(util.readfile(M.proc .. '/diskstats'))
    note_fds()
    tr:detach('window ended')
    -- read while a launched command still runs: its threads' names and files
    local res = tr:read()
    -- the calls were counted from attach to detach: rates divide by that
    local window = res.seconds
    local rows, devs = {}, {}
    for _, r in ipairs(res.rows) do
      local path = links[r.tgid .. ':' .. r.fd]
      local dev = dev_of(r.tgid, r.fd)
      if dev then devs[dev] = true end
      local sum = hist.summary(r.buckets)
      rows[#rows + 1] = { pid = r.tgid, tid = r.tid, comm = comm_of(r.tgid, r.tid), fd = r.fd, path = path,
        dev = dev, call = r.call, count = r.count, errors = r.errors, total_ns = r.total_ns, max_ns = r.max_ns,
        p50_ns = sum.p50, p99_ns = sum.p99, buckets = r.buckets }
    end
    local disks = {}
    for dev in pairs(devs) do
      local a, b = disk0[dev], disk1[dev]
      if a and b then
        disks[#disks + 1] = { dev = dev, name = a.name, writes = b.writes - a.writes,
          bytes_written = (b.sectors_written - a.sectors_written) * 512,
          flushes = a.flushes and b.flushes and b.flushes - a.flushes or nil }
      end
    end
    table.sort(disks, function(x, y) return x.dev < y.dev end)
    local procs = {}
    for pid, a in pairs(io0) do
      local b = io1[pid]
      if b then
        procs[#procs + 1] = { pid = tonumber(pid), wchar = b.wchar - a.wchar, syscw = b.syscw - a.syscw,
          write_bytes = b.write_bytes - a.write_bytes,
          cancelled_write_bytes = b.cancelled_write_bytes - a.cancelled_write_bytes }
      end
    end
    table.sort(procs, function(x, y) return x.pid < y.pid end)
    local info = s:finish()
    local q = res.quality or {}
    return {
      kind = 'fsync-audit', target = s.target.label, window_s = window, ended_by = ended,
      rows = util.array(rows), disks = util.array(disks), processes = util.array(procs), notes = info.notes,
      source = 'bpf: fsync (syscalls:sys_enter/exit_fsync, _fdatasync, _sync_file_range); /proc/PID/fd, '
        .. '/proc/PID/io, /proc/diskstats',
      quality = { events_seen = q.events_seen, events_lost = q.events_lost, events_missed = q.events_missed,
        bpf_cpu_pct = q.bpf_cpu_pct, bpf_ns_per_run = q.bpf_ns_per_run, detached = info.detached.fsync },
    }
  end)
end

--- The recording → what the runbook judges: per call (count, rate,
--- mean/p50/p99/max ms), per file (threads, calls, rate, latency, the share
--- of its threads' time spent flushing it), per thread, and the write
--- amplification (the disk's bytes and the processes' storage bytes over
--- the bytes they wrote).
function M.summarize(rec)
  local w = rec.window_s or 0
  local sum = { window_s = w, calls = {}, files = {}, threads = {} }
  local function group(list, index, key, init)
    local g = index[key]
    if not g then
      g = init()
      g.count, g.errors, g.total_ns, g.max_ns, g.slots, g.tids, g.nthreads = 0, 0, 0, 0, {}, {}, 0
      index[key] = g
      list[#list + 1] = g
    end
    return g
  end
  local function add(g, r)
    g.count, g.errors, g.total_ns = g.count + r.count, g.errors + (r.errors or 0), g.total_ns + r.total_ns
    g.max_ns = math.max(g.max_ns, r.max_ns or 0)
    g.slots = hist.merge(g.slots, r.buckets)
    if not g.tids[r.tid] then g.tids[r.tid] = true; g.nthreads = g.nthreads + 1 end
  end
  local bycall, byfile, bythread = {}, {}, {}
  local total = 0
  for _, r in ipairs(rec.rows or {}) do
    total = total + r.count
    add(group(sum.calls, bycall, r.call, function() return { name = r.call } end), r)
    local fkey = r.path or string.format('pid %d fd %d', r.pid, r.fd)
    add(group(sum.files, byfile, fkey, function() return { path = fkey, dev = r.dev } end), r)
    add(group(sum.threads, bythread, r.tid, function() return { tid = r.tid, pid = r.pid, comm = r.comm } end), r)
  end
  local function finish(list)
    for _, g in ipairs(list) do
      local q = hist.summary(g.slots, nil, 0, g.max_ns)
      g.rate = w > 0 and g.count / w or 0
      g.mean_ms = g.count > 0 and g.total_ns / g.count / 1e6 or nil
      g.p50_ms, g.p99_ms = q.p50 and q.p50 / 1e6, q.p99 and q.p99 / 1e6
      g.max_ms = g.max_ns / 1e6
      -- the share of the window its threads spent flushing, per thread
      g.share = w > 0 and g.nthreads > 0 and g.total_ns / 1e9 / (w * g.nthreads) or 0
      g.slots, g.tids, g.total_ns, g.max_ns = nil, nil, nil, nil
    end
    table.sort(list, function(a, b) return a.count > b.count end)
  end
  finish(sum.calls)
  finish(sum.files)
  finish(sum.threads)
  sum.count, sum.rate = total, w > 0 and total / w or 0
  local app, stor, cancelled = 0, 0, 0
  for _, p in ipairs(rec.processes or {}) do
    app, stor, cancelled = app + p.wchar, stor + p.write_bytes, cancelled + p.cancelled_write_bytes
  end
  local disk, flushes = 0, nil
  for _, d in ipairs(rec.disks or {}) do
    disk = disk + d.bytes_written
    if d.flushes then flushes = (flushes or 0) + d.flushes end
  end
  sum.amplification = { app_bytes = app, storage_bytes = stor, cancelled_bytes = cancelled, disk_bytes = disk,
    disk_flushes = flushes, storage_ratio = app > 0 and stor / app or nil, disk_ratio = app > 0 and disk / app or nil,
    bytes_per_sync = total > 0 and app / total or nil }
  return sum
end

return M
