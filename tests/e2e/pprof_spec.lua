-- pprof, end to end, with Debian's `go tool pprof` as the independent reader:
--  * `profile --format pprof` on calltree (a known call tree, frame pointers
--    on): go tool pprof -top lists the functions of our own summary with the
--    same flat and cumulative shares (within 0.1 point), -traces the same
--    stacks as our folded file, -raw the workload's build-id as readelf reads it;
--  * `profile --off-cpu --format pprof` likewise, in off_cpu/nanoseconds;
--  * a profile Go's runtime/pprof wrote (tests/fixtures/pprof/burn.go, built
--    here with go build) read by our `fold`: the same stacks as -traces, the
--    same shares as -top.
local util = require('perf_manual.util')
local h = test_helpers

local function have_go()
  local _, _, st = h.sh('go version')
  if st == 0 then return true end
  h.skip_unless_required('PM_REQUIRE_BPF', 'go is not installed (golang-go; make deps installs it)')
  return false
end

-- `go` with its caches in a temporary home: nothing outside it is written
local function go(dir, args)
  return h.sh(string.format("cd '%s' && HOME='%s' GOCACHE='%s/cache' GOPATH='%s/gopath' GOTOOLCHAIN=local GOFLAGS= "
    .. 'go %s', dir, dir, dir, dir, args))
end

-- `go tool pprof -top` rows: { [name] = {flat = %, cum = %} }
local function parse_top(text)
  local rows, n = {}, 0
  for line in text:gmatch('[^\n]+') do
    local flat, cum, name = line:match('^%s*%S+%s+([%d.]+)%%%s+[%d.]+%%%s+%S+%s+([%d.]+)%%%s+(.+)$')
    if flat then
      rows[name] = { flat = tonumber(flat), cum = tonumber(cum) }
      n = n + 1
    end
  end
  return rows, n
end

