-- perf_manual investigate: from a symptom to a root cause, step by step.
-- The built-in guided investigation; copy it, adapt it, share it through
-- the playbook search path. Everything it does lands in the investigation
-- folder (metadata.yaml, raw_data/, analysis/, report.md).
return playbook {
  name    = "investigate",
  topic   = "methods",
  summary = "Guided investigation: checklist, quantify, USE, where the time goes, drill-down, hypotheses, draft report",
  investigation = true,
  examples = '  perf_manual investigate --workload 1234 --symptom "p99 latency doubled since Monday"\n'
    .. '  perf_manual investigate --workload "./build/workloads/fsync_writer" --symptom "writes are slow" --batch\n'
    .. '  perf_manual investigate --workload api --symptom "slow" --answers answers.yaml --baseline 2026-01-10_slow\n'
    .. '  perf_manual investigate --resume 2026-11-22_slow\n'
    .. '  perf_manual investigate --resume 2026-11-22_slow --fix "cache the session lookup"',
  params  = {
    workload = param.target   { "pid, process name, service, cgroup or a command to launch", required = true,
      unless = { "replay" }, aliases = { { name = "target", prefix = "", desc = "same as --workload" },
        { name = "pid", prefix = "pid:", argname = "pid", desc = "same as --workload PID" } } },
    symptom  = param.string   { "what people see, in their words", required = true },
    baseline = param.investigation { "an earlier investigation to compare with", optional = true },
    duration = param.duration { "how long each measurement runs", default = "5s", above = 0 },
    endpoint = param.string   { "URL of the service, for a RED check", optional = true },
    baseline_any = param.flag { "compare with --baseline even when it looked at another workload (program, "
      .. "service, cgroup or endpoint)" },
    fix = param.string { "with --resume: record the fix (what was changed) and stop; `perf_manual fix ID --validate` "
      .. "validates it", optional = true },
  },

  step "checklist" { budget = "10m",
    function(inv, p)
      inv:ask { "What is the symptom (latency, throughput, resource usage)?", key = "symptom", given = p.symptom }
      inv:ask { "When did it start?", key = "when", default = "unknown" }
      inv:ask { "How is it measured (metric, tool, dashboard)?", key = "measured", default = "not stated" }
      inv:ask { "What is normal (the baseline)?", key = "baseline", default = p.baseline or "no baseline" }
      inv:ask { "What changed around then (deploy, config, traffic, hardware)?", key = "changed",
        default = "nothing known" }
      inv:ask { "Who is affected (all users, a subset, some operations)?", key = "who", default = "unknown" }
      inv:ask { "What is the business impact (SLA, revenue, experience)?", key = "impact", default = "unknown" }
      inv:similar_past(p.symptom)
    end,
  },

  step "quantify" { budget = "30m",
    function(inv)
      local q = inv:quantify {}
      inv.quantified = q
      if q.available ~= false then
        local s, pr = q.system or {}, q.process
        inv:printf('system: %s busy, %s iowait, load %s; %s\n',
          s.busy_pct and string.format('%.0f%%', s.busy_pct) or 'not measured',
          s.iowait_pct and string.format('%.0f%%', s.iowait_pct) or 'not measured',
          s.load1 or 'not measured',
          pr and string.format('workload: %.0f%% of a CPU, run-queue wait %s', pr.cpu_pct or 0,
            pr.runq_wait_pct and string.format('%.0f%%',
              pr.runq_wait_pct) or 'not measured') or 'workload: not measured')
      end
    end,
  },

  step "USE and RED" { budget = "1h",
    function(inv, p)
      local use = inv:use_check { duration = p.duration }
      inv:show(use)
      inv:finding_from(use)
      inv.next = use.verdict                          -- "cpu" | "memory" | "disk" | "network" | "lock" | nil
      if p.endpoint then
        local red = inv:red_check { endpoint = p.endpoint, duration = p.duration }
        inv:show(red)
        inv:finding_from(red)
      end
      if p.baseline then                              -- the symptom and the USE figures against the baseline
        local cmp = inv:compare_with(p.baseline)
        if cmp then inv:show(cmp.text) end
      end
    end,
  },

  step "where the time goes" { budget = "30m",
    function(inv, p)
      local t = inv:tsa { duration = p.duration }     -- on CPU, runnable, blocked by cause, per thread
      inv:show(t)
      inv:finding_from(t)
      local busy, wait = inv:time_split(t)            -- % on a CPU or runnable; the dominant wait
      if wait and busy and (not inv.next or busy < 50) and wait.share >= 25 then
        -- nothing saturated, or the target mostly waits: follow its time
        inv.next = ({ lock = "lock", io = "disk", memory = "memory" })[wait.reason] or "wait"
        inv.wait_reason = wait.reason                 -- "net": the wait drill-down also looks at the TCP flow
        inv.waits_on = inv:wait_phrase(wait)          -- "pid 4242 (feeder) via pipe (..., 75% of wall time; sleep 25%)"
        inv:note(string.format("the target is on a CPU or runnable %.0f%% of its wall time and waits on %s: "
          .. "following the wait", busy, inv.waits_on))
      end
    end,
  },

  step "drill down" { budget = "2h",
    function(inv, p)
      local drill = {
        cpu    = function() inv:tell("cpu", inv:profile { duration = p.duration }) end,
        disk   = function()
          local io = inv:trace { "io", duration = p.duration, snoop = true }
          inv:tell("disk", io, inv:trace { "syscall", only = { "fsync", "fdatasync", "write" }, duration = p.duration })
        end,
        lock   = function()
          inv:tell("lock", inv:trace { "lock", duration = p.duration, stacks = true })
          inv:tell("wait", inv:profile { off_cpu = true, duration = p.duration })
        end,
        memory = function()
          inv:tell("memory", inv:collect { "memory", psi = true, duration = p.duration })
          -- a program (not the whole system): what it allocates and never frees, and its RSS growth
          if p.workload ~= "system" then
            inv:tell("memory", inv:memory_profile { duration = p.duration })
          end
        end,
        network = function()                        -- the target's TCP: loss, slow peer, listener not accepting
          inv:tell("network", inv:trace { "net", duration = p.duration })
        end,
      }
      drill.wait = function()
        inv:tell("wait", inv:profile { off_cpu = true, duration = p.duration })
        if inv.wait_reason == "net" then            -- blocked on a TCP socket: what the flow does
          inv:printf("drill-down for network:\n")
          drill.network()
        end
      end
      if drill[inv.next] then
        inv:printf("drill-down for %s:\n", inv.next)
        inv:note("drill-down for " .. inv.next)
        drill[inv.next]()
      else
        inv:note("no saturated resource and no dominant wait: no drill-down "
          .. "(check the symptom's measurement and the baseline)")
      end
    end,
  },

  step "hypotheses" {
    function(inv)
      inv:auto_hypotheses()                         -- from the findings and the USE verdict
      for _, h in ipairs(inv:rank_hypotheses()) do
        inv:printf('%-4s %-10s %s\n', h.id, h.status, h.text)
      end
    end,
  },

  step "root cause and report" {
    function(inv)
      local best = inv:rank_hypotheses()[1]
      if best and best.status == 'supported' then
        inv:conclude(best.text, { evidence = best.evidence[1] and best.evidence[1].artifact })
        inv:recommend()                             -- the catalogue's fixes, filled with the culprits measured
      else
        inv:note "no hypothesis is supported by the evidence: root cause not established"
      end
      local report = inv:draft_report "technical"
      local bottleneck = inv.next == "wait" and ("waits on " .. tostring(inv.waits_on)) or inv.next
      inv:printf('\nBottleneck: %s\n', bottleneck or 'none found')
      if best and best.status == 'supported' then inv:printf('Root cause: %s\n', best.text) end
      inv:printf('Draft report: %s/%s\n', inv.dir, report)
    end,
  },
}
