---@meta
-- luacheck: no unused args, no unused, no max line length
--- API of the native module perf_manual._c.bpf (runtime/bpf.c), re-exported
--- with argument checks by perf_manual.bpf. Stubs only: the bodies are in C.
---
--- Two error channels: bad arguments and closed handles raise; environmental
--- failures return `nil, "bpf: <op> <name>: <why>", errno`.
---
--- Conventions shared with bpf/common.h:
--- * every object has rodata `targ_tgid`, `targ_pid`, `targ_cgroup_id`
---   (0 = no filter), set with `obj:set_config{}` before `obj:load()`;
--- * every object has a per-CPU `pm_stats` map (events, lost, missed) read by
---   `obj:stats()` / `obj:lost()`;
--- * map values are made of u64 counters, so per-CPU copies are summed word
---   by word (`read{percpu = "list"}` returns the copies instead).
local bpf = {}

---@return boolean ok, string? why  one line: what is missing and what to do.
--- Mounts tracefs at /sys/kernel/tracing when it is missing and we are root.
function bpf.available() end

---@return string[] names of the embedded objects (bpf/<name>.bpf.c)
function bpf.objects() end

---@param name string embedded object name
---@return perf_manual.bpf.Object?, string? err, integer? errno
function bpf.open(name) end

---@return string? path of the mounted tracefs
function bpf.tracefs() end

---@return table<integer, string> syscall number -> name (from the kernel headers at build time)
function bpf.syscall_names() end

---@return integer number of possible CPUs (copies in a per-CPU value)
function bpf.ncpu() end

--- Whether CO-RE uses the build's cut-down kernel BTF (the kernel the
--- binary was built on) instead of parsing all of /sys/kernel/btf/vmlinux.
---@return boolean, string? why  why it does not
function bpf.min_btf() end

--- Layout of a struct as the BPF object was compiled (its BTF): FFI mirrors
--- are checked against it.
---@param object string
---@param type_name string "struct x" or "x"
---@return {size: integer, members: table<string, integer>}?
function bpf.btf_type(object, type_name) end

--- Turns BPF program run-time accounting (BPF_ENABLE_STATS, system-wide) on
--- or off. It costs two clock reads per program run, so tracers sample it in
--- short windows (perf_manual.tracers.base.stats_tick) rather than keep it on.
---@param on boolean
---@return true?, string? err, integer? errno
function bpf.stats_enable(on) end

--- An enum of the running kernel, from /sys/kernel/btf/vmlinux (parsed once).
---@param name string e.g. "skb_drop_reason"
---@return table<integer, string>?, string? err
function bpf.kernel_enum(name) end

--- How many arguments a raw tracepoint passes on the running kernel
--- (parameters of its btf_trace_<tp> prototype, less the data pointer).
---@param tp string e.g. "tcp_retransmit_skb"
---@return integer?, string? err
function bpf.kernel_tp_nargs(tp) end

---@class perf_manual.bpf.Object
local Object = {}

--- Sets `const volatile` (.rodata), .data or .bss variables by name, before load.
--- Numbers and booleans for scalars, binary strings for arrays. Unknown name raises.
---@param cfg table<string, number|boolean|string>
function Object:set_config(cfg) end

--- Whether a program is loaded (choose fallbacks before load).
---@param prog string
---@param on boolean
function Object:autoload(prog, on) end

---@return {name: string, section: string, kind: string, autoload: boolean}[]
function Object:programs() end

--- Loads into the kernel. Enables BPF_ENABLE_STATS (program run time) unless
--- opts.stats == false.
---@param opts {stats: boolean?}?
---@return true?, string? err, integer? errno
function Object:load(opts) end

--- Runs an iterator program (SEC("iter/tcp") ...) once over all it walks;
--- its results land in its maps. Returns the bytes of seq output it wrote.
---@param prog string
---@return integer?, string? err, integer? errno
function Object:run_iter(prog) end

