--- On-CPU profiles without BPF: `perf record -g` for the duration, then
--- `perf script` folded with perf_manual.fold (stackcollapse-perf.pl rules,
--- kernel frames `_[k]`, JIT frames `_[j]`). Lost samples come from
--- `perf report --stats`; frame pointer use of the binaries perf named is
--- checked with perf_manual.sym.
local pstat = require('posix.sys.stat')
local dirent = require('posix.dirent')
local unistd = require('posix.unistd')
local sys = require('perf_manual.sys')
local util = require('perf_manual.util')
local profilers = require('perf_manual.profilers')

local M = {}

local function slurp(path)
  local s = util.readfile(path)
  return s and util.trim(s) or ''
end

M.perf = os.getenv('PERF') or 'perf'

local function run(argv, out, err)
  local pid, serr = sys.spawn(argv, { stdout = out or 'null', stderr = err or 'null' })
  if not pid then return nil, serr end
  local how, code = sys.wait(pid)
  return how == 'exited' and code == 0, how, code
end

--- true | false, why
function M.available()
  local ok = run({ M.perf, '--version' })
  if not ok then return false, "'perf' (Debian package linux-perf) is not installed or does not run" end
  return true
end

local Session = {}
Session.__index = Session

--- Starts `perf record -g` at opts.freq (99) on opts.pid, opts.cgroup (a
--- path under the cgroup v2 root) or every CPU, for opts.duration seconds.
function M.start(opts)
  local dir = os.tmpname()
  os.remove(dir)
  local mok, merr = pstat.mkdir(dir, 448) -- 0700: perf.data holds other processes' samples
  if not mok then return nil, 'cannot create ' .. dir .. ': ' .. tostring(merr) end
  local s = setmetatable({ dir = dir, data = dir .. '/perf.data', freq = opts.freq or 99,
                           t0 = sys.now(), system_wide = not opts.pid }, Session)
  local argv = { M.perf, 'record', '-F', tostring(s.freq), '-g', '-o', s.data }
  if opts.pid then
    argv[#argv + 1] = '-p'; argv[#argv + 1] = tostring(opts.pid)
  else
    argv[#argv + 1] = '-a'
    -- perf wants the event named before the cgroup it applies to
    if opts.cgroup then
      for _, a in ipairs({ '-e', 'cpu-clock', '-G', opts.cgroup }) do argv[#argv + 1] = a end
    end
  end
  for _, a in ipairs({ '--', 'sleep', tostring(opts.duration) }) do argv[#argv + 1] = a end
  local pid, err = sys.spawn(argv, { stdout = 'null', stderr = dir .. '/record.err' })
  if not pid then s:close() return nil, err end
  s.pid = pid
  return s
end

--- Nothing to do while perf records (perf tracks mappings itself).
function Session.poll() end

--- True while perf record is still running.
function Session:running()
  if not self.pid or self.status then return false end
  local how, code = sys.wait(self.pid, true)
  if how == 'running' then return true end
  self.status = { how, code }  -- reaped here: keep what stop() reports
  return false
end

M.PARANOID = '/proc/sys/kernel/perf_event_paranoid'

--- Why an unprivileged perf record got nothing: the kernel's
--- perf_event_paranoid level (perf only writes an empty perf.data then, and
--- `perf script` says "zero-sized data"). nil when that is not the reason.
function M.paranoid_reason(system_wide, euid, level)
  euid = euid or sys.geteuid()
  if euid == 0 then return nil end
  level = level or tonumber(slurp(M.PARANOID))
  if not level then return nil end
  -- >= 1: no CPU-wide events; >= 2: no kernel profiling (perf record -g
  -- samples the kernel too); > 2 (Debian): no perf_event_open at all
  local need = system_wide and 0 or 1
  if level <= need then return nil end
  return string.format('kernel.perf_event_paranoid is %d: without root (or CAP_PERFMON) a %s profile needs it '
    .. 'at %d or below (sysctl kernel.perf_event_paranoid=%d, or run perf_manual with sudo)',
    level, system_wide and 'system-wide' or 'per-process', need, need)
end

--- Ends the recording (early on Ctrl-C), folds it and returns the profile.
function Session:stop()
  if self:running() then sys.kill(self.pid, 2) end
  local how, code
  if self.status then how, code = self.status[1], self.status[2] else how, code = sys.wait(self.pid) end
  self.duration = sys.now() - self.t0
  self.pid = nil
  local f = io.open(self.data)
  local size = f and f:seek('end') or 0
  if f then f:close() end
  if not f or size == 0 then
    local why = slurp(self.dir .. '/record.err')
    self:close()
    local paranoid = M.paranoid_reason(self.system_wide)
    if paranoid then return nil, 'perf record was refused: ' .. paranoid end
    return nil, 'perf record failed (' .. tostring(how) .. ' ' .. tostring(code) .. '): ' .. why
  end
  local script = self.dir .. '/script.txt'
  -- no period field: the folded counts are samples, not nanoseconds
  local ok = run({ M.perf, 'script', '-i', self.data, '-F', 'comm,pid,tid,time,event,ip,sym,dso' },
                 script, self.dir .. '/script.err')
  if not ok then
    local why = slurp(self.dir .. '/script.err')
    self:close()
    return nil, 'perf script failed: ' .. why
  end
  local fold = require('perf_manual.fold')
  local fp, stats = fold.from_perf_script({ path = script }, { kernel = true, jit = true })
  if not fp then self:close() return nil, 'perf script: ' .. tostring(stats) end

  -- lost samples: perf prints a LOST line only when some were lost
  local lost
  if run({ M.perf, 'report', '-i', self.data, '--stats' }, self.dir .. '/stats.txt') then
    local text = util.readfile(self.dir .. '/stats.txt') or ''
    lost = 0
    for n in text:gmatch('LOST[_%a]* events:%s*(%d+)') do lost = lost + tonumber(n) end
  end
  -- the binaries perf named, for the frame pointer hint
  local binaries, seen = {}, {}
  local text = util.readfile(script) or ''
  local sym = require('perf_manual.sym')
  for path in text:gmatch('%((/[^)\n]+)%)\n') do
    if not seen[path] then
      seen[path] = true
      local b = sym.binary(path)
      if b and b.info then
        binaries[#binaries + 1] = { path = b.path, name = b.name, frame_pointers = b.frame_pointers,
          symbols = b.symelf and 'debug' or b.info.has_symtab and 'symtab' or 'dynsym' }
      end
    end
  end
  table.sort(binaries, function(a, b) return a.path < b.path end)

  local stacks = {}
  for _, e in ipairs(fp:stacks()) do
    local frames = {}
    for part in (e[1] .. ';'):gmatch('(.-);') do frames[#frames + 1] = part end
    -- perf's default callchain depth limit is 127 frames, as for BPF
    stacks[#stacks + 1] = { frames = frames, count = e[2], truncated = #frames - 1 >= 127 }
  end
  fp:close()
  self:close()
  return profilers.new {
    kind = 'oncpu', source = 'perf', unit = 'samples', freq = self.freq, duration = self.duration,
    stacks = stacks, lost_samples = lost, lost_why = 'perf report --stats failed',
    bad_lines = stats.bad, binaries = binaries,
  }
end

function Session:close()
  if self.pid then sys.kill(self.pid, 9) sys.wait(self.pid) self.pid = nil end
  if self.dir then
    local ok, files = pcall(dirent.dir, self.dir)
    for _, f in ipairs(ok and files or {}) do
      if f ~= '.' and f ~= '..' then os.remove(self.dir .. '/' .. f) end
    end
    unistd.rmdir(self.dir)
    self.dir = nil
  end
end

return M
