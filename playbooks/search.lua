-- perf_manual search "<text>": past investigations that match, best first.
-- --import adds bundles (perf_manual bundle) from other machines to the store first.
return playbook {
  name    = "search",
  topic    = "workflow",
  summary = "Search past investigations (symptoms, findings, root causes, notes)",
  examples = '  perf_manual search "fsync latency"\n  perf_manual search --limit 3 --json "run queue"\n'
    .. '  perf_manual search --import web1.tar.gz --import web2.tar.gz "checkout slow"',
  params  = {
    text  = param.string  { "words to look for", positional = true, optional = true },
    limit = param.integer { "at most this many results", default = 10, min = 1, max = 100000 },
    store = param.path { "investigation store [default: $PERF_MANUAL_STORE or ./investigations]", optional = true },
    import = param.strings { "add this bundle file to the store (and its search index) first; repeatable",
      optional = true },
    json  = param.flag    { "print JSON" },
  },

  run = function(inv, p)
    local kb, store, util = require('perf_manual.kb'), require('perf_manual.store'), require('perf_manual.util')
    local root = store.root(p.store)
    local imports = p.import or {}
    if not p.text and #imports == 0 then util.user_error('search: missing <text> (or --import BUNDLE)') end
    for _, file in ipairs(imports) do
      local id, already = require('perf_manual.bundle').import(file, root)
      local say = p.json and inv.err or inv.out
      say:write(string.format('%s %s from %s\n', already and 'already in the store:' or 'imported', id,
        util.printable(file)))
    end
    if not p.text then return end
    if not store.is_dir(root) then util.user_error('no investigation store at ' .. root) end
    if not kb.fts_query(p.text) then
      util.user_error('search: nothing to search for in "' .. util.printable(p.text) .. '"')
    end
    local hits, why = kb.search(root, p.text, { limit = p.limit })
    if why and #hits == 0 then util.user_error('search: ' .. why .. ' (run `perf_manual reindex`)') end
    if p.json then
      inv:print(util.json_encode(util.array(hits), true))
      return
    end
    if #hits == 0 then
      inv:print('no investigation matches "' .. util.printable(p.text) .. '"') inv.exit_status = 1 return
    end
    local P = util.printable
    for i, h in ipairs(hits) do
      inv:printf('%2d. %-40s %-9s %s\n', i, P(h.id), P(h.status or ''), P(h.symptom or ''))
      inv:printf('    %s%s\n', P((h.snippet or ''):gsub('%s+', ' ')), h.verdict and ('  [bottleneck: ' .. P(h.verdict)
        .. ']') or '')
    end
  end,
}
