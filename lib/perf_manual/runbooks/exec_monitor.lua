--- exec-monitor: rules (perf_manual.runbooks.exec_rules, or a team's file)
--- checked, compiled and run over events from the execmon tracer
--- (bpf/execmon.bpf.c), alerts as tables ready for JSON lines.
---
---   local rules = M.load_rules { file = 'team.lua', defaults = true }
---   local alerts = M.judge(rules, events)
local util = require('perf_manual.util')

local M = {}

M.KINDS = { exec = true, open = true, connect = true }
M.PRIORITIES = { critical = true, warning = true, notice = true, info = true }
M.MAX_EVENTS = 100000

local function list(v) return type(v) == 'table' and v or { v } end

-- one rule, checked; errors name the file and the rule
local function check(rule, i, from)
  local where = string.format('%s: rule %d%s', from, i, type(rule) == 'table' and rule.name and
    (" '" .. tostring(rule.name) .. "'") or '')
  if type(rule) ~= 'table' then util.user_error(where .. ': must be a table') end
  if type(rule.name) ~= 'string' or rule.name == '' then util.user_error(where .. ': needs a name') end
  if not M.KINDS[rule.on] then util.user_error(where .. ": 'on' must be exec, open or connect") end
  rule.priority = rule.priority or 'warning'
  if not M.PRIORITIES[rule.priority] then
    util.user_error(where .. ': priority must be critical, warning, notice or info')
  end
  if rule.when ~= nil and type(rule.when) ~= 'function' then util.user_error(where .. ": 'when' must be a function") end
  for _, k in ipairs({ 'match', 'unless' }) do
    if rule[k] ~= nil then
      if type(rule[k]) ~= 'table' then
        util.user_error(where .. ": '" .. k .. "' must be a table of field = pattern")
      end
      for f, pats in pairs(rule[k]) do
        for _, pat in ipairs(list(pats)) do
          if type(pat) ~= 'string' or not pcall(string.find, '', pat) then
            util.user_error(string.format("%s: %s.%s: bad pattern '%s'", where, k, tostring(f), tostring(pat)))
          end
        end
      end
    end
  end
  if rule.paths ~= nil then
    for _, p in ipairs(list(rule.paths)) do
      if type(p) ~= 'string' or p:sub(1, 1) ~= '/' then util.user_error(where .. ': paths are absolute prefixes') end
    end
    rule.paths = list(rule.paths)
  end
  rule.output = rule.output or rule.name
  return rule
end

--- Loads the rules: the built-in ones (defaults ~= false) then those of
--- opts.file (a Lua file returning a list of rules). One-line user errors.
function M.load_rules(opts)
  opts = opts or {}
  local out = {}
  local function add(rules, from)
    if type(rules) ~= 'table' then util.user_error(from .. ': must return a list of rules') end
    for i, r in ipairs(rules) do out[#out + 1] = check(r, i, from) end
  end
  if opts.defaults ~= false then
    package.loaded['perf_manual.runbooks.exec_rules'] = nil
    add(require('perf_manual.runbooks.exec_rules'), 'built-in rules')
  end
  if opts.file then
    local chunk, err = loadfile(opts.file)
    if not chunk then util.user_error('rules ' .. tostring(err)) end
    local ok, v = pcall(chunk)
    if not ok then util.user_error('rules ' .. opts.file .. ': ' .. tostring(v)) end
    add(v, opts.file)
  end
  if #out == 0 then util.user_error('no rules: give --rules FILE or keep the built-in ones') end
  return out
end

--- The path prefixes the kernel side must watch for open rules.
function M.watched(rules)
  local seen, out = {}, {}
  for _, r in ipairs(rules) do
    if r.on == 'open' then
      for _, p in ipairs(r.paths or {}) do
        if not seen[p] then seen[p] = true; out[#out + 1] = p end
      end
    end
  end
  return out
end

--- True when every rule on opens names paths (else every open must be seen).
function M.all_opens(rules)
  for _, r in ipairs(rules) do if r.on == 'open' and not r.paths then return true end end
  return false
end

local function field(e, k)
  if k == 'cmdline' then return table.concat(e.args or { e.path or '' }, ' ') end
  local v = e[k]
  if type(v) == 'table' then return table.concat(v, ' ') end
  return v
end

local function any(value, pats)
  if value == nil then return false end
  value = tostring(value)
  for _, p in ipairs(list(pats)) do if value:find(p) then return true end end
  return false
end

--- Does the rule fire on the event? (A `when` that errors does not fire; the error is returned.)
function M.fires(rule, e)
  if rule.on ~= e.kind then return false end
  if rule.paths then
    local ok = false
    for _, p in ipairs(rule.paths) do
      if e.path and e.path:sub(1, #p) == p then ok = true; break end
    end
    if not ok then return false end
  end
  for k, pats in pairs(rule.match or {}) do
    if not any(field(e, k), pats) then return false end
  end
  for k, pats in pairs(rule.unless or {}) do
    if any(field(e, k), pats) then return false end
  end
  if rule.when then
    local ok, v = pcall(rule.when, e)
    if not ok then return false, tostring(v) end
    return v and true or false
  end
  return true
end

--- The alert text: {field} replaced.
function M.format(text, e)
  return (text:gsub('{([%w_]+)}', function(k)
    local v = field(e, k)
    return v ~= nil and tostring(v) or ('{' .. k .. '}')
  end))
end

--- Alerts for the events, in order: { time, rule, priority, output, event }.
--- rule_errors: rule name → the first error of its `when`.
function M.judge(rules, events, t0_ns)
  local alerts, errs = {}, {}
  for _, e in ipairs(events) do
    for _, r in ipairs(rules) do
      local hit, err = M.fires(r, e)
      if err and not errs[r.name] then errs[r.name] = err end
      if hit then
        alerts[#alerts + 1] = { time = e.time, rule = r.name, priority = r.priority, output = M.format(r.output, e),
          event = e, t_s = t0_ns and e.ts_ns and (e.ts_ns - t0_ns) / 1e9 or nil }
      end
    end
  end
  return alerts, errs
end

--- Watches live. opts: target, duration, prefixes, all_opens,
--- on_events(events) (called as they are drained, ~every 0.1 s), progress,
--- note, max_overhead. The recording keeps the events (up to MAX_EVENTS).
---@return table? recording, string? why
function M.run(opts)
  local measure = require('perf_manual.measure')
  local targets = require('perf_manual.measure.target')
  local sys = require('perf_manual.sys')
  return measure.with_session({ target = opts.target or 'system', duration = opts.duration or 10,
    what = 'exec monitor', max_overhead = opts.max_overhead, progress = opts.progress, note = opts.note,
    command = 'exec-monitor', soft = true, defer_launch = true }, function(s)
    s:start()
    local off = measure.bpf_unavailable()
    if off then return nil, 'exec-monitor needs BPF: ' .. off end
    local filter, ferr = targets.bpf_filter(s.target)
    if not filter then return nil, ferr end
    local topts = { prefixes = opts.prefixes, all_opens = opts.all_opens }
    for k, v in pairs(filter) do topts[k] = v end
    local tr, err = s:start_tracer('execmon', require('perf_manual.runbooks.execmon_tracer'), topts)
    if not tr then return nil, 'execmon tracer: ' .. tostring(err) end
    local events, kept_out = {}, 0
    local t0_ns = math.floor(sys.now() * 1e9)
    -- event stamps are the monotonic clock (bpf_ktime_get_ns): the wall clock is an offset away
    local wall = sys.realtime() - sys.now()
    local function iso(t)
      return os.date('!%Y-%m-%dT%H:%M:%S', math.floor(t)) .. string.format('.%03dZ', math.floor(t % 1 * 1000))
    end
    local function drain()
      local batch = tr:drain()
      if #batch == 0 then return end
      for _, e in ipairs(batch) do
        e.time = iso(e.ts_ns / 1e9 + wall)
        if #events < M.MAX_EVENTS then events[#events + 1] = e else kept_out = kept_out + 1 end
      end
      if opts.on_events then opts.on_events(batch) end
    end
    s:begin()
    local ended = s:run { poll = 0.1, tick = drain }
    drain()
    local res = tr:read()
    local info = s:finish()
    local q = res.quality or {}
    return { kind = 'exec-monitor', target = s.target.label, window_s = sys.now() - s.t0, ended_by = ended,
      t0_ns = t0_ns, events = util.array(events), events_not_kept = kept_out,
      prefixes = util.array(opts.prefixes or {}),
      quality = { events_seen = q.events_seen, events_lost = q.events_lost, bpf_cpu_pct = q.bpf_cpu_pct,
        bpf_ns_per_run = q.bpf_ns_per_run, detached = info.detached.execmon },
      notes = info.notes,
      source = 'bpf: execmon (sched:sched_process_exec, syscalls:sys_enter_openat on watched prefixes, '
        .. 'sock:inet_sock_set_state)' }
  end)
end

return M
