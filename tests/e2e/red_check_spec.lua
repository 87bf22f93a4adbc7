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
      local out, err, status = h.pm("red-check --endpoint '" .. n.url('/delay50') .. "' --duration 2s --rate 100 --connections 20 --json")
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      assert.is_true(r.open_loop)
      assert.is_true(r.latency.p50 >= 0.050 and r.latency.p50 < 0.060, 'p50 ' .. r.latency.p50)
      assert.is_true(r.latency.p99 >= 0.050, 'p99 ' .. r.latency.p99)
      assert.equal(0, r.errors.total)
      -- 100 req/s for 2 s: about 200 sent and answered
      assert.is_true(r.errors.status['2xx'] >= 190 and r.errors.status['2xx'] <= 201, 'answered ' .. r.errors.status['2xx'])
      assert.is_true(math.abs(r.rate.sent - 100) < 5, 'rate ' .. r.rate.sent)
    end)
  end)

  it('counts about 10% errors on the 10% error endpoint, and prints the RED table', function()
    with_nginx(function(n)
      local out, err, status = h.pm("red-check --endpoint '" .. n.url('/err10') .. "' --duration 2s --rate 1000 --connections 10 --json")
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
      local out, err, status = h.pm("red-check --endpoint '" .. n.url('/delay50') .. "' --duration 1s --rate 50 --connections 10 --timeout 20ms --json")
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
      local out, err, status = h.pm("red-check --endpoint '" .. n.url('/chunked') .. "' --duration 1s --connections 4 --json")
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      assert.is_false(r.open_loop)
      assert.equal(0, r.errors.total)
      assert.is_true(r.errors.status['2xx'] > 100)
    end)
  end)

  it('measures RED passively from the nginx worker\'s own syscalls while someone else loads it', function()
    if not h.need_root('BPF syscall tracer') then return end
    with_nginx(function(n)
      local sys = require('perf_manual._c.sys')
      local worker
      for line in io.popen('pgrep -P ' .. n.pid):lines() do worker = tonumber(line) end
      assert(worker, 'no nginx worker')
      local out, err = os.tmpname(), os.tmpname()
      local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'red-check', '--passive', tostring(worker), '--duration', '2', '--json' },
        { stdout = out, stderr = err }))
      sys.sleep(0.5)
      local res = assert(require('perf_manual.http').load { url = n.url('/ok'), rate = 200, connections = 5, duration = 1 })
      local _, code = sys.wait(pid)
      local text = io.open(out):read('*a')
      local etext = io.open(err):read('*a')
      os.remove(out); os.remove(err)
      assert.equal(0, code, etext)
      local r = cjson.decode(text)
      assert.equal('passive', r.mode)
      assert.equal(200, res.responses)
      -- one write-side call per response: the tracer saw every one of them
      local writes = r.syscalls.write.count
      assert.is_true(writes >= 200 and writes <= 210, 'writes ' .. writes)
      assert.is_true(r.syscalls.accept.count >= 1)
      assert.equal(0, r.errors.total)
    end)
  end)

  it('counts a port that refuses as connect errors and exits 2 when none worked', function()
    local socket = require('posix.sys.socket')
    -- a port nobody listens on: bind it, do not listen
    local fd = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    assert(socket.bind(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = 0 }))
    local port = socket.getsockname(fd).port
    local out, err, status = h.pm(string.format("red-check --endpoint http://127.0.0.1:%d/ --duration 0.5s --rate 50", port))
    require('posix.unistd').close(fd)
    assert.equal(2, status)
    assert.matches('transport  connect %d+', out)
    assert.matches('not one connection to http://127.0.0.1:%d+/ succeeded %(Connection refused%)', err)
  end)

  it('refuses a malformed URL with one line and exit 2', function()
    local out, err, status = h.pm("red-check --endpoint 'localhost:80' --duration 1s")
    assert.equal(2, status)
    assert.equal('', out)
    assert.equal("perf_manual: red-check: malformed URL 'localhost:80': expected http://host[:port]/path\n", err)
  end)
end)
