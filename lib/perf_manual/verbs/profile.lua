--- inv:profile { target =, duration =, off_cpu =, freq =, min_block =, backend =, unwind = }
--- On-CPU (or off-CPU) profile on perf_manual.measure.profile, like the
--- `profile` command: BPF, or perf record when BPF cannot be used (said in
--- the result). Returns the profile summary (top, total, quality, backend)
--- with its folded stacks, also stored as a .folded artifact; `_profile`
--- holds the live profile for writing flame graphs.
local measure_profile = require('perf_manual.measure.profile')
local profilers = require('perf_manual.profilers')
local findings = require('perf_manual.analyzers.findings')
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local fold = require('perf_manual.fold')
local store = require('perf_manual.store')
local flamegraph = require('perf_manual.report.flamegraph')
local speedscope = require('perf_manual.report.speedscope')
local pprof = require('perf_manual.report.pprof')
local report_profile = require('perf_manual.report.profile')
local common = require('perf_manual.verbs.common')

local M = {}

--- A profile rebuilt from its recorded summary and folded stacks: the
--- recorded quality figures stand (they were measured with the live maps).
function M.rebuild(rec, folded)
  local stacks = {}
  for line in tostring(folded or ''):gmatch('[^\n]+') do
    local key, n = line:match('^(.*) (%d+)$')
    if key then
      local frames = {}
      for f in (key .. ';'):gmatch('(.-);') do frames[#frames + 1] = f end
      stacks[#stacks + 1] = { frames = frames, count = tonumber(n), key = key }
    end
  end
  -- a memory profile's allocation counts live in its JSON (the folded file holds bytes)
  local allocs = {}
  for _, t in ipairs(rec.kind == 'memory' and rec.stacks or {}) do allocs[t.stack] = t.allocs end
  for _, st in ipairs(stacks) do st.allocs = allocs[st.key] end
  local q = rec.quality or {}
  local prof = profilers.new { kind = rec.kind, source = rec.source, unit = rec.unit, target = rec.target,
    target_kind = rec.target_kind,
    duration = rec.duration_s, freq = rec.freq, fallback_why = rec.fallback, stacks = stacks,
    binaries = rec.binaries, lost_samples = q.lost_samples, lost_stacks = q.lost_stacks,
    bpf_run_time_ns = rec.bpf_run_time_ns, cost = rec.cost }
  for k, v in pairs(q) do prof.quality[k] = v end
  prof.quality.without_frame_pointers = util.array(q.without_frame_pointers or {})
  if prof.source ~= 'bpf' and not q.lost_samples then prof.lost_why = 'not recorded' end
  prof.memory = rec.memory
  prof.t_stop = sys.now()
  return prof
end

-- replay: the investigation's profile-KIND.json, or the profile.json and
-- profile.folded a `profile --output DIR` left
local function replayed(inv, kind)
  local rec = common.recorded(inv, 'profile-' .. kind .. '.json')
  local folded
  if rec then
    folded = rec.folded or common.recorded(inv, 'profile-' .. kind .. '.folded')
  else
    local why
    rec, why = common.recorded(inv, 'profile.json')
    if not rec then return nil, why end
    folded = common.recorded(inv, 'profile.folded')
    if not folded then return nil, 'no profile.folded beside profile.json in ' .. inv.replay end
  end
  local out = rec
  out.folded = folded
  out._profile = M.rebuild(rec, folded)
  return out
end

function M.profile(inv, opts)
  opts = opts or {}
  local params = inv.params or {}
  local kind = opts.off_cpu and 'offcpu' or opts.memory and 'memory' or (opts.kind or 'cpu')
  if inv.replay and not (inv.playbook and inv.playbook.investigation) then
    -- a command replaying a profile directory
    local r, why = replayed(inv, kind)
    return r or { available = false, why = why }
  end
  local r = common.adapter(inv, 'profile-' .. kind, function()
    local prof, why = measure_profile.run {
      target = common.target(inv, opts), duration = opts.duration or params.duration or 5, freq = opts.freq,
      off_cpu = opts.off_cpu or kind == 'offcpu', min_block = opts.min_block, backend = opts.backend,
      memory = kind == 'memory', sample_every = opts.sample_every, sample_min_size = opts.sample_min_size,
      verdict = opts.verdict, unwind = opts.unwind,
      progress = common.progress(inv), note = opts.note, soft = opts.soft ~= false, output = opts.output,
    }
    inv:progress_done()
    if not prof then return nil, why end
    local out = profilers.to_json(prof, { top = opts.top })
    out.folded = profilers.folded(prof)
    out.lost_events = prof.lost_samples
    out.backend, out.fallback_why, out.ended_by = prof.backend, prof.fallback_why, prof.ended_by
    out.exited_after_s, out.partial = prof.exited_after, prof.partial
    out.session_notes = util.array(prof.notes)
    out._profile = prof
    return out
  end, function(rec)
    local folded = rec.folded or common.recorded(inv, 'profile-' .. kind .. '.folded')
    if type(folded) == 'string' then rec._profile = M.rebuild(rec, folded) end
    return rec
  end)
  if r.artifact and r.available ~= false and type(r.folded) == 'string' and not inv.replay then
    r.folded_path = inv:save_artifact(store.artifact_name(r.artifact):gsub('%.json$', '.folded'), r.folded, 'profile')
  end
  if kind == 'memory' and r.memory and r.memory.verdict then
    inv:log('decision', 'memory: ' .. r.memory.verdict.text)
  end
  local hot = kind ~= 'memory' and findings.hot_function(r)
  if hot then
    inv:log('decision', string.format('hottest function %s (%.0f%% of samples)',
      tostring(hot.name), (hot.share or 0) * 100))
  end
  return r
end

M.FORMATS = { svg = true, folded = true, speedscope = true, pprof = true }
local UNITS = { us = 'us', bytes = 'bytes', faults = 'faults' }

--- True when an --output names one pprof file (…/x.pb.gz, …/x.pprof), not a directory.
function M.is_pprof_file(path)
  return type(path) == 'string' and (path:match('%.pb%.gz$') or path:match('%.pprof$')) ~= nil
end

local function pprof_comments(p, what)
  return { string.format('perf_manual %s of %s for %.1f s via %s', what, p.target or 'system', p.duration or 0,
    p.source == 'bpf' and 'BPF' or 'perf record') }
end

--- Writes a profile into dir (created if missing) in the given formats
--- ("svg", "folded", "speedscope", "pprof") plus profile.json (meta and quality).
--- opts.svg_written() is called right after the SVG is on disk.
--- Returns the list of paths written, or nil, err.
function M.write(p, dir, formats, opts)
  if M.is_pprof_file(dir) then
    -- one gzip'd profile.proto, as go tool pprof users expect
    local ok, err = pprof.write(dir, p, { comments = pprof_comments(p, p.kind == 'offcpu' and 'off-CPU profile'
      or 'on-CPU profile') })
    if not ok then return nil, err end
    return { dir }
  end
  if store.exists(dir) and not store.is_dir(dir) then return nil, dir .. ' exists and is not a directory' end
  local ok, err = store.mkdir_p(dir)
  if not ok then return nil, err end
  local fp = profilers.to_fold(p)
  local files = {}
  -- the flame graph first: it is what a person opens
  local ordered = {}
  for _, f in ipairs(formats) do if f == 'svg' then ordered[#ordered + 1] = f end end
  for _, f in ipairs(formats) do if f ~= 'svg' then ordered[#ordered + 1] = f end end
  local what = p.kind == 'offcpu' and 'Off-CPU Time Flame Graph'
    or p.kind == 'memory' and 'Outstanding Memory Flame Graph (allocated in the window, not freed)'
    or 'CPU Flame Graph'
  for _, f in ipairs(ordered) do
    local path
    if f == 'folded' then
      path = dir .. '/profile.folded'
      ok, err = fold.write(path, fp)
    elseif f == 'svg' then
      path = dir .. '/profile.svg'
      ok, err = flamegraph.write_file(path, fp, {
        title = what,
        meta = { target = p.target or 'system', duration = p.duration, samples = p.total,
                 lost = p.lost_samples, unit = UNITS[p.unit] or 'samples' },
        colors = p.kind == 'offcpu' and 'offcpu' or p.kind == 'memory' and 'mem' or 'kind',
        unit = p.unit,
      })
    elseif f == 'speedscope' then
      path = dir .. '/profile.speedscope.json'
      ok, err = speedscope.write(path, fp, { name = what .. ' of ' .. (p.target or 'system'),
                                                  unit = p.unit == 'us' and 'microseconds' or 'none' })
    elseif f == 'pprof' then
      path = dir .. '/profile.pb.gz'
      ok, err = pprof.write(path, p, { comments = pprof_comments(p, what) })
    else
      fp:close()
      return nil, 'unknown format ' .. tostring(f)
    end
    if not ok then fp:close() return nil, err end
    files[#files + 1] = path
    if f == 'svg' and opts and opts.svg_written then opts.svg_written() end
  end
  fp:close()
  if p.faults then
    -- the page faults beside the bytes: where the memory was first touched
    local ffp = profilers.to_fold(p.faults)
    for _, f in ipairs(ordered) do
      local path
      if f == 'svg' then
        path = dir .. '/faults.svg'
        ok, err = flamegraph.write_file(path, ffp, { title = 'Page Fault Flame Graph',
          meta = { target = p.target or 'system', duration = p.duration, samples = p.faults.total,
                   lost = p.lost_samples, unit = 'faults' }, colors = 'mem', unit = 'faults' })
      elseif f == 'folded' then
        path = dir .. '/faults.folded'
        ok, err = fold.write(path, ffp)
      end
      if path then
        if not ok then ffp:close() return nil, err end
        files[#files + 1] = path
      end
    end
    ffp:close()
  end
  local jpath = dir .. '/profile.json'
  ok, err = util.write_atomic(jpath, util.json_encode(profilers.to_json(p), true) .. '\n')
  if not ok then return nil, err end
  files[#files + 1] = jpath
  return files
end

--- inv:check_profile_formats(list [, output]): a bad --format is a user
--- error; so is a format other than pprof with an --output FILE.pb.gz.
function M.check_profile_formats(inv, formats, output)
  if M.is_pprof_file(output) and not (#formats == 1 and formats[1] == 'pprof') then
    inv:fail(inv.playbook.name .. ': --output ' .. output .. ' is one pprof file: --format pprof alone')
  end
  for _, f in ipairs(formats) do
    if not M.FORMATS[f] then
      inv:fail(inv.playbook.name .. ": unknown --format '" .. f .. "' (svg, folded, speedscope, pprof)")
    end
  end
end

--- inv:write_profile(result, dir, formats): the flame graph and the other
--- files of a live profile; returns the profile with files and timings.
function M.write_profile(inv, r, dir, formats)
  local prof = r._profile
  if not prof then
    inv:fail(inv.playbook.name .. ': no live profile to write (' .. tostring(r.why or 'replay') .. ')')
  end
  local files, werr = M.write(prof, dir, formats, {
    svg_written = function() prof.stop_to_svg_s = sys.now() - prof.t_stop end,
  })
  if not files then inv:fail(inv.playbook.name .. ': ' .. tostring(werr)) end
  prof.files = files
  prof.stop_to_files_s = sys.now() - prof.t_stop
  r.files = util.array(files)
  return prof
end

--- The profile's text; a window cut short (target exited, Ctrl-C) says so first.
function M.render_profile(_, prof, opts)
  opts = opts or {}
  if prof.kind == 'memory' then
    local text = require('perf_manual.report.memory').render(prof, { top = opts.top })
    if prof.partial then text = 'partial: ' .. prof.partial .. '\n' .. text end
    return text
  end
  local text = report_profile.render(prof, { top = profilers.top(prof, opts.top or 10),
    on_cpu_share = profilers.on_cpu_share(prof) })
  if prof.partial then text = 'partial: ' .. prof.partial .. '\n' .. text end
  return text
end

function M.profile_json(_, prof, opts)
  local doc = profilers.to_json(prof, opts)
  doc.ended_by, doc.exited_after_s, doc.partial = prof.ended_by, prof.exited_after, prof.partial
  return doc
end

--- inv:memory_profile { target =, duration =, sample_every =, sample_min_size =, verdict = }
--- The memory profile (inv:profile { memory = true }): outstanding bytes by
--- stack, page faults, RSS growth and the leak verdict (result.memory.verdict).
function M.memory_profile(inv, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.memory = true
  local r = M.profile(inv, o)
  local v = r.memory and r.memory.verdict
  if r.available == false then
    r.summary = 'memory profile not available: ' .. tostring(r.why)
  elseif v then
    -- what a drill-down prints (inv:tell): the verdict, then the top allocating functions
    local lines = { v.text }
    for i, f in ipairs(r.memory.by_function or {}) do
      if i > 3 then break end
      lines[#lines + 1] = string.format('%.0f%% of the outstanding %s from %s (%d allocations)', f.share * 100,
        util.fmt_bytes(r.total or 0), f.name, f.allocs)
    end
    r.summary = table.concat(lines, '\n')
    if v.leaking and inv.finding then
      inv:finding { resource = 'memory', metric = 'memory.outstanding_per_min', value = v.outstanding_per_min,
                    severity = 'warning', summary = v.text, evidence = r.artifact }
    end
  end
  return r
end

M.verbs = { profile = M.profile, memory_profile = M.memory_profile, write_profile = M.write_profile,
  check_profile_formats = M.check_profile_formats,
  render_profile = M.render_profile, profile_json = M.profile_json }

return M
