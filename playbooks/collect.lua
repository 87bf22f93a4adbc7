-- perf_manual collect: run a collection suite into a data dir that
-- `analyze`, `root-cause` and `investigate --replay` read. Suites are
-- lib/perf_manual/suites/*.lua, or suites/*.lua in a playbook directory.
return playbook {
  name    = "collect",
  topic    = "methods",
  summary = "Collect a suite of metrics, traces and profiles into a data dir (with a manifest)",
  examples = '  perf_manual collect --suite basic --output /tmp/data --duration 10\n'
    .. '  perf_manual collect --suite io --output /tmp/io --pid 1234\n'
    .. '  perf_manual collect --suite basic --output /tmp/build --duration 60 -- make -j2'
    .. '   # launched; ends when it exits',
  params  = {
    suite    = param.string   { "basic | cpu | io | full | memory, or a team's suite", default = "basic" },
    output   = param.path     { "directory to write (created; must be empty or new)", required = true },
    duration = param.duration { "how long to collect", default = "10s", above = 0 },
    interval = param.duration { "time between samples", optional = true, above = 0 },
    target   = param.target   { "what to focus on: system, a PID, a service, a cgroup path, a process name or "
      .. "a command",
      default = "system", aliases = param.target_aliases },
    json     = param.flag     { "print the manifest as JSON" },
  },
  -- before anything runs: a file where the data dir should go is named as such
  -- (not "cannot lock .../.lock: Not a directory")
  check = function(p)
    local store = require('perf_manual.store')
    if store.exists(p.output) and not store.is_dir(p.output) then
      require('perf_manual.util').user_error('collect: --output ' .. p.output .. ' is not a directory')
    end
  end,

  step "collect" {
    function(inv, p)
      local manifest = inv:collect { p.suite, output = p.output, target = inv:target(p.target),
        duration = p.duration, interval = p.interval }
      if p.json then inv:json(manifest) return end
      inv:printf('collected suite %s into %s (%s to %s)%s\n', manifest.suite, manifest.dir, manifest.started,
        manifest.ended, manifest.stopped and ' [stopped early]' or '')
      for _, it in ipairs(manifest.items) do
        inv:printf('  %-10s %-10s %-32s %s\n', it.kind, it.name, it.file or '-',
          it.error or ((it.samples and (it.samples .. ' samples') or 'ok')
            .. (it.lost_events and it.lost_events > 0 and (', ' .. it.lost_events .. ' lost events') or '')))
      end
      local ended = inv:exit_text(manifest.target)
      if ended then inv:printf('%s\n', ended) end
    end,
  },
}
