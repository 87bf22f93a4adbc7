-- Ground truth for TCP retransmits in a network namespace the e2e specs make:
-- a shell loop reads the namespace's RetransSegs (/proc/PID/net/snmp, what
-- nstat reads) every 20 ms into a file, each value between two /proc/uptime
-- reads. Retransmits come in bursts (a lost segment stalls the flow on the
-- retransmit timer, then a window's worth goes again), so the truth must
-- cover the very window a tool measured, and a busy machine can delay a read
-- by tens of milliseconds past a single stamp.
local util = require('perf_manual.util')
local sys = require('perf_manual._c.sys')

local S = {}

--- RetransSegs of pid's namespace now, and the CLOCK_MONOTONIC time.
function S.retrans_segs(pid)
  local s = util.readfile('/proc/' .. pid .. '/net/snmp') or ''
  local names, values = s:match('\nTcp: (%a[^\n]*)\nTcp: ([^\n]*)')
  local i, want = 0, nil
  for n in (names or ''):gmatch('%S+') do i = i + 1; if n == 'RetransSegs' then want = i end end
  i = 0
  for v in (values or ''):gmatch('%S+') do i = i + 1; if i == want then return tonumber(v), sys.now() end end
end

--- The poller's samples as { read no earlier than, read no later than, value },
--- in /proc/uptime seconds.
local function samples(file)
  local out = {}
  local f = io.open(file)
  if not f then return out end
  for line in f:lines() do
    local t0, t1, v = line:match('^([%d.]+) ([%d.]+) (%d+)$')
    if t0 then out[#out + 1] = { tonumber(t0), tonumber(t1), tonumber(v) } end
  end
  f:close()
  return out
end

-- The offset that turns CLOCK_MONOTONIC (sys.now) into /proc/uptime seconds.
local function uptime_offset()
  local a = sys.now()
  local up = tonumber(util.readfile('/proc/uptime'):match('^[%d.]+'))
  return up - (a + sys.now()) / 2
end

--- Starts polling pid's namespace into file; returns the poller once its
--- first sample is in (a loaded machine can be slow to start awk), or raises.
function S.start(pid, file)
  local script = string.format([[
while [ -e /proc/%d ]; do
  awk 'BEGIN { getline a < "/proc/uptime"; close("/proc/uptime"); split(a, u0, " ") }
    /^Tcp: [A-Z]/ { for (i = 2; i <= NF; i++) if ($i == "RetransSegs") c = i; next }
    /^Tcp: / { v = $c; getline b < "/proc/uptime"; split(b, u1, " "); print u0[1], u1[1], v; exit }' /proc/%d/net/snmp
  sleep 0.02
done >%s 2>/dev/null & echo $!]], pid, pid, file)
  local p = { pid = tonumber(io.popen(script):read('*l')), file = file, off = uptime_offset() }
  for _ = 1, 500 do
    if #samples(file) > 0 then break end
    sys.sleep(0.01)
  end
  if #samples(file) == 0 then
    S.stop(p)
    error('the RetransSegs poller wrote nothing', 2)
  end
  return p
end

function S.stop(p)
  if p and p.pid then os.execute('kill ' .. p.pid .. ' 2>/dev/null') end
  if p and p.file then os.remove(p.file) end
end

--- Retransmits the namespace counted between CLOCK_MONOTONIC times a and b:
--- the least (samples read surely inside [a, b]) and the most (samples read
--- surely outside it) the counter allows. Waits for the poller to pass b.
function S.count(p, a, b)
  local t0, t1 = a + p.off, b + p.off
  local s = samples(p.file)
  for _ = 1, 300 do
    if #s > 0 and s[#s][1] > t1 then break end
    sys.sleep(0.02)
    s = samples(p.file)
  end
  local before, first, last, after
  for _, x in ipairs(s) do
    if x[2] <= t0 then before = x end
    if x[1] >= t0 and not first then first = x end
    if x[2] <= t1 then last = x end
    if x[1] >= t1 and not after then after = x end
  end
  if not (before and first) then
    error(string.format('the poller began after the window opened (%.2f; first sample %s)', t0,
      s[1] and s[1][1] or 'none'), 2)
  end
  if not (after and last) then
    error(string.format('the poller ended before the window closed (%.2f; last sample %s)', t1,
      s[#s] and s[#s][2] or 'none'), 2)
  end
  return math.max(0, last[3] - first[3]), after[3] - before[3]
end

return S
