---@meta
-- luacheck: no unused args, no unused, no max line length
--- perf_manual._c.cfi (runtime/cfi.c): the CFI compiler, unwind tables from
--- .eh_frame / .debug_frame. Environmental failures return nil, err, errno;
--- bad arguments raise.
error('perf_manual._c.cfi: this file only describes the C API')

---@class perf_manual.cfi.table
local tbl = {}

local cfi = {}

--- Size in bytes of one row as t:rows() packs it (12).
cfi.row_size = 12

--- Compiles the call-frame information of an x86-64 ELF object.
---@param path string
---@return perf_manual.cfi.table?, string? err, integer? errno
function cfi.compile(path) end

--- Loads a table saved by t:save(); with build_id, only if saved for it
--- (errno ESTALE otherwise; EBADMSG: not a table of this version).
---@param path string
---@param build_id string?
---@return perf_manual.cfi.table?, string? err, integer? errno
function cfi.load(path, build_id) end

--- The GNU build-id of an ELF object, lower-case hex.
---@param path string
---@return string?, string? err, integer? errno
function cfi.build_id(path) end

--- The PT_LOAD segments of an ELF object: what turns a mapping's file offset
--- into the table's link-time addresses.
---@param path string
---@return {offset: number, vaddr: number, size: number, exec: boolean}[]?, string? err, integer? errno
function cfi.loads(path) end

---@return {rows: integer, bytes: integer, base: number, build_id: string, fdes: integer, fdes_debug: integer, overlapping: integer, bad: integer, rbp_lost: integer, kinds: {rsp: integer, rbp: integer, plt: integer, signal: integer, ['end']: integer, unsupported: integer, none: integer}}
function tbl:info() end

--- The row covering pc (a link-time address), nil before the first row.
--- cfa: "rsp"|"rbp"|"plt"|"signal"|"end"|"unsupported"|"none".
---@param pc number
---@return {pc: number, cfa: string, cfa_offset: integer, rbp: string?, rbp_offset: integer?, plt_threshold: integer?}?
function tbl:lookup(pc) end

--- The rows packed as struct pm_cfi_row (runtime/cfi.h), for a BPF map.
---@return string
function tbl:rows() end

--- Writes the table to path through a temp file and a rename.
---@param path string
---@return true?, string? err, integer? errno
function tbl:save(path) end

function tbl:close() end
