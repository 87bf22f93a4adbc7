--- Block I/O tracer: latency and size histograms per disk and op
--- (block_rq_issue -> block_rq_complete), and a biosnoop-style stream of
--- completed requests (`snoop = true`). Kernel side: bpf/io.bpf.c, structs
--- mirrored from bpf/io.h.
---
---   local t = assert(io_tracer.start{ pid = 1234, snoop = true })
---   for _, e in ipairs(t:poll(100)) do ... end     -- snoop stream
---   local r = t:read{ clear = true }               -- per interval
---   -- the text of a result is perf_manual.report.tracers' job, not this module's
local ffi = require('ffi')
local base = require('perf_manual.tracers.base')
local hist = require('perf_manual.hist')
local util = require('perf_manual.util')

local M = {}

M.name = 'io'
M.event = 'io'
M.snoop = true   -- trace --snoop streams completed requests
M.summary = 'block I/O latency and size per disk and op (biolatency, biosnoop)'
-- tracepoints the tracer cannot work without (checked before load)
M.tracepoints = { 'block/block_rq_issue', 'block/block_rq_complete' }

ffi.cdef [[
struct pm_io_key { uint32_t major, minor, op, pad; };
struct pm_io_hist {
  uint64_t lat_slots[32];
  uint64_t size_slots[32];
  uint64_t count, total_ns, max_ns, bytes, errors, sync, queue_ns, queued;
};
struct pm_io_event {
  uint64_t ts_ns, lat_ns, queue_ns, sector;
  uint32_t bytes, pid, tgid, major, minor, op, flags;
  int32_t error;
  char comm[16];
};
]]

M.SLOTS = 32
M.OPS = { [0] = 'read', 'write', 'flush', 'discard', 'other' }

local key_t = ffi.typeof('const struct pm_io_key *')
local hist_t = ffi.typeof('const struct pm_io_hist *')
local event_t = ffi.typeof('const struct pm_io_event *')

local function num(u64) return tonumber(u64) end

local function slots(arr)
  local t = {}
  for i = 0, M.SLOTS - 1 do t[i + 1] = tonumber(arr[i]) end
  return t
end

--- Sizes of the mirrored structs, for the spec that checks them against
--- the object's BTF / the C header.
function M.sizeof()
  return {
    key = ffi.sizeof('struct pm_io_key'),
    hist = ffi.sizeof('struct pm_io_hist'),
    event = ffi.sizeof('struct pm_io_event'),
  }
end

