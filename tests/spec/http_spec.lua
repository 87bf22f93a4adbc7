local http = require('perf_manual.http')
local c = require('perf_manual._c.http')

describe('perf_manual.http.parse_url', function()
  local good = {
    { 'http://127.0.0.1:8080/api?x=1', '127.0.0.1', 8080, '/api?x=1', '127.0.0.1:8080' },
    { 'http://example.com', 'example.com', 80, '/', 'example.com' },
    { 'HTTP://Host.Example:81', 'Host.Example', 81, '/', 'Host.Example:81' },
    { 'http://[::1]:9000/x#frag', '::1', 9000, '/x', '[::1]:9000' },
    { 'http://h?q', 'h', 80, '/?q', 'h' },
    { 'https://example.com/x', 'example.com', 443, '/x', 'example.com' },
    { 'HTTPS://h:8443', 'h', 8443, '/', 'h:8443' },
    { 'https://h:80/', 'h', 80, '/', 'h:80' },
  }
  for _, case in ipairs(good) do
    it('parses ' .. case[1], function()
      local u = assert(http.parse_url(case[1]))
      assert.same({ case[2], case[3], case[4], case[5] }, { u.host, u.port, u.path, u.authority })
    end)
  end
  it('tells a name from an address (names are sent as SNI and checked in the certificate)', function()
    assert.is_false(assert(http.parse_url('https://localhost/')).ip)
    assert.is_true(assert(http.parse_url('https://127.0.0.1/')).ip)
    assert.is_true(assert(http.parse_url('https://[::1]:8443/')).ip)
    assert.equal('https', assert(http.parse_url('HTTPS://h/')).scheme)
  end)
  local bad = {
    { 'localhost:8080', 'expected http[s]://host[:port]/path' },
    { 'ftp://x/', "unsupported scheme 'ftp'" },
    { 'http://:80/', "bad host in 'http://:80/'" },
    { 'http://h:99999/', 'port out of range' },
    { 'http://h:/', 'empty port' },
    { 'http://u:p@h/', 'credentials in the URL are not supported' },
    { 'http://h/a b', 'URL contains spaces or control characters' },
    { '', 'empty URL' },
  }
  for _, case in ipairs(bad) do
    it('rejects ' .. string.format('%q', case[1]), function()
      local u, err = http.parse_url(case[1])
      assert.is_nil(u)
      assert.equal(case[2], err)
    end)
  end
  it('builds a keep-alive HTTP/1.1 request with the Host header', function()
    assert.equal('GET /a HTTP/1.1\r\nHost: h:81\r\nUser-Agent: perf_manual-red-check\r\nAccept: */*\r\n\r\n',
      http.request(assert(http.parse_url('http://h:81/a'))))
  end)
end)

describe('perf_manual.http request options', function()
  local u = assert(http.parse_url('https://api.example:8443/v1/items?x=1'))
  it('sends the method, the headers in order and the body with its length', function()
    assert.equal('POST /v1/items?x=1 HTTP/1.1\r\nHost: api.example:8443\r\nUser-Agent: perf_manual-red-check\r\n'
      .. 'Accept: */*\r\nContent-Type: application/json\r\nX-Trace: a:b\r\nContent-Length: 9\r\n\r\n{"a": 1}\n',
      http.request(u, { method = 'POST', headers = { 'Content-Type: application/json', 'X-Trace:   a:b ' },
        body = '{"a": 1}\n' }))
  end)
  it('lets a header replace a default of the same name, whatever its case', function()
    assert.equal('GET / HTTP/1.1\r\nUser-Agent: perf_manual-red-check\r\nAccept: */*\r\nhost: other\r\n'
      .. 'Connection: close\r\n\r\n',
      http.request(assert(http.parse_url('http://h/')), { headers = { 'host: other', 'Connection: close' } }))
  end)
  it('says Content-Length: 0 for a POST without a body, and nothing for a GET', function()
    local post = http.request(u, { method = 'POST' })
    assert.matches('\r\nContent%-Length: 0\r\n\r\n$', post)
    assert.is_nil(http.request(u, { method = 'DELETE' }):find('Content-Length', 1, true))
  end)
  local headers = {
    { 'X-A: 1', 'X-A', '1' },
    { 'X-Empty:', 'X-Empty', '' },
    { 'Authorization: Bearer abc.def', 'Authorization', 'Bearer abc.def' },
    { 'X-Tab:\tv\tw', 'X-Tab', 'v\tw' },
    { 'X-A 1', nil, "bad header 'X-A 1' (expected 'Name: value')" },
    { ': v', nil, "bad header ': v' (expected 'Name: value')" },
    { 'X A: v', nil, "bad header 'X A: v' (expected 'Name: value')" },
    { 'X-A: 1\r\nX-B: 2', nil, "bad header 'X-A' (control characters in the value)" },
    { 'Content-Length: 5', nil, "header 'Content-Length' is set by red-check itself (from --body)" },
    { 'transfer-encoding: chunked', nil, "header 'transfer-encoding' is set by red-check itself (from --body)" },
  }
  for _, case in ipairs(headers) do
    it('parses the header ' .. string.format('%q', case[1]), function()
      local name, value = http.parse_header(case[1])
      assert.same({ case[2], case[3] }, { name, value })
    end)
  end
  it('takes a method that is a token, and nothing else', function()
    assert.equal('PURGE', http.check_method('PURGE'))
    assert.same({ nil, "bad method 'GET /x' (expected a token like GET, POST or PURGE)" },
      { http.check_method('GET /x') })
    assert.same({ nil, "bad method '' (expected a token like GET, POST or PURGE)" }, { http.check_method('') })
  end)
  it('refuses TLS options for a plain http:// URL', function()
    local ok, err = pcall(http.load, { url = 'http://127.0.0.1:1/', insecure = true })
    assert.is_false(ok)
    assert.equal('red-check: --insecure is for https:// URLs', tostring(err))
    ok, err = pcall(http.load, { url = 'http://127.0.0.1:1/', cacert = '/x.pem' })
    assert.is_false(ok)
    assert.equal('red-check: --cacert is for https:// URLs', tostring(err))
  end)
  it('loads OpenSSL only for an https URL (a plain run, and every start, pay nothing for it)', function()
    local script = os.tmpname()
    local f = assert(io.open(script, 'w'))
    f:write([[
      require('perf_manual.http').load { url = arg[1], duration = 0.05, connections = 1 }
      local maps = io.open('/proc/self/maps'):read('*a')
      io.write(maps:find('libssl', 1, true) and 'ssl' or 'none')
    ]])
    f:close()
    local h = test_helpers
    local plain = h.sh(string.format('%s/bin/perf_manual --lua %s http://127.0.0.1:1/', h.root, script))
    local tls = h.sh(string.format('%s/bin/perf_manual --lua %s https://127.0.0.1:1/', h.root, script))
    os.remove(script)
    assert.same({ 'none', 'ssl' }, { plain, tls })
  end)
  it('refuses a CA file that holds no certificate, before sending anything', function()
    local ok, err = pcall(http.load, { url = 'https://127.0.0.1:1/', cacert = '/etc/hostname', duration = 0.1 })
    assert.is_false(ok)
    assert.matches('^red%-check: cannot load the CA certificates from /etc/hostname: .*no certificate', tostring(err))
  end)
end)

