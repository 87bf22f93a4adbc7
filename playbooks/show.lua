-- perf_manual show <id>: one investigation at a glance. Reads metadata.yaml
-- and the sizes of the data files, never the raw data itself.
return playbook {
  name    = "show",
  topic    = "workflow",
  summary = "Show a stored investigation (metadata, findings, hypotheses, files)",
  params  = {
    id       = param.investigation { "investigation id (or a unique part of it), or a bundle file", positional = true },
    store    = param.path { "investigation store [default: $PERF_MANUAL_STORE or ./investigations]", optional = true },
    timeline = param.flag { "print the whole timeline" },
    json     = param.flag { "print the metadata as JSON" },
  },

  run = function(inv, p)
    local store, util = require('perf_manual.store'), require('perf_manual.util')
    local h = require('perf_manual.bundle').resolve(p.id, p.store)
    -- a folder without metadata is not an investigation at all (an unreadable
    -- one still shows what could be read, exit 1)
    if not store.exists(h.dir .. "/" .. store.METADATA) then
      util.user_error(string.format('%s: %s is not an investigation (no %s)', 'show', util.printable(h.dir),
        store.METADATA))
    end
    local meta, err, partial = h:load_metadata()
    if not meta then
      -- say what is wrong, then print whatever could be read
      inv.err:write('perf_manual: ', err, '\n')
      meta = partial or {}
      inv.exit_status = 1
    end
    if p.json then inv:print(util.json_encode(meta, true)) return end
    -- what people typed (symptom, answers, notes) can hold escape sequences:
    -- shown escaped, never obeyed by the terminal
    local P = util.printable
    local function field(label, v)
      if v ~= nil and v ~= '' then inv:printf('%-13s %s\n', label .. ':', P(v)) end
    end
    field('Investigation', h.id)
    if h.bundle then
      local b = h.bundle.manifest
      field('Bundle', h.bundle.path .. string.format(' (made %s on %s; %d secrets redacted; checksums verified)',
        tostring(b.bundled), tostring(b.bundled_on), tonumber(b.redaction and b.redaction.hidden) or 0))
    else
      field('Folder', h.dir)
    end
    field('Symptom', meta.symptom)
    field('Status', meta.status)
    field('Playbook', meta.playbook)
    field('Created', meta.created and (meta.created .. (meta.created_by and (' by ' .. meta.created_by) or '')))
    field('Host', meta.host and (meta.host .. (meta.kernel and (', kernel ' .. meta.kernel) or '')
      .. (meta.tool_version and (', perf_manual ' .. meta.tool_version) or '')))
    field('Bottleneck', meta.verdict)
    field('Root cause', meta.root_cause)
    if type(meta.checklist) == 'table' and #meta.checklist > 0 then
      inv:print('\nChecklist:')
      for _, q in ipairs(meta.checklist) do
        inv:printf('  %-50s %s%s\n', P(q.question), P(q.answer),
          q.answered == false and '  (not answered)' or '')
      end
    end
    if type(meta.steps) == 'table' and #meta.steps > 0 then
      inv:print('\nSteps:')
      for i, s in ipairs(meta.steps) do
        inv:printf('  %d. %-28s %-11s %s\n', i, P(s.name), P(s.status), P(s.reason or ''))
      end
    end
    if type(meta.findings) == 'table' and #meta.findings > 0 then
      inv:print('\nFindings:')
      for _, f in ipairs(meta.findings) do
        inv:printf('  %-8s %s\n', P(f.severity):upper(), P(f.summary))
      end
    end
    if type(meta.hypotheses) == 'table' and #meta.hypotheses > 0 then
      inv:print('\nHypotheses:')
      for _, x in ipairs(meta.hypotheses) do
        inv:printf('  %-4s %-10s %s (%d evidence)\n', P(x.id), P(x.status), P(x.text),
          #(x.evidence or {}))
      end
    end
    if type(meta.timeline) == 'table' and #meta.timeline > 0 then
      local tl = meta.timeline
      local from = p.timeline and 1 or math.max(1, #tl - 9)
      inv:printf('\nTimeline%s:\n', from > 1 and string.format(' (last 10 of %d; --timeline for all)', #tl) or '')
      for i = from, #tl do
        inv:printf('  %s  %-12s %s\n', P(tl[i].t), P(tl[i].kind), P(tl[i].what or ''))
      end
    end
    local files, total = h:files(), 0
    for _, f in ipairs(files) do total = total + f.bytes end
    inv:printf('\nFiles: %d (%s)\n', #files, util.fmt_bytes(total))
    for i, f in ipairs(files) do
      if i > 20 then inv:printf('  ... and %d more\n', #files - 20) break end
      inv:printf('  %-48s %8s\n', P(f.path), util.fmt_bytes(f.bytes))
    end
    if h:exists(store.REPORT) then
      inv:print('Report:       ' .. (h.bundle and (store.REPORT .. ' in the bundle (`perf_manual report '
        .. P(h.bundle.path) .. '` writes it afresh)') or store.report_path(h.dir)))
    end
  end,
}
