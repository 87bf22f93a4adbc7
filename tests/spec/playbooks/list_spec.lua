-- perf_manual list: the commands grouped by the topic each playbook declares.
local util = require('perf_manual.util')
local topics = require('perf_manual.topics')
local h = test_helpers

local function has(list, x)
  for _, v in ipairs(list or {}) do if v == x then return true end end
  return false
end

local function write(path, text)
  local f = assert(io.open(path, 'w'))
  f:write(text)
  f:close()
end

describe('list', function()
  local team
  setup(function()
    team = h.tmpdir()
    write(team .. '/billing-lag.lua', "return playbook { name = 'billing-lag', topic = 'billing', "
      .. "summary = 'ours',"
      .. " run = function() end }")
    write(team .. '/untopical.lua', "return playbook { name = 'untopical', summary = 'no topic', "
      .. "run = function() end }")
    write(team .. '/disk-quick.lua', "return playbook { name = 'disk-quick', topic = 'disk', summary = 'team disk',"
      .. " run = function() end }")
  end)
  teardown(function() h.rmrf(team) end)

  it('gives every built-in command a topic of the known list', function()
    local known = {}
    for _, t in ipairs(topics.order) do known[t[1]] = true end
    local out, err, st = h.pm('list --json')
    assert.equal(0, st, err)
    local groups = assert(util.json_decode(out))
    local seen = 0
    for _, g in ipairs(groups) do
      assert.is_true(known[g.topic], 'built-in command with topic ' .. tostring(g.topic) .. ': '
        .. table.concat((function()
          local n = {}
          for _, c in ipairs(g.commands) do n[#n + 1] = c.name end
          return n
        end)(), ', '))
      assert.equal(topics.heading(g.topic), g.heading)
      seen = seen + #g.commands
    end
    -- every playbook file is in exactly one group
    local files = util.split(h.sh("ls " .. h.root .. "/playbooks/*.lua | wc -l"), '\n')[1]
    assert.equal(tonumber(files), seen)
  end)

  it('prints each group under its heading, in the topic order, with names sorted', function()
    local out, err, st = h.pm('list')
    assert.equal(0, st, err)
    local lines = util.split(out, '\n')
    assert.equal(topics.heading('methods'), lines[1])
    local headings, current, names = {}, nil, {}
    for _, l in ipairs(lines) do
      if l ~= '' and not l:match('^  ') then
        headings[#headings + 1] = l
        current = l
        names[current] = {}
      elseif l:match('^  %S') then
        local n = names[current]
        n[#n + 1] = l:match('^  (%S+)')
      end
    end
    -- the headings come in the declared order
    local last = 0
    for _, hd in ipairs(headings) do
      local r
      for i, t in ipairs(topics.order) do if t[2] == hd then r = i end end
      assert.is_not_nil(r, hd)
      assert.is_true(r > last, hd .. ' out of order')
      last = r
    end
    for _, n in pairs(names) do
      local sorted = { unpack(n) }
      table.sort(sorted)
      assert.same(sorted, n)
    end
    assert.is_true(has(names['CPU and scheduling'], 'profile'))
    assert.is_true(has(names['Requests (RED)'], 'red-check'))
  end)

  it("puts a team's own topic after the known ones and a playbook without one last, under other", function()
    local out, err, st = h.pm('--playbooks ' .. team .. ' list')
    assert.equal(0, st, err)
    local disk = out:find('\nDisks and file systems\n', 1, true)
    local quick = out:find('  disk-quick ', 1, true)
    local billing = out:find('\nbilling\n  billing-lag ', 1, true)
    local other = out:find('\nother\n  untopical ', 1, true)
    local reporting = out:find('\nReports and sharing\n', 1, true)
    assert.is_truthy(disk and quick and billing and other and reporting, out)
    assert.is_true(disk < quick and quick < reporting)
    assert.is_true(reporting < billing and billing < other)
    local groups = assert(util.json_decode((h.pm('--playbooks ' .. team .. ' list --json'))))
    assert.equal('other', groups[#groups].topic)
    assert.equal('untopical', groups[#groups].commands[1].name)
    assert.equal('billing', groups[#groups - 1].topic)
  end)

  it('refuses a topic that is not a word', function()
    write(team .. '/bad.lua', "return playbook { name = 'bad', topic = 'two words', run = function() end }")
    local out, _, st = h.pm('--playbooks ' .. team .. ' list')
    os.remove(team .. '/bad.lua')
    assert.equal(0, st)
    assert.matches("bad +BROKEN: [^\n]*topic must be a word like 'disk'", out)
  end)
end)
