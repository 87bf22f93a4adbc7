--- tcp-check's measurement: the TCP connections of a target as the kernel
--- describes them (`ss -tinmep`: tcp_info and the socket's memory) at both
--- edges of a window, read in the target's own network namespace, and the
--- sysctls that bound their buffers and pick their congestion control.
---
---   local rec = require('perf_manual.runbooks.tcp_check').run { target = '1234', duration = 5 }
---   local sum = M.summarize(rec)   -- pure: per connection deltas, shares, BDP, peer
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local measure = require('perf_manual.measure')
local targets = require('perf_manual.measure.target')

local M = {}

M.proc = '/proc'
M.ss = os.getenv('SS') or 'ss'

M.SYSCTLS = { 'net/ipv4/tcp_rmem', 'net/ipv4/tcp_wmem', 'net/core/rmem_max', 'net/core/wmem_max',
  'net/core/rmem_default', 'net/core/wmem_default', 'net/ipv4/tcp_congestion_control',
  'net/ipv4/tcp_available_congestion_control', 'net/ipv4/tcp_window_scaling', 'net/ipv4/tcp_moderate_rcvbuf',
  'net/ipv4/tcp_notsent_lowat' }

local function num(v) return v and tonumber(v) end

-- "1032ms(99.6%)" → 1032
local function ms_of(v) return v and tonumber(v:match('^(%d+)ms')) end

--- `ss -H -t -i -m -e -p -n state established` → list of connections:
--- { recvq, sendq, src, dst, pids = {..}, ino, cc, rtt_ms, rttvar_ms,
---   minrtt_ms, rto_ms, cwnd, ssthresh, mss, bytes_sent, bytes_acked,
---   bytes_received, bytes_retrans, segs_out, segs_in, retrans, lost,
---   busy_ms, rwnd_limited_ms, sndbuf_limited_ms, app_limited,
---   delivery_rate, snd_wnd, rcv_space, notsent, unacked, skmem = {r, rb, t, tb, ...} }
function M.parse_ss(text, ccs)
  ccs = ccs or { cubic = true, bbr = true, reno = true, dctcp = true, htcp = true, vegas = true, westwood = true,
    bic = true, illinois = true, highspeed = true, hybla = true, scalable = true, yeah = true, lp = true, nv = true,
    cdg = true, veno = true }
  local out, cur = {}, nil
  for line in (text or ''):gmatch('[^\n]+') do
    if line:match('^%s') then
      if cur then
        for tok in line:gmatch('%S+') do
          local k, v = tok:match('^([%a_]+):(.*)$')
          if k == 'skmem' then
            cur.skmem = {}
            for sk, sv in v:gmatch('(%a+)(%d+)') do cur.skmem[sk] = tonumber(sv) end
          elseif k == 'rtt' then
            local a, b = v:match('^([%d.]+)/([%d.]+)')
            cur.rtt_ms, cur.rttvar_ms = num(a), num(b)
          elseif k == 'retrans' then
            local a, b = v:match('^(%d+)/(%d+)')
            cur.retrans_now, cur.retrans = num(a), num(b)
          elseif k == 'busy' or k == 'rwnd_limited' or k == 'sndbuf_limited' then
            cur[k == 'busy' and 'busy_ms' or (k .. '_ms')] = ms_of(v)
          elseif k == 'minrtt' then cur.minrtt_ms = num(v)
          elseif k == 'rto' then cur.rto_ms = num(v)
          elseif k and v ~= '' and not v:match('^%(') and tonumber(v) then
            cur[k] = tonumber(v)
          elseif not k then
            if ccs[tok] then cur.cc = tok
            elseif tok == 'app_limited' then cur.app_limited = true end
          end
        end
        -- "delivery_rate 95248000000bps", "send 80594461538bps"
        cur.delivery_rate = num(line:match('delivery_rate ([%d.]+)bps'))
        cur.send_rate = num(line:match(' send ([%d.]+)bps'))
      end
    else
      local rq, sq, src, dst, rest = line:match('^(%d+)%s+(%d+)%s+(%S+)%s+(%S+)%s*(.*)$')
      if rq then
        cur = { recvq = tonumber(rq), sendq = tonumber(sq), src = src, dst = dst, pids = {}, comm = nil }
        for comm, pid in rest:gmatch('%("([^"]*)",pid=(%d+)') do
          cur.pids[#cur.pids + 1] = tonumber(pid)
          cur.comm = cur.comm or comm
        end
        cur.ino = num(rest:match('ino:(%d+)'))
        out[#out + 1] = cur
      else
        cur = nil
      end
    end
  end
  return out
end

local capture = require('perf_manual.runbooks.command').capture

--- The argv prefix that runs a command in pid's network namespace (none
--- when it shares ours).
function M.netns_prefix(pid)
  local ts = require('perf_manual.measure.tsa')
  local theirs = pid and ts.readlink(M.proc .. '/' .. pid .. '/ns/net')
  local ours = ts.readlink(M.proc .. '/self/ns/net')
  if theirs and ours and theirs ~= ours then
    return { 'nsenter', '--net=' .. M.proc .. '/' .. pid .. '/ns/net' }, theirs
  end
  return {}, theirs
end

--- The sysctls `keys` ("net/core/somaxconn") as the namespace of the
--- prefix (M.netns_prefix) sees them: name with dots → number, numbers or text.
--- /proc/PID/sys is not per namespace, so another namespace's are read through nsenter.
function M.sysctls_in(prefix, keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v
    if #prefix > 0 then
      v = capture({ prefix[1], prefix[2], 'cat', M.proc .. '/sys/' .. k })
    else
      v = util.readfile(M.proc .. '/sys/' .. k)
    end
    if v then
      v = util.trim(v)
      local nums = {}
      for n in v:gmatch('%S+') do nums[#nums + 1] = tonumber(n) end
      out[k:gsub('/', '.')] = (#nums == 1 and nums[1]) or (#nums > 1 and nums[1] and nums) or v
    end
  end
  return out
end

-- the connections of the namespace now, the sysctls as seen inside it
local function sample(prefix)
  local argv = {}
  for _, a in ipairs(prefix) do argv[#argv + 1] = a end
  for _, a in ipairs({ M.ss, '-H', '-t', '-i', '-m', '-e', '-p', '-n', 'state', 'established' }) do
    argv[#argv + 1] = a
  end
  return capture(argv)
end

--- Measures. opts: target, duration, progress, note.
---@return table? recording, string? why
function M.run(opts)
  return measure.with_session({ target = opts.target or 'system', duration = opts.duration or 5,
    what = 'tcp check', progress = opts.progress, note = opts.note, command = 'tcp-check', soft = true },
  function(s)
    s:start()
    if not capture({ M.ss, '-V' }) then
      return nil, "'ss' (Debian package iproute2) is not installed or does not run"
    end
    local pids = s.target.kind == 'system' and {} or targets.pids(s.target)
    if s.target.kind ~= 'system' and #pids == 0 then return nil, 'the target has no process' end
    local prefix, ns = M.netns_prefix(pids[1])
    local t0 = sys.now()
    local before, err = sample(prefix)
    if not before then return nil, err end
    local t0b = sys.now()
    s:begin()
    local ended = s:run {}
    local t1a = sys.now()
    local after
    after, err = sample(prefix)
    if not after then return nil, err end
    local t1b = sys.now()
    local window = t1b - t0
    local sysctls = M.sysctls_in(prefix, M.SYSCTLS)
    local info = s:finish()
    local avail = {}
    for n in tostring(sysctls['net.ipv4.tcp_available_congestion_control'] or ''):gmatch('%S+') do avail[n] = true end
    if not next(avail) then avail = nil end
    return {
      kind = 'tcp-check', target = s.target.label, pids = util.array(pids), window_s = window, ended_by = ended,
      -- CLOCK_MONOTONIC bounds of each ss read (it runs as its own process), to read other counters over them
      edges = { { t0, t0b }, { t1a, t1b } },
      netns = ns, before = util.array(M.parse_ss(before, avail)), after = util.array(M.parse_ss(after, avail)),
      sysctls = sysctls, notes = info.notes,
      source = 'ss -tinmep (tcp_info, skmem) at both edges' .. (#prefix > 0 and ', in the target\'s network namespace'
        or '') .. '; /proc/sys/net',
    }
  end)
end

local function owned(c, pids)
  for _, p in ipairs(c.pids) do if pids[p] then return true end end
  return false
end

--- The recording → the target's connections with their window deltas:
--- retransmits, segments, bytes acked (throughput), busy time and the
--- shares of it limited by the receive window and the send buffer, the
--- bandwidth-delay product, and the local peer when both ends are here.
function M.summarize(rec)
  local pids = {}
  for _, p in ipairs(rec.pids or {}) do pids[p] = true end
  local all = next(pids) == nil
  local before = {}
  for _, c in ipairs(rec.before or {}) do before[c.ino or (c.src .. ' ' .. c.dst)] = c end
  local by_tuple = {}
  for _, c in ipairs(rec.after or {}) do by_tuple[c.src .. ' ' .. c.dst] = c end
  local w = rec.window_s or 0
  local conns = {}
  for _, c in ipairs(rec.after or {}) do
    if all or owned(c, pids) then
      local b = before[c.ino or (c.src .. ' ' .. c.dst)]
      local function d(k) return (c[k] or 0) - (b and b[k] or 0) end
      local x = { src = c.src, dst = c.dst, pid = c.pids[1], comm = c.comm, cc = c.cc, rtt_ms = c.rtt_ms,
        rttvar_ms = c.rttvar_ms, minrtt_ms = c.minrtt_ms, cwnd = c.cwnd, ssthresh = c.ssthresh, mss = c.mss,
        recvq = c.recvq, sendq = c.sendq, notsent = c.notsent, snd_wnd = c.snd_wnd, rcv_space = c.rcv_space,
        rb = c.skmem and c.skmem.rb, tb = c.skmem and c.skmem.tb, delivery_rate = c.delivery_rate,
        new = b == nil or nil, app_limited = c.app_limited }
      x.retrans = d('retrans')
      x.segs_out = d('segs_out')
      x.bytes_acked = d('bytes_acked')
      x.bytes_received = d('bytes_received')
      x.busy_ms = d('busy_ms')
      x.rwnd_limited_ms = d('rwnd_limited_ms')
      x.sndbuf_limited_ms = d('sndbuf_limited_ms')
      x.retrans_pct = x.segs_out > 0 and x.retrans / x.segs_out * 100 or 0
      x.send_mbps = w > 0 and x.bytes_acked * 8 / w / 1e6 or 0
      x.recv_mbps = w > 0 and x.bytes_received * 8 / w / 1e6 or 0
      x.rwnd_share = x.busy_ms > 0 and x.rwnd_limited_ms / x.busy_ms or 0
      x.sndbuf_share = x.busy_ms > 0 and x.sndbuf_limited_ms / x.busy_ms or 0
      if c.delivery_rate and c.rtt_ms then x.bdp = c.delivery_rate / 8 * c.rtt_ms / 1000 end
      local peer = by_tuple[c.dst .. ' ' .. c.src]
      if peer then
        x.peer = { pid = peer.pids[1], comm = peer.comm, recvq = peer.recvq, rb = peer.skmem and peer.skmem.rb,
          rcv_space = peer.rcv_space }
      end
      conns[#conns + 1] = x
    end
  end
  table.sort(conns, function(a, b)
    if a.bytes_acked + a.bytes_received ~= b.bytes_acked + b.bytes_received then
      return a.bytes_acked + a.bytes_received > b.bytes_acked + b.bytes_received
    end
    return a.src < b.src
  end)
  return { window_s = w, conns = conns }
end

return M
