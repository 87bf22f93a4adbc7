-- red-check: Rate, Errors, Duration of an HTTP/1.1 endpoint.
-- Open loop at a fixed rate, so latency counts from the moment each request
-- was due (a slow server cannot hide its queue); or, with --passive PID, from
-- the process's own accept/read/write syscalls, without adding load.
local util = require('perf_manual.util')

return playbook {
  name = 'red-check',
  summary = 'Rate, errors and latency of an HTTP endpoint (open-loop load, or passive from syscalls)',
  examples = [[
  perf_manual red-check --endpoint http://127.0.0.1:8080/api --duration 10s --rate 200
  perf_manual red-check --endpoint http://127.0.0.1:8080/ --duration 5s --connections 50 --json
  perf_manual red-check --passive 1234 --duration 10s]],
  params = {
    endpoint = param.string { 'http://host[:port]/path to load', optional = true },
    duration = param.duration { 'how long to send requests', default = '10s' },
    rate = param.number { 'requests per second, open loop (omit: as fast as the connections go)', optional = true },
    connections = param.integer { 'keep-alive connections', default = 10 },
    timeout = param.duration { 'per-request timeout', default = '5s' },
    passive = param.pid { 'measure this server process and its children from their syscalls instead of sending load',
      optional = true },
    json = param.flag { 'print the result as JSON' },
    save = param.path { 'also write DIR/red-check.json (histogram and per-second series) for diff and report', optional = true },
  },

  step 'load the endpoint' {
    function(inv, p)
      local red = require('perf_manual.analyzers.red')
      local s
      if p.passive then
        s = red.passive(p.passive, p.duration, inv)
      else
        if not p.endpoint then util.user_error('red-check: give --endpoint URL (or --passive PID)') end
        local http = require('perf_manual.http')
        local u, uerr = http.parse_url(p.endpoint)
        if not u then util.user_error("red-check: malformed URL '" .. p.endpoint .. "': " .. uerr) end
        if p.rate and p.rate <= 0 then util.user_error('red-check: --rate must be above 0') end
        if p.connections < 1 then util.user_error('red-check: --connections must be at least 1') end
        if p.duration <= 0 then util.user_error('red-check: --duration must be above 0') end
        inv:progress(string.format('red-check: %s for %s ...', p.endpoint, util.fmt_duration(p.duration)))
        local res, err = http.load { url = p.endpoint, rate = p.rate, connections = p.connections,
                                     duration = p.duration, timeout = p.timeout }
        inv:progress_done()
        if not res then util.user_error('red-check: ' .. err) end
        s = red.summarize(res)
      end
      for _, f in ipairs(red.findings(s)) do inv:finding(f) end
      if p.save then
        local mok, merr = require('perf_manual.store').mkdir_p(p.save)
        if not mok then util.user_error('red-check: ' .. merr) end
        local wok, werr = util.write_atomic(p.save .. '/red-check.json', util.json_encode(s, true) .. '\n')
        if not wok then util.user_error('red-check: ' .. werr) end
      end
      if p.json then
        local out = {}
        for k, v in pairs(s) do if k ~= 'series' then out[k] = v end end
        inv:print(util.json_encode(out, true))
      else
        inv:show(red.render(s, { charts = require('perf_manual.report.charts') }))
      end
      if s.unreachable then
        inv.err:write(string.format('perf_manual: red-check: not one connection to %s succeeded (%s)\n',
          s.url or '?', s.errors.last_error or 'no answer'))
        inv.exit_status = 2
      end
    end,
  },
}
