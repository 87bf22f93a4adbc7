-- exec-monitor end to end: the scenario script (a sensitive file read, a
-- program run from /tmp, a shell under a process named nginx, a connect to
-- port 9) run under strace, which records the execve, openat and connect
-- calls the monitor must see; the monitor watches the launched command.
local h = test_helpers
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
local DIR = h.root .. '/tests/fixtures/runbooks/exec-monitor/'

-- strace -f output → successful execs (paths), opened paths, connect ports
local function strace_facts(text)
  local f = { exec = {}, open = {}, connect = {} }
  for line in (text or ''):gmatch('[^\n]+') do
    local path = line:match('execve%("([^"]+)".-= 0$')
    if path then f.exec[#f.exec + 1] = path end
    local opened = line:match('openat%([^,]+, "([^"]+)"')
    if opened then f.open[opened] = true end
    local port = line:match('connect%(.-sin_port=htons%((%d+)%)')
    if port then f.connect[tonumber(port)] = true end
  end
  return f
end

describe('exec-monitor (e2e)', function()
  it('sees every exec strace sees, the watched opens and the connect, and alerts on them', function()
    if not h.need_root() then return end
    if not have_tools() then return end
    h.with_machine_lock(function()
      local log = os.tmpname()
      local out, err, st = h.pm(string.format("exec-monitor --target 'cmd:strace -f -qq -e trace=execve,openat,connect "
        .. "-o %s sh %sscenario.sh' --duration 30 --events --rules %srules.lua", log, DIR, DIR))
      local truth = strace_facts(util.readfile(log))
      os.remove(log)
      assert.equal(0, st, err)
      local execs, opens, connects, alerts = {}, {}, {}, {}
      for line in out:gmatch('[^\n]+') do
        local d = assert(util.json_decode(line), line)
        if d.rule then
          alerts[d.rule] = (alerts[d.rule] or 0) + 1
        elseif d.event.kind == 'exec' then
          execs[#execs + 1] = d.event.path
        elseif d.event.kind == 'open' then
          opens[d.event.path] = true
        elseif d.event.kind == 'connect' then
          connects[d.event.dport] = true
        end
      end
      -- a cmd: target starts before the probes attach: the script's shell and its first
      -- `sleep 1` (which gives them the time) may be missed, nothing after them
      local seen = {}
      for _, p in ipairs(execs) do seen[p] = (seen[p] or 0) + 1 end
      local early = {}
      for i = 1, math.min(2, #truth.exec) do early[truth.exec[i]] = (early[truth.exec[i]] or 0) + 1 end
      local missing = {}
      for _, p in ipairs(truth.exec) do
        if seen[p] and seen[p] > 0 then seen[p] = seen[p] - 1
        elseif early[p] and early[p] > 0 then early[p] = early[p] - 1
        else missing[#missing + 1] = p end
      end
      assert.is_true(#truth.exec >= 8, 'strace saw only ' .. #truth.exec .. ' execs')
      assert.same({}, missing, 'execs strace saw and the monitor did not')
      assert.is_true(truth.open['/etc/shadow'] and opens['/etc/shadow'])
      assert.is_true(truth.open['/etc/hostname'] and opens['/etc/hostname'])
      -- only watched prefixes leave the kernel: strace saw many more opens (libraries, locale)
      local n = 0
      for p in pairs(opens) do
        n = n + 1
        assert.is_truthy(p:match('^/etc/shadow') or p:match('^/etc/host') or p:match('^/etc/sudoers'), p)
      end
      assert.is_true(truth.connect[9] and connects[9])
      assert.equal(1, alerts['sensitive file opened'])
      assert.equal(1, alerts['shell started by a service'])
      assert.equal(1, alerts['connect to the discard port'])
      assert.equal(2, alerts['program run from a temporary directory'])
    end)
  end)
end)
