-- Inputs that used to fail only after the measurement ran (issue 17):
-- each is refused at once, exit 2, one line, before anything is measured
-- or any investigation folder is made (a 30 s measurement would show as
-- a long run).
local h = test_helpers
local store = require('perf_manual.store')
local sys = require('perf_manual._c.sys')

describe('inputs checked before measuring', function()
  local dir, file, root
  before_each(function()
    dir = os.tmpname(); os.remove(dir)
    assert(store.mkdir_p(dir))
    file = dir .. '/a-file'
    local f = assert(io.open(file, 'w')); f:write('x'); f:close()
    root = dir .. '/store'
  end)
  after_each(function() os.execute('rm -rf ' .. dir) end)

  local function refused(args, pattern)
    local t0 = sys.now()
    local out, err, st = h.pm(args)
    local took = sys.now() - t0
    assert.equal(2, st, args .. '\n' .. out .. err)
    assert.matches('^perf_manual: [^\n]*' .. pattern .. '[^\n]*\n$', err)
    assert.is_true(took < 10, args .. ' took ' .. took .. ' s: it measured first')
  end

  it('profile --output, trace/red-check --save (directories), use-check --save (a file)', function()
    refused('profile --duration 30 --output ' .. file, '%-%-output [^ ]+ is a file, not a directory')
    refused('trace --events syscalls --duration 30 --save ' .. file, '%-%-save [^ ]+ is a file, not a directory')
    refused('trace --events syscalls --duration 30 --save ' .. file .. '/sub', 'a%-file is a file, not a directory')
    refused('red-check --endpoint http://127.0.0.1:9/ --duration 30 --save ' .. file,
      '%-%-save [^ ]+ is a file, not a directory')
    refused('use-check --duration 30 --save ' .. dir, '%-%-save [^ ]+ is a directory, not a file')
  end)

  it('investigate --workload, --baseline and --endpoint, before the folder is made', function()
    local w = '--workload "' .. h.workload('sleeper') .. ' 30" --symptom x --batch --duration 30 --store ' .. root
    refused('investigate ' .. w .. ' --baseline nosuch', "%-%-baseline: no investigation 'nosuch'")
    refused('investigate ' .. w .. ' --endpoint notaurl', "%-%-endpoint: malformed URL 'notaurl'")
    refused('investigate --workload "/nonexistent/prog x" --symptom x --batch --store ' .. root,
      "%-%-workload: cannot run '/nonexistent/prog'")
    assert.same({}, store.list(root))
  end)
end)
