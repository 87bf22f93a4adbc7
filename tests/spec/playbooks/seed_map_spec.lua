-- docs/seed-002.md maps each of seed 002's twenty projects to a command: every
-- project has a row with a status, the counts line adds up, and every
-- command a row names is a playbook.
local util = require('perf_manual.util')
local h = test_helpers

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

  it('names only commands that exist, the merged runbooks among them', function()
    local named = {}
    for row in text:gmatch('\n| %d%d | [^\n]+') do
      local cmdcell = row:match('^\n| %d%d | [^|]+ | [%a ]+ | ([^|]*) |')
      for cmd in (cmdcell or ''):gmatch('`([%w-]+)[ `]') do
        assert.is_not_nil(util.readfile(h.root .. '/playbooks/' .. cmd .. '.lua'),
          cmd .. ' is named but is not a playbook')
        named[cmd] = true
      end
    end
    -- these came from other branches of issue 16; a row losing one would otherwise pass unnoticed
    for _, cmd in ipairs { 'fsync-audit', 'pagefaults', 'conn-storm', 'tcp-check', 'exec-monitor', 'top' } do
      assert.is_true(named[cmd] or false, cmd .. ' is not in the map')
    end
  end)
end)
