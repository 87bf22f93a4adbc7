local cfi = require('perf_manual.cfi')
local sym = require('perf_manual.sym')
local util = require('perf_manual.util')

local C = cfi._c
local calltree = test_helpers.workload('calltree')
local LIBC = '/lib/x86_64-linux-gnu/libc.so.6'

local sh_out = test_helpers.sh
local tmpdir = test_helpers.tmpdir

local function readfile(path) return assert(util.readfile(path)) end

-- the address nm gives a symbol of the workload
local function nm_addr(path, name)
  local addr = sh_out(string.format("nm --defined-only %s | awk '$3 == \"%s\" {print $1}'", path, name))
  return tonumber(addr:match('%x+'), 16)
end

describe('perf_manual.cfi', function()
  describe('the binding', function()
    it("compiles the workload's .eh_frame: rsp+8 at main, rbp+16 after its frame-pointer prologue", function()
      local t = assert(C.compile(calltree))
      local info = t:info()
      assert.is_true(info.rows > 10)
      assert.equal(info.rows * C.row_size, #t:rows())
      assert.is_true(info.fdes >= 5)
      assert.equal(0, info.bad)
      -- the build-id is the one the symbol reader finds
      local e = assert(sym._c.open_elf(calltree))
      assert.equal(e:info().build_id, info.build_id)
      assert.equal(info.build_id, C.build_id(calltree))
      local main = assert(nm_addr(calltree, 'main'))
      local r = assert(t:lookup(main))
      assert.same({ 'rsp', 8, 'same' }, { r.cfa, r.cfa_offset, r.rbp })
      -- the workloads are built -fno-omit-frame-pointer: push %rbp; mov %rsp,%rbp
      local code = sh_out(string.format('objdump -d --no-show-raw-insn --start-address=0x%x --stop-address=0x%x %s',
        main, main + 16, calltree))
      local after = code:match('(%x+):%s+mov%s+%%rsp,%%rbp')
      assert.is_truthy(after, code)
      r = assert(t:lookup(tonumber(after, 16) + 3))
      assert.same({ 'rbp', 16, 'cfa', -16 }, { r.cfa, r.cfa_offset, r.rbp, r.rbp_offset })
      -- before the first FDE nothing; past the last the object says nothing
      assert.is_nil(t:lookup(0))
      assert.equal('none', t:lookup(2 ^ 40).cfa)
      assert.matches('^<perf_manual.cfi.table %x+, %d+ rows>$', tostring(t))
      t:close()
      assert.equal('<perf_manual.cfi.table closed>', tostring(t))
      assert.has_error(function() t:info() end)
    end)

    it("recognises glibc's PLT and signal-frame expressions", function()
      if os.execute('command -v readelf >/dev/null 2>&1') ~= 0 then
        pending('skipped: readelf is not installed (binutils)')
        return
      end
      local t = assert(C.compile(LIBC))
      local info = t:info()
      assert.is_true(info.fdes > 1000)
      assert.equal(1, info.kinds.signal)
      assert.is_true(info.kinds.plt >= 1)
      assert.is_true(info.kinds.rsp > 10000)
      -- __restore_rt: the FDE whose CIE readelf shows with augmentation "S"
      local interp = sh_out('readelf -wF ' .. LIBC)
      local sig_cie = interp:match('\n(%x+) %x+ %x+ CIE "zRS"')
      local pc = interp:match('FDE cie=' .. sig_cie .. ' pc=(%x+)')
      assert.equal('signal', t:lookup(tonumber(pc, 16)).cfa)
      -- 0x10 into .plt: the first lazy-binding entry, after the PLT0 stub
      local plt_pc = sh_out("readelf -SW " .. LIBC .. " | awk '$2 == \".plt\" {print $4}'"):match('%x+')
      local r = t:lookup(tonumber(plt_pc, 16) + 0x10)
      assert.same({ 'plt', 8, 11 }, { r.cfa, r.cfa_offset, r.plt_threshold })
    end)

    it('reports what is wrong with a path, as nil, message, errno', function()
      local t, err, errno = C.compile('/nonexistent/lib.so')
      assert.is_nil(t)
      assert.equal('cfi: compile /nonexistent/lib.so: No such file or directory', err)
      assert.equal(2, errno)
      local dir = tmpdir()
      local text = dir .. '/text'
      local f = assert(io.open(text, 'w')); f:write('not an elf\n'); f:close()
      t, err = C.compile(text)
      assert.is_nil(t)
      assert.equal('cfi: compile ' .. text .. ': not an x86-64 ELF file', err)
      t, err = C.load(text)
      assert.is_nil(t)
      assert.equal('cfi: load ' .. text .. ': not a CFI table of this version', err)
      os.execute('rm -rf ' .. dir)
      assert.has_error(function() C.compile() end)
      assert.has_error(function() cfi.table(42) end)
    end)
  end)

  describe('the cache', function()
    it('lives under PERF_MANUAL_CACHE, else XDG_CACHE_HOME when it is absolute, else HOME/.cache', function()
      local function env(t) return function(k) return t[k] end end
      assert.equal('/x/perf_manual/cfi', cfi.cache_dir(env({ XDG_CACHE_HOME = '/x', HOME = '/h' })))
      assert.equal('/h/.cache/perf_manual/cfi', cfi.cache_dir(env({ XDG_CACHE_HOME = 'rel', HOME = '/h' })))
      assert.equal('/h/.cache/perf_manual/cfi', cfi.cache_dir(env({ HOME = '/h' })))
      local d, err = cfi.cache_dir(env({}))
      assert.is_nil(d)
      assert.equal('no cache directory: neither XDG_CACHE_HOME nor HOME is set', err)
      -- the project's own switch comes first; empty, it turns the cache off
      assert.equal('/pm/cfi', cfi.cache_dir(env({ PERF_MANUAL_CACHE = '/pm', XDG_CACHE_HOME = '/x', HOME = '/h' })))
      d, err = cfi.cache_dir(env({ PERF_MANUAL_CACHE = '', HOME = '/h' }))
      assert.is_nil(d)
      assert.equal('no cache: PERF_MANUAL_CACHE is empty', err)
    end)

    it('compiles once, then loads by build-id; a damaged or stale file is compiled again', function()
      local dir = tmpdir() .. '/cfi'
      local t, how = assert(cfi.table(calltree, { cache_dir = dir }))
      assert.equal('compiled', how.source)
      assert.is_nil(how.cache_error)
      local bid = t:info().build_id
      assert.equal(dir .. '/' .. bid .. '.tbl', how.cache_path)
      local saved = readfile(how.cache_path)
      assert.equal(t:info().bytes, #saved)
      assert.equal('', (sh_out('ls ' .. dir .. " | grep '\\.tmp\\.' || true")))

      local u, how2 = assert(cfi.table(calltree, { cache_dir = dir }))
      assert.equal('cache', how2.source)
      assert.equal(t:rows(), u:rows())
      assert.same(t:info(), u:info())

      -- truncated: refused, compiled again and rewritten whole
      local f = assert(io.open(how.cache_path, 'wb')); f:write(saved:sub(1, 100)); f:close()
      local v, how3 = assert(cfi.table(calltree, { cache_dir = dir }))
      assert.equal('compiled', how3.source)
      assert.matches('not a CFI table of this version', how3.cache_error)
      assert.equal(t:rows(), v:rows())
      assert.equal(saved, readfile(how.cache_path))

      -- a table of another object under this build-id's name: stale
      local other = assert(C.compile(test_helpers.workload('cpu_burn')))
      assert.is_true(other:save(how.cache_path))
      local w, how4 = assert(cfi.table(calltree, { cache_dir = dir }))
      assert.equal('compiled', how4.source)
      assert.matches('saved for another build%-id', how4.cache_error)
      assert.equal(t:rows(), w:rows())
      assert.equal('cache', select(2, cfi.table(calltree, { cache_dir = dir })).source)

      -- cache = false: neither read nor written
      os.remove(how.cache_path)
      assert.equal('compiled', select(2, cfi.table(calltree, { cache = false, cache_dir = dir })).source)
      assert.is_nil(io.open(how.cache_path))
      os.execute('rm -rf ' .. dir:match('^(.*)/cfi$'))
    end)

    it('compiles an object without a build-id every time, and says why it is not cached', function()
      local dir = tmpdir()
      local src = dir .. '/p.c'
      local f = assert(io.open(src, 'w')); f:write('int main(void) { return 0; }\n'); f:close()
      assert(os.execute(string.format('cc -O2 -Wl,--build-id=none -o %s/p %s', dir, src)) == 0)
      local bid, err = C.build_id(dir .. '/p')
      assert.is_nil(bid)
      assert.equal('cfi: build-id of ' .. dir .. '/p: no GNU build-id note', err)
      local t, how = assert(cfi.table(dir .. '/p', { cache_dir = dir .. '/cache' }))
      assert.equal('compiled', how.source)
      assert.equal('no build-id', how.cache_error)
      assert.equal('', t:info().build_id)
      assert.is_nil(io.open(dir .. '/cache'))
      os.execute('rm -rf ' .. dir)
    end)

    it('neither reads nor writes a cache when PERF_MANUAL_CACHE is empty', function()
      local stdlib = require('posix.stdlib')
      local old = os.getenv('PERF_MANUAL_CACHE')
      stdlib.setenv('PERF_MANUAL_CACHE', '')
      local ok, t, how = pcall(cfi.table, calltree)
      stdlib.setenv('PERF_MANUAL_CACHE', old) -- nil unsets it
      assert.is_true(ok, t)
      assert.equal('compiled', how.source)
      assert.equal('no cache: PERF_MANUAL_CACHE is empty', how.cache_error)
      assert.is_nil(how.cache_path)
      assert.is_true(t:info().rows > 10)
    end)

    it('still gives the table when the cache directory cannot be written', function()
      local t, how = assert(cfi.table(calltree, { cache_dir = '/proc/perf_manual_no_such/cfi' }))
      assert.equal('compiled', how.source)
      assert.matches('cannot create /proc/perf_manual_no_such', how.cache_error)
      assert.is_true(t:info().rows > 10)
    end)
  end)
end)
