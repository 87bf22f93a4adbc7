-- use-check on a process that waits: nothing is saturated, and the verdict
-- must say what the target waits on — its feeder by pid, over a pipe and over
-- loopback TCP — with the share of its wall time; a process that only sleeps
-- (the idle control) waits on nothing. Ground truth: the workload's own
-- construction (the feeder writes every 40 ms, the reader backs off 10 ms
-- after each byte: 75% on the peer, 25% asleep), the feeder pid it writes,
-- and /proc/PID/schedstat for the time on a CPU.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

local U = require('e2e.use')

local function use_check(pid) return U.check(pid, 3) end

local function run_ns(pid)
  return tonumber((util.readfile('/proc/' .. pid .. '/schedstat') or ''):match('^(%d+)'))
end

describe('use-check on a process that waits on a peer', function()
  for _, mode in ipairs({ 'pipe', 'tcp' }) do
    it('names the feeder over ' .. mode .. ' and its share of the wall time', function()
      if not h.need_root('thread-state accounting loads BPF') then return end
      h.with_machine_lock(function()
        local pidfile = os.tmpname()
        W.with('wait_peer', { mode, 30, pidfile }, {}, function(w)
          sys.sleep(0.5)
          local peer = assert(tonumber(util.readfile(pidfile)), 'no feeder pid')
          local t0, c0 = sys.now(), run_ns(w.pid)
          local d = use_check(w.pid)
          local oncpu = (run_ns(w.pid) - c0) / ((sys.now() - t0) * 1e9) * 100
          assert.is_nil(d.verdict.resource, d.verdict.text)
          local wo = d.verdict.waits_on
          assert.is_table(wo, d.verdict.text)
          assert.equal(mode == 'pipe' and 'ipc' or 'net', wo.reason)
          assert.matches('pid ' .. peer .. ' ', wo.text)
          if mode == 'tcp' then assert.matches('^tcp 127%.0%.0%.1:%d+', wo.text) end
          assert.is_true(math.abs(wo.share - 75) <= 5, string.format('%.1f%% on the peer, built as 75%%', wo.share))
          assert.matches('sleep 2%d%%', wo.text)
          -- the culprits block names the same peer
          local lines = table.concat(d.culprits and d.culprits.lines or {}, '\n')
          assert.matches('top wait: [^\n]*pid ' .. peer .. ' ', lines)
          -- the thread states agree with schedstat on the time on a CPU
          local th = d.measures.tsa.threads[1]
          assert.equal(w.pid, th.tid)
          assert.is_true(math.abs(th.shares.cpu - oncpu) <= 2, string.format('tsa %.1f%% vs schedstat %.1f%% on CPU',
            th.shares.cpu, oncpu))
          local sum = 0
          for _, v in pairs(th.shares) do sum = sum + v end
          assert.is_true(math.abs(sum - 100) <= 2, 'states sum to ' .. sum)
        end)
        os.remove(pidfile)
      end)
    end)
  end

  it('finds nothing a plain sleep waits on (the idle control)', function()
    if not h.need_root('thread-state accounting loads BPF') then return end
    h.with_machine_lock(function()
      W.with('sleeper', { 30 }, {}, function(w)
        local d = use_check(w.pid)
        assert.is_nil(d.verdict.resource, d.verdict.text)
        assert.is_nil(d.verdict.waits_on, d.verdict.text)
        -- (a busy machine may add "worth a look: CPU": the machine's, not the sleeper's)
        assert.matches('^no resource saturated', d.verdict.text)
        assert.is_true(d.measures.tsa.total.shares.sleep > 90, 'sleep ' .. d.measures.tsa.total.shares.sleep)
      end)
    end)
  end)
end)

describe('use-check culprits', function()
  it('names the convoy\'s lock by the symbol nm gives its address', function()
    if not h.need_root('the lock tracer and thread-state accounting load BPF') then return end
    local bin = h.root .. '/build/workloads/lock_convoy'
    local nm = io.popen('nm ' .. bin):read('*a')
    assert.matches('%x+ [bB] g_lock\n', nm)
    local gate = os.tmpname()
    os.remove(gate)
    h.with_machine_lock(function()
      W.with('lock_convoy', { '4', '30', gate, '1' }, {}, function(w)
        assert(io.open(gate, 'w')):close()
        sys.sleep(0.3)
        local d = use_check(w.pid)
        local lines = table.concat(d.culprits and d.culprits.lines or {}, '\n')
        assert.matches('top wait: lock g_lock %(0x%x+, [^\n]*lock_convoy %.bss%)', lines)
        assert.matches('hottest thread: thread %d+', lines)
      end)
    end)
    os.remove(gate)
  end)
end)
