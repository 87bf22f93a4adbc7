-- red-check against a private nginx on 127.0.0.1 with endpoints of known
-- delay and known error rate.
local h = test_helpers
package.path = h.root .. '/tests/?.lua;' .. package.path
local nginx = require('e2e.nginx')
local cjson = require('cjson')

local function with_nginx(fn)
  local why = nginx.missing()
  if why then
    if os.getenv('PM_REQUIRE_BPF') == '1' then error(why) end
    return pending(why)
  end
  h.with_machine_lock(function()
    local n = nginx.start()
    local ok, err = pcall(fn, n)
    n.stop()
    if not ok then error(err, 0) end
  end)
end

describe('red-check e2e', function()
  it('measures a 50 ms endpoint at p50 of about 50 ms, open loop, without errors', function()
    with_nginx(function(n)
      local out, err, status = h.pm("red-check --endpoint '" .. n.url('/delay50')
        .. "' --duration 2s --rate 100 --connections 20 --json")
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      assert.is_true(r.open_loop)
      -- nginx's timers fire on its cached millisecond clock, and a percentile is
      -- a histogram bucket's value: a hair under 50 ms is still the 50 ms endpoint
      assert.is_true(r.latency.p50 >= 0.049 and r.latency.p50 < 0.060, 'p50 ' .. r.latency.p50)
      assert.is_true(r.latency.p99 >= 0.049, 'p99 ' .. r.latency.p99)
      assert.equal(0, r.errors.total)
      -- 100 req/s for 2 s: about 200 sent and answered
      assert.is_true(r.errors.status['2xx'] >= 190 and r.errors.status['2xx'] <= 201,
        'answered ' .. r.errors.status['2xx'])
      assert.is_true(math.abs(r.rate.sent - 100) < 5, 'rate ' .. r.rate.sent)
    end)
  end)

  it('counts about 10% errors on the 10% error endpoint, and prints the RED table', function()
    with_nginx(function(n)
      local out, err, status = h.pm("red-check --endpoint '" .. n.url('/err10')
        .. "' --duration 2s --rate 1000 --connections 10 --json")
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      local attempts = r.errors.attempts
      assert.is_true(attempts >= 1900, 'attempts ' .. attempts)
      -- binomial(2000, 0.1): sd 0.67%; 6..14% is six sd wide
      assert.is_true(r.errors.ratio > 0.06 and r.errors.ratio < 0.14, 'ratio ' .. r.errors.ratio)
      assert.equal(r.errors.total, r.errors.status['5xx'])
      local text = h.pm("red-check --endpoint '" .. n.url('/err10') .. "' --duration 1s --rate 200")
      assert.matches('Errors%s+%d+ of %d+ %(%d+%.%d+%%%)', text)
      assert.matches('p99%.9 ', text)
    end)
  end)

  it('counts answers slower than --timeout as timeouts, not as latency', function()
    with_nginx(function(n)
      local out, err, status = h.pm("red-check --endpoint '" .. n.url('/delay50')
        .. "' --duration 1s --rate 50 --connections 10 --timeout 20ms --json")
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      assert.equal(0, r.errors.status['2xx'])
      assert.is_true(r.errors.transport.timeout >= 40, 'timeouts ' .. r.errors.transport.timeout)
      assert.equal(r.errors.attempts, r.errors.total)
      assert.is_nil(r.latency)   -- no answer came back: not measured, not 0
    end)
  end)

  it('reads chunked bodies at full speed (closed loop) without parse errors', function()
    with_nginx(function(n)
      local out, err, status = h.pm("red-check --endpoint '" .. n.url('/chunked')
        .. "' --duration 1s --connections 4 --json")
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      assert.is_false(r.open_loop)
      assert.equal(0, r.errors.total)
      assert.is_true(r.errors.status['2xx'] > 100)
    end)
  end)

  -- Hostile flags (issue 17): whatever is asked, the run ends on time.
  local function timed(line)
    local sys = require('perf_manual._c.sys')
    local t0 = sys.now()
    local out, err, status = h.sh(line)
    return out, err, status, sys.now() - t0
  end

  -- the files this test process has open would pass to the command and count
  -- against its limit of 64: it starts with stdin, stdout and stderr only
  -- (bash: dash closes no descriptor above 9)
  local function stdio_only(line)
    return "bash -c '" .. ('for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; '
      .. line):gsub("'", "'\\''") .. "'"
  end

  it('refuses more connections than open files at once, instead of spinning on EMFILE', function()
    with_nginx(function(n)
      -- the hard limit too, so nothing can raise it; KILL at 60 s marks the old spin
      local _, err, status, secs = timed(stdio_only(string.format(
        "ulimit -n 64; timeout -s KILL 60 %s/bin/perf_manual red-check --endpoint '%s' "
        .. "--connections 100 --duration 1", h.root, n.url('/ok'))))
      assert.is_true(secs < 15, 'took ' .. secs .. ' s')
      assert.equal(2, status, err)
      assert.matches('perf_manual: red%-check: %-%-connections 100 needs about %d+ open files, but the limit is 64',
        err)
      -- within the limit the run works
      local out, err2, status2, secs2 = timed(stdio_only(string.format(
        "ulimit -n 64; timeout -s KILL 60 %s/bin/perf_manual red-check --endpoint '%s' "
        .. "--connections 20 --duration 1 --json", h.root, n.url('/ok'))))
      assert.is_true(secs2 < 15, 'took ' .. secs2 .. ' s')
      assert.equal(0, status2, err2)
      assert.equal(0, cjson.decode(out).errors.total)
    end)
  end)

  it('keeps to --duration and obeys SIGINT at an absurd rate (the scheduler jumps, it does not step)', function()
    with_nginx(function(n)
      local _, err, status = h.pm("red-check --endpoint '" .. n.url('/ok') .. "' --rate 1e12 --duration 1")
      assert.equal(2, status)
      assert.matches('%-%-rate must be at most', err)
      -- the load generator itself, past the flag's range: 1e12 req/s for 1 s
      local script = os.tmpname()
      local f = assert(io.open(script, 'w'))
      f:write(string.format([[
        local r = assert(require('perf_manual._c.http').run { host = '127.0.0.1', port = '%d',
          request = 'GET /ok HTTP/1.1\r\nHost: x\r\n\r\n', rate = 1e12, connections = 4, duration = tonumber(arg[1]) })
        io.write(string.format('%%.0f %%.0f %%.0f\n', r.due, r.responses, r.elapsed))
      ]], n.port))
      f:close()
      local out, err2, status2, secs = timed(string.format('timeout -s KILL 60 %s/bin/perf_manual --lua %s 1',
        h.root, script))
      assert.equal(0, status2, err2)
      assert.is_true(secs < 15, 'took ' .. secs .. ' s')
      local due, responses = out:match('^(%d+) (%d+)')
      assert.is_true(tonumber(due) > 1e11, out)     -- every due request was counted
      assert.is_true(tonumber(responses) > 0, out)  -- and some were sent and answered
      -- a 30 s run stops at SIGINT after 1 s
      local _, err3, status3, secs3 = timed(string.format(
        'timeout --foreground --preserve-status -s INT -k 60 1 %s/bin/perf_manual --lua %s 30', h.root, script))
      os.remove(script)
      assert.is_true(secs3 < 15, 'took ' .. secs3 .. ' s')
      assert.equal(0, status3, err3)
    end)
  end)

  -- Passive mode: `red-check --passive PID --json` in a child process while
  -- this process loads nginx; the load starts once the tracer's programs
  -- are attached (its BPF links show in /proc/PID/fdinfo).
  local function bpf_links(pid)
    local n = 0
    for _, fd in ipairs(require('posix.dirent').dir('/proc/' .. pid .. '/fdinfo') or {}) do
      local info = fd:match('^%d+$') and require('perf_manual.util').readfile('/proc/' .. pid .. '/fdinfo/' .. fd)
      if info and info:match('link_type:') then n = n + 1 end
    end
    return n
  end

  local function passive_under_load(target, seconds, load)
    local sys = require('perf_manual._c.sys')
    local out, err = os.tmpname(), os.tmpname()
    local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'red-check', '--passive', tostring(target),
      '--duration', tostring(seconds), '--json' }, { stdout = out, stderr = err }))
    local attached = false
    for _ = 1, 400 do
      if bpf_links(pid) >= 3 then attached = true; break end
      if sys.wait(pid, true) ~= 'running' then break end
      sys.sleep(0.025)
    end
    local res = attached and assert(require('perf_manual.http').load(load))
    if not attached then sys.kill(pid, 15) end
    local _, code = sys.wait(pid)
    local text, etext = io.open(out):read('*a'), io.open(err):read('*a')
    os.remove(out); os.remove(err)
    assert(attached, 'the passive tracer never attached: ' .. etext)
    assert.equal(0, code, etext)
    return cjson.decode(text), res
  end

  local function worker_of(n)
    local worker
    for line in io.popen('pgrep -P ' .. n.pid):lines() do worker = tonumber(line) end
    return assert(worker, 'no nginx worker')
  end

  it('measures Duration passively from the nginx master and its worker: the 50 ms endpoint at about 50 ms', function()
    if not h.need_root('BPF request tracer') then return end
    with_nginx(function(n)
      local worker = worker_of(n)
      local r, res = passive_under_load(n.pid, 3,
        { url = n.url('/delay50'), rate = 200, connections = 20, duration = 1 })
      assert.equal('passive', r.mode)
      assert.same({ n.pid, worker }, r.processes)
      assert.equal(200, res.responses)
      -- every answer the load generator got is one request paired by the tracer
      assert.is_true(math.abs(r.requests.paired - res.responses) <= 2,
        'paired ' .. r.requests.paired .. ', responses ' .. res.responses)
      -- server time: 50 ms of echo_sleep, a little under what the client saw
      assert.is_true(r.latency.p50 >= 0.045 and r.latency.p50 <= 0.060, 'p50 ' .. r.latency.p50)
      assert.is_true(r.latency.p50 <= res.latency.p50 * 1.02,
        'passive p50 ' .. r.latency.p50 .. ', load generator p50 ' .. res.latency.p50)
      assert.is_true(r.latency.max >= r.latency['p99.9'] and r.latency['p99.9'] >= r.latency.p50)
      assert.equal(0, r.errors.total)
      assert.equal(0, r.requests.closed_without_response)
      assert.equal(0, r.requests.in_flight_at_end)
      assert.is_true(r.requests.connections_accepted >= 1)
      assert.is_true(r.rate.completed > 0)
    end)
  end)

  it('measures a fast endpoint from the worker alone far below 50 ms', function()
    if not h.need_root('BPF request tracer') then return end
    with_nginx(function(n)
      local worker = worker_of(n)
      local r, res = passive_under_load(worker, 3, { url = n.url('/ok'), rate = 500, connections = 5, duration = 1 })
      assert.same({ worker }, r.processes)
      assert.equal(500, res.responses)
      assert.is_true(math.abs(r.requests.paired - res.responses) <= 2,
        'paired ' .. r.requests.paired .. ', responses ' .. res.responses)
      assert.is_true(r.latency.p50 < 0.005, 'p50 ' .. r.latency.p50)
      assert.equal(0, r.errors.total)
    end)
  end)

  -- a tiny HTTP/1.1 client: one request, the whole /ok answer back
  local sock = require('posix.sys.socket')
  local unistd = require('posix.unistd')
  local function connect(n)
    local fd = assert(sock.socket(sock.AF_INET, sock.SOCK_STREAM, 0))
    assert(sock.connect(fd, { family = sock.AF_INET, addr = '127.0.0.1', port = n.port }))
    return fd
  end
  local function get_ok(fd)
    assert(sock.send(fd, 'GET /ok HTTP/1.1\r\nHost: x\r\n\r\n'))
    local got = ''
    while not got:find('\r\n\r\nok\n', 1, true) do got = got .. assert(sock.recv(fd, 4096)) end
  end
  -- polls the live tracer (bounded) until cond(result) holds
  local function until_seen(t, cond)
    local sys = require('perf_manual._c.sys')
    for _ = 1, 400 do
      if cond(t:read()) then return true end
      sys.sleep(0.025)
    end
    return false
  end

  it('counts requests on connections opened before tracing, and a request whose client hung up', function()
    if not h.need_root('BPF request tracer') then return end
    with_nginx(function(n)
      local tracer = require('perf_manual.tracers.red')
      local before = {}
      for i = 1, 3 do before[i] = connect(n); get_ok(before[i]) end
      local t = assert(tracer.start { pid = n.pid })
      local ok, err = pcall(function()
        assert.equal(3, t.conns_at_start)
        for _ = 1, 5 do
          for _, fd in ipairs(before) do get_ok(fd) end
        end
        -- half a request, then hang up: nginx reads it, sees EOF, closes
        local half = connect(n)
        assert(sock.send(half, 'GET /ok HTTP/1.1\r\nHo'))
        assert.is_true(until_seen(t, function(r) return r.started == 16 end), 'the half request was not read')
        unistd.close(half)
        for _, fd in ipairs(before) do unistd.close(fd) end
        before = {}
        assert.is_true(until_seen(t, function(r) return r.conns.tracked == 0 end), 'nginx kept connections open')
      end)
      for _, fd in ipairs(before) do unistd.close(fd) end
      local res = t:stop()
      if not ok then error(err, 0) end
      assert.equal(15, res.requests)
      assert.equal(1, res.closed_without_response)
      assert.equal(0, res.unpaired_writes)
      assert.equal(1, res.accepted)
      assert.equal(3, res.conns.at_start)
      assert.equal(0, res.conns.evicted)
      assert.equal(0, res.conns.pending)
      local s = require('perf_manual.analyzers.red').summarize_passive(res, n.pid)
      assert.equal(1, s.errors.total)
      assert.equal(16, s.errors.attempts)
    end)
  end)

  it('does not make requests out of reads and writes on a file', function()
    if not h.need_root('BPF request tracer') then return end
    local sys = require('perf_manual._c.sys')
    local tracer = require('perf_manual.tracers.red')
    local script, file, go = os.tmpname(), os.tmpname(), os.tmpname()
    os.remove(go)
    local f = assert(io.open(script, 'w'))
    f:write(string.format([[
      local fcntl, unistd, st = require('posix.fcntl'), require('posix.unistd'), require('posix.sys.stat')
      local sys = require('perf_manual._c.sys')
      for _ = 1, 2000 do if st.stat(%q) then break end sys.sleep(0.005) end
      local fd = assert(fcntl.open(%q, fcntl.O_RDWR))
      for i = 1, 50 do
        assert(unistd.write(fd, 'request ' .. i .. '\n'))
        assert(unistd.lseek(fd, 0, unistd.SEEK_SET))
        assert(unistd.read(fd, 64))
        assert(unistd.write(fd, 'answer\n'))
      end
      unistd.close(fd)
    ]], go, file))
    f:close()
    local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', '--lua', script }))
    local t, terr = tracer.start { pid = pid }
    io.open(go, 'w'):close()
    local _, code = sys.wait(pid)
    local res = t and t:stop()
    os.remove(script); os.remove(file); os.remove(go)
    assert(t, terr)
    assert.equal(0, code)
    assert.equal(0, res.requests)
    assert.equal(0, res.started)
    assert.equal(0, res.calls.read + res.calls.write)
    assert.is_true(res.other_fd.read >= 50, 'reads ' .. res.other_fd.read)
    assert.is_true(res.other_fd.write >= 100, 'writes ' .. res.other_fd.write)
  end)

  it('counts a port that refuses as connect errors and exits 2 when none worked', function()
    local socket = require('posix.sys.socket')
    -- a port nobody listens on: bind it, do not listen
    local fd = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    assert(socket.bind(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = 0 }))
    local port = socket.getsockname(fd).port
    local out, err, status = h.pm(string.format("red-check --endpoint http://127.0.0.1:%d/ --duration 0.5s --rate 50",
      port))
    require('posix.unistd').close(fd)
    assert.equal(2, status)
    assert.matches('transport  connect %d+', out)
    assert.matches('not one connection to http://127.0.0.1:%d+/ succeeded %(Connection refused%)', err)
  end)

  it('refuses a malformed URL with one line and exit 2', function()
    local out, err, status = h.pm("red-check --endpoint 'localhost:80' --duration 1s")
    assert.equal(2, status)
    assert.equal('', out)
    assert.equal("perf_manual: red-check: malformed URL 'localhost:80': expected http[s]://host[:port]/path\n", err)
  end)
end)
