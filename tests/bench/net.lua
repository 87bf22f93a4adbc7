-- Benchmark of the net tracer against bpftrace doing the same aggregation on
-- the same tracepoints, in the same run, on the same workload: tcp_churn's
-- client making CONNS loopback connections (connect, 100 bytes each way,
-- close) to its server. Rounds alternate untraced / ours / bpftrace; the
-- figures are medians:
--   1. wall time per connection, and what each tracer adds to it;
--   2. kernel-side cost per program run (BPF_ENABLE_STATS on during the
--      traced rounds: run_time_ns / run_cnt of each tool's programs).
-- Run: tests/bench/run.sh net   (takes the machine lock), or
--      flock /tmp/perf_manual-machine.lock bin/perf_manual --lua tests/bench/net.lua
-- Env: PM_BENCH_ROUNDS (default 5), PM_BENCH_CONNS (default 5000).
local sys = require('perf_manual._c.sys')
local bpf = require('perf_manual.bpf')
local util = require('perf_manual.util')
local root = require('perf_manual._host').root
local net = require('perf_manual.tracers.net')

if sys.geteuid() ~= 0 then
  io.stderr:write('bench net: needs root (BPF)\n')
  os.exit(2)
end

package.path = root .. '/tests/?.lua;' .. package.path
local common = require('bench.common')
local median = common.median

local ROUNDS = tonumber(os.getenv('PM_BENCH_ROUNDS')) or 5
local CONNS = tonumber(os.getenv('PM_BENCH_CONNS')) or 5000
local CHURN = root .. '/build/workloads/tcp_churn'
local PORT = 18199
local have_bpftrace = os.execute('command -v bpftrace >/dev/null 2>&1') == 0

-- what `trace --events net` aggregates, written for bpftrace: lifecycle
-- with the owner at connect, connect latency histogram, bytes at close,
-- retransmits and resets per socket and ports (bpftrace 0.17 takes no
-- address array as a map key), drops per reason
local BT = [==[
tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {
  if (args->newstate == 2) { @start[args->skaddr] = nsecs; @owner[args->skaddr] = pid; }
  if (args->newstate == 1 && args->oldstate == 2 && @start[args->skaddr]) {
    @connect_us = hist((nsecs - @start[args->skaddr]) / 1000); @connects[@owner[args->skaddr]] = count(); }
  if (args->newstate == 1 && args->oldstate == 3) { @accepts = count(); @start[args->skaddr] = nsecs; }
  if (args->newstate == 7) {
    if (@start[args->skaddr]) {
      @closes[@owner[args->skaddr]] = count();
      @tx[@owner[args->skaddr]] = sum(((struct tcp_sock *)args->skaddr)->bytes_acked);
      @rx[@owner[args->skaddr]] = sum(((struct tcp_sock *)args->skaddr)->bytes_received);
    }
    delete(@start[args->skaddr]); delete(@owner[args->skaddr]);
  }
}
tracepoint:tcp:tcp_retransmit_skb { @retrans[args->skaddr, args->sport, args->dport] = count(); }
tracepoint:tcp:tcp_send_reset { @rst_sent[args->skaddr] = count(); }
tracepoint:tcp:tcp_receive_reset { @rst_recv[args->skaddr, args->sport, args->dport] = count(); }
tracepoint:skb:kfree_skb { @drops[args->reason] = count(); }
]==]

-- Each round runs in a network namespace of its own: the client closes
-- first, so every round leaves CONNS sockets in TIME_WAIT, and a later
-- round's port search would pay for the earlier ones'.
local NS = 'pmbench' .. sys.getpid()
local function client_round()
  assert(os.execute('ip netns add ' .. NS .. ' && ip -n ' .. NS .. ' link set lo up') == 0, 'cannot make ' .. NS)
  local srv = assert(sys.spawn({ 'ip', 'netns', 'exec', NS, CHURN, 'server', tostring(PORT), '100' },
    { stdout = 'null' }))
  sys.sleep(0.2)
  local out = os.tmpname()
  local t0 = sys.now()
  local pid = assert(sys.spawn({ 'ip', 'netns', 'exec', NS, CHURN, 'client', '127.0.0.1', tostring(PORT),
    tostring(CONNS), '100' }, { stdout = out }))
  sys.wait(pid)
  local s = sys.now() - t0
  sys.kill(srv, 15)
  sys.wait(srv)
  os.execute('ip netns del ' .. NS)
  local text = util.readfile(out) or ''
  os.remove(out)
  assert(text:match('^ok ' .. CONNS .. ' '), 'client failed: ' .. text)
  return s / CONNS * 1e6
end

-- run time and count of one process's BPF programs, from the fdinfo of
-- its program fds (what bpftool shows, without depending on it)
local function prog_stats(pid)
  local ns, cnt = 0, 0
  local dir = '/proc/' .. pid .. '/fdinfo'
  for _, fd in ipairs(require('posix.dirent').dir(dir) or {}) do
    local info = fd:match('^%d+$') and util.readfile(dir .. '/' .. fd) or ''
    if info:match('prog_type:') then
      ns = ns + (tonumber(info:match('run_time_ns:%s*(%d+)')) or 0)
      cnt = cnt + (tonumber(info:match('run_cnt:%s*(%d+)')) or 0)
    end
  end
  return ns, cnt
end

local function round_ours()
  local t = assert(net.start { stats = false })
  bpf.stats_enable(true)
  local i0 = t.obj:info()
  local us = client_round()
  t:drain()
  local i1 = t.obj:info()
  bpf.stats_enable(false)
  local r = t:stop()
  -- the server's accepts and the client's connects were all seen
  assert(r.total.connects >= CONNS and r.total.accepts >= CONNS, 'ours missed connections')
  return us, (i1.run_time_ns or 0) - (i0.run_time_ns or 0), (i1.run_cnt or 0) - (i0.run_cnt or 0)
end

local function round_bpftrace()
  local btout = os.tmpname()
  local bt = assert(sys.spawn({ 'bpftrace', '-e', BT }, { stdout = btout, stderr = 'null' }))
  local t0 = sys.now()
  while not (util.readfile(btout) or ''):match('Attaching') and sys.now() - t0 < 60 do sys.sleep(0.01) end
  sys.sleep(0.5) -- bpftrace prints "Attaching" before it attaches
  bpf.stats_enable(true)
  local ns0, c0 = prog_stats(bt)
  local us = client_round()
  local ns1, c1 = prog_stats(bt)
  bpf.stats_enable(false)
  sys.kill(bt, 2)
  sys.wait(bt)
  local text = util.readfile(btout) or ''
  os.remove(btout)
  assert(text:match('@connects'), 'bpftrace printed no connects')
  return us, ns1 - ns0, c1 - c0
end

local ok, err = pcall(function()
  client_round() -- warm up
  local base, ours, bt = {}, {}, {}
  local ours_ns, ours_runs, bt_ns, bt_runs = {}, {}, {}, {}
  for r = 1, ROUNDS do
    base[r] = client_round()
    local us, ns, runs = round_ours()
    ours[r], ours_ns[r], ours_runs[r] = us, ns, runs
    if have_bpftrace then
      us, ns, runs = round_bpftrace()
      bt[r], bt_ns[r], bt_runs[r] = us, ns, runs
    end
  end
  local function per_run(ns, runs)
    local v = {}
    for i = 1, #ns do if runs[i] > 0 then v[#v + 1] = ns[i] / runs[i] end end
    return #v > 0 and median(v) or nil
  end
  local function list(xs) local t = {} for i, x in ipairs(xs) do t[i] = string.format('%.1f', x) end return table.concat(t, ' ') end
  if os.getenv('PM_BENCH_VERBOSE') then
    print('rounds (us/conn): untraced ' .. list(base) .. ' | ours ' .. list(ours) .. ' | bpftrace ' .. list(bt))
  end
  local mb, mo = median(base), median(ours)
  print(string.format('net bench: %d rounds of %d loopback connections (connect, 100 B each way, close)',
    ROUNDS, CONNS))
  print(string.format('  untraced          %8.1f us/conn', mb))
  print(string.format('  perf_manual net   %8.1f us/conn  (%+.1f us/conn, %+.1f%%)  bpf %.0f ns/run, %.1f runs/conn',
    mo, mo - mb, (mo - mb) / mb * 100, per_run(ours_ns, ours_runs) or 0, median(ours_runs) / CONNS))
  if have_bpftrace then
    local mt = median(bt)
    print(string.format('  bpftrace          %8.1f us/conn  (%+.1f us/conn, %+.1f%%)  bpf %.0f ns/run, %.1f runs/conn',
      mt, mt - mb, (mt - mb) / mb * 100, per_run(bt_ns, bt_runs) or 0, median(bt_runs) / CONNS))
    if mt - mb > 0 then
      print(string.format('  ratio (added cost, ours / bpftrace): %.2f', (mo - mb) / (mt - mb)))
    else
      print('  ratio: bpftrace added nothing measurable (noise larger than its cost)')
    end
    print(string.format('  ratio (bpf ns/run, ours / bpftrace): %.2f',
      (per_run(ours_ns, ours_runs) or 0) / math.max(per_run(bt_ns, bt_runs) or 0, 1e-9)))
  else
    print('  bpftrace: not installed, no comparison')
  end
end)
os.execute('ip netns del ' .. NS .. ' 2>/dev/null')
bpf.stats_enable(false)
if not ok then error(err, 0) end
