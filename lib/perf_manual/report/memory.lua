--- The text summary of a memory profile (perf_manual.profilers.memory):
--- the leak verdict, RSS over the window, outstanding bytes by allocating
--- function and by stack, page faults by stack and by mapping, measurement
--- quality and the profiler's own cost.
local util = require('perf_manual.util')
local report_profile = require('perf_manual.report.profile')

local M = {}

local function pct(x) return x and string.format('%.1f%%', x * 100) or 'not measured' end
local function mb(b) return b and string.format('%.1f MB', b / 1e6) or 'not measured' end

-- a stack, leaf last, shortened to its innermost frames
local function short_stack(frames, n)
  local from = math.max(2, #frames - n + 1)
  local parts = {}
  for i = from, #frames do parts[#parts + 1] = frames[i] end
  return (from > 2 and '…;' or '') .. table.concat(parts, ';')
end

--- The quality lines: sampling, frees matched, stacks cut short.
function M.quality_lines(p)
  local m = p.memory or {}
  local q = m.quality or {}
  local out = {}
  local every = q.sample_every or 1
  out[#out + 1] = string.format('allocator calls %s, recorded %s (%s%s), frees %s (%s of recorded allocations)',
    tostring(q.calls or 'not measured'), tostring(q.sampled or 'not measured'),
    every > 1 and string.format('every %dth, weighted x%d', every, every) or 'every call',
    (q.sample_min_size or 0) > 0 and (', all of ' .. util.fmt_bytes(q.sample_min_size) .. ' or more') or '',
    tostring(q.frees or 'not measured'), tostring(q.frees_matched or 0))
  local walked = q.unwind and q.unwind.mode ~= 'fp'
  out[#out + 1] = string.format('stacks cut short (%s) %s, unnamed frames %s, '
    .. 'stacks lost %s, live-allocation map full %s',
    walked and 'not reaching a start function' or 'no frame pointers past the caller', pct(q.short_stack_share),
    pct(q.unknown_share), tostring(q.lost_stacks or 'not measured'), tostring(q.allocs_map_full or 'not measured'))
  -- by outstanding bytes, as the profile counts
  local ul = report_profile.unwind_line(q.unwind)
  if ul then out[#out + 1] = ul end
  if not walked and q.without_frame_pointers and #q.without_frame_pointers > 0 then
    out[#out + 1] = 'built without frame pointers (stacks through them stop at the caller): '
      .. table.concat(q.without_frame_pointers, ', ')
  end
  if q.brk_bytes or q.mmap_bytes then
    out[#out + 1] = string.format('heap grown by brk %s, anonymous mmap outside malloc %s',
      util.fmt_bytes(q.brk_bytes or 0), util.fmt_bytes(q.mmap_bytes or 0))
  end
  return out
end

--- Text summary. opts.top: rows per table (default 10).
function M.render(p, opts)
  opts = opts or {}
  local n = opts.top or 10
  local m = p.memory or {}
  local out = {}
  out[#out + 1] = string.format('memory profile of %s for %s via BPF uprobes on %s', p.target or 'the target',
    util.fmt_duration(p.duration or 0), m.libc and m.libc:match('([^/]+)$') or 'the allocator')
  for _, l in ipairs(M.quality_lines(p)) do out[#out + 1] = '  ' .. l end
  out[#out + 1] = ''
  if m.verdict then out[#out + 1] = 'verdict: ' .. m.verdict.text end
  local rss = m.rss
  if rss then
    out[#out + 1] = string.format('RSS %s -> %s (%+.1f MB over %s; %+.1f MB/min by least squares over %d samples)',
      mb(rss.first), mb(rss.last), rss.growth / 1e6, util.fmt_duration(rss.seconds), (rss.per_min or 0) / 1e6,
      rss.samples)
  else
    out[#out + 1] = 'RSS: not measured (the target exited before a second sample)'
  end
  out[#out + 1] = string.format('outstanding at the end: %s allocated in the window and not freed',
    util.fmt_bytes(p.total or 0))
  if (p.total or 0) > 0 then
    out[#out + 1] = ''
    out[#out + 1] = 'outstanding bytes by allocating function:'
    for i, f in ipairs(m.by_function or {}) do
      if i > n then break end
      out[#out + 1] = string.format('  %6.1f%%  %10s  %8d allocs  %s', f.share * 100, util.fmt_bytes(f.bytes),
        f.allocs, f.name)
    end
    out[#out + 1] = ''
    out[#out + 1] = 'outstanding bytes by stack (innermost frames):'
    for i, s in ipairs(p.stacks) do
      if i > n then break end
      out[#out + 1] = string.format('  %6.1f%%  %10s  %8s allocs  %s', s.count / p.total * 100,
        util.fmt_bytes(s.count), s.allocs and tostring(s.allocs) or '-', short_stack(s.frames, 5))
    end
  end
  local f = p.faults
  if f then
    out[#out + 1] = ''
    out[#out + 1] = string.format('page faults: %d', f.total)
    for i, s in ipairs(f.stacks) do
      if i > n then break end
      out[#out + 1] = string.format('  %6.1f%%  %8d  %s', s.count / math.max(f.total, 1) * 100, s.count,
        short_stack(s.frames, 5))
    end
    if m.fault_mappings and #m.fault_mappings > 0 then
      local parts = {}
      for i, r in ipairs(m.fault_mappings) do
        if i > 5 then break end
        parts[#parts + 1] = string.format('%s %.0f%%', r.mapping, r.share * 100)
      end
      out[#out + 1] = '  by mapping: ' .. table.concat(parts, ', ')
    end
  end
  report_profile.tail_lines(p, out, 'profiler cost', 'BPF programs',
    '; every traced allocator call also pays a uprobe trap in the target')
  return table.concat(out, '\n') .. '\n'
end

return M
