-- Every /proc collector, sampled each interval, and a USE check over the
-- same window. Needs no privileges.
return {
  summary = 'all /proc collectors (cpu, memory, disk, psi, process, cgroup) and a USE check',
  collectors = { 'cpu', 'memory', 'disk', 'psi', 'process', 'cgroup' },
  use = true,
}
