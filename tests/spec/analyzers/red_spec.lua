-- Passive RED on a recorded run of the request tracer (tests/fixtures/red/:
-- a private nginx, master and worker, traced while the load generator sent
-- 200 requests to the endpoint that answers after 50 ms), and the pure parts
-- of the tracer: the histogram layout, percentiles, the /proc classifier.
local red = require('perf_manual.analyzers.red')
local tracer = require('perf_manual.tracers.red')
local util = require('perf_manual.util')

local function unhex(s) return (s:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end)) end

local rec
local function recorded()
  if rec then return rec end
  rec = { stats = {}, conns = {}, fds = {} }
  for line in test_helpers.fixture('red/nginx_delay50.txt'):gmatch('[^\n]+') do
    local f = util.split(line, '\t')
    if f[1] == 'load' or f[1] == 'tracer' or f[1] == 'expect' then
      rec[f[1] .. '.' .. f[2]] = f[3]
    elseif f[1] == 'red.stats' then
      rec.stats[tonumber(f[2]) + 1] = unhex(f[3])
    elseif f[1] == 'red.conns' then
      rec.conns[#rec.conns + 1] = tracer.decode_conn(unhex(f[2]), unhex(f[3]))
    elseif f[1] == 'worker.fd' then
      rec.fds[#rec.fds + 1] = { fd = tonumber(f[2]), socket = f[3] == 'socket', inode = tonumber(f[4]) }
    elseif f[1]:match('^net%.') then
      rec[f[1]] = unhex(f[2])
    end
  end
  return rec
end

-- the tracer result the live tracer would have built from these maps
local function result()
  local r = recorded()
  local d = tracer.decode_stats(r.stats)
  local pending = 0
  for _, c in ipairs(r.conns) do if c.start_ns ~= 0 then pending = pending + 1 end end
  local res = tracer.aggregate(d, { live = #r.conns, pending = pending }, tonumber(r['tracer.seconds']), 0)
  res.processes = {}
  for p in r['tracer.pids']:gmatch('%d+') do res.processes[#res.processes + 1] = tonumber(p) end
  res.conns.at_start = 0
  return res, d
end

describe('perf_manual.tracers.red', function()
  it('mirrors the kernel structs exactly (sizes and offsets from the object BTF)', function()
    local bpf = require('perf_manual._c.bpf')
    local ffi = require('ffi')
    local st = assert(bpf.btf_type('red', 'struct red_stats'))
    assert.equal(st.size, tracer.sizeof().stats)
    assert.equal(st.members.slots, ffi.offsetof('struct pm_red_stats', 'slots'))
    assert.equal(st.members.errs, ffi.offsetof('struct pm_red_stats', 'errs'))
    assert.equal(st.members.max_ns, ffi.offsetof('struct pm_red_stats', 'max_ns'))
    assert.equal(assert(bpf.btf_type('red', 'struct red_conn')).size, tracer.sizeof().conn)
    assert.equal(assert(bpf.btf_type('red', 'struct red_conn_key')).size, tracer.sizeof().conn_key)
  end)

  it('classifies syscalls by number for the rodata table', function()
    local bpf = require('perf_manual._c.bpf')
    local t = tracer.kind_table(bpf.syscall_names())
    assert.equal(tracer.SYSCALL_MAX, #t)
    if jit.arch == 'x64' then
      assert.equal(2, t:byte(0 + 1))   -- read
      assert.equal(3, t:byte(1 + 1))   -- write
      assert.equal(4, t:byte(3 + 1))   -- close
      assert.equal(3, t:byte(20 + 1))  -- writev
      assert.equal(3, t:byte(40 + 1))  -- sendfile
      assert.equal(1, t:byte(43 + 1))  -- accept
      assert.equal(2, t:byte(45 + 1))  -- recvfrom
      assert.equal(1, t:byte(288 + 1)) -- accept4
      assert.equal(0, t:byte(257 + 1)) -- openat: not ours
    end
  end)

  it('lays the log-linear slots end to end, each at most 1/32 of its value wide', function()
    local prev_end = 0
    for i = 0, tracer.SLOTS - 1 do
      local lo, w = tracer.slot_bounds(i)
      assert.equal(prev_end, lo)
      if i >= tracer.SUB then assert.is_true(w <= lo / 32, 'slot ' .. i) end
      prev_end = lo + w
    end
    assert.equal(2 ^ tracer.MAX_EXP, prev_end)
    -- values land in the slot whose bounds hold them, the way red_slot() puts them
    for _, v in ipairs({ 0, 1, 31, 32, 33, 63, 64, 1000, 4095, 4096, 50e6, 50331647, 2 ^ 35 + 1, 2 ^ 36 - 1 }) do
      local lo, w = tracer.slot_bounds(tracer.slot_of(v))
      assert.is_true(v >= lo and v < lo + w, 'value ' .. v)
    end
    assert.equal(tracer.SLOTS - 1, tracer.slot_of(2 ^ 40))
  end)

  it('gives percentiles within 1.6% of the exact ones, min and max exact', function()
    -- a spread of latencies from 20 us to 200 ms
    local vals, slots = {}, {}
    for i = 1, tracer.SLOTS do slots[i] = 0 end
    local sum = 0
    for i = 1, 5000 do
      local v = math.floor(20e3 * 10 ^ ((i * 7919 % 5000) / 5000 * 4))
      vals[i] = v
      sum = sum + v
      local s = tracer.slot_of(v) + 1
      slots[s] = slots[s] + 1
    end
    table.sort(vals)
    local lat = tracer.latency(slots, vals[1], vals[#vals], sum)
    for _, q in ipairs({ { 'p50', 0.5 }, { 'p90', 0.9 }, { 'p99', 0.99 }, { 'p99.9', 0.999 } }) do
      local exact = vals[math.ceil(q[2] * #vals)] / 1e9
      assert.is_true(math.abs(lat[q[1]] - exact) <= 0.016 * exact, q[1] .. ' ' .. lat[q[1]] .. ' vs ' .. exact)
    end
    assert.equal(vals[1] / 1e9, lat.min)
    assert.equal(vals[#vals] / 1e9, lat.max)
    assert.near(sum / #vals / 1e9, lat.mean, 1e-12)
    -- no request answered: not measured, not 0
    local empty = {}
    for i = 1, tracer.SLOTS do empty[i] = 0 end
    assert.is_nil((tracer.latency(empty, 0, 0, 0)))
  end)

  it('decodes the recorded maps: every answer the load generator got is one paired request', function()
    local r = recorded()
    local res, d = result()
    local responses = tonumber(r['load.responses'])
    assert.equal(200, responses)
    assert.equal(responses, res.requests)
    assert.equal(responses, d.started)
    assert.equal(0, res.closed_without_response)
    assert.equal(0, res.unpaired_writes)
    local n = 0
    for _, c in ipairs(d.slots) do n = n + c end
    assert.equal(res.requests, n)
    -- every connection the load generator opened was accepted and closed again
    assert.is_true(res.accepted >= 1)
    assert.equal(res.accepted, d.conns_added)
    assert.equal(d.conns_added, d.conns_removed)
    assert.equal(0, res.conns.tracked)
    -- only sockets were read and written: nginx logs nothing here
    assert.equal(0, res.other_fd.read + res.other_fd.write)
  end)

  it('measures the 50 ms endpoint at a server time just under what the client saw', function()
    local r = recorded()
    local res = result()
    local client_p50 = tonumber(r['load.p50'])
    assert.is_true(res.latency.p50 > 0.045 and res.latency.p50 <= client_p50 * 1.016,
      'p50 ' .. res.latency.p50 .. ' client ' .. client_p50)
    assert.is_true(res.latency.min > 0.045, 'min ' .. res.latency.min)
    assert.is_true(res.latency.max >= res.latency['p99.9'] and res.latency['p99.9'] >= res.latency.p99)
    assert.is_true(res.latency.p99 >= res.latency.p90 and res.latency.p90 >= res.latency.p50)
  end)
end)

describe('perf_manual.analyzers.red passive', function()
  it('summarizes a recorded trace in the shape of the active mode', function()
    local res = result()
    local s = red.summarize_passive(res, res.processes[1], res.seconds)
    assert.equal('passive', s.mode)
    assert.same(res.processes, s.processes)
    for _, k in ipairs(red.percentiles) do assert.is_number(s.latency[k], k) end
    assert.equal(res.latency.p50, s.latency.p50)
    assert.near(200 / res.seconds, s.rate.completed, 1e-9)
    assert.equal(200, s.requests.paired)
    assert.equal(0, s.requests.in_flight_at_end)
    assert.equal(0, s.errors.total)
    assert.equal(200, s.errors.attempts)
    assert.equal(0, s.errors.ratio)
    assert.equal(res.accepted, s.syscalls.accept.count)
    assert.equal(200, s.syscalls.write.count)
    -- the histogram is the active mode's: {lo, hi, count} in seconds
    local n = 0
    for _, b in ipairs(s.histogram) do
      assert.is_true(b[1] < b[2])
      n = n + b[3]
    end
    assert.equal(200, n)
    assert.same({}, red.findings(s))
  end)

  it('prints Duration with percentiles, and what was not counted', function()
    local res = result()
    local s = red.summarize_passive(res, res.processes[1], res.seconds)
    local text = red.render(s, { charts = require('perf_manual.report.charts') })
    assert.matches('RED check %(passive, from syscalls%): pid %d+ and its child %d+ over 1%.%d%ds', text)
    assert.matches('requests +%d+%.%d req/s   %(200 answered', text)
    assert.matches('Errors +0 of 200 %(0%.00%%%)', text)
    assert.matches('closed without response  0', text)
    assert.matches('Duration %(server time per request', text)
    assert.matches('p50 [45]%d%.%dms  p90 %d+%.%dms  p99 %d+%.%dms  p99%.9 %d+%.%dms  max %d+%.%dms', text)
    assert.matches('32%.8ms %.%. 65%.5ms', text)
    assert.matches('Not counted: 0 in flight at the end, 0 writes with no request pending', text)
    assert.not_matches('not measured', text)
    -- JSON as the playbook prints it
    local j = util.json_decode(util.json_encode(s))
    assert.equal(200, j.requests.paired)
    assert.near(s.latency.p50, j.latency.p50, 1e-6)
  end)
end)

describe('perf_manual.tracers.red inbound sockets', function()
  it('finds exactly the server side of the connections held open, from the recorded /proc tables', function()
    local r = recorded()
    local socks, listening = tracer.parse_tcp(r['net.tcp'])
    tracer.parse_tcp(r['net.tcp6'], socks, listening)
    tracer.parse_unix(r['net.unix'], socks)
    local found, n_sockets = {}, 0
    for _, f in ipairs(r.fds) do
      if f.socket then
        n_sockets = n_sockets + 1
        if tracer.inbound(socks[f.inode], listening) then found[#found + 1] = f.fd end
      end
    end
    assert.equal(r['expect.inbound_fds'], table.concat(found, ','))
    assert.equal(3, #found)
    -- the others are nginx's listening socket and its channel to the master
    assert.equal(5, n_sockets)
    local kinds = {}
    for _, f in ipairs(r.fds) do
      local s = f.socket and socks[f.inode]
      if s and not tracer.inbound(s, listening) then
        local what = s.proto == 'tcp' and (s.state == '0A' and ' listen' or '') or (s.path and ' named' or ' unnamed')
        kinds[#kinds + 1] = s.proto .. what
      end
    end
    table.sort(kinds)
    assert.same({ 'tcp listen', 'unix unnamed' }, kinds)
  end)
end)
