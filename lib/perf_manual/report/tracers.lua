--- Tracer results as text: one renderer per tracer (syscall, sched, io,
--- lock, offcpu, red), and the measurement-quality line they all end with.
--- Tracers return plain tables and draw nothing; the caller that wants
--- text (trace, suites, investigation) renders here:
---
---   io.write(require('perf_manual.report.tracers').render('sched', t:stop(), { top = 5 }))
local hist = require('perf_manual.hist')
local text = require('perf_manual.report.hist')
local charts = require('perf_manual.report.charts')
local util = require('perf_manual.util')

local M = {}

local fmt = string.format

--- One line of measurement quality (a tracer result's `quality`).
function M.quality_line(q)
  local parts = {}
  parts[#parts + 1] = 'attach ' .. (q.attach_path or '?')
  if q.events_seen then parts[#parts + 1] = fmt('events %d', q.events_seen) end
  parts[#parts + 1] = fmt('lost %s', q.events_lost and fmt('%d', q.events_lost) or 'not measured')
  if q.events_missed and q.events_missed > 0 then parts[#parts + 1] = fmt('unpaired %d', q.events_missed) end
  if q.bpf_cpu_pct then
    parts[#parts + 1] = fmt('bpf cost %s (%.2f%% of a CPU%s, sampled %.0f%% of the time)',
      util.fmt_duration(q.bpf_run_time_ns / 1e9), q.bpf_cpu_pct,
      q.bpf_ns_per_run and fmt(', %.0f ns/run', q.bpf_ns_per_run) or '', (q.bpf_stats_coverage or 0) * 100)
  else
    parts[#parts + 1] = 'bpf cost ' .. (q.bpf_cost_note or 'not measured')
  end
  if q.self_cpu_pct then parts[#parts + 1] = fmt('tool cpu %.2f%%', q.self_cpu_pct) end
  if q.detached then
    -- say when, and that every rate is over the attached time only
    parts[#parts + 1] = q.detached_after_s
      and fmt('DETACHED after %s: %s; counts and rates cover only the first %s (while attached)',
        util.fmt_duration(q.detached_after_s), q.detached, util.fmt_duration(q.detached_after_s))
      or ('DETACHED: ' .. q.detached)
  end
  return table.concat(parts, ', ')
end

local function quality(out, res)
  if res.quality then out[#out + 1] = 'quality: ' .. M.quality_line(res.quality) .. '\n' end
end

local function ns_as(div, prec)
  return function(v) return v and fmt('%.' .. prec .. 'f', v / div) or '-' end
end

local function hex(addr)
  if type(addr) == 'string' then return addr end
  return fmt('0x%x', addr)
end

local R = {}

--- syscall: top table (like syscount -L), errors, and the latency histogram
--- of all traced syscalls. opts.top (default 10).
function R.syscall(res, opts)
  local us = ns_as(1e3, 3)
  local top = opts.top or 10
  local out = {}
  local rows = {}
  for i = 1, math.min(top, #res.syscalls) do rows[i] = res.syscalls[i] end
  if #rows == 0 then
    out[#out + 1] = 'no syscalls seen\n'
  elseif res.mode == 'count' then
    out[#out + 1] = text.table(rows, {
      { key = 'name', title = 'SYSCALL', align = 'l' },
      { key = 'count', title = 'COUNT' },
    })
  else
    out[#out + 1] = text.table(rows, {
      { key = 'name', title = 'SYSCALL', align = 'l' },
      { key = 'count', title = 'COUNT' },
      { key = 'errors', title = 'ERRORS' },
      { key = 'total_ns', title = 'TIME (us)', fmt = us },
      { key = 'avg_ns', title = 'AVG (us)', fmt = us },
      { key = 'p99_ns', title = 'P99 (us)', fmt = us },
    })
    local errl = {}
    for _, r in ipairs(rows) do
      for _, e in ipairs(r.errnos) do
        errl[#errl + 1] = fmt('  %-16s %-12s %d', r.name, e.name, e.count)
      end
    end
    if #errl > 0 then out[#out + 1] = 'errors:\n' .. table.concat(errl, '\n') .. '\n' end
    if #res.buckets > 0 then
      out[#out + 1] = '\nsyscall latency, all traced syscalls:\n'
      out[#out + 1] = text.render_log2(res.buckets, { unit = 'nsecs' })
    end
  end
  if #res.syscalls > top then
    out[#out + 1] = fmt('(%d more syscalls; %d calls in total)\n', #res.syscalls - top, res.total.count)
  end
  quality(out, res)
  return table.concat(out)
end

--- sched: the run-queue latency histogram (per group when grouped) and the
--- run-queue length distribution. opts.top groups (default 10).
function R.sched(res, opts)
  local function v1(v) return v and fmt('%.1f', v) or '-' end
  local out = {}
  if res.count == 0 then
    out[#out + 1] = 'run-queue latency: no wakeups of the target seen\n'
  else
    out[#out + 1] = fmt('run-queue latency (%s): %d wakeups, avg %.1f, p50 %s, p99 %s\n',
      res.unit, res.count, res.avg, v1(res.p50), v1(res.p99))
    if res.per == 'all' then
      out[#out + 1] = text.render_log2(res.buckets, { unit = res.unit })
    else
      local top = opts.top or 10
      for i = 1, math.min(top, #res.groups) do
        local g = res.groups[i]
        local label = res.per == 'cpu' and ('cpu = ' .. g.cpu)
          or fmt('pid = %d %s', g.pid, g.comm or '(exited)')
        out[#out + 1] = fmt('\n%s  (%d wakeups, avg %.1f %s)\n', label, g.count, g.avg, res.unit)
        out[#out + 1] = text.render_log2(g.buckets, { unit = res.unit })
      end
      if #res.groups > top then out[#out + 1] = fmt('(%d more groups)\n', #res.groups - top) end
    end
  end
  if res.runqlen then
    local r = res.runqlen
    if r.samples > 0 then
      out[#out + 1] = fmt('\nrun-queue length (running task included), %d samples at %d Hz per CPU: '
        .. 'mean %.2f, a task waiting in %.1f%% of samples\n',
        r.samples, r.sample_hz, r.mean, r.waiting_pct)
      out[#out + 1] = text.render_linear(r.buckets, { unit = 'runqlen' })
    else
      out[#out + 1] = '\nrun-queue length: no samples\n'
    end
  elseif res.runqlen_note then
    out[#out + 1] = '\nrun-queue length: ' .. res.runqlen_note .. '\n'
  end
  quality(out, res)
  return table.concat(out)
end

--- io: one table per (disk, op), then the latency and size histograms per
--- disk, biolatency-style. opts.sizes = false hides sizes.
function R.io(res, opts)
  local us = ns_as(1e3, 1)
  local out = {}
  if #res.rows == 0 then
    out[#out + 1] = 'no block I/O completed\n'
  else
    out[#out + 1] = text.table(res.rows, {
      { key = 'device', title = 'DISK', align = 'l' },
      { key = 'op', title = 'OP', align = 'l' },
      { key = 'count', title = 'COUNT' },
      { key = 'iops', title = 'IOPS', fmt = function(v) return v and fmt('%.1f', v) end },
      { key = 'bytes_per_s', title = 'BYTES/s', fmt = function(v) return v and util.fmt_bytes(v) end },
      { key = 'mean_ns', title = 'AVG (us)', fmt = us },
      { key = 'p99_us', title = 'P99 (us)', fmt = function(v) return v and fmt('%.1f', v) end },
      { key = 'max_ns', title = 'MAX (us)', fmt = us },
      { key = 'errors', title = 'ERRORS' },
    })
    for _, d in ipairs(res.devices) do
      out[#out + 1] = fmt('\ndisk = %s (%s): block I/O latency, issue to completion\n', d.device, d.dev)
      out[#out + 1] = text.render_log2(d.buckets, { unit = 'usecs' })
      if opts.sizes ~= false then
        out[#out + 1] = fmt('\ndisk = %s: request size\n', d.device)
        out[#out + 1] = text.render_log2(d.size_buckets, { unit = 'bytes' })
      end
    end
  end
  quality(out, res)
  return table.concat(out)
end

--- lock: futex waits per address and per thread, the wait histogram of the
--- busiest futex, kernel locks, and the USE Mutex row. opts.top (default 10).
function R.lock(res, opts)
  local ms, us = ns_as(1e6, 3), ns_as(1e3, 1)
  local function pct(x) return x and fmt('%.1f%%', x * 100) or '-' end
  local top = opts.top or 10
  local out = {}
  local function head(list) local t = {} for i = 1, math.min(top, #list) do t[i] = list[i] end return t end
  for _, n in ipairs(res.notes or {}) do out[#out + 1] = n .. '\n' end
  if res.futex_traced ~= false then
    if #res.futex == 0 then
      out[#out + 1] = 'no futex waits\n'
    else
      out[#out + 1] = 'futex waits by address:\n'
      out[#out + 1] = text.table(head(res.futex), {
        { key = 'tgid', title = 'PID' },
        { key = 'uaddr', title = 'FUTEX', align = 'l', fmt = hex },
        { key = 'kind', title = 'KIND', align = 'l' },
        { key = 'count', title = 'WAITS' },
        { key = 'total_ns', title = 'TOTAL (ms)', fmt = ms },
        { key = 'mean_ns', title = 'AVG (us)', fmt = us },
        { key = 'max_ns', title = 'MAX (us)', fmt = us },
        { key = 'share', title = 'SHARE', fmt = pct },
        { key = 'results', title = 'TIMEOUTS', fmt = function(v) return tostring(v.etimedout) end },
        { key = 'results', title = 'EAGAIN', fmt = function(v) return tostring(v.eagain) end },
      })
      out[#out + 1] = '\nfutex waits by thread:\n'
      out[#out + 1] = text.table(head(res.threads), {
        { key = 'tgid', title = 'PID' },
        { key = 'pid', title = 'TID' },
        { key = 'comm', title = 'COMM', align = 'l' },
        { key = 'count', title = 'WAITS' },
        { key = 'total_ns', title = 'TOTAL (ms)', fmt = ms },
        { key = 'wait_share', title = 'WAITING', fmt = pct },
        { key = 'errors', title = 'ERRORS' },
      })
      local f = res.futex[1]
      out[#out + 1] = fmt('\nfutex %s%s (pid %d): wait time%s\n', hex(f.uaddr), f.name and (' ' .. f.name) or '',
        f.tgid,
        f.p99_us and fmt(', p50 %.0f us, p99 %.0f us', f.p50_us or 0, f.p99_us) or '')
      out[#out + 1] = text.render_log2(hist.log2_buckets(f.slots), { unit = 'usecs' })
      if f.wakes and f.wakes > 0 then
        local who = {}
        for i = 1, math.min(8, #f.wakers) do who[i] = fmt('%d (%d)', f.wakers[i].pid, f.wakers[i].count) end
        out[#out + 1] = fmt('  released by %d thread%s, %d wakes: tid (wakes) %s%s\n', #f.wakers,
          #f.wakers == 1 and '' or 's', f.wakes, table.concat(who, ', '), #f.wakers > 8 and ', ...' or '')
        for i = 1, math.min(3, #f.wake_sites) do
          local s = f.wake_sites[i]
          out[#out + 1] = fmt('  waking call site #%d: %d wakes from %s\n', i, s.count,
            s.caller_frame or (s.frames and table.concat(s.frames, ' <- ')) or '?')
        end
      end
      for i = 1, math.min(3, #f.stacks) do
        local s = f.stacks[i]
        out[#out + 1] = fmt('  waiting stack #%d: %d waits, %s ms\n', i, s.count, ms(s.total_ns))
        for j, a in ipairs(s.addrs or {}) do
          local name = s.frames and s.frames[j]
          out[#out + 1] = fmt('    %s%s\n', type(a) == 'number' and fmt('0x%x', a) or a,
            name and ('  ' .. name) or '')
        end
      end
    end
  end
  if res.kernel_traced ~= false then
    if #res.kernel == 0 then
      out[#out + 1] = '\nno kernel lock contention\n'
    else
      out[#out + 1] = '\nkernel lock contention:\n'
      out[#out + 1] = text.table(head(res.kernel), {
        { key = 'addr', title = 'LOCK', align = 'l', fmt = hex },
        { key = 'kind', title = 'KIND', align = 'l' },
        { key = 'count', title = 'WAITS' },
        { key = 'total_ns', title = 'TOTAL (us)', fmt = us },
        { key = 'mean_ns', title = 'AVG (us)', fmt = us },
        { key = 'max_ns', title = 'MAX (us)', fmt = us },
      })
    end
  end
  local u = res.use
  if u and res.futex_traced ~= false then
    out[#out + 1] = fmt('\nUSE Mutex: utilisation %s of thread time waiting (%s), saturation %s waiters'
      .. ' on average, max %s at once, errors %d (timeouts %d, EDEADLK %d, EOWNERDEAD %d, other %d)\n',
      pct(u.utilisation), u.utilisation_basis,
      u.saturation.mean_waiters and fmt('%.2f', u.saturation.mean_waiters) or '-',
      u.saturation.max_waiters and tostring(u.saturation.max_waiters) or 'not measured',
      u.errors.total, u.errors.by_kind.etimedout, u.errors.by_kind.edeadlk, u.errors.by_kind.eownerdead,
      u.errors.by_kind.other)
  end
  quality(out, res)
  return table.concat(out)
end

--- lockhold: per pthread lock, the share of the window it was held, its
--- hold-time figures and the function that held it; the hold-time
--- histogram of the busiest. opts.top (default 10).
function R.lockhold(res, opts)
  local us = ns_as(1e3, 1)
  local top = opts.top or 10
  local out = {}
  if #(res.missing or {}) > 0 then
    out[#out + 1] = fmt('not traced (not in this C library): %s\n', table.concat(res.missing, ', '))
  end
  for _, n in ipairs(res.sampling_notes or {}) do out[#out + 1] = 'sampling: ' .. n .. '\n' end
  if res.calls_per_s then
    local rate = fmt(res.calls_per_s < 10 and '%.1f' or '%.0f', res.calls_per_s)
    out[#out + 1] = fmt('target: %s lock calls/s through the uprobes (each call traps into the kernel, '
      .. 'sampled or not)\n', rate)
  end
  if (res.sample_every or 1) > 1 or (res.sampled or 0) < (res.calls or 0) then
    out[#out + 1] = fmt('sampled: %d of %d lock calls measured (now 1 in %d), figures scaled\n', res.sampled or 0,
      res.calls or 0, res.sample_every or 1)
  end
  if #res.locks == 0 then
    out[#out + 1] = fmt('no pthread lock held and released (%d lock calls seen)\n', res.calls or 0)
  else
    local list = {}
    for i = 1, math.min(top, #res.locks) do list[i] = res.locks[i] end
    out[#out + 1] = 'pthread lock hold time by lock:\n'
    out[#out + 1] = text.table(list, {
      { key = 'tgid', title = 'PID' },
      { key = 'addr', title = 'LOCK', align = 'l', fmt = hex },
      { key = 'kind', title = 'KIND', align = 'l' },
      { key = 'count', title = 'HOLDS' },
      { key = 'open', title = 'OPEN', fmt = function(v) return tostring(v or 0) end },
      { key = 'share', title = 'HELD', fmt = function(v) return v and fmt('%.1f%%', v * 100) or '-' end },
      { key = 'mean_ns', title = 'AVG (us)', fmt = us },
      { key = 'p99_us', title = 'P99 (us)', fmt = function(v) return v and fmt('%.0f', v) or '-' end },
      { key = 'max_ns', title = 'MAX (us)', fmt = us },
      { key = 'holder', title = 'HOLDER', align = 'l', fmt = function(v) return v or '?' end },
      { key = 'name', title = 'NAME', align = 'l', fmt = function(v) return v or '' end },
    })
    local l = res.locks[1]
    out[#out + 1] = fmt('\nlock %s%s (pid %d): hold time%s\n', hex(l.addr), l.name and (' ' .. l.name) or '', l.tgid,
      l.p50_us and fmt(', p50 %.0f us, p99 %.0f us', l.p50_us, l.p99_us or 0) or '')
    out[#out + 1] = text.render_log2(hist.log2_buckets(l.slots), { unit = 'usecs' })
    for i = 1, math.min(3, #l.sites) do
      local s = l.sites[i]
      out[#out + 1] = fmt('  holding stack #%d: %.1f%% of the held time, %d holds\n', i, 100 * (s.share or 0), s.count)
      for j, a in ipairs(s.addrs or {}) do
        if j > 8 then break end
        out[#out + 1] = fmt('    0x%x  %s\n', a, s.frames and s.frames[j] or '?')
      end
    end
  end
  quality(out, res)
  local ul = res.quality and require('perf_manual.report.profile').unwind_line(res.quality.unwind)
  if ul then out[#out + 1] = ul .. '\n' end
  return table.concat(out)
end

--- offcpu: blocked time per task, then the top stacks as raw addresses (the
--- profiler names them). opts.top (default 10), opts.stacks (default 3).
function R.offcpu(res, opts)
  local function addr_text(a) return type(a) == 'number' and fmt('0x%x', a) or tostring(a) end
  local top, nstacks = opts.top or 10, opts.stacks or 3
  local out = {}
  if #res.entries == 0 then
    out[#out + 1] = fmt('no task blocked longer than %d us\n', res.min_us or 1)
  else
    local rows = {}
    for i = 1, math.min(top, #res.tasks) do rows[i] = res.tasks[i] end
    out[#out + 1] = text.table(rows, {
      { key = 'tgid', title = 'PID' },
      { key = 'pid', title = 'TID' },
      { key = 'comm', title = 'COMM', align = 'l' },
      { key = 'count', title = 'BLOCKS' },
      { key = 'total_us', title = 'OFF-CPU (ms)', fmt = function(v) return fmt('%.3f', v / 1e3) end },
    })
    for i = 1, math.min(nstacks, #res.entries) do
      local e = res.entries[i]
      out[#out + 1] = fmt('\n%s (pid %d, tid %d, state %s): %.3f ms in %d blocks, max %.3f ms\n',
        e.comm, e.tgid, e.pid, e.state, e.total_us / 1e3, e.count, e.max_us / 1e3)
      for _, a in ipairs(e.kern_stack or {}) do out[#out + 1] = '    ' .. addr_text(a) .. ' [k]\n' end
      if e.kern_stack and e.user_stack then out[#out + 1] = '    --\n' end
      for _, a in ipairs(e.user_stack or {}) do out[#out + 1] = '    ' .. addr_text(a) .. '\n' end
    end
  end
  quality(out, res)
  return table.concat(out)
end

--- red (requests): requests, latency percentiles and log2 bars, what was
--- not counted, and the measurement quality.
function R.red(res)
  local function dur(s) return s and util.fmt_duration(s) or '-' end
  local L = {}
  local function add(f, ...) L[#L + 1] = fmt(f, ...) end
  add('requests %d (%.1f/s)  closed without response %d  in flight %s',
    res.requests, res.rate or 0, res.closed_without_response, tostring(res.conns.pending or '-'))
  if res.latency then
    local parts = {}
    for _, k in ipairs({ 'p50', 'p90', 'p99', 'p99.9', 'max' }) do
      parts[#parts + 1] = k .. ' ' .. dur(res.latency[k])
    end
    add('latency  %s', table.concat(parts, '  '))
    for _, line in ipairs(charts.log2_bars(res.histogram)) do add('  %s', line) end
  else
    add('latency  not measured (no request answered)')
  end
  add('connections %s tracked (%d found at start, %d accepted), %d evicted; calls on other fds: read %d write %d',
    tostring(res.conns.tracked or '-'), res.conns.at_start or 0, res.accepted, res.conns.evicted or 0,
    res.other_fd.read, res.other_fd.write)
  if res.quality then add('quality: %s', M.quality_line(res.quality)) end
  return table.concat(L, '\n') .. '\n'
end

-- the raw books of the tsa tracer; the tsa command draws the full accounting
function R.tsa(res) return require('perf_manual.report.tsa').render_books(res) end

-- address:port, IPv6 in brackets
local function endpoint(a, p)
  return (a:find(':', 1, true) and ('[' .. a .. ']') or a) .. ':' .. p
end

--- net: per-process lifecycle counts and connect latency, retransmits and
--- resets per 4-tuple, drops by kernel reason, listener overflows, and the
--- newest closed connections (tcplife columns). opts.top (default 10),
--- opts.conns (closed connections shown, default 20).
function R.net(res, opts)
  local top = opts.top or 10
  local out = {}
  local function head(list, n) local t = {} for i = 1, math.min(n or top, #list) do t[i] = list[i] end return t end
  local function ms(v) return v and fmt('%.3f', v / 1e6) or '-' end
  local function us1(v) return v and fmt('%.1f', v) or '-' end
  local function who(pid, comm) return pid == 0 and '-' or fmt('%d %s', pid, comm ~= '' and comm or '?') end
  local t = res.total
  out[#out + 1] = fmt('TCP: %d connects (%d failed), %d accepts, %d closes, %s sent / %s received by closed '
    .. 'connections, %d retransmitted segments, %d resets sent / %d received, %d drops\n',
    t.connects, t.connect_fails, t.accepts, t.closes, util.fmt_bytes(t.tx_bytes), util.fmt_bytes(t.rx_bytes),
    t.retrans_segs, t.resets_sent, t.resets_recv, t.drops)
  if #res.procs > 0 then
    out[#out + 1] = '\nper process:\n'
    out[#out + 1] = text.table(head(res.procs), {
      { key = 'pid', title = 'PID', fmt = function(v) return v == 0 and '-' or tostring(v) end },
      { key = 'comm', title = 'COMM', align = 'l', fmt = function(v) return v ~= '' and v or '(unknown owner)' end },
      { key = 'connects', title = 'CONNECTS' },
      { key = 'connect_fails', title = 'FAILED' },
      { key = 'accepts', title = 'ACCEPTS' },
      { key = 'closes', title = 'CLOSES' },
      { key = 'connect_avg_us', title = 'CONN AVG (us)', fmt = us1 },
      { key = 'connect_p99_us', title = 'CONN P99 (us)', fmt = us1 },
      { key = 'tx_bytes', title = 'TX', fmt = util.fmt_bytes },
      { key = 'rx_bytes', title = 'RX', fmt = util.fmt_bytes },
      { key = 'retrans_segs', title = 'RETRANS' },
    })
    if #res.procs > top then out[#out + 1] = fmt('(%d more processes)\n', #res.procs - top) end
  end
  if res.connect.count > 0 then
    out[#out + 1] = fmt('\nconnect latency (SYN sent -> established): %d connects, avg %.1f us, p50 %s, p99 %s us\n',
      res.connect.count, res.connect.avg_us, us1(res.connect.p50_us), us1(res.connect.p99_us))
    out[#out + 1] = text.render_log2(res.connect.buckets, { unit = 'usecs' })
  end
  if #res.flows > 0 then
    out[#out + 1] = '\nretransmits, resets and drops per connection:\n'
    out[#out + 1] = text.table(head(res.flows), {
      { key = 'laddr', title = 'LOCAL', align = 'l', fmt = function(_, f) return f.key:match('^%S+') end },
      { key = 'raddr', title = 'REMOTE', align = 'l', fmt = function(_, f) return f.key:match('%S+$') end },
      { key = 'pid', title = 'PROCESS', align = 'l', fmt = function(_, f) return who(f.pid, f.comm) end },
      { key = 'retrans_segs', title = 'RETRANS SEGS' },
      { key = 'retrans_failed', title = 'FAILED' },
      { key = 'synack_retrans', title = 'SYNACK RETR' },
      { key = 'resets_sent', title = 'RST SENT' },
      { key = 'resets_recv', title = 'RST RECV' },
      { key = 'drops', title = 'DROPS' },
    })
    if #res.flows > top then out[#out + 1] = fmt('(%d more connections)\n', #res.flows - top) end
  end
  if res.drops_traced == false then
    out[#out + 1] = '\ndrops: not traced (no skb:kfree_skb tracepoint)\n'
  elseif #res.drops > 0 then
    out[#out + 1] = '\npacket drops by kernel reason:\n'
    out[#out + 1] = text.table(head(res.drops), {
      { key = 'reason', title = 'REASON', align = 'l' },
      { key = 'count', title = 'DROPS' },
      { key = 'at_traced_sockets', title = 'AT TRACED SOCKETS' },
    })
  end
  local lst = {}
  for _, l in ipairs(res.listeners) do
    if l.accepts > 0 or l.drops > 0 or l.overflows > 0 or (l.listen_drops or 0) > 0 or (l.queue or 0) > 0 then
      lst[#lst + 1] = l
    end
  end
  if #lst > 0 then
    out[#out + 1] = '\nlisteners (accept queue):\n'
    out[#out + 1] = text.table(head(lst), {
      { key = 'port', title = 'PORT' },
      { key = 'pid', title = 'PROCESS', align = 'l', fmt = function(_, l) return who(l.pid, l.comm) end },
      { key = 'accepts', title = 'ACCEPTS' },
      { key = 'listen_drops', title = 'LISTEN DROPS' },
      { key = 'queue', title = 'QUEUE' },
      { key = 'peak_backlog', title = 'PEAK QUEUE' },
      { key = 'max_backlog', title = 'BACKLOG' },
      { key = 'drops', title = 'SKB DROPS' },
    })
  end
  if res.listen_drops_note then out[#out + 1] = res.listen_drops_note .. '\n' end
  local conns = res.conns
  local n = opts.conns or 20
  if #conns > 0 then
    out[#out + 1] = fmt('\nclosed connections (newest %d of %d%s):\n', math.min(n, #conns), #conns,
      (res.conns_left_out or 0) > 0 and fmt(', %d older ones left out', res.conns_left_out) or '')
    local rows = {}
    for i = math.max(1, #conns - n + 1), #conns do rows[#rows + 1] = conns[i] end
    out[#out + 1] = text.table(rows, {
      { key = 'pid', title = 'PID', fmt = function(v) return v == 0 and '-' or tostring(v) end },
      { key = 'comm', title = 'COMM', align = 'l' },
      { key = 'dir', title = 'DIR', align = 'l' },
      { key = 'laddr', title = 'LADDR:LPORT', align = 'l', fmt = function(_, c) return endpoint(c.laddr, c.lport) end },
      { key = 'raddr', title = 'RADDR:RPORT', align = 'l', fmt = function(_, c) return endpoint(c.raddr, c.rport) end },
      { key = 'tx_bytes', title = 'TX_B' },
      { key = 'rx_bytes', title = 'RX_B' },
      { key = 'connect_ns', title = 'CONN_MS', fmt = ms },
      { key = 'duration_ns', title = 'MS', fmt = ms },
      { key = 'retrans', title = 'RETR' },
    })
  end
  quality(out, res)
  return table.concat(out)
end

--- True when this module has a text renderer for tracer `name`.
function M.has(name) return R[name] ~= nil end

--- Tracer names this module renders.
function M.names()
  local out = {}
  for name in pairs(R) do out[#out + 1] = name end
  table.sort(out)
  return out
end

--- Text for the result of tracer `name` (the tracer module's M.name:
--- syscall, sched, io, lock, offcpu, red). Errors on a name it does not know.
---@param name string
---@param res table
---@param opts table?
---@return string
function M.render(name, res, opts)
  local r = R[name]
  if not r then error("report.tracers: no text renderer for tracer '" .. tostring(name) .. "'", 2) end
  return r(res, opts or {})
end

return M
