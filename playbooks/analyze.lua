-- perf_manual analyze: findings and a report section per resource from a
-- data dir written by `collect` (or an investigation folder).
return playbook {
  name    = "analyze",
  summary = "Run the analyzers over a collected data dir: findings and a report section per resource",
  examples = '  perf_manual analyze --data /tmp/data --output report.md',
  params  = {
    data   = param.path { "data dir (collect --output, or an investigation folder)" },
    output = param.path { "Markdown report to write", default = "report.md" },
    json   = param.flag { "print the findings as JSON" },
  },

  step "analyze" {
    function(inv, p)
      local F, util, store = require('perf_manual.analyzers.findings'), require('perf_manual.util'),
        require('perf_manual.store')
      local data = F.prepare(store.results(p.data))
      local found = F.all(data)
      store.attach(p.data):write_analysis_json('findings.json', util.array(found))
      local text = require('perf_manual.report').analysis(data, found)
      local ok, err = util.write_atomic(p.output, text)
      if not ok then util.user_error(err) end
      if p.json then inv:print(util.json_encode(util.array(found), true)) return end
      inv:printf('%d findings from %s; report: %s\n', #found, p.data, p.output)
      for _, f in ipairs(found) do inv:printf('  %-8s %s\n', f.severity:upper(), f.summary) end
      if data.use and data.use.verdict then inv:printf('bottleneck (USE): %s\n', data.use.verdict) end
    end,
  },
}
