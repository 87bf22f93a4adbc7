--- inv:collect { "basic" | suite | collector, target =, duration =, interval = }
--- inv:collect { suite, output = DIR }   a data dir of its own (the `collect` command)
--- Runs a suite on perf_manual.measure.collect. In an investigation every
--- output is an artifact; with `output` the files go to DIR/raw_data with a
--- manifest.json that `analyze`, `root-cause` and `investigate --replay` read.
--- The USE check of a suite is judged here, like inv:use_check.
local store = require('perf_manual.store')
local measure_collect = require('perf_manual.measure.collect')
local use_check = require('perf_manual.verbs.use_check')
local common = require('perf_manual.verbs.common')

local M = {}

local function run(inv, what, opts, save, stream)
  local params = inv.params or {}
  local manifest = measure_collect.run(what, { duration = opts.duration or params.duration or 5,
    interval = opts.interval, target = common.target(inv, opts), judge = use_check.judge,
    max_overhead = opts.max_overhead, progress = common.progress(inv), note = opts.note,
    stream = stream and stream.stream, checkpoint = stream and stream.checkpoint }, save)
  inv:progress_done()
  return manifest
end

function M.collect(inv, opts)
  opts = opts or {}
  local what = opts[1] or opts.suite or 'basic'
  if opts.output then
    local f = io.open(opts.output .. '/manifest.json', 'r')
    if f then
      f:close()
      inv:fail(inv.playbook.name .. ': ' .. opts.output .. ' already holds a collection (manifest.json); '
        .. 'pick a new output directory')
    end
    local out = store.attach(opts.output)
    out:lock()
    local ok, manifest = pcall(run, inv, what, opts, function(name, data)
      if type(data) == 'table' then return out:write_json(store.artifact_rel(name), data) end
      return out:write(store.artifact_rel(name), data)
    end, {
      -- samples on disk as they come, and a manifest from the start (kill -9 safe)
      stream = function(name) return out:appender(store.artifact_rel(name)) end,
      checkpoint = function(m) out:write_json('manifest.json', m) end,
    })
    if ok then out:write_json('manifest.json', manifest) end
    out:release()
    if not ok then error(manifest, 0) end
    manifest.dir = out.dir
    return manifest
  end
  return common.adapter(inv, 'collect-' .. what, function()
    return run(inv, what, opts, function(n, data, kind) return inv:save_artifact(n, data, kind) end)
  end)
end

M.verbs = { collect = M.collect }

return M
