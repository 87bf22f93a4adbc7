--- Symbol resolution: process addresses to frame names.
---
--- User addresses go through a snapshot of /proc/PID/maps (taken while the
--- process is alive, so frames of a process that exits later stay named), the
--- mapped ELF file (or its debug file found by build-id or .gnu_debuglink in
--- /usr/lib/debug) and, for anonymous memory, the JIT map /tmp/perf-PID.map.
--- Kernel addresses go through /proc/kallsyms. Binaries are cached by
--- build-id and by dev:inode. Names follow the FlameGraph conventions:
--- `func` user, `func_[k]` kernel, `func_[j]` JIT, `[libfoo.so]` a mapped file
--- without a symbol there, `[unknown]` an address outside every mapping.
local C = require('perf_manual._c.sym')
local util = require('perf_manual.util')
local pstat = require('posix.sys.stat')
local dirent = require('posix.dirent')

local M = {}
M._c = C
M.unpack = C.unpack

--- Where debug files are looked for (first match wins).
M.debug_dirs = { '/usr/lib/debug' }

-- Caches shared by every resolver of the process -------------------------

local by_key = {}      -- "dev:inode" or path -> binary
local by_build_id = {} -- build-id -> binary
local kernel_syms

--- Forgets every cached binary and the kernel symbols.
function M.clear_cache()
  by_key, by_build_id, kernel_syms = {}, {}, nil
end

-- /proc/PID/maps ------------------------------------------------------------

--- Parses /proc/PID/maps text into the executable mappings, sorted by start:
--- list of {start, stop, offset, perms, dev, inode, path}. Non-executable
--- mappings are dropped: no stack frame can point into them.
function M.parse_maps(text)
  util.validate('text', text, 'string')
  local out = {}
  for line in text:gmatch('[^\n]+') do
    -- the full match only for executable lines (perms "..x.")
    local sp = line:find(' ', 1, true)
    if sp and line:byte(sp + 3) == 120 then
      local s, e, perms, off, dev, inode, path =
        line:match('^(%x+)%-(%x+) (%S+) (%x+) (%S+) (%d+)%s*(.-)%s*$')
      if s then
        out[#out + 1] = {
          start = tonumber(s, 16), stop = tonumber(e, 16), offset = tonumber(off, 16),
          perms = perms, dev = dev, inode = tonumber(inode), path = path ~= '' and path or nil,
        }
      end
    end
  end
  table.sort(out, function(a, b) return a.start < b.start end)
  return out
end

