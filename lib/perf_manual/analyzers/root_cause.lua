--- Root causes from evidence, through the hypothesis catalogue
--- (perf_manual.catalogue). A hypothesis in words is mapped onto a catalogue
--- entry (phrases, terms and keywords; never one generic keyword), then the
--- entry's predicates are run over the evidence view of a data dir (USE rows,
--- thread states, lock/io/syscall traces, profiles, RED results). Refuting
--- evidence weighs double: the point is to look for disconfirmation. The
--- matched entry's culprit fields and fixes make the root-cause sentence and
--- the recommendations; a fix whose culprit field is not measured is left
--- out and said missing, never filled with a guess.
local catalogue = require('perf_manual.catalogue')
local findings = require('perf_manual.analyzers.findings')
local waits = require('perf_manual.waits')
local util = require('perf_manual.util')

local M = {}

-- Text ----------------------------------------------------------------------

local STOP = {}
for w in ([[the a an is are was were be been being on of in at to for by with its it it's their this that these
  those and or from as has have had too very so all our my we they there some any into than then our your can
  does do did will would could should may might just also only more most much]]):gmatch('%S+') do STOP[w] = true end

local NEGATIONS = { ['not'] = true, ['no'] = true, ["isn't"] = true, ["aren't"] = true, never = true,
  ["doesn't"] = true, ['neither'] = true, ["wasn't"] = true, ["don't"] = true, ['nor'] = true }

local SUFFIXES = { 'ations', 'ation', 'ating', 'ated', 'ates', 'ate', 'ings', 'ing', 'ions', 'ion', 'ed', 'es', 's' }

