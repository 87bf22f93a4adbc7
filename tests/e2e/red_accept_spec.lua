-- The request tracer on a thread-per-connection server (fixval_http) whose
-- main thread already sleeps in accept() when tracing starts: the
-- connection that accept returns is a traced one, and every request on it
-- counts. (An accept entered before the programs were attached left no
-- stored call, so that connection's requests were all lost.)
local h = require('helpers')
local sys = require('perf_manual._c.sys')
local socket = require('posix.sys.socket')
local unistd = require('posix.unistd')

-- accept and accept4 on x86_64 and arm64 (/proc/PID/syscall's first field)
local ACCEPT_NRS = { x86_64 = { [43] = true, [288] = true }, aarch64 = { [202] = true, [242] = true } }

local function free_port()
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.bind(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = 0 }))
  local port = socket.getsockname(fd).port
  unistd.close(fd)
  return port
end

local function connect(port)
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  local ok = socket.connect(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = port })
  if not ok then unistd.close(fd) return nil end
  return fd
end

local function get(fd)
  assert(socket.send(fd, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'))
  local got = ''
  while not got:find('ok\n', 1, true) do got = got .. assert(socket.recv(fd, 4096)) end
end

-- the syscall number the main thread sleeps in, from /proc
local function sleeping_in(pid)
  local f = io.open('/proc/' .. pid .. '/syscall')
  local s = f and f:read('*l')
  if f then f:close() end
  return s and tonumber(s:match('^(%d+)'))
end

describe('request tracer e2e #priv', function()
  it('counts the requests of a connection accepted by an accept() entered before tracing', function()
    if not h.need_root('BPF request tracer') then return end
    local uname = io.popen('uname -m')
    local machine = uname:read('*l')
    uname:close()
    local nrs = ACCEPT_NRS[machine]
    assert.is_not_nil(nrs, 'no accept syscall numbers for ' .. tostring(machine))
    local conf, port = os.tmpname(), free_port()
    local f = assert(io.open(conf, 'w')); f:write('0\n'); f:close()
    local pid = assert(sys.spawn({ h.workload('fixval_http'), tostring(port), conf, '60' }, {}))
    local t, fd
    local ok, err = pcall(function()
      -- listening (the probe connection is served and closed before tracing)
      local probe
      for _ = 1, 200 do
        probe = connect(port)
        if probe then break end
        sys.sleep(0.01)
      end
      assert(probe, 'fixval_http did not listen on ' .. port)
      unistd.close(probe)
      local nr
      for _ = 1, 200 do
        nr = sleeping_in(pid)
        if nr and nrs[nr] then break end
        sys.sleep(0.01)
      end
      assert.is_true(nr ~= nil and nrs[nr] == true, 'the main thread is not in accept: syscall ' .. tostring(nr))
      t = assert(require('perf_manual.tracers.red').start { pid = pid })
      fd = assert(connect(port))
      for _ = 1, 3 do get(fd) end
      for _ = 1, 400 do
        if t:read().requests >= 3 then break end
        sys.sleep(0.025)
      end
    end)
    if fd then unistd.close(fd) end
    local res = t and t:stop()
    sys.kill(pid, 15)
    sys.wait(pid)
    os.remove(conf)
    if not ok then error(err, 0) end
    assert.equal(3, res.requests)
    assert.equal(1, res.accepted)
    assert.equal(0, res.unpaired_writes)
  end)
end)
