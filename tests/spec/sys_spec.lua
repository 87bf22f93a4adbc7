local sys = require('perf_manual._c.sys')

describe('perf_manual._c.sys files and syscall facts', function()
  it('re-reads a /proc file in place with pread, at an offset, up to a size', function()
    local fd = assert(sys.open('/proc/self/stat'))
    local a = assert(sys.pread(fd, 1023))
    assert.truthy(a:match('^' .. sys.getpid() .. ' %(')) -- "PID (comm) S ..."
    local b = assert(sys.pread(fd, 1023))
    assert.equal(a:match('^%d+ %b() %a'), b:match('^%d+ %b() %a'))
    assert.equal(a:sub(3, 6), assert(sys.pread(fd, 4, 2)))
    assert.equal('', assert(sys.pread(fd, 0)))
    assert.is_true(sys.close(fd))
  end)

  it('names the operation, the path and the errno text when it fails', function()
    local fd, err, errno = sys.open('/proc/self/no-such-file')
    assert.is_nil(fd)
    assert.equal('open /proc/self/no-such-file: No such file or directory', err)
    assert.equal(2, errno)
    local f = assert(sys.open('/proc/self/stat'))
    sys.close(f)
    local s, perr, perrno = sys.pread(f, 10)
    assert.is_nil(s)
    assert.equal('pread: Bad file descriptor', perr)
    assert.equal(9, perrno)
    local ok, cerr = sys.close(f)
    assert.is_nil(ok)
    assert.equal('close: Bad file descriptor', cerr)
    assert.has_error(function() sys.pread(0, -1) end)
  end)

  it('gives this thread its own CPU time', function()
    local t0 = sys.thread_cpu()
    local x = 0
    for i = 1, 3e6 do x = x + i % 7 end
    assert.is_true(x > 0)
    local t1 = sys.thread_cpu()
    assert.is_true(t1 > t0)
    -- a sleep uses no CPU
    sys.sleep(0.05)
    assert.is_true(sys.thread_cpu() - t1 < 0.04)
  end)

  it('gives syscall numbers of this architecture', function()
    if jit.arch == 'x64' then
      assert.equal(202, sys.syscall_nr('futex'))
      assert.equal(449, sys.syscall_nr('futex_waitv'))
    else
      assert.is_number(sys.syscall_nr('futex'))
    end
    assert.is_nil(sys.syscall_nr('no_such_call'))
  end)
end)

describe('perf_manual._c.sys spawn options', function()
  it('setpgid, stdin from /dev/null, and a log capped by the logger process', function()
    local util = require('perf_manual.util')
    local log = os.tmpname()
    local pid, logger = sys.spawn({ 'yes', 'y' }, { setpgid = true, stdin = 'null', pdeathsig = 9, log = log,
      log_cap = 1000 })
    assert.is_number(pid)
    assert.is_number(logger)
    sys.sleep(0.2)
    -- its own process group: kill(-pid) reaches it and what it starts
    local stat = util.readfile('/proc/' .. pid .. '/stat')
    local _, pgrp = stat:match('%) %a (%d+) (%d+)')
    assert.equal(pid, tonumber(pgrp))
    local rl = io.popen('readlink /proc/' .. pid .. '/fd/0')
    assert.equal('/dev/null', rl:read('*l'))
    rl:close()
    sys.kill(-pid, 15)
    sys.wait(pid)
    -- the logger ends at EOF, when the last writer is gone
    assert.same({ 'exited', 0 }, { sys.wait(logger) })
    local text = util.readfile(log)
    os.remove(log)
    assert.equal(('y\n'):rep(500), text:sub(1, 1000))
    assert.equal('\n[perf_manual: output cut at 1000 bytes; the rest was dropped]\n', text:sub(1001))
  end)

  it('the command inherits none of this process\'s files, only 0-2', function()
    local util = require('perf_manual.util')
    -- Lua files are not close-on-exec: without the child closing them, these would reach the command
    local held = {}
    for i = 1, 20 do held[i] = assert(io.open('/dev/null')) end
    local out = os.tmpname()
    local pid = assert(sys.spawn({ 'sh', '-c', 'ls /proc/$$/fd' }, { stdout = out }))
    assert.same({ 'exited', 0 }, { sys.wait(pid) })
    for _, f in ipairs(held) do f:close() end
    local fds = util.split(util.trim(util.readfile(out)), '\n')
    os.remove(out)
    table.sort(fds)
    assert.same({ '0', '1', '2' }, fds)
    -- and os.execute, which does not close them, shows what the test holds
    local leaky = io.open('/dev/null')
    local ls = io.popen('ls /proc/$$/fd | wc -l')
    local n = tonumber(ls:read('*a'))
    ls:close()
    leaky:close()
    assert.is_true(n > 3, 'the shell had ' .. n .. ' files')
  end)

  it('the command starts with default signal handling and an open mask, whatever this process catches', function()
    local util = require('perf_manual.util')
    -- the host catches SIGINT and SIGTERM and ignores SIGPIPE; the child shares
    -- this process's memory until it execs, so it must reset them itself.
    -- Read from /proc once it has exec'd (a shell would show its own mask,
    -- which dash fills while it forks). spawn returns when the kernel lets
    -- a vfork parent go, a moment before exec sets the new name: wait for it
    local pid = assert(sys.spawn({ 'sleep', '5' }))
    local status
    for _ = 1, 1000 do
      status = util.readfile('/proc/' .. pid .. '/status') or ''
      if status:match('Name:%s+sleep\n') then break end
      sys.sleep(0.005)
    end
    local own = util.readfile('/proc/self/status')
    assert(sys.kill(pid, 2))
    assert.same({ 'signaled', 2 }, { sys.wait(pid) })
    assert.matches('Name:%s+sleep\n', status)
    -- the mask this process had before the launch blocked everything
    assert.equal(own:match('SigBlk:%s+(%x+)'), status:match('SigBlk:%s+(%x+)'))
    assert.is_nil(status:match('SigBlk:%s+f+'))
    -- SIGPIPE (bit 13) is ignored here, back to the default there: a command
    -- writing to a closed pipe dies as usual
    local ign = tonumber(status:match('SigIgn:%s+(%x+)'), 16)
    assert.equal(0, math.floor(ign / 2 ^ 12) % 2)
    -- a join file it cannot open is the launch's error, reported before any pid
    local p2, err = sys.spawn({ 'true' }, { join = '/nonexistent/dir/cgroup.procs' })
    assert.is_nil(p2)
    assert.equal('cannot start true: No such file or directory', err)
  end)

  it('a bad pdeathsig is an argument error; a log it cannot open is an error result', function()
    assert.has_error(function() sys.spawn({ 'true' }, { pdeathsig = 999 }) end)
    local pid, err = sys.spawn({ 'true' }, { log = '/nonexistent/dir/log' })
    assert.is_nil(pid)
    assert.matches('^cannot open /nonexistent/dir/log: No such file or directory', err)
  end)
end)
