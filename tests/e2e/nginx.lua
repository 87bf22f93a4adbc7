-- A private nginx on 127.0.0.1 for the red-check tests and benchmarks: its
-- own prefix under build/, its own config, never the system's.
--   /ok       200 "ok\n" (Content-Length)
--   /delay50  200 after 50 ms (echo_sleep, chunked body)
--   /err10    500 for 10% of requests (split_clients on $request_id), else 200
--   /chunked  200 with a chunked body of several pieces
local M = {}

local root = require('perf_manual._host').root
local sys = require('perf_manual._c.sys')

M.binary = '/usr/sbin/nginx'
M.echo_module = '/usr/lib/nginx/modules/ngx_http_echo_module.so'

local CONF = [[
load_module %s;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %s/tmp/body;
  proxy_temp_path %s/tmp/proxy;
  fastcgi_temp_path %s/tmp/fastcgi;
  uwsgi_temp_path %s/tmp/uwsgi;
  scgi_temp_path %s/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  split_clients "${request_id}" $fail10 { 10%% 1; * 0; }
  server {
    listen 127.0.0.1:%d;
    location = /ok { default_type text/plain; return 200 "ok\n"; }
    location = /delay50 { default_type text/plain; echo_sleep 0.05; echo "slept 50ms"; }
    location = /chunked { default_type text/plain; echo "part one"; echo_flush; echo "part two"; echo "part three"; }
    location = /err10 {
      default_type text/plain;
      if ($fail10) { return 500 "failed\n"; }
      return 200 "ok\n";
    }
  }
}
]]

--- Why nginx cannot be used here, or nil.
function M.missing()
  if not io.open(M.binary) then return 'nginx is not installed (apt-get install nginx)' end
  if not io.open(M.echo_module) then return 'the echo module is not installed (apt-get install libnginx-mod-http-echo)' end
end

local function port_free(port)
  local socket = require('posix.sys.socket')
  local fd = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
  local ok = socket.bind(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = port })
  require('posix.unistd').close(fd)
  return ok ~= nil
end

--- Starts nginx; returns a handle {port=, url(path), stop()}.
function M.start()
  local why = M.missing()
  if why then error(why, 2) end
  local prefix = string.format('%s/build/nginx-test-%d', root, sys.getpid())
  os.execute(string.format("mkdir -p '%s/tmp' '%s/logs'", prefix, prefix))
  local port
  -- below the ephemeral range: a probe's own source port can never be the
  -- port it connects to (a self-connected socket looks like a listener)
  local lo = 32768
  local pr = io.open('/proc/sys/net/ipv4/ip_local_port_range')
  if pr then lo = tonumber(pr:read('*n')) or lo; pr:close() end
  math.randomseed(sys.getpid() + os.time() + math.floor(sys.monotonic_ns() % 1e6))
  for _ = 1, 50 do
    local cand = math.max(1024, lo - 12000) + math.random(0, 11000)
    if port_free(cand) then port = cand; break end
  end
  assert(port, 'no free port for nginx')
  local conf = prefix .. '/nginx.conf'
  local f = assert(io.open(conf, 'w'))
  f:write(string.format(CONF, M.echo_module, prefix, prefix, prefix, prefix, prefix, prefix, prefix, port))
  f:close()
  local pid = assert(sys.spawn({ M.binary, '-p', prefix, '-e', prefix .. '/error.log', '-c', conf, '-g', 'daemon off;' },
    { stdout = prefix .. '/stdout', stderr = prefix .. '/stderr' }))
  local h = { port = port, pid = pid, prefix = prefix }
  function h.url(path) return string.format('http://127.0.0.1:%d%s', port, path) end
  function h.stop()
    if h.pid then
      sys.kill(h.pid, 15)
      sys.wait(h.pid)
      h.pid = nil
    end
    os.execute(string.format("rm -rf '%s'", prefix))
  end
  -- ready when it answers a request (not when a connect succeeds: the
  -- master's backlog accepts before a worker serves)
  local socket = require('posix.sys.socket')
  local unistd = require('posix.unistd')
  for _ = 1, 100 do
    local fd = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    local ok = socket.connect(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = port })
    local answer = ''
    if ok then
      socket.setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 1, 0)
      socket.send(fd, 'GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
      answer = socket.recv(fd, 64) or ''
    end
    unistd.close(fd)
    if answer:match('^HTTP/1%.%d 200') then return h end
    local st = sys.wait(pid, true)
    if st and st ~= 'running' then
      local log = io.open(prefix .. '/error.log'); local txt = log and log:read('*a') or ''
      h.pid = nil; h.stop()
      error('nginx exited at start: ' .. txt, 2)
    end
    sys.sleep(0.05)
  end
  h.stop()
  error('nginx did not start listening on ' .. port, 2)
end

return M
