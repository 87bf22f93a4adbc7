-- `perf_manual top` driven for real: the live screen in a tmux pane (keys
-- sent with send-keys, the screen read with capture-pane) on a cpu_burn
-- workload, and batch mode on a pipe. Ground truth: procps top's %CPU for
-- the same process in the same window, and the kernel's own run-queue
-- accounting (/proc/PID/task/TID/schedstat).
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

local function have(tool) return select(3, h.sh('command -v ' .. tool .. ' >/dev/null 2>&1')) == 0 end

local function need_tmux()
  if have('tmux') then return true end
  h.skip_unless_required('PM_REQUIRE_BPF', 'tmux is not installed (make deps installs it)')
  return false
end

-- A tmux session running an interactive shell, 120x40; every command runs
-- from the checkout. stop() kills it.
local function session()
  local name = 'pm_top_e2e_' .. sys.getpid()
  local s = { name = name }
  local function tmux(args)
    local out, err, st = h.sh('tmux ' .. args)
    assert(st == 0, 'tmux ' .. args .. ': ' .. err)
    return out
  end
  tmux(string.format("new-session -d -s %s -x 120 -y 40 \"cd '%s' && env PS1='pm-shell$ ' sh -i\"", name, h.root))
  function s.keys(...)
    for _, k in ipairs({ ... }) do tmux(string.format("send-keys -t %s %s", name, k)) end
  end
  function s.type(text) tmux(string.format("send-keys -t %s -l '%s'", name, text)) end
  function s.screen() return tmux('capture-pane -p -t ' .. name) end
  function s.lines()
    local t = {}
    for l in s.screen():gmatch('([^\n]*)\n') do t[#t + 1] = l end
    return t
  end
  function s.height() return tonumber(tmux(string.format("display -p -t %s '#{pane_height}'", name)):match('%d+')) end
  function s.alternate() return tmux(string.format("display -p -t %s '#{alternate_on}'", name)):match('%d') end
  function s.resize(x, y) tmux(string.format('resize-window -t %s -x %d -y %d', name, x, y)) end
  function s.stop() h.sh('tmux kill-session -t ' .. name .. ' 2>/dev/null') end
  -- waits for the screen to satisfy pred(lines, text); returns its result
  function s.wait(pred, why)
    local v = W.wait_until(function() local ls = s.lines() return pred(ls, table.concat(ls, '\n')) end, 30)
    assert(v, 'screen never showed ' .. why .. ':\n' .. s.screen())
    return v
  end
  return s
end

local function with_session(fn)
  local s = session()
  local ok, err = xpcall(function() fn(s) end, debug.traceback)
  s.stop()
  if not ok then error(err, 0) end
end

-- the process rows under the table header: { {pid, comm}, ... }
local function rows(lines)
  local out, after
  for _, l in ipairs(lines) do
    if after then
      local pid, comm = l:match('^%s*(%d+) (%S+)')
      if pid then out[#out + 1] = { pid = tonumber(pid), comm = comm, line = l } end
    elseif l:match('^%s+PID COMM') then
      after, out = true, {}
    end
  end
  return out
end

local function header(lines) return lines[1] or '' end

describe('top under tmux', function()
  it('puts cpu_burn first by CPU, re-sorts, filters, pauses, helps, resizes, and q restores the shell', function()
    if not need_tmux() or not h.need_root('the BPF columns') then return end
    h.with_machine_lock(function()
      W.with('cpu_burn', { 2, 120 }, {}, function(w)
        with_session(function(s)
          s.wait(function(_, t) return t:match('pm%-shell%$') end, 'the shell prompt')
          assert.equal('0', s.alternate())
          s.type('bin/perf_manual top --interval 0.5')
          s.keys('Enter')
          -- the first refresh with the burner on top
          local first = s.wait(function(ls)
            local r = rows(ls)
            return r and r[1] and r[1].comm == 'cpu_burn' and r[1]
          end, 'cpu_burn as the first row by CPU')
          assert.equal(w.pid, first.pid)
          assert.equal('1', s.alternate())
          assert.matches('sort CPU%%', header(s.lines()))
          -- syscalls/s: the burner makes next to none, so it leaves the top
          s.keys('s')
          s.wait(function(ls)
            local r = rows(ls)
            return header(ls):match('sort SYSC/s') and r and r[1] and r[1].pid ~= w.pid
          end, 'a sort by syscalls/s with another process first')
          -- run-queue wait: 2 spinning threads and the machine's own work on 2 CPUs
          s.keys('r')
          s.wait(function(ls) return header(ls):match('sort RUNQms/s') end, 'the run-queue sort')
          -- filter: only the burner is left
          s.keys('c', '/')
          s.type('cpu_bu')
          s.wait(function(_, t) return t:match('filter: cpu_bu_') end, 'the filter prompt')
          s.keys('Enter')
          s.wait(function(ls)
            local r = rows(ls)
            return header(ls):match('1 processes') and header(ls):match('filter "cpu_bu"') and r and #r == 1
              and r[1].pid == w.pid
          end, 'the filtered table')
          -- pause: the clock in the header stops
          s.keys('p')
          local paused = s.wait(function(ls) return header(ls):match('PAUSED') and header(ls) end, 'PAUSED')
          sys.sleep(1.6)
          assert.equal(paused, header(s.lines()))
          s.keys('p')
          s.wait(function(ls) return not header(ls):match('PAUSED') and header(ls) ~= paused end, 'the refresh again')
          -- help, and back
          s.keys('h')
          s.wait(function(ls) return ls[1] == 'perf_manual top: keys' end, 'the help')
          s.keys('x')
          s.wait(function(ls) return header(ls):match('^perf_manual top  ') end, 'the table after the help')
          -- a smaller window: nothing wider, the key line at the bottom
          s.resize(80, 20)
          s.wait(function(ls)
            local hgt = s.height()
            if hgt > 20 or not (ls[hgt] or ''):match('^c r o i s sort') then return false end
            for _, l in ipairs(ls) do if #l > 80 then return false end end
            return true
          end, 'the frame redrawn at 80x20')
          s.resize(120, 40)
          s.keys('q')
          s.wait(function(_, t) return not t:match('perf_manual top  ') and t:match('pm%-shell%$') end,
            'the shell again after q')
          assert.equal('0', s.alternate())
          -- the terminal is back in cooked mode with echo
          s.type('stty -a | tr " " "\\n" | grep -x -e icanon -e echo | tr "\\n" " "; echo')
          s.keys('Enter')
          s.wait(function(_, t) return t:match('icanon echo') end, 'stty showing icanon and echo')
        end)
      end)
    end)
  end)

  it('restores the terminal on Ctrl-C and falls back to text on TERM=dumb', function()
    if not need_tmux() then return end
    with_session(function(s)
      s.wait(function(_, t) return t:match('pm%-shell%$') end, 'the shell prompt')
      s.type('bin/perf_manual top --no-bpf --interval 0.3')
      s.keys('Enter')
      s.wait(function(ls) return header(ls):match('^perf_manual top  ') end, 'the live screen')
      assert.equal('1', s.alternate())
      s.keys('C-c')
      s.wait(function(_, t) return t:match('pm%-shell%$') and not t:match('perf_manual top  ') end,
        'the shell after Ctrl-C')
      assert.equal('0', s.alternate())
      s.type('clear; TERM=dumb bin/perf_manual top --no-bpf --interval 0.3 --iterations 1 --rows 3; echo "rc=$?"')
      s.keys('Enter')
      local t = s.wait(function(_, text) return text:match('rc=%d') and text end, 'the batch frame and its status')
      assert.matches('top: TERM is dumb: printing %-%-batch text frames instead', t)
      assert.matches('\nperf_manual top  ', t)
      assert.matches('rc=0', t)
      assert.equal('0', s.alternate())
      -- no escape sequence reached the terminal as text
      assert.is_nil(t:find('%[%?1049'))
    end)
  end)
end)

describe('top --batch', function()
  it('prints text frames on a pipe, saying why, and --json lines', function()
    local out, err, st = h.pm('top --no-bpf --interval 0.3 --iterations 2 --rows 5 </dev/null')
    assert.equal(0, st, err)
    assert.matches('top: stdout is not a terminal: printing %-%-batch text frames instead', err)
    local _, frames = out:gsub('perf_manual top  ', '')
    assert.equal(2, frames)
    assert.matches('\nCPU%s+%a+%s+U ', out)
    assert.matches('not measured: RUNQms/s OFFCPUms/s IOLATms IO/s SYSC/s: not asked %(%-%-no%-bpf%)', out)
    local js = h.pm('top --no-bpf --batch --json --interval 0.3 --iterations 2 --rows 3')
    local n = 0
    for line in js:gmatch('[^\n]+') do
      local doc = assert(util.json_decode(line), line)
      assert.equal(3, #doc.processes)
      assert.equal('cpu', doc.sort)
      n = n + 1
    end
    assert.equal(2, n)
    local _, berr, bst = h.pm('top --interval 0')
    assert.equal(2, bst)
    assert.matches('interval', berr)
  end)

  it('agrees with procps top on CPU% and with schedstat on run-queue wait', function()
    if not h.need_root('the BPF columns') then return end
    h.with_machine_lock(function()
      -- 4 spinning threads on 2 CPUs: each waits about half the time
      W.with('cpu_burn', { 4, 60 }, {}, function(w)
        local function runq_ns()
          local sum = 0
          for _, n in ipairs(require('posix.dirent').dir('/proc/' .. w.pid .. '/task') or {}) do
            local s = n:match('^%d+$') and util.readfile('/proc/' .. w.pid .. '/task/' .. n .. '/schedstat')
            if s then sum = sum + tonumber(s:match('^%d+%s+(%d+)')) end
          end
          return sum
        end
        sys.sleep(0.5)
        local procps = io.popen('top -b -d 1 -n 6 -p ' .. w.pid)
        local q0, t0 = runq_ns(), sys.now()
        local out, err, st = h.pm('top --batch --json --interval 1 --iterations 5 --filter cpu_burn')
        local q1, t1 = runq_ns(), sys.now()
        local ptxt = procps:read('*a')
        procps:close()
        assert.equal(0, st, err)
        local ours, runq = {}, {}
        for line in out:gmatch('[^\n]+') do
          local p
          -- another test's burner may be running too: ours by pid
          for _, r in ipairs(util.json_decode(line).processes) do if r.pid == w.pid then p = r end end
          assert(p, 'no row of pid ' .. w.pid .. ' in ' .. line)
          ours[#ours + 1] = p.cpu_pct
          runq[#runq + 1] = p.runq_ms_per_s
        end
        local theirs = {}
        for cpu in ptxt:gmatch('\n%s*' .. w.pid .. '%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+%a%s+([%d%.]+)') do
          theirs[#theirs + 1] = tonumber(cpu)
        end
        -- procps' first frame counts since the process started: drop it
        table.remove(theirs, 1)
        local function mean(xs) local s = 0 for _, x in ipairs(xs) do s = s + x end return s / #xs end
        assert.is_true(#theirs >= 4, ptxt)
        local a, b = mean(ours), mean(theirs)
        assert.is_true(math.abs(a - b) <= 0.15 * b, string.format('CPU%%: top %.1f, procps top %.1f', a, b))
        local truth = (q1 - q0) / 1e6 / (t1 - t0)
        local got = mean(runq)
        assert.is_true(truth > 100, 'the burner never waited: ' .. truth)
        assert.is_true(math.abs(got - truth) <= 0.3 * truth,
          string.format('run-queue wait: top %.0f ms/s, schedstat %.0f ms/s', got, truth))
      end)
    end)
  end)
end)
