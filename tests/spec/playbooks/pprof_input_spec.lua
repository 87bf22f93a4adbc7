-- fold and flamegraph reading pprof profiles: one Go's runtime/pprof wrote
-- (tests/fixtures/pprof/go_cpu.pprof, from burn.go there) and one we write.
local h = test_helpers
local pprof = require('perf_manual.report.pprof')
local profilers = require('perf_manual.profilers')

local GO = h.root .. '/tests/fixtures/pprof/go_cpu.pprof'

local function parse(folded)
  local t, total = {}, 0
  for line in folded:gmatch('[^\n]+') do
    local stack, c = line:match('^(.*) (%d+)$')
    assert.truthy(stack, line)
    t[stack] = tonumber(c); total = total + tonumber(c)
  end
  return t, total
end

describe('fold and flamegraph on pprof input', function()
  it('folds Go\'s CPU profile by CPU time, or by samples when asked', function()
    local out, err, st = h.pm('fold ' .. GO)
    assert.equal(0, st, err)
    assert.equal('', err)
    local cpu, cpu_total = parse(out)
    local beta = cpu['runtime.main;main.main;main.alpha;main.beta;main.spin']
    assert.truthy(beta)
    -- the call tree burn.go spends its time in: alpha/beta 60%, gamma 30%, delta 10%
    assert.near(0.6, beta / cpu_total, 0.1)
    out, err, st = h.pm('fold --sample-type samples ' .. GO)
    assert.equal(0, st, err)
    local samples, n = parse(out)
    assert.equal(cpu_total, n * 1e7)  -- 100 Hz: 10 ms a sample
    for stack, c in pairs(samples) do assert.equal(c * 1e7, cpu[stack]) end
  end)

  it('reads pprof from stdin when told, and refuses a bad --sample-type in one line', function()
    local by_file = h.pm('fold ' .. GO)
    local out, err, st = h.pm('fold --format pprof < ' .. GO)
    assert.equal(0, st, err)
    assert.equal(by_file, out)
    out, err, st = h.pm('fold --sample-type wall ' .. GO)
    assert.equal(2, st)
    assert.equal('', out)
    assert.equal("perf_manual: fold: " .. GO .. ": no sample type 'wall' (there are: samples, cpu)\n", err)
    local text = os.tmpname()
    local f = io.open(text, 'w') f:write('a;b 3\n') f:close()
    out, err, st = h.pm('fold --sample-type cpu ' .. text)
    os.remove(text)
    assert.equal(2, st)
    assert.equal('', out)
    assert.equal('perf_manual: fold: --sample-type is for pprof input; ' .. text .. ' is text\n', err)
  end)

  it('says a cut-short profile is cut short', function()
    local cut = os.tmpname()
    local src = io.open(GO, 'rb')
    local bytes = src:read('*a')
    src:close()
    local f = io.open(cut, 'wb') f:write(bytes:sub(1, #bytes - 100)) f:close()
    local _, err, st = h.pm('fold ' .. cut)
    os.remove(cut)
    assert.equal(2, st)
    assert.equal('perf_manual: fold: ' .. cut .. ': gunzip: the data is cut short\n', err)
  end)

  it('folds a profile we wrote back into the same stacks', function()
    local p = profilers.new { kind = 'oncpu', source = 'bpf', unit = 'samples', freq = 49, duration = 1,
      stacks = {
        { frames = { 'app', 'main', 'work' }, count = 12, pid = 5, addrs = { nil, 0x1000, 0x1100 } },
        { frames = { 'app', 'main', 'sys_read_[k]' }, count = 3, pid = 5 },
      } }
    local path = os.tmpname()
    assert(pprof.write(path, p))
    local out, err, st = h.pm('fold ' .. path)
    os.remove(path)
    assert.equal(0, st, err)
    assert.equal(profilers.folded(p), out)
  end)

  it('draws Go\'s profile as a flame graph in nanoseconds', function()
    local out, err, st = h.pm('flamegraph ' .. GO)
    assert.equal(0, st, err)
    assert.matches('^<%?xml', out)
    assert.matches('data%-unit="nanoseconds"', out)
    assert.matches('<title>main%.beta %(', out)
    out, err, st = h.pm('flamegraph --sample-type samples ' .. GO)
    assert.equal(0, st, err)
    assert.matches('data%-unit="samples"', out)
  end)
end)

describe('profile --format pprof (replay)', function()
  local DIR = h.root .. '/tests/fixtures/replay/profile'

  it('writes profile.pb.gz beside the others, or one FILE.pb.gz, that fold reads back', function()
    local dir = h.tmpdir()
    local out, err, st = h.pm('profile --replay ' .. DIR .. ' --output ' .. dir .. '/p --format pprof,folded')
    assert.equal(0, st, err)
    assert.matches('wrote ' .. dir .. '/p/profile.pb.gz', out, 1, true)
    local folded = h.fixture('replay/profile/profile.folded')
    local back
    back, err, st = h.pm('fold ' .. dir .. '/p/profile.pb.gz')
    assert.equal(0, st, err)
    assert.equal(folded, back)
    out, err, st = h.pm('profile --replay ' .. DIR .. ' --output ' .. dir .. '/one.pb.gz')
    assert.equal(0, st, err)
    assert.matches('wrote ' .. dir .. '/one.pb.gz', out, 1, true)
    assert.equal(folded, (h.pm('fold ' .. dir .. '/one.pb.gz')))
    out, err, st = h.pm('profile --replay ' .. DIR .. ' --format svg --output ' .. dir .. '/two.pb.gz')
    assert.equal(2, st)
    assert.equal('', out)
    assert.equal('perf_manual: profile: --output ' .. dir .. '/two.pb.gz is one pprof file: --format pprof alone\n',
      err)
    h.rmrf(dir)
  end)
end)

describe('diff on pprof input', function()
  it('gives the same hotspot shift from two pprof files as from their folded stacks', function()
    local rebuild = require('perf_manual.verbs.profile').rebuild
    local util = require('perf_manual.util')
    local FX = h.root .. '/tests/fixtures/report'
    local dir = h.tmpdir()
    for _, side in ipairs({ 'before', 'after' }) do
      local p = rebuild({ kind = 'oncpu', source = 'bpf', unit = 'samples', freq = 99, duration_s = 1 },
        assert(util.readfile(FX .. '/' .. side .. '/profile-cpu.folded')))
      assert(pprof.write(dir .. '/' .. side .. '.pb.gz', p))
    end
    local _, err, st = h.pm(string.format("diff --before '%s/before/profile-cpu.folded' --after "
      .. "'%s/after/profile-cpu.folded' --output '%s/folded.md'", FX, FX, dir))
    assert.equal(0, st, err)
    _, err, st = h.pm(string.format("diff --before '%s/before.pb.gz' --after '%s/after.pb.gz' --output '%s/pprof.md'",
      dir, dir, dir))
    assert.equal(0, st, err)
    -- the same report but for the names of the inputs and of the flame graph beside it
    local function body(name)
      return (assert(util.readfile(dir .. '/' .. name .. '.md')):gsub('^[^\n]*\n', '')
        :gsub('%(differential flame graph: [^)]*%)', '(…)'))
    end
    assert.matches('| spin |', body('pprof'), 1, true)
    assert.equal(body('folded'), body('pprof'))
    h.rmrf(dir)
  end)
end)
