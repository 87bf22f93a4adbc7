-- The CFI compiler on Debian's glibc: the unwind table built cold (ELF read,
-- every FDE run, the table saved to the cache) and loaded from the cache,
-- median of many runs each, the table's size, and as a peer in the same run
-- `readelf --debug-dump=frames-interp libc.so.6 > /dev/null` (which runs the
-- same CFA programs and prints them). Targets: cold < 100 ms, cache < 5 ms.
-- Run: tests/bench/run.sh cfi  (or bin/perf_manual --lua tests/bench/cfi.lua [runs] [object])
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root
local cfi = require('perf_manual.cfi')
package.path = root .. '/tests/?.lua;' .. package.path
local common = require('bench.common')
local helpers = require('helpers') -- machine lock (already held under run.sh)

local RUNS = tonumber(arg and arg[1]) or 30
local OBJ = arg and arg[2] or '/lib/x86_64-linux-gnu/libc.so.6'

local function median_of(n, fn)
  local t = {}
  for i = 1, n do
    local t0 = sys.now()
    fn()
    t[i] = sys.now() - t0
  end
  return common.median(t)
end

helpers.with_machine_lock(function()
  local tmp = common.tmpdir()
  local dir = tmp .. '/cfi'
  local ok, err = xpcall(function()
    local info = assert(cfi._c.compile(OBJ)):info()
    local cache_file = dir .. '/' .. info.build_id .. '.tbl'
    common.sh('cat ' .. OBJ .. ' > /dev/null') -- the object in the page cache for both tools

    -- cold: no table in the cache; built from the ELF file and saved
    local cold = median_of(RUNS, function()
      os.remove(cache_file)
      local t, how = assert(cfi.table(OBJ, { cache_dir = dir }))
      assert(how.source == 'compiled' and not how.cache_error, how.cache_error)
      t:close()
    end)
    local compile_only = median_of(RUNS, function() assert(cfi._c.compile(OBJ)):close() end)
    -- warm: the saved table, checked against the object's build-id
    local cached = median_of(RUNS, function()
      local t, how = assert(cfi.table(OBJ, { cache_dir = dir }))
      assert(how.source == 'cache')
      t:close()
    end)
    local peer = median_of(math.max(5, math.floor(RUNS / 3)), function()
      local pid = assert(sys.spawn({ 'readelf', '--debug-dump=frames-interp', OBJ }, { stdout = 'null', stderr = 'null' }))
      sys.wait(pid)
    end)

    local k = info.kinds
    print(string.format('cfi: %s, median of %d runs', OBJ, RUNS))
    print(string.format('  table: %d FDEs -> %d rows, %d bytes (%.1f KiB); rows: rsp %d, rbp %d, plt %d, signal %d, '
      .. 'end %d, unsupported %d, none (gaps) %d', info.fdes, info.rows, info.bytes, info.bytes / 1024, k.rsp, k.rbp,
      k.plt, k.signal, k['end'], k.unsupported, k.none))
    print(string.format('  cold build (compile + save)   %7.2f ms   (compile alone %.2f ms)', cold * 1e3, compile_only * 1e3))
    print(string.format('  from the cache                %7.2f ms', cached * 1e3))
    print(string.format('  peer: readelf --debug-dump=frames-interp > /dev/null   %7.2f ms', peer * 1e3))
    print(string.format('  cold build %.2fx readelf\'s time; cache %.3fx', cold / peer, cached / peer))
    print(string.format('  targets: cold < 100 ms: %s; cache < 5 ms: %s', cold < 0.1 and 'met' or 'NOT met',
      cached < 0.005 and 'met' or 'NOT met'))
  end, debug.traceback)
  common.sh('rm -rf ' .. tmp)
  if not ok then error(err, 0) end
end)
