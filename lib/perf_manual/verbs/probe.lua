--- inv:probe { "uprobe:libc:malloc", hist = "arg0", by = "stack", pid = p.target, duration = 5 }
---   -> the probe's result: { probe =, rows = { {count=, comm=, stack=, key=, buckets=...} },
---      total = { count=, sum=, mean= }, buckets =, quality =, notes =, ended_by = }
--- The spec's options are perf_manual.probe's (docs/playbooks.md has the
--- grammar); the verb's own are target, duration, interval, on_interval,
--- on_start, max_overhead. A spec the machine cannot place because it is
--- wrong (unknown symbol, tracepoint, field) is a user error (exit 2); one
--- it cannot place for want of BPF is { available = false, why = }.
local util = require('perf_manual.util')
local probe = require('perf_manual.probe')
local common = require('perf_manual.verbs.common')

local M = {}

local OWN = { target = true, duration = true, interval = true, on_interval = true, on_start = true,
  max_overhead = true, note = true, output = true }

function M.probe(inv, opts)
  opts = opts or {}
  local params = inv.params or {}
  local spec = {}
  for k, v in pairs(opts) do if not OWN[k] then spec[k] = v end end
  local p, err = probe.parse(spec)
  if not p then util.user_error(err) end
  return common.adapter(inv, 'probe', function()
    local r, why, kind = require('perf_manual.measure.probe').run {
      probe = p, target = common.target(inv, opts), duration = opts.duration or params.duration or 5,
      interval = opts.interval, on_interval = opts.on_interval, on_start = opts.on_start, output = opts.output,
      max_overhead = opts.max_overhead or params.max_overhead, note = opts.note, progress = common.progress(inv),
    }
    inv:progress_done()
    if not r and kind == 'user' then util.user_error(why) end
    return r, why
  end)
end

--- inv:render_probe(result, { top = }) -> text (tables, histograms, stacks, quality line)
function M.render_probe(_, res, opts)
  return require('perf_manual.report.probe').render(res, opts)
end

--- inv:probe_json(result) -> a JSON-ready copy (arrays stay arrays)
function M.probe_json(_, res)
  return require('perf_manual.measure.probe').to_json(res)
end

M.verbs = { probe = M.probe, render_probe = M.render_probe, probe_json = M.probe_json }

return M
