-- perf_manual profile, end to end: the real CLI against calltree, a workload
-- with a known call tree (main -> alpha -> beta 60%, main -> gamma_ 30%,
-- main -> delta 10%, frame pointers on), on both sampling backends.
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local h = test_helpers

local function start(mode, secs)
  return assert(sys.spawn({ h.workload('calltree'), mode, tostring(secs) }, { stdout = 'null' }))
end
local function reap(pid) sys.kill(pid, 9) sys.wait(pid) end

local function tmpdir()
  local d = os.tmpname(); os.remove(d)
  return d
end

-- inclusive share of a frame in folded text (once per stack), among the
-- stacks whose root is `comm`
local function share(folded, comm, frame)
  local total, hit = 0, 0
  for line in folded:gmatch('[^\n]+') do
    local stack, n = line:match('^(.*) (%d+)$')
    if stack:match('^[^;]*') == comm then
      total = total + tonumber(n)
      if (';' .. stack .. ';'):find(';' .. frame .. ';', 1, true) then hit = hit + tonumber(n) end
    end
  end
  return total > 0 and hit / total or 0, total
end

local function profile(args, dir)
  local out, err, status = h.pm('profile ' .. args .. ' --output ' .. dir)
  assert.equal(0, status, err)
  return out, err, assert(util.readfile(dir .. '/profile.folded'))
end

