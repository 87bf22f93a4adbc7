--- Portable investigations: one stored investigation packed into one file
--- that `show`, `report`, `present`, `diff` and `search --import` read on
--- another machine, without the store it came from.
---
--- A bundle is a plain gzip'd tar (Debian's `tar tzf` lists it), written
--- and read in process with the zlib linked into the binary:
---
---   <id>/bundle.json     the manifest: what was packed, by which tool, the
---                        redaction applied, the profiles' symbol facts, and
---                        every other member's size and SHA-256
---   <id>/metadata.yaml   the investigation folder as the store keeps it
---   <id>/report.md       (perf_manual.store.contents: raw_data/, analysis/,
---   <id>/raw_data/...     after*/ ...), every text redacted
---
--- Profiles are symbolised when they are recorded (perf_manual.sym takes a
--- snapshot of each process's mappings while it runs), so the folded stacks
--- carry the function names: the bundle keeps them verbatim (names are
--- code, not secrets), writes the folded file of a profile recorded only
--- inside its JSON, and says per profile which binaries (build-ids) named
--- its frames and how many frames no symbol named.
---
--- Reading checks every checksum before anything is used, refuses members
--- outside the investigation's folder, links and devices, and unpacks into
--- a private temporary folder removed when the process ends.
local ffi = require('ffi')
local cjson = require('cjson')
local util = require('perf_manual.util')
local gzip = require('perf_manual.gzip')
local store = require('perf_manual.store')
local redact = require('perf_manual.report.redact')
local host = require('perf_manual._host')
local dirent = require('posix.dirent')
local pstat = require('posix.sys.stat')
local stdlib = require('posix.stdlib')
local unistd = require('posix.unistd')

local M = {}

M.FORMAT = 'perf_manual-bundle'
M.VERSION = 1
M.MANIFEST = 'bundle.json'
-- a bundle unpacks to at most this much: a corrupt or hostile file must
-- not fill the disk or the memory
M.MAX_UNPACKED = 2 ^ 30

-- statuses of a run that has ended; others are refused unless asked
M.FINISHED = { complete = true, failed = true }

local function fail(msg) util.user_error('bundle: ' .. msg) end

-- gzip (zlib, linked into the binary) -------------------------------------

--- gzip of a string (no file name, mtime 0: the same input gives the same bytes).
function M.gzip(data, level)
  return assert(gzip.compress(data, level))
end

--- The data of a gzip'd string, or nil, why (corrupt, truncated, larger
--- than `max` bytes, or followed by other data).
function M.gunzip(data, max)
  max = max or M.MAX_UNPACKED
  local out, err = gzip.decompress(data, { max = max, single = true })
  if out then return out end
  err = err:gsub('^gunzip: ', '')
  if err == 'the data is cut short' then return nil, 'truncated' end
  if err:match('^unpacks to more than') then return nil, 'unpacks to more than ' .. util.fmt_bytes(max) end
  return nil, err
end

-- SHA-256 (libcrypto, which every Debian system has: systemd needs it) ----

local crypto
local function sha256_lib()
  if crypto == nil then
    ffi.cdef [[
      typedef struct evp_md_st EVP_MD;
      const EVP_MD *EVP_sha256(void);
      int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
                     const EVP_MD *type, void *impl);
    ]]
    local ok, lib = pcall(ffi.load, 'libcrypto.so.3')
    crypto = ok and lib or false
  end
  if not crypto then util.user_error('bundle: SHA-256 needs libcrypto.so.3 (Debian package libssl3)') end
  return crypto
end

