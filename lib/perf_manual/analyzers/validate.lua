--- Did the fix work? The symptom's figures of two datasets (as
--- perf_manual.report.load reads them: an investigation's "before" and the
--- "after" measured once the fix is in, or a baseline and now), each with the
--- test the data allows, and an honest verdict on the symptom's primary metric.
--- Pure: datasets in, tables out (the statistics are perf_manual.analyzers.stats).
---
--- A metric row: { name = human name, key = metric key, unit =, before =,
--- after =, change_pct =, ci_lo =, ci_hi = (95% CI of the change, %), p =,
--- test = 'mann-whitney' | 'two-proportion z' | 'poisson rate' | 'one value per side' |
--- 'no test' (with why =), lower_better = bool }.
local stats = require('perf_manual.analyzers.stats')

local M = {}

M.ALPHA = stats.ALPHA

-- the RED figures: what stats.judge judges, in the units people read
local RED = {
  { key = 'red.latency.p50', name = 'Latency p50', exp = 'p50 -0%', unit = 'ms', scale = 1000, lower_better = true },
  { key = 'red.latency.p90', name = 'Latency p90', exp = 'p90 -0%', unit = 'ms', scale = 1000, lower_better = true },
  { key = 'red.latency.p99', name = 'Latency p99', exp = 'p99 -0%', unit = 'ms', scale = 1000, lower_better = true },
  { key = 'red.error_ratio', name = 'Error ratio', exp = 'errors -0%', unit = '%', scale = 100, lower_better = true },
  { key = 'red.throughput', name = 'Throughput', exp = 'throughput +0%', unit = 'req/s', scale = 1,
    lower_better = false },
}

-- quantify.json figures (one value per side), by dataset scalar key
local QUANTIFY = {
  { key = 'quantify.process.cpu_pct', name = 'Workload CPU', unit = '% of a CPU', lower_better = true },
  { key = 'quantify.process.runq_wait_pct', name = 'Workload run-queue wait', unit = '%', lower_better = true },
  { key = 'quantify.system.busy_pct', name = 'System CPU busy', unit = '%', lower_better = true },
  { key = 'quantify.system.iowait_pct', name = 'System iowait', unit = '%', lower_better = true },
  { key = 'quantify.system.load1', name = 'Load average (1 min)', unit = '', lower_better = true },
}

local function test_of(method)
  method = tostring(method or '')
  if method:find('Mann%-Whitney') then return 'mann-whitney' end
  if method:find('two%-proportion') then return 'two-proportion z' end
  if method:find('Poisson') then return 'poisson rate' end
  return 'one value per side'
end

local function change_pct(b, a)
  if type(b) ~= 'number' or type(a) ~= 'number' or b == 0 then return nil end
  return (a / b - 1) * 100
end

local function has_red(ds) return type(ds) == 'table' and type(ds.red) == 'table' end

