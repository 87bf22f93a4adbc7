-- pagefaults: how fast a workload faults pages in, minor (the page was in
-- memory, or is a fresh zero page) against major (read from the disk:
-- a mapped file or swap), per process and thread, and where: the user
-- stacks that fault and the mappings (files, heap, anonymous memory) the
-- faulting addresses fall in. Counts from /proc; stacks and addresses from
-- `perf record -e exceptions:page_fault_user -g` (no BPF object here reads
-- that tracepoint). --replay needs nothing.
local function pct(x) return string.format('%5.1f%%', (x or 0) * 100) end

return playbook {
  name = 'pagefaults',
  topic = 'memory',
  summary = 'page fault rates, minor vs major, per process and thread, by stack and by mapped file',
  description = 'Counts come from /proc/PID/task/TID/stat (minflt, majflt); the stacks and faulting addresses\n'
    .. 'from `perf record -e exceptions:page_fault_user -g` (no BPF object reads that tracepoint), the\n'
    .. 'addresses mapped to files through /proc/PID/maps. Needs root and perf; --replay needs neither.',
  examples = '  perf_manual pagefaults --target 1234 --duration 5\n'
    .. "  perf_manual pagefaults --target './build/workloads/fault_touch 5' --duration 3\n"
    .. '  perf_manual pagefaults --target postgres --every 10 --json --save /tmp/rec   # one fault in 10 recorded\n'
    .. '  perf_manual pagefaults --replay /tmp/rec',
  needs = { 'root' },
  params = {
    target = param.target { 'what to examine: a PID, a process name, a service, a cgroup path or a command',
      aliases = param.target_aliases, optional = true },
    duration = param.duration { 'how long to measure', default = '5s', above = 0 },
    every = param.integer { 'record the stack of one fault in N (the counts are always whole)', default = 1,
      min = 1, max = 1000000 },
    major_rate = param.number { 'major faults per second worth a finding', default = 10, min = 0 },
    minor_rate = param.number { 'minor faults per second worth a finding', default = 10000, min = 0 },
    top = param.integer { 'rows per table', default = 10, min = 1, max = 100000 },
    json = param.flag { 'print the measurement and the findings as one JSON document' },
    save = param.path { 'also write DIR/pagefaults.json (the recording) for --replay', optional = true },
    replay = param.path { 'judge the recording in DIR/pagefaults.json again (nothing is measured)', optional = true,
      conflicts = { 'save', 'target' } },
  },

  check = function(p)
    if p.target == nil and p.replay == nil then
      require('perf_manual.util').user_error('pagefaults: --target is needed (a PID, a process name, a service, '
        .. 'a cgroup or a command), or --replay DIR')
    end
  end,

  step 'count the faults and record where they happen' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local rec = inv:pagefaults { target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        every = p.every, replay = p.replay }
      if rec.available == false then inv:fail('pagefaults: ' .. tostring(rec.why)) end
      if p.save then inv:save_recording(p.save, rec) end
      inv.rec = rec
      inv.sum = require('perf_manual.runbooks.pagefaults').summarize(rec)
    end,
  },

  step 'judge the rates' {
    function(inv, p)
      local sum = inv.sum
      local said = {}
      local function top_mapping(pred)
        for _, m in ipairs(sum.mappings) do if pred(m) then return m end end
      end
      local function is_file(m) return m.path:sub(1, 1) == '/' end
      if sum.major_rate >= p.major_rate then
        local f = top_mapping(is_file)
        said[#said + 1] = { severity = 'high', kind = 'major',
          text = string.format('%.0f major faults/s: memory accesses wait for the disk%s. Keep the hot part of '
            .. 'the file in the page cache (more memory, or a smaller working set), prefault it (MAP_POPULATE, '
            .. 'madvise WILLNEED) or read it with read() in larger pieces; with no file behind them they are '
            .. 'swap-ins', sum.major_rate, f and (' — the mapped file faulting most is ' .. f.path) or '') }
      end
      if sum.minor_rate >= p.minor_rate then
        local s = sum.stacks[1]
        local anon = top_mapping(function(m) return not is_file(m) end)
        said[#said + 1] = { severity = 'medium', kind = 'minor',
          text = string.format('%.0f minor faults/s: memory is mapped in fresh again and again%s%s. Reuse '
            .. 'buffers instead of freeing them to the kernel (malloc: M_TRIM_THRESHOLD, M_MMAP_THRESHOLD), or use '
            .. 'huge pages', sum.minor_rate, s and (', most from ' .. (s.frames[1] or '?')) or '',
            anon and (', in ' .. anon.path) or '') }
      end
      if #said == 0 then
        said[#said + 1] = { severity = 'ok', kind = 'none', text = string.format(
          'fault rates are low: %.0f minor/s, %.0f major/s', sum.minor_rate, sum.major_rate) }
      end
      inv.findings_list = said
    end,
  },

  step 'report' {
    function(inv, p)
      local rec, sum = inv.rec, inv.sum
      if p.json then
        return inv:json { target = rec.target, window_s = rec.window_s, source = rec.source,
          replayed = rec.replayed or false, minor = sum.minor, major = sum.major, minor_rate = sum.minor_rate,
          major_rate = sum.major_rate, recorded = sum.recorded, coverage = sum.coverage, every = rec.every,
          processes = inv:list(sum.processes), threads = inv:list(sum.threads), stacks = inv:list(sum.stacks),
          mappings = inv:list(sum.mappings), system = rec.system, findings = inv:list(inv.findings_list),
          notes = inv:list(rec.notes or {}) }
      end
      inv:printf('page faults of %s over %.1f s%s: %.0f minor/s, %.0f major/s\n', rec.target, rec.window_s or 0,
        rec.replayed and ' (recorded)' or '', sum.minor_rate, sum.major_rate)
      inv:printf('\n%-8s %-16s %7s %10s %10s %10s %10s\n', 'pid', 'process', 'threads', 'minor', 'major',
        'minor/s', 'major/s')
      for i, x in ipairs(sum.processes) do
        if i > p.top then break end
        inv:printf('%-8d %-16s %7d %10d %10d %10.0f %10.0f\n', x.pid, x.comm or '?', x.threads, x.minor, x.major,
          x.minor_rate, x.major_rate)
      end
      if #sum.threads > 1 then
        inv:printf('\n%-8s %-16s %10s %10s %10s %10s\n', 'tid', 'thread', 'minor', 'major', 'minor/s', 'major/s')
        for i, x in ipairs(sum.threads) do
          if i > p.top then break end
          inv:printf('%-8d %-16s %10d %10d %10.0f %10.0f\n', x.tid, x.comm or '?', x.minor, x.major, x.minor_rate,
            x.major_rate)
        end
      end
      inv:printf('\nstacks (%d faults recorded by perf%s%s)\n', sum.recorded,
        rec.every > 1 and string.format(', one in %d', rec.every) or '',
        sum.coverage and string.format(', %.0f%% of those counted', sum.coverage * 100) or '')
      for i, s in ipairs(sum.stacks) do
        if i > p.top then break end
        inv:printf('  %s  %s\n', pct(s.share), table.concat(s.frames, ' <- '))
      end
      inv:print('\nmappings of the faulting addresses')
      for i, m in ipairs(sum.mappings) do
        if i > p.top then break end
        inv:printf('  %s  %-48s read %d, write %d, exec %d\n', pct(m.share), m.path, m.read or 0, m.write or 0,
          m.exec or 0)
      end
      inv:print('')
      for _, f in ipairs(inv.findings_list) do inv:printf('%s: %s\n', f.severity, f.text) end
    end,
  },
}
