---@meta
-- luacheck: no unused args, no unused, no max line length
--- perf_manual._c.sym (runtime/sym.c): ELF and kallsyms symbol tables.
--- Environmental failures return nil, err, errno; bad arguments raise.
error('perf_manual._c.sym: this file only describes the C API')

---@class perf_manual.sym.elf
local elf = {}

---@class perf_manual.sym.ksyms
local ksyms = {}

local sym = {}

--- Reads an ELF file's .symtab and .dynsym functions, PT_LOAD segments,
--- build-id, .gnu_debuglink and a frame-pointer check of function prologues.
---@param path string
---@return perf_manual.sym.elf?, string? err, integer? errno
function sym.open_elf(path) end

--- Loads the text symbols of /proc/kallsyms (or `path`).
---@param path string?
---@return perf_manual.sym.ksyms?, string? err, integer? errno
function sym.load_kallsyms(path) end

--- A packed array of native u64 (a BPF stack map value) to addresses, up to
--- the first 0; addresses >= 2^53 come back as "0x…" strings.
---@param bytes string
---@param max integer?
---@return (number|string)[]
function sym.unpack(bytes, max) end

--- zlib CRC-32 of a file (the checksum .gnu_debuglink records).
---@param path string
---@return number?, string? err, integer? errno
function sym.crc32_file(path) end

---@return {path: string, type: string, build_id: string?, debuglink: string?, debuglink_crc: number?, has_symtab: boolean, has_dynsym: boolean, nsyms: integer, fp_checked: integer, fp_with: integer, loads: {vaddr: number, offset: number, filesz: number, memsz: number, exec: boolean}[]}
function elf:info() end

--- Symbol covering a link-time address.
---@param vaddr number|string
---@return string? name, number? offset
function elf:lookup(vaddr) end

--- Data object (STT_OBJECT/STT_COMMON) covering a link-time address, read
--- from the file's .symtab/.dynsym on each call, and the section holding it.
---@param vaddr number|string
---@return string|false name, number offset, string? section
function elf:lookup_data(vaddr) end

--- File offset to link-time address through the PT_LOAD segment holding it.
---@param offset number
---@return number?
function elf:vaddr(offset) end

--- Batch: file offsets (address - map start + map offset) to names, false
--- where no symbol covers one. `via` converts offsets with its segments.
---@param offsets number[]
---@param via perf_manual.sym.elf?
---@return (string|false)[]
function elf:resolve(offsets, via) end

--- Idempotent; also run by __gc.
function elf:close() end

---@return {nsyms: integer, restricted: boolean, core_only: boolean}
function ksyms:info() end

--- Saves the core kernel part (below _etext) in a binary form that
--- load_kallsyms reads back in a few ms; mode 0600. Raises without _etext.
---@param path string
---@return true?, string? err, integer? errno
function ksyms:save(path) end

---@param addr number|string
---@return string? name, number? offset
function ksyms:lookup(addr) end

--- A packed u64 stack to names (false where unknown), innermost first, and
--- how many addresses lay past a core-only (saved) table.
---@param bytes string
---@return (string|false)[], integer beyond
function ksyms:resolve_packed(bytes) end

function ksyms:close() end

return sym