--- Decodes one `hists` map entry (key and value byte strings).
function M.decode_hist(kb, vb)
  assert(#kb == ffi.sizeof('struct pm_io_key'), 'io: bad key size ' .. #kb)
  assert(#vb == ffi.sizeof('struct pm_io_hist'), 'io: bad value size ' .. #vb)
  local k = ffi.cast(key_t, kb)
  local v = ffi.cast(hist_t, vb)
  return {
    major = k.major, minor = k.minor, op = M.OPS[k.op] or 'other',
    count = num(v.count), total_ns = num(v.total_ns), max_ns = num(v.max_ns),
    bytes = num(v.bytes), errors = num(v.errors), sync = num(v.sync), queue_ns = num(v.queue_ns),
    queued = num(v.queued),
    latency = slots(v.lat_slots), size = slots(v.size_slots),
  }
end

--- rwbs letters as the kernel's block tracepoints print them: F (preflush),
--- the op (R W D F N), then F (FUA), S (sync), M (meta).
function M.rwbs(op, flags)
  local bit = require('bit')
  local s = bit.band(flags, 8) ~= 0 and 'F' or ''
  s = s .. (({ read = 'R', write = 'W', flush = 'F', discard = 'D' })[op] or 'N')
  if bit.band(flags, 4) ~= 0 then s = s .. 'F' end
  if bit.band(flags, 1) ~= 0 then s = s .. 'S' end
  if bit.band(flags, 2) ~= 0 then s = s .. 'M' end
  return s
end

--- Decodes one ring-buffer record of the snoop stream.
function M.decode_event(b)
  assert(#b >= ffi.sizeof('struct pm_io_event'), 'io: short event ' .. #b)
  local e = ffi.cast(event_t, b)
  local op = M.OPS[e.op] or 'other'
  return {
    ts_ns = num(e.ts_ns), lat_ns = num(e.lat_ns), queue_ns = num(e.queue_ns),
    sector = e.sector ~= 0xffffffffffffffffULL and num(e.sector) or nil, bytes = e.bytes, pid = e.pid, tgid = e.tgid,
    major = e.major, minor = e.minor, op = op, flags = e.flags,
    rwbs = M.rwbs(op, e.flags), error = e.error, comm = ffi.string(e.comm),
  }
end

-- ---- device names ---------------------------------------------------------

--- DEVNAME from a /sys/dev/block/MAJ:MIN/uevent text.
function M.parse_uevent(text)
  return text and text:match('DEVNAME=([^\n]+)')
end

--- "maj:min" -> name from /proc/diskstats text.
function M.parse_diskstats(text)
  local t = {}
  for maj, min, name in (text or ''):gmatch('%s*(%d+)%s+(%d+)%s+(%S+)[^\n]*') do
    t[maj .. ':' .. min] = name
  end
  return t
end

--- Resolves a device number to its name: /sys/dev/block first, then
--- /proc/diskstats, else "MAJ:MIN". `root` lets specs point at fixtures.
function M.devname(major, minor, root, cache)
  local id = major .. ':' .. minor
  if cache and cache[id] then return cache[id] end
  root = root or ''
  local name = M.parse_uevent(util.readfile(root .. '/sys/dev/block/' .. id .. '/uevent'))
  if not name then
    name = M.parse_diskstats(util.readfile(root .. '/proc/diskstats'))[id]
  end
  name = name or id
  if cache then cache[id] = name end
  return name
end

-- ---- aggregation ------------------------------------------------------------

local function add_slots(dst, src)
  for i = 1, M.SLOTS do dst[i] = (dst[i] or 0) + (src[i] or 0) end
end

local function new_row(dev, name, op)
  local z = {}
  for i = 1, M.SLOTS do z[i] = 0 end
  local zs = {}
  for i = 1, M.SLOTS do zs[i] = 0 end
  return { dev = dev, device = name, op = op, count = 0, total_ns = 0, max_ns = 0,
           bytes = 0, errors = 0, sync = 0, queue_ns = 0, queued = 0, latency = z, size = zs }
end

local function merge(row, h)
  row.count = row.count + h.count
  row.total_ns = row.total_ns + h.total_ns
  row.bytes = row.bytes + h.bytes
  row.errors = row.errors + h.errors
  row.sync = row.sync + (h.sync or 0)
  row.queue_ns = row.queue_ns + (h.queue_ns or 0)
  row.queued = row.queued + (h.queued or 0)
  if h.max_ns > row.max_ns then row.max_ns = h.max_ns end
  add_slots(row.latency, h.latency)
  add_slots(row.size, h.size)
end

local function finish(row, seconds)
  row.mean_ns = row.count > 0 and row.total_ns / row.count or nil
  -- share of requests a task waits behind (REQ_SYNC), and the mean time
  -- in the scheduler's queue before the driver took them (insert -> issue)
  row.sync_pct = row.count > 0 and row.sync / row.count * 100 or nil
  row.queue_mean_ns = row.queued > 0 and row.queue_ns / row.queued or nil
  if seconds and seconds > 0 then
    row.iops = row.count / seconds
    row.bytes_per_s = row.bytes / seconds
    -- busy-time estimate: the share of the interval with a request in flight
    -- cannot be derived from a sum of latencies when requests overlap, so this
    -- is the mean number of requests in flight (Little's law)
    row.inflight_mean = row.total_ns / (seconds * 1e9)
  end
  return row
end

--- Aggregates decoded hist entries into per (device, op) rows and per-device
--- totals. `names(major, minor)` maps device numbers to names.
function M.aggregate(hists, seconds, names)
  local by_op, by_dev = {}, {}
  for _, h in ipairs(hists) do
    local dev = h.major .. ':' .. h.minor
    local name = names and names(h.major, h.minor) or dev
    local k = dev .. '/' .. h.op
    by_op[k] = by_op[k] or new_row(dev, name, h.op)
    merge(by_op[k], h)
    by_dev[dev] = by_dev[dev] or new_row(dev, name, 'all')
    merge(by_dev[dev], h)
  end
  local rows, devices = {}, {}
  for _, r in pairs(by_op) do rows[#rows + 1] = finish(r, seconds) end
  for _, r in pairs(by_dev) do devices[#devices + 1] = finish(r, seconds) end
  local function order(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.dev .. a.op < b.dev .. b.op
  end
  table.sort(rows, order)
  table.sort(devices, order)
  return rows, devices
end

-- Live tracer ----------------------------------------------------------------

local Io = setmetatable({}, { __index = base.Tracer })
Io.__index = Io

local function variant(kind, have_start, have_insert)
  local suffix = kind == 'tp_btf' and '_btf' or '_raw'
  local progs = { 'io_issue' .. suffix, 'io_complete' .. suffix }
  if have_start then progs[#progs + 1] = 'io_start' .. suffix end
  if have_insert then progs[#progs + 1] = 'io_insert' .. suffix end
  return { name = kind, progs = progs }
end

--- Starts tracing. opts: pid | tid | cgroup (filter: requests are owned by
--- the task that submitted them), snoop = true (stream every completion
--- through the ring buffer: t:poll()), queued = true (latency from the
--- scheduler insert instead of the driver issue), stats = false.
---@return table? tracer, string? err
function M.start(opts)
  opts = opts or {}
  -- snoop times count from here: requests may complete while we attach
  local t0_ns = require('perf_manual.sys').monotonic_ns()
  local cfg, err = base.start_config(opts, M.tracepoints)
  if not cfg then return nil, err end
  cfg.io_snoop = opts.snoop and true or false
  cfg.io_queued = opts.queued and true or false
  -- block_io_start (6.5+) runs in the submitter's context: it names the
  -- process behind a request; without it the issuing task is used
  local have_start = base.tracepoint_exists('block/block_io_start') ~= false
  local have_insert = base.tracepoint_exists('block/block_rq_insert') ~= false
  local keep = {}
  if not have_start then keep.io_start_btf, keep.io_start_raw = false, false end
  if not have_insert then keep.io_insert_btf, keep.io_insert_raw = false, false end
  local obj, v = base.load_variants('io', cfg, {
    variant('tp_btf', have_start, have_insert), variant('raw_tp', have_start, have_insert),
  }, { keep = keep, stats = opts.stats })
  if not obj then return nil, v end
  local t = base.Tracer.new('io', obj, { attach_path = v })
  t.hists = obj:map('hists')
  t.snooping = opts.snoop and true or false
  t.owner_from = have_start and 'block_io_start' or 'block_rq_issue'
  if t.snooping then t.rb = obj:ringbuf('events') end
  t.t0_ns = t0_ns
  t.names = {}
  return setmetatable(t, Io)
end

--- Snoop mode: completed requests since the last poll (decoded), waiting up
--- to timeout_ms for the first one. Each event gets `t_s`, seconds since start.
function Io:poll(timeout_ms, max)
  if not self.rb or self.closed then return {} end
  local batch = self.rb:poll(timeout_ms or 0, max or 4096) or {}
  local out = {}
  for i, b in ipairs(batch) do
    local e = M.decode_event(b)
    e.t_s = (e.ts_ns - self.t0_ns) / 1e9
    e.device = M.devname(e.major, e.minor, nil, self.names)
    out[i] = e
  end
  return out
end

--- `trace --snoop`: the stream as text lines (header first), at most max
--- events per call.
function Io:snoop(max)
  local lines = {}
  if not self.snooping then return lines end
  if not self.header_done then
    self.header_done = true
    lines[1] = M.SNOOP_HEADER
  end
  for _, e in ipairs(self:poll(0, max)) do lines[#lines + 1] = M.render_event(e) end
  return lines
end

--- Latency quantile (us) of a row's log2 buckets (us), held to its max_ns
--- when that fits the buckets (hist.fitting_max).
function M.p_us(buckets, q, max_ns)
  return hist.quantile(buckets, q, nil, hist.fitting_max(buckets, max_ns and math.floor(max_ns / 1e3)))
end

local function finish_rows(rows)
  for _, r in ipairs(rows) do
    r.buckets = hist.log2_buckets(r.latency)
    r.p50_us, r.p99_us = M.p_us(r.buckets, 0.5, r.max_ns), M.p_us(r.buckets, 0.99, r.max_ns)
    r.size_buckets = hist.log2_buckets(r.size)
    r.latency, r.size = nil, nil
  end
  return rows
end

--- Reads the histograms: the result since start (or the last clearing read).
--- opts.clear: reset after reading (per-interval output).
function Io:read(opts)
  opts = opts or {}
  local now = require('perf_manual.sys').now()
  local res
  if self.closed then
    res = self.final or { rows = {}, devices = {} }
  else
    local hs = {}
    for _, e in ipairs(assert(self.hists:read{ clear = opts.clear })) do
      hs[#hs + 1] = M.decode_hist(e.key, e.value)
    end
    local names = self.names
    local rows, devices = M.aggregate(hs, self:attached_seconds(now), function(maj, min)
      return M.devname(maj, min, nil, names)
    end)
    res = { rows = finish_rows(rows), devices = finish_rows(devices) }
  end
  res.snoop = self.snooping
  res.owner_from = self.owner_from
  return self:finish_read(res, now, opts)
end

--- Header and lines of the snoop stream (biosnoop columns; PID is the
--- process, the thread is in the event's `pid`).
M.SNOOP_HEADER = string.format('%-11s %-14s %-7s %-7s %-5s %-12s %-7s %9s', 'TIME(s)', 'COMM', 'PID',
  'DISK', 'T', 'SECTOR', 'BYTES', 'LAT(ms)')

function M.render_event(e)
  return string.format('%-11.6f %-14.14s %-7d %-7s %-5s %-12s %-7d %9.3f%s', e.t_s or e.ts_ns / 1e9, e.comm, e.tgid,
    e.device or (e.major .. ':' .. e.minor), e.rwbs, e.sector and string.format('%d', e.sector) or '-', e.bytes,
    e.lat_ns / 1e6,
    e.error ~= 0 and ('  error ' .. e.error) or '')
end

--- JSON-ready copy (arrays marked so empty ones stay arrays).
function M.to_json(res)
  local copy = base.json_copy(res)
  for _, key in ipairs({ 'rows', 'devices' }) do
    local list = {}
    for i, r in ipairs(res[key] or {}) do list[i] = base.json_copy(r, { 'buckets', 'size_buckets' }) end
    copy[key] = util.array(list)
  end
  return copy
end

return M
