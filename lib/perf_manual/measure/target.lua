--- What a command looks at. One resolver, one meaning on every command
--- (`--target`, and the `--pid`, `--cgroup`, `--workload` aliases):
---
---   system                       the whole machine
---   1234 | pid:1234              a process
---   nginx.service | service:x    a systemd service (its cgroup)
---   /a/b | a/b | cgroup:a/b      a cgroup (path inside the hierarchies, or
---                                the full directory; cgroup:ID a v2 id)
---   nginx | process:nginx        a running process by name (the oldest one)
---   './prog arg' | cmd:prog arg  a command to launch (measure.target.launch)
---   argv:["prog","a b"]          the same, argv exact (what `-- prog 'a b'` on
---                                the command line becomes: M.argv_spec)
---
--- A bare name is a systemd service when one with a cgroup exists, else a
--- running process of that name, else a command on PATH.
---
--- resolve(spec) returns one of
---   { kind = 'system', label = 'system' }
---   { kind = 'pid', pid = 123, comm = 'nginx', label = 'pid 123 (nginx)' }
---   { kind = 'cgroup', cgroup = '/a/b', dirs = Dirs, label = } (dirs nil for cgroup:ID, id set)
---   { kind = 'service', unit = 'x.service', cgroup = '/system.slice/x.service', dirs = Dirs, label = }
---   { kind = 'command', argv = {...}, label = } (launch() turns it into a pid target)
--- `dirs` is what perf_manual.collectors.cgroup.resolve returns. Bad input
--- is a user error (exit 2).
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local pstat = require('posix.sys.stat')
local unistd = require('posix.unistd')
local dirent = require('posix.dirent')

local M = {}

-- the cgroup collector (its grammars) loads only for cgroup and service targets
local function cgroups() return require('perf_manual.collectors.cgroup') end

--- The place /proc is read from (specs point it at fixtures).
M.proc = '/proc'

local function isdir(p)
  local st = pstat.stat(p)
  return st ~= nil and pstat.S_ISDIR(st.st_mode) ~= 0
end

local function executable(p)
  return unistd.access(p, 'x') == 0 and not isdir(p)
end

local function read(p) return util.readfile(p) end

--- The command name of a process, or nil when it does not exist.
function M.comm(pid)
  local s = read(M.proc .. '/' .. pid .. '/comm')
  return s and (s:gsub('\n$', ''))
end

--- True while the target can still be measured. A launched command lives
--- as long as the command itself (its children are followed, not waited for).
function M.alive(t)
  if t.launched and t.pid then return M.reap(t) == nil end
  if t.kind == 'pid' then
    local s = read(M.proc .. '/' .. t.pid .. '/stat')
    -- a zombie has exited: nothing left to measure
    return s ~= nil and not s:match('%) [ZX] ')
  elseif (t.kind == 'cgroup' or t.kind == 'service') and t.dirs then
    for k, d in pairs(t.dirs) do
      if k ~= 'path' and isdir(d) then return true end
    end
    return false
  end
  return true
end

