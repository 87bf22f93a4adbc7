-- perf_manual collect: run a collection suite into a data dir that
-- `analyze`, `root-cause` and `investigate --replay` read.
return playbook {
  name    = "collect",
  summary = "Collect a suite of metrics, traces and profiles into a data dir (with a manifest)",
  examples = '  perf_manual collect --suite basic --output /tmp/data --duration 10\n'
    .. '  perf_manual collect --suite io --output /tmp/io --pid 1234',
  params  = {
    suite    = param.string   { "basic | cpu | io | full | memory (lib/perf_manual/suites/)", default = "basic" },
    output   = param.path     { "directory to write (created; must be empty or new)" },
    duration = param.duration { "how long to collect", default = "10s" },
    interval = param.duration { "time between samples", optional = true },
    pid      = param.pid      { "process to focus on (process collector, tracer filters)", optional = true },
    json     = param.flag     { "print the manifest as JSON" },
  },

  step "collect" {
    function(inv, p)
      local suites, store, util = require('perf_manual.suites'), require('perf_manual.store'),
        require('perf_manual.util')
      if p.duration <= 0 then util.user_error('collect: --duration must be more than 0') end
      if not suites.get(p.suite) then
        util.user_error("collect: no suite '" .. p.suite .. "' (suites: " .. table.concat(suites.list(), ', ') .. ')')
      end
      local f = io.open(p.output .. '/manifest.json', 'r')
      if f then f:close() util.user_error('collect: ' .. p.output
        .. ' already holds a collection (manifest.json); pick a new --output') end
      local out = store.attach(p.output)
      out:lock()
      local manifest = suites.run(p.suite, { duration = p.duration, interval = p.interval, pid = p.pid,
          progress = function(t) inv:progress(t) end },
        function(name, data)
          return out:write('raw_data/' .. name, type(data) == 'table' and (util.json_encode(data, true)
            .. '\n') or data)
        end)
      inv:progress_done()
      out:write_json('manifest.json', manifest)
      out:unlock()
      os.remove(out.dir .. '/.lock')
      if p.json then inv:print(util.json_encode(manifest, true)) return end
      inv:printf('collected suite %s into %s (%s to %s)%s\n', manifest.suite, out.dir, manifest.started, manifest.ended,
        manifest.stopped and ' [stopped early]' or '')
      for _, it in ipairs(manifest.items) do
        inv:printf('  %-10s %-10s %-32s %s\n', it.kind, it.name, it.file or '-',
          it.error or ((it.samples and (it.samples .. ' samples') or 'ok')
            .. (it.lost_events and it.lost_events > 0 and (', ' .. it.lost_events .. ' lost events') or '')))
      end
    end,
  },
}