-- Feeds a response in every possible two-piece split, as reads may cut it.
local function every_split(text)
  local out = {}
  for i = 0, #text do out[#out + 1] = c._parse({ text:sub(1, i), text:sub(i + 1) }) or false end
  return out
end

describe('perf_manual._c.http response parser', function()
  local cases = {
    { 'Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', 200, 5, false },
    { 'chunked with extension and trailer',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n',
      200, 15, false },
    { 'Connection: close', 'HTTP/1.1 500 Oops\r\nconnection: Close\r\ncontent-length: 2\r\n\r\nno', 500, 2, true },
    { 'HTTP/1.0 closes', 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx', 200, 1, true },
    { '204 has no body', 'HTTP/1.1 204 No Content\r\n\r\n', 204, 0, false },
    { '100 Continue then the answer', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n',
      201, 0, false },
  }
  for _, case in ipairs(cases) do
    it('reads ' .. case[1] .. ' however the bytes are split', function()
      for i, r in ipairs(every_split(case[2])) do
        assert.is_table(r, 'split at ' .. (i - 1))
        assert.same({ case[3], case[4], case[5], #case[2] }, { r.status, r.body, r.close, r.used })
      end
    end)
  end
  it('stops at the end of one response and leaves the next one alone', function()
    local r = assert(c._parse({ 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n' }))
    assert.equal(2, r.body)
    assert.equal(#'HTTP/1.1 200 OK\r\n', r.left_over)
  end)
  it('reads the answer to HEAD as a head alone, whatever its Content-Length says', function()
    local text = 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n'
    local r = assert(c._parse({ text }, true))
    assert.same({ 200, 0, false, #text }, { r.status, r.body, r.close, r.used })
    assert.same({ nil, 'incomplete response' }, { c._parse({ text }) })
  end)
  it('reads a body that ends when the server closes', function()
    local r = assert(c._parse({ 'HTTP/1.1 200 OK\r\n\r\n', 'abc', 'de' }))
    assert.same({ 200, 5, true }, { r.status, r.body, r.close })
  end)
  local broken = {
    { 'SSH-2.0-OpenSSH\r\n\r\n', 'bad status line' },
    { 'HTTP/1.1 2x0 OK\r\n\r\n', 'bad status code' },
    { 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', 'bad Content-Length' },
    { 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'bad chunk size' },
    { 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY', 'missing CRLF after chunk' },
    { 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort', 'incomplete response' },
  }
  for _, case in ipairs(broken) do
    it('rejects ' .. case[2], function()
      local r, err = c._parse({ case[1] })
      assert.is_nil(r)
      assert.equal(case[2], err)
    end)
  end
end)

describe('perf_manual._c.http histogram', function()
  it('keeps every percentile within 1.6% of the exact value', function()
    math.randomseed(7)
    local vals = {}
    for i = 1, 20000 do
      -- log-normal-ish latencies from 20us to ~2s
      vals[i] = math.floor(math.exp(3 + math.random() * 11.5))
    end
    local h = c._hist(vals)
    local sorted = {}
    for i, v in ipairs(vals) do sorted[i] = v end
    table.sort(sorted)
    for k, q in pairs({ p50 = 0.5, p90 = 0.9, p99 = 0.99, ['p99.9'] = 0.999 }) do
      local exact = sorted[math.ceil(q * #sorted)]
      assert.is_true(math.abs(h[k] - exact) / exact <= 0.016, k .. ': ' .. h[k] .. ' vs exact ' .. exact)
    end
    assert.equal(sorted[#sorted], h.max)
    assert.equal(sorted[1], h.min)
  end)
  it('is exact below 128 us', function()
    local h = c._hist({ 1, 2, 3, 100, 127 })
    assert.same({ 3, 127, 1 }, { h.p50, h.max, h.min })
  end)
end)
