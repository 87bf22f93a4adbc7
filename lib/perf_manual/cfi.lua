--- Unwind tables from DWARF call-frame information, cached by build-id.
---
--- perf_manual._c.cfi (runtime/cfi.c) compiles an ELF object's .eh_frame and
--- .debug_frame into a sorted table of x86-64 rows (how to find the caller's
--- frame from each pc). Compiling glibc takes tens of milliseconds, so a
--- table is saved under the cache directory as <build-id>.tbl and loaded from
--- there while the object's build-id is the same. These tables are what the
--- DWARF stack walker reads (perf_manual.unwind puts them in its maps).
local C = require('perf_manual._c.cfi')
local util = require('perf_manual.util')
local errno_mod = require('posix.errno')

local M = {}
M._c = C

--- The directory tables are cached in: $PERF_MANUAL_CACHE/cfi when that is
--- set (the variable perf_manual.sym's kernel-symbol cache obeys too; empty:
--- no cache), else $XDG_CACHE_HOME/perf_manual/cfi, else
--- ~/.cache/perf_manual/cfi. `getenv` (default os.getenv) is for tests.
---@param getenv (fun(name: string): string?)?
---@return string? dir, string? err
function M.cache_dir(getenv)
  getenv = getenv or os.getenv
  local pm = getenv('PERF_MANUAL_CACHE')
  if pm then
    if pm == '' then return nil, 'no cache: PERF_MANUAL_CACHE is empty' end
    return pm .. '/cfi'
  end
  local xdg = getenv('XDG_CACHE_HOME')
  -- the XDG spec ignores a relative path
  if xdg and xdg:sub(1, 1) == '/' then return xdg .. '/perf_manual/cfi' end
  local home = getenv('HOME')
  if not home or home == '' then return nil, 'no cache directory: neither XDG_CACHE_HOME nor HOME is set' end
  return home .. '/.cache/perf_manual/cfi'
end

--- The unwind table of the ELF object at path: from the cache when a table
--- saved for its build-id is there, else compiled (and saved when the object
--- has a build-id). opts.cache = false compiles without reading or writing
--- the cache; opts.cache_dir overrides M.cache_dir().
--- Returns the table and how it was had: {source = "cache"|"compiled",
--- cache_path, cache_error (why it was not read or written: a stale or
--- damaged table, a read-only directory)}; or nil, err, errno.
---@param path string
---@param opts {cache: boolean?, cache_dir: string?}?
function M.table(path, opts)
  util.validate('path', path, 'string')
  util.validate('opts', opts, 'table', true)
  opts = opts or {}
  local how = {}
  local bid = C.build_id(path)
  local dir, derr = opts.cache_dir, nil
  if opts.cache ~= false and bid and not dir then dir, derr = M.cache_dir() end
  if opts.cache == false or not bid or not dir then
    how.cache_error = opts.cache ~= false and (derr or (not bid and 'no build-id')) or nil
    local t, err, errno = C.compile(path)
    if not t then return nil, err, errno end
    how.source = 'compiled'
    return t, how
  end
  how.cache_path = dir .. '/' .. bid .. '.tbl'
  local t, lerr, lerrno = C.load(how.cache_path, bid)
  if t then
    how.source = 'cache'
    return t, how
  end
  if lerrno ~= errno_mod.ENOENT then how.cache_error = lerr end -- ENOENT: not cached yet
  local err, errno
  t, err, errno = C.compile(path)
  if not t then return nil, err, errno end
  how.source = 'compiled'
  local ok, merr = require('perf_manual.store').mkdir_p(dir)
  if ok then ok, merr = t:save(how.cache_path) end
  if not ok then how.cache_error = merr end
  return t, how
end

return M
