-- A private nginx on 127.0.0.1 for the red-check tests and benchmarks: its
-- own prefix under build/, its own config, never the system's.
--   /ok       200 "ok\n" (Content-Length)
--   /delay50  200 after 50 ms (echo_sleep, chunked body)
--   /err10    500 for 10% of requests (split_clients on $request_id), else 200
--   /chunked  200 with a chunked body of several pieces
--   /echo     200 echoing the method, X-PM-Test header and body (echo module)
-- start{tls = true} adds an https listener (h.tls_port, h.https_url) with a
-- certificate for localhost and 127.0.0.1 from a CA made for the run
-- (h.cacert; it listens on 127.0.0.2 too, an address the certificate does
-- not name); start{access_log = true} logs every https request to h.access_log
-- (M.read_access_log reads it).
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
  %s
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
%s
    location = /ok { default_type text/plain; return 200 "ok\n"; }
    location = /delay50 { default_type text/plain; echo_sleep 0.05; echo "slept 50ms"; }
    location = /chunked { default_type text/plain; echo "part one"; echo_flush; echo "part two"; echo "part three"; }
    location = /err10 {
      default_type text/plain;
      if ($fail10) { return 500 "failed\n"; }
      return 200 "ok\n";
    }
    location = /echo {
      default_type text/plain;
      echo_read_request_body;
      echo "$echo_request_method $http_x_pm_test";
      echo_request_body;
    }
  }
}
]]

-- one line per https request (the readiness probe is plain http): method
-- status seconds "X-PM-Test" request-length "body" tls-protocol session-reused
local LOG = [[
  log_format pm escape=json '$request_method $status $request_time "$http_x_pm_test" $request_length '
                             '"$request_body" $ssl_protocol $ssl_session_reused';
  access_log %s/access.log pm if=$https;]]

local TLS = [[
    listen 127.0.0.1:%d ssl;
    listen 127.0.0.2:%d ssl;
    ssl_certificate %s/server.pem;
    ssl_certificate_key %s/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:pmtls:1m;]]

-- a CA and a server certificate it signs (localhost, 127.0.0.1), EC P-256
local CERT_CONF = [[
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
]]

local function make_certs(dir)
  local f = assert(io.open(dir .. '/cert.cnf', 'w'))
  f:write(CERT_CONF)
  f:close()
  local key = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'
  local cmd = string.format([[cd '%s' && {
    openssl req -x509 -config cert.cnf -extensions ca %s -keyout ca.key -out ca.pem -days 2 \
      -subj '/CN=perf_manual test CA' &&
    openssl req -new -config cert.cnf %s -keyout server.key -out server.csr -subj '/CN=localhost' &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile cert.cnf -extensions server \
      -out server.pem; } >openssl.log 2>&1]], dir, key, key)
  local ok = os.execute(cmd)
  if not (ok == 0 or ok == true) then
    local log = io.open(dir .. '/openssl.log')
    error('making the test certificates failed: ' .. (log and log:read('*a') or '?'), 3)
  end
end

--- The access log's lines as {method=, status=, seconds=, header=, length=, body=, tls=, reused=}.
function M.read_access_log(h)
  local out = {}
  for line in io.lines(h.access_log) do
    local m, st, secs, hdr, len, body, proto, reused =
      line:match('^(%S+) (%d+) ([%d.]+) "(.-)" (%d+) "(.-)" (%S*) ?(%S*)$')
    assert(m, 'unexpected access log line: ' .. line)
    out[#out + 1] = { method = m, status = tonumber(st), seconds = tonumber(secs), header = hdr,
      length = tonumber(len), body = body, tls = proto, reused = reused == 'r' }
  end
  return out
end

--- Why nginx cannot be used here, or nil.
function M.missing()
  if not io.open(M.binary) then return 'nginx is not installed (apt-get install nginx)' end
  if not io.open(M.echo_module) then
    return 'the echo module is not installed (apt-get install libnginx-mod-http-echo)'
  end
end

local function port_free(port)
  local socket = require('posix.sys.socket')
  local fd = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
  local ok = socket.bind(fd, { family = socket.AF_INET, addr = '127.0.0.1', port = port })
  require('posix.unistd').close(fd)
  return ok ~= nil
end

local function free_port(lo, avoid)
  for _ = 1, 50 do
    local cand = math.max(1024, lo - 12000) + math.random(0, 11000)
    if cand ~= avoid and port_free(cand) then return cand end
  end
end

--- Starts nginx; returns a handle {port=, url(path), stop()} (and with
--- opts.tls: tls_port=, https_url(path, host), cacert=).
function M.start(opts)
  opts = opts or {}
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
  port = free_port(lo)
  assert(port, 'no free port for nginx')
  local tls_port = opts.tls and assert(free_port(lo, port), 'no free port for nginx')
  if opts.tls then make_certs(prefix) end
  local conf = prefix .. '/nginx.conf'
  local f = assert(io.open(conf, 'w'))
  f:write(string.format(CONF, M.echo_module, prefix, prefix,
    opts.access_log and string.format(LOG, prefix) or 'access_log off;',
    prefix, prefix, prefix, prefix, prefix, port,
    opts.tls and string.format(TLS, tls_port, tls_port, prefix, prefix) or ''))
  f:close()
  local pid = assert(sys.spawn({ M.binary, '-p', prefix, '-e', prefix .. '/error.log', '-c', conf, '-g',
    'daemon off;' },
    { stdout = prefix .. '/stdout', stderr = prefix .. '/stderr' }))
  local h = { port = port, pid = pid, prefix = prefix, tls_port = tls_port,
    cacert = opts.tls and prefix .. '/ca.pem', access_log = opts.access_log and prefix .. '/access.log' }
  function h.url(path) return string.format('http://127.0.0.1:%d%s', port, path) end
  function h.https_url(path, host) return string.format('https://%s:%d%s', host or '127.0.0.1', tls_port, path) end
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
