--- The kernel log's OOM-killer records (/dev/kmsg) written during a window:
--- who was killed, in which memory cgroup. Counters (oom_kill in
--- /proc/vmstat, memory.events) say how many; only the log says whom.
---
---   local k = kmsg.open()          -- at the window's start: positioned at the end
---   ...
---   local victims = kmsg.oom_victims(k)   -- { { pid, comm, memcg, constraint } }
local fcntl = require('posix.fcntl')
local unistd = require('posix.unistd')

local M = {}

M.path = '/dev/kmsg'

--- Opens the log at its end (records from now on), or nil, why.
function M.open(path)
  local fd, err = fcntl.open(path or M.path, fcntl.O_RDONLY + fcntl.O_NONBLOCK)
  if not fd then return nil, tostring(err) end
  unistd.lseek(fd, 0, unistd.SEEK_END)
  return { fd = fd }
end

--- Parses the OOM records of a list of log messages (the text after `;`):
--- "oom-kill:...,oom_memcg=/x,task_memcg=/x/y,task=NAME,pid=N,uid=U" and
--- "Memory cgroup out of memory: Killed process N (NAME) ..." /
--- "Out of memory: Killed process N (NAME) ...". One victim per pid.
function M.parse_oom(messages)
  local by, out = {}, {}
  local function victim(pid)
    if not by[pid] then
      by[pid] = { pid = pid }
      out[#out + 1] = by[pid]
    end
    return by[pid]
  end
  for _, msg in ipairs(messages) do
    local fields = msg:match('^oom%-kill:(.*)$')
    if fields then
      local pid = tonumber(fields:match(',pid=(%d+)'))
      if pid then
        local v = victim(pid)
        v.comm = v.comm or fields:match('task=([^,]+)')
        v.memcg = fields:match('task_memcg=([^,]+)') or fields:match('oom_memcg=([^,]+)')
        v.constraint = fields:match('constraint=([^,]+)')
      end
    else
      local cg, pid, comm = msg:match('^(.-)[Oo]ut of memory: Killed process (%d+) %(([^)]*)%)')
      if pid then
        local v = victim(tonumber(pid))
        v.comm = v.comm or comm
        v.in_cgroup = cg:match('Memory cgroup') ~= nil or nil
      end
    end
  end
  return out
end

--- Reads the records written since open (or the last call) and returns the
--- OOM victims among them. The handle stays open for more.
function M.oom_victims(h)
  if not h or not h.fd then return {} end
  local msgs = {}
  for _ = 1, 100000 do
    local rec, _, errno = unistd.read(h.fd, 8192)
    -- nil: EAGAIN (no more), or EPIPE (records overwritten: the next read goes on)
    if rec == nil then
      if errno ~= 32 then break end
    elseif rec == '' then
      break
    else
      local msg = rec:match(';([^\n]*)')
      if msg then msgs[#msgs + 1] = msg end
    end
  end
  return M.parse_oom(msgs)
end

function M.close(h)
  if h and h.fd then unistd.close(h.fd); h.fd = nil end
end

return M
