-- investigate end to end, live, in batch mode: it launches each workload
-- itself (--workload accepts a command), must name the resource it
-- saturates and take the matching drill-down, and leave a folder that
-- passes the schema check. Root: the drill-downs load BPF programs.
local h = test_helpers
local W = require('e2e.workload')
local store = require('perf_manual.store')
local investigation = require('perf_manual.investigation')
local util = require('perf_manual.util')

local function investigate(command, root)
  local out, err, st = h.pm(string.format('investigate --workload "%s" --symptom "it is slow" --batch '
    .. '--duration 2 --store %s',
    command, root))
  assert.equal(0, st, 'investigate failed:\n' .. out .. err)
  local id = store.list(root)[1]
  local meta = assert(store.open(root, id):load_metadata())
  return meta, root .. '/' .. id, out, err
end

local function has_artifact(meta, path)
  for _, a in ipairs(meta.artifacts) do if a.path == path then return a end end
end

local function explain(meta)
  local lines = { 'verdict: ' .. tostring(meta.verdict) }
  for _, f in ipairs(meta.findings) do lines[#lines + 1] = '  ' .. f.severity .. ' ' .. f.summary end
  return table.concat(lines, '\n')
end

local CASES = {
  -- one thread spinning on the otherwise idle 2-CPU machine: CPU-bound all the same
  { workload = 'cpu_burn', args = '1 30', verdict = 'cpu', drill = { 'raw_data/profile-cpu.json', 'raw_data/tsa.json' },
    supported = 'CPU%-bound', title = 'a single hot thread',
    culprit = 'burn holds %d+%% of on%-CPU samples %(hot path [^)]*main > burn%)' },
  -- blocked 75% on a pipe from its feeder child, asleep 25%: nothing saturated
  { workload = 'wait_peer', args = 'pipe 30 PIDFILE', verdict = 'wait',
    drill = { 'raw_data/tsa.json', 'raw_data/profile-offcpu.json' }, supported = 'blocked: it waits on',
    bottleneck = 'waits on .*pid PEER', title = 'a process waiting on its peer over a pipe',
    culprit = 'waits on pid PEER %([^)]*%) via pipe' },
  { workload = 'wait_peer', args = 'tcp 30 PIDFILE', verdict = 'wait',
    drill = { 'raw_data/tsa.json', 'raw_data/profile-offcpu.json' }, supported = 'blocked: it waits on',
    bottleneck = 'waits on .*127%.0%.0%.1:%d+.*pid PEER', title = 'a process waiting on its peer over loopback TCP' },
  { workload = 'cpu_burn', args = '4 30', verdict = 'cpu', drill = { 'raw_data/profile-cpu.json',
    'raw_data/profile-cpu.folded' },
    supported = 'CPU%-bound' },
  { workload = 'fsync_writer', args = '30 SCRATCH', verdict = 'disk', drill = { 'raw_data/trace-io.json',
    'raw_data/trace-syscall.json' },
    supported = 'disk I/O',
    -- the files it syncs, by path, and the device
    culprit = 'wait in fsync of SCRATCH/fsync_writer%.%d+%.%d .* on [%w-]+ %d+%% of their time' },
  { workload = 'mutex_contention', args = '8 30', verdict = 'lock', drill = { 'raw_data/trace-lock.json',
    'raw_data/profile-offcpu.json' },
    supported = 'lock contention',
    -- the lock by its symbol, the waiters, and where it is held from
    culprit = '8 threads queue on lock %(mutex_contention %.bss%), %d+%% of their time waiting, [%d.]+ waiters '
      .. 'on average, held from worker' },
}

describe('investigate end to end', function()
  teardown(function() W.cleanup_scratch() end)

  for _, c in ipairs(CASES) do
    it(string.format('names %s for %s and drills down accordingly', c.verdict, c.title or c.workload), function()
      if not h.need_root('the drill-downs load BPF tracers and profilers') then return end
      h.with_machine_lock(function()
        local root = os.tmpname(); os.remove(root)
        local pidfile = os.tmpname()
        local cmd = h.workload(c.workload) .. ' ' .. c.args:gsub('SCRATCH', W.scratch()):gsub('PIDFILE', pidfile)
        local ok, err = pcall(function()
          local meta, dir, out, stderr = investigate(cmd, root)
          assert.equal(c.verdict, meta.verdict, explain(meta) .. '\n' .. out)
          -- the drill-down says what it found on the console
          assert.matches('drill%-down for ' .. c.verdict .. ':\n  %S', out)
          local peer = tonumber(util.readfile(pidfile) or '')
          if c.bottleneck then
            assert(peer, 'no feeder pid')
            assert.matches('Bottleneck: ' .. c.bottleneck:gsub('PEER', tostring(peer)), out)
          end
          if c.culprit then
            -- the root cause names the culprit, not only the resource
            local scratch = W.scratch():gsub('%p', '%%%0')
            local want = c.culprit:gsub('PEER', tostring(peer)):gsub('SCRATCH', function() return scratch end)
            assert.matches('\nRoot cause: [^\n]*' .. want, out)
            assert.matches(want, meta.root_cause)
          end
          for _, p in ipairs(c.drill) do assert.truthy(has_artifact(meta, p), p .. ' missing\n' .. out .. stderr) end
          local best
          for _, x in ipairs(meta.hypotheses) do if x.text:match(c.supported) then best = x end end
          assert.equal('supported', best.status)
          assert.equal('complete', meta.status)
          assert.same({}, investigation.validate(dir))
          -- it launched the workload itself, and stopped it at the end
          local pid
          for _, e in ipairs(meta.timeline) do
            pid = pid or tonumber(tostring(e.what):match('^launched .* as pid (%d+)$'))
          end
          assert.is_number(pid)
          assert.is_nil(io.open('/proc/' .. pid .. '/stat'))
        end)
        os.execute('rm -rf ' .. root)
        os.remove(pidfile)
        if not ok then error(err, 0) end
      end)
    end)
  end

  it('finds no bottleneck in an idle control, and supports no hypothesis', function()
    if not h.need_root('the thread-state step loads BPF') then return end
    h.with_machine_lock(function()
      local root = os.tmpname(); os.remove(root)
      local ok, err = pcall(function()
        local meta, dir, out = investigate(h.workload('sleeper') .. ' 30', root)
        assert.is_nil(meta.verdict, explain(meta))
        assert.matches('Bottleneck: none found', out)
        for _, x in ipairs(meta.hypotheses) do assert.are_not.equal('supported', x.status, x.text) end
        assert.same({}, investigation.validate(dir))
      end)
      os.execute('rm -rf ' .. root)
      if not ok then error(err, 0) end
    end)
  end)

  it('names the CPU quota of a throttled process as its bottleneck', function()
    if not h.need_root('cpu cgroups') then return end
    local Q = require('e2e.cpu_quota')
    h.with_machine_lock(function()
      local cg = Q.make(0.25)
      local root = os.tmpname(); os.remove(root)
      local ok, err = xpcall(function()
        W.with('hot_thread', { 1, 1, 60 }, { join = cg }, function(w)
          local meta, _, out = investigate(tostring(w.pid), root)
          assert.equal('cpu', meta.verdict, explain(meta) .. '\n' .. out)
          assert.matches("quota of 0%.25 CPU throttled it", out)
          io.stderr:write('\n[investigate quota] ' .. tostring(meta.root_cause) .. '\n')
          -- the root cause names the cgroup and its quota
          assert.matches(cg.dir:gsub('%p', '%%%0'), meta.root_cause)
          assert.matches('0%.25 CPU', meta.root_cause)
          local best
          for _, x in ipairs(meta.hypotheses) do if x.text:match('CPU%-bound') then best = x end end
          assert.equal('supported', best.status)
          assert.matches('drill%-down for cpu:\n  %S', out)
        end)
      end, debug.traceback)
      os.execute('rm -rf ' .. root)
      assert(Q.remove(cg), 'cannot remove cgroup ' .. cg.dir)
      assert(ok, err)
    end)
  end)

  it('names the memory cgroup, its limit and what the workload needs when it thrashes the page cache', function()
    if not h.need_root('memory cgroups') then return end
    if not W.memory_hierarchy() then return pending('no memory cgroup hierarchy') end
    h.with_machine_lock(function()
      local root = os.tmpname(); os.remove(root)
      local ok, err = xpcall(function()
        -- 40 MiB of anonymous memory and a 96 MiB file read again and again, in 64 MiB
        W.with('mem_pressure', { 60, W.scratch(), 96, 40 }, { memory_limit = 64 * 2 ^ 20 }, function(w)
          assert(W.wait_until(function() return (W.io(w.pid, 'rchar') or 0) > 128 * 2 ^ 20 end, 20),
            'mem_pressure did not start re-reading its file')
          local meta, _, out = investigate(tostring(w.pid), root)
          assert.equal('memory', meta.verdict, explain(meta) .. '\n' .. out)
          io.stderr:write('\n[investigate memory] ' .. tostring(meta.root_cause) .. '\n')
          local cg = w.cgroup.dir:gsub('%p', '%%%0')
          assert.matches('\nRoot cause: [^\n]*' .. cg, out)
          assert.matches(cg, meta.root_cause)
          assert.matches('at its 64 MiB limit', meta.root_cause)
          -- it holds 40 MiB of anon and re-reads a 96 MiB file: about 136 MiB
          local need = tonumber(meta.root_cause:match('needs about (%d+) MiB'))
          assert.is_true(need and need > 120 and need < 200, meta.root_cause)
        end)
      end, debug.traceback)
      os.execute('rm -rf ' .. root)
      assert(ok, err)
    end)
  end)
end)
