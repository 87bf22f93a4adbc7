-- A short CPU runbook: checks with severities, a question, and a
-- hypothesis scored by the evidence engine.
--   perf_manual run playbooks/examples/cpu-saturation.lua --target 1234 --batch
--   perf_manual run playbooks/examples/cpu-saturation.lua --replay tests/fixtures/datadirs/cpu_burn --batch
return playbook {
  name    = "cpu-saturation",
  topic   = "cpu",
  summary = "Is the run queue the bottleneck, and which function burns the CPU?",
  investigation = true,
  params  = {
    target   = param.target   { "pid, service or cgroup", default = "system" },
    duration = param.duration { "how long each measurement runs", default = "5s" },
  },

  step "ask" { budget = "5m",
    function(inv)
      inv:ask { "Is the slowness constant or in bursts?", key = "pattern", default = "constant" }
    end,
  },

  step "USE for the CPU" {
    function(inv, p)
      local use = inv:use_check { target = p.target, duration = p.duration }
      inv:show(use)
      local cpu = use.cpu or {}
      inv:check("the CPUs are not saturated", cpu.status ~= "HIGH",
        { resource = "cpu", metric = "saturation", severity = "high", summary = "CPU saturated: "
          .. tostring(cpu.name) })
      inv.cpu_saturated = cpu.status == "HIGH"
    end,
  },

  step "profile" {
    function(inv, p)
      if not inv.cpu_saturated then return inv:note "CPU not saturated: no profile needed" end
      local prof = inv:profile { pid = tonumber(p.target), duration = p.duration }
      local top = prof.top and prof.top.self and prof.top.self[1]
      if top then inv:printf("hottest function: %s (%.0f%% of samples)\n", top.name, top.share * 100) end
      inv:test_hypothesis "a CPU-bound hot loop saturates the CPUs"
    end,
  },
}
