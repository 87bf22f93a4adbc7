--- The investigation context: the run context of perf_manual.playbook,
--- backed by a folder in the store (perf_manual.store). Every answer,
--- finding, hypothesis, evidence link and step lands in metadata.yaml as it
--- happens, so a run that is interrupted, fails or is killed leaves a
--- readable folder that `--resume` continues.
---
--- `methods` are what an investigation adds to every context: artifacts,
--- the knowledge base, baselines, hypotheses from the data and report
--- drafts. The measuring verbs (`inv:use_check{}`, `inv:trace{}`,
--- `inv:profile{}`, `inv:collect{}`, ...) are perf_manual.verbs.
local util = require('perf_manual.util')
local store = require('perf_manual.store')
local playbook = require('perf_manual.playbook')
local report = require('perf_manual.report')
local findings = require('perf_manual.analyzers.findings')
local root_cause = require('perf_manual.analyzers.root_cause')
local kb = require('perf_manual.kb')
local use = require('perf_manual.analyzers.use')
local verbs_common = require('perf_manual.verbs.common')
local targets = require('perf_manual.measure.target')
local lyaml = require('lyaml')
local drill = require('perf_manual.report.drill')
local validate = require('perf_manual.analyzers.validate')

local M = {}
-- the inv: verbs live in the engine's registry; this module adds its own
local methods = playbook.methods
M.methods = methods
-- kept for the callers that still ask the engine; the USE analyzer owns it
M.normalize_use = use.normalize
-- Artifacts --------------------------------------------------------------------

--- Writes a file inside the investigation folder (atomically). Paths are
--- relative to the folder; anything that would leave it is refused. A run
--- without a store keeps the data in memory.
function methods.write(inv, rel, data)
  local handle = rawget(inv, 'handle')
  if not handle then
    local clean, why = store.safe_rel(rel)
    if not clean then util.user_error("refusing to write '" .. tostring(rel) .. "' (" .. why .. ')') end
    inv._memory = inv._memory or {}
    inv._memory[clean] = data
    return clean
  end
  return handle:write(rel, data)
end

