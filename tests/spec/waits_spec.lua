local waits = require('perf_manual.waits')

describe('waits.classify', function()
  it('names a read by the kind of its fd', function()
    assert.equal('ipc', waits.classify { syscall = 'read', fd_kind = 'pipe', state = 'S' })
    assert.equal('net', waits.classify { syscall = 'recvfrom', fd_kind = 'tcp', state = 'S' })
    assert.equal('io', waits.classify { syscall = 'pread64', fd_kind = 'file', state = 'D', iowait = true })
    assert.equal('poll', waits.classify { syscall = 'read', fd_kind = 'eventfd', state = 'S' })
  end)

  it('falls back to kernel frames when the fd is unknown', function()
    assert.equal('ipc', waits.classify { syscall = 'read', state = 'S', frames = { 'pipe_read', 'vfs_read' } })
    assert.equal('ipc', waits.classify { syscall = 'read', state = 'S', frames = { 'anon_pipe_read', 'vfs_read' } })
    assert.equal('other', waits.classify { syscall = 'read', state = 'S' })
  end)

  it('puts reclaim and kernel locks before the syscall', function()
    assert.equal('memory', waits.classify { syscall = 'write', fd_kind = 'pipe', state = 'D',
      frames = { 'schedule', 'throttle_direct_reclaim', 'try_to_free_pages' } })
    assert.equal('lock', waits.classify { syscall = 'write', fd_kind = 'file', state = 'D',
      frames = { 'schedule', 'rwsem_down_write_slowpath' } })
    assert.equal('io', waits.classify { syscall = 'write', fd_kind = 'file', state = 'D',
      frames = { 'schedule', 'io_schedule_timeout', 'balance_dirty_pages' } })
  end)

  it('names the syscall-only waits', function()
    assert.equal('lock', waits.classify { syscall = 'futex', state = 'S' })
    assert.equal('sleep', waits.classify { syscall = 'clock_nanosleep', state = 'S' })
    assert.equal('poll', waits.classify { syscall = 'epoll_wait', state = 'S' })
    assert.equal('child', waits.classify { syscall = 'wait4', state = 'S' })
    assert.equal('io', waits.classify { syscall = 'fdatasync', state = 'D' })
  end)

  it('counts a blocked wait outside any syscall as memory, an unknown one as other', function()
    assert.equal('memory', waits.classify { in_syscall = false, state = 'D' })
    assert.equal('io', waits.classify { syscall = 'ioctl', state = 'D', iowait = true })
    assert.equal('other', waits.classify { syscall = 'ioctl', state = 'S' })
  end)

  it('reads a team rule before the built-in ones', function()
    waits.extend { { 'net', syscall = 'ioctl' } }
    finally(function() waits.reset() end)
    assert.equal('net', waits.classify { syscall = 'ioctl', state = 'S' })
  end)
end)

describe('waits.fd_kind', function()
  it('reads /proc fd links', function()
    assert.equal('pipe', waits.fd_kind('pipe:[1234]'))
    assert.equal('socket', waits.fd_kind('socket:[99]'))
    assert.equal('eventfd', waits.fd_kind('anon_inode:[eventfd]'))
    assert.equal('epoll', waits.fd_kind('anon_inode:[eventpoll]'))
    assert.equal('tty', waits.fd_kind('/dev/pts/3'))
    assert.equal('file', waits.fd_kind('/var/lib/x.db'))
    assert.is_nil(waits.fd_kind(nil))
  end)

  it('gives every state a label and keeps blocked states apart from cpu and runq', function()
    for _, s in ipairs(waits.STATES) do assert.is_string(waits.LABELS[s]) end
    assert.equal(#waits.STATES - 2, #waits.BLOCKED)
  end)
end)
