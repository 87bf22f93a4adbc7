-- Investigation store and knowledge base speed:
--   search over 10,000 stored investigations (target: under 50 ms), next to
--   grep over the same metadata files as the naive peer;
--   `show` of an investigation holding 100 MB of raw data (target: under
--   100 ms, it never reads the raw data), next to reading that data once
--   and to `perf_manual --version` (the start-up floor).
-- Run: tests/bench/run.sh store   (or bin/perf_manual --lua tests/bench/store.lua [n])
local sys = require('perf_manual._c.sys')
local store = require('perf_manual.store')
local kb = require('perf_manual.kb')
local root = require('perf_manual._host').root
local N = tonumber(arg and arg[1]) or 10000

local dir = root .. '/build/bench-store-' .. sys.getpid()
os.execute('rm -rf ' .. dir)
assert(store.mkdir_p(dir))

local function median_spawn(argv, n)
  local t = {}
  for i = 1, n do
    local t0 = sys.now()
    local pid = assert(sys.spawn(argv, { stdout = 'null', stderr = 'null' }))
    local how = sys.wait(pid)
    t[i] = sys.now() - t0
    assert(how == 'exited', table.concat(argv, ' '))
  end
  table.sort(t)
  return t[math.ceil(#t / 2)] * 1e3, t[math.max(1, math.ceil(#t * 0.9))] * 1e3
end

-- a corpus of N investigations with varied words
math.randomseed(7)
local services = { 'checkout', 'ingest', 'billing', 'search', 'api', 'batch', 'report', 'auth', 'cart', 'feed' }
local symptoms = { 'p99 latency tripled', 'throughput dropped by half', 'workers stall every few seconds',
  'pods restart with OOM kills', 'CPU pegged at 100%', 'timeouts during backups', 'slow after the deploy' }
local causes = { 'fsync after every record on a saturated disk', 'lock contention on the global queue mutex',
  'N+1 query pattern', 'memory leak in the session cache', 'single-threaded rendering is CPU-bound',
  'run queue saturated by a noisy neighbour', 'swap storm under memory pressure' }
local res_of = { 'disk', 'lock', 'cpu', 'memory', 'cpu', 'cpu', 'memory' }
local t0 = sys.now()
for i = 1, N do
  local s = services[math.random(#services)]
  local c = math.random(#causes)
  local id = string.format('2025-%02d-%02d_%s-%05d', 1 + i % 12, 1 + i % 28, s, i)
  local d = dir .. '/' .. id
  assert(store.mkdir_p(d))
  local f = assert(io.open(d .. '/metadata.yaml', 'w'))
  f:write(store.yaml_dump({ id = id, name = s, symptom = s .. ' ' .. symptoms[math.random(#symptoms)],
    status = 'complete',
    root_cause = causes[c], verdict = res_of[c],
    findings = { { resource = res_of[c], severity = 'high', summary = res_of[c] .. ' saturated in ' .. s } },
    notes = { 'ticket PERF-' .. i }, hypotheses = {}, checklist = {}, timeline = {} }))
  f:close()
end
local gen = sys.now() - t0
t0 = sys.now()
local r = store.reindex(dir)
local reindex = sys.now() - t0
print(string.format('store: corpus of %d investigations (generated in %.1f s); reindex %.2f s', r.indexed, gen,
  reindex))

local queries = { 'fsync latency', 'lock contention mutex', 'OOM kills memory leak', 'checkout slow after the deploy',
  'CPU pegged', 'timeouts backups disk', 'swap storm', 'throughput dropped' }
local lib = {}
for _ = 1, 5 do
  for _, q in ipairs(queries) do
    local s0 = sys.now()
    local hits = kb.search(dir, q)
    lib[#lib + 1] = sys.now() - s0
    assert(#hits > 0, q)
  end
end
table.sort(lib)
print(string.format('  search in-process (kb.search, top 10)    median %7.2f ms   p90 %7.2f ms   over %d '
  .. 'investigations',
  lib[math.ceil(#lib / 2)] * 1e3, lib[math.ceil(#lib * 0.9)] * 1e3, N))
local m, p90 = median_spawn({ root .. '/bin/perf_manual', 'search', '--store', dir, 'fsync latency' }, 21)
print(string.format('  perf_manual search (whole command)       median %7.2f ms   p90 %7.2f ms   target < 50 ms', m,
  p90))
m, p90 = median_spawn({ 'sh', '-c', 'grep -ril fsync ' .. dir .. ' >/dev/null' }, 5)
print(string.format('  peer: grep -ril fsync (no ranking)       median %7.2f ms   p90 %7.2f ms', m, p90))

-- show of an investigation with 100 MB of raw data
local inv = store.create(dir, 'big raw data', { date = '2026-01-01', no_lock = true })
inv.no_index = true
inv:save_metadata({ name = 'big', symptom = 'big raw data', status = 'complete', findings = {}, hypotheses = {},
  checklist = {}, timeline = {} })
local line = '{"t":"2026-01-01T00:00:00.000Z","rates":{"busy_pct":42.5}}\n'
local chunk = string.rep(line, math.ceil(2 ^ 20 / #line)):sub(1, 2 ^ 20)
for i = 1, 100 do
  local f = assert(io.open(inv.dir .. string.format('/raw_data/series-%03d.jsonl', i), 'w'))
  f:write(chunk); f:close()
end
local total = 0
for _, fi in ipairs(inv:files()) do total = total + fi.bytes end
m, p90 = median_spawn({ root .. '/bin/perf_manual', 'show', '--store', dir, inv.id }, 21)
print(string.format('  perf_manual show (%d MiB raw data)      median %7.2f ms   p90 %7.2f ms   target < 100 ms',
  total / 2^20, m, p90))
m, p90 = median_spawn({ 'sh', '-c', 'cat ' .. inv.dir .. '/raw_data/* >/dev/null' }, 5)
print(string.format('  peer: cat of the raw data (page cache)   median %7.2f ms   p90 %7.2f ms', m, p90))
m, p90 = median_spawn({ root .. '/bin/perf_manual', '--version' }, 21)
print(string.format('  floor: perf_manual --version             median %7.2f ms   p90 %7.2f ms', m, p90))
os.execute('rm -rf ' .. dir)
