local profilers = require('perf_manual.profilers')
local writer = require('perf_manual.verbs.profile')

-- A real 3 s system-wide capture (perf_manual profile --all while calltree
-- ran and exited): user, kernel, unnamed and one 127-frame stack.
local FOLDED = test_helpers.fixture('profile/system_3s.folded')

local function load(text, extra, unset)
  local stacks = {}
  for line in text:gmatch('[^\n]+') do
    local stack, n = line:match('^(.*) (%d+)$')
    local frames = {}
    for f in (stack .. ';'):gmatch('(.-);') do frames[#frames + 1] = f end
    stacks[#stacks + 1] = { frames = frames, count = tonumber(n), truncated = #frames - 1 >= 127 }
  end
  local p = { kind = 'oncpu', source = 'bpf', unit = 'samples', freq = 99, duration = 3,
              stacks = stacks, lost_samples = 0, lost_stacks = 0 }
  for k, v in pairs(extra or {}) do p[k] = v end
  for _, k in ipairs(unset or {}) do p[k] = nil end
  return profilers.new(p)
end

local function files_seen(dir)
  local out = {}
  for name in io.popen('ls ' .. dir):lines() do out[#out + 1] = name end
  return out
end

local function tmpdir()
  local d = os.tmpname(); os.remove(d)
  return d
end

describe('perf_manual.profilers', function()
  it('totals the samples and writes the same folded text back', function()
    local p = load(FOLDED)
    assert.equal(423, p.total)
    assert.equal(FOLDED, profilers.folded(p))
  end)

  it('measures stack quality from the frames', function()
    local p = load(FOLDED, { binaries = {
      { name = 'calltree', frame_pointers = true }, { name = 'libc.so.6', frame_pointers = false },
      { name = 'bash', frame_pointers = false }, { name = 'libfoo.so', frame_pointers = nil } } })
    local q = p.quality
    assert.equal(423, q.samples)
    assert.equal(0, q.lost_samples)
    -- computed independently: stacks holding an unnamed frame, and the
    -- one that reached the 127-frame limit
    local unknown, truncated = 0, 0
    for line in FOLDED:gmatch('[^\n]+') do
      local stack, n = line:match('^(.*) (%d+)$')
      local rest = stack:gsub('^[^;]*', '') .. ';'
      for f in rest:gmatch(';([^;]*)') do
        if f:match('^%[.*%]$') and f ~= '[vdso]' then unknown = unknown + tonumber(n) break end
      end
      if select(2, stack:gsub(';', '')) >= 127 then truncated = truncated + tonumber(n) end
    end
    assert.is_true(truncated > 0)
    assert.near(unknown / 423, q.unknown_share, 1e-9)
    assert.near(truncated / 423, q.truncated_share, 1e-9)
    assert.same({ 'bash', 'libc.so.6' }, q.without_frame_pointers)
    local text = table.concat(require('perf_manual.report.profile').quality_lines(p), '\n')
    assert.matches('samples 423, lost 0', text)
    assert.matches('without frame pointers.*bash, libc.so.6', text)
  end)

  it('counts a stack walked from CFI to the outermost frame as whole, even with an unnamed root', function()
    local function short(end_reason)
      return profilers.quality { stacks = {
        { frames = { 'xz', '[xz]', '__libc_start_main', 'lzma_code' }, count = 3,
          unwind = end_reason and { end_reason = end_reason } or nil },
        { frames = { 'xz', '_start', 'main' }, count = 1 } } }.short_user_share
    end
    -- a stripped program's _start has no name: only the walker knows the stack ended there
    assert.equal(0, short('root'))
    assert.equal(0.75, short('no CFI'))
    assert.equal(0.75, short(nil))
  end)

  it('tells unnamed frames from named ones', function()
    for name, want in pairs({ ['[unknown]'] = true, ['[libc.so.6]'] = true, ['[missing user stack]'] = true,
                              ['[vdso]'] = false, spin = false, ['schedule_[k]'] = false, ['fn_[j]'] = false }) do
      assert.equal(want, profilers.is_unknown(name), name)
    end
  end)

  it('ranks functions by self and inclusive share', function()
    local p = load(FOLDED)
    local top = profilers.top(p, 50)
    local incl, self = {}, {}
    for _, t in ipairs(top.inclusive) do incl[t.name] = t end
    for _, t in ipairs(top.self) do self[t.name] = t end
    -- calltree ran 1 s of the 3: main -> alpha -> beta -> spin and gamma_
    assert.equal(60, incl.alpha.count)
    assert.equal(60, incl.beta.count)
    assert.equal(25, incl.gamma_.count)
    assert.equal(99, incl.main.count)
    assert.is_nil(self.alpha)
    assert.is_true(self.spin.count >= 99)
    assert.near(60 / 423, profilers.inclusive_share(p, '^alpha$'), 1e-9)
    for i = 2, #top.inclusive do assert.is_true(top.inclusive[i - 1].count >= top.inclusive[i].count) end
  end)

  it('makes frame names safe for the folded format', function()
    assert.equal('a:b:c', profilers.clean('a;b\nc'))
  end)

  it('writes folded, SVG and JSON files; an empty profile gives a valid empty SVG', function()
    local dir = tmpdir()
    local p = load(FOLDED)
    p.target = 'system'
    local svg_at
    local files = assert(writer.write(p, dir, { 'folded', 'svg' },
      { svg_written = function() svg_at = #files_seen(dir) end }))
    -- the flame graph is written first
    assert.same({ dir .. '/profile.svg', dir .. '/profile.folded', dir .. '/profile.json' }, files)
    assert.equal(1, svg_at)
    local util = require('perf_manual.util')
    assert.equal(FOLDED, util.readfile(dir .. '/profile.folded'))
    local svg = util.readfile(dir .. '/profile.svg')
    assert.matches('^<%?xml', svg)
    assert.matches('</svg>%s*$', svg)
    assert.matches('>alpha', svg)
    -- speedscope: one sample per unique stack, weighted by its count
    assert(writer.write(p, dir, { 'speedscope' }))
    local sp = assert(util.json_decode(util.readfile(dir .. '/profile.speedscope.json')))
    local weights = 0
    for _, w in ipairs(sp.profiles[1].weights) do weights = weights + w end
    assert.equal(423, weights)
    assert.equal('none', sp.profiles[1].unit)
    local j = util.json_decode(util.readfile(dir .. '/profile.json'))
    assert.equal(423, j.total)
    assert.equal('bpf', j.source)

    local empty = profilers.new { kind = 'oncpu', source = 'bpf', unit = 'samples', duration = 1, stacks = {},
                                  lost_samples = 0, target = 'pid 1 (init)' }
    assert(writer.write(empty, dir, { 'svg', 'folded' }))
    svg = util.readfile(dir .. '/profile.svg')
    assert.matches('^<%?xml', svg)
    assert.matches('</svg>%s*$', svg)
    assert.equal('', util.readfile(dir .. '/profile.folded'))
    assert.matches('no samples', require('perf_manual.report.profile').render(empty, { top = profilers.top(empty) }))
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it('says in the summary when perf was used instead of BPF and what was not measured', function()
    local p = load(FOLDED, { source = 'perf', fallback_why = 'BPF is not available: no CAP_BPF',
                             lost_why = 'perf report --stats failed' }, { 'lost_samples', 'lost_stacks' })
    local text = require('perf_manual.report.profile').render(p, { top = profilers.top(p, 10) })
    assert.matches('via perf record %(fallback: BPF is not available: no CAP_BPF%)', text)
    assert.matches('lost not measured %(perf report %-%-stats failed%)', text)
    assert.matches('frame pointer check: not measured', text)
  end)

  it('refuses to write into a path that is a file', function()
    local f = os.tmpname()
    local ok, err = writer.write(load(FOLDED), f, { 'folded' })
    os.remove(f)
    assert.is_nil(ok)
    assert.matches('is not a directory', err)
  end)
end)
