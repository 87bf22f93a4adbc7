--- The text summary of a profile (perf_manual.profilers shape): header,
--- stack quality, the hint when a process was rarely on a CPU, top functions
--- and the profiler's own cost.
local util = require('perf_manual.util')

local M = {}

--- Below this on-CPU share a process's time goes elsewhere: the summary says so.
M.ELSEWHERE_SHARE = 0.2

local function pct(x) return x and string.format('%.1f%%', x * 100) or 'not measured' end

local function fmt_count(p, c)
  if p.unit == 'us' then return util.fmt_duration(c / 1e6) end
  return tostring(c)
end

--- The "user stacks unwound (--unwind auto): …" line of a quality's
--- unwind summary (perf_manual.profilers.unwind_quality), or nil (frame
--- pointers, or nothing walked).
function M.unwind_line(uw)
  if not (uw and uw.mode ~= 'fp' and (uw.samples or 0) > 0) then return nil end
  local n = uw.samples
  local ends = {}
  for reason, c in pairs(uw.ends) do
    if reason ~= 'root' then ends[#ends + 1] = { reason, c } end
  end
  table.sort(ends, function(a, b) if a[2] ~= b[2] then return a[2] > b[2] end return a[1] < b[1] end)
  local why = {}
  for _, e in ipairs(ends) do why[#why + 1] = string.format('%s %s', e[1], pct(e[2] / n)) end
  if uw.fp_no_map > 0 then
    why[#why + 1] = 'frames outside known mappings (JIT, new code) ' .. pct(uw.fp_no_map / n)
  end
  return string.format('user stacks unwound (--unwind %s): CFI %s, CFI and frame pointers %s, '
    .. 'frame pointers %s, before tables were ready %s; reach the root %s%s', uw.mode, pct(uw.dwarf / n),
    pct(uw.mixed / n), pct(uw.fp / n), pct(uw.no_table / n), pct((uw.ends.root or 0) / n),
    #why > 0 and '; cut by ' .. table.concat(why, ', ') or '')
end

--- The quality lines (also used in reports).
function M.quality_lines(p)
  local q = p.quality
  local lines = {}
  local lost = q.lost_samples and tostring(q.lost_samples)
    or 'not measured (' .. (p.lost_why or 'unknown source') .. ')'
  if p.unit == 'us' then
    lines[#lines + 1] = string.format('blocked %s in total, lost blocks %s%s%s',
      util.fmt_duration(q.samples / 1e6), lost,
      q.lost_stacks and string.format(', stacks lost %d', q.lost_stacks) or '',
      p.short_blocks and string.format(', %d blocks under %s not kept', p.short_blocks,
        util.fmt_duration((p.min_us or 1) / 1e6)) or '')
  else
    lines[#lines + 1] = string.format('samples %s, lost %s%s', q.samples, lost,
      q.lost_stacks and string.format(', stacks lost %d', q.lost_stacks) or '')
  end
  lines[#lines + 1] = string.format(
    'stacks with unnamed frames %s, truncated at %d frames %s, user stacks cut short %s',
    pct(q.unknown_share), p.max_depth or 127, pct(q.truncated_share), pct(q.short_user_share))
  local uw = q.unwind
  local ul = M.unwind_line(uw)
  if ul then lines[#lines + 1] = ul end
  if #q.without_frame_pointers > 0 and not (uw and uw.mode ~= 'fp') then
    lines[#lines + 1] = 'built without frame pointers (their callers are missing from stacks through them): '
      .. table.concat(q.without_frame_pointers, ', ')
  elseif p.source == 'perf' then
    lines[#lines + 1] = 'frame pointer check: not measured (perf fallback)'
  end
  return lines
end

--- The off-CPU summary by blocking reason (profilers.by_reason): "blocked
--- 4.1 s: pipe / unix socket 75%, sleep 25%", then each reason's top user
--- call sites.
function M.reason_lines(br)
  local out, parts = {}, {}
  for _, r in ipairs(br.reasons) do
    parts[#parts + 1] = string.format('%s %.0f%%', r.label, r.share * 100)
  end
  out[#out + 1] = ''
  out[#out + 1] = string.format('blocked %s: %s', util.fmt_duration(br.total / 1e6), table.concat(parts, ', '))
  for _, r in ipairs(br.reasons) do
    out[#out + 1] = string.format('  %-40s %6.1f%%  %10s', r.label, r.share * 100, util.fmt_duration(r.count / 1e6))
    for _, site in ipairs(r.sites) do
      out[#out + 1] = string.format('      %5.1f%%  %s', site.share * 100, site.site)
    end
  end
  return out
end

--- For an on-CPU profile of one process: its samples as a share of what
--- one thread always on a CPU would give (freq x duration); nil otherwise.
--- Text summary: header, quality, top functions. opts.top: the profile's
--- top functions (perf_manual.profilers.top), opts.on_cpu_share (its
--- on_cpu_share): the caller computes the data, this module only writes it.
function M.render(p, opts)
  opts = opts or {}
  local out = {}
  local what = p.kind == 'offcpu' and 'off-CPU' or 'on-CPU'
  out[#out + 1] = string.format('%s profile of %s for %s via %s%s', what, p.target or 'the system',
    util.fmt_duration(p.duration),
    p.source == 'bpf' and 'BPF' or 'perf record (fallback: ' .. (p.fallback_why or 'BPF unavailable') .. ')',
    p.freq and string.format(' at %d Hz', p.freq) or '')
  for _, l in ipairs(M.quality_lines(p)) do out[#out + 1] = '  ' .. l end
  local share = opts.on_cpu_share
  if p.kind ~= 'offcpu' and p.on_cpu then
    -- measured from the target's CPU time: what the samples can cover at most
    local oc = p.on_cpu
    local cover = math.min(oc.share, 1) * 100
    out[#out + 1] = string.format('these samples cover %s%% of the target\'s wall time (its threads were on a CPU '
      .. '%s of %s%s)%s', string.format(cover < 10 and '%.1f' or '%.0f', cover), util.fmt_duration(oc.cpu_s),
      util.fmt_duration(oc.wall_s),
      oc.share > 1.05 and string.format(': %.1f CPUs on average', oc.share) or '',
      oc.share < 0.8 and string.format('; the rest (%.0f%%) is off-CPU: --off-cpu shows where it waits',
        (1 - oc.share) * 100) or '')
  elseif share and share < M.ELSEWHERE_SHARE then
    -- a handful of samples is a sign the time goes somewhere else
    out[#out + 1] = string.format('the target was on a CPU about %.1f%% of the time (%d samples of the %d one '
      .. 'busy thread gives): its time goes elsewhere; --off-cpu shows where it waits', share * 100, p.total,
      math.floor(p.freq * p.duration + 0.5))
  end
  if p.total == 0 then
    out[#out + 1] = p.kind == 'offcpu' and 'no blocked time recorded: the target did not block above the threshold'
      or 'no samples: the target did not run on a CPU during the capture'
    return table.concat(out, '\n') .. '\n'
  end
  local top = opts.top
  local unit = p.unit == 'us' and 'blocked' or 'samples'
  if p.kind == 'offcpu' and p.by_reason then
    -- by what it waited for, not by the scheduler frames every blocked stack shares
    for _, l in ipairs(M.reason_lines(p.by_reason)) do out[#out + 1] = l end
  end
  for _, which in ipairs(p.kind == 'offcpu' and p.by_reason and {} or { 'inclusive', 'self' }) do
    out[#out + 1] = ''
    out[#out + 1] = string.format('top functions by %s %s:', which, unit)
    for _, t in ipairs(top[which]) do
      out[#out + 1] = string.format('  %6.1f%%  %10s  %s', t.share * 100, fmt_count(p, t.count), t.name)
    end
  end
  M.tail_lines(p, out, 'profiler cost while sampling', 'BPF program', '')
  return table.concat(out, '\n') .. '\n'
end

--- Appends what ends every profile's text to `out`: the profiler's cost
--- ("<what>: X of one CPU (user+sys, <prog> run time)<more>"), how a
--- launched command ended, the files written.
function M.tail_lines(p, out, what, prog, more)
  if p.cost then
    out[#out + 1] = ''
    out[#out + 1] = string.format('%s: %s of one CPU (user+sys %s, %s %s)%s', what,
      p.cost.cpu_share and string.format('%.2f%%', p.cost.cpu_share * 100) or 'not measured',
      util.fmt_duration(p.cost.user_sys_s), prog,
      p.cost.bpf_s and util.fmt_duration(p.cost.bpf_s) or 'not measured (BPF stats off)', more)
  end
  if p.command_ended then
    out[#out + 1] = ''
    out[#out + 1] = p.command_ended
  end
  if p.files then
    out[#out + 1] = ''
    for _, f in ipairs(p.files) do out[#out + 1] = 'wrote ' .. f end
  end
  return out
end

return M
