-- The memory drill-down: reclaim, swapping, faults and PSI, sampled often.
return {
  summary = 'memory, PSI, process faults and cgroup memory events (the memory drill-down)',
  collectors = { 'memory', 'psi', 'process', 'cgroup' },
  interval = 0.5,
}
