-- perf_manual list-investigations: what the store holds, newest first.
return playbook {
  name    = "list-investigations",
  topic    = "workflow",
  summary = "List stored investigations, newest first",
  params  = {
    store = param.path { "investigation store [default: $PERF_MANUAL_STORE or ./investigations]", optional = true },
    limit = param.integer { "at most this many", default = 50, min = 1, max = 1000000 },
    json  = param.flag    { "print JSON" },
  },

  run = function(inv, p)
    local store, util = require('perf_manual.store'), require('perf_manual.util')
    local root = store.root(p.store)
    if not store.is_dir(root) then util.user_error('no investigation store at ' .. root) end
    local ids = store.list(root)
    local rows = util.array()
    for i = #ids, math.max(1, #ids - p.limit + 1), -1 do
      local h = store.open(root, ids[i])
      local meta, err, partial = h:load_metadata()
      meta = meta or partial or {}
      rows[#rows + 1] = { id = ids[i], status = meta.status or (err and 'unreadable') or '?',
        symptom = meta.symptom, verdict = meta.verdict, error = err }
    end
    if p.json then inv:print(util.json_encode(rows, true)) return end
    if #rows == 0 then inv:print('no investigations in ' .. root) return end
    inv:printf('%-40s %-11s %-8s %s\n', 'ID', 'STATUS', 'VERDICT', 'SYMPTOM')
    for _, r in ipairs(rows) do
      -- a symptom is typed text: its escape sequences are shown, not obeyed
      local P = util.printable
      inv:printf('%-40s %-11s %-8s %s\n', P(r.id), P(r.status), P(r.verdict or '-'), P(r.symptom or ''))
    end
  end,
}
