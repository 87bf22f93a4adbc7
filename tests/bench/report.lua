-- Report generation on a big investigation: a 50,000-stack CPU profile and
-- an hour of 1 s samples (6 metrics), Markdown and self-contained HTML.
-- Peer in the same run: only reading and parsing the same inputs (cjson +
-- perf_manual.fold), so the figure says what the report itself costs.
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local report = require('perf_manual.report')

local dir = os.tmpname()
os.remove(dir)
os.execute(string.format("mkdir -p '%s/raw_data' '%s/analysis'", dir, dir))

-- an hour of 1 s samples
local f = assert(io.open(dir .. '/raw_data/collect-basic.jsonl', 'w'))
local rnd = require('perf_manual.analyzers.stats').rng(7)
for t = 0, 3599 do
  f:write(util.json_encode({ t = t, cpu = { busy_pct = 40 + rnd(40), procs_running = rnd(6), load1 = 2 + rnd(100) / 50 },
    psi = { memory = { some_pct = rnd(10) / 10 } }, disk = { sda = { util_pct = rnd(100), await_ms = rnd(20) } } }), '\n')
end
f:close()
-- 50,000 distinct stacks, 6 to 30 frames deep, over 400 function names
f = assert(io.open(dir .. '/raw_data/profile-cpu.folded', 'w'))
for i = 1, 50000 do
  local depth = 6 + rnd(24)
  local frames = { 'app' }
  for d = 1, depth do frames[#frames + 1] = string.format('fn_%d_%d', d, (i * 7 + d * 13) % 400) end
  f:write(table.concat(frames, ';'), ' ', rnd(1000), '\n')
end
f:close()
os.execute(string.format("cp '%s/tests/fixtures/report/before/use-check.json' '%s/tests/fixtures/report/before/red-check.json' '%s/raw_data/'",
  require('perf_manual._host').root, require('perf_manual._host').root, dir))

local function time(fn, n)
  local best = math.huge
  for _ = 1, n or 3 do
    collectgarbage('collect')
    local t0 = sys.now()
    fn()
    local dt = sys.now() - t0
    if dt < best then best = dt end
  end
  return best
end

local peer = time(function()
  local cjson = require('cjson')
  for line in io.lines(dir .. '/raw_data/collect-basic.jsonl') do cjson.decode(line) end
  assert(require('perf_manual.fold').load(dir .. '/raw_data/profile-cpu.folded'))
end)
local html_bytes, md_bytes
local t_html = time(function()
  local ds = assert(report.load(dir))
  html_bytes = #report.render(ds, { format = 'technical', output = 'html' })
end)
local t_md = time(function()
  local ds = assert(report.load(dir))
  local text = report.render(ds, { format = 'technical', output = 'md', assets = 'charts' })
  md_bytes = #text
end)
local t_cli = time(function()
  assert(os.execute(string.format("%s/bin/perf_manual report '%s' --output '%s/r.html' >/dev/null",
    require('perf_manual._host').root, dir, dir)) == 0)
end, 1)
print('report generation: 50,000-stack profile + 3,600 samples x 6 metrics (best of 3)')
print(string.format('  read + parse inputs only (peer)   %7.3f s', peer))
print(string.format('  technical HTML (in process)       %7.3f s  (%.1fx the peer, %s)', t_html, t_html / peer, util.fmt_bytes(html_bytes)))
print(string.format('  technical Markdown + chart files  %7.3f s  (%.1fx the peer, %s)', t_md, t_md / peer, util.fmt_bytes(md_bytes)))
print(string.format('  perf_manual report --output .html %7.3f s  (whole command, process start included)', t_cli))
print(string.format('  budget 1 s: %s', t_cli < 1 and 'met' or 'NOT met'))
os.execute("rm -rf '" .. dir .. "'")
