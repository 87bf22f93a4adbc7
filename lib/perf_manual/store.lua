--- The investigation store: one folder per investigation,
--- `<root>/YYYY-MM-DD_<slug>/` with `metadata.yaml`, `raw_data/`, `analysis/`,
--- `report.md`. Every write is atomic (temp file, fsync, rename) and a lock
--- file keeps two runs from writing one investigation. Nothing here reads
--- raw data unless asked: `show` and `list` stay fast on big investigations.
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local kb = require('perf_manual.kb')
local host = require('perf_manual._host')
local lyaml = require('lyaml')
local yaml = require('yaml')
local dirent = require('posix.dirent')
local errno_mod = require('posix.errno')
local fcntl = require('posix.fcntl')
local pstat = require('posix.sys.stat')
local pwd = require('posix.pwd')
local unistd = require('posix.unistd')

local M = {}

M.SUBDIRS = { 'raw_data', 'analysis' }
M.METADATA = 'metadata.yaml'
M.SCHEMA_VERSION = 1

-- Store root and naming ---------------------------------------------------

--- The store root: explicit dir, else $PERF_MANUAL_STORE, else ./investigations.
function M.root(dir)
  if dir and dir ~= '' then return dir end
  local env = os.getenv('PERF_MANUAL_STORE')
  if env and env ~= '' then return env end
  return 'investigations'
end

--- "Slow API after deploy!" -> "slow-api-after-deploy" (at most 48 chars).
function M.slug(text)
  local s = tostring(text or ''):lower():gsub('[^%w]+', '-'):gsub('^%-+', ''):gsub('%-+$', '')
  if #s > 48 then s = s:sub(1, 48):gsub('%-+$', '') end
  if s == '' then s = 'investigation' end
  return s
end

local function is_dir(path)
  local st = pstat.stat(path)
  return st ~= nil and pstat.S_ISDIR(st.st_mode) ~= 0
end
M.is_dir = is_dir

local function mkdir_p(path)
  local acc = path:sub(1, 1) == '/' and '' or nil
  for part in path:gmatch('[^/]+') do
    acc = acc and (acc .. '/' .. part) or part
    if not is_dir(acc) then
      local ok, err, errno = pstat.mkdir(acc, 493)
      if not ok and errno ~= errno_mod.EEXIST then
        return nil, 'cannot create ' .. acc .. ': ' .. tostring(err):gsub('^[^:]*: ', '')
      end
    end
  end
  return true
end
M.mkdir_p = mkdir_p

--- True when something (a file, a folder) is at path.
function M.exists(path)
  return require('posix.sys.stat').stat(path) ~= nil
end

--- ISO-8601 UTC with milliseconds, from epoch seconds (default now).
function M.iso(t)
  t = t or sys.realtime()
  local ms = math.floor((t - math.floor(t)) * 1000)
  return os.date('!%Y-%m-%dT%H:%M:%S', math.floor(t)) .. string.format('.%03dZ', ms)
end

local function first_line(path)
  local f = io.open(path, 'r')
  if not f then return nil end
  local s = f:read('*l'); f:close()
  return s
end

--- Facts about where an investigation ran.
function M.host_facts()
  local user = os.getenv('SUDO_USER') or os.getenv('USER')
  if not user then
    local pw = pwd.getpwuid(unistd.geteuid())
    user = pw and pw.pw_name or tostring(unistd.geteuid())
  end
  return {
    host = first_line('/proc/sys/kernel/hostname') or 'unknown',
    kernel = first_line('/proc/sys/kernel/osrelease') or 'unknown',
    tool_version = host.version,
    created_by = user,
  }
end

-- Paths inside an investigation -------------------------------------------

