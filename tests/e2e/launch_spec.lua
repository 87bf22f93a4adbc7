-- `perf_manual COMMAND -- prog args`, end to end: the command is launched
-- by the tool, its children are followed (fork_kids does all its work in two
-- children), the window ends when it exits and its exit status is reported.
-- Ground truth: the counts the workloads make by construction, strace -f -c,
-- the workload's known blocking split and /proc/PID/schedstat.
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local h = test_helpers

local function json_of(out, err)
  local ok, doc = pcall(util.json_decode, out)
  assert(ok and type(doc) == 'table', 'not JSON: ' .. tostring(out) .. tostring(err))
  return doc
end

local function syscall_count(doc, name)
  for _, s in ipairs(doc.intervals[1].results.syscalls.syscalls) do
    if s.name == name then return s.count end
  end
  return 0
end

-- the number of `name` calls strace -f sees the command make (nil without strace)
local function strace_count(argv, name)
  if os.execute('command -v strace >/dev/null 2>&1') ~= 0 then return nil end
  local f = io.popen('strace -f -c -e trace=' .. name .. ' ' .. table.concat(argv, ' ') .. ' 2>&1 >/dev/null')
  local text = f:read('*a')
  f:close()
  for line in text:gmatch('[^\n]+') do
    local cols = {}
    for x in line:gmatch('%S+') do cols[#cols + 1] = x end
    -- % time, seconds, usecs/call, calls, [errors,] syscall
    if cols[#cols] == name and #cols >= 5 then return tonumber(cols[4]) end
  end
end

describe('-- COMMAND', function()
  it('trace counts the syscalls of the command\'s children and reports its exit status', function()
    if not h.need_root() then return end
    h.with_machine_lock(function()
      local argv = { h.workload('fork_kids'), '2', 'syscalls', '20000', '3' }
      local out, err, st = h.pm('trace --events syscalls --json --duration 30 -- ' .. table.concat(argv, ' '))
      assert.equal(0, st, err)
      local doc = json_of(out, err)
      assert.equal(3, doc.exit_status)
      assert.equal(3, doc.target.exit_status)
      assert.is_true(doc.target.follows_children)
      assert.equal('target exited', doc.ended_by)
      -- the children made exactly 2 x 20000 getppid calls (the parent none)
      assert.equal(40000, syscall_count(doc, 'getppid'))
      local strace = strace_count(argv, 'getppid')
      if strace then assert.equal(strace, syscall_count(doc, 'getppid')) end
      assert.equal(2, syscall_count(doc, 'clone'))
      -- the window was the command's life, not the 30 s asked
      assert.is_true(doc.duration_s < 30, tostring(doc.duration_s))
      -- and in text
      local text = h.pm('trace --events syscalls --duration 30 -- ' .. table.concat(argv, ' '))
      assert.matches('\ncommand exited with status 3 %(traced ', text)
    end)
  end)

  it('ends the window when the command exits, a command with its own dashes included', function()
    if not h.need_root() then return end
    h.with_machine_lock(function()
      local out, err, st = h.pm("trace --events syscalls --json --duration 30 -- sh -c 'sleep 1; exit 0' --x-y")
      assert.equal(0, st, err)
      local doc = json_of(out, err)
      assert.equal(0, doc.exit_status)
      assert.equal("sh -c 'sleep 1; exit 0' --x-y", doc.target.command)
      assert.is_true(doc.duration_s >= 0.9 and doc.duration_s < 30, tostring(doc.duration_s))
      -- killed by a signal: said so
      local text, err2, st2 = h.pm("trace --events syscalls -- sh -c 'kill -9 $$'")
      assert.equal(0, st2, err2)
      assert.matches('command killed by signal 9 %(SIGKILL%)', text)
    end)
  end)

  it('use-check reports the exit status of the command it launched, in text and JSON', function()
    if not h.need_root() then return end
    h.with_machine_lock(function()
      local text, err, st = h.pm("use-check --duration 5 -- sh -c 'sleep 1; exit 3'")
      assert.equal(0, st, err)
      assert.matches('\ncommand exited with status 3\n', text)
      local out, err2, st2 = h.pm("use-check --duration 5 --json -- sh -c 'sleep 1; exit 3'")
      assert.equal(0, st2, err2)
      local doc = json_of(out, err2)
      assert.equal(3, doc.exit_status)
      assert.is_true(doc.exited)
    end)
  end)

  it('investigate -- COMMAND runs the investigation on the command it launches', function()
    if not h.need_root('the drill-downs load BPF tracers and profilers') then return end
    h.with_machine_lock(function()
      local root = os.tmpname(); os.remove(root)
      local ok, err = xpcall(function()
        -- one thread spinning on the 2-CPU machine (cpu_burn THREADS SECONDS)
        local out, e, st = h.pm(string.format('investigate --symptom "it is slow" --batch --duration 2 --store %s '
          .. '-- %s/build/workloads/cpu_burn 1 30', root, h.root))
        assert.equal(0, st, out .. e)
        local id = require('perf_manual.store').list(root)[1]
        local meta = assert(require('perf_manual.store').open(root, id):load_metadata())
        assert.equal('cpu', meta.verdict, out)
        assert.matches('\nBottleneck: cpu\nRoot cause: [^\n]*cpu_burn', out)
        -- the command was stopped with the investigation: no cpu_burn left behind
        assert.is_nil(io.popen('pgrep -f "[w]orkloads/cpu_burn 1 30"'):read('*l'))
      end, debug.traceback)
      os.execute('rm -rf ' .. root)
      assert(ok, err)
    end)
  end)

  it('removes the empty run cgroups left by a perf_manual that was killed, and no other', function()
    if not h.need_root() then return end
    local targets = require('perf_manual.measure.target')
    local m = require('perf_manual.collectors.cgroup').mounts()
    if not m.v2 then return pending('no cgroup v2 mount') end
    -- a pid that is surely gone: a child reaped just now
    local dead = assert(sys.spawn({ 'true' }, { stdout = 'null', stderr = 'null' }))
    sys.wait(dead)
    local gone = string.format('%s/perf_manual-run-%d-1', m.v2.dir, dead)
    local live = string.format('%s/perf_manual-run-1-77', m.v2.dir) -- pid 1 is alive
    local stat = require('posix.sys.stat')
    assert(stat.mkdir(gone, 493))
    assert(stat.mkdir(live, 493))
    local ok, err = pcall(function()
      assert.is_true(targets.sweep_run_cgroups(m.v2.dir) >= 1)
      assert.is_nil(stat.stat(gone))
      assert.is_not_nil(stat.stat(live))
    end)
    require('posix.unistd').rmdir(gone)
    require('posix.unistd').rmdir(live)
    assert(ok, err)
  end)

  it('profile sees the samples of the command\'s children', function()
    if not h.need_root() then return end
    h.with_machine_lock(function()
      local dir = h.tmpdir()
      local out, err, st = h.pm('profile --json --duration 30 --format folded --output ' .. dir .. ' -- '
        .. h.workload('fork_kids') .. ' 2 burn 1 0')
      local folded = util.readfile(dir .. '/profile.folded') or ''
      h.rmrf(dir)
      assert.equal(0, st, err)
      local doc = json_of(out, err)
      assert.equal(0, doc.exit_status)
      assert.is_true(doc.duration_s < 30, tostring(doc.duration_s))
      -- only the children burn (1 s each, 2 CPUs): their function fills the profile
      local burn = 0
      for line in folded:gmatch('[^\n]+') do
        if line:find(';kid_burn', 1, true) then burn = burn + tonumber(line:match(' (%d+)$')) end
      end
      assert.is_true(burn >= 0.5 * doc.total and burn > 60, 'kid_burn samples ' .. burn .. ' of ' .. doc.total)
      -- the CPU time the share is taken from is the children's too (cgroup cpu.stat): well over one second
      assert.is_true(doc.on_cpu.cpu_s > 1.0, tostring(doc.on_cpu.cpu_s))
    end)
  end)

  it('an off-CPU profile splits blocked time by reason as the workload blocks: pipe 75%, sleep 25%', function()
    if not h.need_root() then return end
    h.with_machine_lock(function()
      local pid = assert(sys.spawn({ h.workload('pipe_waiter'), '8' }, { stdout = 'null' }))
      local ok, e = pcall(function()
        sys.sleep(0.3)
        local function sched(p)
          local on, wait = util.readfile('/proc/' .. p .. '/schedstat'):match('^(%d+) (%d+)')
          return tonumber(on) / 1e9, tonumber(wait) / 1e9
        end
        local t0, on0 = sys.now(), sched(pid)
        local dir = h.tmpdir()
        local out, err, st = h.pm(string.format('profile --off-cpu --pid %d --duration 3 --json --format folded '
          .. '--output %s', pid, dir))
        h.rmrf(dir)
        local on1 = sched(pid)
        local wall = sys.now() - t0
        assert.equal(0, st, err)
        local doc = json_of(out, err)
        local share = {}
        for _, r in ipairs(doc.by_reason.reasons) do share[r.reason] = r.share end
        assert.near(0.75, share.ipc or 0, 0.10)
        assert.near(0.25, share.sleep or 0, 0.10)
        -- blocked time: all of the window the schedstat on-CPU time leaves
        local blocked_s = doc.by_reason.total / 1e6
        assert.near(doc.duration_s * (1 - (on1 - on0) / wall), blocked_s, 0.1 * doc.duration_s)
        local text = h.pm(string.format('profile --off-cpu --pid %d --duration 1 --format folded --output %s',
          pid, dir))
        h.rmrf(dir)
        assert.matches('\nblocked [%d.]+m?s: pipe / unix socket %d+%%, sleep %d+%%\n', text)
        assert.is_nil(text:find('__schedule', 1, true))
      end)
      sys.kill(pid, 9); sys.wait(pid)
      assert(ok, e)
    end)
  end)
end)
