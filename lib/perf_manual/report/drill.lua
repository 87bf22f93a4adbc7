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
  '^pthread_mutex_lock', '^futex_wait', '^__futex_abstimed_wait',
  '^__GI___lll_lock_wake', '^__lll_lock_wake', '^___pthread_mutex_unlock', '^__pthread_mutex_unlock',
  '^pthread_mutex_unlock' }

local function noise(f)
  for _, p in ipairs(NOISE) do if f:match(p) then return true end end
  return false
end

--- The heaviest path of folded stacks ("a;b;c 12" lines): from the root,
--- the child holding the most samples at each level. Returns the frames
--- (root first) and the share of all samples that reach the path's end.
function M.hot_path(folded)
  if type(folded) ~= 'string' then return nil end
  local stacks, total = findings.parse_folded(folded)
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

--- Lines for a CPU drill-down: the hot function and its path, the user
--- vs kernel split (and the kernel path when kernel time is heavy), the
--- hottest threads from the accounting.
function M.cpu(profile, tsa)
  local out = {}
  local c = findings.cpu_culprit(profile, tsa)
  if c and c.hot and c.hot_share then
    out[#out + 1] = fmt('hottest function: %s (%.0f%% of samples)', c.hot, c.hot_share * 100)
  end
  if c and c.path then
    out[#out + 1] = fmt('hot path (%.0f%% of samples): %s', (c.path_share or 0) * 100, c.path)
  end
  if c and c.user_pct then
    out[#out + 1] = fmt('on-CPU samples: %.0f%% user, %.0f%% kernel (%d samples)%s', c.user_pct, c.kernel_pct,
      c.samples,
      c.kernel_path and ('; kernel path ' .. c.kernel_path) or '')
  end
  if c and c.threads then
    local parts = {}
    for i, th in ipairs(c.threads) do parts[i] = fmt('%s %s %.0f%%', tostring(th.comm), tostring(th.tid), th.cpu) end
    out[#out + 1] = 'hottest threads (on CPU, % of wall time = % of one CPU): ' .. table.concat(parts, ', ')
  end
  if #out == 0 then out[1] = 'the profile has no samples of the target' end
  return out
end

--- Lines for the latency path: where the blocked time goes and what it
--- waits on, from the accounting and (when it has one) the off-CPU profile.
function M.wait(tsa, offcpu)
  local out = {}
  local idle = 0
  if type(tsa) == 'table' and type(tsa.total) == 'table' then
    local d = findings.dominant_wait(tsa)
    local sh, parts = d and d.shares or tsa.total.shares or {}, {}
    for _, st in ipairs(waits.STATES) do
      local x = tonumber(sh[st]) or 0
      if x >= 1 then parts[#parts + 1] = fmt('%s %.0f%%', waits.LABELS[st], x) end
    end
    idle = d and (tonumber(tsa.total.threads) or #(tsa.threads or {})) - d.threads or 0
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
      -- the profile covers every thread of the target: said when the line
      -- above left idle ones out, or its shares read as a contradiction
      out[#out + 1] = fmt('off-CPU profile%s: %s %.0f%% of blocked time%s',
        idle > 0 and ' (idle threads included)' or '',
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
      -- a caller scan that stopped inside the C library names no call site
      local c = s.caller_frame
      if c and noise(c) then c = nil end
      c = c or caller(s.frames)
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

--- Lines for a disk drill-down: the threads and files waiting on block
--- I/O (from the accounting, when given), the sync and write calls, the
--- device's latency and write size.
function M.disk(io, syscall, tsa)
  local out = {}
  local c = findings.disk_culprit(tsa, io, syscall)
  if c and c.file then
    local names = {}
    for i, f in ipairs(c.files) do
      if i > 3 then break end
      names[#names + 1] = fmt('%s (%d thread%s, %.0f%%)', f.path, f.threads, f.threads == 1 and '' or 's',
        f.share / f.threads)
    end
    out[#out + 1] = fmt('%d thread%s wait in %s %.0f%% of their time on: %s%s', c.threads, c.threads == 1 and '' or 's',
      tostring(c.syscall or 'I/O'), c.io_pct, table.concat(names, ', '),
      #c.files > 3 and fmt(' and %d other files', #c.files - 3) or '')
  end
  for i, x in ipairs(c and c.calls or {}) do
    if i > 3 then break end
    out[#out + 1] = fmt('%s: %d calls, %.0f/s, %.3f ms each on average, %.3f s in the call', x.name, x.count,
      x.rate or 0, x.avg_ms or 0, x.total_ns / 1e9)
  end
  if c and c.p99_ms then
    out[#out + 1] = fmt('block I/O latency p50 %.2f ms, p99 %.1f ms on %s, %.1f requests in flight on average %s',
      c.p50_ms or 0, c.p99_ms, tostring(c.device), c.inflight or 0, findings.queue_phrase(c))
  end
  if c and c.write_size then
    out[#out + 1] = fmt('block writes: %.0f/s, size p50 %s (mean %.1f KiB)%s%s', c.writes_per_s or 0, c.write_size,
      c.write_mean / 1024, c.sync_pct and fmt(', %.0f%% sync', c.sync_pct) or '',
      c.flushes_per_s and fmt(', %.0f cache flushes/s', c.flushes_per_s) or '')
  end
  if #out == 0 then out[1] = 'no block I/O of the target in the window' end
  return out
end

--- Lines for a network drill-down: the fault of the target's TCP (a
--- listener that stops accepting, loss, refused connects, a slow peer)
--- with its 4-tuple, from the net trace and the thread states.
function M.network(trace, tsa, use)
  local m = type(use) == 'table' and type(use.measures) == 'table' and use.measures or {}
  return require('perf_manual.analyzers.netuse').drill_lines(trace, tsa, type(m.bpf) == 'table' and m.bpf.net or nil)
end

return M
