-- Running use-check from the e2e specs: the real CLI with --json, a row by
-- resource, and the table in words for assertion messages.
local util = require('perf_manual.util')

local U = {}

--- Runs use-check on target for duration (s); returns the decoded document.
function U.check(target, duration, extra)
  local out, err, st = test_helpers.pm(string.format('use-check --target %s --duration %s --interval 1 --json %s',
    target, duration, extra or ''))
  -- busted's assert lives in the specs' environment, not in this module's
  if st ~= 0 then error('use-check failed (exit ' .. tostring(st) .. '): ' .. err, 2) end
  local doc, jerr = util.json_decode(out)
  if not doc then error('use-check printed no JSON: ' .. tostring(jerr) .. '\n' .. out, 2) end
  return doc
end

function U.row(doc, resource)
  for _, r in ipairs(doc.rows) do
    if r.resource == resource then return r end
  end
end

function U.explain(doc)
  local lines = { 'verdict: ' .. doc.verdict.text }
  for _, r in ipairs(doc.rows) do
    lines[#lines + 1] = string.format('  %s %s | %s | %s', r.name, r.status, r.utilization.text, r.saturation.text)
  end
  return table.concat(lines, '\n')
end

return U