--- Pids inside a cgroup target (from any hierarchy it exists in).
function M.pids(t)
  if t.run_cgroup and t.pid then
    -- a launched command: itself and everything it started
    local out = {}
    for p in (read(t.run_cgroup.dir .. '/cgroup.procs') or ''):gmatch('%d+') do out[#out + 1] = tonumber(p) end
    table.sort(out)
    return out
  end
  if t.kind == 'pid' then return { t.pid } end
  if not t.dirs then return {} end
  local seen, out = {}, {}
  for k, d in pairs(t.dirs) do
    local procs = k ~= 'path' and read(d .. '/cgroup.procs') or ''
    for p in procs:gmatch('%d+') do
      local n = tonumber(p)
      if not seen[n] then seen[n] = true; out[#out + 1] = n end
    end
  end
  table.sort(out)
  return out
end

--- What the BPF programs filter on: { pid = } or { cgroup = v2 dir or id },
--- {} for the system; nil, why when the target cannot be filtered.
function M.bpf_filter(t)
  if t.kind == 'system' then return {} end
  -- a launched command runs in a cgroup of its own: its children are in it too
  if t.run_cgroup then return { cgroup = t.run_cgroup.dir } end
  if t.kind == 'pid' then return { pid = t.pid } end
  if t.id then return { cgroup = t.id } end
  local v2 = t.dirs and t.dirs.v2
  if not v2 then
    return nil, 'the target has no cgroup v2 directory to filter on (BPF filters by cgroup v2 id)'
  end
  return { cgroup = v2 }
end

local function service_cgroup(unit)
  -- systemd knows best when it is running; otherwise look for the unit's
  -- cgroup in the hierarchies
  if isdir('/run/systemd/system') then
    local f = io.popen("systemctl show -p ControlGroup --value -- '" .. unit:gsub("'", '') .. "' 2>/dev/null")
    if f then
      local cg = util.trim(f:read('*a') or '')
      f:close()
      if cg ~= '' then
        local dirs = cgroups().resolve({ path = cg })
        if dirs then return cg, dirs end
      end
    end
  end
  local path = cgroups().find_unit(unit)
  if not path then return nil end
  local dirs = cgroups().resolve({ path = path })
  if not dirs then
    -- only in systemd's own named hierarchy: no controllers, but its processes
    local sd = cgroups().mounts().v1['name=systemd']
    dirs = { path = path, systemd = sd and (sd.dir .. path) }
  end
  return path, dirs
end

local function pid_target(pid, spec)
  local comm = pid > 0 and M.comm(pid)
  if not comm then util.user_error('no process ' .. spec) end
  return { kind = 'pid', pid = pid, comm = comm, label = string.format('pid %d (%s)', pid, comm) }
end

local function cgroup_target(spec)
  if spec:match('^%d+$') then
    return { kind = 'cgroup', id = tonumber(spec), cgroup = spec, label = 'cgroup id ' .. spec }
  end
  local dirs = cgroups().resolve({ path = spec:sub(1, 1) == '/' and spec or ('/' .. spec) })
  if not dirs then util.user_error('no cgroup ' .. spec) end
  return { kind = 'cgroup', cgroup = dirs.path, dirs = dirs, label = 'cgroup ' .. dirs.path }
end

local function service_target(name)
  local unit = name:match('%.%a+$') and name or (name .. '.service')
  local cg, dirs = service_cgroup(unit)
  if not cg then return nil, unit end
  return { kind = 'service', unit = unit, cgroup = cg, dirs = dirs, label = 'service ' .. unit }
end

--- Running processes whose command name is `name` (as /proc/PID/comm
--- keeps it: 15 characters), oldest (lowest pid) first, not this one.
function M.by_name(name)
  local ok, names = pcall(dirent.dir, M.proc)
  local found, me = {}, sys.getpid()
  for _, n in ipairs(ok and names or {}) do
    if n:match('^%d+$') and tonumber(n) ~= me and M.comm(n) == name:sub(1, 15) then
      local stat = read(M.proc .. '/' .. n .. '/stat')
      if stat and not stat:match('%) [ZX] ') then found[#found + 1] = tonumber(n) end
    end
  end
  table.sort(found)
  return found
end

local function process_target(name)
  local found = M.by_name(name)
  if #found == 0 then return nil end
  local t = pid_target(found[1], tostring(found[1]))
  t.name = name
  t.others = #found - 1
  t.label = string.format('%s (pid %d%s)', name, found[1], #found > 1 and (', ' .. (#found - 1) .. ' more') or '')
  return t
end

local function which(exe)
  if exe:find('/', 1, true) then return executable(exe) and exe or nil end
  for d in (os.getenv('PATH') or '/usr/bin:/bin'):gmatch('[^:]+') do
    if executable(d .. '/' .. exe) then return d .. '/' .. exe end
  end
end

local function command_target(text)
  local argv = {}
  for a in text:gmatch('%S+') do argv[#argv + 1] = a end
  if #argv == 0 then util.user_error('cmd: expected a command to launch') end
  local path = which(argv[1])
  if not path then util.user_error("cannot run '" .. argv[1] .. "' (not an executable file, nor on PATH)") end
  argv[1] = path
  return { kind = 'command', argv = argv, command = text, label = text }
end

-- a command given as argv (after `--`): kept as given, no splitting
local function argv_target(argv)
  if type(argv) ~= 'table' or #argv == 0 then util.user_error('expected a command to launch after --') end
  local out = {}
  for i, a in ipairs(argv) do out[i] = tostring(a) end
  local path = which(out[1])
  if not path then
    util.user_error("cannot run '" .. util.printable(out[1]) .. "' (not an executable file, nor on PATH)")
  end
  local text = M.shell_text(out)
  out[1] = path
  return { kind = 'command', argv = out, command = text, label = text, exact = true }
end

--- argv as one line a shell would read back the same way (for labels).
function M.shell_text(argv)
  local parts = {}
  for i, a in ipairs(argv) do
    parts[i] = a:match('^[%w%./_%-=:,@+]+$') and a or ("'" .. a:gsub("'", "'\\''") .. "'")
  end
  return table.concat(parts, ' ')
end

--- The target text of a command given as argv (`perf_manual trace -- prog
--- args`): resolve() turns it back into exactly that argv.
function M.argv_spec(argv)
  return 'argv:' .. util.json_encode(util.array(argv))
end

local PREFIXES = {
  pid = function(v)
    if not v:match('^%d+$') then util.user_error("bad pid '" .. v .. "': expected a process id") end
    return pid_target(tonumber(v), v)
  end,
  cgroup = cgroup_target,
  service = function(v)
    local t, unit = service_target(v)
    if not t then util.user_error(string.format("no systemd service '%s' (no cgroup for %s)", v, unit)) end
    return t
  end,
  process = function(v)
    return process_target(v) or util.user_error("no process named '" .. v .. "'")
  end,
  cmd = command_target,
  argv = function(v)
    local ok, argv = pcall(util.json_decode, v)
    if not ok or type(argv) ~= 'table' then util.user_error('argv: expected a JSON list of strings') end
    return argv_target(argv)
  end,
}

--- Resolves target text into a target table (see the top of this file).
---@param spec string|number
function M.resolve(spec)
  spec = util.trim(tostring(spec or 'system'))
  if spec == '' or spec == 'system' then
    return { kind = 'system', label = 'system' }
  end
  if spec:sub(1, 5) == 'argv:' then return PREFIXES.argv(spec:sub(6)) end
  local prefix, rest = spec:match('^(%a+):(.*)$')
  if prefix and PREFIXES[prefix] then return PREFIXES[prefix](util.trim(rest)) end
  if spec:match('^%d+$') then return pid_target(tonumber(spec), spec) end
  if spec:find('%s') then return command_target(spec) end
  if spec:find('/', 1, true) then
    -- a cgroup first (directories are not programs), then a program to run
    local dirs = cgroups().resolve({ path = spec:sub(1, 1) == '/' and spec or ('/' .. spec) })
    if dirs then return { kind = 'cgroup', cgroup = dirs.path, dirs = dirs, label = 'cgroup ' .. dirs.path } end
    if executable(spec) then return command_target(spec) end
    util.user_error('no cgroup or program ' .. spec)
  end
  if not spec:match('^[%w:_.@+\\-]+$') then
    util.user_error("bad target '" .. spec .. "': expected system, a PID, a service, a cgroup path, "
      .. 'a process name or a command')
  end
  local t = service_target(spec)
  if t then return t end
  t = process_target(spec)
  if t then return t end
  if not spec:match('%.service$') and which(spec) then return command_target(spec) end
  util.user_error(string.format("no process, service or command named '%s'", spec))
end

--- Most of a launched command's output kept in its log (the rest is dropped).
M.LOG_CAP = 16 * 2 ^ 20

local run_seq = 0

--- Makes the cgroup (v2) a command is launched into, so BPF programs that
--- filter on one id see the command and every process it starts. Returns
--- { dir =, id = } or nil, why (no cgroup2 mount, not writable).
--- Removes the empty run cgroups of perf_manual processes that are gone
--- (killed with -9, or a machine reset of their parent): nothing else ever
--- would. Returns how many it removed.
function M.sweep_run_cgroups(v2dir)
  local n = 0
  local ok, names = pcall(dirent.dir, v2dir)
  for _, name in ipairs(ok and names or {}) do
    local owner = tonumber(name:match('^perf_manual%-run%-(%d+)%-%d+$') or '')
    if owner and owner ~= sys.getpid() and not isdir('/proc/' .. owner) then
      local dir = v2dir .. '/' .. name
      if (read(dir .. '/cgroup.procs') or 'x'):match('^%s*$') and unistd.rmdir(dir) then n = n + 1 end
    end
  end
  return n
end

function M.make_run_cgroup()
  local m = cgroups().mounts()
  if not m.v2 then return nil, 'no cgroup v2 mount' end
  if run_seq == 0 then M.sweep_run_cgroups(m.v2.dir) end
  run_seq = run_seq + 1
  local dir = string.format('%s/perf_manual-run-%d-%d', m.v2.dir, sys.getpid(), run_seq)
  local ok, err = pstat.mkdir(dir, 493)
  if not ok then return nil, 'cannot create ' .. dir .. ': ' .. tostring(err) end
  local st = pstat.stat(dir)
  return { dir = dir, id = st and st.st_ino, path = dir:sub(#m.v2.dir + 1) }
end

--- Removes a run cgroup, killing what is left in it (everything in it is
--- the launched command's).
function M.remove_run_cgroup(cg)
  if not cg then return true end
  for _ = 1, 40 do
    if not isdir(cg.dir) then return true end
    for p in (read(cg.dir .. '/cgroup.procs') or ''):gmatch('%d+') do sys.kill(tonumber(p), 9) end
    if unistd.rmdir(cg.dir) then return true end
    sys.sleep(0.025)
  end
  return false
end

--- Gets a command target ready to launch: its run cgroup (children followed
--- by the BPF filter). Safe to call twice; a note (why children are not
--- followed) comes back when no cgroup could be made.
function M.prepare(t)
  if t.kind ~= 'command' or t.run_cgroup or t.no_run_cgroup then return nil end
  local cg, why = M.make_run_cgroup()
  if cg then t.run_cgroup = cg else t.no_run_cgroup = why end
  return why and ('no cgroup for the command (' .. why .. '): only its first process is followed') or nil
end

--- Starts a command target; it becomes a pid target with launched = true.
--- opts.log: where its stdout and stderr go (default /dev/null), the first
--- opts.log_cap bytes (default LOG_CAP); opts.output = 'inherit' leaves them
--- on this process's (as strace does), 'stderr-only' drops stdout (a JSON
--- document on stdout stays one). The command gets a process group of its
--- own, SIGKILL when this process dies (kill -9 included), so it never
--- outlives the run that launched it, and a cgroup of its own when one can
--- be made (M.prepare). A `cmd:` command that exits at once is a user error
--- (it was meant to be watched); a command given after `--` may exit at once
--- (its exit status is the result).
function M.launch(t, opts)
  if t.kind ~= 'command' then return t end
  opts = opts or {}
  M.prepare(t)
  local so = { stdin = 'null', setpgid = true, pdeathsig = 9,
    join = t.run_cgroup and (t.run_cgroup.dir .. '/cgroup.procs') or nil }
  if opts.log then
    so.log, so.log_cap = opts.log, opts.log_cap or M.LOG_CAP
  elseif opts.output == 'stderr-only' then
    so.stdout = 'null'
  elseif opts.output ~= 'inherit' then
    so.stdout, so.stderr = 'null', 'null'
  end
  local pid, err = sys.spawn(t.argv, so)
  if not pid then
    M.remove_run_cgroup(t.run_cgroup)
    util.user_error('cannot start ' .. t.command .. ': ' .. tostring(err))
  end
  if opts.log then t.logger = err end
  t.kind, t.pid, t.launched = 'pid', pid, true
  t.started_at = sys.now()
  -- what exec names it (the file's base name, 15 bytes): spawn returns when
  -- the kernel lets a vfork parent go, a moment before exec renames the child,
  -- so /proc/PID/comm may still say perf_manual here
  t.comm = ((t.argv[1]:match('[^/]+$')) or t.argv[1]):sub(1, 15)
  t.label = string.format('%s (pid %d, launched)', t.command, pid)
  if not t.exact then
    -- a program that fails at once (bad arguments) is not a target
    sys.sleep(opts.settle or 0.3)
    if M.reap(t) then
      if t.logger then sys.wait(t.logger) end
      M.remove_run_cgroup(t.run_cgroup)
      util.user_error(t.command .. ' exited at once' .. (opts.log and (' (see ' .. opts.log .. ')') or ''))
    end
    t.comm = M.comm(pid) or t.comm
  end
  return t
end

--- The launched command's end, once it has ended: { status = N } or
--- { signal = N }, with after = seconds since launch (nil while it runs).
--- Reaps it (this process is its parent).
function M.reap(t)
  if t.exit then return t.exit end
  if not (t.launched and t.pid) then return nil end
  local how, code = sys.wait(t.pid, true)
  if how == 'running' then return nil end
  t.exit = { status = how == 'exited' and code or nil, signal = how == 'signaled' and code or nil,
    after = sys.now() - (t.started_at or sys.now()), stopped = t.stopping or nil }
  return t.exit
end

--- Stops a launched target (TERM, then KILL after a second); others are
--- left alone. The whole process group goes (what the command started
--- too), and its cgroup with whatever is left in it.
function M.stop(t)
  if not (t and t.launched and t.pid) or t.stopped then return end
  if not M.reap(t) then
    t.stopping = true
    -- the group first (its id is the pid: launched with setpgid), else the pid
    if not sys.kill(-t.pid, 15) then sys.kill(t.pid, 15) end
    for _ = 1, 20 do
      if M.reap(t) then break end
      sys.sleep(0.05)
    end
    if not M.reap(t) then sys.kill(t.pid, 9); sys.wait(t.pid); t.exit = t.exit or { signal = 9, stopped = true } end
  end
  sys.kill(-t.pid, 9) -- stragglers of the group
  M.remove_run_cgroup(t.run_cgroup)
  if t.logger then
    -- it exits once every writer of the pipe is gone
    for _ = 1, 20 do
      if sys.wait(t.logger, true) ~= 'running' then break end
      sys.sleep(0.05)
    end
    if sys.wait(t.logger, true) == 'running' then sys.kill(t.logger, 9); sys.wait(t.logger) end
  end
  t.stopped = true
end

local SIGNALS = { [1] = 'SIGHUP', [2] = 'SIGINT', [3] = 'SIGQUIT', [4] = 'SIGILL', [6] = 'SIGABRT', [7] = 'SIGBUS',
  [8] = 'SIGFPE', [9] = 'SIGKILL', [11] = 'SIGSEGV', [13] = 'SIGPIPE', [14] = 'SIGALRM', [15] = 'SIGTERM' }

--- One line on how a launched command ended (nil for other targets):
--- "command exited with status 3", "command killed by signal 9 (SIGKILL)",
--- "command still running at the end of the window: stopped".
function M.exit_text(d)
  if not (d and d.launched) then return nil end
  if d.stopped_by_us then return 'command still running at the end of the window: stopped' end
  if d.exit_status then return 'command exited with status ' .. d.exit_status end
  if d.exit_signal then
    return string.format('command killed by signal %d%s', d.exit_signal,
      SIGNALS[d.exit_signal] and (' (' .. SIGNALS[d.exit_signal] .. ')') or '')
  end
  return nil
end

--- CPU time (s) the target's processes have used so far, and where the
--- figure comes from: a launched command's cgroup (children included,
--- those that exited too), a cgroup's cpu.stat / cpuacct.usage, a process's
--- /proc/PID/stat (its threads). nil for the system.
function M.cpu_seconds(t)
  local function cg_usage(dir)
    local s = read(dir .. '/cpu.stat')
    local us = s and s:match('usage_usec (%d+)')
    return us and tonumber(us) / 1e6
  end
  if t.run_cgroup and t.pid then
    local v = cg_usage(t.run_cgroup.dir)
    if v then return v, 'cgroup cpu.stat' end
  end
  if t.kind == 'pid' then
    -- its threads' run time in ns (schedstat), else clock ticks (stat)
    local ok, tasks = pcall(dirent.dir, M.proc .. '/' .. t.pid .. '/task')
    if ok and tasks then
      local ns, any = 0, false
      for _, tid in ipairs(tasks) do
        local v = tid:match('^%d+$') and read(M.proc .. '/' .. t.pid .. '/task/' .. tid .. '/schedstat')
        local on = v and tonumber(v:match('^(%d+)'))
        if on then ns, any = ns + on, true end
      end
      if any then return ns / 1e9, '/proc/PID/task/*/schedstat' end
    end
    local s = read(M.proc .. '/' .. t.pid .. '/stat')
    local rest = s and s:match('%) (.*)$')
    if not rest then return nil end
    local f = {}
    for x in rest:gmatch('%S+') do f[#f + 1] = x end
    -- fields 14-15 of stat (utime stime) are 12-13 after the comm; children
    -- are left out, as the profiler's pid filter leaves them out
    local ticks = (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)
    return ticks / (sys.info().clk_tck or 100), '/proc/PID/stat'
  end
  if t.dirs then
    if t.dirs.v2 then
      local v = cg_usage(t.dirs.v2)
      if v then return v, 'cgroup cpu.stat' end
    end
    for k, d in pairs(t.dirs) do
      if k ~= 'path' and type(d) == 'string' then
        local ns = read(d .. '/cpuacct.usage')
        if ns and tonumber(ns) then return tonumber(ns) / 1e9, 'cpuacct.usage' end
      end
    end
  end
  return nil
end

--- The plain-data description of a target kept in results.
function M.describe(t)
  local e = t.exit
  return { kind = t.kind, label = t.label, pid = t.pid, comm = t.comm, unit = t.unit, cgroup = t.cgroup,
    command = t.command, launched = t.launched,
    exit_status = e and not e.stopped and e.status or nil,
    exit_signal = e and not e.stopped and e.signal or nil,
    exited_after_s = e and not e.stopped and e.after or nil,
    stopped_by_us = e and e.stopped or nil,
    follows_children = t.launched and (t.run_cgroup ~= nil) or nil }
end

return M
