--- Small shared helpers: user errors, validation, files, units, JSON.
local M = {}

local UserError = {}
UserError.__index = UserError
UserError.__tostring = function(e) return e.user_error end

--- Raises a user error: printed as one line "perf_manual: <msg>", exit 2
--- (or `status`), no traceback.
function M.user_error(msg, status)
  error(setmetatable({ user_error = msg, status = status or 2 }, UserError), 0)
end

function M.is_user_error(e)
  return type(e) == 'table' and e.user_error ~= nil
end

--- Validates an argument at a module's public edge.
---@param name string  argument name, for the message
---@param value any
---@param tname string expected type name
---@param optional boolean?
function M.validate(name, value, tname, optional)
  if value == nil and optional then return end
  if type(value) ~= tname then
    error(string.format('%s: expected %s, got %s', name, tname, type(value)), 3)
  end
end

--- Whole contents of a file, or nil, err.
function M.readfile(path)
  local f, err = io.open(path, 'rb')
  if not f then return nil, err end
  local s, rerr = f:read('*a')
  f:close()
  if not s then return nil, path .. ': ' .. tostring(rerr) end
  return s
end

--- Writes a file atomically: temp file in the same directory, fsync, rename.
function M.write_atomic(path, data)
  local posix_unistd = require('posix.unistd')
  local posix_fcntl = require('posix.fcntl')
  local tmp = string.format('%s.tmp.%d', path, require('perf_manual.sys').getpid())
  local fd, err = posix_fcntl.open(tmp, posix_fcntl.O_WRONLY + posix_fcntl.O_CREAT + posix_fcntl.O_TRUNC, 420)
  if not fd then return nil, 'cannot write ' .. path .. ': ' .. tostring(err) end
  local off = 1
  while off <= #data do
    local n, werr = posix_unistd.write(fd, data:sub(off, off + 1048575))
    if not n then
      posix_unistd.close(fd); os.remove(tmp)
      return nil, 'cannot write ' .. path .. ': ' .. tostring(werr)
    end
    off = off + n
  end
  local ok, serr = posix_unistd.fsync(fd)
  posix_unistd.close(fd)
  if not ok then os.remove(tmp); return nil, 'cannot write ' .. path .. ': ' .. tostring(serr) end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp); return nil, 'cannot write ' .. path .. ': ' .. tostring(rerr) end
  return true
end

--- Parses a duration: 10, "10", "10s", "500ms", "2m", "1h" -> seconds.
function M.parse_duration(v)
  if type(v) == 'number' then return v end
  if type(v) ~= 'string' then return nil end
  local n, unit = v:match('^%s*([%d%.]+)%s*(%a*)%s*$')
  n = tonumber(n)
  if not n then return nil end
  local mult = ({ [''] = 1, s = 1, ms = 0.001, us = 1e-6, m = 60, min = 60, h = 3600 })[unit]
  if not mult then return nil end
  return n * mult
end

--- Human duration: 0.0123 -> "12.3ms".
function M.fmt_duration(s)
  if s == nil then return '-' end
  if s >= 3600 then return string.format('%.1fh', s / 3600) end
  if s >= 60 then return string.format('%.1fm', s / 60) end
  if s >= 1 then return string.format('%.2fs', s) end
  if s >= 1e-3 then return string.format('%.1fms', s * 1e3) end
  if s >= 1e-6 then return string.format('%.1fus', s * 1e6) end
  return string.format('%.0fns', s * 1e9)
end

--- For code that runs the same path for minutes or hours (a server, a live
--- view, a load generator): LuaJIT's default compile threshold. The host
--- raises it for the start-up of short commands (runtime/main.c), where a
--- path that runs a few hundred times is not worth compiling.
function M.long_running()
  require('jit.opt').start('hotloop=56')
end

--- Human bytes: 1536 -> "1.5K".
function M.fmt_bytes(b)
  if b == nil then return '-' end
  local units = { 'B', 'K', 'M', 'G', 'T' }
  local i = 1
  while b >= 1024 and i < #units do b = b / 1024; i = i + 1 end
  if i == 1 then return string.format('%d%s', b, units[i]) end
  return string.format('%.1f%s', b, units[i])
end

function M.round(x, digits)
  local m = 10 ^ (digits or 0)
  return math.floor(x * m + 0.5) / m
end

--- Sorted list of a table's keys.
function M.keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

function M.split(s, sep)
  local out = {}
  for part in (s .. sep):gmatch('(.-)' .. sep:gsub('%p', '%%%0')) do out[#out + 1] = part end
  return out
end

function M.trim(s) return (s:gsub('^%s+', ''):gsub('%s+$', '')) end

--- Text a user typed (a symptom, a name) made safe to print on a terminal:
--- control characters (C0, DEL and UTF-8-encoded C1, which terminals obey as
--- escape sequences) are shown as \n, \t, \e or \xNN. Printable UTF-8 stays.
function M.printable(s)
  if s == nil then return nil end
  local named = { ['\n'] = '\\n', ['\t'] = '\\t', ['\r'] = '\\r', ['\27'] = '\\e' }
  s = tostring(s):gsub('[%z\1-\31\127]', function(c) return named[c] or string.format('\\x%02x', c:byte()) end)
  return (s:gsub('\194([\128-\159])', function(c) return string.format('\\u%04x', c:byte()) end))
end

--- JSON encoding with stable key order, so outputs diff cleanly. Missing
--- measurements are `nil` in Lua and are left out (never written as 0).
local cjson = require('cjson')
cjson.encode_sparse_array(true)
M.json_null = cjson.null

local function encode(v, out, indent, depth)
  local t = type(v)
  if t == 'table' and v ~= cjson.null then
    local n = #v
    local is_array = n > 0 or next(v) == nil and getmetatable(v) == M.array_mt
    if is_array then
      out[#out + 1] = '['
      for i = 1, n do
        if i > 1 then out[#out + 1] = ',' end
        if indent then out[#out + 1] = '\n' .. string.rep(indent, depth + 1) end
        encode(v[i], out, indent, depth + 1)
      end
      if indent and n > 0 then out[#out + 1] = '\n' .. string.rep(indent, depth) end
      out[#out + 1] = ']'
    else
      local ks = {}
      for k in pairs(v) do ks[#ks + 1] = k end
      table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
      out[#out + 1] = '{'
      for i, k in ipairs(ks) do
        if i > 1 then out[#out + 1] = ',' end
        if indent then out[#out + 1] = '\n' .. string.rep(indent, depth + 1) end
        out[#out + 1] = cjson.encode(tostring(k))
        out[#out + 1] = indent and ': ' or ':'
        encode(v[k], out, indent, depth + 1)
      end
      if indent and #ks > 0 then out[#out + 1] = '\n' .. string.rep(indent, depth) end
      out[#out + 1] = '}'
    end
  elseif t == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = 'null'
    elseif v == math.floor(v) and math.abs(v) < 1e15 then
      out[#out + 1] = string.format('%d', v)
    else
      out[#out + 1] = string.format('%.6g', v)
    end
  elseif t == 'function' or t == 'userdata' and v ~= cjson.null then
    out[#out + 1] = 'null'
  else
    out[#out + 1] = cjson.encode(v)
  end
end

M.array_mt = {}
--- Marks a table as a JSON array even when empty.
function M.array(t) return setmetatable(t or {}, M.array_mt) end

function M.json_encode(v, pretty)
  local out = {}
  encode(v, out, pretty and '  ' or nil, 0)
  return table.concat(out)
end

function M.json_decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, v end
  return v
end

return M
