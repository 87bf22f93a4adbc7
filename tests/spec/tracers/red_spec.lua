-- perf_manual.tracers.red without BPF: the result built from the maps the
-- request tracer recorded (tests/fixtures/red/nginx_delay50.txt, a private
-- nginx answering 200 requests after 50 ms), its text and JSON, the
-- connection table's encoding, and the /proc walks on live processes.
-- (The histogram layout, percentiles and the recorded /proc classifier are
-- in tests/spec/analyzers/red_spec.lua.)
local tracer = require('perf_manual.tracers.red')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')
local h = test_helpers

local function unhex(s) return (s:gsub('%x%x', function(x) return string.char(tonumber(x, 16)) end)) end

local function recorded()
  local r = { stats = {}, conns = 0 }
  for line in h.fixture('red/nginx_delay50.txt'):gmatch('[^\n]+') do
    local f = util.split(line, '\t')
    if f[1] == 'red.stats' then r.stats[tonumber(f[2]) + 1] = unhex(f[3])
    elseif f[1] == 'red.conns' then r.conns = r.conns + 1
    elseif f[1] == 'tracer' or f[1] == 'load' then r[f[1] .. '.' .. f[2]] = f[3] end
  end
  return r
end

local function result(errnos)
  local r = recorded()
  local d = tracer.decode_stats(r.stats)
  for kind, list in pairs(errnos or {}) do
    for e, n in pairs(list) do d.errnos[kind][e] = n end
  end
  return tracer.aggregate(d, { live = r.conns, pending = 0 }, tonumber(r['tracer.seconds']), 0), d
end

