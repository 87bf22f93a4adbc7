--- Evidence correlation: scores a hypothesis in words ("the disk is
--- saturated", "lock contention on the queue mutex") against the results of
--- a data dir (USE rows, I/O latency histograms, lock waits, profiles) and
--- says what supports it and what refutes it. Refuting evidence weighs
--- double: the point is to look for disconfirmation.
local findings = require('perf_manual.analyzers.findings')
local waits = require('perf_manual.waits')
local util = require('perf_manual.util')

local M = {}

-- words that tie a hypothesis to a resource (first match in this order)
M.WORDS = {
  { 'wait', { 'blocked', 'off-cpu', 'peer', 'sleeps', 'sleeping' } },
  { 'lock', { 'lock', 'mutex', 'contention', 'contended', 'futex', 'spinlock', 'semaphore' } },
  { 'disk', { 'disk', 'i/o', 'io', 'fsync', 'fdatasync', 'storage', 'block', 'write', 'writes', 'iops', 'ssd', 'nvme',
    'device' } },
  { 'memory', { 'memory', 'swap', 'swapping', 'reclaim', 'oom', 'page', 'pages', 'fault', 'faults', 'rss', 'leak',
    'cache' } },
  { 'network', { 'network', 'net', 'packet', 'packets', 'tcp', 'socket', 'bandwidth', 'nic', 'retransmit' } },
  { 'cpu', { 'cpu', 'cpus', 'compute', 'cpu-bound', 'hot', 'loop', 'spin', 'busy', 'core', 'cores', 'runqueue',
    'scheduler' } },
  -- last: a resource word above names the cause better than the symptom
  { 'service', { 'service', 'errors', 'error', 'fails', 'failing', 'failed', '5xx', 'http', 'endpoint', 'requests' } },
}

local NEGATIONS = { ['not'] = true, ['no'] = true, ["isn't"] = true, ["aren't"] = true, never = true,
  ["doesn't"] = true, ['neither'] = true }

--- The resource a hypothesis is about and whether it is negated
--- ("disks are not the bottleneck").
function M.classify(text)
  local words, neg = {}, false
  for w in tostring(text):lower():gmatch("[%w/%-']+") do
    words[w] = true
    if #w > 3 and w:sub(-1) == 's' then words[w:sub(1, -2)] = true end  -- disks, locks
    if NEGATIONS[w] then neg = true end
  end
  for _, e in ipairs(M.WORDS) do
    for _, w in ipairs(e[2]) do
      if words[w] then return e[1], neg end
    end
  end
  return nil, neg
end

local function add(list, artifact, stance, note, weight)
  list[#list + 1] = { artifact = artifact, stance = stance, note = note, weight = weight or 1 }
end

local function cell_text(c)
  if type(c) ~= 'table' then return c and tostring(c) or 'not measured' end
  return tostring(c.text or c.missing or '?')
end

--- Scores `text` against recorded results (store.results + findings.prepare). Returns
--- { resource=, negated=, evidence = { {artifact, stance, note, weight} },
---   supports=, refutes=, verdict = 'supported'|'refuted'|'contested'|'inconclusive',
---   missing = { what could not be judged } }.
function M.score(text, data)
  local resource, negated = M.classify(text)
  local ev, missing = {}, {}
  local res = { hypothesis = text, resource = resource, negated = negated, evidence = ev, missing = missing }
  if not resource then
    missing[#missing + 1] = 'the hypothesis names no resource this tool measures (cpu, memory, disk, network, lock, a wait: blocked, peer, sleeping, or the service: errors, failed requests)'
  end
  local use = data.use
  local service = resource == 'service'   -- judged on the RED result, below
  if resource and resource ~= 'wait' and not service and use and use.available ~= false then
    local row = use[resource]
    local a = use.artifact or 'use-check'
    if type(row) == 'table' then
      local line = string.format('USE %s: %s (utilization %s; saturation %s)', tostring(row.name or resource),
        tostring(row.status), cell_text(row.utilization), cell_text(row.saturation))
      if row.status == 'HIGH' then add(ev, a, 'supports', line, 2)
      elseif row.status == 'warn' then add(ev, a, 'supports', line, 1)
      elseif row.status == 'ok' then add(ev, a, 'refutes', line, 2)
      else missing[#missing + 1] = 'USE ' .. resource .. ' row not measured' end
    elseif resource == 'disk' or resource == 'network' then
      add(ev, a, 'refutes', 'USE: no ' .. resource .. ' was busy enough to get a row', 1)
    else
      missing[#missing + 1] = 'no USE ' .. resource .. ' row'
    end
    if use.verdict and use.verdict ~= resource then
      add(ev, a, 'refutes', 'USE names ' .. use.verdict .. ' as the most saturated resource', 1)
    end
  elseif resource and resource ~= 'wait' and not service then
    missing[#missing + 1] = 'no USE check in the data'
  end
  if service then M.score_service(text, data, ev, missing) end
  local T = findings.thresholds
  local tsa = data.tsa
  if tsa and (tsa.available == false or type(tsa.total) ~= 'table') then tsa = nil end
  if resource == 'wait' then
    if not tsa then
      missing[#missing + 1] = 'no thread-state accounting (tsa) of the target'
    else
      local d = findings.dominant_wait(tsa)
      local sh = d and d.shares or tsa.total.shares or {}
      local busy = (tonumber(sh.cpu) or 0) + (tonumber(sh.runq) or 0)
      if d then
        local line = string.format('the target waits on %s %.0f%% of its wall time (on a CPU or runnable %.0f%%)',
          d.label, d.share, busy)
        if d.share >= T.wait_share_high then add(ev, tsa.artifact, 'supports', line, 2)
        elseif d.share >= T.wait_share_medium then add(ev, tsa.artifact, 'supports', line, 1)
        elseif busy >= 50 then add(ev, tsa.artifact, 'refutes', line, 2)
        else missing[#missing + 1] = line .. ': no wait holds a large share' end
      elseif busy >= 50 then
        add(ev, tsa.artifact, 'refutes', string.format('the target is on a CPU or runnable %.0f%% of its wall time', busy), 2)
      else
        add(ev, tsa.artifact, 'refutes', 'the target\'s waits are idle ones (poll/epoll, sleep, condition variables): '
          .. 'nothing holds it up', 2)
      end
      local reason = M.wait_reason(text)
      local x = reason and tonumber(sh[reason])
      if x and reason ~= (d and d.reason) then
        local l2 = string.format('%s: %.0f%% of its wall time', waits.LABELS[reason], x)
        if x < 5 then add(ev, tsa.artifact, 'refutes', l2, 1)
        elseif x >= T.wait_share_medium then add(ev, tsa.artifact, 'supports', l2, 1) end
      end
    end
  end
  if resource == 'cpu' and tsa then
    local h = findings.hot_thread(tsa)
    local sh = tsa.total.shares or {}
    if h and h.cpu >= T.hot_thread_pct then
      add(ev, tsa.artifact, 'supports', string.format('thread %s (%s) is on a CPU %.0f%% of its wall time: it cannot go faster',
        tostring(h.tid), tostring(h.comm), h.cpu), 2)
    elseif (tonumber(sh.cpu) or 0) < 20 and (tonumber(sh.runq) or 0) < 20 then
      add(ev, tsa.artifact, 'refutes', string.format('the target is on a CPU %.0f%% and runnable %.0f%% of its wall time',
        tonumber(sh.cpu) or 0, tonumber(sh.runq) or 0), 1)
    end
    if (tonumber(sh.runq) or 0) >= T.runq_share_medium then
      add(ev, tsa.artifact, 'supports', string.format('runnable but waiting for a CPU %.0f%% of its wall time', sh.runq), 1)
    end
  end
  if resource == 'disk' then
    local io = data.traces and data.traces.io
    if io and io.available ~= false then
      local worst, wname
      for _, d in ipairs(io.devices or io.rows or {}) do
        local p = findings.p99_ms(d)
        if p and (not worst or p > worst) then worst, wname = p, d.name or d.device or d.dev end
      end
      if worst then
        local line = string.format('I/O latency p99 %.1f ms on %s', worst, tostring(wname))
        if worst >= T.io_p99_ms_medium then add(ev, io.artifact, 'supports', line, 1)
        elseif worst < T.io_p99_ms_fast then add(ev, io.artifact, 'refutes', line .. ' (fast)', 1)
        else missing[#missing + 1] = line .. ': neither fast nor slow, no weight either way' end
      end
    else
      missing[#missing + 1] = 'no I/O latency histogram (trace io)'
    end
    local sc = data.traces and data.traces.syscall
    if sc and sc.share_of_time then
      local line = string.format('%.0f%% of the process\'s syscall time is in %s', sc.share_of_time * 100,
        table.concat(sc.only or { 'the traced calls' }, '/'))
      if sc.share_of_time > 0.5 then add(ev, sc.artifact, 'supports', line, 1)
      elseif sc.share_of_time < 0.1 then add(ev, sc.artifact, 'refutes', line, 1) end
    end
  elseif resource == 'lock' then
    local lk = data.traces and data.traces.lock
    local u = lk and type(lk.use) == 'table' and (lk.use.utilisation or lk.use.utilization)
    if u and not tostring(lk.use.utilisation_basis or ''):match('target') then
      missing[#missing + 1] = 'the lock tracer ran system-wide: its wait share counts idle thread pools (give a pid)'
    elseif u then
      add(ev, lk.artifact, u >= T.lock_wait_share_medium and 'supports' or 'refutes',
        string.format('threads wait on futexes %.0f%% of their time', u * 100), 1)
    else
      missing[#missing + 1] = 'no lock tracer result'
    end
  elseif resource == 'cpu' then
    -- the workload's own CPU use: a busy machine is not a CPU-bound workload
    local task = use and type(use.measures) == 'table' and type(use.measures.task) == 'table' and use.measures.task
    if task and task.cpu_pct then
      local line = string.format('the workload uses %.0f%% of one CPU', task.cpu_pct)
      if task.cpu_pct < 10 then add(ev, use.artifact, 'refutes', line, 2)
      elseif task.cpu_pct >= 80 then add(ev, use.artifact, 'supports', line, 1) end
    end
    local p = data.profiles and data.profiles.cpu
    local hot = findings.hot_function(p)
    if hot and hot.share then
      add(ev, p.artifact, 'supports', string.format('on-CPU profile: %s holds %.0f%% of samples',
        tostring(hot.name), hot.share * 100), 1)
    elseif not p then
      missing[#missing + 1] = 'no on-CPU profile'
    end
  end
  if negated then
    for _, e in ipairs(ev) do e.stance = e.stance == 'supports' and 'refutes' or 'supports' end
  end
  local sup, ref = 0, 0
  for _, e in ipairs(ev) do
    if e.stance == 'supports' then sup = sup + e.weight else ref = ref + e.weight end
  end
  res.supports, res.refutes, res.score = sup, ref, sup - 2 * ref
  if sup == 0 and ref == 0 then res.verdict = 'inconclusive'
  elseif res.score > 0 then res.verdict = 'supported'
  elseif res.score < 0 then res.verdict = 'refuted'
  else res.verdict = 'contested' end
  return res
end

-- words that make a service hypothesis about slowness rather than failures
local SLOW_WORDS = { slow = true, slowly = true, latency = true, p99 = true, p50 = true }

--- The RED evidence for a hypothesis about the service (its errors, or its
--- latency when the text speaks of slowness), added to `ev`; `missing` says
--- what could not be judged.
function M.score_service(text, data, ev, missing)
  local r = data.red
  if type(r) ~= 'table' or type(r.errors) ~= 'table' then
    missing[#missing + 1] = 'no RED result of the service (red-check --save DIR)'
    return
  end
  local T = findings.thresholds
  local slow = false
  for w in tostring(text):lower():gmatch('[%w]+') do if SLOW_WORDS[w] then slow = true end end
  local a = r.artifact or 'red-check.json'
  if slow then
    local p99 = type(r.latency) == 'table' and tonumber(r.latency.p99)
    if not p99 then missing[#missing + 1] = 'no latency in the RED result'; return end
    local line = string.format('requests take %s at p99 (threshold %g ms)', util.fmt_duration(p99),
      T.latency_p99_ms_medium)
    if p99 * 1e3 >= T.latency_p99_ms_medium then add(ev, a, 'supports', line, p99 * 1e3 >= T.latency_p99_ms_high and 2 or 1)
    else add(ev, a, 'refutes', line, 2) end
    return
  end
  local ratio = tonumber(r.errors.ratio)
  if not ratio then missing[#missing + 1] = 'no request answered or failed in the RED result'; return end
  local kinds = {}
  for i, k in ipairs(findings.error_kinds(r)) do kinds[i] = k.kind .. ' ' .. k.count end
  local line = string.format('%s of %s requests failed (%.1f%%%s)', tostring(r.errors.total), tostring(r.errors.attempts),
    ratio * 100, #kinds > 0 and (': ' .. table.concat(kinds, ', ')) or '')
  if ratio >= T.error_ratio_medium then add(ev, a, 'supports', line, ratio >= T.error_ratio_high and 2 or 1)
  elseif ratio < T.error_ratio_medium / 10 then add(ev, a, 'refutes', line, 2)
  else missing[#missing + 1] = line .. ': too few to call the service failing' end
end

--- Hypotheses at the service level from a RED result: "the service fails
--- requests: 10.0% errors (5xx 12589)", "the service answers slowly: p99 ...".
function M.service_texts(r)
  local out = {}
  if type(r) ~= 'table' or type(r.errors) ~= 'table' then return out end
  local T = findings.thresholds
  local ratio = tonumber(r.errors.ratio)
  if ratio and ratio >= T.error_ratio_medium then
    local kinds = {}
    for i, k in ipairs(findings.error_kinds(r)) do kinds[i] = k.kind .. ' ' .. k.count end
    out[#out + 1] = string.format('the service fails requests: %.1f%% errors%s', ratio * 100,
      #kinds > 0 and (' (' .. table.concat(kinds, ', ') .. ')') or '')
  end
  local p99 = type(r.latency) == 'table' and tonumber(r.latency.p99)
  if p99 and p99 * 1e3 >= T.latency_p99_ms_medium then
    out[#out + 1] = string.format('the service answers slowly: p99 latency %s', util.fmt_duration(p99))
  end
  return out
end

-- what a bottleneck usually means, in words a colleague would use
M.TEXT = {
  cpu = 'the workload is CPU-bound: on-CPU work saturates the CPUs',
  disk = 'the workload waits on disk I/O (synchronous writes or a saturated device)',
  lock = 'lock contention: threads wait on a shared mutex',
  memory = 'memory pressure: reclaim, swapping or faults stall the workload',
  network = 'the network is saturated (bandwidth, drops or retransmits)',
  service = 'the service fails requests or answers slowly',
}

-- words that name what a blocked thread waits for
local REASON_WORDS = {
  { 'ipc', { 'pipe', 'unix', 'peer', 'fifo' } }, { 'sleep', { 'sleep', 'sleeps', 'sleeping', 'nanosleep', 'back-off' } },
  { 'net', { 'socket', 'tcp', 'udp', 'network', 'remote' } }, { 'lock', { 'lock', 'mutex', 'futex' } },
  { 'io', { 'disk', 'i/o', 'io', 'fsync', 'fdatasync' } }, { 'memory', { 'memory', 'fault', 'faults', 'swap', 'reclaim' } },
  { 'child', { 'child', 'children' } },
}

--- The kind of wait a hypothesis names ('ipc', 'sleep', ...), or nil.
function M.wait_reason(text)
  local words = {}
  for w in tostring(text):lower():gmatch("[%w/%-']+") do words[w] = true end
  for _, e in ipairs(REASON_WORDS) do
    for _, w in ipairs(e[2]) do if words[w] then return e[1] end end
  end
  return nil
end

--- The hypothesis "the workload is blocked: it waits on X" from an
--- accounting result, naming the object when it is known; nil when the
--- target is not mostly waiting.
function M.wait_text(tsa)
  local d = findings.dominant_wait(tsa)
  if not d or d.share < findings.thresholds.wait_share_medium then return nil end
  return 'the workload is blocked: it waits on ' .. findings.wait_phrase(d)
end

--- Hypotheses worth testing given the data: the USE verdict's resource,
--- the resources with findings, and (to seek disconfirmation) the usual
--- suspects cpu and disk. Returns a list of texts, most likely first.
function M.candidates(data, found)
  local out, seen = {}, {}
  local function push(r) if r and M.TEXT[r] and not seen[r] then seen[r] = true; out[#out + 1] = M.TEXT[r] end end
  local wt = data.tsa and M.wait_text(data.tsa)
  local verdict = data.use and data.use.verdict
  if wt and not verdict then seen.wait = true; out[#out + 1] = wt end
  if data.use then push(verdict) end
  if wt and not seen.wait then seen.wait = true; out[#out + 1] = wt end
  for _, t in ipairs(M.service_texts(data.red)) do seen.service = true; out[#out + 1] = t end
  for _, f in ipairs(found or {}) do
    if f.severity == 'high' then push(f.resource) end
  end
  push('cpu'); push('disk')
  return out
end

--- One line for the terminal.
function M.render(res)
  local lines = { string.format('Hypothesis: %s', res.hypothesis),
    string.format('Verdict:    %s (for %g, against %g; refuting evidence counts double)', res.verdict:upper(),
      res.supports, res.refutes) }
  for _, e in ipairs(res.evidence) do
    lines[#lines + 1] = string.format('  %-8s %s  [%s]', e.stance, e.note, tostring(e.artifact))
  end
  for _, m in ipairs(res.missing) do lines[#lines + 1] = '  missing  ' .. m end
  return table.concat(lines, '\n') .. '\n'
end

return M
