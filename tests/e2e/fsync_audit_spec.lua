-- fsync-audit end to end: fsync_writer (threads flushing one shared file,
-- or a file each) traced over its whole life, judged by strace -c counting
-- the same process's fsync and pwrite64 calls.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')

-- the tools these runs need: skipped (with the reason) when one is missing, a failure in CI
local function have_tools()
  for _, t in ipairs({ { 'strace', 'strace' } }) do
    local _, _, st = h.sh('command -v ' .. t[1])
    if st ~= 0 then
      h.skip_unless_required('PM_REQUIRE_BPF', t[1] .. ' is not installed (' .. t[2] .. ')')
      return false
    end
  end
  return true
end

-- strace -c's table → syscall name → calls
local function strace_calls(text)
  local out = {}
  for line in (text or ''):gmatch('[^\n]+') do
    local calls, name = line:match('^%s*[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*([%w_]+)%s*$')
    if calls and name ~= 'total' then out[name] = tonumber(calls) end
  end
  return out
end

local function alive(pid) return util.readfile('/proc/' .. pid .. '/stat') ~= nil end

-- runs the writer under strace after a second's sleep (the audit attaches
-- first; exec keeps the pid) and audits it until it exits
local function audit(args)
  local dir = W.scratch()
  local log = os.tmpname()
  local out = h.sh(string.format("strace -f -qq -c -e trace=fsync,pwrite64 -o %s sh -c 'sleep 1; exec %s 2 %s %s'"
    .. ' >/dev/null 2>&1 & echo $!', log, h.workload('fsync_writer'), dir, args))
  local strace_pid = assert(tonumber(out:match('%d+')))
  local child = W.wait_until(function()
    -- strace forks a probe child of its own first: wait for the shell
    local c = util.readfile('/proc/' .. strace_pid .. '/task/' .. strace_pid .. '/children') or ''
    for pid in c:gmatch('%d+') do
      if util.readfile('/proc/' .. pid .. '/comm') == 'sh\n' then return tonumber(pid) end
    end
  end, 5)
  assert(child, 'strace started no child')
  local json, err, st = h.pm(string.format('fsync-audit --target %d --duration 60 --json', child))
  W.wait_until(function() return not alive(strace_pid) end, 30)
  local truth = strace_calls(util.readfile(log))
  os.remove(log)
  W.cleanup_scratch()
  assert.equal(0, st, err)
  return assert(util.json_decode(json), json), truth, child
end

describe('fsync-audit (e2e)', function()
  it('counts every fsync strace counts, per file and thread, and says group commit would help', function()
    if not h.need_root() then return end
    if not have_tools() then return end
    h.with_machine_lock(function()
      local doc, truth, pid = audit('3 shared')
      assert.is_true((truth.fsync or 0) > 50, 'strace saw too few fsyncs: ' .. tostring(truth.fsync))
      assert.equal(truth.fsync, doc.count)
      assert.equal(1, #doc.files)
      assert.matches('/fsync_writer%.' .. pid .. '%.0$', doc.files[1].path)
      assert.equal(3, doc.files[1].nthreads)
      assert.equal(3, #doc.threads)
      assert.equal('yes', doc.verdict.group_commit)
      -- the bytes it wrote: 4 KiB per pwrite64 (the last /proc read is at most a poll before the exit)
      local want = truth.pwrite64 * 4096
      assert.is_true(math.abs(doc.amplification.app_bytes - want) <= want * 0.15,
        string.format('app bytes %d, strace %d', doc.amplification.app_bytes, want))
    end)
  end)

  it('names a file per thread when each writes its own', function()
    if not h.need_root() then return end
    if not have_tools() then return end
    h.with_machine_lock(function()
      local doc, truth, pid = audit('2')
      assert.equal(truth.fsync, doc.count)
      assert.equal(2, #doc.files)
      for _, f in ipairs(doc.files) do
        assert.matches('/fsync_writer%.' .. pid .. '%.[01]$', f.path)
        assert.equal(1, f.nthreads)
      end
      assert.equal('maybe', doc.verdict.group_commit)
    end)
  end)
end)
