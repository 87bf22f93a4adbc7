-- The HTTP side of `perf_manual serve` and a team's metrics playbook, over
-- a real loopback socket (no BPF needed).
local httpd = require('perf_manual.serve.httpd')
local serve = require('perf_manual.serve')
local prom = require('perf_manual.report.prometheus')
local socket = require('posix.sys.socket')
local unistd = require('posix.unistd')

-- connects, sends a request, lets srv answer it, returns the response text
local function roundtrip(srv, handler, request)
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.connect(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = srv.port }))
  assert(socket.send(fd, request))
  assert.is_true(srv:serve_once(5, handler))
  local parts = {}
  while true do
    local d = socket.recv(fd, 65536)
    if not d or d == '' then break end
    parts[#parts + 1] = d
  end
  unistd.close(fd)
  return table.concat(parts)
end

describe('serve.httpd', function()
  it('parses listen addresses and says what is wrong with a bad one', function()
    assert.same({ '127.0.0.1', 9464 }, { httpd.parse_listen('127.0.0.1:9464') })
    assert.same({ '::1', 80 }, { httpd.parse_listen('[::1]:80') })
    assert.same({ '0.0.0.0', 1 }, { httpd.parse_listen(':1') })
    assert.is_nil((httpd.parse_listen('9464')))
    local _, why = httpd.parse_listen('h:70000')
    assert.equal('port 70000 is out of range', why)
  end)

  it('parses a request head', function()
    local r = assert(httpd.parse_request('GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n'))
    assert.equal('GET', r.method)
    assert.equal('/metrics', r.path)
    assert.equal('text/plain', r.headers.accept)
    assert.is_nil((httpd.parse_request('nonsense')))
  end)

  it('refuses a port in use with a one-line reason', function()
    local a = assert(httpd.listen('127.0.0.1:0'))
    local b, why = httpd.listen('127.0.0.1:' .. a.port)
    a:close()
    assert.is_nil(b)
    assert.truthy(why:match('^cannot listen on 127%.0%.0%.1:%d+: '))
  end)
end)

describe('serve', function()
  it("serves a team's metrics playbook on /metrics, / and 404 elsewhere, text and OpenMetrics", function()
    local pb = serve.load_playbook(test_helpers.root .. '/tests/fixtures/serve/team.lua')
    local s = serve.new { playbook = pb, top_k = 3 }
    local srv = assert(httpd.listen('127.0.0.1:0'))
    local handler = function(req) return s:handle(req) end
    local resp = roundtrip(srv, handler, 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
    assert.truthy(resp:match('^HTTP/1%.1 200 OK\r\n'))
    assert.truthy(resp:find('Content-Type: ' .. prom.CONTENT_TYPE, 1, true))
    local body = resp:match('\r\n\r\n(.*)$')
    local samples = assert(prom.parse(body))
    local q = {}
    for _, x in ipairs(samples) do if x.name == 'team_queue_depth' then q[x.labels.queue] = x.value end end
    -- top-K 3: q4, q3, q2 kept, q1 folded (a gauge: the larger of the folded)
    assert.same({ q4 = 40, q3 = 30, q2 = 20, other = 10 }, q)
    local cost
    for _, x in ipairs(samples) do if x.name == 'perf_manual_self_cpu_seconds_total' then cost = x.value end end
    assert.is_true(cost > 0)
    -- Content-Length says the body's size
    assert.equal(#body, tonumber(resp:match('Content%-Length: (%d+)')))

    resp = roundtrip(srv, handler,
      'GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n')
    assert.truthy(resp:find('Content-Type: ' .. prom.OPENMETRICS_CONTENT_TYPE, 1, true))
    assert.equal('# EOF\n', resp:sub(-6))
    assert.truthy(roundtrip(srv, handler, 'GET / HTTP/1.1\r\n\r\n'):find('href="/metrics"', 1, true))
    assert.truthy(roundtrip(srv, handler, 'GET /x HTTP/1.1\r\n\r\n'):match('^HTTP/1%.1 404 '))
    assert.truthy(roundtrip(srv, handler, 'POST /metrics HTTP/1.1\r\n\r\n'):match('^HTTP/1%.1 405 '))
    assert.truthy(roundtrip(srv, handler, 'garbage\r\n\r\n'):match('^HTTP/1%.1 400 '))
    srv:close()
    s:close()
  end)

  it('serves a tracer that could not start as source_up 0 and no series of its own', function()
    local notes = {}
    local pb = { name = 't', setup = function(s) s:tracer('no_such_tracer') end,
      collect = function(s)
        local st = s:syscall_stats()
        if st then s:gauge('x', {}):set({}, 1) end
      end }
    local s = serve.new { playbook = pb, note = function(t) notes[#notes + 1] = t end }
    local samples = assert(prom.parse((s:scrape())))
    local up, x
    for _, v in ipairs(samples) do
      if v.name == 'perf_manual_source_up' then up = v end
      if v.name == 'x' then x = v end
    end
    assert.equal('no_such_tracer', up.labels.source)
    assert.equal(0, up.value)
    assert.is_nil(x)
    assert.truthy(notes[1]:find('no_such_tracer tracer not running: no tracer no_such_tracer', 1, true), notes[1])
    s:close()
  end)

  it('refuses bad metric and label names, counters without _total and labels a family lacks', function()
    local reg = require('perf_manual.serve.metrics').new()
    assert.has_error(function() reg:gauge('bad-name') end, 'bad metric name: bad-name')
    assert.has_error(function() reg:counter('events') end, 'counter events must end in _total')
    assert.has_error(function() reg:gauge('g', { labels = { 'le' } }) end, 'bad label name for g: le')
    local g = reg:gauge('g', { labels = { 'a' } })
    assert.has_error(function() g:set({ b = 1 }, 2) end, "metric g has no label 'b'")
    assert.has_error(function() reg:histogram('g') end, 'metric g is a gauge, not a histogram')
    -- not measured: no sample, not a 0
    g:set({ a = 'x' }, nil)
    assert.equal(0, #g.samples)
    -- values clamped past the kernel's last slot stay in it (+Inf)
    local h = reg:histogram('h_seconds', { slots = 4 })
    h:observe({}, { 1, 2, 3, 4, 5, 6 })
    assert.same({ 1, 2, 3, 15 }, h.samples[1].slots)
  end)

  it('names a metrics playbook it cannot find (exit status 2)', function()
    local _, err, st = test_helpers.pm('serve --playbook no_such_set --duration 1')
    assert.equal(2, st)
    assert.truthy(err:find("no metrics playbook 'no_such_set'", 1, true), err)
    _, err, st = test_helpers.pm('serve --listen nonsense --duration 1')
    assert.equal(2, st)
    assert.truthy(err:find('expected HOST:PORT', 1, true), err)
  end)
end)
