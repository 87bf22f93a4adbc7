-- perf_manual hypotheses <id>: the hypotheses of an investigation with
-- their status and the evidence linked to them.
return playbook {
  name    = "hypotheses",
  topic    = "workflow",
  summary = "List an investigation's hypotheses with status and evidence",
  params  = {
    id    = param.investigation { "investigation id (or a unique part of it)", positional = true },
    store = param.path { "investigation store [default: $PERF_MANUAL_STORE or ./investigations]", optional = true },
    json  = param.flag { "print JSON" },
  },

  run = function(inv, p)
    local store, util = require('perf_manual.store'), require('perf_manual.util')
    local h = store.open(store.root(p.store), p.id)
    -- a folder without metadata is not an investigation at all (an unreadable
    -- one still shows what could be read, exit 1)
    if not store.exists(h.dir .. "/" .. store.METADATA) then
      util.user_error(string.format('%s: %s is not an investigation (no %s)', 'hypotheses', util.printable(h.dir),
        store.METADATA))
    end
    local meta, err, partial = h:load_metadata()
    if not meta then
      inv.err:write('perf_manual: ', err, '\n')
      meta = partial or {}
      inv.exit_status = 1
    end
    local list = meta.hypotheses or {}
    if p.json then inv:print(util.json_encode(util.array(list), true)) return end
    if #list == 0 then inv:print(util.printable(h.id) .. ': no hypotheses recorded') return end
    local P = util.printable
    for _, x in ipairs(list) do
      inv:printf('%-4s %-11s %s\n', P(x.id or '?'), P(x.status or '?'), P(x.text or ''))
      for _, e in ipairs(x.evidence or {}) do
        inv:printf('       %-8s %s: %s\n', P(e.stance or '?'), P(e.artifact or '?'), P(e.note or ''))
      end
    end
  end,
}
