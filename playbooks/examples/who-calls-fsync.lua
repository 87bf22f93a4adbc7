-- Who calls fsync, and how long does it take? One probe answers both: the
-- entry -> return time of the C library's fsync and fdatasync, keyed by the
-- user stack that called them, measured in the kernel (no compiler, no
-- bpftrace). Run it:
--   perf_manual run playbooks/examples/who-calls-fsync.lua --pid 1234
--   perf_manual run playbooks/examples/who-calls-fsync.lua --pid 1234 --duration 30 --slow-ms 5
return playbook {
  name    = "who-calls-fsync",
  summary = "Which code paths call fsync/fdatasync, how often, and how long the calls take",
  needs   = { "bpf" },
  params  = {
    pid      = param.pid      { "process to examine" },
    duration = param.duration { "how long to watch", default = "10s" },
    slow_ms  = param.number   { "a call slower than this is worth a look", default = 10, above = 0 },
  },

  step "fsync callers and their latency" {
    function(inv, p)
      for _, fn in ipairs { "fsync", "fdatasync" } do
        local r = inv:probe { "uprobe:libc:" .. fn, latency = true, by = "ustack", pid = p.pid,
                              duration = p.duration }
        if r.available == false then return inv:fail(fn .. ": " .. tostring(r.why)) end
        inv:printf("%s: %d calls in %s\n", fn, r.total.count, inv:duration_text(r.duration_s))
        -- the overhead budget may have detached the probe early: said, not hidden
        for _, n in ipairs(r.notes or {}) do inv:printf("note: %s\n", n) end
        if r.total.count > 0 then
          inv:show(inv:render_probe(r, { top = 3 }))
          -- the slowest path: the one whose mean call takes longest
          local worst
          for _, row in ipairs(r.rows) do
            if not worst or row.mean > worst.mean then worst = row end
          end
          local caller = worst.stack[#worst.stack] or "?"
          local verdict
          if worst.mean / 1e6 > p.slow_ms then
            verdict = string.format("%s from %s takes %.1f ms on average (%d calls): above %g ms",
              fn, caller, worst.mean / 1e6, worst.count, p.slow_ms)
          else
            verdict = string.format("%s: the slowest caller, %s, takes %.2f ms on average (%d calls)", fn, caller,
              worst.mean / 1e6, worst.count)
          end
          inv:printf("%s\n\n", verdict)
          inv:note(verdict)
        end
      end
    end,
  },
}
