--- What a drill-down found, in a few lines for the console and the
--- timeline: the hot path of a profile, the wait breakdown of the target,
--- the lock and its waiters, the disk and its latency. Plain results in,
--- lines out.
local waits = require('perf_manual.waits')
local findings = require('perf_manual.analyzers.findings')

local M = {}

local fmt = string.format

-- kernel scheduler and futex frames every blocked stack ends in: they say
-- nothing about who waits
local NOISE = { '^__schedule', '^schedule', '^finish_task_switch', '^__traceiter', '^bpf_',
  '^futex_', '^__futex', '^do_futex', '^__x64_sys', '^do_syscall', '^entry_SYSCALL', '^syscall$',
  '^__GI___lll_lock_wait', '^__lll_lock_wait', '^___pthread_mutex_lock', '^__pthread_mutex_lock',
  '^pthread_mutex_lock', '^futex_wait', '^__futex_abstimed_wait' }

local function noise(f)
  for _, p in ipairs(NOISE) do if f:match(p) then return true end end
  return false
end

--- The heaviest path of folded stacks ("a;b;c 12" lines): from the root,
--- the child holding the most samples at each level. Returns the frames
--- (root first) and the share of all samples that reach the path's end.
function M.hot_path(folded)
  if type(folded) ~= 'string' then return nil end
  local stacks, total = {}, 0
  for line in folded:gmatch('[^\n]+') do
    local st, n = line:match('^(.*) (%d+)$')
    if st then
      local frames = {}
      for f in st:gmatch('[^;]+') do frames[#frames + 1] = f end
      stacks[#stacks + 1] = { frames = frames, n = tonumber(n) }
      total = total + tonumber(n)
    end
  end
  if total == 0 then return nil end
  local path, live, weight = {}, stacks, total
  for depth = 1, 256 do
    local by, order = {}, {}
    for _, s in ipairs(live) do
      local f = s.frames[depth]
      if f then
        if not by[f] then by[f] = { n = 0, list = {} }; order[#order + 1] = f end
        by[f].n = by[f].n + s.n
        by[f].list[#by[f].list + 1] = s
      end
    end
    local best
    for _, f in ipairs(order) do if not best or by[f].n > by[best].n then best = f end end
    -- stop where the path no longer holds most of what reached it
    if not best or by[best].n < weight * 0.5 then break end
    path[#path + 1] = best
    live, weight = by[best].list, by[best].n
  end
  return path, weight / total
end

--- Lines for a CPU drill-down: the hot path's last frames, the hottest
--- threads from the accounting.
function M.cpu(profile, tsa)
  local out = {}
  local path, share = M.hot_path(profile and profile.folded)
  if path and #path > 0 then
    local tail = {}
    for i = math.max(1, #path - 4), #path do tail[#tail + 1] = path[i] end
    out[#out + 1] = fmt('hot path (%.0f%% of samples): %s%s', share * 100, #path > 5 and '... ' or '',
      table.concat(tail, ' > '))
  end
  local hot = findings.hot_function(profile)
  if hot and hot.share then
    out[#out + 1] = fmt('hottest function: %s (%.0f%% of samples)', tostring(hot.name), hot.share * 100)
  end
  if type(tsa) == 'table' and type(tsa.threads) == 'table' then
    local list = {}
    for _, th in ipairs(tsa.threads) do list[#list + 1] = th end
    table.sort(list, function(a, b) return (a.shares and a.shares.cpu or 0) > (b.shares and b.shares.cpu or 0) end)
    local parts = {}
    for i = 1, math.min(3, #list) do
      local th = list[i]
      parts[#parts + 1] = fmt('%s %s %.0f%%', tostring(th.comm), tostring(th.tid), th.shares and th.shares.cpu or 0)
    end
    if #parts > 0 then out[#out + 1] = 'hottest threads (on CPU, % of wall time): ' .. table.concat(parts, ', ') end
  end
  if #out == 0 then out[1] = 'the profile has no samples of the target' end
  return out
end

--- Lines for the latency path: where the blocked time goes and what it
--- waits on, from the accounting and (when it has one) the off-CPU profile.
function M.wait(tsa, offcpu)
  local out = {}
  if type(tsa) == 'table' and type(tsa.total) == 'table' then
    local d = findings.dominant_wait(tsa)
    local sh, parts = d and d.shares or tsa.total.shares or {}, {}
    for _, st in ipairs(waits.STATES) do
      local x = tonumber(sh[st]) or 0
      if x >= 1 then parts[#parts + 1] = fmt('%s %.0f%%', waits.LABELS[st], x) end
    end
    local idle = d and (tonumber(tsa.total.threads) or #(tsa.threads or {})) - d.threads or 0
    out[#out + 1] = (idle > 0 and fmt('wall time (%d thread(s) idle all along left out): ', idle) or 'wall time: ')
      .. table.concat(parts, ', ')
    local n = 0
    for _, w in ipairs(tsa.waits or {}) do
      -- a thread idle all along (the feeder asleep between writes) says nothing here
      if n >= 3 then break end
      if not (findings.idle_wait(w) and (tonumber(w.share) or 0) >= 95) then
        n = n + 1
        out[#out + 1] = fmt('waits on %s (%s): %.0f%% of wall time', tostring(w.text or w.object
        or (tostring(w.syscall or '?') .. (w.fd and (' fd ' .. tostring(w.fd)) or ''))),
        waits.LABELS[w.reason] or tostring(w.reason), tonumber(w.share) or 0)
      end
    end
  end
  local br = type(offcpu) == 'table' and type(offcpu.by_reason) == 'table' and offcpu.by_reason
  if br and type(br.reasons) == 'table' then
    for i, r in ipairs(br.reasons) do
      if i > 3 then break end
      local site = type(r.sites) == 'table' and r.sites[1]
      out[#out + 1] = fmt('off-CPU profile: %s %.0f%% of blocked time%s',
        waits.LABELS[r.reason] or tostring(r.label or r.reason),
        (tonumber(r.share) or 0) * 100, site and (', mostly from ' .. tostring(site.site or site.name)) or '')
    end
  end
  if #out == 0 then out[1] = 'no thread-state accounting of the target' end
  return out
end

-- the first frame of a waiter's user stack that is the program's own
local function caller(frames)
  for _, f in ipairs(frames or {}) do
    if not noise(f) and not f:match('^%[') and not f:match('^0x') then return f end
  end
  return nil
end

--- Lines for a lock drill-down: the hottest futex by name, its wait-time
--- p50/p99, the waiting threads and their call sites, the releasing
--- (holding) threads and theirs, from the futex wake side.
function M.lock(trace)
  local out = {}
  local list = type(trace) == 'table' and trace.futex or nil
  if type(list) ~= 'table' or #list == 0 then
    return { 'no futex waits of the target in the window' }
  end
  local top = list[1]
  for _, f in ipairs(list) do if (f.total_ns or 0) > (top.total_ns or 0) then top = f end end
  local addr = top.uaddr and fmt('0x%x', top.uaddr) or '?'
  local pcts = ''
  if top.p99_us then
    pcts = fmt(', wait p50 %.2f ms, p99 %.2f ms', (top.p50_us or 0) / 1e3, top.p99_us / 1e3)
  end
  out[#out + 1] = fmt('hottest lock: %s, %d waits, %.3f s waited%s',
    top.name and fmt('%s at %s', top.name, addr) or (top.symbol and (top.symbol .. ' ') or '') .. addr,
    top.count or 0, (top.total_ns or 0) / 1e9, pcts)
  local function sites(list_)
    local names, seen = {}, {}
    for _, s in ipairs(list_ or {}) do
      local c = s.caller_frame or caller(s.frames)
      if c and not seen[c] then seen[c] = true; names[#names + 1] = c end
      if #names >= 3 then break end
    end
    return names
  end
  local ws = sites(top.stacks)
  if #ws > 0 then
    out[#out + 1] = 'waiters call it from: ' .. table.concat(ws, ', ')
  elseif top.stacks and #top.stacks > 0 then
    out[#out + 1] = 'waiters\' user stacks stop inside the C library (no frame pointers there): call sites not known'
  end
  local wk = type(top.wakers) == 'table' and top.wakers or {}
  if #wk > 0 then
    local hs = sites(top.wake_sites)
    out[#out + 1] = fmt('holders: %d thread%s release it (%d wakes)%s', #wk, #wk == 1 and '' or 's', top.wakes or 0,
      #hs > 0 and (', from ' .. table.concat(hs, ', ')) or '')
  end
  return out
end

--- Lines for a disk drill-down: the slowest device and the sync calls.
function M.disk(io, syscall)
  local out = {}
  local worst, wname
  for _, d in ipairs(type(io) == 'table' and (io.devices or io.rows) or {}) do
    local p = findings.p99_ms(d)
    if p and (not worst or p > worst) then worst, wname = p, d.name or d.device or d.dev end
  end
  if worst then out[#out + 1] = fmt('block I/O latency p99 %.1f ms on %s', worst, tostring(wname)) end
  if type(syscall) == 'table' then
    for _, r in ipairs(syscall.rows or syscall.syscalls or {}) do
      local name = r.name or r.syscall
      if name and (r.count or 0) > 0 then
        out[#out + 1] = fmt('%s: %d calls%s', tostring(name), r.count,
          r.total_ns and fmt(', %.3f s in the call', r.total_ns / 1e9) or '')
      end
      if #out >= 4 then break end
    end
  end
  if #out == 0 then out[1] = 'no block I/O of the target in the window' end
  return out
end

return M
