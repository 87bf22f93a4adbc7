-- docs/seed-002.md maps each of seed 002's twenty projects to a command: every
-- project has a row with a status, the counts line adds up, and every
-- command a covered row names is a playbook (the part-A runbooks and `top`
-- come from other branches of issue 16: until they are merged they are
-- named here, and the test says which are still missing).
local util = require('perf_manual.util')
local h = test_helpers

local ELSEWHERE = { ['fsync-audit'] = true, pagefaults = true, ['conn-storm'] = true, ['tcp-check'] = true,
  ['exec-monitor'] = true, top = true }

describe('docs/seed-002.md', function()
  local text = util.readfile(h.root .. '/docs/seed-002.md')

  it('has a row per project with a status, and counts them right', function()
    local count = { covered = 0, partly = 0, ['not covered'] = 0 }
    local seen = {}
    for num, status in text:gmatch('\n| (%d%d) | [^|]+ | ([%a ]+) |') do
      seen[#seen + 1] = tonumber(num)
      assert.is_not_nil(count[status], num .. ': ' .. status)
      count[status] = count[status] + 1
    end
    for i = 1, 20 do assert.equal(i, seen[i]) end
    assert.equal(20, #seen)
    assert.matches(string.format('In all: %d covered, %d partly %%([%%d, ]+%%), %d not covered', count.covered,
      count.partly, count['not covered']), text)
  end)

  it('names only commands that exist (or come from the other branches of issue 16)', function()
    local missing = {}
    for row in text:gmatch('\n| %d%d | [^\n]+') do
      local cmdcell = row:match('^\n| %d%d | [^|]+ | [%a ]+ | ([^|]*) |')
      for cmd in (cmdcell or ''):gmatch('`([%w-]+)[ `]') do
        if not util.readfile(h.root .. '/playbooks/' .. cmd .. '.lua') then
          assert.is_true(ELSEWHERE[cmd] or false, cmd .. ' is named but is not a playbook')
          missing[#missing + 1] = cmd
        end
      end
    end
    if #missing > 0 then print('seed-002 map: not merged yet: ' .. table.concat(missing, ', ')) end
  end)
end)