--- Parses a perf JIT map (/tmp/perf-PID.map: "START SIZE name" in hex) into a
--- sorted list of {start, stop, name}.
function M.parse_perf_map(text)
  local out = {}
  for line in text:gmatch('[^\n]+') do
    local s, n, name = line:match('^%s*(%x+)%s+(%x+)%s+(.-)%s*$')
    if s and name ~= '' then
      local start = tonumber(s, 16)
      out[#out + 1] = { start = start, stop = start + tonumber(n, 16), name = name }
    end
  end
  table.sort(out, function(a, b) return a.start < b.start end)
  return out
end

-- the last entry with start <= addr, or nil
local function bsearch(list, addr)
  local lo, hi = 1, #list
  local found
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if list[mid].start <= addr then found = mid; lo = mid + 1 else hi = mid - 1 end
  end
  return found and list[found]
end

local function read_file(path)
  local f, err, code = io.open(path, 'rb')
  if not f then return nil, err, code end
  local s = f:read('*a')
  f:close()
  return s
end

--- '/proc/PID/root' when process pid lives in another mount namespace
--- than this one (its paths mean something else here), else nil.
function M.foreign_root(pid, root)
  root = root or '/proc'
  local posix_unistd = require('posix.unistd')
  local theirs = posix_unistd.readlink(string.format('%s/%d/ns/mnt', root, pid))
  local ours = posix_unistd.readlink('/proc/self/ns/mnt')
  if theirs and ours and theirs ~= ours then return string.format('%s/%d/root', root, pid) end
  return nil
end

--- Captures what is needed to name a process's frames later, even after it
--- exits: its executable mappings, its comm and its JIT map if any.
--- Returns the snapshot, or nil, err, errno (no such process, no permission).
---@param pid integer
---@param root string? a /proc-like root, for tests (default "/proc")
function M.snapshot(pid, root)
  util.validate('pid', pid, 'number')
  root = root or '/proc'
  local text, err, code = read_file(string.format('%s/%d/maps', root, pid))
  if not text then
    if code == 2 then return nil, string.format('no process %d', pid), code end
    return nil, string.format('cannot read the mappings of process %d: %s', pid, err), code
  end
  local comm = read_file(string.format('%s/%d/comm', root, pid))
  local snap = {
    pid = pid,
    comm = comm and comm:gsub('\n$', '') or nil,
    maps_text = text,
    -- a process in another mount namespace (a container): its files are
    -- opened through its root, its JIT map is its own /tmp's, under its own pid
    fs_root = M.foreign_root(pid, root),
  }
  -- parsed when first needed: sampling stays cheap, resolution pays once
  setmetatable(snap, { __index = function(t, k)
    if k == 'maps' then
      local m = M.parse_maps(t.maps_text)
      rawset(t, 'maps', m)
      t.maps_text = nil
      return m
    end
  end })
  local jit
  if snap.fs_root then
    local status = read_file(string.format('%s/%d/status', root, pid)) or ''
    local nspid = status:match('\nNSpid:[^\n]-(%d+)\n') or tostring(pid)
    jit = read_file(string.format('%s/tmp/perf-%s.map', snap.fs_root, nspid))
  else
    jit = read_file(string.format('/tmp/perf-%d.map', pid))
  end
  if jit then snap.jit = M.parse_perf_map(jit) end
  return snap
end

-- binaries ------------------------------------------------------------------

local function dirname(p) return p:match('^(.*)/[^/]*$') or '.' end
local function basename(p) return p:match('([^/]+)$') or p end

local function open_debug(path, want_build_id, want_crc)
  local e = C.open_elf(path)
  if not e then return nil end
  local info = e:info()
  if want_build_id and info.build_id ~= want_build_id then e:close(); return nil end
  if want_crc and C.crc32_file(path) ~= want_crc then e:close(); return nil end
  if not info.has_symtab then e:close(); return nil end
  return e
end

--- Finds the separate debug file of an ELF: by build-id
--- (<debug>/.build-id/ab/cdef….debug), then by .gnu_debuglink (next to the
--- file, in its .debug/, and under <debug>/<dir>/), checking build-id or CRC.
--- Returns an elf handle and its path, or nil.
function M.find_debug_file(path, info)
  if info.build_id and #info.build_id > 2 then
    for _, d in ipairs(M.debug_dirs) do
      local p = string.format('%s/.build-id/%s/%s.debug', d, info.build_id:sub(1, 2), info.build_id:sub(3))
      local e = open_debug(p, info.build_id)
      if e then return e, p end
    end
  end
  if info.debuglink then
    local dir = dirname(path)
    local cands = { dir .. '/' .. info.debuglink, dir .. '/.debug/' .. info.debuglink }
    for _, d in ipairs(M.debug_dirs) do cands[#cands + 1] = d .. dir .. '/' .. info.debuglink end
    for _, p in ipairs(cands) do
      if p ~= path then
        local e = open_debug(p, info.build_id, info.debuglink_crc)
        if e then return e, p end
      end
    end
  end
end

--- Loads (or returns from the cache) the binary at `path`. `key` is the
--- mapping's "dev:inode" when known; `open_path` the file to open when
--- `path` is another mount namespace's (/proc/PID/root/...). Returns the binary table
--- {path, name, elf, symelf, info, debug_file, frame_pointers} or nil, err.
---   frame_pointers: true / false from the function prologues, nil when too
---   few functions could be checked to say.
function M.binary(path, key, open_path)
  key = key or path
  local b = by_key[key]
  if b then return b end
  local e, err = C.open_elf(open_path or path)
  if not e then
    by_key[key] = { path = path, name = basename(path), err = err }
    return nil, err
  end
  local info = e:info()
  if info.build_id and by_build_id[info.build_id] then
    e:close()
    b = by_build_id[info.build_id]
    by_key[key] = b
    return b
  end
  b = { path = path, name = basename(path), elf = e, info = info }
  if not info.has_symtab then
    local de, dpath = M.find_debug_file(path, info)
    if de then b.symelf, b.debug_file = de, dpath end
  end
  if info.fp_checked >= 5 then
    b.frame_pointers = info.fp_with / info.fp_checked >= 0.5
  end
  by_key[key] = b
  if info.build_id then by_build_id[info.build_id] = b end
  return b
end

--- Names for a list of file offsets inside binary b (false where no symbol).
function M.binary_resolve(b, offsets)
  if b.symelf then
    local names = b.symelf:resolve(offsets, b.elf)
    local missing, idx = {}, {}
    for i, n in ipairs(names) do
      if not n then missing[#missing + 1] = offsets[i]; idx[#idx + 1] = i end
    end
    if #missing > 0 then
      local more = b.elf:resolve(missing)
      for j, i in ipairs(idx) do names[i] = more[j] end
    end
    return names
  end
  return b.elf:resolve(offsets)
end

--- Where the kallsyms cache lives (nil: no cache). Only root caches: the
--- addresses are what KASLR hides from everyone else.
function M.cache_dir()
  local env = os.getenv('PERF_MANUAL_CACHE')
  if env then return env ~= '' and env or nil end
  if require('perf_manual.sys').geteuid() ~= 0 then return nil end
  return '/var/cache/perf_manual'
end

-- The cache file for this boot and this set of loaded modules: the kernel's
-- symbol addresses change with neither otherwise.
local function kallsyms_cache_path(dir)
  local boot = read_file('/proc/sys/kernel/random/boot_id')
  -- a kernel built without modules has no /proc/modules: nothing can change
  local crc, _, code = C.crc32_file('/proc/modules')
  if not crc and code == 2 then crc = 0 end
  if not boot or not crc then return nil end
  return string.format('%s/kallsyms-%s-%08x', dir, util.trim(boot), crc)
end

--- The kernel symbol table (cached in memory, and across runs on disk in
--- cache_dir(): generating /proc/kallsyms costs the kernel ~50 ms), or nil, err.
function M.kernel(full)
  if kernel_syms and not (full and kernel_syms:info().core_only) then return kernel_syms end
  local dir = M.cache_dir()
  local cache = not full and dir and kallsyms_cache_path(dir)
  local k = cache and C.load_kallsyms(cache)
  if k and (k:info().nsyms == 0 or k:info().restricted) then k:close() k = nil end
  if not k then
    local err
    k, err = C.load_kallsyms()
    if not k then return nil, err end
    cache = dir and kallsyms_cache_path(dir)
    if cache and not k:info().restricted and not full then
      -- one cache file per boot: older ones go
      local acc = dir:sub(1, 1) == '/' and '' or '.'
      for part in dir:gmatch('[^/]+') do
        acc = acc .. '/' .. part
        pstat.mkdir(acc, 448)
      end
      local lok, files = pcall(dirent.dir, dir)
      for _, f in ipairs(lok and files or {}) do
        if f:match('^kallsyms%-') then os.remove(dir .. '/' .. f) end
      end
      local tmp = cache .. '.tmp'
      if pcall(k.save, k, tmp) then os.rename(tmp, cache) else os.remove(tmp) end
    end
  end
  if kernel_syms then kernel_syms:close() end
  kernel_syms = k
  return k
end

-- resolver ----------------------------------------------------------------------

local Resolver = {}
Resolver.__index = Resolver

--- A resolver: snapshots per pid and the binaries used, for one profile.
function M.new()
  return setmetatable({ snaps = {}, used = {}, failed = {} }, Resolver)
end

--- Captures pid's mappings now (once); later captures refresh them only with
--- `refresh`. Returns the snapshot or nil, err, errno.
function Resolver:snapshot(pid, refresh)
  if self.snaps[pid] and not refresh then return self.snaps[pid] end
  local s, err, code = M.snapshot(pid)
  if s then
    self.snaps[pid] = s
  elseif not self.snaps[pid] then
    self.failed[pid] = err
  end
  return self.snaps[pid], err, code
end

--- Adds a snapshot taken elsewhere (for example from a saved profile).
function Resolver:add_snapshot(s) self.snaps[s.pid] = s end

-- What a mapping holds, worked out once per mapping: its label when no
-- symbol names an address, and its binary when it maps an ELF file.
local function classify(m, fs_root)
  local path = m.path
  if path and path:sub(1, 1) == '/' then
    local deleted = path:find(' %(deleted%)$')
    local clean = deleted and path:sub(1, deleted - 1) or path
    m.label = '[' .. basename(clean) .. ']'
    if not deleted then
      m.binary = M.binary(path, m.dev .. ':' .. m.inode, fs_root and (fs_root .. path)) or false
    end
  elseif path and path:sub(1, 1) == '[' then
    m.label = path
  else
    m.label = false  -- anonymous: JIT code, if anything
  end
  return m
end

-- Names for a flat list of lookup addresses of one process (already
-- adjusted for return addresses), grouped so each binary is asked once.
function Resolver:_resolve(pid, looks)
  local snap = self.snaps[pid] or self:snapshot(pid)
  local maps, jit = snap and snap.maps or {}, snap and snap.jit
  local names = {}
  local groups = {}  -- binary -> {offsets, idx}
  for i, look in ipairs(looks) do
    local m = bsearch(maps, look)
    local name
    if m and look < m.stop then
      if m.label == nil then classify(m, snap.fs_root) end
      local b = m.binary
      if b then
        self.used[b] = true
        local g = groups[b]
        if not g then g = { offsets = {}, idx = {} }; groups[b] = g end
        local n = #g.offsets + 1
        g.offsets[n] = look - m.start + m.offset
        g.idx[n] = i
      end
      name = m.label or nil
    end
    if not name and jit then
      local j = bsearch(jit, look)
      if j and look < j.stop then name = j.name .. '_[j]' end
    end
    names[i] = name or '[unknown]'
  end
  for b, g in pairs(groups) do
    local got = M.binary_resolve(b, g.offsets)
    for j, i in ipairs(g.idx) do
      if got[j] then names[i] = got[j] end
    end
  end
  return names
end

--- Resolves a batch of user addresses of one process to frame names,
--- innermost first as given. Frames after the first are return addresses:
--- they are looked up at addr-1 so a call at a function's very end still
--- names its caller. Captures the snapshot if none was taken yet.
---@param pid integer
---@param addrs number[]
---@return string[] names
function Resolver:user(pid, addrs)
  local looks = {}
  for i, a in ipairs(addrs) do looks[i] = i > 1 and a - 1 or a end
  return self:_resolve(pid, looks)
end

--- The batch form for many stacks of one process: a list of address lists
--- (each innermost first) to a list of name lists, in one pass per binary.
function Resolver:user_stacks(pid, stacks)
  local looks, bounds = {}, {}
  for s, addrs in ipairs(stacks) do
    bounds[s] = #looks
    for i, a in ipairs(addrs) do looks[#looks + 1] = i > 1 and a - 1 or a end
  end
  local names = self:_resolve(pid, looks)
  local out = {}
  for s, addrs in ipairs(stacks) do
    local list, base = {}, bounds[s]
    for i = 1, #addrs do list[i] = names[base + i] end
    out[s] = list
  end
  return out
end

-- the tracing machinery a stack taken inside a BPF program starts with
local TRACING = { '^bpf_prog_', '^bpf_trace_run', '^__bpf_trace_', '^__traceiter_', '^bpf_overflow_handler',
                  '^__perf_event_overflow', '^perf_trace_' }

--- Drops the innermost kernel frames that belong to the BPF program that
--- took the stack (they say nothing about the traced code). In place.
function M.trim_tracing_frames(frames)
  local n = 0
  while n < #frames do
    local f, hit = frames[n + 1], false
    for _, pat in ipairs(TRACING) do if f:find(pat) then hit = true break end end
    if not hit then break end
    n = n + 1
  end
  if n > 0 and n < #frames then
    for _ = 1, n do table.remove(frames, 1) end
  end
  return frames
end

--- Kernel frame names from a packed u64 stack (a BPF stack map value) or a
--- list of addresses (numbers or "0x…" strings), innermost first, each
--- suffixed `_[k]`; `[unknown]` where kallsyms has no symbol.
function Resolver:kernel(stack) -- luacheck: no unused args
  local k = M.kernel()
  local out = {}
  if type(stack) == 'string' then
    local names, beyond = {}, 0
    if k then names, beyond = k:resolve_packed(stack) end
    if beyond > 0 then
      -- BPF programs or modules: only the full /proc/kallsyms names them
      k = M.kernel(true)
      if k then names = k:resolve_packed(stack) end
    end
    if not k then
      for i = 1, #C.unpack(stack) do names[i] = false end
    end
    for i, n in ipairs(names) do out[i] = n and (n .. '_[k]') or '[unknown]' end
    M.trim_tracing_frames(out)
  else
    for i, a in ipairs(stack) do
      local n = k and k:lookup(a)
      if not n and k and k:info().core_only then
        k = M.kernel(true)
        n = k and k:lookup(a)
      end
      out[i] = n and (n .. '_[k]') or '[unknown]'
    end
  end
  return out
end

--- The mappings this resolver named frames in, per pid: { [pid] = { {start,
--- stop, offset, path, build_id}, … } } sorted by start (what a pprof
--- profile's Mapping records). Only mappings an address fell into are listed.
function Resolver:mappings()
  local out = {}
  for pid, snap in pairs(self.snaps) do
    local list = {}
    for _, m in ipairs(rawget(snap, 'maps') or {}) do
      if m.label and m.path then
        local b = m.binary
        list[#list + 1] = { start = m.start, stop = m.stop, offset = m.offset, path = m.path,
                            build_id = b and b.info and b.info.build_id or nil }
      end
    end
    if #list > 0 then out[pid] = list end
  end
  return out
end

--- The binaries this resolver named frames in: list of
--- {path, name, build_id, debug_file, symbols = "symtab"|"dynsym"|"debug"|"none",
---  frame_pointers}
function Resolver:binaries()
  local out = {}
  for b in pairs(self.used) do
    local i = b.info
    out[#out + 1] = {
      path = b.path, name = b.name, build_id = i.build_id, debug_file = b.debug_file,
      symbols = b.symelf and 'debug' or i.has_symtab and 'symtab' or i.has_dynsym and 'dynsym' or 'none',
      frame_pointers = b.frame_pointers,
    }
  end
  table.sort(out, function(a, b) return a.path < b.path end)
  return out
end

return M
