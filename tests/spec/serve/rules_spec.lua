-- The shipped Prometheus rules (docs/prometheus/perf_manual.rules.yml):
-- valid for promtool, and their verdicts right on the series of
-- tests/fixtures/prometheus/rules_test.yml (alert pending then firing, the
-- p99 Prometheus computes from our log2 buckets).
local h = test_helpers

local function promtool(args)
  if os.execute('command -v promtool >/dev/null 2>&1') ~= 0 then return nil end
  return { h.sh('cd ' .. h.root .. ' && promtool ' .. args) }
end

describe('prometheus rules', function()
  it('pass promtool check rules', function()
    local r = promtool('check rules docs/prometheus/perf_manual.rules.yml')
    if not r then pending('skipped: promtool is not installed') return end
    assert.equal(0, r[3], r[1] .. r[2])
    assert.truthy(r[1]:find('SUCCESS: 12 rules found', 1, true), r[1])
  end)

  it('pass promtool test rules on the fixture', function()
    local r = promtool('test rules tests/fixtures/prometheus/rules_test.yml')
    if not r then pending('skipped: promtool is not installed') return end
    assert.equal(0, r[3], r[1] .. r[2])
  end)

  it('name only metrics the built-in playbook serves', function()
    -- the expressions, not the group names
    local rules = h.sh("cat '" .. h.root .. "/docs/prometheus/perf_manual.rules.yml'"):gsub('%- name: [^\n]*', '')
    local pb = h.sh("cat '" .. h.root .. "/playbooks/metrics/default.lua' '" .. h.root
      .. "/lib/perf_manual/serve/init.lua'")
    local n = 0
    for name in rules:gmatch('[^:%w_](perf_manual_[%w_]+)') do
      local base = name:gsub('_bucket$', '')
      assert.truthy(pb:find("'" .. base .. "'", 1, true), name .. ' is not served')
      n = n + 1
    end
    assert.is_true(n >= 8)
  end)
end)
