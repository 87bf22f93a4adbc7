--- `perf_manual serve`: a Prometheus exporter. The tracers a metrics
--- playbook asks for run for the life of the server and are read (never
--- cleared) at every scrape, so their histograms are Prometheus' cumulative
--- counters; USE figures are computed between one scrape and the next from
--- the same /proc snapshots use-check takes, and judged by the same rules.
---
--- A metrics playbook is a Lua file returning
---   { name =, summary =, setup = function(s) end, collect = function(s) end }
--- setup starts what it needs (s:tracer(name, opts)); collect runs at every
--- scrape and fills families (s:gauge / s:counter / s:histogram, see
--- perf_manual.serve.metrics) from s:read(name), s:use() and anything else
--- Lua can read. The built-in one is playbooks/metrics/default.lua.
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local bpf = require('perf_manual.bpf')
local host = require('perf_manual._host')
local metrics = require('perf_manual.serve.metrics')
local httpd = require('perf_manual.serve.httpd')
local prom = require('perf_manual.report.prometheus')
local registry = require('perf_manual.tracers')
local use_measure = require('perf_manual.measure.use')
local use = require('perf_manual.analyzers.use')
local hist = require('perf_manual.hist')
local syscall_tracer = require('perf_manual.tracers.syscall')
local sched_tracer = require('perf_manual.tracers.sched')
local red_tracer = require('perf_manual.tracers.red')
local io_tracer = require('perf_manual.tracers.io')

local M = {}

M.DEFAULT_LISTEN = '127.0.0.1:9464'
M.DEFAULT_TOP_K = 10
-- USE figures over a shorter window than this are noise: a scrape that
-- comes sooner gets the last ones again
M.USE_MIN_WINDOW = 0.5

