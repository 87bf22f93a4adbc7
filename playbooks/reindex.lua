-- perf_manual reindex: rebuild the search index from the metadata files.
return playbook {
  name    = "reindex",
  topic    = "workflow",
  summary = "Rebuild the search index of the investigation store",
  params  = {
    store = param.path { "investigation store [default: $PERF_MANUAL_STORE or ./investigations]", optional = true },
  },

  run = function(inv, p)
    local store, util = require('perf_manual.store'), require('perf_manual.util')
    local root = store.root(p.store)
    if not store.is_dir(root) then util.user_error('no investigation store at ' .. root) end
    local sys = require('perf_manual.sys')
    local t0 = sys.now()
    local res = store.reindex(root)
    inv:printf('indexed %d investigations in %s (%s)\n', res.indexed, root, util.fmt_duration(sys.now() - t0))
    for _, u in ipairs(res.unreadable) do
      inv.err:write('perf_manual: partly indexed (unreadable metadata): ', u.err, '\n')
    end
    if #res.unreadable > 0 then inv.exit_status = 1 end
  end,
}
