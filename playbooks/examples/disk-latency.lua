-- A team's disk-latency runbook: is this service waiting on the disk, and
-- is it its own synchronous writes? Run it:
--   perf_manual run playbooks/examples/disk-latency.lua --pid 1234
--   perf_manual run playbooks/examples/disk-latency.lua --pid 1 --replay tests/fixtures/datadirs/fsync_writer
return playbook {
  name    = "disk-latency",
  topic   = "disk",
  summary = "Is this service waiting on the disk, and on which device?",
  needs   = { "bpf" },                       -- checked before step 1 (not in replay)
  investigation = true,                      -- keep everything in the store
  params  = {
    pid      = param.pid      { "process to examine" },
    duration = param.duration { "how long each measurement runs", default = "5s" },
  },

  step "USE for disks" {
    function(inv, p)
      local use = inv:use_check { target = p.pid, duration = p.duration }
      inv:show(use)
      if not use.disk or use.disk.status == "ok" then
        inv:conclude("disks are not the bottleneck", { evidence = use })
        return inv:stop()
      end
      inv:finding_from(use)
    end,
  },

  step "latency by device and operation" {
    function(inv, p)
      local io = inv:trace { "io", pid = p.pid, duration = p.duration }
      for _, d in ipairs(io.devices or {}) do
        inv:printf("%-8s %8.0f IOPS  p99 %s us\n", d.device or d.dev, d.iops or 0, tostring(d.p99_us))
      end
      local h = inv:hypothesis "synchronous writes (fsync) dominate the latency"
      local fsyncs = inv:trace { "syscall", pid = p.pid, only = { "fsync", "fdatasync" }, duration = p.duration }
      if not fsyncs.share_of_time then
        inv:note("fsync share not measured: " .. tostring(fsyncs.why))
      elseif fsyncs.share_of_time > 0.5 then
        h:supported_by(fsyncs, "over half of the process's syscall time is in fsync")
      else
        h:refuted_by(fsyncs, "fsync is a small share of syscall time")
      end
    end,
  },

  step "report" {
    function(inv)
      local best = inv:rank_hypotheses()[1]
      if best and best.status == "supported" then inv:conclude(best.text, { evidence = best.evidence[1].artifact }) end
      inv:draft_report "technical"
    end,
  },
}
