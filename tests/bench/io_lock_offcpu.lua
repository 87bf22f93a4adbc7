-- What the lock, offcpu and io tracers add to the events they trace, against
-- bpftrace doing the same job in the same run (medians of REPS runs):
--   lock:   ns added per futex wait (futex_loop: FUTEX_WAIT that returns EAGAIN)
--   offcpu: ns added per blocking round trip (pingpong: 2 threads, 1 CPU)
--   io:     BPF run time per block request (fsync_writer), from BPF stats
-- Run: tests/bench/run.sh io_lock_offcpu   (root; takes ~30 s)
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root
local REPS = tonumber(os.getenv('REPS') or '') or 3
local FUTEX_CALLS, ROUNDS = 1000000, 100000

if sys.geteuid() ~= 0 then print('io_lock_offcpu: needs root (BPF); skipped') return end

package.path = root .. '/tests/?.lua;' .. package.path
local median = require('bench.common').median

local function run(cmd, pattern)
  local p = assert(io.popen(cmd))
  local out = p:read('*a')
  p:close()
  return assert(tonumber(out:match(pattern)), cmd .. ': ' .. out)
end

-- bpftrace in the background; returns a stop function once it has attached
local function bpftrace(script)
  local log = os.tmpname()
  local sf = os.tmpname()
  local f = assert(io.open(sf, 'w')); f:write(script); f:close()
  local pid = sys.spawn({ 'bpftrace', sf }, { stdout = log, stderr = log })
  for _ = 1, 300 do
    local l = io.open(log):read('*a')
    if l:match('Attaching') then break end
    sys.sleep(0.02)
  end
  sys.sleep(0.3) -- probes attach after the banner
  return function()
    sys.kill(pid, 2)
    sys.wait(pid)
    os.remove(log); os.remove(sf)
  end
end

local function measure(label, cmd, pattern, tracers)
  local res = {}
  for name in pairs(tracers) do res[name] = {} end
  res.untraced = {}
  for _ = 1, REPS do
    res.untraced[#res.untraced + 1] = run(cmd, pattern)
    for name, start in pairs(tracers) do
      local stop = start()
      res[name][#res[name] + 1] = run(cmd, pattern)
      stop()
    end
  end
  local base = median(res.untraced)
  print(string.format('%s: untraced %.0f ns', label, base))
  local names = {}
  for name in pairs(tracers) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local m = median(res[name])
    print(string.format('  %-34s %8.0f ns  (+%.0f ns)', name, m, m - base))
  end
end

local lock = require('perf_manual.tracers.lock')
local off = require('perf_manual.tracers.offcpu')
local io_t = require('perf_manual.tracers.io')

-- run time accounting off: it costs more than the programs (base.lua)
local function ours(mod, opts)
  opts.stats = false
  return function()
    local t = assert(mod.start(opts))
    return function() t:stop() end
  end
end

measure('lock: per futex wait (futex_loop ' .. FUTEX_CALLS .. ')',
  root .. '/build/workloads/futex_loop ' .. FUTEX_CALLS, '([%d.]+) ns/call', {
    ['perf_manual lock'] = ours(lock, {}),
    ['perf_manual lock, user stacks'] = ours(lock, { stacks = true }),
    ['bpftrace futex latency hist'] = function()
      return bpftrace([[
tracepoint:syscalls:sys_enter_futex { @s[tid] = nsecs; }
tracepoint:syscalls:sys_exit_futex /@s[tid]/ { @h[args->ret] = hist(nsecs - @s[tid]); delete(@s[tid]); }
]])
    end,
  })

measure('offcpu: per blocking round trip (pingpong ' .. ROUNDS .. ', one CPU)',
  'taskset -c 0 ' .. root .. '/build/workloads/pingpong ' .. ROUNDS, '([%d.]+) ns/round', {
    ['perf_manual offcpu'] = ours(off, { min_us = 1 }),
    ['bpftrace offcpu (k+u stacks)'] = function()
      return bpftrace([[
tracepoint:sched:sched_switch {
  if (args->prev_state != 0) {
    @s[args->prev_pid] = nsecs; @k[args->prev_pid] = kstack; @u[args->prev_pid] = ustack;
  }
  $t = @s[args->next_pid];
  if ($t) {
    @[@k[args->next_pid], @u[args->next_pid], args->next_comm] = sum((nsecs - $t) / 1000);
    delete(@s[args->next_pid]);
  }
}
]])
    end,
  })

-- io: the tracer's own measurement of its BPF cost per request
do
  local per = {}
  for _ = 1, REPS do
    local t = assert(io_t.start {})   -- stats sampled all along: no tick
    local pid = sys.spawn({ root .. '/build/workloads/fsync_writer', '1', '/var/tmp' })
    sys.wait(pid)
    local r = t:stop()
    local q = r.quality
    per[#per + 1] = q.bpf_run_time_ns / q.events_seen   -- 3-4 program runs per request
  end
  print(string.format('io: BPF run time per block request (fsync_writer 1 s): %.0f ns (median of %d)',
    median(per), REPS))
end
