-- Start-up time of `perf_manual --version`, median over many runs, next to
-- `luajit -e ''` measured the same way in the same run as the floor.
-- Run: tests/bench/run.sh startup  (or bin/perf_manual --lua tests/bench/startup.lua [runs])
local sys = require('perf_manual._c.sys')
local root = require('perf_manual._host').root
local runs = tonumber(arg and arg[1]) or 200

local function time_runs(argv, n)
  local t = {}
  for i = 1, n do
    local t0 = sys.now()
    local pid = assert(sys.spawn(argv, { stdout = 'null', stderr = 'null' }))
    local how, code = sys.wait(pid)
    t[i] = sys.now() - t0
    if how ~= 'exited' or code ~= 0 then error(table.concat(argv, ' ') .. ': ' .. how .. ' ' .. tostring(code)) end
  end
  table.sort(t)
  return t
end

local function pct(t, q) return t[math.max(1, math.ceil(q * #t))] end

local cases = {
  { 'perf_manual --version', { root .. '/bin/perf_manual', '--version' } },
  { "luajit -e ''", { 'luajit', '-e', '' } },
}
-- warm the page cache, then interleave the two so drift hits both alike
for _, c in ipairs(cases) do time_runs(c[2], 5) end
local res = { {}, {} }
local batch = 20
for _ = 1, math.ceil(runs / batch) do
  for i, c in ipairs(cases) do
    for _, v in ipairs(time_runs(c[2], batch)) do res[i][#res[i] + 1] = v end
  end
end
for i in ipairs(res) do table.sort(res[i]) end
print(string.format('startup: %d runs each', #res[1]))
for i, c in ipairs(cases) do
  local t = res[i]
  print(string.format('  %-24s median %6.2f ms   p10 %6.2f ms   p90 %6.2f ms', c[1],
    pct(t, 0.5) * 1e3, pct(t, 0.1) * 1e3, pct(t, 0.9) * 1e3))
end
local m, floor = pct(res[1], 0.5) * 1e3, pct(res[2], 0.5) * 1e3
print(string.format('  perf_manual --version: %.2f ms median, %.2f ms above the luajit floor (%.1fx); '
  .. 'target < 15 ms: %s',
  m, m - floor, m / floor, m < 15 and 'met' or 'NOT met'))