--- Records an artifact: `data` (a table → JSON, a string → as is) written to
--- raw_data/<name>; returns its relative path.
function methods.save_artifact(inv, name, data, kind)
  local rel = store.artifact_rel(name)
  local text = type(data) == 'table' and (util.json_encode(data, true) .. '\n') or tostring(data)
  rel = inv:write(rel, text)
  local a = { path = rel, kind = kind or name:match('^([%w_]+)'), step = rawget(inv, '_step'), bytes = #text }
  for i, old in ipairs(inv.artifacts) do
    if old.path == rel then table.remove(inv.artifacts, i) break end
  end
  inv.artifacts[#inv.artifacts + 1] = a
  inv:log('artifact', rel)
  return rel
end

-- Knowledge base and baselines -----------------------------------------------------

--- Shows the most similar past investigations for `text` (the symptom).
function methods.similar_past(inv, text, opts)
  text = text or inv.params.symptom
  local root = inv.store_root or store.root(inv.params.store)
  local hits, why = kb.search(root, text or '', { limit = (opts and opts.limit) or 3,
    exclude = inv.id })
  if why and #hits == 0 then
    inv:log('similar-past', 'none (' .. why .. ')')
    return hits
  end
  if #hits == 0 then
    inv:print('Similar past investigations: none')
    inv:log('similar-past', 'none')
  else
    inv:print('Similar past investigations:')
    local ids = {}
    for _, h in ipairs(hits) do
      inv:printf('  %-40s %s%s\n', h.id, h.symptom or '', h.verdict and ('  [' .. h.verdict .. ']') or '')
      ids[#ids + 1] = h.id
    end
    inv:log('similar-past', table.concat(ids, ', '))
  end
  inv.similar = hits
  return hits
end

-- What the data of an investigation says about its workload, for
-- analyzers.validate.identity: the --workload and --endpoint it was given,
-- and the comm and target kind its use-check (or quantify) recorded.
local function recorded_identity(dir, meta)
  local p = (meta and meta.params) or {}
  local facts = { workload = p.workload, endpoint = p.endpoint }
  local text = store.read_artifact(dir, 'use-check.json')
  local u = text and util.json_decode(text)
  if type(u) == 'table' then
    local t = type(u.target) == 'table' and u.target or {}
    facts.target_kind = t.kind
    local task = type(u.task) == 'table' and u.task or type(u.measures) == 'table' and u.measures.task or nil
    facts.comm = (type(task) == 'table' and type(task.comm) == 'string' and task.comm)
      or (t.kind == 'pid' and type(t.label) == 'string' and t.label:match('%(([^()]+)%)%s*$')) or nil
  end
  local red = store.read_artifact(dir, 'red-check.json')
  local r = red and util.json_decode(red)
  if not facts.endpoint and type(r) == 'table' and type(r.url) == 'string' then facts.endpoint = r.url end
  return validate.identity(facts)
end
M.recorded_identity = recorded_identity

--- The identity of the workload a run is about to look at: its params and
--- the resolved target (a pid's comm; a command's program).
function M.run_identity(params, resolved)
  local facts = { workload = params.workload, endpoint = params.endpoint }
  if type(resolved) == 'table' then
    facts.target_kind = resolved.kind ~= 'command' and resolved.kind or nil
    facts.comm = resolved.comm
    if resolved.kind == 'command' and type(resolved.argv) == 'table' and resolved.argv[1] then
      facts.comm = tostring(resolved.argv[1]):match('([^/]+)$')
    end
  end
  return validate.identity(facts)
end

--- Refuses a baseline of another workload (a user error, exit 2) unless
--- params.baseline_any: identity is the program (command's executable, a
--- process name, a pid's comm), else the service or cgroup, and the
--- endpoint (analyzers.validate.identity). When the baseline recorded
--- nothing to tell, returns the reason (a warning), else nil.
function M.check_baseline(root, params, now)
  local base = store.open(root, tostring(params.baseline))
  local bmeta = base:load_metadata()
  local was = recorded_identity(base.dir, bmeta)
  local same, why = validate.same_workload(was, now)
  if same == false and not params.baseline_any then
    util.user_error(string.format('--baseline %s looked at another workload (%s: %s; this run: %s); '
      .. 'compare like with like, or give --baseline-any', base.id, why, validate.describe(was),
      validate.describe(now)))
  end
  if same == nil then
    return string.format('cannot tell whether baseline %s looked at the same workload (%s)', base.id, why)
  end
  if same == false then
    return string.format('baseline %s looked at another workload (%s; --baseline-any)', base.id, why)
  end
end

--- Compares this run with a baseline investigation: the symptom (latency
--- percentiles, error ratio and throughput, with their tests, when both
--- have RED data), the quantify figures and the USE figures of every
--- resource both use-checks measured (one value per side). Stored as
--- raw_data/compare.json; returns it with .text, or nil when the baseline
--- holds nothing to compare.
function methods.compare_with(inv, baseline_id)
  local root = inv.store_root or store.root(inv.params.store)
  local base = store.open(root, baseline_id)
  if not rawget(inv, 'baseline_checked') then
    -- a resumed run: the identity was not checked before the folder existed
    local w = rawget(inv, 'workload_info')
    local warn = M.check_baseline(root, setmetatable({ baseline = baseline_id }, { __index = inv.params }),
      M.run_identity(inv.params, w and w.target))
    if warn then inv:warn(warn) end
  elseif rawget(inv, 'baseline_warning') then
    inv:warn(inv.baseline_warning)
  end
  local before = report.load(base.dir)
  local now = rawget(inv, 'dir') and report.load(inv.dir) or { samples = {}, scalars = {} }
  local rows = validate.rows(before, now, { seed = 1, stop = require('perf_manual.sys').stop_requested })
  for _, r in ipairs(validate.use_rows(before, now)) do rows[#rows + 1] = r end
  if #rows == 0 then
    inv:warn('baseline ' .. base.id .. ' has no figure in common with this run (no RED check, quantify or '
      .. 'use-check on both sides): comparison not possible')
    return nil
  end
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { metric = r.name .. ((r.unit and r.unit ~= '') and (' (' .. r.unit .. ')') or ''), name = r.name,
      key = r.key, unit = r.unit, before = r.before, after = r.after, change_pct = r.change_pct,
      ci_lo = r.ci_lo, ci_hi = r.ci_hi, p = r.p, test = r.test, why = r.why }
  end
  local res = { baseline = base.id, rows = out }
  inv:save_artifact(verbs_common.artifact_name(inv, 'compare', '.json'), res, 'compare')
  local lines = { 'Compared with baseline ' .. base.id .. ' (before: the baseline, after: this run):' }
  for _, l in ipairs(validate.render_rows(rows, nil, { 'metric', 'baseline', 'now' })) do lines[#lines + 1] = l end
  res.text = table.concat(lines, '\n')
  inv:log('decision', 'compared with baseline ' .. base.id)
  return res
end

-- Hypotheses from the data ---------------------------------------------------------

-- what this investigation has recorded so far, for the analyzers
local function recorded_results(inv)
  local dir = rawget(inv, 'dir')
  if not dir then return { traces = {}, profiles = {} } end
  return findings.prepare(store.results(dir))
end

--- Scores a hypothesis against everything this investigation has recorded
--- so far (perf_manual.analyzers.root_cause) and links the evidence.
function methods.test_hypothesis(inv, text, opts)
  local res = root_cause.score(text, recorded_results(inv))
  local h = inv:hypothesis(text, opts)
  for _, e in ipairs(res.evidence) do inv:evidence(h, e.artifact, e.stance, e.note, e.weight) end
  for _, m in ipairs(res.missing) do inv:log('missing-evidence', h.id .. ': ' .. m) end
  return h, res
end

--- The latest recorded result of a kind ('tsa', 'use', or a tracer or
--- profile name as in store.results), or nil.
function methods.recorded_result(inv, kind)
  local r = recorded_results(inv)
  return r[kind] or r.traces[kind] or r.profiles[kind]
end

--- Where the target's wall time goes, from a thread-state accounting
--- result: the share on a CPU or runnable (busy), and the dominant wait
--- ({reason=, label=, share=, object=}) or nil.
function methods.time_split(inv, t)
  t = t or inv:recorded_result('tsa')
  if type(t) ~= 'table' or type(t.total) ~= 'table' then return nil end
  local d = findings.dominant_wait(t)
  local sh = d and d.shares or t.total.shares or {}
  return (tonumber(sh.cpu) or 0) + (tonumber(sh.runq) or 0), d
end

--- The dominant wait in words (analyzers.findings.wait_phrase).
function methods.wait_phrase(_, wait) return findings.wait_phrase(wait) end

--- Prints what a drill-down found (a few lines, indented), puts them in
--- the timeline and in the report. kind: cpu | wait | lock | disk | network | memory.
function methods.tell(inv, kind, result, more)
  local tsa = inv:recorded_result('tsa')
  local lines
  if kind == 'cpu' then lines = drill.cpu(result, tsa)
  elseif kind == 'wait' then lines = drill.wait(tsa, result)
  elseif kind == 'lock' then lines = drill.lock(result)
  elseif kind == 'disk' then lines = drill.disk(result, more, tsa)
  elseif kind == 'network' then lines = drill.network(result, tsa, inv:recorded_result('use'))
  else
    lines = {}
    local text = type(result) == 'table' and (result.summary or result.text)
    for l in tostring(text or ''):gmatch('[^\n]+') do
      if #lines < 4 then lines[#lines + 1] = l end
    end
    if #lines == 0 then lines[1] = 'nothing measured' end
  end
  for _, l in ipairs(lines) do inv:printf('  %s\n', l) end
  inv:log('drill-down', kind .. ': ' .. table.concat(lines, '; '))
  local all = inv.state.drill or {}
  all[#all + 1] = { kind = kind, lines = lines }
  inv.drill = all
  return lines
end

--- Hypotheses made from the findings and the USE verdict, each scored
--- against the recorded evidence. Returns the hypotheses.
function methods.auto_hypotheses(inv)
  local out = {}
  for _, text in ipairs(root_cause.candidates(recorded_results(inv), inv.findings)) do
    out[#out + 1] = (inv:test_hypothesis(text, { source = 'auto' }))
  end
  return out
end

--- Recommendations from the supported hypotheses: the catalogue entries'
--- fixes filled with the culprits measured (analyzers.root_cause); kept in
--- the state and written to metadata as `recommendations`.
function methods.recommend(inv)
  local hs = {}
  for _, h in ipairs(inv:rank_hypotheses()) do hs[#hs + 1] = { text = h.text, status = h.status } end
  local recs = root_cause.recommendations(recorded_results(inv), hs)
  inv.recommendations = recs
  return recs
end

-- Report ---------------------------------------------------------------------------

--- The metadata of a context as it is written to metadata.yaml.
function M.metadata(inv)
  local hyps = {}
  for _, h in ipairs(inv.hypotheses) do
    local ev = {}
    for i, e in ipairs(h.evidence) do ev[i] = e end
    hyps[#hyps + 1] = { id = h.id, text = h.text, status = h.status, score = h.score,
      source = h.source, created = h.created, evidence = ev }
  end
  local params = {}
  for k, v in pairs(inv.params or {}) do
    if k ~= 'resume' and k ~= 'answer' then params[k] = v end
  end
  local m = rawget(inv, 'meta') or {}
  m.name = inv.name
  m.symptom = inv.params.symptom
  m.playbook = inv.playbook.name
  m.status = inv.status
  m.status_reason = rawget(inv, 'status_reason')
  m.params = params
  m.checklist = inv.checklist
  m.hypotheses = hyps
  m.findings = inv.findings
  m.steps = inv.steps
  m.timeline = inv.timeline
  m.artifacts = inv.artifacts
  m.notes = inv.notes
  m.conclusion = inv.conclusion
  m.root_cause = inv.conclusion and inv.conclusion.text
  m.recommendations = inv.state.recommendations or m.recommendations
  m.verdict = inv.state.next or inv.state.verdict
  m.state = inv.state
  m.replay = inv.replay
  return m
end

-- report.md from the report module's templates (templates/<kind>.md), with
-- the metadata as the engine holds it now
local function report_text(inv, kind)
  local meta = M.metadata(inv)
  meta.id = inv.id
  return report.investigation(meta, { format = kind, dir = inv.dir })
end

function methods.draft_report(inv, kind)
  kind = kind or 'technical'
  local rel = inv:write(store.REPORT, report_text(inv, kind))
  rawset(inv, '_report_kind', kind)
  inv:log('report', rel .. ' (' .. kind .. ' draft)')
  return rel
end

-- The stored context ---------------------------------------------------------------

local Inv = setmetatable({}, { __index = playbook.Context })
M.Context = Inv
local ctx_index = playbook.Context.__index
Inv.__index = function(t, k)
  local v = rawget(Inv, k)
  if v ~= nil then return v end
  return ctx_index(t, k)
end
Inv.__newindex = playbook.Context.__newindex

local function parse_answers(params)
  local answers = {}
  if params.answers then
    local text, err = util.readfile(params.answers)
    if not text then
      util.user_error('--answers: cannot read ' .. params.answers .. ': ' .. tostring(err):gsub('^[^:]*: ', ''))
    end
    local ok, t = pcall(lyaml.load, text)
    if not ok then util.user_error('--answers ' .. params.answers .. ': ' .. tostring(t)) end
    if type(t) ~= 'table' then
      util.user_error('--answers ' .. params.answers .. ': expected a mapping of question: answer')
    end
    for k, v in pairs(t) do answers[tostring(k)] = v end
  end
  for _, kv in ipairs(params.answer or {}) do
    local k, v = kv:match('^([^=]+)=(.*)$')
    if not k then util.user_error("--answer: expected KEY=ANSWER, got '" .. kv .. "'") end
    answers[k] = v
  end
  return answers
end

local function restore_hypotheses(inv, list)
  for _, h in ipairs(list or {}) do
    local obj = setmetatable({ id = h.id, text = h.text, status = h.status or 'open', score = h.score,
      source = h.source, created = h.created, evidence = h.evidence or {} }, playbook.Hypothesis)
    rawset(obj, '_inv', inv)
    inv.hypotheses[#inv.hypotheses + 1] = obj
  end
end

--- Runs a playbook: an investigation playbook in a stored context (below),
--- any other in the engine's plain one.
function M.run(pb, params, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if pb.investigation and not o.context then o.new_context = M.context end
  return playbook.run(pb, params, o)
end

local function user_prefixed(prefix, fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then return e end
  if util.is_user_error(e) then util.user_error(prefix .. e.user_error, e.status) end
  error(e, 0)
end

-- Inputs that would otherwise fail only after minutes of measuring, or
-- after the folder was made: checked before anything is created.
local function check_inputs(root, params, workload)
  local resolved = workload and user_prefixed('--workload: ', targets.resolve, workload)
  if params.endpoint ~= nil then
    local u, uerr = require('perf_manual.http').parse_url(tostring(params.endpoint))
    if not u then
      util.user_error(string.format("--endpoint: malformed URL '%s': %s", tostring(params.endpoint), tostring(uerr)))
    end
  end
  if params.baseline ~= nil then
    user_prefixed('--baseline: ', store.open, root, tostring(params.baseline))
    -- another workload's baseline is refused here, before anything is measured
    local now = params.replay and recorded_identity(params.replay, { params = params })
      or M.run_identity(params, resolved)
    return M.check_baseline(root, params, now) or true
  end
end

--- The context of an investigation playbook run: creates (or, with
--- params.resume, reopens) the investigation folder and takes its lock.
function M.context(pb, params, opts)
  opts = opts or {}
  local inv = playbook.context(pb, params, opts)
  setmetatable(inv, Inv)
  local root = store.root(params.store)
  rawset(inv, 'store_root', root)
  rawset(inv, 'answers', parse_answers(params))
  rawset(inv, 'batch', params.batch or opts.batch)
  rawset(inv, 'replay', params.replay)
  if params.replay and not store.is_dir(params.replay) then
    util.user_error('--replay: no data dir ' .. params.replay)
  end
  local handle, meta
  if params.fix ~= nil and not params.resume then
    util.user_error('--fix records the fix of a stored investigation: give --resume ID '
      .. '(or: perf_manual fix ID "the fix")')
  end
  if params.resume then
    handle = store.open(root, params.resume)
    handle:lock()
    local err, partial
    meta, err, partial = handle:load_metadata()
    if not meta then handle:release(); util.user_error('cannot resume: ' .. err .. (partial and '' or '')) end
    -- one investigation looks at one workload: a different one would mix
    -- two processes' figures under one verdict
    local was = meta.params and meta.params.workload
    if params.workload ~= nil and was ~= nil and tostring(params.workload) ~= tostring(was) then
      handle:release()
      util.user_error(string.format("cannot resume %s with --workload %s: it was started on --workload %s "
        .. '(start a new investigation for another workload, or resume without --workload)',
        handle.id, tostring(params.workload), tostring(was)))
    end
    if meta.status == 'complete' then rawset(inv, '_nothing', true) end
    if params.fix ~= nil then
      -- record the fix and run nothing (`perf_manual fix ID --validate` measures)
      if not tostring(params.fix):match('%S') then handle:release(); util.user_error('--fix: the fix text is empty') end
      store.set_fix(meta, tostring(params.fix))
      handle:save_metadata(meta)
      rawset(inv, '_nothing', true)
      rawset(inv, '_fix_only', true)
    end
    -- the stored params, overridden by what was given now
    local merged = {}
    for k, v in pairs(meta.params or {}) do merged[k] = v end
    for k, v in pairs(params) do if k ~= 'resume' then merged[k] = v end end
    merged.resume = params.resume
    rawset(inv, 'params', merged)
    rawset(inv, 'replay', merged.replay)
    for _, k in ipairs({ 'checklist', 'findings', 'notes', 'timeline', 'artifacts', 'steps' }) do
      rawset(inv, k, meta[k] or {})
    end
    restore_hypotheses(inv, meta.hypotheses)
    rawset(inv, 'state', meta.state or {})
    rawset(inv, 'conclusion', meta.conclusion)
    for _, a in ipairs(inv.artifacts) do
      local name = store.artifact_name(a.path)
      local base, n = name:match('^(.-)%-(%d+)(%.%w+)$')
      local ext
      if base then ext = name:match('(%.%w+)$') else
        base, ext = name:match('^(.-)(%.%w+)$'); n = 1
      end
      if base then
        inv._names = inv._names or {}
        inv._names[base .. ext] = math.max(inv._names[base .. ext] or 0, tonumber(n))
      end
    end
  else
    -- a pid that is not there fails before any folder is made
    local w = params.workload and not params.replay and tostring(params.workload)
    if w and w:match('^%d+$') and not util.readfile('/proc/' .. w .. '/stat') then
      util.user_error('--workload: no process ' .. w)
    end
    local baseline = check_inputs(root, params, pb.launches_workload ~= false and w or nil)
    if baseline then rawset(inv, 'baseline_checked', true) end
    if type(baseline) == 'string' then rawset(inv, 'baseline_warning', baseline) end
    local name = params.name or (params.symptom and params.symptom ~= '' and params.symptom) or pb.name
    handle = store.create(root, name)
    meta = store.host_facts()
    meta.created = store.iso()
    meta.name = store.slug(name)
  end
  rawset(inv, 'handle', handle)
  rawset(inv, 'id', handle.id)
  rawset(inv, 'dir', handle.dir)
  rawset(inv, 'meta', meta)
  rawset(inv, 'name', meta.name)
  rawset(inv, 'status', 'running')
  return inv
end

-- every event rewrites metadata.yaml; the search index follows at step
-- boundaries, answers, findings, hypotheses and the end of the run
local INDEXED = { started = true, resumed = true, answer = true, finding = true, hypothesis = true,
  evidence = true, conclusion = true, finished = true, ['step-done'] = true, ['step-failed'] = true,
  ['step-interrupted'] = true, note = true }

function Inv:_changed(kind)
  if rawget(self, '_saving') or rawget(self, '_nothing') then return end
  rawset(self, '_saving', true)
  local ok, err = pcall(function() self.handle:save_metadata(M.metadata(self), { index = INDEXED[kind] or false }) end)
  rawset(self, '_saving', false)
  if not ok then
    -- a new investigation that could not even write its metadata (full or
    -- read-only disk) is removed rather than left half-made
    if not rawget(self, '_saved_once') and not self.params.resume then M.discard(self) end
    error(err, 0)
  end
  rawset(self, '_saved_once', true)
end

--- Removes a just-created investigation folder that holds nothing yet.
function M.discard(inv)
  inv.handle:discard()
end

function Inv:_begin(steps)
  self._nsteps = #steps
  if rawget(self, '_fix_only') then
    self.out:write(string.format('Fix recorded in %s: %s\nvalidate it with: perf_manual fix %s --validate   '
      .. '(or --after DIR)\n', self.id, util.printable(self.meta.fix.text), self.id))
    return
  end
  if rawget(self, '_nothing') then
    -- resuming a finished investigation: nothing to run, nothing written
    self.out:write(string.format('Investigation %s is complete: nothing to resume (`perf_manual show %s` '
      .. 'shows it)\n', self.id, self.id))
    return
  end
  local resumed = self.params.resume ~= nil
  self:log(resumed and 'resumed' or 'started', (resumed and 'resumed by ' or 'started by ')
    .. tostring(store.host_facts().created_by) .. (self.replay and (' (replay of ' .. self.replay .. ')') or ''))
  if not resumed then
    self.out:write(string.format('Investigation %s (%s)\n', self.id, self.dir))
  else
    self.out:write(string.format('Resuming investigation %s\n', self.id))
  end
  -- the workload: launched, or found by pid/name
  if self.playbook.launches_workload ~= false and self.params.workload and not self.replay then
    rawset(self, 'workload_info', M.resolve_workload(self, self.params.workload))
  end
  self._nsteps = #steps
end

function Inv:_skip(s, i)
  if rawget(self, '_nothing') then return true end
  local rec = self.steps[i]
  return rec ~= nil and rec.name == s.name and rec.status == 'done'
end

function Inv:_step_start(s, i)
  -- a step run again after a failure or Ctrl-C starts its findings afresh
  if self.steps[i] then
    local keep = {}
    for _, f in ipairs(self.findings) do if f.step ~= s.name then keep[#keep + 1] = f end end
    rawset(self, 'findings', keep)
  end
  rawset(self, '_step', s.name)
  rawset(self, '_step_index', i)
  self.steps[i] = { name = s.name, status = 'running', started = store.iso(),
    budget = s.budget and util.fmt_duration(s.budget) or nil }
  self.out:write(string.format('\n== %d/%d %s\n', i, self._nsteps or i, s.name))
  self:log('step-start', s.name)
end

function Inv:_step_end(s, status, why)
  local i = rawget(self, '_step_index')
  if i and self.steps[i] then
    self.steps[i].status = status
    self.steps[i].ended = store.iso()
    self.steps[i].reason = why
  end
  if #self.findings > 0 then
    self.handle:write_analysis_json('findings.json', self.findings)
  end
  self:log('step-' .. status, s.name, why and { reason = why } or nil)
  rawset(self, '_step', nil)
end

function Inv:_step_failed(s, err, pb)
  local line = tostring(err):match('^[^\n]*')
  local log = self.handle:append_log(string.format('%s step %q failed:\n%s\n\n', store.iso(), s.name, tostring(err)))
  self:_step_end(s, 'failed', line)
  self:_finish('failed', string.format("step '%s' failed: %s", s.name, line))
  self.err:write(string.format("perf_manual: step '%s' failed: %s\n  traceback in %s; "
    .. '`perf_manual %s --resume %s` continues from this step\n',
    s.name, line, log, pb.name, self.id))
  rawset(self, 'exit_status', 70)
end

function Inv:_finish(status, reason)
  rawset(self, '_finished', true)
  if rawget(self, '_nothing') then self.handle:release() return end
  -- the workload first: a save that fails below (full disk) must not leave it running
  pcall(M.stop_workload, self)
  if status == 'interrupted' and not reason then reason = 'stopped early (Ctrl-C or SIGTERM)' end
  rawset(self, 'status', status)
  rawset(self, 'status_reason', reason)
  local ok, err = pcall(function()
    self:log('finished', status, reason and { reason = reason } or nil)
    -- a report drafted during the run is written again with the final status
    local kind = rawget(self, '_report_kind')
    if kind then pcall(function() self:write(store.REPORT, report_text(self, kind)) end) end
  end)
  if status == 'interrupted' then
    -- stopped early (Ctrl-C): what was measured is saved and consistent,
    -- so this exits 0 like every command stopped early (README, Commands)
    self.err:write(string.format('perf_manual: stopped early (Ctrl-C); the investigation is saved in %s '
      .. '(status interrupted); `perf_manual %s --resume %s` continues from the interrupted step\n',
      self.dir, self.playbook.name, self.id))
  end
  -- the run is over (complete, failed or interrupted): no lock file stays behind
  self.handle:release()
  if not ok then error(err, 0) end
end

--- Ends a run that something escaped from (a bad workload, an error while
--- saving, a user error): the workload is stopped and, unless it already
--- ended, the investigation is marked failed with the reason.
function Inv:_abort(err)
  if rawget(self, '_finished') then
    pcall(M.stop_workload, self)
    if self.handle then self.handle:release() end
    return
  end
  local reason = util.is_user_error(err) and err.user_error or tostring(err):match('^[^\n]*')
  local i = rawget(self, '_step_index')
  if rawget(self, '_step') and i and self.steps[i] then
    self.steps[i].status, self.steps[i].ended, self.steps[i].reason = 'failed', store.iso(), reason
  end
  local ok = pcall(self._finish, self, 'failed', reason)
  if not ok then
    pcall(M.stop_workload, self)
    if self.handle then self.handle:release() end
  end
end

-- Workloads -------------------------------------------------------------------------

--- --workload: what the investigation looks at, with the meaning --target
--- has everywhere (perf_manual.measure.target); a command is launched
--- here (its output in raw_data/workload.log) and stopped at the end.
--- Returns {pid=, label=, launched=bool, argv=, target=}.
function M.resolve_workload(inv, w)
  local ok, t = pcall(targets.resolve, tostring(w))
  if not ok then
    if util.is_user_error(t) then util.user_error('--workload: ' .. t.user_error) end
    error(t, 0)
  end
  if t.kind == 'command' then
    local logpath = inv.dir .. '/' .. store.artifact_rel('workload.log')
    store.mkdir_p((logpath:match('^(.*)/')))
    local lok, lerr = pcall(targets.launch, t, { log = logpath })
    if not lok then
      if util.is_user_error(lerr) then util.user_error('--workload: ' .. lerr.user_error) end
      error(lerr, 0)
    end
    inv:log('workload', 'launched ' .. t.command .. ' as pid ' .. t.pid)
  end
  local pid = t.pid or targets.pids(t)[1]
  return { pid = pid, label = t.label, launched = t.launched or false, argv = t.argv, target = t }
end

function M.stop_workload(inv)
  local w = rawget(inv, 'workload_info')
  if w and w.launched and w.target and not w.target.stopped then
    targets.stop(w.target)
    inv:log('workload', 'stopped launched pid ' .. w.pid)
  end
end

-- Schema check -----------------------------------------------------------------------

local STEP_STATUS = { done = true, failed = true, interrupted = true, running = true, skipped = true }
local HYP_STATUS = { open = true, supported = true, refuted = true, contested = true }

--- Checks an investigation folder against the schema. Returns a list of
--- problems (empty when it is well-formed).
function M.validate(dir)
  local problems = {}
  local function bad(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end
  local meta, err = store.read_metadata(dir)
  if not meta and not err then bad('%s missing', store.METADATA) return problems end
  if not meta then bad('%s', err) return problems end
  for _, k in ipairs({ 'id', 'name', 'status', 'created', 'created_by', 'host', 'kernel', 'tool_version',
    'playbook' }) do
    if type(meta[k]) ~= 'string' or meta[k] == '' then bad('field %s missing or not text', k) end
  end
  for _, k in ipairs({ 'params', 'checklist', 'hypotheses', 'timeline', 'steps', 'findings', 'artifacts' }) do
    if type(meta[k]) ~= 'table' then bad('field %s missing', k) end
  end
  for _, d in ipairs(store.SUBDIRS) do
    if not store.is_dir(dir .. '/' .. d) then bad('%s/ missing', d) end
  end
  local prev
  for i, e in ipairs(meta.timeline or {}) do
    if type(e.t) ~= 'string' or not e.t:match('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$') then
      bad('timeline[%d]: bad time %s', i, tostring(e.t))
    elseif prev and e.t < prev then bad('timeline[%d]: out of order', i) end
    prev = e.t
    if type(e.kind) ~= 'string' then bad('timeline[%d]: no kind', i) end
  end
  for i, s in ipairs(meta.steps or {}) do
    if not STEP_STATUS[s.status] then bad('steps[%d]: bad status %s', i, tostring(s.status)) end
  end
  for i, q in ipairs(meta.checklist or {}) do
    if type(q.question) ~= 'string' or type(q.answered) ~= 'boolean' then
      bad('checklist[%d]: needs question and answered', i)
    end
  end
  local paths = {}
  for _, a in ipairs(meta.artifacts or {}) do
    paths[a.path] = true
    local f = io.open(dir .. '/' .. a.path, 'r')
    if not f then bad('artifact %s missing', a.path) else f:close() end
  end
  for _, h in ipairs(meta.hypotheses or {}) do
    if not HYP_STATUS[h.status] then bad('hypothesis %s: bad status %s', tostring(h.id), tostring(h.status)) end
    for _, e in ipairs(h.evidence or {}) do
      if e.stance ~= 'supports' and e.stance ~= 'refutes' then bad('hypothesis %s: bad stance', tostring(h.id)) end
      if not paths[e.artifact] then bad('hypothesis %s: evidence %s is not an artifact',
        tostring(h.id), tostring(e.artifact)) end
    end
  end
  for i, f in ipairs(meta.findings or {}) do
    if not playbook.SEVERITIES[tostring(f.severity)] then bad('findings[%d]: bad severity %s',
      i, tostring(f.severity)) end
  end
  if meta.status == 'complete' and not util.readfile(store.report_path(dir)) then bad('%s missing', store.REPORT) end
  return problems
end

return M
