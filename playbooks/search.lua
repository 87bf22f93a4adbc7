-- perf_manual search "<text>": past investigations that match, best first.
return playbook {
  name    = "search",
  summary = "Search past investigations (symptoms, findings, root causes, notes)",
  examples = '  perf_manual search "fsync latency"\n  perf_manual search --limit 3 --json "run queue"',
  params  = {
    text  = param.string  { "words to look for", positional = true },
    limit = param.integer { "at most this many results", default = 10, min = 1, max = 100000 },
    store = param.path { "investigation store [default: $PERF_MANUAL_STORE or ./investigations]", optional = true },
    json  = param.flag    { "print JSON" },
  },

  run = function(inv, p)
    local kb, store, util = require('perf_manual.kb'), require('perf_manual.store'), require('perf_manual.util')
    local root = store.root(p.store)
    if not store.is_dir(root) then util.user_error('no investigation store at ' .. root) end
    if not kb.fts_query(p.text) then util.user_error('search: nothing to search for in "' .. util.printable(p.text) .. '"') end
    local hits, why = kb.search(root, p.text, { limit = p.limit })
    if why and #hits == 0 then util.user_error('search: ' .. why .. ' (run `perf_manual reindex`)') end
    if p.json then
      inv:print(util.json_encode(util.array(hits), true))
      return
    end
    if #hits == 0 then inv:print('no investigation matches "' .. util.printable(p.text) .. '"') inv.exit_status = 1 return end
    local P = util.printable
    for i, h in ipairs(hits) do
      inv:printf('%2d. %-40s %-9s %s\n', i, P(h.id), P(h.status or ''), P(h.symptom or ''))
      inv:printf('    %s%s\n', P((h.snippet or ''):gsub('%s+', ' ')), h.verdict and ('  [bottleneck: ' .. P(h.verdict)
        .. ']') or '')
    end
  end,
}
