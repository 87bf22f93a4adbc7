-- false-sharing: can this machine show cache-line false sharing, and what
-- does it cost here? Locating it in a program needs memory-access sampling
-- (perf c2c: Intel PEBS load latency or AMD IBS); the runbook says whether
-- the machine has it. Then it measures the cost the way seed 002's project
-- does: the same threads adding to their own counters, packed in one cache
-- line or each on its own, alternated over rounds and compared with diff's
-- statistics (Mann-Whitney test, bootstrap CI of the median's change).
local stats = require('perf_manual.analyzers.stats')
local util = require('perf_manual.util')

-- what perf c2c needs, from the kernel's list of PMUs
local function c2c_support()
  local dirent = require('posix.dirent')
  local ok, pmus = pcall(dirent.dir, '/sys/bus/event_source/devices')
  local have = {}
  for _, n in ipairs(ok and pmus or {}) do have[n] = true end
  if have.ibs_op then return true, 'AMD IBS (ibs_op)' end
  if util.readfile('/sys/bus/event_source/devices/cpu/events/mem-loads') then
    return true, 'Intel load-latency sampling (cpu/mem-loads)'
  end
  if not have.cpu and not have.cpu_core and not have.cpu_atom then
    return false, 'no CPU PMU at all (/sys/bus/event_source/devices has no cpu: a VM without PMU passthrough)'
  end
  return false, 'the CPU PMU has no memory-access sampling (no cpu/mem-loads, no ibs_op)'
end

local function run_once(bin, mode, threads, iterations)
  local f = assert(io.popen(string.format("'%s' %s %d %d 2>&1", bin, mode, threads, iterations)))
  local out = f:read('*a')
  f:close()
  local el, cpu = out:match('elapsed_s ([%d.]+) cpu_s ([%d.]+)')
  if not el then return nil, out end
  return { wall_ns = tonumber(el) / iterations * 1e9, cpu_ns = tonumber(cpu) / iterations / threads * 1e9,
    parallel = tonumber(cpu) / tonumber(el) }
end

return playbook {
  name = 'false-sharing',
  topic = 'cpu',
  summary = 'Whether this machine can locate false sharing (perf c2c), and its cost here: packed vs padded counters',
  examples = '  perf_manual false-sharing\n'
    .. '  perf_manual false-sharing --threads 4 --rounds 9 --json',
  params = {
    threads = param.integer { 'threads adding (default: the CPU count, at least 2)', optional = true, min = 2,
      max = 64 },
    iterations = param.integer { 'adds per thread per run', default = 200000000, min = 1000, max = 1e10 },
    rounds = param.integer { 'runs of each layout, alternated', default = 5, min = 2, max = 1000 },
    json = param.flag { 'print the result as one JSON document' },
    save = param.path { 'also write DIR/false-sharing.json (every run), for --replay', optional = true },
    replay = param.path { 'judge the runs in DIR/false-sharing.json again', optional = true },
  },

  step 'can perf c2c run here' {
    function(inv, p)
      if p.replay then
        local rec, why = require('perf_manual.verbs.common').recorded(inv, 'false-sharing.json')
        if not rec then inv:fail('false-sharing: ' .. why) end
        inv.rec = rec
      end
      local ok, what
      if inv.rec then ok, what = inv.rec.c2c.available, inv.rec.c2c.why else ok, what = c2c_support() end
      inv.c2c = { available = ok, why = what }
      if p.json then return end
      if ok then
        inv:printf('perf c2c can sample memory accesses here (%s): to locate false sharing in a process,\n'
          .. '  perf c2c record -p PID -- sleep 10 && perf c2c report --stdio   (the cache lines with HITM)\n', what)
      else
        inv:printf('perf c2c cannot run here: %s.\nFalse sharing in a process cannot be located by address on '
          .. 'this machine; below, its cost measured with our own threads.\n', what)
      end
    end,
  },

  step 'packed against padded counters' {
    function(inv, p)
      local threads, runs = p.threads, { packed = {}, padded = {} }
      if inv.rec then
        threads, runs = inv.rec.threads, inv.rec.runs
        p.iterations = inv.rec.iterations
      else
        inv:check_output(p.save, 'dir', '--save')
        local bin = require('perf_manual._host').root .. '/build/workloads/false_sharing'
        if not require('posix.sys.stat').stat(bin) then
          inv:fail('false-sharing: ' .. bin .. ' is missing (make workloads builds it)')
        end
        threads = threads or math.max(2, require('perf_manual.sys').info().ncpu)
        for i = 1, p.rounds do
          for _, mode in ipairs(i % 2 == 1 and { 'packed', 'padded' } or { 'padded', 'packed' }) do
            local r, err = run_once(bin, mode, threads, p.iterations)
            if not r then inv:fail('false-sharing: the workload failed: ' .. tostring(err)) end
            runs[mode][#runs[mode] + 1] = r
          end
          if require('perf_manual.sys').stop_requested() then break end
        end
        if p.save then
          inv:save_file(inv:mkdir(p.save) .. '/false-sharing.json', { c2c = inv.c2c, threads = threads,
            iterations = p.iterations, runs = runs })
        end
      end
      local function col(mode, key)
        local out = {}
        for i, r in ipairs(runs[mode]) do out[i] = r[key] end
        return out
      end
      local wall = stats.compare(col('padded', 'wall_ns'), col('packed', 'wall_ns'), { seed = 1 })
      local cpu = stats.compare(col('padded', 'cpu_ns'), col('packed', 'cpu_ns'), { seed = 1 })
      local par = stats.median(col('padded', 'parallel'))
      local res = { c2c = inv.c2c, threads = threads, iterations = p.iterations, rounds = #runs.packed,
        packed = { wall_ns = stats.median(col('packed', 'wall_ns')), cpu_ns = stats.median(col('packed', 'cpu_ns')) },
        padded = { wall_ns = stats.median(col('padded', 'wall_ns')), cpu_ns = stats.median(col('padded', 'cpu_ns')),
          parallel = par },
        wall = { verdict = wall.verdict, p = wall.p, ci = wall.ci and wall.ci.median },
        cpu = { verdict = cpu.verdict, p = cpu.p, ci = cpu.ci and cpu.ci.median } }
      res.slowdown = res.padded.wall_ns > 0 and res.packed.wall_ns / res.padded.wall_ns or nil
      -- threads that do not run at the same time do not fight over a line
      if par < 1.3 then
        res.verdict = string.format('not measurable here: the %d threads ran in parallel only %.2fx (CPU time over '
          .. 'wall time), so they seldom touched the line at the same time', threads, par)
      elseif wall.significant and wall.ci and wall.ci.median.rel and wall.ci.median.rel > 0 then
        local m = wall.ci.median
        res.verdict = string.format('false sharing costs %.2fx per add here: %.2f ns packed against %.2f padded '
          .. '(median %+.0f%%, 95%% CI %+.0f%% .. %+.0f%%)', res.slowdown, res.packed.wall_ns, res.padded.wall_ns,
          m.rel * 100, m.rel_lo * 100, m.rel_hi * 100)
      else
        res.verdict = string.format('no significant cost measured (%s): packed %.2f ns, padded %.2f ns per add',
          wall.verdict, res.packed.wall_ns, res.padded.wall_ns)
      end
      if p.json then
        inv:json(res)
        return
      end
      inv:printf('\n%d threads, %d adds each, %d rounds of each layout (medians):\n', threads, p.iterations,
        res.rounds)
      inv:printf('  packed (one cache line)   %6.2f ns per add, %6.2f ns of CPU\n', res.packed.wall_ns,
        res.packed.cpu_ns)
      inv:printf('  padded (a line each)      %6.2f ns per add, %6.2f ns of CPU; threads in parallel %.2fx\n',
        res.padded.wall_ns, res.padded.cpu_ns, par)
      inv:printf('  wall: %s\n  CPU:  %s\n', wall.verdict, cpu.verdict)
      inv:print('verdict: ' .. res.verdict)
    end,
  },
}
