--- The catalogue runbooks' measurements (fsync-audit, pagefaults,
--- tcp-check): each verb measures live, or with `replay = DIR` reads the
--- recording a `--save DIR` run left (DIR/<name>.json), so a runbook's
--- judgement is tested on recorded real data without root.
local util = require('perf_manual.util')
local common = require('perf_manual.verbs.common')

local M = {}

--- The recording `name` from opts.replay, or `live()` run now; a result
--- that could not be had is { available = false, why = }.
function M.recorded_or_live(inv, name, opts, live)
  if opts.replay then
    local path = opts.replay .. '/' .. name .. '.json'
    local text = util.readfile(path)
    if not text then util.user_error(inv.playbook.name .. ': not in the recorded data: ' .. path) end
    local rec, err = util.json_decode(text)
    if type(rec) ~= 'table' or rec.kind ~= name then
      util.user_error(inv.playbook.name .. ': ' .. path .. ': not a ' .. name .. ' recording'
        .. (err and (' (' .. tostring(err) .. ')') or ''))
    end
    rec.replayed = true
    return rec
  end
  local rec, why = live()
  inv:progress_done()
  if not rec then return { available = false, why = why or 'no result' } end
  return rec
end

--- inv:fsync_audit { target =, duration =, max_overhead =, replay = }
function M.fsync_audit(inv, opts)
  return M.recorded_or_live(inv, 'fsync-audit', opts, function()
    return require('perf_manual.runbooks.fsync_audit').run { target = common.target(inv, opts),
      duration = opts.duration, max_overhead = opts.max_overhead, progress = common.progress(inv),
      note = opts.note }
  end)
end

--- inv:pagefaults { target =, duration =, every =, replay = }
function M.pagefaults(inv, opts)
  return M.recorded_or_live(inv, 'pagefaults', opts, function()
    return require('perf_manual.runbooks.pagefaults').run { target = common.target(inv, opts),
      duration = opts.duration, every = opts.every, progress = common.progress(inv), note = opts.note }
  end)
end

--- inv:tcp_check { target =, duration =, replay = }
function M.tcp_check(inv, opts)
  return M.recorded_or_live(inv, 'tcp-check', opts, function()
    return require('perf_manual.runbooks.tcp_check').run { target = common.target(inv, opts),
      duration = opts.duration, progress = common.progress(inv), note = opts.note }
  end)
end

--- inv:conn_storm { target =, duration =, load =, max_overhead =, replay = }
function M.conn_storm(inv, opts)
  return M.recorded_or_live(inv, 'conn-storm', opts, function()
    return require('perf_manual.runbooks.conn_storm').run { target = common.target(inv, opts),
      duration = opts.duration, load = opts.load, max_overhead = opts.max_overhead, progress = common.progress(inv),
      note = opts.note }
  end)
end

--- inv:exec_monitor { target =, duration =, prefixes =, all_opens =, on_events =, replay = }
function M.exec_monitor(inv, opts)
  return M.recorded_or_live(inv, 'exec-monitor', opts, function()
    return require('perf_manual.runbooks.exec_monitor').run { target = common.target(inv, opts),
      duration = opts.duration, prefixes = opts.prefixes, all_opens = opts.all_opens, on_events = opts.on_events,
      max_overhead = opts.max_overhead, progress = common.progress(inv), note = opts.note }
  end)
end

--- inv:json_line(value): one compact JSON document on one line, flushed
--- (alerts stream as JSON lines).
function M.json_line(inv, value)
  inv:print(util.json_encode(value))
  inv:flush()
end

--- inv:save_recording(dir, rec): DIR/<rec.kind>.json, for --replay.
function M.save_recording(inv, dir, rec)
  inv:save_file(inv:mkdir(dir) .. '/' .. rec.kind .. '.json', rec)
end

M.verbs = { fsync_audit = M.fsync_audit, pagefaults = M.pagefaults, tcp_check = M.tcp_check, conn_storm = M.conn_storm,
  exec_monitor = M.exec_monitor, json_line = M.json_line, save_recording = M.save_recording }

return M
