--- Shared pieces of the /proc collectors: LPeg building blocks compiled once,
--- file reading that keeps the reason a file could not be read, the clock,
--- and delta/rate helpers that propagate "missing" instead of inventing 0.
local lpeg = require('lpeg')
local sys = require('perf_manual.sys')
local P, R, S, C, Ct, Cg, Cf = lpeg.P, lpeg.R, lpeg.S, lpeg.C, lpeg.Ct, lpeg.Cg, lpeg.Cf

local M = {}

local digit = R('09')
M.sp = S(' \t') ^ 1
M.osp = S(' \t') ^ 0
M.nl = P('\n')
M.rest = (1 - M.nl) ^ 0 -- rest of a line, not including the newline
-- one whole line (never empty, so it can sit in a loop)
M.skip_line = (1 - M.nl) ^ 1 * M.nl ^ -1 + M.nl
M.word = (1 - S(' \t\n:')) ^ 1
-- Unsigned integers (counters) and signed decimals; tonumber keeps 64-bit
-- counters as doubles, exact up to 2^53, which is enough for rates.
M.uint = C(digit ^ 1) / tonumber
M.num = C(P('-') ^ -1 * digit ^ 1 * (P('.') * digit ^ 1) ^ -1) / tonumber

--- Grammar for "key value" lines (vmstat, cpu.stat, memory.stat, memory.events):
--- a table key -> number; lines that do not fit are skipped.
M.kv_grammar = Cf(Ct('') * (Cg(C(M.word) * M.sp * M.num * M.osp * (M.nl + -P(1))) + M.skip_line) ^ 0, rawset) * -P(1)

function M.parse_kv(text)
  if type(text) ~= 'string' then return nil, 'no text' end
  return M.kv_grammar:match(text)
end


--- Monotonic seconds (float).
function M.now()
  return sys.now()
end

--- The clock ticks per second used by /proc/PID/stat times.
function M.clk_tck()
  return sys.info().clk_tck
end

function M.ncpu()
  return sys.info().ncpu
end

--- Reads a whole (pseudo) file: text, or nil and a short reason
--- ("not present", "permission denied", or the OS message).
function M.read(path)
  local f, err, code = io.open(path, 'rb')
  if not f then
    if code == 2 then return nil, 'not present: ' .. path end
    if code == 13 or code == 1 then return nil, 'permission denied: ' .. path end
    return nil, tostring(err)
  end
  local s, rerr = f:read('*a')
  f:close()
  if not s then
    -- /proc/PID/io opens but refuses the read to a non-owner
    if tostring(rerr):match('ermission denied') then return nil, 'permission denied: ' .. path end
    return nil, path .. ': ' .. tostring(rerr)
  end
  return s
end

--- Reads path and parses it with parse; returns the value or nil, reason.
function M.read_parse(path, parse)
  local text, err = M.read(path)
  if not text then return nil, err end
  local v, perr = parse(text)
  if v == nil then return nil, path .. ': ' .. tostring(perr or 'unparsable') end
  return v
end

--- Per-second rate of a counter: nil when either side is missing, when
--- elapsed is not positive, or when the counter went backwards (reset).
function M.rate(a, b, elapsed)
  if a == nil or b == nil or not elapsed or elapsed <= 0 then return nil end
  if b < a then return nil end
  return (b - a) / elapsed
end

function M.delta(a, b)
  if a == nil or b == nil or b < a then return nil end
  return b - a
end

--- Elapsed seconds between two snapshots (their `time` fields).
function M.elapsed(prev, cur)
  if not prev or not cur or not prev.time or not cur.time then return nil end
  local e = cur.time - prev.time
  if e <= 0 then return nil end
  return e
end

--- Records why `field` is missing in t.missing (creating it).
function M.miss(t, field, why)
  t.missing = t.missing or {}
  t.missing[field] = why or 'not measured'
end

--- Copies the missing entries of snapshots into the result, prefixed.
function M.carry_missing(out, snap, prefix)
  if snap and snap.missing then
    for k, v in pairs(snap.missing) do M.miss(out, (prefix or '') .. k, v) end
  end
end

return M