--- Attaches every loaded program whose section says where (tp, raw_tp,
--- tp_btf, fentry...), or only the named ones. All or nothing.
---@param progs string[]?
---@return true?, string? err, integer? errno
function Object:attach(progs) end

--- Opens a sampling perf event and attaches prog to it (the profiler).
---@param prog string
---@param opts {cpu: integer?, pid: integer?, freq: integer?, period: integer?, type: "software"|"hardware"|nil, config: string|integer|nil}
---@return true?, string? err, integer? errno
function Object:attach_perf_event(prog, opts) end

--- Before load: a map's max_entries (a map a run will not use is made small).
---@param map string
---@param max_entries integer
function Object:resize(map, max_entries) end

--- Attaches prog to a point named at run time (probe.bpf.c's programs); call
--- again for more points. uprobe: binary, func (ELF symbol) and/or offset,
--- retprobe, pid (-1: every process). usdt: binary, provider, name, pid.
--- tracepoint: category, name. raw_tp: name.
---@param prog string
---@param opts {kind: "uprobe"|"usdt"|"tracepoint"|"raw_tp", binary: string?, func: string?, offset: integer?, retprobe: boolean?, pid: integer?, provider: string?, category: string?, name: string?}
---@return true?, string? err, integer? errno
function Object:attach_probe(prog, opts) end

--- Removes every attachment; maps stay readable.
function Object:detach() end

--- Attach path per attached program and the programs' own cost.
--- stats: accounting is on now; run_time_ns / run_cnt (counted only while it
--- is on) are nil (not measured) when it was never on.
---@return {name: string, stats: boolean, attach: table<string, string>, progs: table<string, {kind: string, run_time_ns: number?, run_cnt: number?, recursion_misses: number}>, run_time_ns: number?, run_cnt: number?}
function Object:info() end

---@param name string
---@return perf_manual.bpf.Map?, string? err
function Object:map(name) end

--- Instruction pointers of a stack id in a BPF_MAP_TYPE_STACK_TRACE map, as
--- numbers (inexact above 2^53) and as the raw u64 bytes.
---@return number[]?, string raw_or_err
function Object:stack(map_name, id) end

---@param map_name string a BPF_MAP_TYPE_RINGBUF map
---@return perf_manual.bpf.Ringbuf?, string? err
function Object:ringbuf(map_name) end

---@return {events: number, lost: number, missed: number}? nil when the object has no pm_stats
function Object:stats() end

---@return number events lost in the kernel
function Object:lost() end

---@return {size: integer, members: table<string, integer>}?
function Object:btf_type(type_name) end

--- Detaches and frees everything. Idempotent; also __gc.
function Object:close() end

---@class perf_manual.bpf.Map
local Map = {}

--- Every entry. keys and values are binary strings.
---@param opts {clear: boolean?, nonzero: boolean?, percpu: "sum"|"list"|nil}?
---@return {key: string, value: string|string[]}[]?, string? err
function Map:read(opts) end

---@param key string|integer
---@return string|string[]|nil value (nil when absent)
function Map:lookup(key, opts) end

---@return true?, string? err
function Map:update(key, value) end

--- Writes consecutive values of an array map from index `first` in batches
--- (`bytes` holds whole values): an unwind table's rows in one call.
---@param first integer
---@param bytes string
---@return true?, string? err
function Map:put_array(first, bytes) end

---@return boolean? deleted, string? err
function Map:delete(key) end

---@return integer entries removed or zeroed
function Map:clear() end

---@return {type: string, key_size: integer, value_size: integer, max_entries: integer, percpu: boolean, ncpu: integer}
function Map:info() end

---@class perf_manual.bpf.Ringbuf
local Ringbuf = {}

--- Drains up to max_events records (in C), waiting up to timeout_ms for the first.
---@param timeout_ms integer? default 0
---@param max_events integer? default 4096
---@return string[]?, string? err
function Ringbuf:poll(timeout_ms, max_events) end

return bpf
