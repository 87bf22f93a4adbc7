-- FlameGraph's own stackcollapse-perf.pl test data (13 perf script captures x
-- 6 option sets), read from ../shared at test time and compared exactly: the
-- expected files are sorted the way `perf_manual fold` prints. A plain clone
-- has no ../shared: the suite is then skipped with the reason, or fails when
-- PM_REQUIRE_CONFORMANCE=1 (CI).
local fold = require('perf_manual.fold')
local dirent = require('posix.dirent')

local base, missing = test_helpers.shared_if_present('conformance/flamegraph')
local OPTSETS = {
  pid = { pid = true }, tid = { tid = true }, kernel = { kernel = true },
  jit = { jit = true }, all = { all = true }, addrs = { addrs = true },
}

local function read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a'); f:close()
  return s
end

local inputs = {}
for _, f in ipairs(base and dirent.dir(base .. '/input') or {}) do
  local name = f:match('^(.+)%.txt$')
  if name then inputs[#inputs + 1] = name end
end
table.sort(inputs)

describe('fold conformance with stackcollapse-perf.pl', function()
  if not base then
    it('needs the FlameGraph test data', function()
      test_helpers.skip_unless_required('PM_REQUIRE_CONFORMANCE', missing)
    end)
    return
  end
  it('finds the 13 inputs', function()
    assert.equal(13, #inputs)
  end)
  for _, name in ipairs(inputs) do
    for _, opt in ipairs({ 'pid', 'tid', 'kernel', 'jit', 'all', 'addrs' }) do
      it(name .. ' --' .. opt, function()
        local text = read(base .. '/input/' .. name .. '.txt')
        local expected = read(base .. '/expected/' .. name .. '-collapsed-' .. opt .. '.txt')
        local p, stats = fold.from_perf_script(text, OPTSETS[opt])
        assert.truthy(p, stats)
        assert.equal(expected, p:folded())
        -- the same through the file reader the command uses
        local q = assert(fold.from_perf_script({ path = base .. '/input/' .. name .. '.txt' }, OPTSETS[opt]))
        assert.equal(expected, q:folded())
      end)
    end
  end
end)
