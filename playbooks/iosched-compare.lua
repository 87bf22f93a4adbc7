-- iosched-compare: which block I/O scheduler serves this disk best for a
-- mixed load? Runs the same bounded load (sync writers doing 4 KiB write +
-- fsync, and one bulk writer doing 1 MiB direct writes) in a directory on
-- the disk under each scheduler the disk offers, measures every request's
-- latency from the scheduler's insert to completion per process, and
-- compares each scheduler with the one the disk ran before (Mann-Whitney
-- test and bootstrap CI, as `diff` does) and the sync writers' fairness
-- (Jain's index). The original scheduler is put back at the end, after an
-- error and after Ctrl-C.
local iosched = require('perf_manual.iosched')
local stats = require('perf_manual.analyzers.stats')
local text = require('perf_manual.report.hist')

local function f3(v) return v and string.format('%.3f', v) or '-' end
local function f1(v) return v and string.format('%.1f', v) or '-' end

local function sorted_roles(run)
  local roles = {}
  for role in pairs(run.roles) do roles[#roles + 1] = role end
  table.sort(roles)
  return roles
end

return playbook {
  name = 'iosched-compare',
  topic = 'disk',
  summary = 'Run a bounded load under each block I/O scheduler of a disk; compare latency and fairness per process',
  needs = { 'bpf', 'root' },
  examples = '  sudo perf_manual iosched-compare --path /mnt/scratch --duration 5\n'
    .. '  sudo perf_manual iosched-compare --path /mnt/scratch --schedulers none,mq-deadline --sync 4 --json\n'
    .. '  sudo perf_manual iosched-compare --path /var/tmp --yes   # /var/tmp is on the root disk: say so\n'
    .. '  perf_manual iosched-compare --replay /tmp/cmp            # a --save again, judged by today\'s rules',
  params = {
    path = param.path { 'a directory on the disk to test; the load writes its files there and removes them',
      optional = true },
    schedulers = param.list { 'schedulers to run (default: every one the disk offers)', optional = true },
    duration = param.duration { 'load time under each scheduler', default = '5s', above = 0, max = 600 },
    sync = param.integer { 'sync writers (4 KiB write + fsync, in a loop)', default = 3, min = 1, max = 64 },
    no_bulk = param.flag { 'no bulk writer (1 MiB direct writes)' },
    size_mb = param.integer { "the bulk writer's file, MiB", default = 64, min = 1, max = 65536 },
    yes = param.flag { 'run on the disk that holds / (the load slows everything on it)' },
    json = param.flag { 'print the comparison as one JSON document' },
    save = param.path { 'also write DIR/iosched-compare.json, for --replay', optional = true },
    replay = param.path { 'compare the runs recorded in DIR/iosched-compare.json again', optional = true },
  },

  check = function(p)
    if not (p.path or p.replay) then
      require('perf_manual.util').user_error('iosched-compare: give --path DIR (a directory on the disk to test)')
    end
  end,

  step 'the disk and its schedulers' {
    function(inv, p)
      if p.replay then return end
      inv:check_output(p.save, 'dir', '--save')
      local disk, why = iosched.disk_of(p.path)
      if not disk then inv:fail('iosched-compare: ' .. why) end
      local root = iosched.disk_of('/')
      if disk == root and not p.yes then
        inv:fail(string.format('iosched-compare: %s is on %s, the disk that holds /; the load and the scheduler '
          .. 'switches slow everything on it: give --yes to run anyway, or a path on another disk', p.path, disk))
      end
      local offered, original = iosched.schedulers(disk)
      if not offered then inv:fail('iosched-compare: ' .. original) end
      local want = p.schedulers or offered
      for _, s in ipairs(want) do
        local ok = false
        for _, o in ipairs(offered) do ok = ok or o == s end
        if not ok then
          inv:fail(string.format("iosched-compare: %s offers %s, not '%s'", disk, table.concat(offered, ', '), s))
        end
      end
      -- with --json, stdout is the document: progress goes to stderr
      inv.say = function(fmt, ...)
        (p.json and inv.err or inv.out):write(string.format(fmt, ...))
      end
      inv.say('disk %s (under %s): schedulers %s; running %s\n', disk, p.path, table.concat(offered, ', '), original)
      if #offered == 1 then
        inv.say('%s\n', string.format('%s offers only %s: there is nothing to compare it with (a loop device or a '
          .. 'device without blk-mq schedulers built in or loaded)', disk, offered[1]))
      end
      inv.disk, inv.original, inv.want = disk, original, want
    end,
  },

  step 'the load under each scheduler' {
    function(inv, p)
      if p.replay then
        local rec, why = require('perf_manual.verbs.common').recorded(inv, 'iosched-compare.json')
        if not rec then inv:fail('iosched-compare: ' .. why) end
        inv.rec = rec
        return
      end
      if #inv.want < 2 and not p.schedulers then return end
      local rec = { disk = inv.disk, original = inv.original, path = p.path, duration = p.duration, sync = p.sync,
        bulk = not p.no_bulk, size_mb = p.size_mb, runs = inv:list() }
      -- the original scheduler first: the baseline the others are compared with
      local order = { inv.original }
      for _, s in ipairs(inv.want) do if s ~= inv.original then order[#order + 1] = s end end
      local ok, err = xpcall(function()
        for _, s in ipairs(order) do
          local set, why = iosched.set(inv.disk, s)
          if not set then inv:fail('iosched-compare: ' .. why) end
          local load, lerr = iosched.start_load(p.path, { sync = p.sync, bulk = not p.no_bulk, size_mb = p.size_mb,
            seconds = p.duration })
          if not load then inv:fail('iosched-compare: cannot start the load: ' .. tostring(lerr)) end
          local reqs = {}
          local r = inv:trace { 'io', target = 'system', duration = p.duration, snoop = true, json_snoop = true,
            queued = true, max_overhead = 50,
            on_snoop = function(_, items)
              for _, e in ipairs(items) do
                if e.device == inv.disk then
                  reqs[#reqs + 1] = { role = iosched.role_of(load, e), lat_ns = e.lat_ns, bytes = e.bytes }
                end
              end
            end }
          iosched.stop_load(load)
          if r.available == false then inv:fail('iosched-compare: ' .. tostring(r.why)) end
          local seconds = r.quality and r.quality.elapsed_s or p.duration
          rec.runs[#rec.runs + 1] = { scheduler = s, seconds = seconds, roles = iosched.summarise(reqs, seconds) }
          inv.say('  %-12s %d requests in %.1f s\n', s, #reqs, seconds)
          inv:flush()
          if r.ended_by == 'interrupted' then
            inv:warn('iosched-compare: stopped (Ctrl-C) during ' .. s .. ': comparing what ran')
            inv.exit_status = 130
            break
          end
        end
      end, debug.traceback)
      -- whatever happened, the disk gets its scheduler back
      local back, why = iosched.set(inv.disk, inv.original)
      if back then
        inv.say('%s: scheduler %s restored\n', inv.disk, inv.original)
      else
        inv:warn('iosched-compare: could not restore ' .. inv.original .. ' on ' .. inv.disk .. ': ' .. why)
      end
      if not ok then error(err, 0) end
      if p.save then inv:save_file(inv:mkdir(p.save) .. '/iosched-compare.json', rec) end
      inv.rec = rec
    end,
  },

  step 'compare' {
    function(inv, p)
      local rec = inv.rec
      if not rec or #rec.runs == 0 then return end
      local base = rec.runs[1]
      local out = { disk = rec.disk, original = rec.original, baseline = base.scheduler, runs = inv:list() }
      for _, run in ipairs(rec.runs) do
        local sync = {}
        for role, x in pairs(run.roles) do
          if role:match('^sync%-') then sync[#sync + 1] = x.requests end
        end
        local row = { scheduler = run.scheduler, seconds = run.seconds, fairness = iosched.jain(sync),
          processes = inv:list() }
        for _, role in ipairs(sorted_roles(run)) do
          local x = run.roles[role]
          local pr = { role = role, requests = x.requests, iops = x.iops, mb_s = x.mb_s, p50_ms = x.p50_ms,
            p99_ms = x.p99_ms }
          local b = base.roles[role]
          if run ~= base and b then
            local c = stats.compare(b.lat_ms, x.lat_ms, { stats = { 'median', 'p99' }, seed = 1 })
            pr.vs_baseline = c.verdict
            pr.p = c.p
            pr.significant = c.significant
          end
          row.processes[#row.processes + 1] = pr
        end
        out.runs[#out.runs + 1] = row
      end
      -- the judgement: the sync writers' latency (what a database feels),
      -- all of them together, against the baseline's: p99 with its CI
      -- in role order: the seeded bootstrap resamples by position, so the
      -- pool's order must not follow the hash order of pairs()
      local function pooled(run)
        local all = {}
        for _, role in ipairs(sorted_roles(run)) do
          if role:match('^sync%-') then
            for _, v in ipairs(run.roles[role].lat_ms) do all[#all + 1] = v end
          end
        end
        return all
      end
      local base_sync = pooled(base)
      out.runs[1].sync_p99_ms = #base_sync > 0 and stats.quantile(base_sync, 0.99) or nil
      local better, faster = {}, {}
      for i = 2, #out.runs do
        local row, cur = out.runs[i], pooled(rec.runs[i])
        if #cur > 0 then row.sync_p99_ms = stats.quantile(cur, 0.99) end
        if #cur >= 2 and #base_sync >= 2 then
          local c = stats.compare(base_sync, cur, { stats = { 'median', 'p99' }, seed = 1 })
          local ci = c.ci and c.ci.p99
          if ci and ci.rel then
            row.sync_p99_change = { rel = ci.rel, lo = ci.rel_lo, hi = ci.rel_hi }
            if ci.rel_hi and ci.rel_hi < 0 then better[#better + 1] = row end
          end
          local m = c.ci and c.ci.median
          if m and m.rel then
            row.sync_p50_change = { rel = m.rel, lo = m.rel_lo, hi = m.rel_hi }
            if m.rel_hi and m.rel_hi < 0 then faster[#faster + 1] = row end
          end
        end
      end
      table.sort(better, function(a, b) return a.sync_p99_ms < b.sync_p99_ms end)
      table.sort(faster, function(a, b) return a.sync_p50_change.rel < b.sync_p50_change.rel end)
      out.better = inv:list()
      for _, row in ipairs(better) do out.better[#out.better + 1] = row.scheduler end
      if #out.runs < 2 then
        out.verdict = 'one scheduler run: nothing to compare'
      elseif #better > 0 then
        local c = better[1].sync_p99_change
        out.verdict = string.format("the sync writers' p99 is lower under %s than under %s: %s ms against %s "
          .. '(%+.0f%%, 95%% CI %+.0f%% .. %+.0f%%)', better[1].scheduler, out.baseline, f3(better[1].sync_p99_ms),
          f3(out.runs[1].sync_p99_ms), c.rel * 100, c.lo * 100, c.hi * 100)
      else
        out.verdict = string.format("no scheduler gives the sync writers a p99 lower than %s's (%s ms) beyond the "
          .. 'noise (95%% CI of the change includes 0 or is above it)', out.baseline, f3(out.runs[1].sync_p99_ms))
      end
      if faster[1] then
        local c = faster[1].sync_p50_change
        out.verdict = out.verdict .. string.format('; their median is lowest under %s: %+.0f%% (95%% CI %+.0f%% .. '
          .. '%+.0f%%)', faster[1].scheduler, c.rel * 100, c.lo * 100, c.hi * 100)
      end
      if p.json then
        inv:json(out)
        return
      end
      inv:print('')
      for _, row in ipairs(out.runs) do
        inv:printf('== %s%s  (%.1f s; sync writers fairness %s)\n', row.scheduler,
          row.scheduler == out.baseline and ' (the disk\'s own, the baseline)' or '', row.seconds,
          row.fairness and string.format('%.3f', row.fairness) or '-')
        inv:show(text.table(row.processes, {
          { key = 'role', title = 'PROCESS', align = 'l' },
          { key = 'requests', title = 'REQUESTS' },
          { key = 'iops', title = 'IOPS', fmt = f1 },
          { key = 'mb_s', title = 'MiB/s', fmt = f1 },
          { key = 'p50_ms', title = 'P50(ms)', fmt = f3 },
          { key = 'p99_ms', title = 'P99(ms)', fmt = f3 },
          { key = 'vs_baseline', title = 'LATENCY VS ' .. out.baseline:upper(), align = 'l' },
        }))
        inv:print('')
      end
      for i = 2, #out.runs do
        local c, m = out.runs[i].sync_p99_change, out.runs[i].sync_p50_change
        if c and m then
          inv:printf('%s: sync writers p99 %s ms against %s under %s: %+.0f%% (95%% CI %+.0f%% .. %+.0f%%); '
            .. 'median %+.0f%% (%+.0f%% .. %+.0f%%)\n', out.runs[i].scheduler, f3(out.runs[i].sync_p99_ms),
            f3(out.runs[1].sync_p99_ms), out.baseline, c.rel * 100, c.lo * 100, c.hi * 100, m.rel * 100,
            m.lo * 100, m.hi * 100)
        end
      end
      inv:print('verdict: ' .. out.verdict)
    end,
  },
}
