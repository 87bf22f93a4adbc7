-- bundle: one investigation in one file, for another machine or another
-- person. `show`, `report`, `present`, `diff` and `search --import` read
-- the file directly; it is a gzip'd tar (`tar tzf FILE` lists it).
local util = require('perf_manual.util')

return playbook {
  name = 'bundle',
  topic = 'reporting',
  summary = 'Pack a finished investigation (redacted, with checksums) into one file that other machines read',
  examples = [[
  perf_manual bundle 2026-01-20_slow-api -o slow-api.tar.gz
  perf_manual report slow-api.tar.gz --output report.html      (on another machine)
  ssh web1 perf_manual bundle slow-api -o - > web1.tar.gz      (collect from a host)
  perf_manual diff --before web1.tar.gz --after web2.tar.gz]],
  params = {
    id = param.investigation { 'investigation id (or a unique part of it, or its folder)', positional = true },
    output = param.path { 'the bundle file (- for stdout) [default: ID.tar.gz]', short = 'o', optional = true },
    partial = param.flag { 'bundle an investigation that did not finish (interrupted, or still marked running)' },
    store = param.path { 'investigation store (default ./investigations or $PERF_MANUAL_STORE)', optional = true },
    json = param.flag { 'print the manifest as JSON' },
  },

  run = function(inv, p)
    local bundle = require('perf_manual.bundle')
    local store = require('perf_manual.store')
    local out = p.output
    if not out then out = store.open(store.root(p.store), p.id).id .. '.tar.gz' end
    local manifest, size = bundle.write(p.id, out, { store = p.store, partial = p.partial })
    -- the bundle itself may be on stdout: the summary goes to stderr then
    local say = out == '-' and inv.err or inv.out
    if p.json then
      say:write(util.json_encode(manifest, true), '\n')
      return
    end
    local r, profiles = manifest.redaction, manifest.symbols.profiles
    local frames, unknown = 0, 0
    for _, pr in ipairs(profiles) do frames = frames + pr.frames; unknown = unknown + pr.unknown_frames end
    say:write(string.format('wrote %s: investigation %s (%s), %d files, %s\n', out == '-' and 'stdout' or out,
      manifest.id, manifest.status, #manifest.files, util.fmt_bytes(size)))
    say:write(string.format('  redacted: %d secret%s hidden in %d file%s\n', r.hidden, r.hidden == 1 and '' or 's',
      #r.files, #r.files == 1 and '' or 's'))
    if #profiles > 0 then
      say:write(string.format('  profiles: %d, %d distinct frames named at record time (%d without a symbol)\n',
        #profiles, frames, unknown))
    end
  end,
}
