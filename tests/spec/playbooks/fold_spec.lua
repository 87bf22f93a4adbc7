-- The fold playbook on recorded `perf script` captures (tests/fixtures/perf)
-- and a recorded folded profile (tests/fixtures/profile).
local h = test_helpers

local PERF = h.root .. '/tests/fixtures/perf/'

-- { stack = count } and the total of folded text
local function parse(folded)
  local t, total, n = {}, 0, 0
  for line in folded:gmatch('[^\n]+') do
    local stack, c = line:match('^(.*) (%d+)$')
    assert.truthy(stack, line)
    t[stack] = tonumber(c); total = total + tonumber(c); n = n + 1
  end
  return t, total, n
end

describe('fold', function()
  it('folds the calltree capture into its two call paths, weighted by period', function()
    local out, err, st = h.pm('fold ' .. PERF .. 'calltree_user.perf.txt')
    assert.equal(0, st, err)
    assert.equal('', err)
    assert.same({ ['calltree;__libc_start_call_main;main;alpha;spin'] = 54108216,
      ['calltree;__libc_start_call_main;main;spin'] = 26052104 }, (parse(out)))
  end)

  it('keeps the same samples under every root and annotation option', function()
    local _, base_total, base_n = parse((h.pm('fold ' .. PERF .. 'system_kernel.perf.txt')))
    for _, opt in ipairs({ '--pid', '--tid', '--kernel', '--jit', '--all', '--addrs' }) do
      local out, err, st = h.pm('fold ' .. opt .. ' ' .. PERF .. 'system_kernel.perf.txt')
      assert.equal(0, st, opt .. ': ' .. err)
      local _, total, n = parse(out)
      assert.equal(base_total, total, opt)
      assert.equal(base_n, n, opt)
    end
  end)

  it('roots stacks at comm-PID/TID and marks kernel frames with --tid --all', function()
    local out = h.pm('fold --tid ' .. PERF .. 'calltree_user.perf.txt')
    for stack in pairs((parse(out))) do assert.matches('^calltree%-%?/%d+;', stack) end
    out = h.pm('fold --all ' .. PERF .. 'system_kernel.perf.txt')
    local kdamond
    for stack in pairs((parse(out))) do if stack:match('^kdamond') then kdamond = stack end end
    assert.matches('^kdamond%.0;ret_from_fork_asm_%[k%];ret_from_fork_%[k%];kthread_%[k%];', kdamond)
  end)

  it('re-folds a folded profile unchanged, from a file or stdin', function()
    local path = h.root .. '/tests/fixtures/profile/system_3s.folded'
    local want, want_total, want_n = parse(h.fixture('profile/system_3s.folded'))
    local out, err, st = h.pm('fold ' .. path)
    assert.equal(0, st, err)
    local got, total, n = parse(out)
    assert.same(want, got)
    assert.same({ 423, 27 }, { total, n })
    assert.same({ want_total, want_n }, { total, n })
    assert.equal(out, (h.pm('fold --format folded - < ' .. path)))
  end)

  it('names every line of perf text it cannot read as folded, with --format folded', function()
    local out, err, st = h.pm('fold --format folded ' .. PERF .. 'calltree_user.perf.txt')
    assert.equal(0, st)
    assert.equal('', out)
    assert.matches('^perf_manual: fold: .*calltree_user%.perf%.txt:1: '
      .. 'no sample count at the end of the line %(skipped%)\n', err)
    assert.matches('calltree_user%.perf%.txt: %d+ bad lines in all\n$', err)
  end)

  it('rejects an unknown --format and an unreadable input with exit 2', function()
    local _, err, st = h.pm('fold --format xml ' .. PERF .. 'calltree_user.perf.txt')
    assert.equal(2, st)
    assert.equal("perf_manual: fold: bad value for --format 'xml': expected one of: auto, perf, folded, pprof\n", err)
    _, err, st = h.pm('fold /no/such/perf.txt')
    assert.equal(2, st)
    assert.matches('^perf_manual: fold: cannot read /no/such/perf%.txt', err)
  end)
end)
