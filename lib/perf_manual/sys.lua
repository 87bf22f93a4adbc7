--- Clocks, the stop flag (Ctrl-C), workloads (spawn/wait/kill), locks and the
--- process's own resource usage: the Lua face of the native module
--- perf_manual._c.sys (runtime/sys.c). Library code and playbooks require this
--- module, never perf_manual._c.sys. It hands out the native table itself, so
--- a test that replaces one function (sys.now) changes it for every user.
local native = require('perf_manual._c.sys')

return native
