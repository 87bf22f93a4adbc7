--- Text of thread-state accounting (perf_manual.measure.tsa results): a
--- stacked bar per thread (one letter per state), the states table and the
--- top waits, "waits on ...: 75% of wall time".
local waits = require('perf_manual.waits')

local M = {}

M.BAR = 50

--- One letter per state, for the bars and their legend.
M.LETTERS = { cpu = 'C', runq = 'R', lock = 'L', io = 'D', net = 'N', ipc = 'P', poll = 'E', sleep = 'S',
  memory = 'M', child = 'W', other = '?' }

--- A bar of `width` characters from shares (0..100 per state), largest
--- remainder rounding so the letters add up to the width.
function M.bar(shares, width)
  width = width or M.BAR
  local cells, rest, used = {}, {}, 0
  for i, k in ipairs(waits.STATES) do
    local exact = (shares[k] or 0) / 100 * width
    cells[k] = math.floor(exact)
    used = used + cells[k]
    rest[#rest + 1] = { k = k, frac = exact - cells[k], i = i }
  end
  local total = 0
  for _, k in ipairs(waits.STATES) do total = total + (shares[k] or 0) end
  local want = math.min(width, math.floor(total / 100 * width + 0.5))
  table.sort(rest, function(a, b)
    if a.frac ~= b.frac then return a.frac > b.frac end
    return a.i < b.i
  end)
  for _, r in ipairs(rest) do
    if used >= want then break end
    cells[r.k] = cells[r.k] + 1
    used = used + 1
  end
  local out = {}
  for _, k in ipairs(waits.STATES) do out[#out + 1] = string.rep(M.LETTERS[k], cells[k]) end
  return table.concat(out) .. string.rep(' ', width - used)
end

local function pct(x) return string.format('%.0f%%', x) end

-- the two largest states of a thread: "pipe 74%, sleep 25%"
local function top_states(shares, n)
  local list = {}
  for _, k in ipairs(waits.STATES) do
    if (shares[k] or 0) >= 0.5 then list[#list + 1] = k end
  end
  table.sort(list, function(a, b) return shares[a] > shares[b] end)
  local out = {}
  for i = 1, math.min(n or 2, #list) do out[i] = waits.SHORT[list[i]] .. ' ' .. pct(shares[list[i]]) end
  return table.concat(out, ', ')
end

--- What a wait is, in words: the named object when there is one, else the
--- call and its fd or lock address.
function M.wait_text(w)
  if w.text then return w.text end
  local call = w.syscall or (w.kthread and 'kernel thread') or (w.reason == 'memory' and 'page fault') or 'no syscall'
  local what
  if w.fd then
    what = string.format('%s(fd %d%s)', call, w.fd, w.fd_link and (' ' .. w.fd_link) or '')
  elseif w.addr then
    what = string.format('%s 0x%x%s', call, w.addr, w.futex_op and (' ' .. w.futex_op) or '')
  else
    what = call
    if w.frames and w.frames[1] then what = what .. ' in ' .. w.frames[1] end
  end
  return waits.SHORT[w.reason] .. ': ' .. what
end

--- The headline of a wait: "waits on X: 75% of wall time".
function M.wait_line(w)
  return string.format('waits on %s: %s of wall time', M.wait_text(w), pct(w.share or 0))
end

local function sum_threads(list)
  local s = { comm = string.format('(%d more)', #list), life_s = 0, states = {}, shares = {} }
  for _, k in ipairs(waits.STATES) do s.states[k] = 0 end
  for _, th in ipairs(list) do
    s.life_s = s.life_s + th.life_s
    for _, k in ipairs(waits.STATES) do s.states[k] = s.states[k] + (th.states[k] or 0) end
  end
  for _, k in ipairs(waits.STATES) do s.shares[k] = s.life_s > 0 and s.states[k] / s.life_s * 100 or 0 end
  return s
end

--- The text of a result. opts.top: threads shown (the rest summed, default 10).
function M.render(r, opts)
  opts = opts or {}
  local top = opts.top or 10
  local out = {}
  local function add(fmt, ...) out[#out + 1] = select('#', ...) > 0 and string.format(fmt, ...) or fmt end
  add('Thread states of %s over %.1f s (%s)', r.target or '?', r.window_s or 0, r.source or '?')
  add('')
  local threads = r.threads or {}
  add('  %-8s %-16s %6s  %-' .. M.BAR .. 's  %s', 'TID', 'COMM', 'LIFE', 'STATES (one letter per 2%)', 'MOSTLY')
  local shown = {}
  for i, th in ipairs(threads) do if i <= top then shown[#shown + 1] = th end end
  for _, th in ipairs(shown) do
    add('  %-8s %-16s %5.1fs  %s  %s', tostring(th.tid), (th.comm or ''):sub(1, 16), th.life_s, M.bar(th.shares),
      top_states(th.shares))
  end
  if #threads > top then
    local rest = {}
    for i = top + 1, #threads do rest[#rest + 1] = threads[i] end
    local s = sum_threads(rest)
    add('  %-8s %-16s %5.1fs  %s  %s', '+', s.comm, s.life_s, M.bar(s.shares), top_states(s.shares))
  end
  local legend = {}
  for _, k in ipairs(waits.STATES) do legend[#legend + 1] = M.LETTERS[k] .. ' ' .. waits.SHORT[k] end
  add('  legend: %s', table.concat(legend, '  '))
  add('')
  local total = r.total or { states = {}, shares = {} }
  add('  %-40s %10s %7s', 'state (all threads)', 'thread-s', 'share')
  for _, k in ipairs(waits.STATES) do
    local s = total.states[k] or 0
    if s > 0 or k == 'cpu' or k == 'runq' then
      add('  %-40s %10.2f %6.1f%%', M.LETTERS[k] .. ' ' .. waits.LABELS[k], s, total.shares[k] or 0)
    end
  end
  add('')
  local n = 0
  for _, w in ipairs(r.waits or {}) do
    if n >= 3 or (w.share or 0) < 1 then break end
    n = n + 1
    local who = #threads > 1 and string.format('  [tid %d %s]', w.tid, w.comm or '') or ''
    add('  %s%s', M.wait_line(w), who)
  end
  if n == 0 then add('  no wait above 1% of a thread\'s time') end
  local q, c = r.quality or {}, r.cost or {}
  local cost = {}
  if c.bpf_cpu_pct then cost[#cost + 1] = string.format('bpf %.2f%% of one CPU', c.bpf_cpu_pct) end
  if c.window_cpu_pct then
    -- the cost of leaving it on, and the one-off parts apart
    cost[#cost + 1] = string.format('tool %.2f%% while on (+%.2f s CPU to load, %.2f s to read)', c.window_cpu_pct,
      c.load_cpu_s or 0, c.end_cpu_s or 0)
  elseif c.user_cpu_pct then
    cost[#cost + 1] = string.format('tool %.2f%%', c.user_cpu_pct)
  end
  add('')
  add('  events %s, lost %s, %d thread(s) from /proc only%s', tostring(q.events_seen or '?'),
    tostring(q.events_lost or '?'), q.threads_from_proc or 0,
    #cost > 0 and ('; cost: ' .. table.concat(cost, ', ')) or '')
  for _, note in ipairs(r.notes or {}) do add('  note: %s', note) end
  return table.concat(out, '\n') .. '\n'
end

--- A few lines for another command's output (use-check's target summary):
--- the busiest threads' bars and the top waits.
function M.summary(r, opts)
  opts = opts or {}
  if type(r) ~= 'table' then return '' end
  if r.available == false then return 'thread states: not measured (' .. tostring(r.why) .. ')\n' end
  local out = { string.format('where the time goes (thread states over %.1f s, legend: %s):', r.window_s or 0,
    'C cpu R runq L lock D io N net P pipe E poll S sleep M mem W child ? other') }
  local threads = r.threads or {}
  for i, th in ipairs(threads) do
    if i > (opts.top or 3) then
      out[#out + 1] = string.format('  ... %d more thread(s)', #threads - i + 1)
      break
    end
    out[#out + 1] = string.format('  %-8s %-16s %s  %s', tostring(th.tid), (th.comm or ''):sub(1, 16), M.bar(th.shares),
      top_states(th.shares))
  end
  local n = 0
  for _, w in ipairs(r.waits or {}) do
    if n >= 2 or (w.share or 0) < 5 then break end
    n = n + 1
    out[#out + 1] = '  ' .. M.wait_line(w) .. (#threads > 1 and string.format('  [tid %d]', w.tid) or '')
  end
  return table.concat(out, '\n') .. '\n'
end

--- The raw books of the tsa tracer (trace --events tsa): closed periods
--- per thread, without the window's edges (the tsa command closes them).
function M.render_books(res)
  local out = { string.format('tsa: %d thread(s), %d wait key(s) (closed periods; `perf_manual tsa` accounts the ' ..
    'whole window)',
    #(res.threads or {}), #(res.waits or {})) }
  local blocked = {}
  for _, w in ipairs(res.waits or {}) do blocked[w.tid] = (blocked[w.tid] or 0) + w.ns end
  local list = {}
  for _, th in ipairs(res.threads or {}) do list[#list + 1] = th end
  table.sort(list, function(a, b) return a.cpu_ns + a.runq_ns > b.cpu_ns + b.runq_ns end)
  out[#out + 1] = string.format('  %-8s %-16s %10s %10s %10s', 'TID', 'COMM', 'CPU ms', 'RUNQ ms', 'BLOCK ms')
  for i, th in ipairs(list) do
    if i > 20 then break end
    out[#out + 1] = string.format('  %-8d %-16s %10.1f %10.1f %10.1f', th.tid, th.comm, th.cpu_ns / 1e6,
      th.runq_ns / 1e6, (blocked[th.tid] or 0) / 1e6)
  end
  return table.concat(out, '\n') .. '\n'
end

return M
