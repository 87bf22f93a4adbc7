--- The playbook language and its engine.
---
--- A playbook file returns `playbook { name=, summary=, params=, step "..." {...}, ... }`.
--- `playbook`, `param` and `step` are provided in the file's environment; the
--- rest of the environment is the ordinary Lua globals (no new globals are set).
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local host = require('perf_manual._host')
local dirent = require('posix.dirent')

local M = {}

-- Parameters ---------------------------------------------------------------

local seq = 0
local param = {}
M.param = param

local Param = {}
Param.__index = Param

local function make(kind, conv)
  return function(spec)
    spec = spec or {}
    seq = seq + 1
    local p = setmetatable({
      kind = kind,
      desc = spec[1] or spec.desc,
      default = spec.default,
      optional = not spec.required and (spec.optional or spec.default ~= nil or kind == 'flag'),
      min = spec.min, max = spec.max, above = spec.above, unless = spec.unless,
      -- a duration is at most a day unless the param says otherwise
      -- (--duration 100000h is a typo, not a plan)
      aliases = spec.aliases, conflicts = spec.conflicts, empty = spec.empty,
      positional = spec.positional,
      choices = spec.choices,
      short = spec.short,
      hidden = spec.hidden,
      -- the target a command after `--` becomes; a duration that then runs until it exits
      command = spec.command, until_exit = spec.until_exit,
      seq = seq,
      conv = conv,
    }, Param)
    if kind == 'duration' and p.max == nil then p.max = M.MAX_DURATION end
    -- integers beyond 2^53 are not exact in a double: no param means them
    if kind == 'integer' and p.max == nil then p.max = 2 ^ 53 end
    if kind == 'integer' and p.min == nil and p.above == nil then p.min = -2 ^ 53 end
    return p
  end
end

M.MAX_DURATION = 86400
-- the kernel's PID_MAX_LIMIT: no pid is above it on any configuration
M.PID_MAX = 4194304

-- tonumber takes "nan", "inf" and "1e999": no option means those
local function finite(n)
  return n and n == n and n ~= math.huge and n ~= -math.huge and n or nil
end

local function conv_number(v)
  local n = tonumber(v)
  if not n then return nil, 'expected a number' end
  if not finite(n) then return nil, 'expected a finite number' end
  return n
end

--- A pid as typed (digits), checked against the largest pid the kernel can
--- give: nil, why when it is not one.
function M.check_pid(v)
  local n = tostring(v):match('^%s*(%d+)%s*$') and tonumber(v)
  if not n or n <= 0 then return nil, 'expected a process id' end
  if n > M.PID_MAX then return nil, 'bad pid (process ids go up to ' .. M.PID_MAX .. ')' end
  return n
end

