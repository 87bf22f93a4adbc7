-- fsync-audit: how often a workload forces its data to the disk, on which
-- files and from which threads, what each flush costs it, how many bytes
-- the disk writes for each byte the application wrote, and whether
-- group commit (one flush for every writer waiting) would help.
-- Needs BPF (bpf/fsync.bpf.c); --replay needs nothing.
local KiB = 1024

local function mib(b) return string.format('%.1f MiB', (b or 0) / 1048576) end
local function ms(v) return v and string.format('%.2f', v) or '-' end

return playbook {
  name = 'fsync-audit',
  topic = 'disk',
  summary = 'fsync/fdatasync rate and latency per file and thread, write amplification, group commit or not',
  description = 'Flush calls from bpf/fsync.bpf.c (syscall tracepoints of fsync, fdatasync and sync_file_range\n'
    .. 'only), files named from /proc/PID/fd, bytes from /proc/PID/io and /proc/diskstats. Group commit:\n'
    .. '"yes" when several threads flush one file with small writes and wait on it, "maybe" when each\n'
    .. 'flushes its own file that way, "no" otherwise. Needs BPF; --replay needs nothing.',
  examples = '  perf_manual fsync-audit --target 1234 --duration 10\n'
    .. "  perf_manual fsync-audit --target './build/workloads/fsync_writer 5 /var/tmp 4 shared' --duration 3\n"
    .. '  perf_manual fsync-audit --target postgres --json --save /tmp/rec\n'
    .. '  perf_manual fsync-audit --replay /tmp/rec',
  needs = { 'bpf' },
  params = {
    target = param.target { 'what to audit: system, a PID, a service, a cgroup path, a process name or a command',
      default = 'system', aliases = param.target_aliases },
    duration = param.duration { 'how long to measure', default = '5s', above = 0 },
    small_write = param.integer { 'bytes written per flush below which a flush is "small"', default = 64 * KiB,
      min = 1 },
    top = param.integer { 'rows per table', default = 10, min = 1, max = 100000 },
    json = param.flag { 'print the measurement and the verdict as one JSON document' },
    max_overhead = param.number { 'detach the tracers when their BPF programs use more than PCT% of one CPU',
      default = 5, above = 0, max = 10000 },
    save = param.path { 'also write DIR/fsync-audit.json (the recording) for --replay', optional = true },
    replay = param.path { 'judge the recording in DIR/fsync-audit.json again (nothing is measured)', optional = true,
      conflicts = { 'save' } },
  },

  step 'measure the flushes, their files and the bytes written' {
    function(inv, p)
      inv:check_output(p.save, 'dir', '--save')
      local rec = inv:fsync_audit { target = not p.replay and inv:target(p.target) or nil, duration = p.duration,
        max_overhead = p.max_overhead, replay = p.replay }
      if rec.available == false then inv:fail('fsync-audit: ' .. tostring(rec.why)) end
      if p.save then inv:save_recording(p.save, rec) end
      inv.rec = rec
      inv.sum = require('perf_manual.runbooks.fsync_audit').summarize(rec)
    end,
  },

  step 'would group commit help?' {
    function(inv, p)
      local sum = inv.sum
      local a = sum.amplification
      local small = a.bytes_per_sync and a.bytes_per_sync < p.small_write
      local verdict, why = 'no'
      local shared, own = nil, 0
      for _, f in ipairs(sum.files) do
        if f.nthreads >= 2 and (not shared or f.count > shared.count) then shared = f end
        if f.nthreads == 1 and f.share >= 0.2 then own = own + 1 end
      end
      if sum.count == 0 then
        why = 'no fsync or fdatasync in the window'
      elseif shared and small and shared.share >= 0.2 then
        verdict = 'yes'
        why = string.format('%d threads flush %s (%.0f/s, %s ms each, %.0f%% of their time) after writing'
          .. ' %.1f KiB each: one flush for every writer waiting would cut the flushes up to %d-fold',
          shared.nthreads, shared.path, shared.rate, ms(shared.mean_ms), shared.share * 100,
          a.bytes_per_sync / KiB, shared.nthreads)
      elseif own >= 2 and small then
        verdict = 'maybe'
        why = string.format('%d threads each flush their own file after %.1f KiB and spend over 20%% of their time'
          .. ' in it: one shared log with group commit (or more data per flush) would merge their flushes', own,
          a.bytes_per_sync / KiB)
      elseif not small then
        why = string.format('each flush carries %.1f KiB: the writes are already batched',
          (a.bytes_per_sync or 0) / KiB)
      elseif #sum.threads <= 1 then
        why = 'one thread flushes: batch more writes per flush in it (group commit needs several writers)'
      else
        why = 'the threads spend little of their time waiting for flushes'
      end
      inv.verdict = { group_commit = verdict, why = why }
    end,
  },

  step 'report' {
    function(inv, p)
      local rec, sum, v = inv.rec, inv.sum, inv.verdict
      if p.json then
        return inv:json { target = rec.target, window_s = rec.window_s, source = rec.source,
          replayed = rec.replayed or false, count = sum.count, rate = sum.rate, calls = inv:list(sum.calls),
          files = inv:list(sum.files), threads = inv:list(sum.threads), amplification = sum.amplification,
          verdict = v, quality = rec.quality, notes = inv:list(rec.notes or {}) }
      end
      inv:printf('fsync audit of %s over %.1f s%s\n', rec.target, rec.window_s or 0,
        rec.replayed and ' (recorded)' or '')
      local function table_of(title, list, label, top)
        inv:printf('\n%-44s %7s %8s %8s %8s %8s %8s %6s\n', title, 'threads', 'calls', 'per s', 'mean ms',
          'p99 ms', 'max ms', 'time')
        for i, g in ipairs(list) do
          if i > top then
            inv:printf('  ... %d more\n', #list - top)
            break
          end
          inv:printf('%-44s %7d %8d %8.1f %8s %8s %8s %5.0f%%\n', label(g), g.nthreads, g.count, g.rate,
            ms(g.mean_ms), ms(g.p99_ms), ms(g.max_ms), g.share * 100)
        end
        if #list == 0 then inv:print('(no flush call in the window)') end
      end
      table_of('call', sum.calls, function(g) return g.name end, p.top)
      table_of('file', sum.files, function(g) return g.path end, p.top)
      table_of('thread', sum.threads, function(g) return string.format('%d %s', g.tid, g.comm or '?') end, p.top)
      local a = sum.amplification
      inv:print('\nwrite amplification')
      inv:printf('  the application wrote  %s (%s per flush)\n', mib(a.app_bytes),
        a.bytes_per_sync and string.format('%.1f KiB', a.bytes_per_sync / KiB) or '-')
      inv:printf('  it sent to storage     %s%s\n', mib(a.storage_bytes),
        a.storage_ratio and string.format(' (%.2fx)', a.storage_ratio) or '')
      for _, d in ipairs(rec.disks or {}) do
        inv:printf('  %-22s %s%s, %d writes%s (every writer, the journal included)\n', d.name .. ' wrote',
          mib(d.bytes_written), a.app_bytes > 0 and string.format(' (%.2fx)', d.bytes_written / a.app_bytes) or '',
          d.writes, d.flushes and string.format(', %d flushes', d.flushes) or '')
      end
      inv:printf('\ngroup commit: %s — %s\n', v.group_commit, v.why)
    end,
  },
}
