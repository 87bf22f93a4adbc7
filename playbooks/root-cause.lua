-- perf_manual root-cause: score a hypothesis against the evidence in an
-- investigation or a data dir, and record it there.
return playbook {
  name    = "root-cause",
  topic    = "workflow",
  summary = "Map a hypothesis onto the catalogue, score it against recorded evidence; print the match, verdict, " ..
    "evidence, root cause and fixes",
  examples = '  perf_manual root-cause --hypothesis "the disk is saturated" --evidence /tmp/data\n'
    .. '  perf_manual root-cause --hypothesis "lock contention on the queue" --evidence 2026-11-22_slow-api',
  params  = {
    hypothesis = param.string { "the hypothesis, in words" },
    evidence   = param.string { "data dir, or an investigation id in the store" },
    store = param.path { "investigation store [default: $PERF_MANUAL_STORE or ./investigations]", optional = true },
    json       = param.flag   { "print the verdict as JSON" },
  },

  step "score" {
    function(inv, p)
      local F, rc = require('perf_manual.analyzers.findings'), require('perf_manual.analyzers.root_cause')
      local store, util = require('perf_manual.store'), require('perf_manual.util')
      local handle, meta
      if not store.is_dir(p.evidence) then
        handle = store.open(store.root(p.store), p.evidence)          -- an id: unknown → close matches, exit 2
      elseif util.readfile(store.metadata_path(p.evidence)) then
        handle = store.open(store.root(p.store), p.evidence:find('/', 1, true) and p.evidence or ('./' .. p.evidence))
      end
      local dir = handle and handle.dir or p.evidence
      local data = F.prepare(store.results(dir))
      local res = rc.score(p.hypothesis, data)
      if handle then
        -- record it in the investigation: hypothesis, evidence, timeline
        handle:lock()
        local err
        meta, err = handle:load_metadata()
        if not meta then util.user_error('cannot record the hypothesis: ' .. err) end
        meta.hypotheses = meta.hypotheses or {}
        meta.timeline = meta.timeline or {}
        local id = 'H' .. (#meta.hypotheses + 1)
        local now = store.iso()
        meta.hypotheses[#meta.hypotheses + 1] = { id = id, text = p.hypothesis,
          status = (res.verdict == 'inconclusive' or res.verdict == 'unmatched') and 'open' or res.verdict,
          entry = res.entry,
          score = res.score, source = 'root-cause', created = now, evidence = res.evidence }
        meta.timeline[#meta.timeline + 1] = { t = now, kind = 'hypothesis', what = id .. ': ' .. p.hypothesis
          .. ' → ' .. res.verdict }
        if res.verdict == 'supported' and not res.negated then
          -- the entry's fixes, filled with the culprits measured, join the recommendations
          meta.recommendations = meta.recommendations or {}
          for _, r in ipairs(rc.recommendations(data, { { text = p.hypothesis, status = 'supported' } })) do
            local dup = false
            for _, old in ipairs(meta.recommendations) do if type(old) == 'table'
              and old.text == r.text then dup = true end end
            if not dup then meta.recommendations[#meta.recommendations + 1] = r end
          end
        end
        handle:save_metadata(meta)
        handle:release()
        res.recorded = handle.id .. ' ' .. id
      else
        local h = store.attach(dir)
        local prev = util.json_decode(store.read_analysis(dir, 'hypotheses.json') or '[]') or {}
        prev[#prev + 1] = { text = p.hypothesis, verdict = res.verdict, entry = res.entry, score = res.score,
          t = store.iso(),
          evidence = res.evidence }
        h:write_analysis_json('hypotheses.json', util.array(prev))
        res.recorded = store.analysis_path(dir, 'hypotheses.json')
      end
      if p.json then inv:print(util.json_encode(res, true)) return end
      inv:show(rc.render(res))
      inv:print('recorded in ' .. res.recorded)
    end,
  },
}