--- Hex SHA-256 of a string.
function M.sha256(data)
  local lib = sha256_lib()
  local md, n = ffi.new('unsigned char[32]'), ffi.new('unsigned int[1]')
  assert(lib.EVP_Digest(data, #data, md, n, lib.EVP_sha256(), nil) == 1, 'bundle: EVP_Digest failed')
  return (ffi.string(md, n[0]):gsub('.', function(c) return string.format('%02x', c:byte()) end))
end

-- tar (POSIX ustar) ---------------------------------------------------------

local function octal(n, width)
  return string.format('%0' .. (width - 1) .. 'o', n) .. '\0'
end

local function field(s, width) return s .. string.rep('\0', width - #s) end

-- name (<=100) and prefix (<=155) of a path, split at a '/'
local function split_name(path)
  if #path <= 100 then return path, '' end
  for i = #path, 1, -1 do
    if path:byte(i) == 47 and #path - i <= 100 and i - 1 <= 155 then
      return path:sub(i + 1), path:sub(1, i - 1)
    end
  end
  fail('path too long for a tar member: ' .. path)
end

local function header(path, size, typeflag, mode, mtime)
  local name, prefix = split_name(path)
  local h = field(name, 100) .. octal(mode, 8) .. octal(0, 8) .. octal(0, 8) .. octal(size, 12)
    .. octal(mtime, 12) .. '        ' .. typeflag .. field('', 100) .. 'ustar\0' .. '00'
    .. field('root', 32) .. field('root', 32) .. octal(0, 8) .. octal(0, 8) .. field(prefix, 155) .. field('', 12)
  assert(#h == 512)
  local sum = 0
  for i = 1, 512 do sum = sum + h:byte(i) end
  return h:sub(1, 148) .. string.format('%06o\0 ', sum) .. h:sub(157)
end

--- A tar archive of members {path=, data=} (data nil: a folder), in order.
function M.tar(members, mtime)
  local out = {}
  for _, m in ipairs(members) do
    if m.data then
      out[#out + 1] = header(m.path, #m.data, '0', 420, mtime or 0)
      out[#out + 1] = m.data
      local pad = (512 - #m.data % 512) % 512
      if pad > 0 then out[#out + 1] = string.rep('\0', pad) end
    else
      out[#out + 1] = header(m.path:gsub('/+$', '') .. '/', 0, '5', 493, mtime or 0)
    end
  end
  out[#out + 1] = string.rep('\0', 1024)
  return table.concat(out)
end

local function cstr(s) return (s:match('^[^%z]*')) end

--- The members of a tar archive: list of {path=, data=|nil for a folder},
--- or nil, why. Plain files and folders only (GNU long names and pax path
--- records are understood); links, devices and a bad checksum are refused.
function M.untar(data)
  local out, pos, long_name = {}, 1, nil
  while pos + 511 <= #data do
    local h = data:sub(pos, pos + 511)
    if not h:find('[^%z]') then break end
    local sum = 0
    for i = 1, 512 do sum = sum + ((i >= 149 and i <= 156) and 32 or h:byte(i)) end
    local want = tonumber(cstr(h:sub(149, 156)):match('^%s*([0-7]+)') or '', 8)
    if want ~= sum then return nil, string.format('bad tar header checksum at byte %d', pos - 1) end
    local size = tonumber(cstr(h:sub(125, 136)):match('^%s*([0-7]+)'), 8) or 0
    local typeflag = h:sub(157, 157)
    local name = cstr(h:sub(1, 100))
    if h:sub(258, 262) == 'ustar' then
      local prefix = cstr(h:sub(346, 500))
      if prefix ~= '' then name = prefix .. '/' .. name end
    end
    local body_at = pos + 512
    if body_at + size - 1 > #data then return nil, 'truncated tar member ' .. name end
    local body = data:sub(body_at, body_at + size - 1)
    pos = body_at + math.ceil(size / 512) * 512
    if typeflag == 'L' then
      long_name = cstr(body)
    elseif typeflag == 'x' then
      long_name = body:match('%d+ path=([^\n]*)\n') or long_name
    elseif typeflag == 'g' then -- luacheck: ignore 542
      -- global pax header: nothing we use
    elseif typeflag == '0' or typeflag == '\0' or typeflag == '5' then
      name = long_name or name
      long_name = nil
      out[#out + 1] = { path = name, data = typeflag ~= '5' and body or nil }
    else
      return nil, string.format("member %s is a link or a device (type '%s'): refused", name, typeflag)
    end
  end
  return out
end

-- Redaction of the folder's files -------------------------------------------

-- JSON and YAML fields whose strings are stack frames or function names:
-- code, kept as recorded (a flame graph must name the same functions)
M.VERBATIM_KEYS = { folded = true, frames = true, stacks = true, func = true, ['function'] = true,
  caller_frame = true, waiter_site = true, holder_site = true, symbol = true, hot_path = true }

-- a string value: redacted by the rules; under a secret-looking key, hidden
local function redact_value(key, s)
  if s == redact.MARK then return s, 0 end
  if type(key) == 'string' and redact.is_secret_name(key) then return redact.MARK, 1 end
  return redact.string(s)
end

--- Redacts the strings of JSON text (one document or JSON lines) in place:
--- the text keeps its layout byte for byte except the strings that change,
--- and fields in VERBATIM_KEYS (at any depth) are kept. Returns text, count.
function M.redact_json(text)
  local out, last, hidden = {}, 1, 0
  local stack, keep_depth = {}, 0
  local key, in_object = nil, false
  local i = 1
  while true do
    local s = text:find('[%[%]{}"]', i)
    if not s then break end
    local c = text:byte(s)
    if c == 34 then -- a string
      local e = s + 1
      while true do
        local q = text:find('["\\]', e)
        if not q then return nil, 'unterminated string' end
        if text:byte(q) == 92 then e = q + 2 else e = q break end
      end
      local nxt = text:match('^%s*(.)', e + 1)
      if nxt == ':' and in_object then
        local ok, k = pcall(cjson.decode, text:sub(s, e))
        key = ok and k or nil
      else
        if keep_depth == 0 and not M.VERBATIM_KEYS[key] then
          local ok, v = pcall(cjson.decode, text:sub(s, e))
          if ok and type(v) == 'string' then
            local r, n = redact_value(in_object and key or nil, v)
            if n > 0 and r ~= v then
              out[#out + 1] = text:sub(last, s - 1)
              -- escaped as the writer had it (util.json_encode writes '\/')
              local lit = cjson.encode(r)
              if not text:sub(s, e):find('\\/') then lit = lit:gsub('\\/', '/') end
              out[#out + 1] = lit
              last = e + 1
              hidden = hidden + n
            end
          end
        end
        if in_object then key = nil end
      end
      i = e + 1
    elseif c == 123 or c == 91 then -- { [
      local keep = M.VERBATIM_KEYS[key] and true or false
      stack[#stack + 1] = { in_object = in_object, keep = keep }
      if keep then keep_depth = keep_depth + 1 end
      in_object = c == 123
      key = nil
      i = s + 1
    else -- } ]
      local top = table.remove(stack)
      if top then
        if top.keep then keep_depth = keep_depth - 1 end
        in_object = top.in_object
      end
      key = nil
      i = s + 1
    end
  end
  if hidden == 0 then return text, 0 end
  out[#out + 1] = text:sub(last)
  return table.concat(out), hidden
end

-- a decoded table (metadata) redacted in place; returns the count
local function redact_table(t, seen)
  seen = seen or {}
  if seen[t] then return 0 end
  seen[t] = true
  local n = 0
  for k, v in pairs(t) do
    if type(v) == 'string' then
      local r, c = redact_value(type(k) == 'string' and k or nil, v)
      if c > 0 and r ~= v then t[k] = r; n = n + c end
    elseif type(v) == 'table' and not M.VERBATIM_KEYS[k] then
      n = n + redact_table(v, seen)
    end
  end
  return n
end

--- Redacts one file of the folder by its kind. Returns data, count.
function M.redact_file(path, data)
  if path:match('%.folded$') then return data, 0 end
  if path:match('%.json$') or path:match('%.jsonl$') then
    local text, n = M.redact_json(data)
    if text then return text, n end
  end
  if path == store.METADATA then
    local meta = store.parse_metadata(data, path)
    if meta then
      local n = redact_table(meta)
      if n == 0 then return data, 0 end
      return store.yaml_dump(meta), n
    end
  end
  -- binary data is not text to redact
  if data:find('%z') then return data, 0 end
  return redact.string(data)
end

-- Symbols ---------------------------------------------------------------------

-- what names the frames of one folded profile: stacks, distinct frames and
-- those no symbol named ([unknown], bare addresses)
local function frame_facts(folded)
  local stacks, frames, unknown, seen = 0, 0, 0, {}
  if folded:sub(-1) ~= '\n' then folded = folded .. '\n' end
  for key in folded:gmatch('([^\n]*) %d+\n') do
    stacks = stacks + 1
    for f in key:gmatch('[^;]+') do
      if not seen[f] then
        seen[f] = true
        frames = frames + 1
        if f:match('^%[unknown%]') or f:match('^0x%x+$') then unknown = unknown + 1 end
      end
    end
  end
  return stacks, frames, unknown
end

-- the profiles of the folder: their folded stacks as files (written from
-- the JSON when only it holds them) and, per profile, the symbol facts
local function profile_symbols(files, by_path)
  local out = {}
  for _, f in ipairs(files) do
    local base = f.path:match('^(.*/profile%-[^/]*)%.json$') or f.path:match('^(profile%-[^/]*)%.json$')
    if base then
      local rec = util.json_decode(f.data)
      if type(rec) == 'table' then
        local fpath = base .. '.folded'
        if not by_path[fpath] and type(rec.folded) == 'string' then
          local nf = { path = fpath, data = rec.folded, derived = true }
          files[#files + 1] = nf
          by_path[fpath] = nf
        end
        local folded = by_path[fpath] and by_path[fpath].data
        if folded then
          local stacks, frames, unknown = frame_facts(folded)
          local bins = {}
          for _, b in ipairs(type(rec.binaries) == 'table' and rec.binaries or {}) do
            bins[#bins + 1] = { name = (redact.string(tostring(b.name or '?'))), build_id = b.build_id,
              symbols = b.symbols }
          end
          out[#out + 1] = { profile = fpath, kind = rec.kind, stacks = stacks, frames = frames,
            unknown_frames = unknown, binaries = util.array(bins),
            written_from_json = by_path[fpath].derived or nil }
        end
      end
    end
  end
  table.sort(out, function(a, b) return a.profile < b.profile end)
  return util.array(out)
end

-- Packing ---------------------------------------------------------------------

-- "2026-12-04T13:53:01.123Z" -> epoch seconds (0 when not a time): the
-- members' mtime, so one investigation always packs to the same tar
local function epoch(iso)
  local Y, Mo, D, h, mi, sec = tostring(iso or ''):match('^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)')
  if not Y then return 0 end
  local t = os.time({ year = tonumber(Y), month = tonumber(Mo), day = tonumber(D), hour = tonumber(h),
    min = tonumber(mi), sec = tonumber(sec), isdst = false })
  -- os.time reads the fields as local time
  return t + (os.time(os.date('*t', t)) - os.time(os.date('!*t', t)))
end

--- Packs the investigation of store handle `h` into bundle bytes.
--- opts.partial allows a run that did not finish. Returns data, manifest.
function M.pack(h, opts)
  opts = opts or {}
  if not store.exists(store.metadata_path(h.dir)) then
    fail(util.printable(h.dir) .. ' is not an investigation (no ' .. store.METADATA .. ')')
  end
  local meta, err = h:load_metadata()
  if not meta then fail('cannot read ' .. h.id .. ': ' .. tostring(err)) end
  local status = tostring(meta.status or 'unknown')
  if not M.FINISHED[status] and not opts.partial then
    fail(string.format('investigation %s is not finished (status %s): `perf_manual investigate --resume %s` '
      .. 'finishes it, or --partial bundles it as it is', h.id, status, h.id))
  end
  -- no run writes it while it is read: another run's lock is a user error;
  -- a folder we may not lock (read-only) is read as it is
  local locked, lerr = pcall(h.lock, h)
  if not locked and util.is_user_error(lerr) and lerr.user_error:find('being written', 1, true) then
    error(lerr, 0)
  end
  local files, by_path = {}, {}
  local ok, perr = pcall(function()
    for _, f in ipairs(store.contents(h.dir)) do
      if f.link then
        fail(h.id .. ': ' .. f.path .. " is a symbolic link (a bundle holds only the folder's own files)")
      end
      local data, rerr = util.readfile(h.dir .. '/' .. f.path)
      if not data then fail('cannot read ' .. f.path .. ': ' .. tostring(rerr)) end
      files[#files + 1] = { path = f.path, data = data }
      by_path[f.path] = files[#files]
    end
  end)
  if locked then h:release() end
  if not ok then error(perr, 0) end
  local symbols = profile_symbols(files, by_path)
  table.sort(files, function(a, b) return a.path < b.path end)
  local hidden, changed, listed = 0, {}, {}
  for _, f in ipairs(files) do
    local n
    f.data, n = M.redact_file(f.path, f.data)
    if n > 0 then hidden = hidden + n; changed[#changed + 1] = { path = f.path, hidden = n } end
    listed[#listed + 1] = { path = f.path, bytes = #f.data, sha256 = M.sha256(f.data) }
  end
  local facts = store.host_facts()
  local manifest = {
    format = M.FORMAT, version = M.VERSION, id = h.id, name = meta.name, status = status,
    symptom = meta.symptom and (redact.string(tostring(meta.symptom))) or nil,
    host = meta.host, kernel = meta.kernel, tool_version = meta.tool_version, created = meta.created,
    bundled = store.iso(), bundled_on = facts.host, bundled_with = host.version,
    partial = not M.FINISHED[status] or nil,
    redaction = { rules = 'perf_manual.report.redact', hidden = hidden, files = util.array(changed),
      kept = 'stack frames and function names (folded stacks, frames, symbols)' },
    symbols = { resolved = 'at record time (perf_manual.sym snapshots each process while it runs)',
      profiles = symbols },
    files = util.array(listed),
  }
  local members = { { path = h.id },
    { path = h.id .. '/' .. M.MANIFEST, data = util.json_encode(manifest, true) .. '\n' } }
  -- the folders an investigation always has, even empty
  for _, d in ipairs(store.SUBDIRS) do members[#members + 1] = { path = h.id .. '/' .. d } end
  for _, f in ipairs(files) do members[#members + 1] = { path = h.id .. '/' .. f.path, data = f.data } end
  local mtime = epoch(meta.updated or meta.created)
  return M.gzip(M.tar(members, mtime)), manifest
end

--- Writes the bundle of investigation `arg` (an id in the store, or a
--- path to its folder) to `out` ('-' for stdout). Returns the manifest and
--- the size written.
function M.write(arg, out, opts)
  opts = opts or {}
  local h = store.open(store.root(opts.store), arg)
  if out == '-' and unistd.isatty(1) == 1 then
    fail('refusing to write a bundle to a terminal: redirect stdout, or give -o FILE')
  end
  if out ~= '-' then
    if store.is_dir(out) then fail('-o ' .. util.printable(out) .. ' is a folder; give a file name') end
    local dir = out:match('^(.*)/[^/]*$')
    if dir and dir ~= '' and not store.is_dir(dir) then fail('-o ' .. util.printable(out) .. ': no folder ' .. dir) end
  end
  local data, manifest = M.pack(h, opts)
  if out == '-' then
    io.stdout:write(data)
    io.stdout:flush()
  else
    local ok, err = util.write_atomic(out, data)
    if not ok then fail(err) end
  end
  return manifest, #data
end

-- Reading ---------------------------------------------------------------------

--- True when `path` is a regular file holding a gzip'd tar (a bundle, or a
--- damaged one to be refused as such); a gzip'd pprof profile is not one.
function M.looks_like(path)
  local st = pstat.stat(path)
  if not st or pstat.S_ISREG(st.st_mode) == 0 then return false end
  local f = io.open(path, 'rb')
  if not f then return false end
  local head = f:read(64 * 1024) or ''
  f:close()
  if head:sub(1, 2) ~= '\31\139' then return false end
  -- a tar header's magic sits at byte 257; a cut or corrupt file is still
  -- offered to the bundle reader, which says what is wrong with it
  local block = gzip.decompress(head, { prefix = 512 })
  return not block or #block < 262 or block:sub(258, 262) == 'ustar'
end

--- Checks and decodes bundle bytes: the manifest and the files
--- ({path -> data}), or nil, why. `label` names the bundle in messages.
function M.decode(data, label)
  label = label or 'bundle'
  local tar, gerr = M.gunzip(data)
  if not tar then return nil, label .. ': not a readable bundle (' .. gerr .. ')' end
  local members, terr = M.untar(tar)
  if not members then return nil, label .. ': not a readable bundle (' .. terr .. ')' end
  local first = members[1] and members[1].path:match('^([^/]+)/?$')
  local mpath = first and (first .. '/' .. M.MANIFEST)
  local mdata
  for _, m in ipairs(members) do if m.path == mpath then mdata = m.data end end
  if not mdata then return nil, label .. ': not a perf_manual bundle (no <id>/' .. M.MANIFEST .. ')' end
  local manifest = util.json_decode(mdata)
  if type(manifest) ~= 'table' or manifest.format ~= M.FORMAT then
    return nil, label .. ': not a perf_manual bundle (' .. M.MANIFEST .. ' is not its manifest)'
  end
  if type(manifest.version) ~= 'number' or manifest.version > M.VERSION then
    return nil, string.format('%s: bundle format version %s is newer than this perf_manual reads (%d)', label,
      tostring(manifest.version), M.VERSION)
  end
  local id = tostring(manifest.id)
  if id ~= first or not id:match('^[%w][%w._@+-]*$') then
    return nil, label .. ': the manifest names investigation ' .. util.printable(id) .. ', the folder is ' .. first
  end
  local files = {}
  for _, m in ipairs(members) do
    local rel = m.path:sub(#first + 2):gsub('/+$', '')
    if m.path:sub(1, #first + 1) ~= first .. '/' and m.path:gsub('/+$', '') ~= first then
      return nil, label .. ': member ' .. util.printable(m.path) .. ' is outside the investigation folder'
    end
    if rel ~= '' and rel ~= M.MANIFEST then
      local clean, why = store.safe_rel(rel)
      if not clean and rel ~= store.METADATA then
        return nil, label .. ': member ' .. util.printable(m.path) .. ' refused (' .. tostring(why) .. ')'
      end
      if m.data then files[rel] = m.data end
    end
  end
  -- every file listed, each as it was packed, and nothing else
  local listed = {}
  for _, f in ipairs(type(manifest.files) == 'table' and manifest.files or {}) do
    local got = files[f.path]
    if not got then return nil, label .. ': ' .. tostring(f.path) .. ' is missing' end
    if #got ~= f.bytes or M.sha256(got) ~= f.sha256 then
      return nil, label .. ': checksum mismatch for ' .. f.path .. ' (the bundle was changed or damaged)'
    end
    listed[f.path] = true
  end
  for p in pairs(files) do
    if not listed[p] then return nil, label .. ': ' .. p .. ' is not in the manifest' end
  end
  if not listed[store.METADATA] then return nil, label .. ': no ' .. store.METADATA .. ' (not an investigation)' end
  return manifest, files
end

local function rmtree(path)
  local st = pstat.lstat(path)
  if not st then return end
  if pstat.S_ISDIR(st.st_mode) ~= 0 then
    for _, n in ipairs(dirent.dir(path) or {}) do
      if n ~= '.' and n ~= '..' then rmtree(path .. '/' .. n) end
    end
    unistd.rmdir(path)
  else
    os.remove(path)
  end
end
M.rmtree = rmtree

--- Writes decoded files into dir/<id>/ (folders made as needed).
function M.unpack_into(dir, manifest, files)
  local top = dir .. '/' .. manifest.id
  local ok, err = store.mkdir_p(top)
  if not ok then fail(err) end
  for _, d in ipairs(store.SUBDIRS) do store.mkdir_p(top .. '/' .. d) end
  for rel, data in pairs(files) do
    local full = top .. '/' .. rel
    ok, err = store.mkdir_p(full:match('^(.*)/[^/]+$'))
    if not ok then fail(err) end
    ok, err = util.write_atomic(full, data)
    if not ok then fail(err) end
  end
  return top
end

-- unpacked bundles of this process: removed when it ends (lua_close runs
-- the collector on every exit path, user errors included)
local opened = {}
local cleaner = newproxy(true)
getmetatable(cleaner).__gc = function()
  for _, o in pairs(opened) do rmtree(o.tmp) end
end
M._cleaner = cleaner

--- Opens a bundle file: checks it and unpacks it into a private temporary
--- folder. Returns {path=, dir=<the investigation folder>, id=, manifest=}
--- or raises a user error naming what is wrong.
function M.open(path)
  local key = stdlib.realpath(path) or path
  if opened[key] then return opened[key] end
  local data, rerr = util.readfile(path)
  if not data then util.user_error('cannot read ' .. util.printable(path) .. ': ' .. tostring(rerr)) end
  local manifest, files = M.decode(data, util.printable(path))
  if not manifest then util.user_error(files) end
  local base = (os.getenv('TMPDIR') and os.getenv('TMPDIR') ~= '' and os.getenv('TMPDIR') or '/tmp')
  local tmp, terr = stdlib.mkdtemp(base .. '/perf_manual-bundle-XXXXXX')
  if not tmp then util.user_error('bundle: cannot make a temporary folder in ' .. base .. ': ' .. tostring(terr)) end
  local o = { path = path, tmp = tmp, id = manifest.id, manifest = manifest }
  opened[key] = o
  o.dir = M.unpack_into(tmp, manifest, files)
  return o
end

--- The store handle of an investigation named on the command line: a
--- bundle file (unpacked; handle.bundle is the opened bundle), or an id or
--- folder in the store (perf_manual.store.open).
function M.resolve(arg, store_root)
  if type(arg) == 'string' and M.looks_like(arg) then
    local b = M.open(arg)
    local h = store.open(store.root(store_root), b.dir)
    h.bundle = b
    return h
  end
  local st = type(arg) == 'string' and pstat.stat(arg)
  if st and pstat.S_ISREG(st.st_mode) ~= 0 then
    util.user_error(util.printable(arg) .. ' is not a folder (an investigation or data dir is one) '
      .. 'nor a bundle (`perf_manual bundle ID -o FILE` makes one)')
  end
  return store.open(store.root(store_root), arg)
end

--- Imports a bundle into the store at `root`: its folder is copied in as
--- an investigation and indexed for search. The id is kept when free; a
--- bundle from another host whose id is taken gets the host's name (then
--- a number) added. Importing the same bundle twice imports it once.
--- Returns the id in the store and whether it was already there.
function M.import(path, root)
  local b = M.open(path)
  local ok, err = store.mkdir_p(root)
  if not ok then util.user_error('store ' .. root .. ': ' .. err) end
  local fingerprint = M.sha256(util.json_encode(b.manifest.files))
  local function same(id)
    local prev = util.json_decode(util.readfile(root .. '/' .. id .. '/.bundle.json') or '')
    return type(prev) == 'table' and prev.fingerprint == fingerprint
  end
  local want = b.id
  if store.exists(root .. '/' .. want) and not same(want) then
    want = b.id .. '-' .. store.slug(b.manifest.host or 'imported')
  end
  local id, n = want, 1
  while store.exists(root .. '/' .. id) do
    if same(id) then return id, true end
    n = n + 1
    id = want .. '-' .. n
  end
  local copy = {}
  for _, f in ipairs(b.manifest.files) do copy[f.path] = util.readfile(b.dir .. '/' .. f.path) end
  local tmpname = '.import-' .. id
  rmtree(root .. '/' .. tmpname)
  M.unpack_into(root, { id = tmpname }, copy)
  util.write_atomic(root .. '/' .. tmpname .. '/.bundle.json', util.json_encode({ fingerprint = fingerprint,
    from = path:match('[^/]+$'), original_id = b.id, host = b.manifest.host,
    bundled = b.manifest.bundled }, true) .. '\n')
  -- the folder appears whole, under its final name
  local rok, rerr = os.rename(root .. '/' .. tmpname, root .. '/' .. id)
  if not rok then rmtree(root .. '/' .. tmpname) util.user_error('import: ' .. tostring(rerr)) end
  local h = store.open(root, id)
  local meta = h:load_metadata()
  if meta then
    if id ~= b.id then
      meta.imported_as = id
      h:save_metadata(meta)
    else
      local iok, ierr = pcall(require('perf_manual.kb').update, root, id, meta)
      if not iok then io.stderr:write('perf_manual: search index not updated (', tostring(ierr), ')\n') end
    end
  end
  return id, false
end

return M
