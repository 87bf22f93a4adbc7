-- request-trace: the requests a server answers, seen from its own socket
-- syscalls (a request runs from the read that brings it to the first write
-- of the answer), with their rate and latency, and beside them the server's
-- syscalls per request: where the time of a request goes in the kernel.
-- No load is added and nothing in the server changes. A thin runbook over
-- the requests and syscalls tracers (`trace --events requests,syscalls`,
-- `red-check --passive`).
local text = require('perf_manual.report.hist')

-- calls that wait for the next request on a keep-alive connection or for
-- a new one: their time is between requests, not inside them
local BETWEEN = { read = true, readv = true, recvfrom = true, recvmsg = true, accept = true, accept4 = true,
  epoll_wait = true, epoll_pwait = true, poll = true, ppoll = true, select = true, pselect6 = true }

-- a call longer than the longest request was not inside one (a thread
-- that sleeps for the life of the server, say). The time of the calls no
-- longer than that lies between two bounds from the histogram: at least
-- their buckets' lower ends (and the total less the long calls' upper
-- ends), at most their upper ends (and the total less the long calls'
-- lower ends). Returns lower, upper (ns) and how many were left out.
local function within(buckets, max_ns, total_ns)
  local short_lo, short_hi, long_lo, long_hi, left_out = 0, 0, 0, 0, 0
  for _, b in ipairs(buckets or {}) do
    if max_ns and b.lo > max_ns then
      left_out = left_out + b.count
      long_lo, long_hi = long_lo + b.count * b.lo, long_hi + b.count * (b.hi + 1)
    else
      short_lo, short_hi = short_lo + b.count * b.lo, short_hi + b.count * (b.hi + 1)
    end
  end
  return math.max(short_lo, total_ns - long_hi), math.min(short_hi, total_ns - long_lo), left_out
end

local function msf(s) return s and string.format('%.3f', s * 1000) or '-' end

return playbook {
  name = 'request-trace',
  topic = 'requests',
  summary = "A server's requests from its socket syscalls: rate, latency, and its syscalls per request (no load added)",
  needs = { 'bpf' },
  examples = '  perf_manual request-trace --pid 1234 --duration 10\n'
    .. '  perf_manual request-trace --duration 30 -- ./server --port 8080   # launched, traced until it exits\n'
    .. '  perf_manual request-trace --pid 1234 --save /tmp/rt && perf_manual request-trace --replay /tmp/rt --json',
  params = {
    target = param.target { 'the server: a PID, a service, a cgroup path, a process name or a command',
      aliases = param.target_aliases, optional = true },
    duration = param.duration { 'how long to trace (with -- COMMAND: until it exits)', default = '10s', above = 0,
      until_exit = true },
    slow_ms = param.number { 'p99 above this many ms is judged slow', default = 100, above = 0 },
    top = param.integer { 'syscalls shown', default = 8, min = 1, max = 1000 },
    json = param.flag { 'print the result as one JSON document' },
    max_overhead = param.number { 'detach a tracer when it uses more than PCT% of one CPU', default = 5,
      above = 0, max = 10000 },
    save = param.path { 'also write DIR/trace.json, for --replay', optional = true },
    replay = param.path { 'judge the recording in DIR (trace.json) again, without tracing', optional = true },
  },

  check = function(p)
    if not (p.target or p.replay) then
      require('perf_manual.util').user_error('request-trace: give the server: --pid PID, --target T or -- COMMAND')
    end
  end,

  step 'trace requests and syscalls' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local r = inv:trace { events = { 'requests', 'syscalls' }, target = not p.replay and inv:target(p.target) or nil,
        duration = p.duration, max_overhead = p.max_overhead }
      if r.available == false then inv:fail('request-trace: ' .. tostring(r.why)) end
      if not (r.results and r.results.requests) then
        inv:fail('request-trace: the request tracer did not run (' .. tostring((r.unavailable or {}).requests) .. ')')
      end
      if p.save then inv:save_file(inv:mkdir(p.save) .. '/trace.json', r) end
      inv.result = r
    end,
  },

  step 'where a request goes' {
    function(inv, p)
      local r = inv.result
      local req = r.results.requests
      local sc = r.results.syscalls
      local n = req.requests or 0
      local lat = req.latency or {}
      -- the server's syscalls per request, the waits between requests apart
      local per, inside = {}, 0
      for _, s in ipairs(sc and sc.syscalls or {}) do
        if n > 0 and s.total_ns then
          local row = { name = s.name, calls = s.count / n, ms = s.total_ns / n / 1e6, between = BETWEEN[s.name] }
          local lower, upper, left_out = within(s.buckets, req.max_ns, s.total_ns)
          if left_out > 0 then
            -- the verdict takes the lower bound: "at least"
            row.ms, row.ms_upper, row.left_out = lower / n / 1e6, upper / n / 1e6, left_out
          end
          per[#per + 1] = row
          if not row.between then inside = inside + row.ms end
        end
      end
      table.sort(per, function(a, b)
        if a.ms ~= b.ms then return a.ms > b.ms end
        return a.name < b.name
      end)
      local top_inside
      for _, row in ipairs(per) do
        if not row.between then top_inside = row break end
      end
      local verdict
      if n == 0 then
        verdict = 'no requests seen: nothing was read and answered on an accepted connection in the window'
      else
        verdict = string.format('%d requests (%.1f/s), p50 %s ms, p99 %s ms: %s', n, req.rate or 0, msf(lat.p50),
          msf(lat.p99), (lat.p99 or 0) * 1000 > p.slow_ms and ('slow (p99 over ' .. p.slow_ms .. ' ms)') or 'not slow')
        if top_inside and lat.mean and lat.mean > 0 then
          verdict = verdict .. string.format('; of the mean %s ms, %s takes %s%.3f ms per request (%.0f%%)',
            msf(lat.mean), top_inside.name, top_inside.left_out and 'at least ' or '', top_inside.ms,
            math.min(100, top_inside.ms / (lat.mean * 1000) * 100))
        end
      end
      if p.json then
        inv:json { target = r.target, requests = n, rate = req.rate, latency = lat,
          closed_without_response = req.closed_without_response, per_request = inv:list(per),
          inside_ms = inside, verdict = verdict, slow = (lat.p99 or 0) * 1000 > p.slow_ms,
          quality = { requests = req.quality, syscalls = sc and sc.quality }, notes = inv:list(r.notes or {}) }
        return
      end
      inv:show(inv:render_tracer('requests', req))
      if #per > 0 then
        local shown = {}
        for i = 1, math.min(p.top, #per) do shown[i] = per[i] end
        inv:print('\nthe server\'s syscalls per request (time between requests marked):')
        inv:show(text.table(shown, {
          { key = 'name', title = 'SYSCALL', align = 'l' },
          { key = 'calls', title = 'CALLS/REQ', fmt = function(v) return string.format('%.2f', v) end },
          { key = 'ms', title = 'MS/REQ', fmt = function(v) return string.format('%.3f', v) end },
          { key = 'between', title = '', align = 'l', fmt = function(v) return v and 'between requests' or '' end },
          { key = 'left_out', title = '', align = 'l', fmt = function(v)
            return v and string.format('at least (%d longer than any request left out)', v) or ''
          end },
          { key = 'ms_upper', title = '', align = 'l', fmt = function(v)
            return v and string.format('at most %.3f', v) or ''
          end },
        }))
      end
      inv:print('verdict: ' .. verdict)
      for _, note in ipairs(r.notes or {}) do inv:print('note: ' .. note) end
    end,
  },
}
