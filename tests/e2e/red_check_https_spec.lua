-- red-check over https against a private nginx with a TLS listener whose
-- certificate comes from a CA made for the run; nginx's access log is the
-- ground truth for what arrived (count, method, header, body, TLS version,
-- resumed sessions) and how long nginx took.
local h = test_helpers
package.path = h.root .. '/tests/?.lua;' .. package.path
local nginx = require('e2e.nginx')
local cjson = require('cjson')

local function with_nginx(fn)
  local why = nginx.missing()
  if not why and not h.sh('command -v openssl >/dev/null') then
    why = 'openssl is not installed (apt-get install openssl)'
  end
  if why then
    if os.getenv('PM_REQUIRE_BPF') == '1' then error(why) end
    return pending(why)
  end
  h.with_machine_lock(function()
    local n = nginx.start { tls = true, access_log = true }
    local ok, err = pcall(fn, n)
    n.stop()
    if not ok then error(err, 0) end
  end)
end

local function red(args)
  return h.pm('red-check ' .. args)
end

local function count(list, pred)
  local k = 0
  for _, x in ipairs(list) do if pred(x) then k = k + 1 end end
  return k
end

describe('red-check over https e2e', function()
  it('refuses a certificate it cannot verify: exit 2, the reason, and not one request reaches nginx', function()
    with_nginx(function(n)
      local url = n.https_url('/ok')
      local out, err, status = red("--endpoint '" .. url .. "' --duration 0.5s --rate 100 --json")
      assert.equal(2, status)
      assert.equal('perf_manual: red-check: not one TLS handshake with ' .. url .. ' succeeded (certificate verify '
        .. 'failed: unable to get local issuer certificate): give the CA with --cacert FILE, or --insecure\n', err)
      local r = cjson.decode(out)
      assert.is_true(r.errors.attempts >= 45, 'attempts ' .. r.errors.attempts)
      assert.equal(r.errors.attempts, r.errors.transport.tls)   -- every failure is a TLS one
      assert.equal(0, r.errors.transport.connect)
      assert.equal(0, r.tls.handshakes_ok)
      assert.is_nil(r.latency)
      assert.same({ { kind = 'TLS handshake failed', count = r.errors.attempts } },
        require('perf_manual.analyzers.findings').error_kinds(r))
      assert.equal(0, #nginx.read_access_log(n))
      -- the system store is where it looked: OpenSSL's SSL_CERT_FILE names another bundle
      local out1, err1, status1 = h.sh(string.format("SSL_CERT_FILE=%s %s/bin/perf_manual red-check --endpoint '%s' "
        .. '--duration 0.3s --rate 20 --json', n.cacert, h.root, url))
      assert.equal(0, status1, err1)
      local answered = cjson.decode(out1).errors.status['2xx']
      assert.is_true(answered >= 5)
      assert.equal(answered, #nginx.read_access_log(n))
      -- a CA that is trusted, but a certificate that does not name the address
      local _, err2, status2 = red(string.format("--endpoint '%s' --cacert %s --duration 0.3s --rate 20",
        n.https_url('/ok', '127.0.0.2'), n.cacert))
      assert.equal(2, status2)
      assert.matches('certificate verify failed: IP address mismatch', err2, 1, true)
      assert.equal(answered, #nginx.read_access_log(n))
    end)
  end)

  it('with --cacert: every answer counted is a request in the access log, over TLS 1.3, by name and by address',
    function()
    with_nginx(function(n)
      local total = 0
      for _, host in ipairs({ '127.0.0.1', 'localhost' }) do
        local out, err, status = red(string.format("--endpoint '%s' --cacert %s --duration 1s --rate 300 "
          .. "--connections 5 --json", n.https_url('/ok', host), n.cacert))
        assert.equal(0, status, err)
        local r = cjson.decode(out)
        assert.equal(0, r.errors.total)
        assert.is_true(r.tls.verified)
        assert.equal('TLSv1.3', r.tls.version)
        assert.is_true(r.errors.status['2xx'] >= 290, 'answered ' .. r.errors.status['2xx'])
        total = total + r.errors.status['2xx']
        local log = nginx.read_access_log(n)
        assert.equal(total, #log)
        assert.equal(#log, count(log, function(l)
          return l.status == 200 and l.method == 'GET' and l.tls == 'TLSv1.3'
        end))
      end
    end)
  end)

  it('with --insecure: works, and says the certificate was not verified', function()
    with_nginx(function(n)
      local out, err, status = red("--endpoint '" .. n.https_url('/ok') .. "' --insecure --duration 0.5s --rate 100")
      assert.equal(0, status, err)
      assert.matches('Errors     0 of %d+', out)
      assert.matches('TLS        TLSv1%.3 [%w_]+, %d+ handshakes? %(%d+ resumed%), '
        .. 'certificate not verified %(%-%-insecure%)', out)
    end)
  end)

  it('agrees with nginx on the 50 ms endpoint: its request time is a little under ours', function()
    with_nginx(function(n)
      local out, err, status = red(string.format("--endpoint '%s' --cacert %s --duration 2s --rate 100 "
        .. "--connections 20 --json", n.https_url('/delay50'), n.cacert))
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      local log = nginx.read_access_log(n)
      assert.equal(r.errors.status['2xx'], #log)
      local secs = {}
      for i, l in ipairs(log) do secs[i] = l.seconds end
      table.sort(secs)
      local theirs = secs[math.ceil(#secs / 2)]
      -- nginx times whole milliseconds from its cached clock; ours includes the
      -- trip through loopback and TLS, and handshakes of new connections
      assert.is_true(theirs >= 0.049 and theirs <= 0.052, 'nginx p50 ' .. theirs)
      assert.is_true(r.latency.p50 >= theirs - 0.0015 and r.latency.p50 <= theirs + 0.005,
        'red-check p50 ' .. r.latency.p50 .. ', nginx p50 ' .. theirs)
      assert.is_true(r.latency.p99 >= 0.049, 'p99 ' .. r.latency.p99)
    end)
  end)

  it('resumes TLS sessions on new connections, as nginx saw them (Connection: close per request)', function()
    with_nginx(function(n)
      local out, err, status = red(string.format("--endpoint '%s' --cacert %s --duration 1s --rate 200 "
        .. "--connections 10 --header 'Connection: close' --json", n.https_url('/ok', 'localhost'), n.cacert))
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      assert.equal(0, r.errors.total)
      local log = nginx.read_access_log(n)
      assert.equal(r.errors.status['2xx'], #log)
      -- one handshake per request, and all but the first few resumed
      assert.equal(#log, r.tls.handshakes_ok)
      assert.equal(count(log, function(l) return l.reused end), r.tls.resumed)
      assert.is_true(r.tls.resumed >= #log - 10, 'resumed ' .. r.tls.resumed .. ' of ' .. #log)
    end)
  end)

  it('sends the method, headers and body it is given, as nginx received them', function()
    with_nginx(function(n)
      local body = os.tmpname()
      local f = assert(io.open(body, 'w'))
      f:write('{"item": 42}\n')
      f:close()
      local out, err, status = red(string.format("--endpoint '%s' --cacert %s --duration 0.5s --rate 40 --method PUT "
        .. "--header 'X-PM-Test: from red-check' --header 'Content-Type: application/json' --body %s --json",
        n.https_url('/echo'), n.cacert, body))
      os.remove(body)
      assert.equal(0, status, err)
      local r = cjson.decode(out)
      assert.equal(0, r.errors.total)
      local log = nginx.read_access_log(n)
      assert.equal(r.errors.status['2xx'], #log)
      assert.is_true(#log >= 18, 'requests ' .. #log)
      for _, l in ipairs(log) do
        assert.same({ 'PUT', 200, 'from red-check', '{\\"item\\": 42}\\n' }, { l.method, l.status, l.header, l.body })
      end
      -- HEAD: answered with a head alone, which must not wait for a body
      local out2, err2, status2 = red(string.format("--endpoint '%s' --cacert %s --duration 0.5s --rate 40 "
        .. "--method HEAD --timeout 1s --json", n.https_url('/echo'), n.cacert))
      assert.equal(0, status2, err2)
      local r2 = cjson.decode(out2)
      assert.equal(0, r2.errors.total)
      assert.equal(r2.errors.status['2xx'], count(nginx.read_access_log(n), function(l) return l.method == 'HEAD' end))
    end)
  end)

  it('fits its connections in 64 open files as plain http does, and refuses more (OpenSSL holds no descriptor)',
    function()
    with_nginx(function(n)
      local function run(url, conns)
        return h.sh(string.format("ulimit -n 64; timeout -s KILL 60 %s/bin/perf_manual red-check --endpoint '%s' "
          .. '--connections %d --duration 0.5 --cacert %s --json', h.root, url, conns, n.cacert))
      end
      local out, err, status = run(n.https_url('/ok'), 20)
      assert.equal(0, status, err)
      assert.equal(0, cjson.decode(out).errors.total)
      local _, err2, status2 = run(n.https_url('/ok'), 100)
      assert.equal(2, status2)
      assert.matches('perf_manual: red%-check: %-%-connections 100 needs about %d+ open files, but the limit is 64',
        err2)
      -- the same count as for plain http: TLS costs no descriptor of its own
      local need_tls = tonumber(err2:match('needs about (%d+)'))
      local _, err3 = h.sh(string.format("ulimit -n 64; %s/bin/perf_manual red-check --endpoint '%s' --connections 100 "
        .. '--duration 0.5', h.root, n.url('/ok')))
      assert.equal(tonumber(err3:match('needs about (%d+)')), need_tls)
    end)
  end)
end)
