---@meta
-- luacheck: no unused args, no unused, no max line length
--- perf_manual._c.sys (runtime/sys.c): clocks, the stop flag that SIGINT /
--- SIGTERM set (the second signal exits), interruptible sleep, spawning and
--- reaping workloads, resource usage, the machine lock, and the file and
--- syscall facts the samplers use. Required directly (no Lua wrapper).
--- Environmental failures return nil, "<op>: <strerror>", errno; bad
--- arguments raise.
error('perf_manual._c.sys: this file only describes the C API')

local sys = {}

---@return number  monotonic seconds
function sys.now() end

---@return number  seconds since the epoch
function sys.realtime() end

---@return number  monotonic nanoseconds (exact below 2^53)
function sys.monotonic_ns() end

--- Sleeps, returning early when a stop is requested.
---@param seconds number
---@return boolean  true when slept fully, false when a stop was requested
function sys.sleep(seconds) end

---@return boolean  a stop was requested (SIGINT/SIGTERM or request_stop)
function sys.stop_requested() end

--- As if SIGINT arrived once (tests, --max-overhead).
function sys.request_stop() end

--- Forgets a requested stop.
function sys.clear_stop() end

---@param fd integer? default 1
---@return boolean
function sys.isatty(fd) end

---@return integer
function sys.getpid() end

---@return integer
function sys.geteuid() end

---@param who ("self"|"children")? default "self"
---@return {utime: number, stime: number, maxrss_kb: integer, minflt: integer, majflt: integer, nvcsw: integer, nivcsw: integer}?, string? err, integer? errno
function sys.rusage(who) end

--- Starts argv[1] with argv (PATH searched). opts.join: a cgroup.procs /
--- tasks file the child writes its own pid into before exec (so it never
--- runs outside the cgroup); opts.stdout / opts.stderr: a path or "null";
--- opts.stdin: a path or "null"; opts.setpgid: a process group of its own;
--- opts.pdeathsig: the signal it gets when this process dies (kill -9 too);
--- opts.log + opts.log_cap: stdout and stderr through a logger process
--- that keeps the first log_cap bytes in the file (then a "cut" line) and
--- drops the rest; its pid is the second result (reap it with wait).
---@param argv string[]
---@param opts {join: string?, stdout: string?, stderr: string?, stdin: string?, setpgid: boolean?, pdeathsig: integer?, log: string?, log_cap: number?}?
---@return integer? pid, string|integer|nil err_or_logger_pid, integer? errno  err: "cannot start PROG: why", "spawn: fork: why"
function sys.spawn(argv, opts) end

--- Waits for a child (nohang: only looks).
---@param pid integer
---@param nohang boolean?
---@return ("running"|"exited"|"signaled")?, integer|string|nil code_signo_or_err, integer? errno
function sys.wait(pid, nohang) end

---@param pid integer
---@param signo integer? default SIGTERM
---@return true?, string? err, integer? errno
function sys.kill(pid, signo) end

---@return {clk_tck: integer, page_size: integer, ncpu: integer, ncpu_conf: integer}
function sys.info() end

--- Waits for an exclusive flock on path (created if needed): the lock
--- `flock(1)` takes in the shell scripts.
---@param path string
---@return integer? fd, string? err, integer? errno
function sys.flock(path) end

--- Releases a lock taken by flock().
---@param fd integer
function sys.unlock(fd) end

---@return number?, string? err, integer? errno  CPU seconds used by the calling thread
function sys.thread_cpu() end

--- Opens a file read-only, close-on-exec, to re-read it in place with pread
--- (e.g. /proc/PID/task/TID/schedstat).
---@param path string
---@return integer? fd, string? err, integer? errno  err: "open PATH: why"
function sys.open(path) end

--- Up to max bytes (0..16 MiB) at offset (default 0); "" at end of file.
---@param fd integer
---@param max integer
---@param offset number?
---@return string?, string? err, integer? errno  err: "pread: why"
function sys.pread(fd, max, offset) end

---@param fd integer
---@return true?, string? err, integer? errno  err: "close: why"
function sys.close(fd) end

--- The number of a syscall on the architecture built for, as
--- /proc/PID/task/TID/syscall shows it; nil for one it lacks or this
--- module does not list (known: futex, futex_waitv).
---@param name string
---@return integer?
function sys.syscall_nr(name) end

return sys
