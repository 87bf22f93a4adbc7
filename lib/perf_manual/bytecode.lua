--- The build's bytecode cache (see runtime/main.c, bytecode_searcher):
---   perf_manual --lua lib/perf_manual/bytecode.lua -- FILE...
--- compiles each Lua source FILE (relative to the tool's root, or absolute)
--- into ROOT/build/lj, at its path relative to ROOT, or under _sys/ at its
--- absolute path for a file outside ROOT. Debug info is kept: tracebacks name the source and line.
--- A file that does not compile is left out (loading it from source gives
--- the error where it belongs).
local pstat = require('posix.sys.stat')

local M = {}

local function mkdir_p(dir)
  local path = ''
  for part in dir:gmatch('[^/]+') do
    path = path .. '/' .. part
    if not pstat.stat(path) then pstat.mkdir(path, 493) end
  end
end

--- The cache file of src under root.
function M.cache_path(root, src)
  if src:sub(1, #root + 1) == root .. '/' then return root .. '/build/lj' .. src:sub(#root + 1) end
  return root .. '/build/lj/_sys' .. src
end

--- Compiles src into its cache file; true, or nil and why not.
function M.compile(root, src)
  local fn, err = loadfile(src)
  if not fn then return nil, err end
  local out = M.cache_path(root, src)
  mkdir_p(out:match('^(.*)/[^/]*$'))
  local tmp = out .. '.tmp.' .. tostring(os.time())
  local f, ferr = io.open(tmp, 'wb')
  if not f then return nil, ferr end
  f:write(string.dump(fn))
  f:close()
  -- a rename: a run starting meanwhile reads the old copy or the new, never half
  local ok, rerr = os.rename(tmp, out)
  if not ok then os.remove(tmp); return nil, rerr end
  return true
end

function M.main(args)
  -- the host's root, as the searcher sees it (a real path)
  local root = require('perf_manual._host').root
  local n, failed = 0, {}
  for _, a in ipairs(args) do
    local ok, err = M.compile(root, a:sub(1, 1) == '/' and a or (root .. '/' .. a))
    if ok then n = n + 1 else failed[#failed + 1] = tostring(err) end
  end
  for _, e in ipairs(failed) do io.stderr:write('bytecode: skipped ', e, '\n') end
  return n
end

if arg and arg[0] and arg[0]:match('bytecode%.lua$') then M.main(arg) end

return M
