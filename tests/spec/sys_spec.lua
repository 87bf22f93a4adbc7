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