--- The RED rows of two datasets that both hold a RED result (else {}).
function M.red_rows(before, after, opts)
  opts = opts or {}
  if not (has_red(before) and has_red(after)) then return {} end
  local exps = {}
  for i, m in ipairs(RED) do exps[i] = assert(stats.parse_expect(m.exp)) end
  local judged = stats.judge(exps, before, after, { seed = opts.seed or 1, iterations = opts.iterations or 2000,
    stop = opts.stop, alpha = opts.alpha })
  local rows = {}
  for i, m in ipairs(RED) do
    local j = judged[i]
    if type(j.before) == 'number' or type(j.after) == 'number' then
      local row = { name = m.name, key = m.key, unit = m.unit, lower_better = m.lower_better,
        before = j.before and j.before * m.scale, after = j.after and j.after * m.scale }
      row.change_pct = change_pct(j.before, j.after)
      if j.status ~= 'not judged' and type(j.p) == 'number' then
        row.p = j.p
        row.test = test_of(j.method)
        row.ci_lo = j.ci_lo and j.ci_lo * 100
        row.ci_hi = j.ci_hi and j.ci_hi * 100
        row.n_before, row.n_after = j.n_before, j.n_after
      else
        -- samples on both sides, but no test: say why (a change from 0 has no ratio)
        row.test = 'no test'
        row.why = j.why
      end
      rows[#rows + 1] = row
    end
  end
  return rows
end

--- quantify.json figures on both sides: one value per side, no test.
function M.quantify_rows(before, after)
  local rows = {}
  local sb, sa = before and before.scalars or {}, after and after.scalars or {}
  for _, m in ipairs(QUANTIFY) do
    local b, a = sb[m.key], sa[m.key]
    if type(b) == 'number' and type(a) == 'number' then
      rows[#rows + 1] = { name = m.name, key = m.key, unit = m.unit, before = b, after = a,
        change_pct = change_pct(b, a), test = 'one value per side', lower_better = m.lower_better }
    end
  end
  return rows
end

local USE_PARTS = { { 'utilization', 'utilization', '%' }, { 'saturation', 'saturation', '' },
  { 'errors', 'errors', '' } }

--- The USE figures (CPU, memory, disk, network, locks: utilization,
--- saturation, errors of each row of a use-check) present on both sides.
function M.use_rows(before, after)
  local rows = {}
  local ub, ua = before and before.use, after and after.use
  if type(ub) ~= 'table' or type(ua) ~= 'table' then return rows end
  local function index(u)
    local t = {}
    for _, r in ipairs(u.rows or {}) do
      if type(r) == 'table' and r.resource then t[tostring(r.resource) .. '/' .. tostring(r.name)] = r end
    end
    return t
  end
  local ib, ia = index(ub), index(ua)
  for _, r in ipairs(ub.rows or {}) do
    local id = type(r) == 'table' and r.resource and (tostring(r.resource) .. '/' .. tostring(r.name))
    local o = id and ia[id]
    if o and ib[id] == r then
      for _, part in ipairs(USE_PARTS) do
        local b = type(r[part[1]]) == 'table' and r[part[1]].value
        local a = type(o[part[1]]) == 'table' and o[part[1]].value
        -- a figure that is 0 on both sides says nothing: left out
        if type(b) == 'number' and type(a) == 'number' and (b ~= 0 or a ~= 0) then
          rows[#rows + 1] = { name = string.format('%s %s', tostring(r.name), part[2]),
            key = string.format('use.%s.%s.%s', tostring(r.resource), tostring(r.name), part[1]),
            unit = part[1] == 'utilization' and '%' or '', before = b, after = a, change_pct = change_pct(b, a),
            test = 'one value per side', lower_better = true,
            text_before = r[part[1]].text, text_after = o[part[1]].text }
        end
      end
    end
  end
  return rows
end

--- Every symptom row two datasets allow: RED, then quantify.
function M.rows(before, after, opts)
  local rows = M.red_rows(before, after, opts)
  for _, r in ipairs(M.quantify_rows(before, after)) do rows[#rows + 1] = r end
  return rows
end

-- the words of a symptom that name what it is about
local function symptom_kind(text)
  text = tostring(text or ''):lower()
  if text:find('error') or text:find('fail') or text:find('5%d%d') or text:find('5xx') then return 'errors' end
  if text:find('throughput') or text:find('rps') or text:find('requests? per second') or text:find('req/s') then
    return 'throughput'
  end
  return 'latency'
end

-- A percentile rests on the values beyond it: p99 of 300 requests is the
-- 3 slowest, and two runs of an unchanged service differ there by 15%.
-- The latency percentile judged is the highest with at least this many
-- values beyond it on the smaller side (p99: 1000 requests, p90: 100).
M.TAIL_VALUES = 10

--- The symptom's primary metric among rows: the error ratio for a symptom
--- about errors, throughput for one about throughput, else latency at the
--- highest percentile the samples support (p99, p90, p50: M.TAIL_VALUES);
--- without RED data, the workload's CPU (one value per side).
function M.primary(rows, symptom)
  local by = {}
  for _, r in ipairs(rows) do by[r.key] = r end
  local want = ({ errors = 'red.error_ratio', throughput = 'red.throughput' })[symptom_kind(symptom)]
  if want and by[want] then return by[want] end
  local lat
  for _, q in ipairs({ { 'p99', 0.01 }, { 'p90', 0.1 }, { 'p50', 0.5 } }) do
    local r = by['red.latency.' .. q[1]]
    local n = r and math.min(r.n_before or 0, r.n_after or 0)
    if r and n * q[2] >= M.TAIL_VALUES then lat = r break end
  end
  return lat or by['red.latency.p50'] or by['red.latency.p99']
    or by['quantify.process.cpu_pct'] or by['quantify.system.busy_pct'] or rows[1]
end

-- Two runs of an unchanged workload differ by a few percent even where a
-- test calls the difference significant (hundreds of values make any
-- drift significant): the verdict counts changes beyond this margin (%).
M.MARGIN = 10

--- The verdict on one row (opts: alpha, margin in %):
---   fixed         the test is significant (p < alpha) and the whole 95% CI
---                 of the change lies on the better side, beyond the margin
---                 (so it excludes 0)
---   worse         the same on the worse side
---   not fixed     the whole CI lies within the margin (no change that
---                 matters), or the test is not significant and the CI
---                 stays within the margin
---   inconclusive  no test (one value per side, no data), or the CI
---                 reaches both beyond and within the margin
--- Returns the verdict and, when not fixed or inconclusive, why.
function M.verdict(row, opts)
  if type(opts) ~= 'table' then opts = { alpha = opts } end
  local alpha, m = opts.alpha or M.ALPHA, opts.margin or M.MARGIN
  if not row then return 'inconclusive', 'no metric measured on both sides' end
  if type(row.p) ~= 'number' or type(row.ci_lo) ~= 'number' or type(row.ci_hi) ~= 'number'
    or type(row.change_pct) ~= 'number' then
    return 'inconclusive', row.why or 'one value per side: no test possible'
  end
  local lo, hi = row.ci_lo, row.ci_hi
  if not row.lower_better then lo, hi = -hi, -lo end   -- from here, negative is better
  if row.p < alpha then
    if hi < -m then return 'fixed' end
    if lo > m then return 'worse' end
  end
  if lo >= -m and hi <= m then
    return 'not fixed', row.p < alpha and string.format('the change stays within %g%% of no change', m)
      or 'no significant change'
  end
  return 'inconclusive', string.format('the interval reaches both beyond and within %g%% of no change', m)
end

local function fmt_pct(x) return string.format('%+.0f%%', x) end

local TEST_WORD = { ['mann-whitney'] = 'U test', ['two-proportion z'] = 'z test', ['poisson rate'] = 'rate test' }

local function short_name(row)
  return (row.key:match('^red%.latency%.(p%d+)$')) or row.name:lower()
end

--- "fixed: p99 -38%, 95% CI [-41%, -35%], U test p < 0.001"
function M.summary(verdict, row, why)
  if not row then return verdict .. ': ' .. (why or 'nothing to compare') end
  local parts = { verdict .. ': ' .. short_name(row) .. ' ' .. (row.change_pct and fmt_pct(row.change_pct) or 'n/a') }
  if type(row.ci_lo) == 'number' and type(row.ci_hi) == 'number' then
    parts[#parts + 1] = string.format('95%% CI [%s, %s]', fmt_pct(row.ci_lo), fmt_pct(row.ci_hi))
  end
  if type(row.p) == 'number' and row.test ~= 'one value per side' then
    parts[#parts + 1] = string.format('%s %s', TEST_WORD[row.test] or row.test,
      row.p < 0.001 and 'p < 0.001' or string.format('p = %.3g', row.p))
    if why then parts[#parts] = parts[#parts] .. ' (' .. why .. ')' end
  else
    parts[#parts + 1] = why or 'one value per side: no test'
  end
  return table.concat(parts, ', ')
end

--- The validation of a fix: { verdict, summary, primary = key, metrics }.
--- opts: symptom (text), alpha, seed, iterations, stop.
function M.validation(before, after, opts)
  opts = opts or {}
  local rows = M.rows(before, after, opts)
  local prim = M.primary(rows, opts.symptom)
  local verdict, why = M.verdict(prim, opts)
  local metrics = {}
  -- the primary metric first, then the rest in their order
  if prim then metrics[1] = prim end
  for _, r in ipairs(rows) do if r ~= prim then metrics[#metrics + 1] = r end end
  return { verdict = verdict, summary = M.summary(verdict, prim, why), primary = prim and prim.key, metrics = metrics }
end

local function fmt_val(v, unit)
  if type(v) ~= 'number' then return 'n/a' end
  local s
  local a = math.abs(v)
  if a >= 100 then s = string.format('%.0f', v) elseif a >= 1 then s = string.format('%.2f', v)
  else s = string.format('%.3g', v) end
  return (unit and unit ~= '') and (s .. ' ' .. unit) or s
end
M.fmt_val = fmt_val

--- Console lines of metric rows (a table), the first row marked primary.
function M.render_rows(metrics, primary_key, heads)
  heads = heads or { 'metric', 'before', 'after' }
  local lines = { string.format('  %-28s %14s %14s %8s  %-20s %s', heads[1], heads[2], heads[3], 'change', '95% CI',
    'test') }
  for _, r in ipairs(metrics) do
    local ci = (type(r.ci_lo) == 'number' and type(r.ci_hi) == 'number')
      and string.format('[%s, %s]', fmt_pct(r.ci_lo), fmt_pct(r.ci_hi)) or '-'
    local test = type(r.p) ~= 'number' and (r.why and (r.test .. ': ' .. r.why) or r.test)
      or string.format('%s %s', TEST_WORD[r.test] or r.test, r.p < 0.001 and 'p<0.001' or string.format('p=%.3g', r.p))
    lines[#lines + 1] = string.format('%s %-28s %14s %14s %8s  %-20s %s', r.key == primary_key and '*' or ' ',
      r.name, fmt_val(r.before, r.unit), fmt_val(r.after, r.unit),
      r.change_pct and fmt_pct(r.change_pct) or '-', ci, test)
  end
  return lines
end

--- The console text of a validation.
function M.render(v)
  local lines = { 'Validation: ' .. v.summary }
  for _, l in ipairs(M.render_rows(v.metrics, v.primary)) do lines[#lines + 1] = l end
  lines[#lines + 1] = '  (* the symptom\'s primary metric: the verdict is judged on it)'
  return table.concat(lines, '\n')
end

-- Workload identity -----------------------------------------------------------

-- the program of a --workload text: a command's executable (its base name),
-- or a process name; nil for a pid (its comm comes from the data)
local function program_of(spec)
  spec = tostring(spec or '')
  if spec == '' or spec == 'system' then return nil end
  if spec:match('^%d+$') or spec:match('^pid:') then return nil end
  if spec:match('^service:') or spec:match('%.service$') or spec:match('^cgroup:') then return nil end
  local argv0 = spec:match('^argv:%[%s*"([^"]+)"') or spec:gsub('^cmd:', ''):gsub('^process:', ''):match('^%s*(%S+)')
  if not argv0 then return nil end
  return (argv0:match('([^/]+)$') or argv0):sub(1, 15)   -- the kernel's comm is 15 characters
end

local function unit_of(spec)
  spec = tostring(spec or '')
  return spec:match('^service:(.+)$') or spec:match('^(%S+%.service)$')
end

local function cgroup_of(spec)
  spec = tostring(spec or '')
  return spec:match('^cgroup:(.+)$')
end

-- an endpoint without its query: scheme://host:port/path
local function endpoint_of(url)
  if type(url) ~= 'string' or url == '' then return nil end
  local u = url:gsub('[?#].*$', '')
  local scheme, host, rest = u:match('^(%a+)://([^/]+)(.*)$')
  if not scheme then return u end
  if not host:find(':%d+$') then host = host .. (scheme == 'https' and ':443' or ':80') end
  return scheme:lower() .. '://' .. host:lower() .. (rest == '' and '/' or rest)
end

--- What makes a workload the same one across investigations: the program
--- (a command's executable name, a process name, or the comm the data
--- recorded for a pid; 15 characters like the kernel's comm), else the
--- service or the cgroup, or the whole system; and the endpoint a RED check
--- loaded (scheme, host, port and path; the query is left out). The
--- command's arguments, a pid and the host are not part of it: a baseline
--- is an earlier run of the same program, restarted, maybe with other flags.
--- facts: { workload = --workload text, endpoint =, comm = (recorded),
--- target_kind = (recorded: 'pid'|'cgroup'|'service'|'system') }.
function M.identity(facts)
  facts = facts or {}
  local id = { endpoint = endpoint_of(facts.endpoint) }
  local w, kind = facts.workload, facts.target_kind
  if facts.comm and facts.comm ~= '' then id.program = tostring(facts.comm):sub(1, 15)
  elseif kind == 'cgroup' then id.cgroup = cgroup_of(w) or tostring(w)
  elseif kind == 'service' then id.service = unit_of(w) or tostring(w)
  elseif w == 'system' or kind == 'system' then id.system = true
  elseif unit_of(w) then id.service = unit_of(w)
  elseif cgroup_of(w) then id.cgroup = cgroup_of(w)
  elseif program_of(w) then id.program = program_of(w) end
  return id
end

--- A one-line description of an identity.
function M.describe(id)
  local parts = {}
  if id.program then parts[#parts + 1] = 'program ' .. id.program end
  if id.service then parts[#parts + 1] = 'service ' .. id.service end
  if id.cgroup then parts[#parts + 1] = 'cgroup ' .. id.cgroup end
  if id.system then parts[#parts + 1] = 'the whole system' end
  if id.endpoint then parts[#parts + 1] = 'endpoint ' .. id.endpoint end
  return #parts > 0 and table.concat(parts, ', ') or 'unknown'
end

--- Whether two identities are the same workload: true; false, why; or
--- nil, why when the data cannot tell (nothing comparable recorded).
function M.same_workload(a, b)
  local compared = false
  for _, k in ipairs({ 'program', 'service', 'cgroup', 'system', 'endpoint' }) do
    if a[k] ~= nil and b[k] ~= nil then
      compared = true
      if a[k] ~= b[k] then return false, string.format('%s differs', k) end
    elseif (a[k] ~= nil) ~= (b[k] ~= nil) and k ~= 'endpoint' then
      -- one side a program, the other a service (or the system): not the same target
      local other = false
      for _, k2 in ipairs({ 'program', 'service', 'cgroup', 'system' }) do
        if k2 ~= k and ((a[k] ~= nil and b[k2] ~= nil) or (b[k] ~= nil and a[k2] ~= nil)) then other = true end
      end
      if other then return false, 'a different kind of target' end
    end
  end
  if not compared then return nil, 'no workload identity recorded on one side' end
  return true
end

return M
