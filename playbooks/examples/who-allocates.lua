-- Which code paths allocate the most through malloc, and in what sizes? One
-- probe: a histogram of malloc's size argument keyed by the user stack that
-- called it, aggregated in the kernel. The paths are ranked by bytes, not
-- calls: a few large allocations can outweigh many small ones. Run it:
--   perf_manual run playbooks/examples/who-allocates.lua --pid 1234
--   perf_manual run playbooks/examples/who-allocates.lua --pid 1234 --duration 30 --top 5
return playbook {
  name    = "who-allocates",
  summary = "The code paths that allocate the most bytes through malloc, with their call counts and sizes",
  needs   = { "bpf" },
  params  = {
    pid      = param.pid      { "process to examine" },
    duration = param.duration { "how long to watch", default = "10s" },
    top      = param.integer  { "how many paths to show", default = 3, min = 1, max = 1000 },
  },

  step "malloc sizes by calling path" {
    function(inv, p)
      local r = inv:probe { "uprobe:libc:malloc", hist = "arg0", by = "ustack", pid = p.pid,
                            duration = p.duration }
      if r.available == false then return inv:fail("malloc: " .. tostring(r.why)) end
      inv:printf("malloc: %d calls in %s\n", r.total.count, inv:duration_text(r.duration_s))
      for _, n in ipairs(r.notes or {}) do inv:printf("note: %s\n", n) end
      if r.total.count == 0 then return end
      local rows, bytes = {}, 0
      for _, row in ipairs(r.rows) do
        rows[#rows + 1] = row
        bytes = bytes + (row.sum or 0)
      end
      table.sort(rows, function(a, b) return (a.sum or 0) > (b.sum or 0) end)
      -- the caller: the first frame above the allocator's own
      local function caller(stack)
        for i = #stack, 1, -1 do
          local f = stack[i]
          if not f:match("malloc") then return f end
        end
        return "?"
      end
      for i = 1, math.min(p.top, #rows) do
        local row = rows[i]
        inv:printf("%5.1f%% of the bytes  %-24s %8d calls  mean %.0f bytes  %s/s\n",
          bytes > 0 and 100 * row.sum / bytes or 0, caller(row.stack), row.count, row.mean,
          inv:bytes_text(row.sum / r.duration_s))
      end
      local top = rows[1]
      local verdict = string.format("%s allocates the most: %s/s in %d calls of %.0f bytes on average "
        .. "(%.0f%% of malloc's bytes)", caller(top.stack), inv:bytes_text(top.sum / r.duration_s), top.count,
        top.mean, bytes > 0 and 100 * top.sum / bytes or 0)
      inv:printf("%s\n", verdict)
      inv:note(verdict)
    end,
  },
}
