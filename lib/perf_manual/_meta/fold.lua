---@meta
-- luacheck: no unused args, no unused, no max line length
--- perf_manual._c.fold (runtime/fold.c, fold_perf.c, fold_svg.c): stack
--- profiles in C. Use it through perf_manual.fold (reading and writing) and
--- perf_manual.report.flamegraph (the SVG page, palettes by name).
--- Unreadable input and bad lines in strict mode return nil, err; bad
--- arguments, a closed profile and out of memory raise.
error('perf_manual._c.fold: this file only describes the C API')

---@class perf_manual.fold.Stats
---@field samples number      samples read (folded: the sum of the counts)
---@field lines number        lines read
---@field bad number          bad lines, skipped (every one, kept or not)
---@field errors {line: number, reason: string, text: string}[]  the first 100 bad lines (text cut at 120 bytes)
---@field filtered_events number  perf script samples of another event type than the first, left out

---@alias perf_manual.fold.Input string|{path: string}|{fd: integer}  the text, or a file / fd read in C

---@class perf_manual.fold.PerfOpts
---@field pid boolean?      root frame "comm-PID"
---@field tid boolean?      root frame "comm-PID/TID"
---@field kernel boolean?   kernel frames get "_[k]"
---@field jit boolean?      frames of /tmp/perf-N.map get "_[j]"
---@field all boolean?      kernel + jit
---@field addrs boolean?    "[module <addr>]" for unknown symbols
---@field strict boolean?   the first bad line fails the read
---@field threads integer?  folding threads (default one per CPU, at most 8)

---@class perf_manual.fold.Palette  (as perf_manual.report.flamegraph.compile_palette makes it)
---@field root integer[]  {r, g, b} of the "all" frame and of frames no rule matches
---@field rules {kinds: string?, contains: string?, r: number[], g: number[], b: number[]}[]?  first match wins; kinds: letters of _[x] suffixes ('u' none); r/g/b = {base, span, byte 1..3}: base + span * hash byte / 255; at most 64
---@field diff {grow: integer[], shrink: integer[], fade: number}?  differential: coloured by the change of each frame's self share against opts.before

---@class perf_manual.fold.SvgOpts
---@field palette perf_manual.fold.Palette
---@field width number?         pixels (1200)
---@field xpad number?          (10)
---@field frame_height number?  (16)
---@field top number?           y of the top row (60)
---@field font_size number?     (12)
---@field font_width number?    (0.59, of the font size)
---@field minwidth number?      narrowest frame drawn, pixels (0.1)
---@field inverted boolean?     icicle: roots at the top
---@field unit string?          what a count is ("samples"); a plain word
---@field before perf_manual.fold.Profile?  the profile a diff palette compares against (required then)

---@class perf_manual.fold.SvgInfo
---@field frames number
---@field pruned_frames number   narrower than minwidth, not drawn
---@field pruned_samples number  their samples (still in their parents' widths)
---@field max_depth number       -1 when nothing was drawn
---@field total number
---@field bottom number          y below the last row

--- A stack -> count table (userdata; closed on __gc).
---@class perf_manual.fold.Profile
local Profile = {}

local fold = {}

--- A new, empty profile.
---@return perf_manual.fold.Profile
function fold.new() end

--- Folds `perf script` text the way stackcollapse-perf.pl does.
---@param input perf_manual.fold.Input
---@param opts perf_manual.fold.PerfOpts?
---@return perf_manual.fold.Stats?, string? err  "line N: why" (strict) or "cannot read PATH: why"
function Profile:add_perf_script(input, opts) end

--- Reads folded lines "frame;frame;... COUNT".
---@param input perf_manual.fold.Input
---@param opts {strict: boolean?}?
---@return perf_manual.fold.Stats?, string? err
function Profile:add_folded(input, opts) end

--- Reads either format, guessed from the first data line (folded when it
--- ends in " COUNT" and does not start with whitespace).
---@param input perf_manual.fold.Input
---@param opts perf_manual.fold.PerfOpts?
---@return perf_manual.fold.Stats?, string format_or_err, string? format  stats, "folded"|"perf" | nil, err[, format]
function Profile:add_auto(input, opts) end

--- Adds count (default 1, an integer 0..2^53) to one stack.
---@param stack string
---@param count number?
function Profile:add(stack, count) end

--- Adds every stack of other (times scale, rounded; default 1) to this one.
---@param other perf_manual.fold.Profile
---@param scale number?
function Profile:merge(other, scale) end

---@return number  the sum of the counts
function Profile:total() end

---@return number  distinct stacks
function Profile:unique() end

---@param stack string
---@return number  its count, 0 when absent
function Profile:count(stack) end

---@return string  "stack count\n" lines sorted by bytes (stackcollapse's order)
function Profile:folded() end

---@return {[1]: string, [2]: number}[]  {stack, count} in the same order
function Profile:stacks() end

--- The flame-graph frames of the profile, one <g> per frame.
---@param opts perf_manual.fold.SvgOpts
---@return string svg_fragment, perf_manual.fold.SvgInfo
function Profile:svg_frames(opts) end

--- Frees the table; idempotent; also run by __gc.
function Profile:close() end

return fold