--- Checks a path relative to an investigation folder: no absolute paths, no
--- `..`, no hidden control files. Returns the cleaned path or nil, why.
function M.safe_rel(rel)
  if type(rel) ~= 'string' or rel == '' then return nil, 'empty path' end
  if rel:sub(1, 1) == '/' then return nil, 'absolute path' end
  local parts = {}
  for part in rel:gmatch('[^/]+') do
    if part == '..' then return nil, "'..' in path" end
    if part ~= '.' then parts[#parts + 1] = part end
  end
  if #parts == 0 then return nil, 'empty path' end
  if parts[1]:sub(1, 1) == '.' then return nil, 'hidden control file' end
  if #parts == 1 and parts[1] == M.METADATA then return nil, 'metadata.yaml is written by the engine' end
  return table.concat(parts, '/')
end

-- YAML --------------------------------------------------------------------

local function yaml_clean(v)
  -- lyaml cannot dump functions/userdata; JSON-null sentinels become nil
  local t = type(v)
  if t == 'table' then
    if v == util.json_null then return nil end
    local out = {}
    for k, x in pairs(v) do
      if type(k) ~= 'string' or k:sub(1, 1) ~= '_' then out[k] = yaml_clean(x) end
    end
    return out
  elseif t == 'function' or t == 'userdata' or t == 'thread' then
    return nil
  end
  return v
end

-- key order in metadata.yaml: what a reader wants first, then alphabetical
local KEY_RANK = {}
for i, k in ipairs({ 'schema', 'id', 'name', 'symptom', 'status', 'playbook', 'verdict', 'root_cause',
  'conclusion', 'created', 'created_by', 'updated', 'host', 'kernel', 'tool_version', 'replay',
  't', 'kind', 'what', 'key', 'question', 'answer', 'answered', 'source', 'text', 'stance',
  'artifact', 'note', 'resource', 'metric', 'value', 'severity', 'summary', 'path', 'bytes',
  'started', 'ended', 'reason', 'step', 'params', 'checklist', 'steps', 'findings', 'hypotheses',
  'evidence', 'artifacts', 'notes', 'state', 'timeline' }) do KEY_RANK[k] = i end

local YAML_WORDS = {}
for w in ('y n yes no true false on off null ~'):gmatch('%S+') do YAML_WORDS[w] = true end

-- strings a YAML reader would turn into something else are quoted
local function needs_quotes(s)
  if s == '' or YAML_WORDS[s:lower()] then return true end
  local c = s:sub(1, 1)
  return c:match('[%d%+%-%.~]') ~= nil
end

local function is_list(t)
  if getmetatable(t) == util.array_mt then return true end
  local n = #t
  if n == 0 then return next(t) == nil end
  for k in pairs(t) do
    if type(k) ~= 'number' or k < 1 or k > n or k ~= math.floor(k) then return false end
  end
  return true
end

--- YAML text of a table, keys in a stable, reader-friendly order (libyaml's
--- emitter does the quoting and escaping; lyaml.load reads it back).
function M.yaml_dump(t)
  local emitter = yaml.emitter()
  local function emit(ev)
    local ok, err = emitter.emit(ev)
    if not ok then error('[perf_manual.store] yaml: ' .. tostring(err), 0) end
  end
  local function node(v)
    local ty = type(v)
    if ty == 'table' then
      if is_list(v) then
        emit { type = 'SEQUENCE_START', style = 'BLOCK' }
        for _, x in ipairs(v) do node(x) end
        emit { type = 'SEQUENCE_END' }
      else
        local keys = {}
        for k in pairs(v) do keys[#keys + 1] = k end
        table.sort(keys, function(a, b)
          local ra, rb = KEY_RANK[a] or 1000, KEY_RANK[b] or 1000
          if ra ~= rb then return ra < rb end
          return tostring(a) < tostring(b)
        end)
        emit { type = 'MAPPING_START', style = 'BLOCK' }
        for _, k in ipairs(keys) do node(tostring(k)); node(v[k]) end
        emit { type = 'MAPPING_END' }
      end
    elseif ty == 'string' then
      local style = 'PLAIN'
      if v:find('\n', 1, true) then style = 'LITERAL'
      elseif needs_quotes(v) then style = 'SINGLE_QUOTED' end
      emit { type = 'SCALAR', value = v, plain_implicit = true, quoted_implicit = true, style = style }
    elseif ty == 'number' then
      local s
      if v ~= v then s = '.nan' elseif v == math.huge then s = '.inf' elseif v == -math.huge then s = '-.inf'
      elseif v == math.floor(v) and math.abs(v) < 1e15 then s = string.format('%d', v)
      else s = string.format('%.17g', v) end
      emit { type = 'SCALAR', value = s, plain_implicit = true, quoted_implicit = true, style = 'PLAIN' }
    elseif ty == 'boolean' then
      emit { type = 'SCALAR', value = tostring(v), plain_implicit = true, quoted_implicit = true, style = 'PLAIN' }
    else
      emit { type = 'SCALAR', value = '~', plain_implicit = true, quoted_implicit = true, style = 'PLAIN' }
    end
  end
  emit { type = 'STREAM_START', encoding = 'UTF8' }
  emit { type = 'DOCUMENT_START' }
  node(yaml_clean(t))
  emit { type = 'DOCUMENT_END' }
  local ok, text = emitter.emit { type = 'STREAM_END' }
  if not ok then error('[perf_manual.store] yaml: ' .. tostring(text), 0) end
  return text
end

local function null_to_nil(v)
  if v == lyaml.null then return nil end
  if type(v) == 'table' then
    for k, x in pairs(v) do v[k] = null_to_nil(x) end
  end
  return v
end

-- the top-level key that owns line `n` of a YAML text (for error messages)
local function field_at_line(text, n)
  local i, key, path = 0, nil, {}
  for line in (text .. '\n'):gmatch('(.-)\n') do
    i = i + 1
    local indent, k = line:match('^(%s*)%-?%s*([%w_]+):')
    if k then
      local depth = #indent
      for d = #path, 1, -1 do if path[d].depth >= depth then path[d] = nil end end
      path[#path + 1] = { depth = depth, key = k }
      local names = {}
      for _, p in ipairs(path) do names[#names + 1] = p.key end
      key = table.concat(names, '.')
    end
    if i >= n then break end
  end
  return key
end

-- the types metadata fields must have; a wrong type names the field
local FIELD_TYPES = {
  id = 'string', name = 'string', symptom = 'string', status = 'string',
  params = 'table', checklist = 'table', hypotheses = 'table', timeline = 'table',
  steps = 'table', findings = 'table', artifacts = 'table', notes = 'table',
}

--- Parses metadata text. Returns meta or nil, err where err names the file,
--- line and field ("<file>:<line>: field '<f>': <problem>"). On a syntax
--- error, `partial` (third value) holds the top-level fields that could be
--- read from the lines before the error.
function M.parse_metadata(text, file)
  file = file or M.METADATA
  local ok, res = pcall(lyaml.load, text)
  if not ok then
    local msg = tostring(res)
    local line, why = msg:match('(%d+):%d+: (.*)$')
    line = tonumber(line)
    local field = line and field_at_line(text, line)
    -- read what we can: each top-level block on its own
    local partial = {}
    local block, blocks = {}, {}
    for l in (text .. '\n'):gmatch('(.-)\n') do
      if l:match('^[%w_]+:') and #block > 0 then blocks[#blocks + 1] = block; block = {} end
      if l ~= '---' and l ~= '...' then block[#block + 1] = l end
    end
    blocks[#blocks + 1] = block
    for _, b in ipairs(blocks) do
      local bok, t = pcall(lyaml.load, table.concat(b, '\n'))
      if bok and type(t) == 'table' then
        for k, v in pairs(t) do partial[k] = null_to_nil(v) end
      end
    end
    return nil, string.format('%s:%s: field %s: %s', file, line or '?',
      field and ("'" .. field .. "'") or '?', why or msg), partial
  end
  if type(res) ~= 'table' then
    return nil, string.format('%s:1: field ?: expected a mapping, got %s', file, type(res)), {}
  end
  res = null_to_nil(res)
  for k, want in pairs(FIELD_TYPES) do
    if res[k] ~= nil and type(res[k]) ~= want then
      local ln = 1
      local i = 0
      for l in (text .. '\n'):gmatch('(.-)\n') do
        i = i + 1
        if l:match('^' .. k .. ':') then ln = i break end
      end
      local partial = {}
      for kk, v in pairs(res) do if kk ~= k then partial[kk] = v end end
      return nil, string.format("%s:%d: field '%s': expected %s, got %s", file, ln, k,
        want == 'table' and 'a list or mapping' or 'a ' .. want, type(res[k])), partial
    end
  end
  return res
end

-- Locking -----------------------------------------------------------------

local function try_lock(path)
  local fd, err
  for _ = 1, 10 do
    fd, err = fcntl.open(path, fcntl.O_RDWR + fcntl.O_CREAT, 420)
    if not fd then return nil, err end
    local ok = fcntl.fcntl(fd, fcntl.F_SETLK, { l_type = fcntl.F_WRLCK, l_whence = 0, l_start = 0, l_len = 0 })
    if not ok then
      local holder = unistd.read(fd, 64)
      unistd.close(fd)
      return nil, 'locked', holder and holder:match('%d+')
    end
    -- a finished run removes the file while holding its lock: the file we
    -- locked must still be the one at the path, else we locked a removed one
    local mine, now = pstat.stat('/proc/self/fd/' .. fd), pstat.stat(path)
    if mine and now and mine.st_ino == now.st_ino and mine.st_dev == now.st_dev then break end
    unistd.close(fd)
    fd, err = nil, 'lock file kept changing'
  end
  if not fd then return nil, err end
  -- fixed width, so a shorter pid never leaves digits of a longer one
  unistd.lseek(fd, 0, unistd.SEEK_SET or 0)
  unistd.write(fd, string.format('%-15d\n', sys.getpid()))
  return fd
end

-- The investigation handle -------------------------------------------------

local Inv = {}
Inv.__index = Inv
M.Investigation = Inv

local function new_handle(root, id)
  return setmetatable({ root = root, id = id, dir = root .. '/' .. id }, Inv)
end

function Inv:path(rel)
  local clean, why = M.safe_rel(rel)
  if not clean then
    util.user_error(string.format("investigation %s: refusing to write '%s' (%s): "
      .. 'playbooks write only inside their investigation folder', self.id, tostring(rel), why))
  end
  return self.dir .. '/' .. clean, clean
end

--- Takes the investigation's lock, or fails with a user error naming the holder.
function Inv:lock()
  if self._lockfd then return true end
  local fd, err, holder = try_lock(self.dir .. '/.lock')
  if not fd then
    if err == 'locked' then
      util.user_error(string.format('investigation %s is being written by another run%s; wait for it or stop it',
        self.id, holder and (' (pid ' .. holder .. ')') or ''))
    end
    util.user_error('investigation ' .. self.id .. ': cannot lock: ' .. tostring(err))
  end
  self._lockfd = fd
  return true
end

--- Removes the lock file and unlocks (a run that is finished): removed
--- while still held, so no other run can lock the file on its way out.
--- Without the lock held, the file is left to whoever holds it.
function Inv:release()
  if self._lockfd then os.remove(self.dir .. '/.lock') end
  self:unlock()
end

function Inv:unlock()
  if self._lockfd then
    unistd.close(self._lockfd)
    self._lockfd = nil
  end
end

--- Writes `data` at `rel` inside the investigation, atomically. Returns the
--- cleaned relative path. A full or read-only disk is a user error; the old
--- file (if any) stays as it was.
function Inv:write(rel, data)
  local full, clean = self:path(rel)
  local dir = full:match('^(.*)/[^/]+$')
  local ok, err = mkdir_p(dir)
  if not ok then util.user_error(err) end
  ok, err = util.write_atomic(full, data)
  if not ok then util.user_error(err) end
  return clean
end

function Inv:write_json(rel, t)
  return self:write(rel, util.json_encode(t, true) .. '\n')
end

--- Writes a list of records as JSON lines.
function Inv:write_jsonl(rel, records)
  local lines = {}
  for i, r in ipairs(records) do lines[i] = util.json_encode(r) end
  return self:write(rel, table.concat(lines, '\n') .. (#lines > 0 and '\n' or ''))
end

--- An appendable artifact (JSON lines written as they come, for runs that
--- a kill -9 may cut): :append(line) writes one whole line and flushes it
--- to the kernel, so every line appended before a kill is in the file (a
--- reader skips a torn last line); :close(). .rel is the cleaned path. The
--- file starts empty. A full or read-only disk is a user error.
function Inv:appender(rel)
  local full, clean = self:path(rel)
  local ok, err = mkdir_p(full:match('^(.*)/[^/]+$'))
  if not ok then util.user_error(err) end
  local f, ferr = io.open(full, 'w')
  if not f then util.user_error('cannot write ' .. tostring(ferr)) end
  f:setvbuf('no') -- one write() per line: nothing waits in a buffer
  local a = { rel = clean, path = full }
  function a.append(_, line)
    local wok, werr = f:write(line .. '\n')
    if not wok then util.user_error('cannot write ' .. full .. ': ' .. tostring(werr)) end
  end
  function a.close()
    if f then f:close(); f = nil end
  end
  return a
end

function Inv:read(rel)
  local full = self:path(rel)
  return util.readfile(full)
end

function Inv:exists(rel)
  local full = self:path(rel)
  local f = io.open(full, 'r')
  if f then f:close() return true end
  return false
end

--- Reads metadata.yaml. Returns meta or nil, err, partial (see parse_metadata).
function Inv:load_metadata()
  local file = self.dir .. '/' .. M.METADATA
  local text, err = util.readfile(file)
  if not text then return nil, file .. ': ' .. tostring(err):gsub('^[^:]*: ', ''), {} end
  return M.parse_metadata(text, file)
end

local index_warned = {} -- store roots whose index failed to update in this run

--- Writes metadata.yaml atomically and updates the search index (in one
--- SQLite transaction; `opts.index = false` skips it for small timeline
--- events). The index is a cache: failing to update it warns.
function Inv:save_metadata(meta, opts)
  meta.schema = meta.schema or M.SCHEMA_VERSION
  meta.id = self.id
  meta.updated = M.iso()
  local ok, err = util.write_atomic(self.dir .. '/' .. M.METADATA, M.yaml_dump(meta))
  if not ok then util.user_error(err) end
  if not self.no_index and not (opts and opts.index == false) then
    local iok, ierr = pcall(kb.update, self.root, self.id, meta)
    if not iok and not index_warned[self.root] then
      -- once per store and run: every later save would print the same line
      index_warned[self.root] = true
      io.stderr:write('perf_manual: search index not updated (', tostring(ierr), '); run `perf_manual reindex`\n')
    end
  end
end

--- Files under raw_data/ and analysis/ with sizes (stat only, never read).
function Inv:files()
  local out = {}
  local function walk(rel)
    local ok, names = pcall(dirent.dir, self.dir .. '/' .. rel)
    if not ok or not names then return end
    table.sort(names)
    for _, n in ipairs(names) do
      if n ~= '.' and n ~= '..' and not n:match('%.tmp%.%d+$') then
        local r = rel .. '/' .. n
        local st = pstat.stat(self.dir .. '/' .. r)
        if st and pstat.S_ISDIR(st.st_mode) ~= 0 then walk(r)
        elseif st then out[#out + 1] = { path = r, bytes = st.st_size } end
      end
    end
  end
  for _, d in ipairs(M.SUBDIRS) do walk(d) end
  return out
end

--- Every file of an investigation folder (metadata.yaml, report.md,
--- raw_data/, analysis/, after*/, log.txt ...), as paths relative to `dir`
--- with sizes, sorted; hidden control files (.lock) and temp files of
--- unfinished writes are left out. Symbolic links are listed with
--- `link = true` (their targets are outside what the folder holds).
function M.contents(dir)
  local out = {}
  local function walk(rel)
    local path = rel and (dir .. '/' .. rel) or dir
    local ok, names = pcall(dirent.dir, path)
    if not ok or not names then return end
    table.sort(names)
    for _, n in ipairs(names) do
      if n:sub(1, 1) ~= '.' and not n:match('%.tmp%.%d+$') then
        local r = rel and (rel .. '/' .. n) or n
        local st = pstat.lstat(dir .. '/' .. r)
        if st and pstat.S_ISLNK(st.st_mode) ~= 0 then out[#out + 1] = { path = r, bytes = 0, link = true }
        elseif st and pstat.S_ISDIR(st.st_mode) ~= 0 then walk(r)
        elseif st and pstat.S_ISREG(st.st_mode) ~= 0 then out[#out + 1] = { path = r, bytes = st.st_size } end
      end
    end
  end
  walk(nil)
  return out
end

-- Creating and finding ----------------------------------------------------

--- Creates a new investigation folder and takes its lock. `opts.date`
--- (YYYY-MM-DD) overrides today's date (tests, imports).
function M.create(root, name, opts)
  opts = opts or {}
  local ok, err = mkdir_p(root)
  if not ok then util.user_error('store ' .. root .. ': ' .. err) end
  local base = (opts.date or os.date('!%Y-%m-%d')) .. '_' .. M.slug(name)
  local id, n = base, 1
  while true do
    local mok, merr, errno = pstat.mkdir(root .. '/' .. id, 493)
    if mok then break end
    if errno ~= errno_mod.EEXIST then
      util.user_error('store ' .. root .. ': cannot create ' .. id .. ': ' .. tostring(merr):gsub('^[^:]*: ', ''))
    end
    n = n + 1
    id = base .. '-' .. n
  end
  local inv = new_handle(root, id)
  if not opts.no_lock then inv:lock() end
  for _, d in ipairs(M.SUBDIRS) do
    local mok, merr = mkdir_p(inv.dir .. '/' .. d)
    if not mok then util.user_error(merr) end
  end
  return inv
end

--- Investigation ids in the store, sorted (oldest first).
function M.list(root)
  local ok, names = pcall(dirent.dir, root)
  local out = {}
  if not ok or not names then return out end
  for _, n in ipairs(names) do
    if n:match('^%d%d%d%d%-%d%d%-%d%d_') and is_dir(root .. '/' .. n) then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

-- edit distance, for "did you mean"
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- A handle on any folder (a `collect` output dir): the same confined,
--- atomic writes, no metadata. Creates the folder.
function M.attach(dir)
  local ok, err = mkdir_p(dir)
  if not ok then util.user_error(err) end
  local r, base = dir:gsub('/+$', ''):match('^(.-)/?([^/]+)$')
  local h = new_handle(r ~= '' and r or '.', base)
  h.dir = dir:gsub('/+$', '')
  return h
end

--- Ids close to `id` (substring matches first, then by edit distance).
function M.close_matches(root, id, max)
  max = max or 5
  local cands = {}
  local lid = id:lower()
  for _, n in ipairs(M.list(root)) do
    local slug = n:match('^%d%d%d%d%-%d%d%-%d%d_(.*)$') or n
    local d
    if n:lower():find(lid, 1, true) or lid:find(slug:lower(), 1, true) then d = 0
    else d = math.min(distance(lid, n:lower()), distance(lid, slug:lower())) end
    if d <= math.max(3, math.floor(#lid / 2)) then cands[#cands + 1] = { id = n, d = d } end
  end
  table.sort(cands, function(a, b) if a.d ~= b.d then return a.d < b.d end return a.id > b.id end)
  local out = {}
  for i = 1, math.min(max, #cands) do out[i] = cands[i].id end
  return out
end

--- Resolves an id (full name, a unique slug or prefix, or a path to an
--- investigation folder) to a handle. Unknown → user error listing close
--- matches (exit 2).
function M.open(root, id)
  if type(id) ~= 'string' or id == '' then util.user_error('missing investigation id') end
  -- a path to the folder itself
  if id:find('/', 1, true) and is_dir(id) then
    local r, base = id:gsub('/+$', ''):match('^(.*)/([^/]+)$')
    return new_handle(r ~= '' and r or '/', base)
  end
  -- an id never holds a '/': this was meant as a path, say what is wrong with it
  if id:find('/', 1, true) then
    util.user_error(util.printable(id) .. (M.exists(id) and ' is not a folder (an investigation or data dir is one)'
      or ' does not exist'))
  end
  if is_dir(root .. '/' .. id) and id:match('^%d%d%d%d%-%d%d%-%d%d_') then return new_handle(root, id) end
  local hits = {}
  -- names are slugs (lower case): "Slow-API" finds slow-api
  local lid = id:lower()
  for _, n in ipairs(M.list(root)) do
    local slug = n:match('^%d%d%d%d%-%d%d%-%d%d_(.*)$')
    if slug == lid or n:sub(1, #lid) == lid then hits[#hits + 1] = n end
  end
  if #hits == 0 then
    -- a unique part of the name will do
    for _, n in ipairs(M.list(root)) do
      if n:lower():find(lid, 1, true) then hits[#hits + 1] = n end
    end
  end
  if #hits == 1 then return new_handle(root, hits[1]) end
  if #hits > 1 then
    table.sort(hits)
    util.user_error(string.format("investigation '%s' is ambiguous in %s: %s", id, root, table.concat(hits, ', ')))
  end
  local close = M.close_matches(root, id)
  if #close > 0 then
    util.user_error(string.format("no investigation '%s' in %s; close matches: %s",
      id, root, table.concat(close, ', ')))
  end
  util.user_error(string.format("no investigation '%s' in %s (`perf_manual list-investigations` shows them)", id, root))
end

-- The folder's contents, for the modules that read them ------------------
-- (findings, reports, replay): they ask here instead of knowing the layout.

M.RAW = 'raw_data'
M.ANALYSIS = 'analysis'
M.REPORT = 'report.md'

--- The directory holding an investigation's (or a plain data dir's) raw
--- data, and the prefix of artifact paths relative to `dir`
--- ('raw_data/' for an investigation, '' for a `collect` output dir).
function M.data_dir(dir)
  local raw = dir .. '/' .. M.RAW
  if is_dir(raw) then return raw, M.RAW .. '/' end
  return dir, ''
end

--- The relative path of an artifact named `name` inside an investigation.
function M.artifact_rel(name)
  return M.RAW .. '/' .. name
end

--- The name of an artifact from its relative path ("raw_data/x.json" -> "x.json").
function M.artifact_name(rel)
  return (tostring(rel):gsub('^' .. M.RAW .. '/', ''))
end

--- Paths of the folder's fixed files: metadata.yaml, report.md, analysis/<name>.
function M.metadata_path(dir) return dir .. '/' .. M.METADATA end
function M.report_path(dir) return dir .. '/' .. M.REPORT end
function M.analysis_path(dir, name) return dir .. '/' .. M.ANALYSIS .. '/' .. name end

--- The artifacts of a data dir: { {name=, path=<relative to dir>, full=, bytes=} },
--- sorted by name; temp files of unfinished writes are left out.
function M.artifacts(dir)
  local data, prefix = M.data_dir(dir)
  local ok, names = pcall(dirent.dir, data)
  local out = {}
  if not ok or not names then return out end
  table.sort(names)
  for _, n in ipairs(names) do
    if n ~= '.' and n ~= '..' and not n:match('%.tmp%.%d+$') then
      local st = pstat.stat(data .. '/' .. n)
      if st and pstat.S_ISREG(st.st_mode) ~= 0 then
        out[#out + 1] = { name = n, path = prefix .. n, full = data .. '/' .. n, bytes = st.st_size }
      end
    end
  end
  return out
end

--- Reads an artifact by name from an investigation folder or a data dir
--- (raw_data/<name>, else <dir>/<name>). Returns text, path or nil, why.
function M.read_artifact(dir, name)
  for _, p in ipairs({ dir .. '/' .. M.RAW .. '/' .. name, dir .. '/' .. name }) do
    local text = util.readfile(p)
    if text then return text, p end
  end
  return nil, 'not in the recorded data (' .. dir .. '/' .. M.RAW .. '/' .. name .. ')'
end

--- Reads a file under analysis/ (nil when absent).
function M.read_analysis(dir, name)
  return util.readfile(M.analysis_path(dir, name))
end

--- Reads and parses metadata.yaml of a folder: meta, or nil, err, partial;
--- nil, nil when the folder has none (a plain data dir).
function M.read_metadata(dir)
  local path = M.metadata_path(dir)
  local text = util.readfile(path)
  if not text then return nil, nil end
  return M.parse_metadata(text, path)
end

--- The recorded results of a data dir, by kind, for the analyzers:
--- {dir=, use=, traces={kind=result}, profiles={kind=result}, collects={name=result},
---  manifest=, files={name...}}. Only *.json result files are read, each
--- tagged with its artifact path. User error when `dir` holds no data.
function M.results(dir)
  local res = { dir = dir, traces = {}, profiles = {}, collects = {}, files = {} }
  local data, prefix = M.data_dir(dir)
  local ok, names = pcall(dirent.dir, data)
  if not ok or not names then util.user_error('no data dir ' .. dir) end
  table.sort(names)
  for _, n in ipairs(names) do
    if n:match('%.json$') and not n:match('%.tmp%.') then
      res.files[#res.files + 1] = n
      local v
      local function get()
        if v == nil then v = util.json_decode(util.readfile(data .. '/' .. n) or '') or false end
        if type(v) == 'table' then v.artifact = v.artifact or (prefix .. n) end
        return v or nil
      end
      local base = n:gsub('%.json$', '')
      if base:match('^use%-check') then res.use = res.use or get()
      elseif base:match('^tsa') then res.tsa = res.tsa or get()
      elseif base:match('^red%-check') then res.red = res.red or get()
      elseif base:match('^trace%-') then
        local kind = base:match('^trace%-([%w_]+)')
        res.traces[kind] = res.traces[kind] or get()
      elseif base:match('^profile%-') then
        local kind = base:match('^profile%-([%w_]+)')
        res.profiles[kind] = res.profiles[kind] or get()
      elseif base:match('^collect%-') then
        res.collects[base:match('^collect%-(.*)$')] = get()
      end
    end
  end
  local mtext = util.readfile(dir .. '/manifest.json')
  res.manifest = mtext and util.json_decode(mtext) or nil
  return res
end

--- Rebuilds the store's search index from every metadata.yaml
--- (perf_manual.kb.reindex). Returns its counts.
function M.reindex(root)
  return kb.reindex(root, function(visit)
    for _, id in ipairs(M.list(root)) do
      visit(id, M.open(root, id):load_metadata())
    end
  end)
end

--- Removes a just-created investigation folder that holds nothing yet.
function Inv:discard()
  os.remove(self.dir .. '/.lock')
  self:unlock()
  for _, d in ipairs(M.SUBDIRS) do unistd.rmdir(self.dir .. '/' .. d) end
  os.remove(self.dir .. '/' .. M.METADATA)
  unistd.rmdir(self.dir)
end

--- Appends text to the folder's log.txt (tracebacks of failed steps).
--- Returns the log's path, and an error when it could not be written (the
--- caller is already reporting a failure: it says where the log should be).
function Inv:append_log(text)
  local path = self.dir .. '/log.txt'
  local ok, err = util.write_atomic(path, (util.readfile(path) or '') .. text)
  return path, not ok and err or nil
end

--- Writes analysis/<name> as JSON.
function Inv:write_analysis_json(name, t) return self:write_json(M.ANALYSIS .. '/' .. name, t) end

--- Reads an artifact of this investigation by name (see M.read_artifact).
function Inv:read_artifact(name) return M.read_artifact(self.dir, name) end

-- Fix and validation ------------------------------------------------------------
-- In metadata.yaml: fix = {text=, at=}, validation = {verdict=, summary=,
-- metrics=, after=, at=} (perf_manual.validate writes them); the "after"
-- data a validation measured lives in after/, after-2/, ... beside raw_data/.

M.AFTER = 'after'

--- Loads metadata.yaml under the lock, lets fn(meta) change it, saves it.
--- Returns meta. A folder another run is writing is a user error.
function Inv:update_metadata(fn)
  local held = self._lockfd ~= nil
  self:lock()
  local ok, err = pcall(function()
    local meta, lerr = self:load_metadata()
    if not meta then util.user_error('investigation ' .. self.id .. ': ' .. tostring(lerr)) end
    fn(meta)
    self:save_metadata(meta)
    return meta
  end)
  if not held then self:release() end
  if not ok then error(err, 0) end
  return err
end

--- The next free "after" data dir of the investigation (after, after-2,
--- ...), created. Returns its full path and its path relative to the folder.
function Inv:new_after_dir()
  for n = 1, 1000 do
    local rel = n == 1 and M.AFTER or string.format('%s-%d', M.AFTER, n)
    if not is_dir(self.dir .. '/' .. rel) then
      local ok, err = mkdir_p(self.dir .. '/' .. rel)
      if not ok then util.user_error(err) end
      return self.dir .. '/' .. rel, rel
    end
  end
  util.user_error('investigation ' .. self.id .. ': too many after/ dirs')
end

--- Sets the fix of a metadata table and logs it in its timeline.
function M.set_fix(meta, text, at)
  at = at or M.iso()
  meta.fix = { text = text, at = at }
  meta.timeline = meta.timeline or {}
  meta.timeline[#meta.timeline + 1] = { t = at, kind = 'fix', what = 'fix recorded: ' .. text }
  return meta.fix
end

--- Sets the validation of a metadata table and logs its verdict.
function M.set_validation(meta, v)
  v.at = v.at or M.iso()
  meta.validation = v
  meta.timeline = meta.timeline or {}
  meta.timeline[#meta.timeline + 1] = { t = v.at, kind = 'validation',
    what = 'fix validated against ' .. tostring(v.after) .. ': ' .. tostring(v.summary) }
  return v
end

return M
