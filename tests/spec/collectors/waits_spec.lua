-- Naming what a blocked thread waits on, on real objects this spec makes:
-- a pipe with this process, a unix socketpair and a loopback TCP connection
-- across a fork (tests/workloads/wait_objects), a temporary file, a futex on
-- a workload's global mutex, an epoll fd. Every expected value comes from
-- somewhere else than the module: the pids we started, the fd links, the
-- port the workload printed, nm + /proc/PID/maps, stat(1) and df(1).
local waits = require('perf_manual.collectors.waits')
local sys = require('perf_manual._c.sys')
local h = test_helpers

local function slurp(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

local function sh1(cmd)
  local f = assert(io.popen(cmd))
  local s = f:read('*a')
  f:close()
  return (s:gsub('%s+$', ''))
end

-- polls until fn() is truthy (a process getting ready), returns its value
local function until_true(fn)
  for _ = 1, 500 do
    local v = fn()
    if v then return v end
    sys.sleep(0.01)
  end
  error('never became ready')
end

local function link(pid, fd) return sh1(string.format('readlink /proc/%d/fd/%d', pid, fd)) end

-- the fds of pid whose link matches pattern
local function fds_matching(pid, pattern)
  local out = {}
  for fd, l in pairs(assert(waits.snapshot(pid))) do
    if l:match(pattern) then out[#out + 1] = fd end
  end
  table.sort(out)
  return out
end

-- starts wait_objects MODE; returns its pid, its child's pid (if any) and
-- the text it printed once ready
local function start(mode)
  local out = os.tmpname()
  local pid = assert(sys.spawn({ h.workload('wait_objects'), mode, '60' }, { stdout = out }))
  local text = until_true(function()
    local s = slurp(out)
    return s and s:match('ready') and s
  end)
  os.remove(out)
  local child = tonumber(slurp(string.format('/proc/%d/task/%d/children', pid, pid)) or '')
  return pid, child, text
end

local function stop(pid, child)
  if child then sys.kill(child, 9) end
  sys.kill(pid, 9)
  sys.wait(pid)
end

local function comm(pid) return sh1('cat /proc/' .. pid .. '/comm') end

describe('perf_manual.collectors.waits', function()
  describe('parsers', function()
    it('reads /proc/net addresses, IPv4, IPv6 and IPv4-mapped', function()
      assert.same({ '127.0.0.1', 8080 }, { waits.parse_addr('0100007F:1F90') })
      assert.same({ '::1', 5432 }, { waits.parse_addr('00000000000000000000000001000000:1538') })
      assert.same({ '::', 0 }, { waits.parse_addr('00000000000000000000000000000000:0000') })
      assert.same({ '127.0.0.1', 80 }, { waits.parse_addr('0000000000000000FFFF00000100007F:0050') })
      assert.same({ 'fe80::1', 22 }, { waits.parse_addr('000080FE000000000000000001000000:0016') })
      assert.is_nil(waits.parse_addr('zz'))
    end)

    it('reads the local and peer inodes of ss -xn, named sockets and users:() included', function()
      local t = waits.parse_ss_unix(table.concat({
        'u_str ESTAB 0      0                  * 1199            * 1198       ',
        'u_str ESTAB 0 0 /run/systemd/journal/stdout 15012 * 14990 users:(("systemd-journal",pid=242,fd=30))',
        'u_str LISTEN 0 4096 /run/dbus/system_bus_socket 13001 * 0',
      }, '\n'))
      assert.same({ [1199] = 1198, [15012] = 14990 }, t)
    end)

    it('reads the watched fds of an epoll fdinfo', function()
      assert.same({ 5, 3 }, waits.parse_epoll_fdinfo(
        'pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n'
        .. 'tfd:        5 events:       19 data:                5  pos:0 ino:3e1 sdev:d\n'
        .. 'tfd:        3 events:       19 data:                3  pos:0 ino:3e2 sdev:e\n'))
    end)
  end)

  describe('on real objects', function()
    it('names the writer of a pipe a process reads, and the reader of a pipe it writes', function()
      local me = sys.getpid()
      -- cat reads its stdin, a pipe whose write end this process holds
      local pidfile = os.tmpname()
      local f = assert(io.popen(string.format("echo $$ > '%s'; exec cat > /dev/null", pidfile), 'w'))
      local cat = until_true(function() return tonumber(slurp(pidfile) or '') end)
      until_true(function() return comm(cat) == 'cat' end)
      local pipe = link(cat, 0)
      local e = { reason = 'ipc', syscall = 'read', fd = 0 }
      waits.name(cat, { e })
      f:close()
      os.remove(pidfile)
      assert.matches('^pipe:%[%d+%]$', pipe)
      assert.equal(pipe, e.object)
      assert.equal(me, e.peer.pid)
      assert.equal(comm(me), e.peer.comm)
      assert.equal(string.format('pid %d (%s) via pipe', me, comm(me)), e.text)

      -- sleep's stdout is a pipe this process reads
      local r = assert(io.popen('echo $$; exec sleep 60', 'r'))
      local sleeper = tonumber(r:read('*l'))
      until_true(function() return comm(sleeper) == 'sleep' end)
      local out_link = link(sleeper, 1)
      local mine = fds_matching(me, '^' .. out_link:gsub('%p', '%%%0') .. '$')
      local ours = { reason = 'ipc', syscall = 'read', fd = mine[1] }
      local theirs = { reason = 'ipc', syscall = 'write', fd = 1, fd_link = out_link }
      waits.name(me, { ours })
      waits.name(sleeper, { theirs })
      sys.kill(sleeper, 9)
      r:close()
      assert.equal(1, #mine)
      assert.equal(sleeper, ours.peer.pid)
      assert.equal('sleep', ours.peer.comm)
      assert.equal(string.format('pid %d (sleep) via pipe', sleeper), ours.text)
      assert.equal(me, theirs.peer.pid)
    end)

    it('names the writer of a FIFO by its path', function()
      local me = sys.getpid()
      local dir = h.tmpdir()
      local fifo, pidfile = dir .. '/queue', dir .. '/pid'
      assert.equal(0, os.execute(string.format("mkfifo '%s'", fifo)))
      local r = assert(io.popen(string.format("echo $$ > '%s'; exec cat '%s' > /dev/null", pidfile, fifo), 'r'))
      local w = assert(io.open(fifo, 'w'))  -- opens once cat has opened its end
      local cat = until_true(function() return tonumber(slurp(pidfile) or '') end)
      local fd = until_true(function() return fds_matching(cat, '^' .. fifo:gsub('%p', '%%%0') .. '$')[1] end)
      local e = { reason = 'ipc', syscall = 'read', fd = fd }
      waits.name(cat, { e })
      w:close()
      r:close()
      h.rmrf(dir)
      assert.equal(fifo, e.object)
      assert.equal(me, e.peer.pid)
      assert.equal(string.format('pid %d (%s) via fifo %s', me, comm(me), fifo), e.text)
    end)

    it('names the process at the other end of a unix socketpair', function()
      local parent, child = start('unix')
      local ok, err = pcall(function()
        assert.is_number(child)
        local pfd = fds_matching(parent, '^socket:')
        local cfd = fds_matching(child, '^socket:')
        assert.equal(1, #pfd)
        assert.equal(1, #cfd)
        local a = { reason = 'ipc', syscall = 'read', fd = pfd[1] }
        local b = { reason = 'ipc', syscall = 'read', fd = cfd[1] }
        waits.name(parent, { a })
        waits.name(child, { b })
        assert.equal('unix', a.proto)
        assert.equal(link(parent, pfd[1]), a.object)
        -- the peer inode is the child's socket
        assert.equal(link(child, cfd[1]), string.format('socket:[%d]', a.peer_inode))
        assert.equal(child, a.peer.pid)
        assert.equal('wait_objects', a.peer.comm)
        assert.equal(string.format('unix socket to pid %d (wait_objects)', child), a.text)
        assert.equal(parent, b.peer.pid)
      end)
      stop(parent, child)
      assert(ok, err)
    end)

    it('names both ends of a loopback TCP connection and the process at the other end', function()
      local parent, child, text = start('tcp')
      local ok, err = pcall(function()
        local port = tonumber(text:match('port (%d+)'))
        assert.is_number(port)
        local pfd = fds_matching(parent, '^socket:')
        local cfd = fds_matching(child, '^socket:')
        assert.equal(1, #pfd)
        assert.equal(1, #cfd)
        local a = { reason = 'net', syscall = 'read', fd = pfd[1] }
        local b = { reason = 'net', syscall = 'read', fd = cfd[1] }
        waits.name(parent, { a })
        waits.name(child, { b })
        -- the child connected to the port the workload listened on
        assert.equal('tcp', b.proto)
        assert.equal('ESTABLISHED', b.state)
        assert.equal('127.0.0.1:' .. port, b.remote)
        assert.equal(child, a.peer.pid)
        assert.equal(parent, b.peer.pid)
        assert.equal(b['local'], a.remote)
        assert.equal('127.0.0.1:' .. port, a['local'])
        assert.equal(string.format('tcp 127.0.0.1:%d (pid %d wait_objects)', port, parent), b.text)
      end)
      stop(parent, child)
      assert(ok, err)
    end)

    it('names a file, its device and mount', function()
      local dir = h.tmpdir()
      local path = dir .. '/data.db'
      local pid = assert(sys.spawn({ 'sleep', '60' }, { stdout = path }))
      until_true(function() return comm(pid) == 'sleep' end)
      local e = { reason = 'io', syscall = 'write', fd = 1 }
      waits.name(pid, { e })
      stop(pid)
      local dev = sh1(string.format("stat -c '%%Hd:%%Ld' '%s'", path))
      local mount = sh1(string.format("df --output=target '%s' | tail -1", path))
      local source = sh1(string.format("df --output=source '%s' | tail -1", path))
      h.rmrf(dir)
      assert.equal(path, e.path)
      assert.equal('file ' .. path, e.text)
      assert.equal(dev, e.dev)
      assert.equal(mount, e.mount)
      assert.equal(source, e.device)
    end)

    it('names a futex by the global mutex it is (g_lock in .bss), its address checked with nm and the maps', function()
      local bin = h.workload('wait_objects')
      local pid = start('lock')
      local ok, err = pcall(function()
        -- the waiting thread's futex address, from its syscall file
        local waiter, sp
        local addr = until_true(function()
          for _, tid in ipairs(require('posix.dirent').dir('/proc/' .. pid .. '/task')) do
            local s = slurp(string.format('/proc/%d/task/%s/syscall', pid, tid)) or ''
            local a = s:match('^202 0x(%x+)')
            if a then
              waiter, sp = tonumber(tid), tonumber(s:match('0x(%x+) 0x%x+%s*$'), 16)
              return tonumber(a, 16)
            end
          end
        end)
        -- the same address from nm and the load base (mapping at offset 0)
        local sym_off = tonumber(sh1(string.format("nm '%s' | awk '$3==\"g_lock\"{print $1}'", bin)), 16)
        local base = tonumber(sh1(string.format(
          "awk '$3==\"00000000\" && $6==\"%s\"{split($1,a,\"-\"); print a[1]; exit}' /proc/%d/maps", bin, pid)), 16)
        assert.equal(base + sym_off, addr)
        local e = { reason = 'lock', syscall = 'futex', addr = addr }
        waits.name(pid, { e })
        assert.equal(string.format('0x%x', addr), e.object)
        assert.equal('g_lock', e.symbol)
        assert.equal('.bss', e.section)
        assert.equal(bin, e.mapping)
        assert.equal(string.format('lock g_lock (0x%x, %s .bss)', addr, bin), e.text)
        -- an address on the waiting thread's stack (its stack pointer)
        local st = { reason = 'lock', addr = sp - 64 }
        waits.name(pid, { st })
        assert.equal('[stack:' .. waiter .. ']', st.mapping)
        -- an address in the heap names the mapping only
        local heap = tonumber(sh1(string.format(
          "awk '$6==\"[heap]\"{split($1,a,\"-\"); print a[1]; exit}' /proc/%d/maps", pid)), 16)
        if heap then
          local hp = { reason = 'lock', addr = heap + 16 }
          waits.name(pid, { hp })
          assert.equal('[heap]', hp.mapping)
          assert.is_nil(hp.symbol)
          assert.equal(string.format('lock 0x%x ([heap])', heap + 16), hp.text)
        end
      end)
      stop(pid)
      assert(ok, err)
    end)

    it('names data symbols of a shared library from its .dynsym (elf:lookup_data)', function()
      local libc = sh1("ldd '" .. h.workload('wait_objects') .. "' | awk '/libc.so/{print $3}'")
      local stdout_at = tonumber(sh1(string.format("nm -D '%s' | awk '$3 ~ /^stdout@/{print $1}'", libc)), 16)
      local e = assert(require('perf_manual._c.sym').open_elf(libc))
      local name, off, section = e:lookup_data(stdout_at + 3)
      assert.equal('stdout', name)
      assert.equal(3, off)
      assert.equal('.data', section)
      -- a function's address is no data object
      local fn_at = tonumber(sh1(string.format("nm -D '%s' | awk '$3 ~ /^read@@/{print $1}'", libc)), 16)
      local fname, _, fsection = e:lookup_data(fn_at)
      assert.is_false(fname)
      assert.equal('.text', fsection)
      e:close()
    end)

    it('lists what an epoll fd watches', function()
      local pid = start('epoll')
      local ok, err = pcall(function()
        local ep = fds_matching(pid, 'eventpoll')
        assert.equal(1, #ep)
        local e = { reason = 'poll', syscall = 'epoll_wait', fd = ep[1] }
        waits.name(pid, { e })
        assert.equal('anon_inode:[eventpoll]', e.object)
        local kinds = {}
        for _, w in ipairs(e.watches) do
          kinds[#kinds + 1] = w.kind
          assert.equal(link(pid, w.fd), w.link)
        end
        table.sort(kinds)
        assert.same({ 'eventfd', 'pipe' }, kinds)
        assert.matches('^epoll on 2 fds %(', e.text)
      end)
      stop(pid)
      assert(ok, err)
    end)

    it('keeps what is known about a process that is gone', function()
      local pid = assert(sys.spawn({ 'true' }))
      sys.wait(pid)
      local entries = {
        { reason = 'ipc', syscall = 'read', fd = 3, fd_link = 'pipe:[4026531840]' },
        { reason = 'ipc', syscall = 'read', fd = 4 },
        { reason = 'lock', syscall = 'futex', addr = 0x1000 },
        { reason = 'sleep', syscall = 'clock_nanosleep' },
      }
      waits.name(pid, entries)
      assert.equal('pipe:[4026531840]', entries[1].object)
      assert.equal('pipe pipe:[4026531840] (no other process holds it)', entries[1].text)
      assert.equal('pipe / unix socket in read()', entries[2].text)
      assert.equal('0x1000', entries[3].object)
      assert.equal('lock 0x1000', entries[3].text)
      assert.equal('sleep in clock_nanosleep()', entries[4].text)
    end)
  end)
end)