describe('tracers.red (recorded maps)', function()
  it('folds the per-CPU stats: 200 requests on 11 connections, each opened and closed', function()
    local r = recorded()
    assert.equal(2, #r.stats)
    local _, d = result()
    assert.equal(200, d.requests)
    assert.equal(200, d.started)
    assert.same({ accept = 11, read = 211, write = 200, close = 11 }, d.calls)
    assert.equal(11, d.eof_reads)     -- one end-of-file read per connection
    assert.equal(d.conns_added, d.conns_removed)
    assert.is_true(d.min_ns >= 49e6 and d.max_ns < 52e6)
    assert.same({ accept = 0, read = 0, write = 0, close = 0 }, d.other_fd)
  end)

  it('aggregates into a result: rate over the traced time, accepted connections, latency', function()
    local r = recorded()
    local res = result()
    assert.equal('red', res.tracer)
    assert.near(200 / tonumber(r['tracer.seconds']), res.rate, 1e-9)
    assert.equal(11, res.accepted)
    assert.equal(0, res.closed_without_response)
    assert.same({ total = 0, by = {}, benign = {} }, res.errors)
    assert.is_true(res.latency.p50 >= 0.049 and res.latency.p50 <= 0.051)
    -- the server answered a little faster than the client measured
    assert.is_true(res.latency.p50 <= tonumber(r['load.p50']))
    assert.same({ tracked = 0, pending = 0, evicted = 0, added = 11, removed = 11 }, res.conns)
  end)

  it('counts errors by call and errno, apart from the benign ones, and failed accepts are not accepted', function()
    -- EAGAIN (11) on reads is a non-blocking server's normal; EPIPE (32) on writes is an error
    local res = result({ read = { [11] = 7 }, write = { [32] = 2 }, accept = { [24] = 1 } })
    assert.equal(3, res.errors.total)
    assert.same({ ['write EPIPE'] = 2, ['accept EMFILE'] = 1 }, res.errors.by)
    assert.same({ ['read EAGAIN'] = 7 }, res.errors.benign)
    assert.equal(10, res.accepted)
  end)

  it('prints requests, percentiles, the latency bars and what was not counted', function()
    local text = require('perf_manual.report.tracers').render('red', result())
    local lines = util.split(text, '\n')
    assert.matches('^requests 200 %(18%d%.%d/s%)  closed without response 0  in flight 0$', lines[1])
    assert.matches('^latency  p50 49%.%dms  p90 [%d.]+ms  p99 [%d.]+ms  p99%.9 [%d.]+ms  max 51%.0ms$', lines[2])
    assert.matches('|#+| 200$', lines[3])
    assert.equal('connections 0 tracked (0 found at start, 11 accepted), 0 evicted; calls on other fds: read 0 write 0',
      lines[4])
    -- nothing answered: said so, not a latency of 0
    local empty = result()
    empty.latency, empty.requests = nil, 0
    assert.matches('\nlatency  not measured %(no request answered%)\n',
      require('perf_manual.report.tracers').render('red', empty))
  end)

  it('leaves the raw slots out of the JSON (the histogram carries them)', function()
    local res = result()
    local j = tracer.to_json(res)
    assert.is_nil(j.slots)
    assert.is_table(res.slots)
    assert.same(util.json_decode(util.json_encode(res.histogram)), util.json_decode(util.json_encode(j.histogram)))
    assert.equal(200, util.json_decode(util.json_encode(j)).requests)
  end)

  it('encodes a connection-table entry the way it decodes one', function()
    local kb, vb = tracer.encode_conn(4242, 17)
    assert.equal(tracer.sizeof().conn_key, #kb)
    assert.equal(tracer.sizeof().conn, #vb)
    assert.same({ tgid = 4242, fd = 17, start_ns = 0, flags = tracer.CONN_AT_START }, tracer.decode_conn(kb, vb))
    kb, vb = tracer.encode_conn(1, 3, tracer.CONN_ACCEPTED)
    assert.equal(tracer.CONN_ACCEPTED, tracer.decode_conn(kb, vb).flags)
  end)
end)

describe('tracers.red (/proc of live processes)', function()
  it('finds a process and its descendants, the process first', function()
    local sh = assert(sys.spawn({ 'sh', '-c', 'sleep 10 & sleep 10 & (sleep 10 & wait) & wait' }, { stdout = 'null' }))
    local got = { sh }
    local ok, e = pcall(function()
      local comms
      local function count()
        comms = {}
        for i = 2, #got do
          local c = util.trim(util.readfile('/proc/' .. got[i] .. '/comm') or '')
          comms[c] = (comms[c] or 0) + 1
        end
      end
      -- until every fork has exec'd its sleep
      for _ = 1, 100 do
        got = tracer.descendants(sh)
        count()
        if #got >= 5 and comms.sleep == 3 then break end
        sys.sleep(0.02)
      end
      assert.equal(sh, got[1])
      -- sh, two sleeps, the subshell and its sleep
      assert.equal(5, #got)
      assert.same({ sleep = 3, sh = 1 }, comms)
      assert.equal(2, #tracer.descendants(sh, 2))
    end)
    -- the ones we started, by pid, children first
    for i = #got, 2, -1 do sys.kill(got[i], 9) end
    sys.kill(sh, 9); sys.wait(sh)
    assert(ok, e)
  end)

  it('lists the server side of inbound TCP connections, not the listener or the client end', function()
    local socket = require('posix.sys.socket')
    local unistd = require('posix.unistd')
    local lfd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
    assert(socket.bind(lfd, { family = socket.AF_INET, addr = '127.0.0.1', port = 0 }))
    assert(socket.listen(lfd, 4))
    local port = socket.getsockname(lfd).port
    local cfd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
    assert(socket.connect(cfd, { family = socket.AF_INET, addr = '127.0.0.1', port = port }))
    local afd = assert(socket.accept(lfd))
    local ok, e = pcall(function()
      local found = tracer.inbound_fds(sys.getpid())
      local has = {}
      for _, fd in ipairs(found) do has[fd] = true end
      assert.is_true(has[afd], 'accepted fd ' .. afd)
      assert.is_nil(has[lfd])
      assert.is_nil(has[cfd])
    end)
    for _, fd in ipairs({ afd, cfd, lfd }) do unistd.close(fd) end
    assert(ok, e)
    assert.same({}, tracer.inbound_fds(999999999))
  end)
end)
