local sym = require('perf_manual.sym')
local sys = require('perf_manual._c.sys')
local ffi = require('ffi')

local calltree = test_helpers.workload('calltree')

-- Starts calltree and returns its pid and the function addresses it printed
-- (randomised by ASLR: the binary is PIE).
local function start_calltree(mode, secs)
  local out = os.tmpname()
  local pid = assert(sys.spawn({ calltree, mode, tostring(secs) }, { stdout = out }))
  local line
  for _ = 1, 200 do
    local f = io.open(out)
    line = f and f:read('*l')
    if f then f:close() end
    if line and line:match('main=') then break end
    sys.sleep(0.01)
  end
  os.remove(out)
  local addrs = {}
  for name, hex in line:gmatch('([%w_]+)=0x(%x+)') do addrs[name] = tonumber(hex, 16) end
  return pid, addrs
end

local function stop(pid)
  sys.kill(pid, 9)
  sys.wait(pid)
end

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok == 0 or ok == true, cmd)
end

describe('perf_manual.sym', function()
  before_each(function() sym.clear_cache() end)

  describe('parse_maps', function()
    it('keeps the executable mappings of a real capture, sorted, with dev:inode', function()
      local maps = sym.parse_maps(test_helpers.fixture('sym/maps_calltree'))
      assert.is_true(#maps >= 5)
      for i, m in ipairs(maps) do
        assert.matches('x', m.perms)
        assert.is_true(m.stop > m.start)
        if i > 1 then assert.is_true(maps[i - 1].start < m.start) end
      end
      local exe = maps[1]
      assert.equal('/work/main/build/workloads/calltree', exe.path)
      assert.equal(0x1000, exe.offset)
      assert.equal('fe:00', exe.dev)
      local names = {}
      for _, m in ipairs(maps) do names[#names + 1] = m.path or '' end
      assert.matches('%[vdso%]', table.concat(names, ' '))
    end)
  end)

  describe('ELF files', function()
    it('reads symbols, PT_LOAD segments, build-id and frame pointer use of the PIE workload', function()
      local e = assert(sym._c.open_elf(calltree))
      local info = e:info()
      assert.equal('dyn', info.type)
      assert.is_true(info.has_symtab)
      assert.matches('^%x+$', info.build_id)
      assert.equal(40, #info.build_id)
      local exec = 0
      for _, l in ipairs(info.loads) do if l.exec then exec = exec + 1 end end
      assert.equal(1, exec)
      -- compiled with -fno-omit-frame-pointer: its functions push %rbp
      -- (only the C runtime's start-up code, linked in, does not)
      assert.is_true(info.fp_checked >= 6)
      assert.is_true(info.fp_with / info.fp_checked >= 0.7)
      e:close(); e:close()  -- idempotent
      assert.has_error(function() e:info() end)
    end)

    it('returns nil, err for a missing file and a file that is not ELF', function()
      local e, err, code = sym._c.open_elf('/nonexistent/x')
      assert.is_nil(e)
      assert.equal('elf: /nonexistent/x: No such file or directory', err)
      assert.equal(2, code)
      e, err = sym._c.open_elf('/proc/self/status')
      assert.is_nil(e)
      assert.matches('not an ELF file', err)
    end)
  end)

  describe('a live PIE process', function()
    it('names its functions through the load bias, and after it exits', function()
      local pid, addrs = start_calltree('burn', 30)
      local r = sym.new()
      local snap = assert(r:snapshot(pid))
      assert.equal('calltree', snap.comm)
      -- the PIE is loaded at a random bias: the printed address is far
      -- from the link-time one, so a wrong bias cannot name it by luck
      assert.is_true(addrs.alpha > 0x10000000)
      -- innermost first: beta (leaf, exact), then return addresses inside
      -- alpha and main (looked up at addr-1)
      local names = r:user(pid, { addrs.beta + 4, addrs.alpha + 5, addrs.main + 20 })
      assert.same({ 'beta', 'alpha', 'main' }, names)
      -- the batch form: many stacks of one process, each innermost first
      assert.same({ { 'beta', 'alpha' }, { 'gamma_', 'main' } },
        r:user_stacks(pid, { { addrs.beta + 4, addrs.alpha + 5 }, { addrs.gamma + 1, addrs.main + 20 } }))
      stop(pid)
      -- the process is gone: the snapshot still names its frames
      assert.is_nil(sym.snapshot(pid))
      names = r:user(pid, { addrs.gamma + 1, addrs.deep_sleep + 2, addrs.snooze + 3 })
      assert.same({ 'gamma_', 'deep_sleep', 'snooze' }, names)
      local bins = r:binaries()
      assert.equal(1, #bins)
      assert.equal('symtab', bins[1].symbols)
      assert.is_true(bins[1].frame_pointers)
    end)

    it('marks addresses outside every mapping [unknown] and names JIT frames from /tmp/perf-PID.map', function()
      local pid = start_calltree('block', 30)
      local map = string.format('/tmp/perf-%d.map', pid)
      local f = assert(io.open(map, 'w'))
      f:write('7f0000001000 100 LazyCompile:*fetchRelated app.js:42\n7f0000002000 80 Interp_loop\n')
      f:close()
      local ok, err = pcall(function()
        local r = sym.new()
        assert(r:snapshot(pid))
        local names = r:user(pid, { 0x7f0000001010, 0x7f0000002050, 0x7f0000003000, 0x10 })
        assert.same({ 'LazyCompile:*fetchRelated app.js:42_[j]', 'Interp_loop_[j]', '[unknown]', '[unknown]' }, names)
      end)
      os.remove(map)
      stop(pid)
      assert(ok, err)
    end)

    it('names libc functions of this very process, with the debug file found by build-id', function()
      ffi.cdef('int getpid(void); int nanosleep(const void *, void *);')
      local r = sym.new()
      local addr = tonumber(ffi.cast('uintptr_t', ffi.cast('void *', ffi.C.nanosleep)))
      local names = r:user(sys.getpid(), { addr })
      assert.matches('nanosleep', names[1])
      local libc
      for _, b in ipairs(r:binaries()) do if b.name:match('^libc') then libc = b end end
      assert.is_not_nil(libc)
      -- Debian's libc has no .symtab; libc6-dbg ships the debug file under
      -- /usr/lib/debug/.build-id (Makefile DEB_PKGS)
      assert.equal('debug', libc.symbols)
      assert.matches('^/usr/lib/debug/%.build%-id/', libc.debug_file)
      assert.is_false(libc.frame_pointers)
    end)

    it('reports a process that does not exist', function()
      local s, err, code = sym.snapshot(999999999)
      assert.is_nil(s)
      assert.equal('no process 999999999', err)
      assert.equal(2, code)
    end)
  end)

  describe('.gnu_debuglink', function()
    local dir
    before_each(function()
      dir = os.tmpname(); os.remove(dir)
      sh('mkdir -p ' .. dir)
    end)
    after_each(function() sh('rm -rf ' .. dir) end)

    it('finds the debug file beside a stripped binary and checks its CRC', function()
      local bin, dbg = dir .. '/ct', dir .. '/ct.debug'
      sh(string.format('objcopy --only-keep-debug %s %s && objcopy --strip-all '
        .. '--remove-section=.note.gnu.build-id --add-gnu-debuglink=%s %s %s',
        calltree, dbg, dbg, calltree, bin))
      local e = assert(sym._c.open_elf(bin))
      local info = e:info()
      assert.is_false(info.has_symtab)
      assert.equal('ct.debug', info.debuglink)
      assert.equal(sym._c.crc32_file(dbg), info.debuglink_crc)
      local alpha_off
      do
        local full = assert(sym._c.open_elf(calltree))
        -- file offset of alpha's first byte: link address through the text segment
        for _, l in ipairs(full:info().loads) do
          if l.exec then
            local f = io.popen("nm " .. calltree .. " | awk '$3==\"alpha\"{print $1}'")
            local a = tonumber(f:read('*l'), 16); f:close()
            alpha_off = a - l.vaddr + l.offset
          end
        end
      end
      local b = assert(sym.binary(bin))
      assert.equal(dbg, b.debug_file)
      assert.same({ 'alpha' }, sym.binary_resolve(b, { alpha_off + 2 }))
      -- a debug file whose CRC does not match is not used: the frame is
      -- then only named by its binary
      sym.clear_cache()
      sh(string.format('printf x >> %s', dbg))
      b = assert(sym.binary(bin))
      assert.is_nil(b.debug_file)
      assert.same({ false }, sym.binary_resolve(b, { alpha_off + 2 }))
    end)
  end)

  describe('kernel', function()
    local function load(text)
      local p = os.tmpname()
      local f = assert(io.open(p, 'w')); f:write(text); f:close()
      local k = assert(sym._c.load_kallsyms(p))
      os.remove(p)
      return k
    end

    it('looks up 64-bit addresses from hex strings and packed stacks without losing bits', function()
      local text = test_helpers.fixture('sym/kallsyms_excerpt')
      local k = load(text)
      local a3, n3 = text:match('\n(%x+) [tT] (%S+)\n(%x+) [tT] (%S+)\n')
      assert.equal(n3, (k:lookup('0x' .. a3)))
      local v = tonumber(a3:sub(-4), 16)
      local plus = '0x' .. a3:sub(1, -5) .. string.format('%04x', v + 1)
      local name, off = k:lookup(plus)
      assert.equal(n3, name)
      assert.equal(1, off)
      -- a packed stack as a BPF stack map returns it: two frames then zeros
      local function u64(hex)
        local bytes = {}
        for i = #hex - 1, 1, -2 do bytes[#bytes + 1] = string.char(tonumber(hex:sub(i, i + 1), 16)) end
        return table.concat(bytes)
      end
      local packed = u64(a3) .. u64(a3) .. string.rep('\0', 16)
      assert.same({ n3, n3 }, k:resolve_packed(packed))
      assert.same({ '0x' .. a3, '0x' .. a3 }, sym.unpack(packed))
    end)

    it('says when kptr_restrict hides every address', function()
      local k = load(test_helpers.fixture('sym/kallsyms_restricted'))
      assert.is_true(k:info().restricted)
      assert.is_nil(k:lookup('0xffffffff81000000'))
    end)

    it('caches the core kernel table per boot and still names BPF programs beyond it', function()
      if not test_helpers.need_root('/proc/kallsyms shows addresses only to root') then return end
      local stdlib = require('posix.stdlib')
      local dir = os.tmpname(); os.remove(dir)
      local old = os.getenv('PERF_MANUAL_CACHE')
      stdlib.setenv('PERF_MANUAL_CACHE', dir)
      local ok, err = pcall(function()
        -- a BPF program of our own, so one address lies past the core kernel
        local obj = assert(require('perf_manual.bpf').load('profile', { attach = false }))
        local f = assert(io.open('/proc/kallsyms'))
        local sched, bpfprog, bpfname
        for line in f:lines() do
          sched = sched or line:match('^(%x+) T schedule$')
          if not bpfprog then bpfprog, bpfname = line:match('^(%x+) t (bpf_prog_%x+_do_sample)') end
        end
        f:close()
        assert.is_not_nil(bpfprog)
        sym.clear_cache()
        local k = assert(sym.kernel())
        assert.is_false(k:info().core_only)
        local files = {}
        for name in io.popen('ls ' .. dir):lines() do files[#files + 1] = name end
        assert.equal(1, #files)
        assert.matches('^kallsyms%-', files[1])
        sym.clear_cache()
        k = assert(sym.kernel())
        assert.is_true(k:info().core_only)   -- read back from the cache
        assert.equal('schedule', (k:lookup('0x' .. sched)))
        -- the program's address is past the cached table: the full one names it
        local r = sym.new()
        assert.same({ 'schedule_[k]', bpfname .. '_[k]' }, r:kernel({ '0x' .. sched, '0x' .. bpfprog }))
        obj:close()
        -- a damaged cache file is not trusted
        sym.clear_cache()
        local cf = assert(io.open(dir .. '/' .. files[1], 'r+b'))
        cf:write('PMKSYM1\0\255\255\255\255'); cf:close()
        k = assert(sym.kernel())
        assert.is_false(k:info().core_only)
      end)
      stdlib.setenv('PERF_MANUAL_CACHE', old)
      sym.clear_cache()
      os.execute("rm -rf '" .. dir .. "'")
      assert(ok, err)
    end)

    it('names the running kernel from /proc/kallsyms with the _[k] suffix', function()
      if not test_helpers.need_root('/proc/kallsyms shows addresses only to root') then return end
      local f = assert(io.open('/proc/kallsyms'))
      local addr
      for line in f:lines() do
        addr = line:match('^(%x+) T schedule$')
        if addr then break end
      end
      f:close()
      local r = sym.new()
      assert.same({ 'schedule_[k]', '[unknown]' }, r:kernel({ '0x' .. addr, 16 }))
    end)
  end)
end)
