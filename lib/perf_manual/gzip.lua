--- gzip in and out through zlib (linked into the binary and exported with
--- -Wl,-E, so the FFI finds it in the process; under a stock luajit the
--- system's libz is loaded instead).
---
---   local gz = gzip.compress(text)        -- a gzip member (RFC 1952)
---   local text, err = gzip.decompress(gz) -- every member, concatenated
---   gzip.is_gzip(bytes)                   -- starts with the gzip magic
local ffi = require('ffi')

local M = {}

ffi.cdef [[
typedef struct pm_z_stream {
  const uint8_t *next_in; unsigned avail_in; unsigned long total_in;
  uint8_t *next_out; unsigned avail_out; unsigned long total_out;
  const char *msg; void *state;
  void *zalloc; void *zfree; void *opaque;
  int data_type; unsigned long adler; unsigned long reserved;
} pm_z_stream;
const char *zlibVersion(void);
int deflateInit2_(pm_z_stream *strm, int level, int method, int windowBits, int memLevel, int strategy,
                  const char *version, int stream_size);
int deflate(pm_z_stream *strm, int flush);
int deflateEnd(pm_z_stream *strm);
unsigned long deflateBound(pm_z_stream *strm, unsigned long sourceLen);
int inflateInit2_(pm_z_stream *strm, int windowBits, const char *version, int stream_size);
int inflate(pm_z_stream *strm, int flush);
int inflateEnd(pm_z_stream *strm);
int inflateReset(pm_z_stream *strm);
]]

local Z_OK, Z_STREAM_END, Z_BUF_ERROR = 0, 1, -5
local Z_NO_FLUSH, Z_FINISH = 0, 4
local GZIP_WINDOW = 15 + 16        -- write a gzip header and trailer
local GZIP_READ_WINDOW = 15 + 32   -- read gzip (or zlib), detected from the header

-- zlib's symbols: the binary's own when exported, else the system library
local Z = (function()
  if pcall(function() return ffi.C.deflateInit2_ end) then return ffi.C end
  return ffi.load('z')
end)()

M.zlib_version = ffi.string(Z.zlibVersion())

local stream_t = ffi.typeof('pm_z_stream[1]')

--- True when `bytes` starts with the gzip magic (1f 8b).
function M.is_gzip(bytes)
  return type(bytes) == 'string' and bytes:byte(1) == 0x1f and bytes:byte(2) == 0x8b
end

local function zerr(what, strm, rc)
  local msg = strm[0].msg ~= nil and ffi.string(strm[0].msg) or ('zlib error ' .. rc)
  return what .. ': ' .. msg
end

--- Compresses `text` into one gzip member. level: 1..9 (default 6).
function M.compress(text, level)
  assert(type(text) == 'string', '[perf_manual.gzip] compress: expected a string')
  local strm = stream_t()
  local rc = Z.deflateInit2_(strm, level or 6, 8, GZIP_WINDOW, 8, 0, Z.zlibVersion(), ffi.sizeof('pm_z_stream'))
  if rc ~= Z_OK then return nil, zerr('gzip: deflateInit2', strm, rc) end
  local cap = tonumber(Z.deflateBound(strm, #text)) + 32
  local out = ffi.new('uint8_t[?]', cap)
  strm[0].next_in, strm[0].avail_in = text, #text
  strm[0].next_out, strm[0].avail_out = out, cap
  rc = Z.deflate(strm, Z_FINISH)
  local n = cap - strm[0].avail_out
  Z.deflateEnd(strm)
  if rc ~= Z_STREAM_END then return nil, zerr('gzip: deflate', strm, rc) end
  return ffi.string(out, n)
end

--- Decompresses gzip data (every member of a multi-member file, as gzip -d
--- does). Returns the text, or nil, err for data that is not gzip or is cut short.
--- opts.max: refuse to unpack more than this many bytes (hostile input);
--- opts.single: one member only, nothing after it; opts.prefix: stop once
--- this many bytes are out and return just them (a look at a header).
function M.decompress(data, opts)
  assert(type(data) == 'string', '[perf_manual.gzip] decompress: expected a string')
  local max = opts and opts.max or math.huge
  local single = opts and opts.single
  local strm = stream_t()
  local rc = Z.inflateInit2_(strm, GZIP_READ_WINDOW, Z.zlibVersion(), ffi.sizeof('pm_z_stream'))
  if rc ~= Z_OK then return nil, zerr('gunzip: inflateInit2', strm, rc) end
  local CHUNK = 256 * 1024
  local buf = ffi.new('uint8_t[?]', CHUNK)
  local parts, total = {}, 0
  local base = ffi.cast('const uint8_t *', data)
  strm[0].next_in, strm[0].avail_in = base, #data
  while true do
    strm[0].next_out, strm[0].avail_out = buf, CHUNK
    rc = Z.inflate(strm, Z_NO_FLUSH)
    local got = CHUNK - strm[0].avail_out
    total = total + got
    if total > max then
      Z.inflateEnd(strm)
      return nil, 'gunzip: unpacks to more than ' .. max .. ' bytes'
    end
    if got > 0 then parts[#parts + 1] = ffi.string(buf, got) end
    if opts and opts.prefix and total >= opts.prefix then
      Z.inflateEnd(strm)
      return table.concat(parts):sub(1, opts.prefix)
    end
    if rc == Z_STREAM_END then
      local pos = #data - strm[0].avail_in
      if single and strm[0].avail_in > 0 then
        Z.inflateEnd(strm)
        return nil, 'gunzip: other data after the compressed stream'
      end
      -- another member follows (cat a.gz b.gz); trailing zero padding ends the file
      if strm[0].avail_in == 0 or data:byte(pos + 1) ~= 0x1f then break end
      Z.inflateReset(strm)
      strm[0].next_in, strm[0].avail_in = base + pos, #data - pos
    elseif rc == Z_BUF_ERROR and strm[0].avail_in == 0 and got == 0 then
      Z.inflateEnd(strm)
      return nil, 'gunzip: the data is cut short'
    elseif rc ~= Z_OK and rc ~= Z_BUF_ERROR then
      local err = zerr('gunzip', strm, rc)
      Z.inflateEnd(strm)
      return nil, err
    end
  end
  Z.inflateEnd(strm)
  return table.concat(parts)
end

return M
