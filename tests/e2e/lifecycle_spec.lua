-- How runs end (issue 17): a launched workload dies with its launcher
-- (kill -9 included), every exit path of an investigation leaves a status
-- and a reason, collect keeps what it sampled when killed, and a run that is
-- stopped early or whose target exits says so.
local h = test_helpers
local sys = require('perf_manual._c.sys')
local store = require('perf_manual.store')
local util = require('perf_manual.util')

local function tmpdir()
  local d = os.tmpname(); os.remove(d)
  assert(store.mkdir_p(d))
  return d
end

-- true while pid runs (a zombie has ended)
local function alive(pid)
  local s = util.readfile('/proc/' .. pid .. '/stat')
  return s ~= nil and not s:match('%) [ZX] ')
end

local function gone_within(pid, seconds)
  local t0 = sys.now()
  while sys.now() - t0 < seconds do
    if not alive(pid) then return true end
    sys.sleep(0.05)
  end
  return not alive(pid)
end

-- pids whose command line contains `marker`
local function pids_with(marker)
  local out = {}
  local dirent = require('posix.dirent')
  for _, n in ipairs(dirent.dir('/proc')) do
    if n:match('^%d+$') and tonumber(n) ~= sys.getpid() then
      local cmd = (util.readfile('/proc/' .. n .. '/cmdline') or ''):gsub('%z', ' ')
      if cmd:find(marker, 1, true) and alive(n) then out[#out + 1] = tonumber(n) end
    end
  end
  return out
end

local function kill_all(list) for _, p in ipairs(list) do sys.kill(p, 9) end end

-- the pid investigate launched, from its timeline
local function launched_pid(root)
  local id = store.list(root)[1]
  local m = id and store.open(root, id):load_metadata()
  for _, e in ipairs(m and m.timeline or {}) do
    local pid = tonumber(tostring(e.what):match('as pid (%d+)$'))
    if pid then return pid, m end
  end
end

describe('how runs end #priv', function()
  local root
  before_each(function() root = tmpdir() end)
  after_each(function() os.execute('rm -rf ' .. root) end)

  it('kill -9 of investigate takes the workload it launched with it', function()
    local log = root .. '.out'
    local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'investigate', '--workload',
      h.workload('sleeper') .. ' 120', '--symptom', 'slow', '--batch', '--duration', '30', '--store', root },
      { stdout = log, stderr = log }))
    local w
    for _ = 1, 200 do
      w = launched_pid(root)
      if w then break end
      sys.sleep(0.05)
    end
    assert.truthy(w, 'the workload was never launched: ' .. tostring(util.readfile(log)))
    assert.is_true(alive(w))
    sys.kill(pid, 9)
    sys.wait(pid)
    os.remove(log)
    local gone = gone_within(w, 5)
    if not gone then sys.kill(w, 9) end
    assert.is_true(gone, 'the launched sleeper (pid ' .. w .. ') outlived its investigator')
  end)

  it('an investigation that fails on a full disk stops its workload', function()
    if not h.need_root('mounts a tiny tmpfs to fill') then return end
    local mnt = root .. '/full'
    os.execute('mkdir -p ' .. mnt)
    assert.is_true(os.execute('mount -t tmpfs -o size=4m tmpfs ' .. mnt) == 0)
    local w
    local ok, err = pcall(function()
      local log = root .. '/full.out'
      local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'investigate', '--workload',
        h.workload('sleeper') .. ' 120', '--symptom', 'full', '--batch', '--duration', '2',
        '--store', mnt .. '/store' },
        { stdout = log, stderr = log }))
      for _ = 1, 200 do
        w = launched_pid(mnt .. '/store')
        if w then break end
        sys.sleep(0.05)
      end
      -- the disk fills while it measures: its next save fails
      os.execute('dd if=/dev/zero of=' .. mnt .. '/fill bs=64k count=1000 2>/dev/null')
      local how, code = sys.wait(pid)
      local text = util.readfile(log) or ''
      assert.truthy(w, 'the workload was never launched: ' .. text)
      assert.is_true(how == 'exited' and code ~= 0, text)
      assert.matches('No space left on device', text)
      assert.is_false(alive(w), 'the launched sleeper outlived the failed investigation')
    end)
    if w and alive(w) then sys.kill(w, 9) end
    os.execute('umount ' .. mnt)
    if not ok then error(err, 0) end
  end)

  it("a launched workload's output is capped at 16 MiB, and the log says where it was cut", function()
    local marker = 'pm_e2e_yes_' .. sys.getpid()
    local _, e, st = h.pm(string.format('investigate --workload "yes %s" --symptom cap --batch --duration 1 '
      .. '--store %s', marker, root))
    kill_all(pids_with(marker))
    assert.equal(0, st, e)
    local id = store.list(root)[1]
    local logf = root .. '/' .. id .. '/raw_data/workload.log'
    local f = assert(io.open(logf))
    local size = f:seek('end')
    f:seek('end', -200)
    local tail = f:read('*a')
    f:close()
    assert.is_true(size <= 16 * 2 ^ 20 + 200, 'workload.log is ' .. size .. ' bytes')
    assert.matches('%[perf_manual: output cut at 16777216 bytes; the rest was dropped%]', tail)
    assert.same({}, pids_with(marker))
  end)

  it('a workload that cannot run: the investigation is failed with the reason; --resume keeps its workload', function()
    -- `false` is on PATH (a bare name resolves to a command too) and exits at once
    local _, e, st = h.pm('investigate --workload "false now" --symptom x --batch --duration 1 --store ' .. root)
    assert.equal(2, st)
    assert.matches('exited at once', e)
    local id = store.list(root)[1]
    local m = assert(store.open(root, id):load_metadata())
    assert.equal('failed', m.status)
    assert.matches('exited at once', m.status_reason)
    -- a resume must not mix another process into it
    local _, e2, st2 = h.pm(string.format('investigate --resume %s --workload 1 --store %s', id, root))
    assert.equal(2, st2)
    assert.matches("^perf_manual: cannot resume [^\n]+ with %-%-workload 1: it was started on %-%-workload false now",
      e2)
    -- a bare command name is a command: `yes` runs
    local _, e3, st3 = h.pm('investigate --workload yes --symptom bare --batch --duration 1 --store ' .. root)
    assert.equal(0, st3, e3)
  end)

  it('collect killed with -9 leaves every completed interval and a manifest that says it was cut', function()
    local out = root .. '/data'
    local pid = assert(sys.spawn({ h.root .. '/bin/perf_manual', 'collect', '--suite', 'basic', '--output', out,
      '--duration', '6', '--interval', '0.5' }, { stdout = 'null', stderr = 'null' }))
    -- kill it half-way, once a few intervals are on disk
    local lines = 0
    for _ = 1, 200 do
      sys.sleep(0.05)
      local t = util.readfile(out .. '/raw_data/cpu.jsonl') or ''
      lines = select(2, t:gsub('\n', ''))
      if lines >= 3 then break end
    end
    sys.kill(pid, 9)
    sys.wait(pid)
    assert.is_true(lines >= 3, 'only ' .. lines .. ' intervals on disk after several seconds')
    local manifest = assert(util.json_decode(assert(util.readfile(out .. '/manifest.json'))))
    assert.equal('running', manifest.status)
    assert.is_true(manifest.partial)
    local names = {}
    for _, it in ipairs(manifest.items) do
      if it.file then
        names[#names + 1] = it.name
        local text = assert(util.readfile(out .. '/' .. it.file), it.file)
        local n = 0
        for line in text:gmatch('[^\n]+') do
          local rec = assert(util.json_decode(line), 'torn line in ' .. it.file)
          assert.truthy(rec.t and rec.rates)
          n = n + 1
        end
        assert.is_true(n >= 2, it.file .. ': ' .. n .. ' lines')
      end
    end
    assert.is_true(#names >= 3, table.concat(names, ','))
  end)

  it('Ctrl-C: trace and profile exit 0 and say they stopped early; a target that exits is said', function()
    if not h.need_root() then return end
    for _, args in ipairs({ { 'trace', '--events', 'syscalls', '--duration', '30' },
      { 'profile', '--duration', '30', '--output', root .. '/prof' } }) do
      local log = root .. '/sigint.out'
      local argv = { h.root .. '/bin/perf_manual' }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      local pid = assert(sys.spawn(argv, { stdout = log, stderr = log }))
      sys.sleep(2)
      sys.kill(pid, 2)
      local how, code = sys.wait(pid)
      local text = util.readfile(log) or ''
      assert.same({ 'exited', 0 }, { how, code }, text)
      assert.matches('stopped early %(Ctrl%-C%) after', text)
    end
    -- profile of a launched command that ends after ~1 s of the 5 asked
    local out, err, st = h.pm(string.format('profile --target "%s 1 1" --duration 5 --output %s/p2',
      h.workload('cpu_burn'), root))
    assert.equal(0, st, err)
    assert.matches('^partial: the target exited after [%d.]+ ?m?s of the 5%.00s asked', out)
    -- red-check --passive on a process that ends within the window
    local w = assert(sys.spawn({ h.workload('sleeper'), '1' }, { stdout = 'null', stderr = 'null' }))
    local rout, rerr, rst = h.pm('red-check --passive ' .. w .. ' --duration 5 --json')
    sys.wait(w)
    assert.equal(0, rst, rerr)
    local r = assert(util.json_decode(rout), rout)
    assert.equal('target exited', r.ended_by)
    assert.is_true(r.exited_after_s > 0.5 and r.exited_after_s < 4, tostring(r.exited_after_s))
    assert.matches('^process %d+ exited after', r.partial)
  end)
end)