--- A crude stem, the same for the text and the catalogue's words
--- (saturated/saturation, writes/write, swapping/swap).
function M.stem(w)
  w = w:lower()
  if #w <= 3 or not w:match('^%a+$') then return w end
  for _, s in ipairs(SUFFIXES) do
    if #w - #s >= 3 and w:sub(-#s) == s then
      w = w:sub(1, -#s - 1)
      if (s == 'ing' or s == 'ed' or s == 'ings') and w:match('(%a)%1$') and not w:match('ll$')
        and not w:match('ss$') then
        w = w:sub(1, -2)
      end
      break
    end
  end
  if #w > 3 and w:sub(-1) == 'e' then w = w:sub(1, -2) end
  return w
end

-- words of a text: stems of the content words, and whether it is negated
local function words(text)
  local out, neg = {}, false
  local t = tostring(text):lower():gsub('%-', ' ')
  for w in t:gmatch("[%w/_']+") do
    if NEGATIONS[w] then neg = true
    elseif not STOP[w] then out[#out + 1] = M.stem(w) end
  end
  return out, neg
end

local function set(list)
  local s = {}
  for _, w in ipairs(list) do s[w] = true end
  return s
end

-- the fixed start of a template (up to its first field), when long enough to be unambiguous
local function stem_of(template)
  local p = template:match('^([^{]*)') or template
  return #p >= 12 and p:lower() or nil
end

--- How well `text` names catalogue entry `e`: { score=, phrases=, terms=,
--- keywords=, direct= } (direct: the text starts as the entry's root-cause
--- sentence does, as the candidates write it).
function M.match_entry(e, text, have)
  local low = tostring(text):lower()
  for _, t in ipairs(e.says or {}) do
    local p = stem_of(t)
    if p and low:sub(1, #p) == p then
      return { score = 100, direct = true, phrases = {}, terms = {}, keywords = {} }
    end
  end
  have = have or set((words(text)))
  local m = { score = 0, phrases = {}, terms = {}, keywords = {} }
  for _, ph in ipairs(e.phrases or {}) do
    local ws = words(ph)
    local all = #ws >= 2
    for _, w in ipairs(ws) do if not have[w] then all = false end end
    if all then m.phrases[#m.phrases + 1] = ph; m.score = m.score + 3 end
  end
  local seen = {}
  for _, t in ipairs(e.terms or {}) do
    local w = M.stem(t)
    if have[w] and not seen[w] then seen[w] = true; m.terms[#m.terms + 1] = t; m.score = m.score + 2 end
  end
  local kseen = {}
  for _, k in ipairs(e.keywords or {}) do
    for _, w in ipairs((words(k))) do
      if have[w] and not kseen[w] then kseen[w] = true; m.keywords[#m.keywords + 1] = k; m.score = m.score + 1 end
    end
  end
  return m
end

-- a match is made from a phrase, a term that names the mechanism, or two keywords: never one keyword
local function matched(m)
  return m.direct or #m.phrases > 0 or #m.terms > 0 or #m.keywords >= 2
end

local function why_text(m)
  if m.why then return m.why end
  if m.direct then return 'the text is this entry\'s root-cause sentence' end
  local parts = {}
  if #m.phrases > 0 then parts[#parts + 1] = 'phrase ' .. table.concat(m.phrases, "', '"):gsub('^', "'") .. "'" end
  if #m.terms > 0 then parts[#parts + 1] = 'term ' .. table.concat(m.terms, "', '"):gsub('^', "'") .. "'" end
  if #m.keywords > 0 then parts[#parts + 1] = 'keywords ' .. table.concat(m.keywords, ', ') end
  return table.concat(parts, '; ')
end

-- the entry a wait of each reason stands for, when not the peer's
local WAIT_ENTRY = { lock = 'lock-convoy', io = 'fsync-bound', memory = 'memory-limit' }

--- Maps a hypothesis in words onto the catalogue. Returns
--- { entry=, why=, score=, negated=, also = { ids of entries nearly as close } }
--- or nil, { closest 3: {entry=, score=, why=} }, negated.
function M.match(text)
  local ws, neg = words(text)
  local have = set(ws)
  local scored = {}
  for i, e in ipairs(catalogue.entries()) do
    local m = M.match_entry(e, text, have)
    scored[#scored + 1] = { entry = e, m = m, i = i }
  end
  table.sort(scored, function(a, b)
    local ma, mb = matched(a.m), matched(b.m)
    if ma ~= mb then return ma end
    if a.m.score ~= b.m.score then return a.m.score > b.m.score end
    if #a.m.phrases ~= #b.m.phrases then return #a.m.phrases > #b.m.phrases end
    return a.i < b.i
  end)
  local best = scored[1]
  -- "it waits on X (reason, N% of wall time)" is the peer entry's sentence
  -- for any wait: the reason in it says which mechanism is meant
  if best and best.m.direct and best.entry.id == 'peer-wait' then
    for reason, id in pairs(WAIT_ENTRY) do
      local e = catalogue.get(id)
      if e and tostring(text):find('(' .. waits.LABELS[reason] .. ',', 1, true) then
        best = { entry = e, m = { score = 100, direct = true, phrases = {}, terms = {}, keywords = {},
          why = 'a wait whose reason is ' .. waits.LABELS[reason] } }
      end
    end
  end
  if best and matched(best.m) then
    local also = {}
    for k = 2, #scored do
      local s = scored[k]
      if matched(s.m) and s.m.score >= best.m.score - 1 and not best.m.direct then also[#also + 1] = s.entry.id end
    end
    -- a root-cause sentence of the catalogue's own is never negated ("symbol not resolved" is a note)
    return { entry = best.entry, why = why_text(best.m), score = best.m.score, negated = neg and not best.m.direct,
      also = also }
  end
  local closest = {}
  for k = 1, math.min(3, #scored) do
    local s = scored[k]
    closest[k] = { id = s.entry.id, mechanism = s.entry.mechanism, score = s.m.score,
      why = s.m.score > 0 and why_text(s.m) or 'no word in common' }
  end
  return nil, closest, neg
end

--- The resource a hypothesis is about and whether it is negated (through
--- the catalogue: nil when no entry matches).
function M.classify(text)
  local m, _, neg = M.match(text)
  if m then return m.entry.resource, m.negated end
  return nil, neg
end

-- Evidence -------------------------------------------------------------------

--- The evidence a predicate may need, by name, and what records it.
M.EVIDENCE = {
  use = 'a USE check (use-check)', tsa = 'thread-state accounting (tsa)', lock = 'the lock tracer (trace lock)',
  io = 'block I/O latency (trace io)', syscall = 'syscall latency (trace syscall)',
  profile = 'an on-CPU profile (profile)', offcpu = 'an off-CPU profile (profile --off-cpu)',
  red = 'a RED result (red-check --save DIR)', net = 'the net tracer (trace net)',
}

local function cell_text(c)
  if type(c) ~= 'table' then return c and tostring(c) or 'not measured' end
  return tostring(c.text or c.missing or '?')
end

local function num(x) return tonumber(x) end

-- the heaviest stack of folded text, as its last `n` frames "a > b > c"
local function heaviest_path(folded, n)
  if type(folded) ~= 'string' then return nil end
  local best, bn = nil, -1
  for line in folded:gmatch('[^\n]+') do
    local stack, c = line:match('^(.*) (%d+)$')
    if stack and tonumber(c) > bn then best, bn = stack, tonumber(c) end
  end
  if not best then return nil end
  local frames = {}
  for f in best:gmatch('[^;]+') do frames[#frames + 1] = f end
  local from = math.max(1, #frames - n + 1)
  return table.concat(frames, ' > ', from)
end

-- per wait reason, the object most waited on by the active threads, with
-- how many threads wait on it and their mean share of wall time
local function objects(t)
  local out = {}
  local by = {}      -- reason -> key -> {seconds, threads, share, w}
  local reason_threads = {}
  for _, th in ipairs(t.threads or {}) do
    local life = num(th.life_s) or 0
    local idle = 0
    for _, w in ipairs(th.waits or {}) do if findings.idle_wait(w) then idle = idle + (num(w.seconds) or 0) end end
    if life > 0 and idle < life * 0.95 then
      local counted = {}
      for _, w in ipairs(th.waits or {}) do
        if w.reason and not findings.idle_wait(w) and (num(w.share) or 0) >= 1 then
          local key = tostring(w.text or w.object or w.syscall or w.reason)
          by[w.reason] = by[w.reason] or {}
          local o = by[w.reason][key] or { seconds = 0, threads = 0, share = 0, w = w }
          o.seconds, o.threads, o.share = o.seconds + (num(w.seconds) or 0), o.threads + 1,
          o.share + (num(w.share) or 0)
          by[w.reason][key] = o
          if not counted[w.reason] then
            counted[w.reason] = true
            reason_threads[w.reason] = (reason_threads[w.reason] or 0) + 1
          end
        end
      end
    end
  end
  for reason, objs in pairs(by) do
    local best, bk, n = nil, nil, 0
    for k, o in pairs(objs) do
      n = n + 1
      if not best or o.seconds > best.seconds or (o.seconds == best.seconds and k < bk) then best, bk = o, k end
    end
    local w = best.w
    local name = bk
    if w.symbol then
      name = string.format('%s (%s%s)', w.symbol, (tostring(w.mapping or '?'):match('[^/]+$')) or '?',
        w.section and (' ' .. w.section) or '')
    end
    out[reason] = { name = name, text = w.text, symbol = w.symbol, mapping = w.mapping, section = w.section,
      addr = w.object, path = w.path or w.fd_link, syscall = w.syscall, device = w.device, threads = best.threads,
      share = best.share / best.threads, files = n, reason_threads = reason_threads[reason] }
  end
  return out
end

--- The evidence view of prepared results (findings.prepare(store.results(dir))):
--- the plain facts the catalogue's predicates and culprits read. Every field
--- is nil when it was not measured; `has[name]` says which evidence is there.
function M.facts(data)
  data = data or {}
  local ev = { has = {}, artifacts = {}, objects = {},
    states = setmetatable({}, { __index = function() return 0 end }) }
  local use = data.use
  if type(use) == 'table' and use.available ~= false and type(use.rows) == 'table' then
    local detail = type(use.verdict_detail) == 'table' and use.verdict_detail or {}
    ev.has.use, ev.artifacts.use = true, use.artifact or 'use-check'
    ev.use = { verdict = type(use.verdict) == 'string' and use.verdict or nil, reason = detail.reason or use.cpu_reason,
      rows = {} }
    for _, res in ipairs({ 'cpu', 'memory', 'disk', 'network', 'lock' }) do
      local row = use[res]
      if type(row) == 'table' then
        ev.use.rows[res] = { name = tostring(row.name or res), status = row.status,
          utilization = cell_text(row.utilization),
          saturation = cell_text(row.saturation), raw = row }
      end
    end
    local m = type(use.measures) == 'table' and use.measures or {}
    ev.task = type(m.task) == 'table' and m.task or nil
    ev.cpus = num(m.ncpu)
    ev.cpu_busy_pct = type(m.cpu) == 'table' and num(m.cpu.busy_pct) or nil
    if ev.task and ev.task.pid then
      ev.process = string.format('pid %s (%s)', tostring(ev.task.pid), tostring(ev.task.comm or '?'))
    end
    local row = use.cpu
    local cgc = type(m.cgroup_cpu) == 'table' and m.cgroup_cpu or {}
    if type(row) == 'table' and (row.throttled_pct or row.quota_cores or cgc.throttled_pct) then
      ev.quota = { cores = num(row.quota_cores or cgc.quota_cores),
        throttled_pct = num(row.throttled_pct or cgc.throttled_pct),
        cgroup = cgc.dir }
    end
    local mm = type(m.memory) == 'table' and m.memory or {}
    local cg = type(m.cgroup_memory) == 'table' and m.cgroup_memory or {}
    ev.memory = { cgroup = cg.dir, limit_bytes = num(cg.limit_bytes), usage_bytes = num(cg.usage_bytes),
      usage_pct = num(cg.usage_pct), limit_hits_per_s = num(cg.limit_hits_per_s),
      refault_per_s = num(cg.refault_per_s) or num(mm.refault_per_s), oom_kills = num(cg.oom_kills) }
    -- the culprit the USE Memory row names (perf_manual.measure.memnet detail)
    local mrow = type(use.memory) == 'table' and use.memory or {}
    local mc = type(mrow.culprit) == 'table' and mrow.culprit or {}
    ev.memory.cgroup = ev.memory.cgroup or mc.cgroup
    ev.memory.limit_bytes = ev.memory.limit_bytes or num(mc.limit_bytes)
    ev.memory.working_set_bytes = num(mc.working_set_peak_bytes) or num(mc.working_set_bytes)
    ev.memory.refault_bytes_per_s, ev.memory.reclaim_bytes_per_s = num(mc.refault_bytes_per_s),
    num(mc.reclaim_bytes_per_s)
    ev.memory.need_bytes, ev.memory.need_method = num(mc.need_bytes), mc.need_method
    if (num(mc.refault_per_s) or 0) > 0 then ev.memory.refault_per_s = num(mc.refault_per_s) end
    local tf = type(mc.top_faulters) == 'table' and mc.top_faulters[1]
    if type(tf) == 'table' then
      ev.memory.top_faulter = string.format('pid %s (%s)', tostring(tf.pid), tostring(tf.comm))
    end
    if mm.pswpin_per_s or mm.pswpout_per_s then
      ev.memory.swap_per_s = (num(mm.pswpin_per_s) or 0) + (num(mm.pswpout_per_s) or 0)
    end
    local tcp = type(m.tcp) == 'table' and m.tcp or {}
    local net = use.network
    ev.net = { retrans_per_s = num(tcp.retrans_per_s),
      iface = type(net) == 'table' and net.status ~= 'idle' and net.name or nil,
      scope = type(m.netns) == 'table' and string.format('network namespace of pid %s', tostring(m.netns.pid))
        or 'system-wide' }
    -- the target's sockets: the fullest one names the peer and its queues
    local so = type(m.sockets) == 'table' and type(m.sockets.list) == 'table' and m.sockets.list[1]
    if type(so) == 'table' then
      ev.net.remote = string.format('%s:%s', tostring(so.remote_addr), tostring(so.remote_port))
      ev.net.iface = ev.net.iface or so.iface
      ev.net.socket_iface = so.iface
      ev.net.send_q, ev.net.recv_q = num(so.tx_queue), num(so.rx_queue)
      ev.net.socket_retrans = num(so.max_retrnsmt or so.retrnsmt)
      ev.net.sockets = num(m.sockets.count)
    end
    -- the net tracer's measures over the check (retransmits per flow, listener drops)
    ev.net.bpf = type(m.bpf) == 'table' and type(m.bpf.net) == 'table' and m.bpf.net or nil
    local tcpx = type(m.tcp) == 'table' and m.tcp or {}
    ev.net.listen_overflows = num(tcpx.listen_overflows)
    local lk = type(m.lock) == 'table' and m.lock or nil
    if lk and type(lk.hot) == 'table' then ev.lock_hot = lk.hot end
  end
  local t = data.tsa
  if type(t) == 'table' and t.available ~= false and type(t.total) == 'table' then
    ev.has.tsa, ev.artifacts.tsa = true, t.artifact or 'tsa'
    local d = findings.dominant_wait(t)
    local sh = d and d.shares or t.total.shares or {}
    for _, st in ipairs(waits.STATES) do ev.states[st] = num(sh[st]) or 0 end
    ev.wait = d
    ev.wait_phrase = d and findings.wait_phrase(d)
    ev.hot_thread = findings.hot_thread(t)
    ev.objects = objects(t)
    local busy, runnable = {}, 0
    for _, th in ipairs(t.threads or {}) do
      local s = type(th.shares) == 'table' and th.shares or {}
      if (num(s.runq) or 0) >= 10 then runnable = runnable + 1 end
      busy[#busy + 1] = { tid = th.tid, comm = th.comm, cpu = num(s.cpu) or 0 }
    end
    table.sort(busy, function(a, b) return a.cpu > b.cpu end)
    local parts = {}
    for i = 1, math.min(3, #busy) do
      parts[i] = string.format('%s (%s) %.0f%%', tostring(busy[i].tid), tostring(busy[i].comm), busy[i].cpu)
    end
    ev.busy_threads = #parts > 0 and table.concat(parts, ', ') or nil
    ev.runnable_threads = runnable > 0 and tostring(runnable) or nil
    local ti = type(t.target_info) == 'table' and t.target_info or {}
    ev.process = ev.process or ti.label
  end
  local tr = data.traces or {}
  local lk = tr.lock
  if type(lk) == 'table' and lk.available ~= false then
    ev.has.lock, ev.artifacts.lock = true, lk.artifact or 'trace-lock'
    local u = type(lk.use) == 'table' and lk.use or {}
    local sat = type(u.saturation) == 'table' and u.saturation or {}
    local top = type(lk.futex) == 'table' and lk.futex[1] or nil
    local n = 0
    for _, th in ipairs(lk.threads or {}) do if (num(th.wait_share) or 0) >= 0.2 then n = n + 1 end end
    ev.lock = { wait_share = num(u.utilisation or u.utilization),
      of_target = tostring(u.utilisation_basis or ''):match('target') ~= nil,
      waiters_avg = num(sat.mean_waiters), waiters_max = num(sat.max_waiters), threads = n > 0 and n or nil,
      addr = top and num(top.uaddr) and string.format('0x%x', top.uaddr) or nil,
      name = top and type(top.name) == 'string' and top.name or nil,
      p99_us = top and num(top.p99_us), waiter_site = top and top.waiter_site or nil,
      -- the futex wake side: the releasing threads' call site (first frame outside the C library)
      holder = top and (top.holder_site or top.holder) or nil,
      holders = top and type(top.wakers) == 'table' and #top.wakers > 0 and #top.wakers or nil }
  elseif ev.lock_hot then
    ev.lock = { waiters_avg = num(ev.lock_hot.mean_waiters), addr = ev.lock_hot.uaddr }
  end
  local io = tr.io
  if type(io) == 'table' and io.available ~= false then
    ev.has.io, ev.artifacts.io = true, io.artifact or 'trace-io'
    local worst, wname
    for _, d in ipairs(io.devices or io.rows or {}) do
      local p = findings.p99_ms(d)
      if p and (not worst or p > worst) then worst, wname = p, d.name or d.device or d.dev end
    end
    ev.io = { p99_ms = worst, device = wname and tostring(wname) }
  end
  local sc = tr.syscall
  if type(sc) == 'table' and sc.available ~= false then
    ev.has.syscall, ev.artifacts.syscall = true, sc.artifact or 'trace-syscall'
    local total = type(sc.total) == 'table' and num(sc.total.total_ns)
    local sync, parts = 0, {}
    for _, s in ipairs(sc.syscalls or {}) do
      if s.name == 'fsync' or s.name == 'fdatasync' then
        sync = sync + (num(s.total_ns) or 0)
        parts[#parts + 1] = string.format('%s %.0f calls/s, %.2f ms each on average', s.name, num(s.rate) or 0,
          (num(s.avg_ns) or 0) / 1e6)
      end
    end
    ev.syscall = { share = num(sc.share_of_time),
      only = table.concat(type(sc.only) == 'table' and sc.only or { 'the traced calls' }, '/'),
      sync_share = total and total > 0 and #parts > 0 and sync / total or nil,
      sync_text = #parts > 0 and table.concat(parts, ', ') or nil }
  end
  -- the network fault with its 4-tuple: the drill-down's net trace, else the USE check's
  local nt = type(tr.net) == 'table' and tr.net.available ~= false and tr.net or nil
  if nt then ev.has.net, ev.artifacts.net = true, nt.artifact or 'trace-net' end
  if nt or (ev.net and ev.net.bpf) then
    ev.netc = require('perf_manual.analyzers.netuse').culprit(nt, ev.net and ev.net.bpf, ev.has.tsa and t or nil)
  end
  -- who waits on which file, the sync calls, the device (analyzers.findings.disk_culprit)
  if ev.has.tsa or ev.has.io or ev.has.syscall then
    ev.disk = findings.disk_culprit(ev.has.tsa and t or nil, ev.has.io and io or nil, ev.has.syscall and sc or nil)
  end
  local pr = data.profiles or {}
  local p = pr.cpu
  if type(p) == 'table' and p.available ~= false then
    ev.has.profile, ev.artifacts.profile = true, p.artifact or 'profile-cpu'
    local hot = findings.hot_function(p)
    ev.profile = { hot = hot and hot.name and tostring(hot.name) or nil,
      share = hot and hot.share and hot.share >= findings.thresholds.hot_function_share and hot.share or nil,
      path = heaviest_path(p.folded, 4) }
    if not ev.profile.share then ev.profile.hot = nil end
    -- the path into the hot function, the user/kernel split, the kernel path when kernel time is heavy
    local c = findings.cpu_culprit(p, nil)
    if c then
      if ev.profile.hot and c.path then ev.profile.path = c.path end
      if c.user_pct then
        ev.profile.split = string.format('%.0f%% user / %.0f%% kernel', c.user_pct, c.kernel_pct)
        ev.profile.kernel_pct, ev.profile.kernel_path = c.kernel_pct, c.kernel_path
      end
    end
  end
  local off = pr.offcpu
  if type(off) == 'table' and off.available ~= false then
    ev.has.offcpu, ev.artifacts.offcpu = true, off.artifact or 'profile-offcpu'
    ev.offcpu = { path = heaviest_path(off.folded, 3) }
  end
  local r = data.red
  if type(r) == 'table' and r.available ~= false and type(r.errors) == 'table' then
    ev.has.red, ev.artifacts.red = true, r.artifact or 'red-check.json'
    local kinds = {}
    for i, k in ipairs(findings.error_kinds(r)) do kinds[i] = k.kind .. ' ' .. k.count end
    local p99 = type(r.latency) == 'table' and num(r.latency.p99) or nil
    ev.red = { error_ratio = num(r.errors.ratio), errors = r.errors.total, requests = r.errors.attempts,
      kinds = #kinds > 0 and table.concat(kinds, ', ') or nil, p99_s = p99, p99_text = p99 and util.fmt_duration(p99),
      endpoint = r.endpoint or r.url }
  end
  return ev
end

-- Judging ----------------------------------------------------------------------

-- `template` with the fields of `c`; when some are missing: nil, their
-- names, and the text with the known ones filled and the others as <name>
local function fill(template, c)
  local missing = {}
  local text = template:gsub('{([%w_]+)}', function(k)
    local v = c[k]
    if v == nil or v == '' then missing[#missing + 1] = k return '<' .. k .. '>' end
    return tostring(v)
  end)
  if #missing > 0 then return nil, missing, text end
  return text
end

--- The first template of `list` whose fields `c` all holds, filled; nil when none.
function M.fill_first(list, c)
  for _, t in ipairs(list or {}) do
    local s = fill(t, c)
    if s then return s end
  end
  return nil
end

local function culprit_of(e, ev)
  if type(e.culprit) ~= 'function' then return {} end
  local ok, c = pcall(e.culprit, ev)
  return ok and type(c) == 'table' and c or {}
end

--- Runs entry `e`'s predicates over the evidence view `ev`. Returns
--- { evidence = { {artifact, stance, note, weight} }, missing = { ... },
---   supports=, refutes=, score=, verdict = 'supported'|'refuted'|'contested'|'inconclusive' }.
function M.judge(e, ev, negated)
  local T = findings.thresholds
  local list, missing, said = {}, {}, {}
  for _, p in ipairs(e.predicates) do
    if not ev.has[p.needs] then
      if not said[p.needs] then
        said[p.needs] = true
        missing[#missing + 1] = 'no ' .. (M.EVIDENCE[p.needs] or p.needs) .. ' in the data'
      end
    else
      local ok, stance, note, w = pcall(p.test, ev, T)
      if not ok then
        missing[#missing + 1] = string.format('%s: a predicate failed: %s', e.id, tostring(stance))
      elseif stance == 'supports' or stance == 'refutes' then
        list[#list + 1] = { artifact = ev.artifacts[p.needs] or p.needs, stance = stance, note = tostring(note or ''),
          weight = w or p.weight or 1 }
      elseif note then
        missing[#missing + 1] = tostring(note)
      end
    end
  end
  if negated then
    for _, x in ipairs(list) do x.stance = x.stance == 'supports' and 'refutes' or 'supports' end
  end
  local sup, ref = 0, 0
  for _, x in ipairs(list) do
    if x.stance == 'supports' then sup = sup + x.weight else ref = ref + x.weight end
  end
  local res = { evidence = list, missing = missing, supports = sup, refutes = ref, score = sup - 2 * ref }
  if sup == 0 and ref == 0 then res.verdict = 'inconclusive'
  elseif res.score > 0 then res.verdict = 'supported'
  elseif res.score < 0 then res.verdict = 'refuted'
  else res.verdict = 'contested' end
  return res
end

--- The fixes of entry `e` filled with its culprit fields: { texts = { ... },
--- unfilled = { { fix = text with the missing fields as <name>, missing = { fields } } } }.
function M.fixes(e, c)
  local out, unfilled = {}, {}
  for _, t in ipairs(e.fixes or {}) do
    local s, miss, partial = fill(t, c)
    if s then out[#out + 1] = s else unfilled[#unfilled + 1] = { fix = partial, missing = miss } end
  end
  return { texts = out, unfilled = unfilled }
end

--- Scores `text` against recorded results (store.results + findings.prepare). Returns
--- { hypothesis=, entry= (id), title=, mechanism=, resource=, negated=, match = { why=, score=, also= },
---   closest = (when no entry matches) { {id, mechanism, score, why} },
---   evidence = { {artifact, stance, note, weight} }, supports=, refutes=, score=,
---   verdict = 'supported'|'refuted'|'contested'|'inconclusive'|'unmatched',
---   missing = { what could not be judged }, culprit = { field = value }, cause=,
---   fixes = { filled sentences }, unfilled = { {fix, missing} } }.
function M.score(text, data, ev)
  ev = ev or M.facts(data)
  local m, closest, neg = M.match(text)
  if not m then
    return { hypothesis = text, negated = neg, evidence = {}, supports = 0, refutes = 0, score = 0,
      verdict = 'unmatched', closest = closest,
      missing = { 'no catalogue entry matches the hypothesis (closest: ' .. (function()
        local ids = {}
        for i, c in ipairs(closest) do ids[i] = c.id end
        return table.concat(ids, ', ')
      end)() .. '); name a mechanism, e.g. "lock contention", "fsync-bound writes", "CPU quota throttling"' } }
  end
  local e = m.entry
  local res = M.judge(e, ev, m.negated)
  res.hypothesis, res.entry, res.title, res.mechanism, res.resource, res.negated = text, e.id, e.title or e.id,
    e.mechanism, e.resource, m.negated
  res.match = { why = m.why, score = m.score, also = m.also, from = e.from }
  local c = culprit_of(e, ev)
  res.culprit = c
  res.cause = M.fill_first(e.says, c)
  local f = M.fixes(e, c)
  res.fixes, res.unfilled = f.texts, f.unfilled
  return res
end

-- Candidates and recommendations -------------------------------------------------

local function last(list) return list and list[#list] end

-- what a bottleneck usually means: the last, culprit-free sentence of the
-- entry most often behind it
M.TEXT = {}
for res, id in pairs({ cpu = 'cpu-bound', disk = 'disk-saturation', lock = 'lock-convoy', memory = 'memory-limit',
  network = 'net-retransmits', service = 'service-errors' }) do
  for _, e in ipairs(catalogue.builtin) do if e.id == id then M.TEXT[res] = last(e.says) end end
end
M.TEXT.network = 'the network is saturated (bandwidth, drops or retransmits)'

--- The hypothesis "the workload is blocked: it waits on X" from an
--- accounting result; nil when the target is not mostly waiting.
function M.wait_text(tsa)
  local d = findings.dominant_wait(tsa)
  if not d or d.share < findings.thresholds.wait_share_medium then return nil end
  return 'the workload is blocked: it waits on ' .. findings.wait_phrase(d)
end

--- Hypotheses at the service level from a RED result.
function M.service_texts(r)
  local out = {}
  local ev = M.facts({ red = r })
  if not ev.has.red then return out end
  for _, id in ipairs({ 'service-errors', 'service-latency' }) do
    local e = catalogue.get(id)
    if e and M.judge(e, ev).verdict == 'supported' then out[#out + 1] = M.fill_first(e.says, culprit_of(e, ev)) end
  end
  return out
end

--- Hypotheses worth testing given the data: every catalogue entry the
--- evidence supports, best first, each as its root-cause sentence naming the
--- culprit; then the usual suspects (CPU-bound, disk saturation) to seek
--- disconfirmation. Returns a list of texts.
function M.candidates(data, _found)
  local ev = M.facts(data)
  local sup = {}
  for i, e in ipairs(catalogue.entries()) do
    local r = M.judge(e, ev)
    if r.verdict == 'supported' then
      local text = M.fill_first(e.says, culprit_of(e, ev))
      if text then sup[#sup + 1] = { text = text, score = r.score, i = i } end
    end
  end
  table.sort(sup, function(a, b) if a.score ~= b.score then return a.score > b.score end return a.i < b.i end)
  local out, seen, ids = {}, {}, {}
  for _, s in ipairs(sup) do
    if not seen[s.text] then seen[s.text] = true; out[#out + 1] = s.text end
  end
  for _, id in ipairs({ 'cpu-bound', 'disk-saturation' }) do
    local e = catalogue.get(id)
    local covered = false
    for _, t in ipairs(out) do
      local m = M.match(t)
      if m and m.entry.id == id then covered = true end
    end
    if e and not covered and not ids[id] then
      ids[id] = true
      -- the sentence without culprits: the evidence does not support naming one
      out[#out + 1] = last(e.says)
    end
  end
  return out
end

--- Recommendations from the supported hypotheses (texts, or tables with
--- text and status): each matched entry's fixes filled with the culprit
--- fields measured, naming the artifacts behind them. A fix whose fields
--- are not measured is left out; when none of an entry's fixes can be
--- filled, one line says what is missing. Returns
--- { { status = 'OPEN', text=, entry=, hypothesis=, evidence = { artifacts } } }.
function M.recommendations(data, hypotheses)
  local ev = M.facts(data)
  local out, done = {}, {}
  for _, h in ipairs(hypotheses or {}) do
    local text = type(h) == 'table' and h.text or h
    local status = type(h) == 'table' and h.status or nil
    local res = M.score(text, data, ev)
    if res.entry and not done[res.entry] and not res.negated
      and (status == 'supported' or (status == nil and res.verdict == 'supported')) then
      done[res.entry] = true
      local arts, seen = {}, {}
      for _, x in ipairs(res.evidence) do
        if x.stance == 'supports' and not seen[x.artifact] then
          seen[x.artifact] = true; arts[#arts + 1] = x.artifact
        end
      end
      local cite = #arts > 0 and (' [evidence: ' .. table.concat(arts, ', ') .. ']') or ''
      for _, f in ipairs(res.fixes) do
        out[#out + 1] = { status = 'OPEN', text = f .. cite, entry = res.entry, hypothesis = text, evidence = arts }
      end
      if #res.fixes == 0 then
        local miss, s2 = {}, {}
        for _, u in ipairs(res.unfilled) do
          for _, k in ipairs(u.missing) do if not s2[k] then s2[k] = true; miss[#miss + 1] = k end end
        end
        out[#out + 1] = { status = 'OPEN', entry = res.entry, hypothesis = text, evidence = arts,
          text = string.format('%s: no fix can be named yet; not measured: %s', res.title, table.concat(miss, ', '))
            .. cite }
      end
    end
  end
  return out
end

--- The verdict for the terminal: the match made (or the closest entries),
--- the evidence, what is missing, the root cause and the fixes.
function M.render(res)
  local lines = { string.format('Hypothesis: %s', res.hypothesis) }
  if res.entry then
    lines[#lines + 1] = string.format('Matched:    %s (%s): %s', res.entry, res.resource, res.mechanism)
    lines[#lines + 1] = string.format('            why: %s%s%s', res.match.why,
      res.negated and '; the text is negated: evidence counts the other way' or '',
      (#res.match.also > 0) and ('; nearly as close: ' .. table.concat(res.match.also, ', ')) or '')
  else
    lines[#lines + 1] = 'Matched:    no catalogue entry matches; the closest:'
    for _, c in ipairs(res.closest or {}) do
      lines[#lines + 1] = string.format('            %-16s %s (%s)', c.id, c.mechanism, c.why)
    end
  end
  lines[#lines + 1] = string.format('Verdict:    %s (for %g, against %g; refuting evidence counts double)',
    res.verdict:upper(),
    res.supports, res.refutes)
  for _, e in ipairs(res.evidence) do
    lines[#lines + 1] = string.format('  %-8s %s  [%s]', e.stance, e.note, tostring(e.artifact))
  end
  for _, m in ipairs(res.missing) do lines[#lines + 1] = '  missing  ' .. m end
  if res.entry and res.verdict == 'supported' and not res.negated then
    if res.cause then lines[#lines + 1] = 'Root cause: ' .. res.cause end
    for _, f in ipairs(res.fixes or {}) do lines[#lines + 1] = '  fix      ' .. f end
    for _, u in ipairs(res.unfilled or {}) do
      lines[#lines + 1] = '  not yet  ' .. u.fix .. ' (not measured: ' .. table.concat(u.missing, ', ') .. ')'
    end
  end
  return table.concat(lines, '\n') .. '\n'
end

return M
