--- The topics `perf_manual list` groups the commands by.
---
--- A playbook says where it belongs with `topic = 'disk'` in its
--- declaration. The topics below are listed in this order with their
--- heading; a topic not in the table (a team's own) gets a group of its own
--- after them, and a playbook without one is listed under "other".
local M = {}

M.order = {
  { 'methods',   'Methods: start here (USE, thread states, tracers, guided investigation)' },
  { 'cpu',       'CPU and scheduling' },
  { 'memory',    'Memory' },
  { 'disk',      'Disks and file systems' },
  { 'network',   'Network' },
  { 'locks',     'Locks' },
  { 'requests',  'Requests (RED)' },
  { 'security',  'Security events' },
  { 'monitoring', 'Monitoring (exporters and dashboards)' },
  { 'comparison', 'Before/after, fixes and regressions' },
  { 'workflow',  'The investigation store' },
  { 'reporting', 'Reports and sharing' },
}

local heading, rank = {}, {}
for i, t in ipairs(M.order) do
  heading[t[1]] = t[2]
  rank[t[1]] = i
end

--- The heading of a topic (a team's topic is its own heading).
function M.heading(topic)
  return heading[topic] or topic
end

--- Entries of `playbook.list` grouped by topic, in the order above:
--- list of { topic=, heading=, entries = {...} }. A broken playbook has no
--- topic to read and goes with "other".
function M.group(entries)
  local groups, by = {}, {}
  for _, e in ipairs(entries) do
    local t = e.pb and e.pb.topic or 'other'
    if not by[t] then
      by[t] = { topic = t, heading = M.heading(t), entries = {} }
      groups[#groups + 1] = by[t]
    end
    local g = by[t].entries
    g[#g + 1] = e
  end
  local last = #M.order + 2
  local function key(g)
    return rank[g.topic] or (g.topic == 'other' and last or last - 1)
  end
  table.sort(groups, function(a, b)
    local ka, kb = key(a), key(b)
    if ka ~= kb then return ka < kb end
    return a.topic < b.topic
  end)
  return groups
end

return M
