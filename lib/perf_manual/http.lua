--- HTTP/1.1 load for the RED check: URL parsing and the native open-loop
--- load generator (perf_manual._c.http, runtime/http.c).
local util = require('perf_manual.util')

local M = {}

--- Parses an http:// URL into {scheme, host, port, path, authority}.
--- Returns nil, reason for anything else (https is refused: no TLS here).
function M.parse_url(url)
  if type(url) ~= 'string' or url == '' then return nil, 'empty URL' end
  if url:find('[%s%c]') then return nil, 'URL contains spaces or control characters' end
  local scheme, rest = url:match('^(%a[%w+.-]*)://(.*)$')
  if not scheme then return nil, 'expected http://host[:port]/path' end
  scheme = scheme:lower()
  if scheme == 'https' then return nil, 'https is not supported (plain HTTP/1.1 only)' end
  if scheme ~= 'http' then return nil, "unsupported scheme '" .. scheme .. "'" end
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
  port = port ~= '' and tonumber(port) or 80
  if port < 1 or port > 65535 then return nil, 'port out of range' end
  path = path:gsub('#.*$', '')
  if path == '' then path = '/' end
  if path:sub(1, 1) == '?' then path = '/' .. path end
  local default_port = port == 80
  return {
    scheme = 'http', host = host, port = port, path = path,
    authority = (authority:sub(1, 1) == '[' and ('[' .. host .. ']') or host) .. (default_port and '' or (':' .. port)),
  }
end

--- The request bytes sent for every request.
function M.request(u, method)
  return string.format('%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: perf_manual-red-check\r\nAccept: */*\r\n\r\n',
    method or 'GET', u.path, u.authority)
end

--- Runs the load. opts: url (string), rate (req/s, 0 = closed loop),
--- connections, duration (s), timeout (s). Returns the raw result table of
--- perf_manual._c.http.run, or nil, err.
function M.load(opts)
  util.validate('opts', opts, 'table')
  local u, err = M.parse_url(opts.url)
  if not u then return nil, err end
  local c = require('perf_manual._c.http')
  local res, rerr, kind = c.run {
    host = u.host, port = tostring(u.port), request = M.request(u, opts.method),
    rate = opts.rate or 0, connections = opts.connections or 10,
    duration = opts.duration or 10, timeout = opts.timeout or 5,
  }
  if kind == 'fd_limit' then util.user_error('red-check: ' .. rerr) end
  if not res then return nil, rerr end
  res.url = opts.url
  return res
end

return M
