-- perf_manual analyze: findings and a report section per resource from a
-- data dir written by `collect` (or an investigation folder): every artifact
-- it holds (USE check, thread-state accounting, traces, profiles and folded
-- stacks, RED results, *.jsonl series), then the hypotheses worth testing,
-- each scored against the same data.
return playbook {
  name    = "analyze",
  topic    = "methods",
  summary = "Run the analyzers over a collected data dir: findings, hypotheses and a report section per resource",
  examples = '  perf_manual analyze --data /tmp/data --output report.md',
  params  = {
    data   = param.path { "data dir (collect --output, red-check --save, or an investigation folder)" },
    output = param.path { "Markdown report to write", default = "report.md" },
    json   = param.flag { "print the findings as JSON" },
  },

  step "analyze" {
    function(inv, p)
      local F, util, store = require('perf_manual.analyzers.findings'), require('perf_manual.util'),
        require('perf_manual.store')
      local rc = require('perf_manual.analyzers.root_cause')
      local data = F.prepare(store.results(p.data))
      -- what store.results leaves out: the series and the folded stacks
      local ds = require('perf_manual.report').load(p.data) or { series = {}, profiles = {} }
      local _, prefix = store.data_dir(p.data)
      data.series = ds.series
      data.series_artifact = function(name) return prefix .. (name:match('^[^.]+') or name) .. '.jsonl' end
      if not data.profiles.cpu then
        for _, f in ipairs(ds.profiles) do
          if not f.name:match('off') then
            data.profiles.cpu = { folded = util.readfile(f.path), artifact = prefix .. f.name .. '.folded' }
            break
          end
        end
      end
      if data.red then data.red.artifact = data.red.artifact or (prefix .. 'red-check.json') end
      local found = F.all(data)
      store.attach(p.data):write_analysis_json('findings.json', util.array(found))
      local text = require('perf_manual.report').analysis(data, found)
      local ok, err = util.write_atomic(p.output, text)
      if not ok then util.user_error(err) end
      if p.json then inv:print(util.json_encode(util.array(found), true)) return end
      inv:printf('%d findings from %s; report: %s\n', #found, p.data, p.output)
      for _, f in ipairs(found) do inv:printf('  %-8s %s\n', f.severity:upper(), f.summary) end
      if data.use and data.use.verdict then inv:printf('bottleneck (USE): %s\n', data.use.verdict) end
      local cands = rc.candidates(data, found)
      if #cands > 0 then
        inv:print('hypotheses worth testing (scored against this data; perf_manual root-cause --hypothesis TEXT for ' ..
          'the evidence):')
        for _, t in ipairs(cands) do
          inv:printf('  %-12s %s\n', rc.score(t, data).verdict:upper(), t)
        end
      end
    end,
  },
}
