--- A small HTTP/1.1 server over lua-posix sockets, enough for a scraper:
--- one request per connection (`Connection: close`), GET and HEAD only,
--- handled one at a time in the caller's loop. A scrape is a few kilobytes
--- every few seconds; a thread or an event library would buy nothing.
---
---   local srv = assert(httpd.listen('127.0.0.1:9464'))
---   while not stop do srv:serve_once(1.0, function(req) return 200, headers, body end) end
---   srv:close()
local socket = require('posix.sys.socket')
local poll = require('posix.poll')
local unistd = require('posix.unistd')
local fcntl = require('posix.fcntl')

local M = {}

-- a request line and headers larger than this are not a scraper's
M.MAX_REQUEST = 16384
-- a client gets this long to send its request
M.REQUEST_TIMEOUT = 5

local REASONS = { [200] = 'OK', [400] = 'Bad Request', [404] = 'Not Found', [405] = 'Method Not Allowed',
  [408] = 'Request Timeout', [500] = 'Internal Server Error' }

--- "HOST:PORT" -> host, port; nil, why when it is not one. "[::1]:9464"
--- and ":9464" (every interface) are accepted.
function M.parse_listen(s)
  if type(s) ~= 'string' then return nil, 'expected HOST:PORT' end
  local host, port = s:match('^%[([%x:]+)%]:(%d+)$')
  if not host then host, port = s:match('^([^:]*):(%d+)$') end
  if not host then return nil, "expected HOST:PORT, got '" .. s .. "'" end
  port = tonumber(port)
  if port < 0 or port > 65535 then return nil, 'port ' .. port .. ' is out of range' end
  if host == '' then host = '0.0.0.0' end
  if host == 'localhost' then host = '127.0.0.1' end
  return host, port
end

local Server = {}
Server.__index = Server

local function cloexec(fd)
  local flags = fcntl.fcntl(fd, fcntl.F_GETFD)
  if flags then fcntl.fcntl(fd, fcntl.F_SETFD, bit.bor(flags, fcntl.FD_CLOEXEC)) end
end

--- Binds and listens. Returns a server, or nil and a one-line reason.
function M.listen(addr)
  local host, port = M.parse_listen(addr)
  if not host then return nil, port end
  local family = host:find(':', 1, true) and socket.AF_INET6 or socket.AF_INET
  local fd, err = socket.socket(family, socket.SOCK_STREAM, 0)
  if not fd then return nil, 'socket: ' .. tostring(err) end
  cloexec(fd)
  socket.setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  local ok
  ok, err = socket.bind(fd, { family = family, addr = host, port = port })
  if not ok then
    unistd.close(fd)
    return nil, string.format('cannot listen on %s: %s', addr, tostring(err))
  end
  ok, err = socket.listen(fd, 16)
  if not ok then
    unistd.close(fd)
    return nil, string.format('cannot listen on %s: %s', addr, tostring(err))
  end
  local sa = socket.getsockname(fd)
  return setmetatable({ fd = fd, host = host, port = sa and sa.port or port, requests = 0 }, Server)
end

--- "host:port" actually bound (port 0 becomes the one the kernel chose).
function Server:address()
  if self.host:find(':', 1, true) then return '[' .. self.host .. ']:' .. self.port end
  return self.host .. ':' .. self.port
end

--- Parses a request head: { method=, path=, version=, headers = { [lower name] = value } }
--- or nil, why.
function M.parse_request(head)
  local first, rest = head:match('^([^\r\n]*)\r?\n(.*)$')
  if not first then first, rest = head, '' end
  local method, target, version = first:match('^(%u+) (%S+) HTTP/(%d%.%d)$')
  if not method then return nil, 'bad request line' end
  local headers = {}
  for line in rest:gmatch('[^\r\n]+') do
    local k, v = line:match('^([^:%s]+):%s*(.-)%s*$')
    if not k then return nil, 'bad header line' end
    headers[k:lower()] = v
  end
  local path, query = target:match('^([^?]*)%??(.*)$')
  return { method = method, path = path, query = query, version = version, headers = headers }
end

local function send_all(fd, data)
  local off = 1
  while off <= #data do
    local n, err = socket.send(fd, data:sub(off))
    if not n then return nil, err end
    off = off + n
  end
  return true
end

--- The bytes of a response.
function M.response(status, headers, body, head_only)
  local lines = { string.format('HTTP/1.1 %d %s', status, REASONS[status] or 'Unknown') }
  headers = headers or {}
  local has = {}
  for k, v in pairs(headers) do
    lines[#lines + 1] = k .. ': ' .. v
    has[k:lower()] = true
  end
  if not has['content-type'] then lines[#lines + 1] = 'Content-Type: text/plain; charset=utf-8' end
  lines[#lines + 1] = 'Content-Length: ' .. #(body or '')
  lines[#lines + 1] = 'Connection: close'
  return table.concat(lines, '\r\n') .. '\r\n\r\n' .. (head_only and '' or body or '')
end

-- reads a request head from fd, within the deadline
local function read_head(fd, deadline, now)
  local buf = ''
  while not buf:find('\r?\n\r?\n') do
    local left = deadline - now()
    if left <= 0 then return nil, 408 end
    local r = poll.rpoll(fd, math.max(1, math.floor(left * 1000)))
    if r == 0 then return nil, 408 end
    local data = socket.recv(fd, 4096)
    if not data or data == '' then return nil end
    buf = buf .. data
    if #buf > M.MAX_REQUEST then return nil, 400 end
  end
  return buf:match('^(.-)\r?\n\r?\n')
end

--- Waits up to timeout seconds for a connection and answers it with
--- handler(req) -> status, headers, body. Returns true when a request was
--- served, false when the wait ended without one.
function Server:serve_once(timeout, handler, now)
  now = now or os.time
  local r = poll.rpoll(self.fd, math.max(0, math.floor((timeout or 0) * 1000)))
  if not r or r == 0 then return false end
  local cfd = socket.accept(self.fd)
  if not cfd then return false end
  cloexec(cfd)
  local head, status = read_head(cfd, now() + M.REQUEST_TIMEOUT, now)
  local resp
  if head then
    local req, why = M.parse_request(head)
    if not req then
      resp = M.response(400, nil, why .. '\n')
    elseif req.method ~= 'GET' and req.method ~= 'HEAD' then
      resp = M.response(405, { Allow = 'GET, HEAD' }, 'only GET and HEAD\n')
    else
      local ok, st, hdrs, body = pcall(handler, req)
      if not ok then
        io.stderr:write('perf_manual serve: ' .. tostring(st) .. '\n')
        resp = M.response(500, nil, 'internal error\n')
      else
        resp = M.response(st, hdrs, body, req.method == 'HEAD')
      end
    end
  elseif status then
    resp = M.response(status, nil, (REASONS[status] or '') .. '\n')
  end
  if resp then send_all(cfd, resp) end
  unistd.close(cfd)
  self.requests = self.requests + 1
  return true
end

function Server:close()
  if self.fd then unistd.close(self.fd); self.fd = nil end
end

return M
