-- What the runbook replay specs share: a run of a runbook on a recording
-- (tests/fixtures/runbooks/<command>/<name>/) and its findings by kind.
local h = test_helpers
local assert = require('luassert')

local M = {}

--- stdout of `perf_manual <command> --replay <fixture dir>/<name> <extra>`, asserting exit 0.
function M.run(command, name, extra)
  local out, err, st = h.pm(string.format('%s --replay %s/tests/fixtures/runbooks/%s/%s %s', command, h.root,
    command, name, extra or ''))
  assert.equal(0, st, err)
  return out, err
end

--- A --json document's findings by kind.
function M.by_kind(doc)
  local k = {}
  for _, f in ipairs(doc.findings) do k[f.kind] = f end
  return k
end

return M
