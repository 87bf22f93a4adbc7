--- Folded stacks: Brendan Gregg's `frame;frame;... COUNT` format in and out,
--- `perf script` text folded the way FlameGraph's stackcollapse-perf.pl
--- folds it, and profiles merged. The work happens in perf_manual._c.fold
--- (runtime/fold.c); this module validates and names things.
---
--- A profile is a userdata (stack -> count) with methods:
---   p:add(stack, count)         p:merge(other [, scale])
---   p:total()  p:unique()       p:count(stack)  (exact stack, 0 if absent)
---   p:folded() -> text, lines sorted by bytes (stackcollapse's order)
---   p:stacks() -> { {stack, count}, ... } in the same order
---   p:close()  (also on GC)
---
--- Reading returns `profile, stats` where stats = { samples=, lines=, bad=,
--- errors = { {line=, reason=, text=}, ... (first 100) }, filtered_events=,
--- saturated= (only when a stack's count reached 2^53 and was capped there) }.
--- A count or perf period above 2^53 is a bad line in both readers, so what
--- p:folded() writes always reads back.
--- Bad lines are skipped and listed; with `strict = true` the first bad line
--- fails the read: `nil, "line N: reason"`.
---
--- Options of `from_perf_script` (the names and meanings of stackcollapse-perf.pl):
---   pid    root frame "comm-PID"       tid   root frame "comm-PID/TID"
---   kernel kernel frames get "_[k]"    jit   JIT frames (/tmp/perf-N.map) get "_[j]"
---   all    kernel + jit                addrs "[module <addr>]" for unknown symbols
---   threads  folding threads for big inputs (default: one per CPU; inputs are
---          cut at blank lines, so the result is the same)
--- Without pid/tid the root frame is the process name (spaces become "_");
--- "?" stands for a pid perf script did not print. Only the first event type
--- in the input is folded (mixing cycles and instructions would mislead).
local C = require('perf_manual._c.fold')
local util = require('perf_manual.util')

local M = {}
M._c = C

local PERF_OPTS = { 'pid', 'tid', 'kernel', 'jit', 'all', 'addrs' }
M.PERF_OPTS = PERF_OPTS

--- A new, empty profile.
function M.new() return C.new() end

-- `src` is the text itself, or { path = "file" }, { fd = 0 } (read in C, so a
-- 100 MB capture never sits in the Lua heap), or "-"-style via M.source().
local function check_src(src)
  if type(src) == 'string' then return src end
  if type(src) == 'table' and (type(src.path) == 'string' or type(src.fd) == 'number') then return src end
  error('[perf_manual.fold] expected text, {path=} or {fd=}', 3)
end

--- The source for a command-line FILE argument: nil or "-" is stdin.
function M.source(file)
  if file == nil or file == '-' then return { fd = 0 } end
  return { path = file }
end

local function copy_opts(opts)
  local o = {}
  for _, k in ipairs(PERF_OPTS) do o[k] = opts[k] and true or nil end
  o.strict = opts.strict and true or nil
  o.threads = opts.threads
  return o
end

--- Folds `perf script` text. Returns profile, stats | nil, err.
function M.from_perf_script(src, opts)
  src = check_src(src)
  util.validate('opts', opts, 'table', true)
  local p = C.new()
  local stats, err = p:add_perf_script(src, copy_opts(opts or {}))
  if not stats then p:close(); return nil, err end
  return p, stats
end

--- Reads folded stacks. Returns profile, stats | nil, err.
function M.from_folded(src, opts)
  src = check_src(src)
  util.validate('opts', opts, 'table', true)
  local p = C.new()
  local stats, err = p:add_folded(src, { strict = opts and opts.strict or nil })
  if not stats then p:close(); return nil, err end
  return p, stats
end

--- Reads either format, guessed from a vote of the first 200 data lines
--- ("folded" lines end in " COUNT", perf script's stack lines start with
--- whitespace), so one malformed line is reported, not taken for the
--- format. Returns profile, stats, format | nil, err.
function M.read(src, opts)
  src = check_src(src)
  opts = opts or {}
  if opts.format == 'perf' then
    local p, s = M.from_perf_script(src, opts)
    return p, s, p and 'perf'
  elseif opts.format == 'folded' then
    local p, s = M.from_folded(src, opts)
    return p, s, p and 'folded'
  end
  local p = C.new()
  local stats, fmt_or_err = p:add_auto(src, copy_opts(opts))
  if not stats then p:close(); return nil, fmt_or_err end
  return p, stats, fmt_or_err
end

--- Reads a pprof profile (profile.proto, gzip'd or not; decoded by
--- perf_manual.report.pprof) as folded stacks of one sample type (its name,
--- or the file's default). Returns profile, stats, info {sample_type, unit,
--- total, samples} | nil, err.
function M.from_pprof(bytes, sample_type)
  local pprof = require('perf_manual.report.pprof')
  local prof, err = pprof.decode(bytes)
  if not prof then return nil, err end
  local text, info = pprof.to_folded(prof, sample_type)
  if not text then return nil, info end
  local p, stats = M.from_folded(text)
  if not p then return nil, stats end
  return p, stats, info
end

-- the first bytes of a file, or nil, err
local function head_of(path)
  local f, err = io.open(path, 'rb')
  if not f then return nil, 'cannot read ' .. tostring(err) end
  local head = f:read(64) or ''
  f:close()
  return head
end

--- A command-line input read as pprof: when `format` is "pprof", or "auto"
--- and the file looks like a pprof profile (stdin only when told: a pipe
--- cannot be looked at twice). Returns false when the input is not pprof
--- (read it as text), else what from_pprof returns.
function M.pprof_input(file, format, sample_type)
  local stdin = file == nil or file == '-'
  if format ~= 'pprof' and (format ~= 'auto' or stdin) then return false end
  if not stdin and format == 'auto' then
    local head, err = head_of(file)
    if not head then return nil, err end
    if not require('perf_manual.report.pprof').looks_like(head) then return false end
  end
  local bytes
  if stdin then
    bytes = io.stdin:read('*a') or ''
  else
    local f, err = io.open(file, 'rb')
    if not f then return nil, 'cannot read ' .. tostring(err) end
    bytes = f:read('*a') or ''
    f:close()
  end
  return M.from_pprof(bytes, sample_type)
end

--- Reads a profile from a file path (folded stacks, perf script text or a
--- pprof profile) or a directory holding one folded file (e.g. a profile
--- output dir). Returns profile, stats, path | nil, err.
function M.load(path)
  util.validate('path', path, 'string')
  local stat = require('posix.sys.stat')
  local st = stat.stat(path)
  if not st then return nil, 'cannot read ' .. path .. ': No such file or directory' end
  if stat.S_ISDIR(st.st_mode) ~= 0 then
    local dirent = require('posix.dirent')
    local found = {}
    for _, f in ipairs(dirent.dir(path) or {}) do
      if f:match('%.folded$') or f:match('%.folded%.txt$') or f == 'folded.txt' or f:match('%-collapsed.*%.txt$') then
        found[#found + 1] = f
      end
    end
    table.sort(found)
    if #found == 0 then return nil, path .. ': no folded file (*.folded) in this directory' end
    if #found > 1 then
      return nil, path .. ': several folded files (' .. table.concat(found, ', ') .. '); name one'
    end
    path = path .. '/' .. found[1]
  end
  local p, stats = M.pprof_input(path, 'auto')
  if p == false then p, stats = M.read({ path = path }) end
  if not p then return nil, stats end
  return p, stats, path
end

--- Builds a profile from a Lua table { [stack] = count } or { {stack, count}, ... }.
function M.from_table(t)
  util.validate('t', t, 'table')
  local p = C.new()
  if t[1] ~= nil then
    for _, e in ipairs(t) do p:add(e[1], e[2]) end
  else
    for k, v in pairs(t) do p:add(k, v) end
  end
  return p
end

--- A new profile with every argument's stacks added together.
function M.merge(...)
  local out = C.new()
  for i = 1, select('#', ...) do
    local p = select(i, ...)
    if p ~= nil then out:merge(p) end
  end
  return out
end

--- Folded text of a profile (sorted lines).
function M.to_folded(p) return p:folded() end

--- Writes the folded text atomically. Returns true | nil, err.
function M.write(path, p)
  util.validate('path', path, 'string')
  return util.write_atomic(path, p:folded())
end

--- The kind of a frame by its FlameGraph suffix: "kernel" (_[k]), "jit"
--- (_[j]), "inline" (_[i]), "offcpu" (_[o]) or "user".
function M.frame_kind(name)
  local s = name:match('_%[(%a)%]$')
  return ({ k = 'kernel', j = 'jit', i = 'inline', o = 'offcpu' })[s] or 'user'
end

--- Per function name: self (samples whose leaf it is) and total (samples
--- with it anywhere on the stack, counted once per stack). Returns
--- { [name] = {self=, total=} }, total samples. `skip_root` leaves out the
--- first frame (the process name) from the counts.
function M.function_totals(p, skip_root)
  local out = {}
  for _, e in ipairs(p:stacks()) do
    local stack, n = e[1], e[2]
    local seen, last = {}, nil
    local i = 0
    for frame in (stack .. ';'):gmatch('([^;]*);') do
      i = i + 1
      if not (skip_root and i == 1) then
        local r = out[frame]
        if not r then r = { self = 0, total = 0 }; out[frame] = r end
        if not seen[frame] then seen[frame] = true; r.total = r.total + n end
        last = r
      end
    end
    if last then last.self = last.self + n end
  end
  return out, p:total()
end

--- Formats stats.errors as lines "LABEL:LINE: reason" for stderr.
function M.format_errors(stats, label, max)
  local lines = {}
  max = max or 10
  for i, e in ipairs(stats.errors or {}) do
    if i > max then break end
    lines[#lines + 1] = string.format('%s:%d: %s (skipped)', label, e.line, e.reason)
  end
  if stats.bad > #lines then
    lines[#lines + 1] = string.format('%s: %d bad lines in all', label, stats.bad)
  end
  if (stats.saturated or 0) > 0 then
    lines[#lines + 1] = string.format('%s: sample counts reached 2^53 and were capped there (%d additions)',
      label, stats.saturated)
  end
  return lines
end

return M
