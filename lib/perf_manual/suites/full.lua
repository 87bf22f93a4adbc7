-- Everything: collectors, USE, on- and off-CPU profiles, every tracer.
return {
  extends = 'basic',
  summary = 'basic + on/off-CPU profiles + io, sched, lock and syscall tracers',
  profilers = { { 'cpu' }, { 'offcpu' } },
  tracers = { { 'io' }, { 'sched' }, { 'lock' }, { 'syscall' } },
}
