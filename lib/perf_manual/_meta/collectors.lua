---@meta
--- Shapes returned by lib/perf_manual/collectors/*.lua (one place for docs
--- and editor tooling). Rules that hold for every collector:
---  * `sample(...)` returns a snapshot with `time` (monotonic seconds);
---    `rates(prev, cur)` returns per-second values over `elapsed` seconds.
---  * A file that is missing or unreadable leaves its fields nil and adds
---    `missing[field] = "why"` ("not present: /proc/pressure/cpu",
---    "permission denied: /proc/1/io", …). Missing is never written as 0.
---  * A counter that went backwards (reset, exited threads) gives nil.
error('perf_manual.collectors: this file only describes shapes')

---@alias perf_manual.collectors.Missing table<string, string>  field -> why

-- ---------------------------------------------------------------- psi ----

---@class perf_manual.collectors.PsiLine
---@field avg10 number   percent
---@field avg60 number
---@field avg300 number
---@field total number   µs stalled since boot

---@class perf_manual.collectors.Psi
---@field some perf_manual.collectors.PsiLine
---@field full perf_manual.collectors.PsiLine?  absent for cpu before 5.13

---@class perf_manual.collectors.PsiRate
---@field some_pct number?   share of wall time some task stalled, from total deltas
---@field full_pct number?   share of wall time all non-idle tasks stalled
---@field some_avg10 number?
---@field full_avg10 number?

---@class perf_manual.collectors.PsiSample
---@field time number
---@field cpu perf_manual.collectors.Psi?
---@field memory perf_manual.collectors.Psi?
---@field io perf_manual.collectors.Psi?
---@field missing perf_manual.collectors.Missing?

-- ---------------------------------------------------------------- cpu ----

---@class perf_manual.collectors.Jiffies
---@field id integer?  CPU number (per-CPU entries only)
---@field user integer
---@field nice integer
---@field system integer
---@field idle integer
---@field iowait integer?
---@field irq integer?
---@field softirq integer?
---@field steal integer?
---@field guest integer?
---@field guest_nice integer?
---@field columns integer  how many columns the kernel printed

---@class perf_manual.collectors.CpuStat
---@field total perf_manual.collectors.Jiffies
---@field cpus perf_manual.collectors.Jiffies[]
---@field ctxt integer?
---@field btime integer?
---@field processes integer?
---@field procs_running integer?
---@field procs_blocked integer?

---@class perf_manual.collectors.CpuSample
---@field time number
---@field stat perf_manual.collectors.CpuStat?
---@field loadavg perf_manual.collectors.Loadavg?
---@field psi perf_manual.collectors.Psi?
---@field missing perf_manual.collectors.Missing?

---@class perf_manual.collectors.CpuPct
---@field id integer?
---@field busy_pct number?   user+nice+system+irq+softirq (steal, iowait apart)
---@field user_pct number?
---@field nice_pct number?
---@field system_pct number?
---@field iowait_pct number?
---@field irq_pct number?
---@field softirq_pct number?
---@field steal_pct number?
---@field idle_pct number?

---@class perf_manual.collectors.CpuRates
---@field elapsed number?
---@field ncpu integer?
---@field total perf_manual.collectors.CpuPct?
---@field cpus perf_manual.collectors.CpuPct[]?
---@field ctxt_per_s number?
---@field forks_per_s number?
---@field procs_running integer?  at cur (includes the sampler itself)
---@field procs_blocked integer?
---@field load1 number?
---@field load5 number?
---@field load15 number?
---@field psi perf_manual.collectors.PsiRate?
---@field missing perf_manual.collectors.Missing?

---@class perf_manual.collectors.TaskSched   cpu.sample_task(pid)
---@field time number
---@field pid integer
---@field run_ns number      summed over the threads alive now
---@field wait_ns number     run-queue wait
---@field timeslices number
---@field threads integer

---@class perf_manual.collectors.TaskRates   cpu.task_rates(prev, cur[, elapsed])
---@field elapsed number?
---@field cpu_pct number?            % of one core
---@field runq_wait_pct number?      thread-seconds waiting for a CPU per second, %
---@field wait_per_slice_ms number?
---@field timeslices_per_s number?
---@field missing perf_manual.collectors.Missing?

-- ------------------------------------------------------------- memory ----

---@class perf_manual.collectors.MemorySample
---@field time number
---@field meminfo table<string, number>?  bytes for kB fields (MemTotal, MemAvailable, Active(anon), …)
---@field vmstat table<string, number>?
---@field psi perf_manual.collectors.Psi?
---@field missing perf_manual.collectors.Missing?

---@class perf_manual.collectors.MemoryRates
---@field elapsed number?
---@field total_bytes number?
---@field available_bytes number?
---@field used_bytes number?
---@field used_pct number?         100 - MemAvailable/MemTotal
---@field swap_total_bytes number?
---@field swap_used_bytes number?
---@field swap_used_pct number?    nil (missing) without swap
---@field dirty_bytes number?
---@field writeback_bytes number?
---@field pgscan_kswapd_per_s number?  pages
---@field pgscan_direct_per_s number?
---@field pgsteal_per_s number?
---@field pswpin_per_s number?
---@field pswpout_per_s number?
---@field pgmajfault_per_s number?
---@field pgfault_per_s number?
---@field allocstall_per_s number?
---@field compact_stall_per_s number?
---@field refault_per_s number?
---@field oom_kill integer?         kills in the interval
---@field oom_kill_total integer?   since boot
---@field psi perf_manual.collectors.PsiRate?
---@field missing perf_manual.collectors.Missing?

-- --------------------------------------------------------------- disk ----

---@class perf_manual.collectors.DiskKind
---@field kind string   disk|partition|zram|ram|loop|nullb|dm|md
---@field is_disk boolean        false: RAM-backed/virtual, skip as "not a disk"
---@field whole_disk boolean
---@field partition_of string?
---@field skip_reason string?
---@field slaves string[]?

---@class perf_manual.collectors.DiskRate : perf_manual.collectors.DiskKind
---@field name string
---@field r_s number?
---@field w_s number?
---@field rkB_s number?
---@field wkB_s number?
---@field rrqm_s number?
---@field wrqm_s number?
---@field d_s number?
---@field f_s number?
---@field r_await number?   ms; nil when no read completed
---@field w_await number?
---@field rareq_sz number?  kB
---@field wareq_sz number?
---@field aqu_sz number?
---@field util_pct number?  from io_ticks, capped at 100
---@field in_flight integer?

---@class perf_manual.collectors.DiskRates
---@field elapsed number?
---@field devices perf_manual.collectors.DiskRate[]  sorted by name
---@field by_name table<string, perf_manual.collectors.DiskRate>
---@field psi perf_manual.collectors.PsiRate?
---@field missing perf_manual.collectors.Missing?

-- ------------------------------------------------------------ network ----

---@class perf_manual.collectors.IfRate
---@field name string
---@field rx_bytes_per_s number?
---@field tx_bytes_per_s number?
---@field rx_packets_per_s number?
---@field tx_packets_per_s number?
---@field rx_errs_per_s number?
---@field tx_errs_per_s number?
---@field rx_drop_per_s number?
---@field tx_drop_per_s number?
---@field rx_errs integer?  counts in the interval
---@field tx_errs integer?
---@field rx_drop integer?
---@field tx_drop integer?
---@field speed_mbps number?         nil when the driver reports none (never 0)
---@field speed_bytes_per_s number?
---@field util_pct number?           busier direction vs speed
---@field operstate string?
---@field virtual boolean            lo, ifb, veth, bridges…
---@field missing perf_manual.collectors.Missing?

---@class perf_manual.collectors.NetworkRates
---@field elapsed number?
---@field interfaces perf_manual.collectors.IfRate[]
---@field by_name table<string, perf_manual.collectors.IfRate>
---@field tcp perf_manual.collectors.TcpRates?
---@field tcpext perf_manual.collectors.TcpExtRates?
---@field udp perf_manual.collectors.UdpRates?
---@field missing perf_manual.collectors.Missing?

-- ------------------------------------------------------------ process ----

---@class perf_manual.collectors.ProcessSample  process.sample(pid) or nil, "no process N"
---@field time number
---@field pid integer
---@field stat table     parse_stat: pid, comm, state, ppid, utime, stime (ticks), majflt,
---                       num_threads, starttime, vsize, rss (pages), processor, …
---@field status table?  parse_status: VmRSS (bytes), Threads, voluntary_ctxt_switches, …
---@field io table?      rchar, wchar, syscr, syscw, read_bytes, write_bytes, cancelled_write_bytes
---@field fd_count integer?
---@field threads integer[]?   tids
---@field cgroup {v2:string?, v1:table<string,string>, entries:table[]}?
---@field sched perf_manual.collectors.TaskSched?
---@field missing perf_manual.collectors.Missing?

---@class perf_manual.collectors.ProcessRates  process.rates(prev, cur) or nil, "process N restarted"
---@field elapsed number?
---@field pid integer
---@field comm string
---@field state string
---@field cpu_pct number?     % of one core (user_pct + sys_pct)
---@field user_pct number?
---@field sys_pct number?
---@field majflt_per_s number?
---@field minflt_per_s number?
---@field read_bytes_per_s number?
---@field write_bytes_per_s number?
---@field rchar_per_s number?
---@field wchar_per_s number?
---@field vol_ctxt_per_s number?
---@field nonvol_ctxt_per_s number?
---@field runq_wait_pct number?
---@field wait_per_slice_ms number?
---@field blkio_delay_pct number?   needs kernel.task_delayacct=1
---@field rss_bytes number?
---@field vsize_bytes number?
---@field swap_bytes number?
---@field threads integer?
---@field fd_count integer?
---@field missing perf_manual.collectors.Missing?

-- ------------------------------------------------------------- cgroup ----

---@class perf_manual.collectors.CgroupDirs  cgroup.resolve{pid=|path=|service=}
---@field path string   cgroup path (v2's, or the memory/cpu controller's on v1)
---@field v2 string?    directories on the filesystem
---@field memory string?
---@field cpu string?
---@field cpuacct string?

---@class perf_manual.collectors.CgroupSample
---@field time number
---@field path string?
---@field memory perf_manual.collectors.CgroupMemory?
---@field cpu perf_manual.collectors.CgroupCpu?
---@field pressure table<string, perf_manual.collectors.Psi>  cpu/memory/io, where present
---@field missing perf_manual.collectors.Missing?

---@class perf_manual.collectors.CgroupRates
---@field elapsed number?
---@field path string?
---@field memory perf_manual.collectors.CgroupMemoryRates?
---@field cpu perf_manual.collectors.CgroupCpuRates?
---@field pressure table<string, perf_manual.collectors.PsiRate>  cpu/memory/io, where present
---@field missing perf_manual.collectors.Missing?

-- ------------------------------------------------------------ threads ----

---@class perf_manual.collectors.ThreadStates  threads.sample(pid, opts) / Sampler:result()
---@field pid integer
---@field hz number
---@field samples integer          ticks taken
---@field duration_s number
---@field threads_seen integer
---@field thread_samples number
---@field shares perf_manual.collectors.ThreadShares?
---@field futex_share number?      nil (missing) when neither wchan nor syscall is readable
---@field futex_waiting_max integer?
---@field futex_waiting_mean number?
---@field runnable_max integer?
---@field runnable_mean number?
---@field disk_waiting_max integer?
---@field disk_waiting_mean number?
---@field top_futex {tid:integer, comm:string, share:number}[]
---@field futex_lock_share number?   FUTEX_WAIT/LOCK_PI waits (mutexes, rwlocks, joins); nil without ptrace access
---@field futex_wait_share number?   FUTEX_WAIT_BITSET/futex_waitv waits (condition variables, semaphores)
---@field futex_lock_waiting_max integer?
---@field futex_lock_waiting_mean number?
---@field top_futex_addrs perf_manual.collectors.FutexAddr[]  up to 5, most waiters first
---@field source string            'wchan' | 'stat+syscall'
---@field exited boolean
---@field stopped boolean
---@field cost {cpu_s:number, cpu_pct:number?, per_tick_us:number?}
---@field missing perf_manual.collectors.Missing?

-- ------------------------------------------------------ nested shapes ----

---@class perf_manual.collectors.Loadavg
---@field load1 number
---@field load5 number
---@field load15 number
---@field runnable integer
---@field threads integer
---@field last_pid integer

---@class perf_manual.collectors.TcpRates
---@field in_segs_per_s number?
---@field out_segs_per_s number?
---@field retrans_segs_per_s number?
---@field retrans_pct number?     retransmitted / sent segments
---@field in_errs_per_s number?
---@field out_rsts_per_s number?
---@field active_opens_per_s number?
---@field passive_opens_per_s number?
---@field attempt_fails_per_s number?
---@field estab_resets_per_s number?
---@field curr_estab integer?
---@field listen_overflows integer?  in the interval (as in tcpext)
---@field listen_drops integer?

---@class perf_manual.collectors.TcpExtRates
---@field listen_overflows integer?
---@field listen_drops integer?
---@field listen_overflows_per_s number?
---@field listen_drops_per_s number?
---@field timeouts_per_s number?
---@field syncookies_sent integer?
---@field backlog_drops integer?

---@class perf_manual.collectors.UdpRates
---@field in_errors_per_s number?
---@field rcvbuf_errors_per_s number?
---@field sndbuf_errors_per_s number?
---@field no_ports_per_s number?

---@class perf_manual.collectors.CgroupMemory
---@field version string       'v1' | 'v2'
---@field dir string
---@field usage_bytes number?
---@field limit_bytes number?  nil when unlimited
---@field unlimited boolean?
---@field max_usage_bytes number?
---@field failcnt integer?     v1
---@field events table?        v2 memory.events: low, high, max, oom, oom_kill
---@field oom_control table?   v1: oom_kill_disable, under_oom, oom_kill
---@field stat table?
---@field limit_hits integer?  v2 events.max / v1 failcnt
---@field oom_kills integer?   v2 events.oom_kill / v1 oom_control.oom_kill

---@class perf_manual.collectors.CgroupCpu
---@field version string
---@field dir string
---@field quota_us number?     nil when unlimited
---@field period_us number?
---@field nr_periods integer?
---@field nr_throttled integer?
---@field throttled_us number?
---@field usage_us number?

---@class perf_manual.collectors.CgroupMemoryRates
---@field usage_bytes number?
---@field limit_bytes number?
---@field usage_pct number?      of the limit
---@field limit_hits integer?    in the interval
---@field oom_kills integer?     in the interval
---@field oom_kills_total integer?
---@field under_oom boolean?

---@class perf_manual.collectors.CgroupCpuRates
---@field usage_pct number?      % of one core
---@field quota_cores number?
---@field throttled_pct number?  share of periods throttled
---@field nr_throttled integer?
---@field throttled_ms_per_s number?

---@class perf_manual.collectors.ThreadShares  fractions of thread-time, summing to 1
---@field running number
---@field runnable number
---@field sleeping number
---@field futex number
---@field disk number     D state
---@field other number
---@field unknown number  stat mode without a readable syscall file

---@class perf_manual.collectors.FutexAddr
---@field uaddr string        "0x…" futex word address in the target
---@field kind string         'lock' | 'wait' | 'other'
---@field mean_waiters number
---@field max_waiters integer
