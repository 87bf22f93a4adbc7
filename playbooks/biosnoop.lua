-- biosnoop: every block I/O request as it completes (time, process, disk,
-- type, sector, size, latency), then the latency by disk and by process.
-- A thin runbook over the io tracer (`trace --events io --snoop`), named as
-- users of BCC's biosnoop know it.
local text = require('perf_manual.report.hist')
local stats = require('perf_manual.analyzers.stats')

local HEADER = string.format('%-11s %-14s %-7s %-8s %-4s %-12s %-7s %9s', 'TIME(s)', 'COMM', 'PID', 'DISK', 'T',
  'SECTOR', 'BYTES', 'LAT(ms)')
local KEEP = 200000   -- events kept for the per-process summary and --save

local function line(e)
  return string.format('%-11.6f %-14.14s %-7d %-8s %-4s %-12s %-7d %9.3f%s', e.t_s or 0, e.comm or '?', e.tgid or 0,
    e.device or '?', e.rwbs or '?', e.sector and string.format('%d', e.sector) or '-', e.bytes or 0,
    (e.lat_ns or 0) / 1e6, (e.error or 0) ~= 0 and ('  error ' .. e.error) or '')
end

-- per process: requests, bytes, average / p50 / p99 / max latency (ms)
local function by_process(events)
  local by, list = {}, {}
  for _, e in ipairs(events) do
    local k = e.tgid or 0
    local r = by[k]
    if not r then
      r = { pid = k, comm = e.comm, count = 0, bytes = 0, lats = {}, total = 0 }
      by[k] = r
      list[#list + 1] = r
    end
    r.count = r.count + 1
    r.bytes = r.bytes + (e.bytes or 0)
    r.total = r.total + (e.lat_ns or 0)
    r.lats[#r.lats + 1] = (e.lat_ns or 0) / 1e6
  end
  for _, r in ipairs(list) do
    table.sort(r.lats)
    r.avg_ms, r.p50_ms, r.p99_ms, r.max_ms = r.total / r.count / 1e6, stats.quantile_sorted(r.lats, 0.5),
      stats.quantile_sorted(r.lats, 0.99), r.lats[#r.lats]
    r.lats, r.total = nil, nil
  end
  table.sort(list, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.pid < b.pid
  end)
  return list
end

local ms = function(v) return v and string.format('%.3f', v) end

return playbook {
  name = 'biosnoop',
  topic = 'disk',
  summary = 'Block I/O requests one per line (process, disk, sector, size, latency), then latency by disk and process',
  needs = { 'bpf' },
  examples = '  perf_manual biosnoop --duration 5\n'
    .. '  perf_manual biosnoop --pid 1234 --summary\n'
    .. '  perf_manual biosnoop --device loop0 --duration 10 --json\n'
    .. '  perf_manual biosnoop --duration 5 --save /tmp/bio && perf_manual biosnoop --replay /tmp/bio --summary',
  params = {
    target = param.target { 'whose requests: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to trace', default = '5s', above = 0, until_exit = true },
    device = param.string { 'only requests to this disk (a name as in /proc/diskstats: vda, loop0)', optional = true },
    summary = param.flag { 'no line per request: only the latency by disk and by process' },
    top = param.integer { 'processes in the summary', default = 10, min = 1, max = 100000 },
    json = param.flag { 'print the requests and the summaries as one JSON document' },
    max_overhead = param.number { 'detach the tracer when it uses more than PCT% of one CPU', default = 5,
      above = 0, max = 10000 },
    save = param.path { 'also write DIR/trace-io.json (with the requests), for --replay', optional = true },
    replay = param.path { 'show the recording in DIR (trace-io.json) again, without tracing', optional = true },
  },

  step 'trace block I/O' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local lines = not (p.summary or p.json)
      local events, dropped = {}, 0
      local function take(e)
        if p.device and e.device ~= p.device then return end
        if lines then
          if #events == 0 and dropped == 0 then inv:print(HEADER) end
          inv:print(line(e))
        end
        if #events < KEEP then events[#events + 1] = e else dropped = dropped + 1 end
      end
      local r = inv:trace { 'io', target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        snoop = true, json_snoop = true, max_overhead = p.max_overhead,
        on_snoop = function(_, items)
          for _, e in ipairs(items) do
            take({ t_s = e.t_s, comm = e.comm, tgid = e.tgid, pid = e.pid, device = e.device, rwbs = e.rwbs,
              op = e.op, sector = e.sector, bytes = e.bytes, lat_ns = e.lat_ns, error = e.error })
          end
          inv:flush()
        end }
      if r.available == false then inv:fail('biosnoop: ' .. tostring(r.why)) end
      if p.replay then
        for _, e in ipairs(r.requests or {}) do take(e) end
      else
        r.requests = inv:list(events)
        r.requests_dropped = dropped
      end
      if p.save then inv:save_file(inv:mkdir(p.save) .. '/trace-io.json', r) end
      inv.result, inv.events = r, events
    end,
  },

  step 'latency by disk and process' {
    function(inv, p)
      local r = inv.result
      local devices = {}
      for _, d in ipairs(r.devices or {}) do
        if not p.device or d.device == p.device then devices[#devices + 1] = d end
      end
      local procs = by_process(inv.events)
      if p.json then
        inv:json { target = r.target, device = p.device, requests = inv:list(inv.events),
          requests_dropped = r.requests_dropped, devices = inv:list(devices), processes = inv:list(procs),
          quality = r.quality, notes = r.session_notes }
        return
      end
      if #inv.events == 0 then inv:print('no block I/O completed' .. (p.device and (' on ' .. p.device) or '')) end
      inv:print('\nby disk:')
      inv:show(text.table(devices, {
        { key = 'device', title = 'DISK', align = 'l' },
        { key = 'count', title = 'COUNT' },
        { key = 'iops', title = 'IOPS', fmt = function(v) return v and string.format('%.1f', v) end },
        { key = 'mean_ns', title = 'AVG(ms)', fmt = function(v) return v and string.format('%.3f', v / 1e6) end },
        { key = 'p99_us', title = 'P99(ms)', fmt = function(v) return v and string.format('%.3f', v / 1e3) end },
        { key = 'max_ns', title = 'MAX(ms)', fmt = function(v) return v and string.format('%.3f', v / 1e6) end },
        { key = 'errors', title = 'ERRORS' },
      }))
      local shown = {}
      for i = 1, math.min(p.top, #procs) do shown[i] = procs[i] end
      inv:print('\nby process:')
      inv:show(text.table(shown, {
        { key = 'pid', title = 'PID' },
        { key = 'comm', title = 'COMM', align = 'l' },
        { key = 'count', title = 'REQUESTS' },
        { key = 'bytes', title = 'BYTES' },
        { key = 'avg_ms', title = 'AVG(ms)', fmt = ms },
        { key = 'p50_ms', title = 'P50(ms)', fmt = ms },
        { key = 'p99_ms', title = 'P99(ms)', fmt = ms },
        { key = 'max_ms', title = 'MAX(ms)', fmt = ms },
      }))
      local counted = 0
      for _, d in ipairs(devices) do counted = counted + d.count end
      local late = counted - #inv.events - (r.requests_dropped or 0)
      if late > 0 then
        inv:print(string.format('note: %d requests completed between the last read of the stream and the end; '
          .. 'they are in the disk table only', late))
      end
      if (r.requests_dropped or 0) > 0 then
        inv:print(string.format('note: %d requests past the first %d are in the disk table only',
          r.requests_dropped, KEEP))
      end
      for _, n in ipairs(r.session_notes or {}) do inv:print('note: ' .. n) end
    end,
  },
}
