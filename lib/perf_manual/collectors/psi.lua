--- Pressure stall information: /proc/pressure/{cpu,memory,io} and cgroup v2
--- *.pressure files.
---
--- A parsed file (perf_manual.collectors.Psi):
---   { some = { avg10=, avg60=, avg300= (percent), total= (µs stalled) },
---     full = { ... } or nil }   -- cpu on kernels < 5.13 has no "full" line
---
--- `sample()` → { time=, cpu=Psi?, memory=Psi?, io=Psi?, missing={res=why} }
--- `rates(prev, cur)` → { elapsed=, cpu=PsiRate?, memory=PsiRate?, io=PsiRate?, missing= }
---   PsiRate = { some_pct=, full_pct= (share of wall time stalled over the
---   interval, from total deltas, in percent), some_avg10=, full_avg10= }
local lpeg = require('lpeg')
local common = require('perf_manual.collectors.common')
local P, C, Cg, Ct, Cf = lpeg.P, lpeg.C, lpeg.Cg, lpeg.Ct, lpeg.Cf

local M = {}

local field = Cg(C(P('avg10') + 'avg60' + 'avg300' + 'total') * '=' * common.num)
local fields = Cf(Ct('') * (common.osp * field) ^ 1, rawset)
local line = Cg(C(P('some') + 'full') * common.sp * fields * common.osp * (common.nl + -P(1)))
local grammar = Cf(Ct('') * line ^ 1, rawset) * -P(1)

--- Parses the text of a pressure file.
---@return table? psi, string? err
function M.parse(text)
  local t = type(text) == 'string' and grammar:match(text)
  if not t or not t.some then return nil, 'not a pressure file' end
  return t
end

--- Reads and parses one pressure file: psi or nil, reason.
function M.read(path)
  return common.read_parse(path, M.parse)
end

M.root = '/proc/pressure'

--- System-wide pressure for cpu, memory and io.
---@param root string? directory holding cpu/memory/io (default /proc/pressure)
function M.sample(root)
  root = root or M.root
  local s = { time = common.now() }
  for _, res in ipairs({ 'cpu', 'memory', 'io' }) do
    local v, err = M.read(root .. '/' .. res)
    if v then s[res] = v else common.miss(s, res, err) end
  end
  return s
end

--- Stall shares between two parsed files of the same resource.
---@return table? rate  { some_pct, full_pct, some_avg10, full_avg10 }
function M.rate(prev, cur, elapsed)
  if not prev or not cur or not elapsed then return nil end
  local r = { some_avg10 = cur.some and cur.some.avg10, full_avg10 = cur.full and cur.full.avg10 }
  local s = common.rate(prev.some and prev.some.total, cur.some and cur.some.total, elapsed)
  if s then r.some_pct = s / 1e4 end -- µs per s → percent
  local f = common.rate(prev.full and prev.full.total, cur.full and cur.full.total, elapsed)
  if f then r.full_pct = f / 1e4 end
  return r
end

function M.rates(prev, cur)
  local e = common.elapsed(prev, cur)
  local out = { elapsed = e }
  for _, res in ipairs({ 'cpu', 'memory', 'io' }) do
    local r = M.rate(prev[res], cur[res], e)
    if r then out[res] = r
    else
      common.miss(out, res, (cur.missing and cur.missing[res]) or (prev.missing and prev.missing[res]) or 'no interval')
    end
  end
  return out
end

return M