describe('perf_manual profile', function()
  for _, backend in ipairs({ 'bpf', 'perf' }) do
    it('finds the known call tree shares with the ' .. backend .. ' backend', function()
      if not h.need_root() then return end
      h.with_machine_lock(function()
        local pid, dir = start('burn', 20), tmpdir()
        local ok, e = pcall(function()
          local out, err, folded = profile(
            string.format('--pid %d --duration 3 --freq 299 --backend %s --format svg,folded', pid, backend), dir)
          local beta, n = share(folded, 'calltree', 'beta')
          assert.is_true(n >= 200, 'samples: ' .. n)
          assert.near(0.60, beta, 0.08)
          assert.near(0.60, share(folded, 'calltree', 'alpha'), 0.08)
          assert.near(0.30, share(folded, 'calltree', 'gamma_'), 0.08)
          assert.near(0.10, share(folded, 'calltree', 'delta'), 0.06)
          -- alpha calls beta: never beta without alpha above it
          assert.is_nil(folded:find(';main;beta', 1, true))
          assert.matches('top functions by inclusive samples', out)
          assert.matches('samples %d+, lost 0', out)
          if backend == 'perf' then
            assert.matches('without frame pointers[^\n]*libc%.so%.6', out)
            assert.matches('using perf record %-g', err)
            assert.matches('via perf record', out)
          else
            assert.matches('via BPF at 299 Hz', out)
            -- through glibc, which has no frame pointers: whole stacks from its CFI
            local root = tonumber(out:match('user stacks unwound %(%-%-unwind auto%)[^\n]* reach the root ([%d.]+)%%'))
            assert.is_true(root and root >= 95, out)
          end
          local svg = assert(util.readfile(dir .. '/profile.svg'))
          assert.matches('</svg>%s*$', svg)
          assert.matches('>beta', svg)
        end)
        reap(pid)
        os.execute("rm -rf '" .. dir .. "'")
        assert(ok, e)
      end)
    end)
  end

  it('gives the on-CPU share of a process, as /proc counts it, and says when its time goes elsewhere', function()
    if not h.need_root() then return end
    h.with_machine_lock(function()
      local function cpu_ticks(pid)
        local f = util.readfile('/proc/' .. pid .. '/stat')
        local rest = f:match('%) (.*)$')
        local fields = {}
        for x in rest:gmatch('%S+') do fields[#fields + 1] = x end
        return tonumber(fields[12]) + tonumber(fields[13]) -- utime, stime (fields 14 and 15)
      end
      local burner, blocker, dir = start('burn', 20), start('block', 20), tmpdir()
      local ok, e = pcall(function()
        sys.sleep(0.2)
        local t0, c0 = sys.now(), cpu_ticks(burner)
        local out = h.pm(string.format('profile --pid %d --duration 2 --json --format folded --output %s', burner, dir))
        local proc_share = (cpu_ticks(burner) - c0) / sys.info().clk_tck / (sys.now() - t0)
        local doc = assert(util.json_decode(out))
        assert.equal('pid', doc.target_kind)
        assert.near(proc_share, doc.on_cpu_share, 0.15)
        local text = h.pm(string.format('profile --pid %d --duration 2 --format folded --output %s', blocker, dir))
        assert.matches("these samples cover [%d.]+%% of the target's wall time %(its threads were on a CPU ", text)
        assert.matches('is off%-CPU: %-%-off%-cpu shows where it waits', text)
        local busy = h.pm(string.format('profile --pid %d --duration 1 --format folded --output %s', burner, dir))
        local covered = tonumber(busy:match("these samples cover (%d+)%% of the target's wall time"))
        assert.is_true(covered and covered >= 80, busy)
        assert.is_nil(busy:find('is off-CPU', 1, true))
      end)
      reap(burner); reap(blocker)
      os.execute("rm -rf '" .. dir .. "'")
      assert(ok, e)
    end)
  end)

  it('falls back to perf record by itself without BPF privileges, and says so', function()
    if not h.need_root('setpriv to an unprivileged user') then return end
    local paranoid = tonumber(util.readfile('/proc/sys/kernel/perf_event_paranoid') or '')
    if not paranoid or paranoid > 2 then
      pending('kernel.perf_event_paranoid > 2: unprivileged perf record cannot sample here')
      return
    end
    local nobody = 'setpriv --reuid=65534 --regid=65534 --clear-groups'
    -- the checkout may be out of nobody's reach: run a readable copy
    local copy, remove_copy = h.readable_copy({ 'calltree' })
    local pid = assert(sys.spawn({ 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
      copy .. '/build/workloads/calltree', 'burn', '20' }, { stdout = 'null', stderr = 'null' }))
    local dir = tmpdir()
    local ok, e = pcall(function()
      sys.sleep(0.1)
      local out, err, status = h.pm_at(copy,
        string.format('profile --pid %d --duration 2 --freq 299 --output %s', pid, dir), nobody)
      assert.equal(0, status, err)
      assert.matches('using perf record %-g %(BPF is not available: BPF needs root', err)
      assert.matches('via perf record %(fallback: BPF is not available', out)
      local folded = assert(util.readfile(dir .. '/profile.folded'))
      local beta, n = share(folded, 'calltree', 'beta')
      assert.is_true(n >= 100, 'samples: ' .. n)
      assert.near(0.60, beta, 0.12)
    end)
    reap(pid)
    os.execute("rm -rf '" .. dir .. "'")
    remove_copy()
    assert(ok, e)
  end)

  it('keeps naming the frames of a process that exits during the capture', function()
    if not h.need_root() then return end
    h.with_machine_lock(function()
      local dir = tmpdir()
      -- calltree starts after the capture and exits 1 s later, before the
      -- maps are read and symbolised
      local runner = assert(sys.spawn({ 'sh', '-c', 'sleep 0.5; exec ' .. h.workload('calltree') .. ' burn 1' },
        { stdout = 'null', stderr = 'null' }))
      local ok, e = pcall(function()
        local _, _, folded = profile('--all --duration 2.5', dir)
        local beta, n = share(folded, 'calltree', 'beta')
        assert.is_true(n >= 30, 'calltree samples: ' .. n)
        assert.near(0.60, beta, 0.15)
        -- names from maps read while it lived: with them lost, every frame
        -- would be [unknown]. A sample or two around its exec may not
        -- resolve (one did in a full run of the suite)
        local unknown = share(folded, 'calltree', '[unknown]')
        assert.is_true(unknown <= 0.05, string.format('%.0f%% of the samples have an [unknown] frame:\n%s',
          unknown * 100, folded))
      end)
      reap(runner)
      os.execute("rm -rf '" .. dir .. "'")
      assert(ok, e)
    end)
  end)

  it('profiles only the processes of a cgroup v2 with --cgroup, on both backends', function()
    if not h.need_root() then return end
    h.with_cgroup('pm_profile_test', function(cg)
      local inside = assert(sys.spawn({ h.workload('calltree'), 'burn', '20' },
        { join = cg .. '/cgroup.procs', stdout = 'null', stderr = 'null' }))
      local outside = assert(sys.spawn({ h.workload('cpu_burn'), '1', '20' }, { stdout = 'null', stderr = 'null' }))
      local dir = tmpdir()
      local ok, e = pcall(function()
        for _, backend in ipairs({ 'bpf', 'perf' }) do
          local _, _, folded = profile(string.format('--cgroup %s --duration 1.5 --backend %s', cg, backend), dir)
          local roots = {}
          for line in folded:gmatch('[^\n]+') do roots[line:match('^[^;]*')] = true end
          assert.same({ calltree = true }, roots, backend)
        end
      end)
      reap(inside) reap(outside)
      os.execute("rm -rf '" .. dir .. "'")
      assert(ok, e)
    end)
  end)

  it('profiles blocked time with --off-cpu in the function that sleeps', function()
    if not h.need_root() then return end
    local pid, dir = start('block', 20), tmpdir()
    local ok, e = pcall(function()
      local out, _, folded = profile(string.format('--pid %d --duration 2 --off-cpu --min-block 1ms', pid), dir)
      local snooze, total_us = share(folded, 'calltree', 'snooze')
      assert.near(1.0, snooze, 0.02)
      assert.near(2e6, total_us, 0.4e6)
      assert.near(1.0, share(folded, 'calltree', 'do_nanosleep_[k]'), 0.02)
      assert.matches('off%-CPU profile of pid %d+ %(calltree%)', out)
      assert.matches('\nblocked [%d.]+m?s: sleep 100%%\n', out)
      -- the program's own frame that called into glibc, not glibc's internals
      assert.matches('deep_sleep %-> __nanosleep', out)
    end)
    reap(pid)
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, e)
  end)

  it('writes an empty but valid flame graph when the target never ran', function()
    if not h.need_root() then return end
    local pid = assert(sys.spawn({ 'sleep', '30' }))
    local dir = tmpdir()
    local ok, e = pcall(function()
      local out = profile(string.format('--pid %d --duration 1 --json', pid), dir)
      local j = assert(util.json_decode(out))
      assert.equal(0, j.total)
      assert.equal(0, j.quality.samples)
      local svg = assert(util.readfile(dir .. '/profile.svg'))
      assert.matches('^<%?xml', svg)
      assert.matches('</svg>%s*$', svg)
    end)
    reap(pid)
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, e)
  end)

  it('rejects a process that does not exist and conflicting targets with exit 2', function()
    local _, err, status = h.pm('profile --pid 4194303 --duration 1 --output /tmp/pm-none')
    assert.equal(2, status)
    assert.equal('perf_manual: profile: no process 4194303\n', err)
    _, err, status = h.pm('profile --pid 1 --all --duration 1')
    assert.equal(2, status)
    assert.equal('perf_manual: profile: give one of --pid, --cgroup, --target, --all\n', err)
    _, err, status = h.pm('profile --cgroup no/such/group --duration 1')
    assert.equal(2, status)
    assert.matches('^perf_manual: profile: no cgroup no/such/group', err)
    if sys.geteuid() == 0 then
      -- as an unprivileged user, another user's process cannot be read
      local copy, remove_copy = h.readable_copy()
      _, err, status = h.pm_at(copy, 'profile --pid 1 --duration 1 --output /tmp/pm-none',
        'setpriv --reuid=65534 --regid=65534 --clear-groups')
      remove_copy()
      assert.equal(2, status)
      assert.equal('perf_manual: profile: cannot read the mappings of process 1: /proc/1/maps: Permission denied'
        .. ' (run it as root or as the process owner)\n', err)
    end
    _, err, status = h.pm('profile --format png --duration 1')
    assert.equal(2, status)
    assert.matches("unknown %-%-format 'png'", err)
  end)
end)
