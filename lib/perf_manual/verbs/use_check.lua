--- inv:use_check { target =, duration =, interval =, bpf =, max_overhead =, lock_hold = }
--- The USE method on a target: measured by perf_manual.measure.use, judged
--- by perf_manual.analyzers.use. The `use-check` command and investigations
--- call this one function. In replay the recorded measures are judged again
--- by today's rules.
local util = require('perf_manual.util')
local measure_use = require('perf_manual.measure.use')
local use = require('perf_manual.analyzers.use')
local common = require('perf_manual.verbs.common')
local tsa_report = require('perf_manual.report.tsa')

local M = {}

--- Judges measures into the result every caller sees.
function M.judge(m)
  local r = use.analyze(m, {})
  r.target = m.target
  r.duration, r.elapsed, r.samples = m.duration, m.elapsed, m.samples
  r.partial, r.stopped, r.exited, r.alive_s = m.partial, m.stopped, m.exited, m.alive_s
  r.rows, r.notes = util.array(r.rows), util.array(m.notes)
  r.sources = use.sources(m)
  r.idle = r.idle or { disks = util.array(), nets = util.array() }
  r.measures = m
  r.text = use.render(r)
  r.culprits = use.culprits(r)
  if m.tsa then
    r.tsa = m.tsa
    r.text = r.text .. tsa_report.summary(m.tsa)
  end
  return use.normalize(r)
end

local function rejudge(rec)
  if type(rec.measures) ~= 'table' then return use.normalize(rec) end
  return M.judge(rec.measures)
end

function M.use_check(inv, opts)
  opts = opts or {}
  local params = inv.params or {}
  local r = common.adapter(inv, 'use-check', function()
    local duration = opts.duration or params.duration or 5
    local m = measure_use.collect { target = common.target(inv, opts), duration = duration,
      interval = opts.interval or math.min(1, duration / 2), bpf = opts.bpf, max_overhead = opts.max_overhead,
      lock_hold = opts.lock_hold,
      progress = common.progress(inv), note = opts.note }
    inv:progress_done()
    return M.judge(m)
  end, rejudge)
  local verdict = r.verdict or (r.available == false and 'not available') or 'no saturated resource'
  inv:log('decision', 'USE verdict: ' .. verdict)
  return r
end

M.verbs = { use_check = M.use_check }

return M
