--- RED measurement of a service: active (open-loop HTTP load from
--- perf_manual.http, latency counted from when each request was due) or
--- passive (the request tracer on a server process and its children, on a
--- measurement session). Returns raw results; perf_manual.analyzers.red
--- summarises and judges them.
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local http = require('perf_manual.http')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')
local red_tracer = require('perf_manual.tracers.red')

local M = {}

--- Loads an endpoint. opts: endpoint, rate, connections, duration, timeout,
--- progress; method, headers, body_file (the request body, read once);
--- cacert, insecure (https). Returns the load result, or nil and why.
function M.active(opts)
  local u, uerr = http.parse_url(opts.endpoint)
  if not u then
    util.user_error("red-check: malformed URL '" .. tostring(opts.endpoint) .. "': " .. tostring(uerr))
  end
  if opts.progress then
    opts.progress(string.format('red-check: %s for %s ...', opts.endpoint, util.fmt_duration(opts.duration)))
  end
  local body
  if opts.body_file then
    local rerr
    body, rerr = util.readfile(opts.body_file)
    if not body then util.user_error('red-check: cannot read --body: ' .. tostring(rerr)) end
  end
  local res, err = http.load { url = opts.endpoint, rate = opts.rate, connections = opts.connections,
    duration = opts.duration, timeout = opts.timeout, method = opts.method, headers = opts.headers, body = body,
    cacert = opts.cacert, insecure = opts.insecure }
  if not res then return nil, 'red-check: ' .. tostring(err) end
  return res
end

--- Traces the requests a server process answers. opts: target (a pid
--- target), duration, progress, note, max_overhead. Returns the tracer's
--- result, the pid and the seconds traced.
function M.passive(opts)
  if sys.geteuid() ~= 0 then util.user_error('red-check: --passive needs root (BPF syscall tracing)') end
  local why = measure.bpf_unavailable()
  if why then util.user_error('red-check: --passive: ' .. why) end
  return measure.with_session({ target = opts.target, duration = opts.duration, what = 'red-check',
    command = 'red-check', max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note }, function(s)
    s:start()
    local pid = s.target.pid
    if not pid then util.user_error('red-check: --passive needs a process, not ' .. s.target.label) end
    local t, err = s:start_tracer('red', red_tracer, { pid = pid })
    if not t then util.user_error('red-check: cannot trace the syscalls of ' .. pid .. ': ' .. tostring(err)) end
    s:run {
      label = function(now)
        return string.format('red-check: watching pid %d%s, %s of %s', pid,
          #t.pids > 1 and string.format(' and %d children', #t.pids - 1) or '', util.fmt_duration(now - s.t0),
          util.fmt_duration(s.duration))
      end,
    }
    local res = s:stop_tracers().red
    if not res then util.user_error('red-check: reading the request tracer failed: ' .. tostring(s.errors.red)) end
    -- a launched server (red-check -- CMD): stopped now, so the result says how it ended
    if s.owns_target then targets.stop(s.target) end
    res.command = s.target.launched and targets.describe(s.target) or nil
    -- a window cut short is said, in the result and the text
    res.ended_by, res.exited_after = s.ended_by, s.exited_after
    if s.ended_by == 'target exited' and s:command_exited() then -- luacheck: ignore 542
      -- the command's life is the window
    elseif s.ended_by == 'target exited' then
      res.partial = string.format('process %d exited after %s of the %s asked: the figures cover only that', pid,
        util.fmt_duration(s.exited_after or s:elapsed()), util.fmt_duration(s.duration))
    elseif s.ended_by == 'interrupted' then
      res.partial = string.format('stopped early (Ctrl-C) after %s of the %s asked: the figures cover only that',
        util.fmt_duration(s:elapsed()), util.fmt_duration(s.duration))
    end
    if res.partial then s:note(res.partial) end
    return res, pid, sys.now() - s.t0
  end)
end

return M