param.string = make('string', function(v) return tostring(v) end)
param.path = make('path', function(v) return tostring(v) end)
param.investigation = make('investigation', function(v) return tostring(v) end)
param.number = make('number', conv_number)
param.integer = make('integer', function(v)
  local n = finite(tonumber(v))
  if not n or n ~= math.floor(n) then return nil, 'expected an integer' end
  return n
end)
param.flag = make('flag', function(v) return v and true or false end)
param.duration = make('duration', function(v)
  -- a negative duration parses, so the range check can say what is wrong with it
  local neg, rest = tostring(v):match('^%s*(%-?)(.*)$')
  local s = finite(util.parse_duration(type(v) == 'number' and math.abs(v) or rest))
  if not s then return nil, 'expected a duration like 10, 10s, 500ms or 2m' end
  return neg == '-' and -s or s
end)
param.pid = make('pid', function(v) return M.check_pid(v) end)
-- "system", a pid, a systemd service name or a cgroup path: resolved by the
-- playbook (perf_manual.target), kept as text here; a number too big to be
-- a pid is refused here, before the resolver calls it "no process 1e+20"
param.target = make('target', function(v)
  v = tostring(v)
  local digits = v:match('^pid:(.*)$') or v:match('^%s*(%d+)%s*$')
  if digits then
    local n, why = M.check_pid(digits)
    if not n then return nil, why end
  end
  return v
end)
param.list = make('list', function(v)
  if type(v) == 'table' then return v end
  local out = {}
  for item in tostring(v):gmatch('[^,%s]+') do out[#out + 1] = item end
  return out
end)
-- repeatable text option, kept whole (no splitting at commas or spaces)
param.strings = make('strings', function(v)
  if type(v) == 'table' then return v end
  return { tostring(v) }
end)
param.choice = make('choice', function(v, p)
  for _, c in ipairs(p.choices or {}) do
    if c == v then return v end
  end
  return nil, 'expected one of: ' .. table.concat(p.choices or {}, ', ')
end)

--- The spellings every target parameter also takes: --pid N is --target pid:N,
--- --cgroup PATH is --target cgroup:PATH.
param.target_aliases = {
  { name = 'pid', prefix = 'pid:', argname = 'pid', desc = 'same as --target PID' },
  { name = 'cgroup', prefix = 'cgroup:', argname = 'path', desc = 'same as --target cgroup:PATH (path under the '
    .. 'cgroup mounts, or a v2 id)' },
}

function Param:convert(v)
  return self.conv(v, self)
end

--- The range a number, integer or duration must be in (min, max inclusive;
--- above exclusive): nil when v is in it, else what it must be.
function Param:out_of_range(v)
  if type(v) ~= 'number' then return nil end
  local show = self.kind == 'duration' and function(x) return util.fmt_duration(x) end
    or function(x) return string.format('%.14g', x) end
  if self.kind == 'duration' and v < 0 and not self.min and not self.above then
    return 'must not be negative'
  end
  if self.above and v <= self.above then
    return 'must be more than ' .. (self.above == 0 and '0' or show(self.above))
  end
  if self.min and v < self.min then return 'must be at least ' .. show(self.min) end
  if self.max and v > self.max then return 'must be at most ' .. show(self.max) end
end

-- Declarations -------------------------------------------------------------

local Step = {}
Step.__index = Step

--- step "name" { budget = "10m", function(inv, p) ... end }
function M.step(name)
  return function(def)
    local fn = def[1] or def.run
    if type(fn) ~= 'function' then
      error(string.format("step '%s': expected a function", name), 2)
    end
    return setmetatable({
      name = name, fn = fn,
      budget = def.budget and util.parse_duration(def.budget),
    }, Step)
  end
end

local Playbook = {}
Playbook.__index = Playbook
M.Playbook = Playbook

--- playbook { name=, summary=, params=, needs=, step... | run= }
function M.playbook(def)
  if type(def) ~= 'table' then error('playbook: expected a table', 2) end
  if type(def.name) ~= 'string' then error("playbook: missing 'name'", 2) end
  if def.topic ~= nil and (type(def.topic) ~= 'string' or not def.topic:match('^[%w_-]+$')) then
    error(string.format("playbook '%s': topic must be a word like 'disk'", def.name), 2)
  end
  local pb = setmetatable({
    name = def.name,
    summary = def.summary or '',
    topic = def.topic,    -- the group `perf_manual list` shows it in (perf_manual.topics)
    description = def.description,
    examples = def.examples,
    needs = def.needs or {},
    params = {},
    steps = {},
    run_fn = def.run,
    hidden = def.hidden,
    investigation = def.investigation,
    check = def.check,
  }, Playbook)
  for name, p in pairs(def.params or {}) do
    if getmetatable(p) ~= Param then
      error(string.format("playbook '%s': param '%s' must be made with param.<type>{}", def.name, name), 2)
    end
    p.name = name
    pb.params[#pb.params + 1] = p
  end
  table.sort(pb.params, function(a, b) return a.seq < b.seq end)
  for _, s in ipairs(def) do
    if getmetatable(s) ~= Step then
      error(string.format("playbook '%s': list entries must be steps", def.name), 2)
    end
    pb.steps[#pb.steps + 1] = s
  end
  if not pb.run_fn and #pb.steps == 0 then
    error(string.format("playbook '%s': no steps and no run function", def.name), 2)
  end
  if pb.investigation then M.add_engine_params(pb) end
  if pb.check then pb.params_check = pb.check end
  return pb
end

--- The options every investigation playbook gets from the engine. Its own
--- required params become optional on the command line when --resume
--- names a stored investigation (they come from its metadata then).
function M.add_engine_params(pb)
  local have = {}
  for _, p in ipairs(pb.params) do have[p.name] = true end
  local extra = {
    { 'store', param.path { 'investigation store directory [default: $PERF_MANUAL_STORE or ./investigations]' } },
    { 'answers', param.path { 'YAML file answering the questions (question text or key: answer)' } },
    { 'answer', param.strings { 'answer one question: KEY=ANSWER (repeatable)' } },
    { 'batch', param.flag { 'never prompt, even on a terminal (unanswered questions take their defaults)' } },
    { 'resume', param.investigation { 'continue a stored investigation from its last completed step' } },
    { 'replay', param.path { 'run against a recorded data dir (collect output or investigation) '
      .. 'instead of the live system' } },
    { 'name', param.string { 'name of the investigation folder [default: from the symptom]' } },
  }
  local required = {}
  for _, p in ipairs(pb.params) do
    if not p.optional then p.optional = true; required[#required + 1] = p end
  end
  for _, e in ipairs(extra) do
    if not have[e[1]] then
      e[2].name = e[1]
      e[2].engine = true
      e[2].optional = true
      pb.params[#pb.params + 1] = e[2]
    end
  end
  local own_check = pb.check
  pb.check = function(params)
    M.check_answers(pb, params)
    if not params.resume then
      for _, p in ipairs(required) do
        local excused = false
        for _, other in ipairs(p.unless or {}) do excused = excused or params[other] ~= nil end
        if params[p.name] == nil and not excused then
          util.user_error(string.format('%s: missing %s%s', pb.name,
            p.positional and ('<' .. p.name .. '>') or ('--' .. p.name:gsub('_', '-')),
            p.desc and (' (' .. p.desc .. ')') or ''))
        end
      end
    end
    if own_check then own_check(params) end
  end
end

-- Answers ------------------------------------------------------------------

local function qkey(text)
  return (tostring(text):lower():gsub('[^%w]+', '_'):gsub('^_+', ''):gsub('_+$', ''))
end

--- The questions a playbook file asks, read from its source: a set of every
--- spelling that answers one (key, question text, its slug) and the list of
--- keys; nil when some question is not a literal (then any answer may fit).
function M.question_keys(pb)
  local src = pb.path and util.readfile(pb.path)
  if not src then return nil end
  local calls = 0
  for _ in src:gmatch(':ask[%s({"\']') do calls = calls + 1 end
  local known, keys = {}, {}
  local function add(q, key)
    key = key or qkey(q)
    known[key], known[q], known[qkey(q)] = true, true, true
    keys[#keys + 1] = key
  end
  local found = 0
  for q, rest in src:gmatch(':ask%s*{%s*"([^"]*)"([^}]*)}') do
    found = found + 1
    add(q, rest:match('key%s*=%s*"([^"]*)"') or rest:match("key%s*=%s*'([^']*)'"))
  end
  for q, rest in src:gmatch(":ask%s*{%s*'([^']*)'([^}]*)}") do
    found = found + 1
    add(q, rest:match('key%s*=%s*"([^"]*)"') or rest:match("key%s*=%s*'([^']*)'"))
  end
  for q in src:gmatch(':ask%s*%(?%s*"([^"]*)"') do found = found + 1; add(q) end
  for q in src:gmatch(":ask%s*%(?%s*'([^']*)'") do found = found + 1; add(q) end
  if found ~= calls then return nil end
  return known, keys
end

--- An answer no question of the playbook asks is a typo that would be lost
--- silently: a user error before anything runs.
function M.check_answers(pb, params)
  if not params.answers and #(params.answer or {}) == 0 then return end
  local known, keys = M.question_keys(pb)
  if not known then return end
  local given = {}
  if params.answers then
    local text = util.readfile(params.answers)
    local ok, t = pcall(require('lyaml').load, text or '')
    -- unreadable or not a mapping: the engine says so when it reads the file
    if text and ok and type(t) == 'table' then
      for k in pairs(t) do given[#given + 1] = { tostring(k), '--answers ' .. params.answers } end
    end
  end
  for _, kv in ipairs(params.answer or {}) do
    local k = kv:match('^([^=]+)=')
    if k then given[#given + 1] = { k, '--answer' } end
  end
  table.sort(given, function(a, b) return a[1] < b[1] end)
  for _, g in ipairs(given) do
    if not known[g[1]] then
      util.user_error(string.format("%s: %s: '%s' answers no question of this playbook (its questions: %s)",
        pb.name, g[2], util.printable(g[1]), #keys > 0 and table.concat(keys, ', ') or 'none'))
    end
  end
end

-- Loading ------------------------------------------------------------------

--- The environment a playbook file runs in.
function M.env()
  return setmetatable({ playbook = M.playbook, param = param, step = M.step }, { __index = _G })
end

--- Loads a playbook file. Syntax and declaration errors are user errors that
--- name the file and line.
function M.load(path)
  -- the host's loadfile reads the build's bytecode of a built-in playbook
  local chunk, err = (host.loadfile or loadfile)(path)
  if not chunk then
    util.user_error('playbook ' .. err)
  end
  setfenv(chunk, M.env())
  local ok, pb = xpcall(chunk, debug.traceback)
  if not ok then
    util.user_error('playbook ' .. path .. ': ' .. tostring(pb):gsub('\nstack traceback:.*', ''))
  end
  if getmetatable(pb) ~= Playbook then
    util.user_error('playbook ' .. path .. ': the file must return playbook { ... }')
  end
  pb.path = path
  return pb
end

--- The playbook search path, first match wins: --playbooks DIR,
--- $PERF_MANUAL_PLAYBOOKS (colon-separated), ~/.config/perf_manual/playbooks,
--- then the built-in playbooks/.
function M.search_path(extra)
  local dirs = {}
  for _, d in ipairs(extra or {}) do dirs[#dirs + 1] = d end
  local env = os.getenv('PERF_MANUAL_PLAYBOOKS')
  if env and env ~= '' then
    for d in env:gmatch('[^:]+') do dirs[#dirs + 1] = d end
  end
  local home = os.getenv('HOME')
  if home then dirs[#dirs + 1] = home .. '/.config/perf_manual/playbooks' end
  dirs[#dirs + 1] = host.root .. '/playbooks'
  return dirs
end

local function exists(p)
  local f = io.open(p, 'r')
  if f then f:close() return true end
  return false
end

function M.find(name, dirs)
  for _, d in ipairs(dirs) do
    local p = d .. '/' .. name .. '.lua'
    if exists(p) then return p end
  end
end

--- Every playbook on the path: list of {name, path, pb} (first wins).
function M.list(dirs)
  local seen, out = {}, {}
  for _, d in ipairs(dirs) do
    local ok, names = pcall(dirent.dir, d)
    if ok and names then
      table.sort(names)
      for _, f in ipairs(names) do
        local name = f:match('^(.+)%.lua$')
        if name and not seen[name] then
          seen[name] = true
          local lok, pb = pcall(M.load, d .. '/' .. f)
          out[#out + 1] = { name = name, path = d .. '/' .. f, pb = lok and pb or nil,
                            err = not lok and (util.is_user_error(pb) and pb.user_error or tostring(pb)) or nil }
        end
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- Running ------------------------------------------------------------------

local function iso(t)
  t = t or sys.realtime()
  local ms = math.floor((t - math.floor(t)) * 1000)
  return os.date('!%Y-%m-%dT%H:%M:%S', math.floor(t)) .. string.format('.%03dZ', ms)
end
M.iso = iso

local Context = {}
M.Context = Context

--- The `inv:` verbs beyond the context's own methods (use_check, trace,
--- profile, collect, ...): the modules that implement them add them here
--- (perf_manual.investigation does), so the engine never requires them.
local methods = {}
M.methods = methods

-- Fields a playbook sets on `inv` (inv.next = use.verdict) live in
-- inv.state, which an investigation saves, so a resumed run still sees
-- what skipped steps decided.
Context.__index = function(t, k)
  local v = Context[k]
  if v ~= nil then return v end
  v = methods[k]
  if v ~= nil then return v end
  -- the measuring verbs load what measuring needs: only a run that uses one pays for it
  v = require('perf_manual.verbs').get(k)
  if v ~= nil then return v end
  local state = rawget(t, 'state')
  if state then return state[k] end
end
Context.__newindex = function(t, k, v)
  local state = rawget(t, 'state')
  if state and type(k) == 'string' and k:sub(1, 1) ~= '_' then
    -- a field named like a method stays in this run only: saved state
    -- must never hide a method after a resume
    if Context[k] ~= nil or methods[k] ~= nil or require('perf_manual.verbs').get(k) ~= nil then
      rawset(t, k, v)
    else
      state[k] = v
    end
  else
    rawset(t, k, v)
  end
end

--- A run's context: what steps see as `inv`. perf_manual.investigation
--- extends it with the on-disk store.
function M.context(pb, params, opts)
  opts = opts or {}
  local inv = setmetatable({
    playbook = pb,
    params = params,
    out = opts.out or io.stdout,
    err = opts.err or io.stderr,
    findings = {},
    notes = {},
    timeline = {},
    checklist = {},
    hypotheses = {},
    artifacts = {},
    steps = {},
    quiet = opts.quiet,
    answers = opts.answers or {},
    batch = opts.batch,
    exit_status = nil,
    replay = params.replay,
    _stopped = false,
  }, Context)
  rawset(inv, 'state', {})
  return inv
end

function Context:printf(fmt, ...)
  self.out:write(string.format(fmt, ...))
end

function Context:print(...)
  local parts = {}
  for i = 1, select('#', ...) do parts[#parts + 1] = tostring(select(i, ...)) end
  self.out:write(table.concat(parts, ' '), '\n')
end

--- Shows text, or anything with a :render() method (or a .text field).
function Context:show(x)
  if type(x) == 'table' then
    if x.render then x = x:render()
    elseif x.text then x = x.text
    elseif x.available == false then x = 'not available: ' .. tostring(x.why) end
  end
  if x == nil then return end
  self.out:write(tostring(x))
  if not tostring(x):match('\n$') then self.out:write('\n') end
end

--- Appends to the timeline: {t = ISO time, kind =, what =, step =}.
function Context:log(kind, what, extra)
  local e = { t = iso(), kind = kind, what = what, step = rawget(self, '_step') }
  if extra then for k, v in pairs(extra) do e[k] = v end end
  self.timeline[#self.timeline + 1] = e
  self:_changed(kind)
  return e
end

-- investigation contexts persist here; a plain run keeps it in memory
function Context._changed() end

function Context:note(text)
  self.notes[#self.notes + 1] = text
  self:log('note', text)
end

local SEVERITIES = { ok = 0, info = 1, low = 2, medium = 3, warning = 3, high = 4, critical = 5 }
M.SEVERITIES = SEVERITIES

--- Records a finding {resource=, metric=, value=, severity=, evidence=, summary=}.
function Context:finding(f)
  f.severity = f.severity or 'info'
  f.summary = f.summary or (tostring(f.resource or '?') .. ' ' .. tostring(f.metric or '')
    .. (f.value ~= nil and (' = ' .. tostring(f.value)) or ''))
  f.step = f.step or rawget(self, '_step')
  self.findings[#self.findings + 1] = f
  self:log('finding', f.summary, { severity = f.severity })
  return f
end

--- A check: when `ok` is false, records a finding (severity default
--- "medium"); either way the outcome goes on the timeline. Returns ok.
---   inv:check("run queue below the CPU count", rq <= ncpu,
---             { resource = "cpu", metric = "runq", value = rq, severity = "high" })
function Context:check(desc, ok, f)
  if ok then
    self:log('check-passed', desc)
  else
    f = f or {}
    f.summary = f.summary or ('failed check: ' .. desc)
    f.severity = f.severity or 'medium'
    f.check = desc
    self:finding(f)
  end
  return ok and true or false
end

--- Every row of a result that is not "ok" becomes a finding. Understands
--- results with .findings (list) or .rows ({resource, status|severity, ...}).
function Context:finding_from(result)
  if type(result) ~= 'table' then return {} end
  local made = {}
  local src = result.findings
  if not src and result.threads and result.total then
    -- a thread-state accounting: where the target's time goes
    src = require('perf_manual.analyzers.findings').from_tsa(result)
  elseif not src and result.rows then
    src = {}
    -- USE rows: HIGH → high, warn → medium; ok and "not measured" are not findings
    local map = { HIGH = 'high', high = 'high', warn = 'medium', medium = 'medium', critical = 'critical', low = 'low' }
    for _, r in ipairs(result.rows) do
      local sev = map[r.severity or r.status]
      if sev then
        local sat = type(r.saturation) == 'table' and r.saturation or {}
        local why = type(r.why) == 'table' and table.concat(r.why, '; ') or nil
        src[#src + 1] = { resource = r.resource, metric = r.metric or 'saturation', value = r.value or sat.value,
          severity = sev, name = r.name,
          summary = r.summary or (tostring(r.name or r.resource) .. ': ' .. (why ~= '' and why or tostring(r.status))) }
      end
    end
  end
  for _, f in ipairs(src or {}) do
    local sev = tostring(f.severity or 'info'):lower()
    if sev ~= 'ok' then
      local copy = {}
      for k, v in pairs(f) do copy[k] = v end
      copy.severity = sev
      copy.evidence = copy.evidence or result.artifact
      made[#made + 1] = self:finding(copy)
    end
  end
  return made
end

-- Questions ------------------------------------------------------------------

M.question_key = qkey

--- Asks a question. Answered, in order, from: --answer KEY=..., the
--- --answers file (by key, by the question's text or its slug), an earlier
--- run of this investigation (resume), a prompt on a terminal; otherwise the
--- declared default, recorded as not answered.
---   inv:ask "When did it start?"
---   inv:ask { "Is there a baseline?", key = "baseline", default = "no" }
---   inv:ask { "What is the symptom?", key = "symptom", given = p.symptom }  -- answered by a flag
function Context:ask(q, opts)
  if type(q) == 'table' then opts = q; q = q[1] end
  opts = opts or {}
  if type(opts) == 'string' then opts = { default = opts } end
  local key = opts.key or qkey(q)
  for _, prev in ipairs(self.checklist) do
    if prev.key == key then return prev.answer, prev end
  end
  local a = self.answers
  local answer, source = a[key], 'answers'
  if answer == nil and opts.given ~= nil then answer, source = opts.given, 'flag' end
  if answer == nil then answer = a[q] end
  if answer == nil then answer = a[qkey(q)] end
  if answer == nil and not self.batch and sys.isatty(0) and sys.isatty(2) then
    self.err:write('? ', q, opts.default and (' [' .. tostring(opts.default) .. ']') or '', ' ')
    self.err:flush()
    local line = io.stdin:read('*l')
    if line and line:match('%S') then answer, source = util.trim(line), 'terminal'
    elseif line then answer, source = opts.default, 'terminal (default accepted)' end
  end
  local entry = { key = key, question = q, t = iso() }
  if answer == nil then
    entry.answer, entry.answered, entry.source = opts.default, false, 'default'
  else
    entry.answer, entry.answered, entry.source = answer, true, source
  end
  self.checklist[#self.checklist + 1] = entry
  self:log('answer', q .. ' → ' .. tostring(entry.answer) .. (entry.answered and '' or ' (not answered)'),
    { key = key })
  return entry.answer, entry
end

-- Hypotheses and evidence -----------------------------------------------------

local Hypothesis = {}
Hypothesis.__index = Hypothesis
M.Hypothesis = Hypothesis

local function artifact_ref(a)
  if type(a) == 'string' then return a end
  if type(a) == 'table' then
    return a.artifact or a.path or a.name or a.kind or 'result'
  end
  return tostring(a)
end

--- Recomputes a hypothesis' status from its evidence: refuting evidence
--- weighs double (seek disconfirmation, not confirmation).
function Hypothesis:update()
  local sup, ref = 0, 0
  for _, e in ipairs(self.evidence) do
    local w = e.weight or 1
    if e.stance == 'supports' then sup = sup + w else ref = ref + w end
  end
  self.score = sup - 2 * ref
  if sup == 0 and ref == 0 then self.status = 'open'
  elseif ref == 0 then self.status = 'supported'
  elseif sup == 0 then self.status = 'refuted'
  elseif self.score > 0 then self.status = 'supported'
  elseif self.score < 0 then self.status = 'refuted'
  else self.status = 'contested' end
  return self.status
end

function Hypothesis:supported_by(artifact, note, weight)
  return self._inv:evidence(self, artifact, 'supports', note, weight)
end

function Hypothesis:refuted_by(artifact, note, weight)
  return self._inv:evidence(self, artifact, 'refutes', note, weight)
end

--- Records a hypothesis (returns the existing one for the same text).
function Context:hypothesis(text, opts)
  for _, h in ipairs(self.hypotheses) do
    if h.text == text then return h end
  end
  local h = setmetatable({ id = 'H' .. (#self.hypotheses + 1), text = text, status = 'open',
    evidence = {}, source = opts and opts.source, created = iso(), _inv = self }, Hypothesis)
  self.hypotheses[#self.hypotheses + 1] = h
  self:log('hypothesis', h.id .. ': ' .. text)
  return h
end

--- Links an artifact to a hypothesis: stance "supports" or "refutes".
function Context:evidence(h, artifact, stance, note, weight)
  if type(h) == 'string' then h = self:hypothesis(h) end
  if stance ~= 'supports' and stance ~= 'refutes' then
    error("[perf_manual.playbook] evidence: stance must be 'supports' or 'refutes'", 2)
  end
  local e = { artifact = artifact_ref(artifact), stance = stance, note = note, weight = weight, t = iso() }
  -- a resumed step re-links the same evidence: keep one
  for _, old in ipairs(h.evidence) do
    if old.artifact == e.artifact and old.stance == stance and old.note == note then return old end
  end
  h.evidence[#h.evidence + 1] = e
  h:update()
  self:log('evidence', string.format('%s %s %s: %s', e.artifact, stance, h.id, note or ''),
    { hypothesis = h.id })
  return e
end

--- Hypotheses best-supported first; logs the ranking.
function Context:rank_hypotheses()
  local list = {}
  for _, h in ipairs(self.hypotheses) do h:update(); list[#list + 1] = h end
  table.sort(list, function(a, b)
    if a.score ~= b.score then return a.score > b.score end
    return a.id < b.id
  end)
  local parts = {}
  for _, h in ipairs(list) do parts[#parts + 1] = h.id .. '=' .. h.status end
  self:log('decision', 'hypotheses ranked: ' .. table.concat(parts, ', '))
  return list
end

--- States the conclusion of the investigation.
function Context:conclude(text, opts)
  self.conclusion = { text = text, evidence = opts and opts.evidence and artifact_ref(opts.evidence) }
  self:log('conclusion', text)
end

--- Ends the run after the current step.
function Context:stop() rawset(self, '_stopped', true) end

--- A progress line on stderr when it is a terminal; silent otherwise.
function Context:progress(text)
  if self.quiet then return end
  if sys.isatty(2) then
    self.err:write('\r\27[K', text)
    self.err:flush()
  end
end

function Context:progress_done()
  if not self.quiet and sys.isatty(2) then self.err:write('\r\27[K') self.err:flush() end
end

function Context:warn(text)
  self.err:write('perf_manual: ', text, '\n')
  self:log('warning', text)
end

--- Flushes what was printed (live output between long waits).
function Context:flush()
  self.out:flush()
end

--- A list that stays a list in JSON when empty.
function Context.list(_, t)
  return util.array(t or {})
end

--- Seconds as people write them: 500ms, 10s, 2m.
function Context.duration_text(_, s)
  return util.fmt_duration(s)
end

--- Bytes as people write them: 1536 -> 1.5K.
function Context.bytes_text(_, b)
  return util.fmt_bytes(b)
end

--- How a command the run launched ended, as one line ("command exited
--- with status 3"); nil for other targets. d: a target's description.
function Context.exit_text(_, d)
  return require('perf_manual.measure.target').exit_text(d)
end

--- Creates a folder the user named (and its parents); returns its path.
function Context:mkdir(path)
  -- the store (YAML, SQLite) loads only for the commands that write
  local ok, err = require('perf_manual.store').mkdir_p(path)
  if not ok then util.user_error(self.playbook.name .. ': ' .. tostring(err)) end
  return path
end

--- A shallow copy of t without the given keys (for output).
function Context.without(_, t, keys)
  local drop, out = {}, {}
  for _, k in ipairs(keys) do drop[k] = true end
  for k, v in pairs(t) do if not drop[k] then out[k] = v end end
  return setmetatable(out, getmetatable(t))
end

--- Ends the run with a one-line user error (exit 2, or `status`).
function Context.fail(_, msg, status)
  util.user_error(msg, status)
end

--- Prints a value as one pretty JSON document.
function Context:json(v)
  self:print(util.json_encode(v, true))
end

--- Writes a file the user named (a table as JSON), atomically; a failure
--- is a user error that names the command.
function Context:save_file(path, data)
  local text = type(data) == 'table' and (util.json_encode(data, true) .. '\n') or tostring(data)
  local ok, err = util.write_atomic(path, text)
  if not ok then util.user_error(self.playbook.name .. ': ' .. tostring(err)) end
  return path
end

-- Step hooks: a plain run keeps the original behaviour (a failing step is
-- an internal error with a traceback); an investigation records it instead.
function Context._begin() end
function Context._skip() return false end
function Context:_step_start(s) rawset(self, '_step', s.name) self:log('step-start', s.name) end
function Context:_step_end(s, status, why)
  self:log('step-' .. status, s.name, why and { reason = why } or nil)
  rawset(self, '_step', nil)
end
function Context:_step_failed(s, err, pb)
  self:_step_end(s, 'failed')
  error(string.format("%s: step '%s' failed: %s", pb.path or pb.name, s.name, err), 0)
end
function Context._finish() end
function Context._abort() end

local checks = {
  root = function()
    if sys.geteuid() ~= 0 then
      return 'needs root (or CAP_BPF and CAP_PERFMON): run it with sudo'
    end
  end,
  bpf = function()
    if sys.geteuid() ~= 0 then
      return 'needs BPF: run it as root (or with CAP_BPF and CAP_PERFMON)'
    end
    local f = io.open('/sys/kernel/btf/vmlinux', 'r')
    if not f then return 'needs BPF: the kernel has no BTF (/sys/kernel/btf/vmlinux)' end
    f:close()
  end,
}
M.checks = checks

--- Runs a playbook with converted params. Returns the context.
--- opts.context: a context to run in; opts.new_context(pb, params, opts): makes one.
function M.run(pb, params, opts)
  opts = opts or {}
  -- replay reads recorded data: nothing of the live system is needed
  if not params.replay then
    for _, need in ipairs(pb.needs) do
      local check = checks[need]
      local why = check and check(params)
      if why then util.user_error(pb.name .. ': ' .. why) end
    end
  end
  local inv = opts.context
  if not inv then
    -- an investigation playbook needs the stored context
    -- (perf_manual.investigation.run passes it): the engine sits below it
    if pb.investigation and not opts.new_context then
      error('[perf_manual.playbook] ' .. pb.name .. ' is an investigation: run it with '
        .. 'perf_manual.investigation.run', 2)
    end
    inv = (opts.new_context or M.context)(pb, params, opts)
  end
  params = inv.params or params
  -- whatever escapes (a bad workload, a full disk while saving) still ends
  -- the run: its workload stopped, its status failed with the reason
  local ok, res = xpcall(function() return M._run_steps(pb, params, inv) end, function(e)
    if util.is_user_error(e) or type(e) ~= 'string' or e:find('stack traceback', 1, true) then return e end
    return debug.traceback(e, 2)
  end)
  if not ok then
    pcall(inv._abort, inv, res)
    error(res, 0)
  end
  return res
end

function M._run_steps(pb, params, inv)
  local steps = pb.steps
  if pb.run_fn then steps = { { name = pb.name, fn = pb.run_fn } } end
  inv:_begin(steps)
  for i, s in ipairs(steps) do
    if inv:_skip(s, i) then
      inv:log('step-skipped', s.name, { reason = 'completed in an earlier run' })
    elseif i > 1 and sys.stop_requested() then
      inv:log('step-skipped', s.name, { reason = 'stop requested' })
      break
    else
      inv:_step_start(s, i)
      local t0 = sys.now()
      local ok, err = xpcall(function() return s.fn(inv, params) end, function(e)
        if util.is_user_error(e) then return e end
        return debug.traceback(tostring(e), 2)
      end)
      if not ok then
        if util.is_user_error(err) then
          inv:_step_end(s, 'failed', err.user_error)
          inv:_finish('failed', err.user_error)
          error(err, 0)
        end
        inv:_step_failed(s, err, pb)
        return inv
      end
      local elapsed = sys.now() - t0
      if s.budget and elapsed > s.budget then
        inv:warn(string.format("step '%s' ran past its %s budget (%s): "
          .. 'conclude, escalate or write down the uncertainty',
          s.name, util.fmt_duration(s.budget), util.fmt_duration(elapsed)))
      end
      if sys.stop_requested() then
        inv:_step_end(s, 'interrupted', 'Ctrl-C (stop requested)')
        inv:_finish('interrupted')
        return inv
      end
      inv:_step_end(s, 'done')
      if rawget(inv, '_stopped') then break end
    end
  end
  inv:_finish('complete')
  return inv
end

return M
