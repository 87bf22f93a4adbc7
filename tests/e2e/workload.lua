-- Starts and stops the test workloads (build/workloads/*) for e2e tests, with
-- an optional memory-limited cgroup, and cleans up every process, cgroup and
-- file they made, even when the test fails.
--
--   local W = require('e2e.workload')
--   W.with('cpu_burn', { '4', '8' }, {}, function(w) ... w.pid ... end)
--   W.with('mem_pressure', { '8', W.scratch() }, { memory_limit = 64 * 2^20 }, fn)
local sys = require('perf_manual._c.sys')
local h = require('helpers')

local W = {}

local seq = 0

local function write(path, text)
  local f, err = io.open(path, 'w')
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then return nil, tostring(werr or cerr) end
  return true
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read('*a'); f:close()
  return s
end

local function isdir(p)
  local pstat = require('posix.sys.stat')
  local st = pstat.stat(p)
  return st ~= nil and pstat.S_ISDIR(st.st_mode) ~= 0
end

local function fs_type(dir)
  local f = io.popen("stat -f -c %T '" .. dir .. "' 2>/dev/null")
  local t = f and f:read('*l')
  if f then f:close() end
  return t
end

local scratch_dir
--- A scratch directory on a real disk (build/e2e/<pid>, or /var/tmp when
--- the tree sits on tmpfs), created on first use and removed by
--- W.cleanup_scratch().
function W.scratch()
  if scratch_dir then return scratch_dir end
  local d = h.root .. '/build/e2e/' .. sys.getpid()
  os.execute('mkdir -p ' .. d)
  local t = fs_type(d)
  if t == 'tmpfs' or t == 'ramfs' then
    os.execute('rm -rf ' .. d)
    d = '/var/tmp/perf_manual_e2e_' .. sys.getpid()
    os.execute('mkdir -p ' .. d)
  end
  scratch_dir = d
  return d
end

function W.cleanup_scratch()
  if scratch_dir then os.execute('rm -rf ' .. scratch_dir) end
  scratch_dir = nil
end

--- Waits up to `timeout` seconds for pred() to be true; returns its last value.
function W.wait_until(pred, timeout)
  local t0 = sys.now()
  while true do
    local v = pred()
    if v or sys.now() - t0 > timeout then return v end
    sys.sleep(0.1)
  end
end

--- A counter of /proc/PID/io (rchar, read_bytes, ...), or nil.
function W.io(pid, key)
  local s = read('/proc/' .. pid .. '/io')
  return s and tonumber(s:match(key .. ': (%d+)'))
end

--- Where a memory-limited cgroup can be made: v2 when the unified hierarchy
--- has the memory controller, else the v1 memory hierarchy. Returns
--- { version=, root= } or nil.
function W.memory_hierarchy()
  for _, d in ipairs({ '/sys/fs/cgroup', '/sys/fs/cgroup/unified' }) do
    local ctrls = read(d .. '/cgroup.controllers')
    if ctrls and ctrls:match('%f[%w]memory%f[%W]') then
      local sub = read(d .. '/cgroup.subtree_control') or ''
      if sub:match('%f[%w]memory%f[%W]') or write(d .. '/cgroup.subtree_control', '+memory') then
        return { version = 2, root = d }
      end
    end
  end
  if isdir('/sys/fs/cgroup/memory') and read('/sys/fs/cgroup/memory/memory.limit_in_bytes') then
    return { version = 1, root = '/sys/fs/cgroup/memory' }
  end
end

--- Makes a memory cgroup with `limit` bytes; returns { dir=, procs=, version= }.
function W.memory_cgroup(limit)
  local hier = assert(W.memory_hierarchy(), 'no memory cgroup hierarchy to confine the workload in')
  seq = seq + 1
  local dir = string.format('%s/perf_manual_e2e_%d_%d', hier.root, sys.getpid(), seq)
  assert(os.execute('mkdir ' .. dir) == 0, 'cannot create cgroup ' .. dir)
  local cg = { dir = dir, version = hier.version, procs = dir .. '/cgroup.procs' }
  local ok, err
  if hier.version == 2 then
    ok, err = write(dir .. '/memory.max', tostring(limit))
  else
    ok, err = write(dir .. '/memory.limit_in_bytes', tostring(limit))
  end
  if not ok then
    W.remove_cgroup(cg)
    error('cannot set the memory limit of ' .. dir .. ': ' .. tostring(err))
  end
  return cg
end

--- Removes a cgroup; its processes must be gone. Retries briefly, because the
--- kernel frees a cgroup a moment after its last task exits.
function W.remove_cgroup(cg)
  for _ = 1, 50 do
    if not isdir(cg.dir) then return true end
    -- anything still inside is ours: it was started into this cgroup
    for p in (read(cg.procs) or ''):gmatch('%d+') do sys.kill(tonumber(p), 9) end
    if require('posix.unistd').rmdir(cg.dir) then return true end
    sys.sleep(0.05)
  end
  return false
end

--- Starts build/workloads/<name> with args (strings); opts.memory_limit puts
--- it into a fresh memory cgroup of that many bytes before it runs;
--- opts.join = another handle's cgroup puts it there instead; opts.prefix =
--- an argv that execs the workload in place (e.g. `ip netns exec NS`).
--- Returns a handle { pid=, name=, cgroup= } with :stop().
function W.start(name, args, opts)
  opts = opts or {}
  local path = h.workload(name)
  local f = assert(io.open(path), 'workload not built: ' .. path .. ' (run make)')
  f:close()
  local argv = {}
  for _, a in ipairs(opts.prefix or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = path
  for _, a in ipairs(args or {}) do argv[#argv + 1] = tostring(a) end
  local w = setmetatable({ name = name }, { __index = W })
  if opts.memory_limit then w.cgroup = W.memory_cgroup(opts.memory_limit) end
  -- opts.join = the cgroup of another handle (its owner removes it)
  local join = (w.cgroup or opts.join) and (w.cgroup or opts.join).procs
  local pid, err = sys.spawn(argv, { join = join, stdout = 'null', stderr = 'null' })
  if not pid then
    if w.cgroup then W.remove_cgroup(w.cgroup) end
    error(err)
  end
  w.pid = pid
  return w
end

--- Waits (up to `timeout` seconds) for the workload to exit; returns its
--- wait status or nil when it is still running.
function W:wait(timeout)
  local t0 = sys.now()
  repeat
    local how, code = sys.wait(self.pid, true)
    if how ~= 'running' then self.exited = { how, code }; return how, code end
    sys.sleep(0.02)
  until sys.now() - t0 > (timeout or 0)
end

--- Stops the workload (TERM, then KILL), reaps it and removes its cgroup.
function W:stop()
  if not self.exited then
    sys.kill(self.pid, 15)
    if not self:wait(2) then
      sys.kill(self.pid, 9)
      self:wait(5)
    end
  end
  if self.cgroup then
    assert(W.remove_cgroup(self.cgroup), 'cannot remove cgroup ' .. self.cgroup.dir)
  end
end

--- Runs fn(w) with the workload running and always stops and cleans up.
function W.with(name, args, opts, fn)
  local w = W.start(name, args, opts)
  local ok, err = xpcall(function() return fn(w) end, debug.traceback)
  local sok, serr = pcall(W.stop, w)
  if not ok then error(err, 0) end
  if not sok then error(serr, 0) end
  return err
end

return W