-- `go tool pprof -traces` (samples): { ["root;…;leaf"] = count }, merged
local function parse_traces(text)
  local out, frames, value = {}, nil, nil
  local function flush()
    if frames and #frames > 0 then
      local rev = {}
      for i = #frames, 1, -1 do rev[#rev + 1] = frames[i] end
      local k = table.concat(rev, ';')
      out[k] = (out[k] or 0) + value
    end
    frames = nil
  end
  for line in text:gmatch('[^\n]+') do
    if line:match('^%-+%+%-+$') then
      flush()
    else
      local v, f = line:match('^%s*(%d+)%s%s%s(%S.*)$')
      if v then
        frames, value = { (f:gsub(' %(inline%)$', '')) }, tonumber(v)
      elseif frames and not line:match('^%s+%S+:%[') then
        local cont = line:match('^%s+(%S.*)$')
        if cont then frames[#frames + 1] = cont:gsub(' %(inline%)$', '') end
      end
    end
  end
  flush()
  return out
end

-- flat (leaf) and cumulative (once per stack) shares in percent of folded stacks
local function shares(folded_map, skip_root)
  local flat, cum, total = {}, {}, 0
  for stack, c in pairs(folded_map) do
    local frames = {}
    for f in (stack .. ';'):gmatch('(.-);') do frames[#frames + 1] = f end
    if skip_root then table.remove(frames, 1) end
    total = total + c
    flat[frames[#frames]] = (flat[frames[#frames]] or 0) + c
    local seen = {}
    for _, f in ipairs(frames) do
      if not seen[f] then seen[f] = true; cum[f] = (cum[f] or 0) + c end
    end
  end
  local rows = {}
  for f, c in pairs(cum) do rows[f] = { flat = 100 * (flat[f] or 0) / total, cum = 100 * c / total } end
  return rows, total
end

local function parse_folded(text, drop_root)
  local out = {}
  for line in text:gmatch('[^\n]+') do
    local stack, c = line:match('^(.*) (%d+)$')
    if drop_root then stack = stack:gsub('^[^;]*;', '') end
    out[stack] = (out[stack] or 0) + tonumber(c)
  end
  return out
end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- our summary (profile --json): self and inclusive shares in percent of
-- every function; pprof names kernel functions without our _[k]
local function summary_shares(doc)
  local out = {}
  for _, t in ipairs(doc.top.inclusive) do out[(t.name:gsub('_%[k%]$', ''))] = { cum = 100 * t.share, flat = 0 } end
  for _, t in ipairs(doc.top.self) do out[(t.name:gsub('_%[k%]$', ''))].flat = 100 * t.share end
  return out
end

-- the largest difference in points between two share tables with the same names
local function max_diff(ours, theirs)
  local worst = 0
  for name, r in pairs(ours) do
    local g = theirs[name]
    assert.truthy(g, 'go tool pprof does not list ' .. name)
    worst = math.max(worst, math.abs(r.flat - g.flat), math.abs(r.cum - g.cum))
  end
  return worst
end

describe('pprof read by go tool pprof', function()
  it('agrees with our own summary of a calltree profile, stack for stack', function()
    if not h.need_root() or not have_go() then return end
    local dir = h.tmpdir()
    local ok, e = pcall(function()
      local out, err, st
      h.with_machine_lock(function()
        out, err, st = h.pm(string.format('profile --freq 299 --top 1000 --format pprof,folded --output %s/prof '
          .. '--json -- %s burn 3', dir, h.workload('calltree')))
      end)
      assert.equal(0, st, err)
      local doc = util.json_decode(out)
      local file = dir .. '/prof/profile.pb.gz'
      assert.is_true(doc.total >= 300, 'samples: ' .. doc.total)

      local ours = summary_shares(doc)
      local top_out, top_err, top_st = go(dir, 'tool pprof -top -nodecount=1000 -nodefraction=0 ' .. file)
      assert.equal(0, top_st, top_err)
      local theirs, n = parse_top(top_out)
      assert.same(keys(ours), keys(theirs))
      for _, f in ipairs({ 'main', 'alpha', 'beta', 'gamma_', 'delta', 'spin' }) do assert.truthy(theirs[f], f) end
      local worst = max_diff(ours, theirs)
      print(string.format('\n  pprof agreement (our on-CPU profile): %d functions, max difference %.3f points', n,
        worst))
      assert.is_true(worst <= 0.1, 'max difference ' .. worst)
      assert.matches('\nType: samples\n', top_out)
      assert.matches('^File: calltree\n', top_out)

      -- the stacks themselves: -traces gives back our folded file (less the process name)
      local tr_out, tr_err, tr_st = go(dir, 'tool pprof -traces -sample_index=samples ' .. file)
      assert.equal(0, tr_st, tr_err)
      -- (pprof names kernel functions without our _[k]: their mapping says it)
      local folded = assert(util.readfile(dir .. '/prof/profile.folded'))
      assert.same(parse_folded((folded:gsub('_%[k%]', '')), true), parse_traces(tr_out))

      -- the mapping of the workload carries its build-id as readelf reads it
      local re = h.sh('readelf -n ' .. h.workload('calltree'))
      local build_id = re:match('Build ID: (%x+)')
      assert.truthy(build_id, re)
      local raw = go(dir, 'tool pprof -raw ' .. file)
      assert.matches('%d+: 0x%x+/0x%x+/0x%x+ ' .. h.workload('calltree'):gsub('%p', '%%%0') .. ' ' .. build_id,
        raw)
    end)
    h.rmrf(dir)
    if not ok then error(e, 0) end
  end)

  it('agrees with our own summary of a whole-system profile (many processes, one file)', function()
    if not h.need_root() or not have_go() then return end
    local dir = h.tmpdir()
    local ok, e = pcall(function()
      local sys = require('perf_manual._c.sys')
      local out, err, st
      h.with_machine_lock(function()
        local pid = assert(sys.spawn({ h.workload('calltree'), 'burn', '6' }, { stdout = 'null' }))
        out, err, st = h.pm(string.format('profile --all --duration 2 --top 10000 --format pprof,folded '
          .. '--output %s/prof --json', dir))
        sys.kill(pid, 9) sys.wait(pid)
      end)
      assert.equal(0, st, err)
      local doc = util.json_decode(out)
      local file = dir .. '/prof/profile.pb.gz'
      local top_out, top_err, top_st = go(dir, 'tool pprof -top -nodecount=100000 -nodefraction=0 ' .. file)
      assert.equal(0, top_st, top_err)
      assert.matches('Total samples = ' .. doc.total .. '%s', top_out)
      local ours = summary_shares(doc)
      local theirs, n = parse_top(top_out)
      assert.same(keys(ours), keys(theirs))
      assert.truthy(theirs.beta and theirs.alpha)
      local worst = max_diff(ours, theirs)
      print(string.format('\n  pprof agreement (our whole-system profile): %d functions, max difference %.3f points', n,
        worst))
      assert.is_true(worst <= 0.1, 'max difference ' .. worst)
      -- one location per process and address: -traces gives back our stacks
      local tr_out = go(dir, 'tool pprof -traces -sample_index=samples ' .. file)
      local folded = assert(util.readfile(dir .. '/prof/profile.folded'))
      assert.same(parse_folded((folded:gsub('_%[k%]', '')), true), parse_traces(tr_out))
    end)
    h.rmrf(dir)
    if not ok then error(e, 0) end
  end)

  it('agrees with our own summary of an off-CPU profile, in off_cpu nanoseconds', function()
    if not h.need_root() or not have_go() then return end
    local dir = h.tmpdir()
    local ok, e = pcall(function()
      local out, err, st = h.pm(string.format('profile --off-cpu --top 1000 --format pprof,folded --output %s/prof '
        .. '--json -- %s 2', dir, h.workload('offcpu_blocker')))
      assert.equal(0, st, err)
      local doc = util.json_decode(out)
      local file = dir .. '/prof/profile.pb.gz'
      local ours = summary_shares(doc)
      local top_out, top_err, top_st = go(dir, 'tool pprof -top -nodecount=1000 -nodefraction=0 ' .. file)
      assert.equal(0, top_st, top_err)
      assert.matches('\nType: off_cpu\n', top_out)
      local theirs, n = parse_top(top_out)
      assert.same(keys(ours), keys(theirs))
      assert.truthy(theirs.blocker_read)
      local worst = max_diff(ours, theirs)
      print(string.format('\n  pprof agreement (our off-CPU profile): %d functions, max difference %.3f points', n,
        worst))
      assert.is_true(worst <= 0.1, 'max difference ' .. worst)
      -- the blocked time: microseconds in our summary, nanoseconds in the file
      local ms_out = go(dir, 'tool pprof -top -unit=ms -nodecount=1 ' .. file)
      local total_ms = tonumber(ms_out:match('Total samples = ([%d.]+)ms'))
      assert.truthy(total_ms, ms_out)
      assert.near(doc.total / 1e3, total_ms, doc.total / 1e3 * 0.01)
      -- the number of blocks rides along: the writer thread wakes the reader every 20 ms
      local blocks_out = go(dir, 'tool pprof -top -sample_index=blocks -nodecount=1000 -nodefraction=0 ' .. file)
      assert.matches('\nType: blocks\n', blocks_out)
      local blocks = tonumber(blocks_out:match('Total samples = (%d+)'))
      assert.truthy(blocks, blocks_out)
      assert.is_true(blocks >= 50, 'blocks: ' .. blocks)
      -- the main binary is the workload, not the kernel its stacks end in
      assert.matches('^File: offcpu_blocker\n', top_out)
    end)
    h.rmrf(dir)
    if not ok then error(e, 0) end
  end)

  it('reads a profile Go wrote into the same stacks and shares as go tool pprof', function()
    if not have_go() then return end
    local dir = h.tmpdir()
    local ok, e = pcall(function()
      assert(os.execute(string.format("cp '%s/tests/fixtures/pprof/burn.go' '%s/'", h.root, dir)))
      local _, err, st = go(dir, 'build -o burn burn.go')
      assert.equal(0, st, err)
      h.with_machine_lock(function()
        _, err, st = h.sh(string.format("'%s/burn' '%s/cpu.pprof' 2", dir, dir))
      end)
      assert.equal(0, st, err)
      local file = dir .. '/cpu.pprof'
      local out
      out, err, st = h.pm('fold ' .. file)
      assert.equal(0, st, err)
      local ours = shares(parse_folded(out))
      local top_out, top_err, top_st = go(dir, 'tool pprof -top -nodecount=1000 -nodefraction=0 ' .. file)
      assert.equal(0, top_st, top_err)
      local theirs, n = parse_top(top_out)
      assert.same(keys(ours), keys(theirs))
      for _, f in ipairs({ 'main.main', 'main.alpha', 'main.beta', 'main.gamma', 'main.delta', 'main.spin' }) do
        assert.truthy(theirs[f], f)
      end
      local worst = max_diff(ours, theirs)
      print(string.format('\n  pprof agreement (Go\'s profile): %d functions, max difference %.3f points', n, worst))
      assert.is_true(worst <= 0.1, 'max difference ' .. worst)
      -- stack for stack, in samples
      out = h.pm('fold --sample-type samples ' .. file)
      local tr_out = go(dir, 'tool pprof -traces -sample_index=samples ' .. file)
      assert.same(parse_traces(tr_out), parse_folded(out))
    end)
    h.rmrf(dir)
    if not ok then error(e, 0) end
  end)
end)
