-- A team's leak runbook: is this service leaking, from where, and is it the
-- leak that grows its RSS? Run it:
--   perf_manual run playbooks/examples/memory-leak.lua --pid 1234 --duration 30s
return playbook {
  name    = "memory-leak",
  summary = "Is this service leaking memory, and from which function?",
  needs   = { "bpf" },                       -- uprobes on its allocator
  investigation = true,                      -- keep everything in the store
  params  = {
    pid      = param.pid      { "process to examine" },
    duration = param.duration { "how long to watch its allocations", default = "10s" },
    sample_every = param.integer { "record every Nth allocation (1 = all; more for a hot allocator)", default = 1,
      min = 1 },
  },

  step "allocations never freed, and RSS" {
    function(inv, p)
      local mem = inv:memory_profile { target = p.pid, duration = p.duration, sample_every = p.sample_every }
      if mem.available == false then
        inv:note("no memory profile: " .. tostring(mem.why))
        return inv:stop()
      end
      inv:printf("%s\n", mem.summary)
      local v = mem.memory.verdict
      local h = inv:hypothesis "the service leaks memory from one allocation site"
      if v.leaking and (v.share_of_outstanding or 0) >= 0.5 then
        h:supported_by(mem, v.text)
      else
        h:refuted_by(mem, v.text)
      end
      inv.leak = v
    end,
  },

  step "report" {
    function(inv)
      local best = inv:rank_hypotheses()[1]
      if best and best.status == "supported" then
        inv:conclude(string.format("leak from %s: %s", inv.leak["function"], inv.leak.text),
          { evidence = best.evidence[1].artifact })
      else
        inv:note "no leak from one site in this window"
      end
      inv:draft_report "technical"
    end,
  },
}
