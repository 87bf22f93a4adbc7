-- basic + an on-CPU profile of the target (or the whole system).
return {
  extends = 'basic',
  summary = 'basic + on-CPU profile',
  profilers = { { 'cpu' } },
  tracers = { { 'sched' } },
}
