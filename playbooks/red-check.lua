-- red-check: Rate, Errors, Duration of an HTTP/1.1 endpoint (http or https).
-- Open loop at a fixed rate, so latency counts from the moment each request
-- was due (a slow server cannot hide its queue); or, with --passive PID, from
-- the process's own accept/read/write syscalls, without adding load.
-- Measured by lib/perf_manual/measure/red.lua, judged by analyzers/red.lua.
return playbook {
  name = 'red-check',
  topic = 'requests',
  summary = 'Rate, errors and latency of an HTTP endpoint (open-loop load, or passive from syscalls)',
  examples = [[
  perf_manual red-check --endpoint http://127.0.0.1:8080/api --duration 10s --rate 200
  perf_manual red-check --endpoint http://127.0.0.1:8080/ --duration 5s --connections 50 --json
  perf_manual red-check --endpoint https://api.example.com/health --rate 50 --duration 10s
  perf_manual red-check --endpoint https://127.0.0.1:8443/api --cacert ca.pem --method POST \
    --header 'Content-Type: application/json' --body req.json --rate 100
  perf_manual red-check --passive 1234 --duration 10s
  perf_manual red-check --duration 30s -- ./server --port 8080   # launched, measured passively
  perf_manual red-check --replay /tmp/red   # the RED summary a --save left in /tmp/red again]],
  params = {
    endpoint = param.string { 'http[s]://host[:port]/path to load', optional = true },
    duration = param.duration { 'how long to send requests (with -- COMMAND: until it exits)', default = '10s',
      above = 0, until_exit = true },
    rate = param.number { 'requests per second, open loop (omit: as fast as the connections go)', optional = true,
      above = 0, max = 1e7 },
    connections = param.integer { 'keep-alive connections', default = 10, min = 1, max = 100000 },
    timeout = param.duration { 'per-request timeout', default = '5s', above = 0 },
    method = param.string { 'request method (default GET)', optional = true, conflicts = { 'passive', 'command' } },
    header = param.strings { "request header 'Name: value' (repeatable; replaces a default of that name)",
      conflicts = { 'passive', 'command' } },
    body = param.path { 'request body: the bytes of FILE, with its Content-Length', optional = true,
      conflicts = { 'passive', 'command' } },
    cacert = param.path { 'https: trust the CA certificates in this PEM file (default: the system store)',
      optional = true, conflicts = { 'insecure', 'passive', 'command' } },
    insecure = param.flag { 'https: do not verify the certificate (encrypted, but not authenticated)',
      conflicts = { 'passive', 'command' } },
    passive = param.pid { 'measure this server process and its children from their syscalls instead of sending load',
      optional = true, conflicts = { 'endpoint', 'rate' } },
    command = param.target { 'a server to launch and measure passively (its children too); usually given after --',
      optional = true, command = true, conflicts = { 'passive', 'endpoint', 'rate' } },
    json = param.flag { 'print the result as JSON' },
    save = param.path { 'also write DIR/red-check.json (histogram and per-second series) for diff and report',
      optional = true },
    replay = param.path { "show the RED summary recorded in DIR's red-check.json (no load)", optional = true },
  },

  step 'load the endpoint' {
    function(inv, p)
      if not (p.passive or p.endpoint or p.replay or p.command) then
        inv:fail('red-check: give --endpoint URL (or --passive PID)')
      end
      inv:check_output(p.save, 'dir', '--save')
      local s = inv:red_check { endpoint = p.endpoint, passive = p.passive,
        target = p.command and inv:target(p.command), duration = p.duration, rate = p.rate,
        connections = p.connections, timeout = p.timeout,
        method = p.method, headers = p.header, body_file = p.body, cacert = p.cacert, insecure = p.insecure }
      if s.available == false then inv:fail(tostring(s.why)) end
      for _, f in ipairs(s.findings) do inv:finding(f) end
      if p.save then
        inv:save_file(inv:mkdir(p.save) .. '/red-check.json', inv:without(s, { 'text', 'findings', 'artifact' }))
      end
      if p.json then
        inv:json(inv:without(s, { 'series', 'text', 'findings', 'artifact' }))
      else
        inv:show(s.text)
        local ended = s.command and inv:exit_text(s.command)
        if ended then inv:print(ended) end
      end
      if s.unreachable then
        inv.err:write(string.format('perf_manual: red-check: not one connection to %s succeeded (%s)\n',
          s.url or '?', s.errors.last_error or 'no answer'))
        inv.exit_status = 2
      elseif s.tls_failed then
        inv.err:write(string.format('perf_manual: red-check: not one TLS handshake with %s succeeded (%s)%s\n',
          s.url or '?', s.tls.last_error or '?', s.tls.last_error and s.tls.last_error:match('^certificate verify')
            and ': give the CA with --cacert FILE, or --insecure' or ''))
        inv.exit_status = 2
      end
    end,
  },
}
