--- Clocks, the stop flag, workloads and the process's own resource usage
--- (wraps perf_manual._c.sys, see runtime/sys.c).
return require('perf_manual._c.sys')