--- Path of a metrics playbook: a file path as given, or NAME looked up as
--- metrics/NAME.lua on the playbook search path. nil, why when not found.
function M.find_playbook(name, dirs)
  if name:find('/', 1, true) or name:match('%.lua$') then
    local f = io.open(name, 'r')
    if not f then return nil, 'no metrics playbook ' .. name end
    f:close()
    return name
  end
  local tried = {}
  for _, d in ipairs(require('perf_manual.playbook').search_path(dirs)) do
    local p = d .. '/metrics/' .. name .. '.lua'
    local f = io.open(p, 'r')
    if f then f:close(); return p end
    tried[#tried + 1] = p
  end
  return nil, "no metrics playbook '" .. name .. "' (looked for " .. table.concat(tried, ', ') .. ')'
end

--- Loads a metrics playbook file: the table it returns, checked.
function M.load_playbook(path)
  local chunk, err = loadfile(path)
  if not chunk then util.user_error('serve: ' .. tostring(err)) end
  local ok, pb = pcall(chunk)
  if not ok then util.user_error('serve: ' .. path .. ': ' .. tostring(pb)) end
  if type(pb) ~= 'table' or type(pb.collect) ~= 'function' then
    util.user_error('serve: ' .. path .. ' must return { collect = function(s) ... end } (setup optional)')
  end
  pb.path = path
  return pb
end

local Serve = {}
Serve.__index = Serve

--- A serving context. opts: playbook (loaded table), top_k, note (a
--- function(text) for what could not be measured), options (what the
--- playbook may read as s.options: requests = PID of a server to trace).
function M.new(opts)
  local s = setmetatable({
    options = opts.options or {},
    pb = opts.playbook, top_k = opts.top_k or M.DEFAULT_TOP_K, reg = metrics.new(), fold_state = {},
    tracers = {}, tracer_order = {}, scrapes = 0, t0 = sys.now(), note = opts.note or function() end,
    info = sys.info(),
  }, Serve)
  if s.pb.setup then s.pb.setup(s) end
  return s
end

-- Tracers ---------------------------------------------------------------------

--- Starts tracer `name` (perf_manual.tracers) for the life of the server,
--- system-wide; opts go to its start(). Its run-time statistics stay off:
--- switching them costs milliseconds of CPU every second, more than an
--- idle exporter may use. Returns the tracer, or nil and why.
function Serve:tracer(name, opts)
  local t = self.tracers[name]
  if t then return t.tr, t.err end
  t = {}
  self.tracers[name] = t
  self.tracer_order[#self.tracer_order + 1] = name
  local mod = registry.get(name)
  local ok, why = bpf.available()
  if not mod or mod.error then
    t.err = 'no tracer ' .. name
  elseif not ok then
    t.err = why
  else
    local o = { stats = false }
    for k, v in pairs(opts or {}) do o[k] = v end
    t.tr, t.err = mod.start(o)
  end
  if not t.tr then self.note(string.format('%s tracer not running: %s (its metrics are not served)', name, t.err)) end
  return t.tr, t.err
end

--- The tracer's figures since the server started (cumulative), or nil, why.
function Serve:read(name)
  local t = self.tracers[name]
  if not t then return nil, 'not started' end
  if not t.tr then return nil, t.err end
  return t.tr:read({})
end

--- Per-syscall cumulative figures straight from the syscall tracer's map:
--- { { name =, count =, errors =, total_ns =, slots = log2 slots (ns) }, ... },
--- or nil, why. (tracer:read() also ranks, summarizes and names errnos:
--- work a scrape every few seconds does not need.)
function Serve:syscall_stats()
  local t = self.tracers.syscall
  if not (t and t.tr) then return nil, t and t.err or 'not started' end
  local tr, out = t.tr, {}
  for _, e in ipairs(assert(tr.stats_map:read { nonzero = true })) do
    for _, st in ipairs(syscall_tracer.decode_group(e.key, e.value)) do
      st.name = tr.names[st.nr] or ('syscall_' .. st.nr)
      out[#out + 1] = st
    end
  end
  -- in syscall number order: the same order at every scrape
  table.sort(out, function(a, b) return a.nr < b.nr end)
  return out
end

--- Per device and op cumulative block I/O figures from the io tracer's map:
--- { { device =, op =, count =, errors =, total_ns =, slots = log2 slots (us) }, ... },
--- or nil, why.
function Serve:io_stats()
  local t = self.tracers.io
  if not (t and t.tr) then return nil, t and t.err or 'not started' end
  local tr, hs = t.tr, {}
  for _, e in ipairs(assert(tr.hists:read {})) do hs[#hs + 1] = io_tracer.decode_hist(e.key, e.value) end
  local names = tr.names
  local rows = io_tracer.aggregate(hs, nil, function(maj, min) return io_tracer.devname(maj, min, nil, names) end)
  for _, r in ipairs(rows) do r.slots = r.latency end
  return rows
end

--- Cumulative request latency of the requests tracer (`perf_manual trace
--- --events requests`: read -> first write on a server's connections), its
--- log-linear slots merged into log2 ones: each kernel slot lies inside one
--- power of two, so whole slots add up and no value changes bucket.
--- { slots = log2 slots (ns), count =, total_ns = }, or nil, why.
function Serve:request_stats()
  local t = self.tracers.requests
  if not (t and t.tr) then return nil, t and t.err or 'not started' end
  local e = assert(t.tr.stats_map:read { percpu = 'list' })[1]
  local d = red_tracer.decode_stats(e and e.value or {})
  local slots, count = {}, 0
  for i = 1, hist.LOG2_SLOTS do slots[i] = 0 end
  for i, c in ipairs(d.slots) do
    if c > 0 then
      local s = hist.log2_slot(red_tracer.slot_bounds(i - 1)) + 1
      slots[s] = slots[s] + c
      count = count + c
    end
  end
  return { slots = slots, count = count, total_ns = d.sum_ns }
end

--- Cumulative run-queue latency of the sched tracer, straight from its
--- map: { slots = log2 slots (ns), count =, total_ns = }, or nil, why.
function Serve:runq_stats()
  local t = self.tracers.sched
  if not (t and t.tr) then return nil, t and t.err or 'not started' end
  local slots, count, total = {}, 0, 0
  for i = 1, hist.LOG2_SLOTS do slots[i] = 0 end
  for _, e in ipairs(assert(t.tr.hists:read {})) do
    local g = sched_tracer.decode_hist(e.key, e.value)
    hist.add_slots(slots, g.slots)
    count, total = count + g.count, total + g.total
  end
  return { slots = slots, count = count, total_ns = total }
end

-- USE between scrapes ----------------------------------------------------------

--- USE rows (perf_manual.analyzers.use) over the time since the previous
--- call: { rows =, verdict =, elapsed = seconds }.
function Serve:use()
  local now = sys.now()
  if self.use_last and now - self.use_t < M.USE_MIN_WINDOW then return self.use_last end
  local snap = use_measure.snapshot_system()
  if not self.use_snap then
    -- the first window starts when the server does (see prime)
    self.use_snap, self.use_t = snap, now
    return { rows = {}, elapsed = 0 }
  end
  local m = { ncpu = self.info.ncpu, page_size = self.info.page_size, notes = {},
    target = { kind = 'system', label = 'system' } }
  local st = snap.cpu and snap.cpu.stat
  local gauges = { running_sum = 0, running_n = 0 }
  if st and st.procs_running then
    -- the exporter itself is running while it reads
    gauges.running_sum, gauges.running_n = math.max(0, st.procs_running - 1), 1
  end
  use_measure.system_measures(m, self.use_snap, snap, gauges)
  local secs = now - self.use_t
  m.elapsed = secs
  -- the run-queue histogram is served as it is; the USE rows judge from
  -- /proc and PSI (a scrape is cheaper without a second pass over it)
  m.bpf = { errors = {}, detached = {}, off = 'served as perf_manual_runq_latency_seconds' }
  m.lock = { missing = 'serve does not trace locks' }
  local r = use.analyze(m)
  r.elapsed, r.measures = secs, m
  self.use_snap, self.use_t, self.use_last = snap, now, r
  return r
end

--- Scrapes WARM_SCRAPES times into nothing, then forgets them: LuaJIT
--- compiles a path only after it has run many times, and at one scrape
--- every 15 s the first few hundred would run interpreted (about 3x the
--- CPU of a compiled one: docs/serve.md). Costs about a second of CPU once.
M.WARM_SCRAPES = 300

function Serve:warm(n)
  util.long_running()
  local min = M.USE_MIN_WINDOW
  M.USE_MIN_WINDOW = 0
  local ok, err = pcall(function()
    for i = 1, n or M.WARM_SCRAPES do self:scrape(i % 2 == 0) end
  end)
  M.USE_MIN_WINDOW = min
  if not ok then error(err, 0) end
  -- nothing of the warm-up is served: the guard chooses, and the USE
  -- window and the counts start, with the first real scrape
  self.fold_state, self.scrapes, self.last_scrape_s = {}, 0, nil
  self.use_snap, self.use_t, self.use_last = nil, nil, nil
  collectgarbage()
end

--- Takes the first snapshots (call once the tracers run).
function Serve:prime()
  self:use()
end

-- Registry shortcuts for the playbook -----------------------------------------

function Serve:gauge(name, spec) return self.reg:gauge(name, spec) end
function Serve:counter(name, spec) return self.reg:counter(name, spec) end
function Serve:histogram(name, spec) return self.reg:histogram(name, spec) end

-- The tool's own cost ------------------------------------------------------------

local function rss_bytes(page)
  local s = util.readfile('/proc/self/statm')
  local pages = s and tonumber(s:match('^%d+%s+(%d+)'))
  return pages and pages * page or nil
end

function Serve:own_metrics()
  local ru = sys.rusage()
  self.reg:counter('perf_manual_self_cpu_seconds_total', { help = 'CPU time perf_manual serve used (user + system)' })
    :set({}, ru.utime + ru.stime)
  self.reg:gauge('perf_manual_self_resident_memory_bytes', { help = 'Resident memory of perf_manual serve' })
    :set({}, rss_bytes(self.info.page_size))
  self.reg:gauge('perf_manual_scrape_duration_seconds',
    { help = 'Time the previous scrape took to collect and render, as measured by perf_manual serve' })
    :set({}, self.last_scrape_s)
  self.reg:counter('perf_manual_scrapes_total', { help = 'Scrapes served' }):set({}, self.scrapes)
  local up = self.reg:gauge('perf_manual_source_up',
    { help = '1 when the named BPF tracer runs, 0 when it could not start (see the serve log)',
      labels = { 'source' }, guard = false })
  for _, name in ipairs(self.tracer_order) do up:set({ source = name }, self.tracers[name].tr and 1 or 0) end
end

--- One scrape: the exposition and its content type.
function Serve:scrape(openmetrics)
  local t0 = sys.now()
  self.reg:begin()
  self.pb.collect(self)
  self.scrapes = self.scrapes + 1
  self:own_metrics()
  local body = prom.render(self.reg:families(), { openmetrics = openmetrics, top_k = self.top_k,
    state = self.fold_state })
  self.last_scrape_s = sys.now() - t0
  return body, openmetrics and prom.OPENMETRICS_CONTENT_TYPE or prom.CONTENT_TYPE
end

local INDEX = [[<html><head><title>perf_manual serve</title></head><body>
<h1>perf_manual serve</h1><p>Metrics: <a href="/metrics">/metrics</a> (playbook %s)</p></body></html>
]]

--- The HTTP handler: GET /metrics, GET /, 404 for the rest.
function Serve:handle(req)
  if req.path == '/metrics' then
    local body, ctype = self:scrape(prom.wants_openmetrics(req.headers.accept))
    return 200, { ['Content-Type'] = ctype }, body
  elseif req.path == '/' then
    return 200, { ['Content-Type'] = 'text/html; charset=utf-8' }, string.format(INDEX, self.pb.name or self.pb.path)
  end
  return 404, nil, 'not found: try /metrics\n'
end

function Serve:close()
  for _, name in ipairs(self.tracer_order) do
    local t = self.tracers[name]
    if t.tr then t.tr:close() end
  end
end

--- Runs the server until the duration ends or Ctrl-C. opts: listen,
--- playbook (name or path), top_k, duration (seconds, nil: until stopped),
--- requests (PID of a server whose request latency is served),
--- on_ready(address, s), note(text).
function M.run(opts)
  local path, why = M.find_playbook(opts.playbook or 'default')
  if not path then util.user_error('serve: ' .. why) end
  local srv, err = httpd.listen(opts.listen or M.DEFAULT_LISTEN)
  if not srv then util.user_error('serve: ' .. err) end
  local s = M.new { playbook = M.load_playbook(path), top_k = opts.top_k, note = opts.note,
    options = { requests = opts.requests } }
  if opts.warm ~= false then s:warm() end
  s:prime()
  if opts.on_ready then opts.on_ready(srv:address(), s) end
  local deadline = opts.duration and sys.now() + opts.duration
  local ok, e = xpcall(function()
    while not sys.stop_requested() do
      local wait = 1.0
      if deadline then
        wait = math.min(wait, deadline - sys.now())
        if wait <= 0 then break end
      end
      if srv:serve_once(wait, function(req) return s:handle(req) end, sys.now) then
        -- collect a scrape's garbage now, after the answer went out: left to
        -- the incremental collector it would run inside the next scrape
        collectgarbage()
      end
    end
  end, debug.traceback)
  srv:close()
  s:close()
  if not ok then error(e, 0) end
  return { address = srv:address(), scrapes = s.scrapes, requests = srv.requests }
end

M.root = host.root

return M
