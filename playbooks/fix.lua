-- fix: record the fix of an investigation and validate it. With --validate
-- the investigation's own measurements run again against the same target
-- (its quantify step; its RED check with the same endpoint and load), into
-- after/ inside the investigation; with --after an existing data dir or
-- another investigation is "after". The symptom's primary metric decides
-- the verdict: fixed, not fixed, worse or inconclusive (lib/perf_manual/validate.lua,
-- analyzers/validate.lua; the statistics are the diff's).
return playbook {
  name = 'fix',
  topic = 'comparison',
  summary = 'Record the fix of an investigation and validate it (before/after, with significance tests)',
  examples = [[
  perf_manual fix 2026-11-22_slow-api "cache the session lookup"
  perf_manual fix 2026-11-22_slow-api "cache the session lookup" --validate
  perf_manual fix 2026-11-22_slow-api --validate --target api.service   (the fixed service, restarted)
  perf_manual fix --investigation 2026-11-22_slow-api --text "pool size 32" --after runs/after --json
  perf_manual investigate --resume 2026-11-22_slow-api --fix "cache the session lookup"   (record only)]],
  params = {
    id = param.investigation { 'the investigation (id or a unique part of it)', positional = true, optional = true },
    fix_text = param.string { 'what was changed, in words', positional = true, optional = true },
    investigation = param.investigation { 'same as the first argument', optional = true },
    text = param.string { 'same as the second argument', optional = true },
    validate = param.flag { "measure again as the investigation did (same target, endpoint and load) into its "
      .. "after/ dir, and judge before against after" },
    after = param.string { 'judge against this data dir or investigation instead of measuring', optional = true,
      conflicts = { 'validate' } },
    target = param.string { "with --validate: measure this target instead of the recorded workload (a restarted "
      .. "service's new pid or name)", optional = true },
    json = param.flag { 'print the fix and the validation as JSON' },
    seed = param.integer { 'bootstrap seed (same seed, same intervals)', default = 1 },
    iterations = param.integer { 'bootstrap resamples', default = 2000, min = 100, max = 100000 },
    store = param.path { 'investigation store [default: $PERF_MANUAL_STORE or ./investigations]', optional = true },
  },

  run = function(inv, p)
    local util, store = require('perf_manual.util'), require('perf_manual.store')
    local fixval = require('perf_manual.validate')
    local vz = require('perf_manual.analyzers.validate')
    local id = p.id or p.investigation
    if p.id and p.investigation and p.id ~= p.investigation then
      util.user_error('fix: two investigations given (' .. p.id .. ' and --investigation ' .. p.investigation .. ')')
    end
    if not id then util.user_error('fix: name the investigation: perf_manual fix ID "what was changed"') end
    local text = p.fix_text or p.text
    if p.fix_text and p.text and p.fix_text ~= p.text then util.user_error('fix: give the fix text once') end
    if p.target and not p.validate then util.user_error('fix: --target goes with --validate') end
    local root = store.root(p.store)
    local handle = store.open(root, id)
    local meta, err = handle:load_metadata()
    if not meta then util.user_error('fix: ' .. tostring(err)) end
    if text then
      meta.fix = fixval.record_fix(handle, text)
    elseif not (p.validate or p.after) then
      util.user_error('fix: say what was changed: perf_manual fix ' .. handle.id .. ' "the fix"')
    elseif type(meta.fix) ~= 'table' then
      util.user_error('fix: ' .. handle.id .. ' has no fix recorded yet: perf_manual fix ' .. handle.id
        .. ' "the fix" ' .. (p.validate and '--validate' or '--after ' .. p.after))
    end
    local out = { investigation = handle.id, fix = meta.fix }
    if p.validate or p.after then
      local after_ds, after_name
      if p.after then
        after_ds, after_name = fixval.open_after(p.after, root)
      else
        local dir, rel = fixval.measure_after(inv, handle, meta, { target = p.target })
        after_ds, after_name = require('perf_manual.report').load(dir), rel
      end
      local stop = require('perf_manual.sys').stop_requested
      out.validation = fixval.judge(handle, meta, { after_ds = after_ds, after = after_name, seed = p.seed,
        iterations = p.iterations, stop = stop })
      if stop() then util.user_error('fix: stopped (Ctrl-C) during the bootstrap: the verdict may be partial', 130) end
    end
    if p.json then
      inv:json(out)
      return
    end
    inv:printf('%s %s: %s\n', text and 'Fix recorded in' or 'Fix of', handle.id, util.printable(meta.fix.text))
    if out.validation then
      inv:print(vz.render(out.validation))
      local after = out.validation.after
      inv:printf('after: %s; the diff of every metric: %s\n', p.after and after or (handle.dir .. '/' .. after),
        store.analysis_path(handle.dir, 'fix-validation.json'))
    else
      inv:printf('validate it with: perf_manual fix %s --validate   (or --after DIR)\n', handle.id)
    end
  end,
}
