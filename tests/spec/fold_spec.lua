local fold = require('perf_manual.fold')

local function lines(text)
  local out = {}
  for l in text:gmatch('[^\n]+') do out[#out + 1] = l end
  return out
end

local function tmpfile(content)
  local path = os.tmpname()
  local f = assert(io.open(path, 'wb')); f:write(content); f:close()
  return path
end

describe('perf_manual.fold', function()
  describe('perf script text', function()
    it('folds a real capture of the calltree workload (perf record -g, user stacks)', function()
      local text = test_helpers.fixture('perf/calltree_user.perf.txt')
      local p, stats = fold.from_perf_script(text)
      assert.truthy(p, stats)
      assert.equal(40, stats.samples)
      assert.equal(0, stats.bad)
      -- every sample of the capture carries period 2004008 (cpu-clock at 499 Hz)
      assert.equal(40 * 2004008, p:total())
      for _, l in ipairs(lines(p:folded())) do
        assert.matches('^calltree;__libc_start_call_main;main;', l)
        -- offsets like "spin+0x20" are stripped
        assert.is_nil(l:find('+0x', 1, true))
      end
      -- the leaf is always spin, under alpha, beta or main
      local leaves = {}
      for _, e in ipairs(p:stacks()) do leaves[e[1]:match('[^;]+;[^;]+$')] = true end
      for k in pairs(leaves) do assert.matches(';spin$', ';' .. k) end
    end)

    it('annotates kernel frames with --kernel and keeps comm as the root', function()
      local text = test_helpers.fixture('perf/system_kernel.perf.txt')
      local plain = assert(fold.from_perf_script(text))
      local k = assert(fold.from_perf_script(text, { kernel = true }))
      assert.equal(plain:total(), k:total())
      assert.matches('kdamond.0;ret_from_fork_asm;ret_from_fork;kthread;kdamond_fn', plain:folded(), 1, true)
      assert.matches('kdamond.0;ret_from_fork_asm_[k];ret_from_fork_[k];kthread_[k];kdamond_fn_[k]',
        k:folded(), 1, true)
      local withpid = assert(fold.from_perf_script(text, { pid = true }))
      assert.matches('kdamond.0-?;ret_from_fork_asm;', withpid:folded(), 1, true)
      local withtid = assert(fold.from_perf_script(text, { tid = true }))
      assert.matches('kdamond.0-?/77;ret_from_fork_asm;', withtid:folded(), 1, true)
    end)

    local sample = table.concat({
      '# cmdline : /usr/bin/perf record -g ./app',
      'V8 WorkerThread 24636/25607 [000] 94564.109216:     100 cycles: ',
      '\t     7f0a inner_fn+0x10 (/usr/lib/libfoo.so)',
      '\t     7f0b outer_fn->inlined_fn (/usr/lib/libfoo.so)',
      '\t     1234 [unknown] (/tmp/perf-25607.map)',
      '\t     5678 [unknown] ([unknown])',
      '\tffffffff81 do_syscall_64 ([kernel.kallsyms])',
      '\t     9abc weird;name"x"(int, char) (/usr/bin/app)',
      '',
      'V8 WorkerThread 24636/25607 [000] 94564.109217:     50 instructions: ',
      '\t     7f0a inner_fn (/usr/lib/libfoo.so)',
      '',
      '',
    }, '\n')

    it('handles pid/tid, spaces in comm, inlined frames, unknowns and tidying', function()
      local p = assert(fold.from_perf_script(sample, { tid = true, all = true, addrs = true }))
      assert.equal(
        'V8_WorkerThread-24636/25607;weird:namex;do_syscall_64_[k];[unknown <5678>];[perf-25607.map <1234>]_[j];'
        .. 'outer_fn;inlined_fn_[i];inner_fn 100\n', p:folded())
      -- the instructions sample is filtered: only the first event type is folded
      local _, stats = fold.from_perf_script(sample)
      assert.equal(1, stats.samples)
      assert.equal(1, stats.filtered_events)
    end)

    it('reports bad lines with their numbers and skips them', function()
      local text = 'app 12 1.0: 1 cycles:\n\t 10 f (/x)\n!!garbage line\n\t 11 main (/x)\n\n'
        .. 'app 12 1.1: 1 cycles:\n\t 12 g (/x)\n'
      local p, stats = fold.from_perf_script(text)
      assert.truthy(p)
      assert.equal('app;main;f 1\n', p:folded())
      assert.equal(2, stats.bad)
      assert.same({ line = 3, reason = 'not a perf script sample header or stack line', text = '!!garbage line' },
        stats.errors[1])
      assert.equal(6, stats.errors[2].line)
      assert.matches('truncated sample', stats.errors[2].reason)
    end)

    it('fails on the first bad line with strict', function()
      local p, err = fold.from_perf_script('app 12 1.0: 1 cycles:\n\t 10 f (/x)\n!!garbage\n\n', { strict = true })
      assert.is_nil(p)
      assert.equal('line 3: not a perf script sample header or stack line', err)
    end)

    it('folds big inputs in parallel chunks with the same result and line numbers', function()
      local one = test_helpers.fixture('perf/calltree_user.perf.txt')
      local parts = {}
      for i = 1, 800 do
        parts[#parts + 1] = one
        if i == 700 then parts[#parts + 1] = 'junk line\n\n' end
      end
      local text = table.concat(parts) -- ~10 MB: cut into chunks
      local p1, s1 = assert(fold.from_perf_script(text, { threads = 1, tid = true }))
      local p3, s3 = assert(fold.from_perf_script(text, { threads = 3, tid = true }))
      assert.equal(p1:folded(), p3:folded())
      assert.equal(800 * 40, s3.samples)
      assert.same(s1.errors, s3.errors)
      local lines_per_copy = select(2, one:gsub('\n', ''))
      assert.equal(700 * lines_per_copy + 1, s3.errors[1].line)
      assert.equal(s1.lines, s3.lines)
      local _, err = fold.from_perf_script(text, { threads = 3, strict = true })
      assert.equal('line ' .. (700 * lines_per_copy + 1) .. ': not a perf script sample header or stack line', err)
    end)

    it('never crashes on binary junk or truncated text', function()
      local text = test_helpers.fixture('perf/system_kernel.perf.txt')
      math.randomseed(7)
      for _ = 1, 200 do
        local cut = text:sub(1, math.random(1, #text))
        local junk = {}
        for j = 1, math.random(0, 50) do junk[j] = string.char(math.random(0, 255)) end
        local p, stats = fold.from_perf_script(cut .. table.concat(junk) .. cut:sub(1, math.random(0, 200)),
          { all = true, addrs = true, tid = true })
        assert.truthy(p, stats)
        assert.truthy(p:total() >= 0)
        local q = assert(fold.from_folded(p:folded()))
        assert.equal(p:total(), q:total())
      end
    end)
  end)

  describe('folded format', function()
    it('reads, merges duplicate stacks and writes sorted lines', function()
      local p, stats = fold.from_folded('a;b;c 3\na;b 2\r\na;b;c 4\n\nb 1\n')
      assert.truthy(p)
      assert.equal(0, stats.bad)
      assert.equal(10, p:total())
      assert.equal(3, p:unique())
      assert.equal('a;b 2\na;b;c 7\nb 1\n', p:folded())
      assert.equal(7, p:count('a;b;c'))
      assert.equal(0, p:count('zzz'))
    end)

    it('reports malformed lines by number', function()
      local p, stats = fold.from_folded('a;b 1\nno count here\na;b x1\n 5\na;b 99999999999999999999\nc 2')
      assert.truthy(p)
      assert.equal('a;b 1\nc 2\n', p:folded())
      assert.equal(4, stats.bad)
      local e = stats.errors
      assert.same({ 2, 3, 4, 5 }, { e[1].line, e[2].line, e[3].line, e[4].line })
      assert.equal('sample count too large', stats.errors[4].reason)
      local q, err = fold.from_folded('a;b 1\nbad\n', { strict = true })
      assert.is_nil(q)
      assert.equal('line 2: no sample count at the end of the line', err)
    end)

    it('merges profiles and round-trips through a file', function()
      local a = fold.from_table({ ['x;y'] = 2, ['x'] = 1 })
      local b = fold.from_table({ { 'x;y', 3 }, { 'z', 5 } })
      local m = fold.merge(a, b)
      assert.equal('x 1\nx;y 5\nz 5\n', m:folded())
      assert.equal(3, a:total()) -- inputs untouched
      local path = os.tmpname()
      assert(fold.write(path, m))
      local r, _, fmt = fold.read({ path = path })
      assert.equal('folded', fmt)
      assert.equal(m:folded(), r:folded())
      os.remove(path)
    end)

    it('guesses the format of its input', function()
      local _, _, f1 = fold.read(test_helpers.fixture('perf/calltree_user.perf.txt'))
      assert.equal('perf', f1)
      local _, _, f2 = fold.read('# comment\nmain;f 10\n')
      assert.equal('folded', f2)
    end)

    it('is not misled by a malformed first line: it is reported by number and the rest is kept', function()
      for _, first in ipairs({ 'main;work 3 ', 'main;work\t3', 'main;work -1', 'main;work 1.5' }) do
        local p, stats, fmt = fold.read(first .. '\nmain;work 10\nmain;idle 5\n')
        assert.equal('folded', fmt, first)
        assert.equal('main;idle 5\nmain;work 10\n', p:folded())
        assert.equal(1, stats.bad)
        assert.equal(1, stats.errors[1].line)
      end
    end)

    it('caps a count at 2^53 with a note, and refuses a larger perf period, so its output reads back', function()
      local max = 2 ^ 53
      local sample = 'big 1 %d.0: %s cycles: \n\t  1000 leaf (/bin/big)\n\n'
      local text = sample:format(1, '9007199254740993') .. sample:format(2, '9007199254740992')
        .. sample:format(3, '9007199254740992')
      local p, stats = fold.from_perf_script(text)
      assert.equal(1, stats.bad)
      assert.equal(1, stats.errors[1].line)
      assert.equal('sample period above 2^53', stats.errors[1].reason)
      assert.is_true(stats.saturated > 0)
      assert.equal(max, p:count('big;leaf'))
      assert.matches('capped', table.concat(fold.format_errors(stats, 'x'), '\n'))
      local again, astats = fold.from_folded(p:folded(), { strict = true })
      assert.truthy(again, astats)
      assert.equal(p:total(), again:total())
      -- merging two capped profiles stays readable too
      local m = fold.merge(again, again)
      assert.equal(max, m:count('big;leaf'))
      assert.is_true(m:saturated() > 0)
      assert.truthy(fold.from_folded(m:folded(), { strict = true }))
    end)

    it('loads a directory holding one folded file, and says why not otherwise', function()
      local dir = os.tmpname(); os.remove(dir)
      assert(require('posix.sys.stat').mkdir(dir))
      local p, err = fold.load(dir)
      assert.is_nil(p)
      assert.matches('no folded file', err)
      local f = assert(io.open(dir .. '/cpu.folded', 'w')); f:write('m;a 4\n'); f:close()
      local q, _, path = assert(fold.load(dir))
      assert.equal(4, q:total())
      assert.equal(dir .. '/cpu.folded', path)
      os.remove(dir .. '/cpu.folded'); os.remove(dir)
      local r, rerr = fold.load('/nonexistent/x.folded')
      assert.is_nil(r)
      assert.equal('cannot read /nonexistent/x.folded: No such file or directory', rerr)
    end)
  end)

  it('computes self and total per function', function()
    local p = fold.from_table({ ['app;main;f;g'] = 6, ['app;main;f'] = 2, ['app;main;g'] = 2 })
    local t, total = fold.function_totals(p, true)
    assert.equal(10, total)
    assert.same({ self = 2, total = 8 }, t.f)
    assert.same({ self = 8, total = 8 }, t.g)
    assert.same({ self = 0, total = 10 }, t.main)
    assert.is_nil(t.app)
  end)

  it('names frame kinds by suffix', function()
    assert.equal('kernel', fold.frame_kind('do_syscall_64_[k]'))
    assert.equal('jit', fold.frame_kind('Lfoo;.bar_[j]'))
    assert.equal('user', fold.frame_kind('main'))
  end)

  it('rejects bad arguments at the edge', function()
    assert.has_error(function() fold.from_folded(42) end, '[perf_manual.fold] expected text, {path=} or {fd=}')
    local p = fold.new()
    assert.has_error(function() p:add('a', -1) end)
    p:close(); p:close()
    assert.has_error(function() p:total() end)
  end)

  describe('the fold command', function()
    local h = test_helpers
    local fx = h.root .. '/tests/fixtures/perf/system_kernel.perf.txt'

    it('folds a file, stdin and "-" alike, with the stackcollapse options', function()
      local out, err, status = h.pm('fold --kernel --tid ' .. fx)
      assert.equal(0, status, err)
      local p = assert(fold.from_perf_script(test_helpers.fixture('perf/system_kernel.perf.txt'),
        { kernel = true, tid = true }))
      assert.equal(p:folded(), out)
      local out2 = h.pm('fold --kernel --tid - < ' .. fx)
      local out3 = h.pm('fold --kernel --tid < ' .. fx)
      assert.equal(out, out2)
      assert.equal(out, out3)
    end)

    it('re-folds folded input (merging duplicate stacks)', function()
      local path = tmpfile('a;b 1\na;b 2\nc 1\n')
      local out, _, status = h.pm('fold ' .. path)
      os.remove(path)
      assert.equal(0, status)
      assert.equal('a;b 3\nc 1\n', out)
    end)

    it('reports bad lines with numbers, or fails with --strict', function()
      local path = tmpfile('app 12 1.0: 1 cycles:\n\t 10 f (/x)\n!!garbage\n\n')
      local out, err, status = h.pm('fold ' .. path)
      assert.equal(0, status)
      assert.equal('app;f 1\n', out)
      assert.equal('perf_manual: fold: ' .. path .. ':3: not a perf script sample header or stack line (skipped)\n',
        err)
      out, err, status = h.pm('fold --strict ' .. path)
      os.remove(path)
      assert.equal(2, status)
      assert.equal('', out)
      assert.equal('perf_manual: fold: ' .. path .. ': line 3: not a perf script sample header or stack line\n', err)
    end)

    it('says when the input cannot be read', function()
      local _, err, status = h.pm('fold /nonexistent/perf.txt')
      assert.equal(2, status)
      assert.equal('perf_manual: fold: cannot read /nonexistent/perf.txt: No such file or directory\n', err)
    end)
  end)
end)
