--- HTTP/1.1 load for the RED check: URL parsing, the request bytes (method,
--- headers, body) and the native open-loop load generator
--- (perf_manual._c.http, runtime/http.c; https through OpenSSL).
local util = require('perf_manual.util')

local M = {}

local DEFAULT_PORT = { http = 80, https = 443 }

--- Parses an http:// or https:// URL into {scheme, host, port, path,
--- authority, ip}; ip is true when host is an address, not a name.
--- Returns nil, reason for anything else.
function M.parse_url(url)
  if type(url) ~= 'string' or url == '' then return nil, 'empty URL' end
  if url:find('[%s%c]') then return nil, 'URL contains spaces or control characters' end
  local scheme, rest = url:match('^(%a[%w+.-]*)://(.*)$')
  if not scheme then return nil, 'expected http[s]://host[:port]/path' end
  scheme = scheme:lower()
  if not DEFAULT_PORT[scheme] then return nil, "unsupported scheme '" .. scheme .. "'" end
  local authority, path = rest:match('^([^/?#]*)(.*)$')
  if authority:find('@') then return nil, 'credentials in the URL are not supported' end
  local host, port
  if authority:sub(1, 1) == '[' then
    host, port = authority:match('^%[([%x:.]+)%]:?(%d*)$')
  else
    host, port = authority:match('^([%w.-]+):?(%d*)$')
  end
  if not host or host == '' then return nil, "bad host in '" .. url .. "'" end
  if authority:match(':$') then return nil, 'empty port' end
  port = port ~= '' and tonumber(port) or DEFAULT_PORT[scheme]
  if port < 1 or port > 65535 then return nil, 'port out of range' end
  path = path:gsub('#.*$', '')
  if path == '' then path = '/' end
  if path:sub(1, 1) == '?' then path = '/' .. path end
  local default_port = port == DEFAULT_PORT[scheme]
  return {
    scheme = scheme, host = host, port = port, path = path,
    ip = authority:sub(1, 1) == '[' or host:match('^[%d.]+$') ~= nil,
    authority = (authority:sub(1, 1) == '[' and ('[' .. host .. ']') or host) .. (default_port and '' or (':' .. port)),
  }
end

-- RFC 9110 token: a method or a header name
local TOKEN = "^[%w!#$%%&'*+.^_`|~-]+$"

--- A method as typed, checked: the method, or nil and why.
function M.check_method(m)
  if type(m) ~= 'string' or not m:match(TOKEN) then
    return nil, string.format("bad method '%s' (expected a token like GET, POST or PURGE)", tostring(m))
  end
  return m
end

--- A header 'Name: value' as typed, checked: name, value, or nil and why.
function M.parse_header(h)
  local name, value = tostring(h):match('^([^:]*):[ \t]*(.-)[ \t]*$')
  if not name or not name:match(TOKEN) then
    return nil, string.format("bad header '%s' (expected 'Name: value')", tostring(h))
  end
  if (value:gsub('\t', '')):find('%c') then
    return nil, string.format("bad header '%s' (control characters in the value)", name)
  end
  local lname = name:lower()
  if lname == 'content-length' or lname == 'transfer-encoding' then
    -- the load generator frames the body itself ('Connection: close' is
    -- fine: a new connection for every request)
    return nil, string.format("header '%s' is set by red-check itself (from --body)", name)
  end
  return name, value
end

--- The request bytes sent for every request. opts (optional): method,
--- headers (list of 'Name: value', checked by parse_header; they replace
--- the defaults of the same name), body (string).
function M.request(u, opts)
  if type(opts) == 'string' then opts = { method = opts } end
  opts = opts or {}
  local method = opts.method or 'GET'
  local given, extra = {}, {}
  for _, h in ipairs(opts.headers or {}) do
    local name, value = assert(M.parse_header(h))
    given[name:lower()] = true
    extra[#extra + 1] = name .. ': ' .. value .. '\r\n'
  end
  local lines = { string.format('%s %s HTTP/1.1\r\n', method, u.path) }
  local defaults = { { 'Host', u.authority }, { 'User-Agent', 'perf_manual-red-check' }, { 'Accept', '*/*' } }
  for _, d in ipairs(defaults) do
    if not given[d[1]:lower()] then lines[#lines + 1] = d[1] .. ': ' .. d[2] .. '\r\n' end
  end
  for _, x in ipairs(extra) do lines[#lines + 1] = x end
  -- a body always says its length; so does a POST or PUT without one
  if opts.body or method == 'POST' or method == 'PUT' or method == 'PATCH' then
    lines[#lines + 1] = 'Content-Length: ' .. #(opts.body or '') .. '\r\n'
  end
  lines[#lines + 1] = '\r\n'
  lines[#lines + 1] = opts.body
  return table.concat(lines)
end

--- Runs the load. opts: url (string), rate (req/s, 0 = closed loop),
--- connections, duration (s), timeout (s), method, headers, body (string);
--- https: cacert (PEM file, else the system's CA store), insecure (no
--- certificate check). Returns the raw result table of
--- perf_manual._c.http.run, or nil, err. A bad option, a CA file that does
--- not load or more connections than open files allowed: a user error.
function M.load(opts)
  util.validate('opts', opts, 'table')
  util.long_running()
  local u, err = M.parse_url(opts.url)
  if not u then return nil, err end
  if opts.method then
    local _, merr = M.check_method(opts.method)
    if merr then util.user_error('red-check: ' .. merr) end
  end
  for _, h in ipairs(opts.headers or {}) do
    local ok, herr = M.parse_header(h)
    if not ok then util.user_error('red-check: ' .. herr) end
  end
  if (opts.cacert or opts.insecure) and u.scheme ~= 'https' then
    util.user_error('red-check: ' .. (opts.cacert and '--cacert' or '--insecure') .. ' is for https:// URLs')
  end
  local c = require('perf_manual._c.http')
  local res, rerr, kind = c.run {
    host = u.host, port = tostring(u.port), request = M.request(u, opts),
    rate = opts.rate or 0, connections = opts.connections or 10,
    duration = opts.duration or 10, timeout = opts.timeout or 5,
    head = opts.method == 'HEAD',
    tls = u.scheme == 'https', cacert = opts.cacert, insecure = opts.insecure, ip_host = u.ip,
  }
  if kind == 'fd_limit' or kind == 'tls' then util.user_error('red-check: ' .. rerr) end
  if not res then return nil, rerr end
  res.url = opts.url
  return res
end

return M
