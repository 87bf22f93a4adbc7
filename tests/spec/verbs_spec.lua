-- The inv: verbs: the built-in ones are registered, a team adds (or
-- replaces) verbs and suites from the folders beside its playbooks.
local h = test_helpers
local verbs = require('perf_manual.verbs')

local function write(path, text)
  local f = assert(io.open(path, 'w'))
  f:write(text)
  f:close()
end

describe('perf_manual.verbs', function()
  it('finds every verb the built-in verb modules export, by name', function()
    for _, m in ipairs({ 'target', 'use_check', 'trace', 'profile', 'red_check', 'collect', 'quantify' }) do
      for name, fn in pairs(require('perf_manual.verbs.' .. m).verbs) do
        assert.equal(fn, verbs.get(name), m .. '.' .. name)
      end
    end
  end)

  it('registers the built-in measuring verbs', function()
    for _, name in ipairs({ 'use_check', 'trace', 'profile', 'red_check', 'collect', 'quantify', 'target' }) do
      assert.is_function(verbs.get(name), name)
    end
    local from = {}
    for _, v in ipairs(verbs.list()) do from[v.name] = v.from end
    assert.equal('built-in', from.use_check)
  end)

  it("runs a team's verb and suite from its playbook folder", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "/verbs' '" .. dir .. "/suites'"))
    write(dir .. '/verbs/double.lua', 'return function(inv, opts) return 2 * opts.n end\n')
    write(dir .. '/verbs/pair.lua', 'return { one = function() return 1 end, two = function() return 2 end }\n')
    write(dir .. '/suites/quick.lua', "return { summary = 'cpu only', collectors = { 'cpu' } }\n")
    write(dir .. '/team.lua', [[
return playbook { name = 'team', summary = 'uses team verbs',
  step 'go' { function(inv) inv:printf('%d %d %d\n', inv:double { n = 21 }, inv:one(), inv:two()) end } }
]])
    local out, err, st = h.pm('--playbooks ' .. dir .. ' team')
    assert.equal(0, st, err)
    assert.equal('42 1 2\n', out)
    local data = dir .. '/data'
    out, err, st = h.pm('--playbooks ' .. dir .. ' collect --suite quick --duration 1 --interval 0.4 --output ' .. data)
    assert.equal(0, st, err)
    assert.matches('collected suite quick into ', out)
    assert.matches('collector +cpu +raw_data/cpu%.jsonl', out)
    -- a broken verb file is a clear user error, not a traceback
    write(dir .. '/verbs/broken.lua', 'return 42\n')
    out, err, st = h.pm('--playbooks ' .. dir .. ' team')
    assert.equal('', out)
    assert.equal(2, st)
    assert.matches('^perf_manual: verb .*/verbs/broken%.lua: must return a function or a table of them\n$', err)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
