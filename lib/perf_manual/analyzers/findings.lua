--- Findings from recorded results: a USE check, tracer and profiler
--- results, collector series. Plain tables in, findings out
--- ({resource=, metric=, value=, severity=, summary=, evidence=}).
--- The results come from perf_manual.store.results(dir) through `prepare`.
local hist = require('perf_manual.hist')
local util = require('perf_manual.util')
local use = require('perf_manual.analyzers.use')

local M = {}

-- thresholds a team may tune
M.thresholds = {
  io_p99_ms_fast = 1,        -- below this the disk answers fast: evidence against a disk problem
  io_p99_ms_medium = 10,     -- block I/O latency p99 worth a look
  io_p99_ms_high = 50,
  lock_wait_share_medium = 0.2,
  lock_wait_share_high = 0.5,
  hot_function_share = 0.3,  -- one function holding this share of on-CPU samples
}

local SEV = { HIGH = 'high', warn = 'medium' }

--- USE rows that are not ok.
function M.from_use(res)
  local out = {}
  if type(res) ~= 'table' or res.available == false then return out end
  for _, r in ipairs(res.rows or {}) do
    local sev = SEV[r.status]
    if sev then
      local why = type(r.why) == 'table' and table.concat(r.why, '; ') or ''
      out[#out + 1] = { resource = r.resource, metric = 'use', name = r.name, severity = sev,
        value = type(r.saturation) == 'table' and r.saturation.value or nil,
        summary = (r.name or r.resource) .. ': ' .. (why ~= '' and why or r.status),
        evidence = res.artifact }
    end
  end
  return out
end

-- p99 in ms of a row. Its buckets come first (the io tracer's log2 buckets of
-- microseconds, held to the row's max_ns): one rule (perf_manual.hist) for
-- every recording, whatever rule wrote its p99 field; then the p99 fields.
local function p99_ms(row)
  if type(row) ~= 'table' then return nil end
  if type(row.buckets) == 'table' and #row.buckets > 0 then
    local max = hist.fitting_max(row.buckets, row.max_ns and math.floor(row.max_ns / 1e3))
    local v = hist.quantile(row.buckets, 0.99, nil, max)
    if v then return v / 1e3 end
  end
  if row.p99_ms then return row.p99_ms end
  if row.p99_ns then return row.p99_ns / 1e6 end
  if row.p99_us then return row.p99_us / 1e3 end
  return nil
end
M.p99_ms = p99_ms

--- Findings from a tracer result (io, lock, offcpu, syscall).
function M.from_trace(kind, t)
  local out = {}
  if type(t) ~= 'table' or t.available == false then return out end
  local T = M.thresholds
  if kind == 'io' then
    for _, d in ipairs(t.devices or t.rows or {}) do
      local p = p99_ms(d)
      if p and p >= T.io_p99_ms_medium then
        out[#out + 1] = { resource = 'disk', metric = 'io_latency_p99_ms', value = p,
          severity = p >= T.io_p99_ms_high and 'high' or 'medium',
          summary = string.format('%s %s I/O latency p99 %.1f ms', tostring(d.name or d.device or d.dev or '?'),
            tostring(d.op or 'all'), p), evidence = t.artifact }
      end
    end
  elseif kind == 'lock' then
    local u = type(t.use) == 'table' and (t.use.utilisation or t.use.utilization)
    -- system-wide, "threads seen waiting" are mostly idle pools: judge a target only
    local of_target = type(t.use) == 'table' and tostring(t.use.utilisation_basis or ''):match('target')
    if u and of_target and u >= T.lock_wait_share_medium then
      out[#out + 1] = { resource = 'lock', metric = 'futex_wait_share', value = u,
        severity = u >= T.lock_wait_share_high and 'high' or 'medium',
        summary = string.format('threads spend %.0f%% of their time waiting on futexes', u * 100),
        evidence = t.artifact }
    end
  elseif kind == 'syscall' then
    local share = t.share_of_time
    if share and share > 0.5 then
      out[#out + 1] = { resource = 'disk', metric = 'syscall_time_share', value = share, severity = 'medium',
        summary = string.format('%.0f%% of syscall time in the traced calls', share * 100), evidence = t.artifact }
    end
  end
  return out
end

--- The hottest function of a profile result: {name, share} or nil.
function M.hot_function(p)
  if type(p) ~= 'table' or p.available == false then return nil end
  local top = p.top or p.functions
  if type(top) == 'table' and top.self then top = top.self end
  if type(top) == 'table' and top[1] then
    -- the hottest function that has a name
    local f
    for _, x in ipairs(top) do
      local n = tostring(x.name or x.func or x[1] or '')
      if n ~= '' and not n:match('^%[unknown') and not n:match('^bpf_prog_') then f = x break end
    end
    if not f then return nil end
    local share = f.share or (f.pct and f.pct / 100)
      or (f.samples and p.samples and p.samples > 0 and f.samples / p.samples)
    return { name = f.name or f.func or f[1], share = share }
  end
  if type(p.folded) == 'string' then
    -- leaf frames of folded stacks
    local counts, total = {}, 0
    for line in p.folded:gmatch('[^\n]+') do
      local stack, n = line:match('^(.*) (%d+)$')
      if stack then
        n = tonumber(n)
        local leaf = stack:match('([^;]+)$')
        counts[leaf] = (counts[leaf] or 0) + n
        total = total + n
      end
    end
    local best, bn = nil, 0
    for k, v in pairs(counts) do if v > bn then best, bn = k, v end end
    if best then return { name = best, share = total > 0 and bn / total or nil } end
  end
  return nil
end

function M.from_profile(p)
  local out = {}
  local hot = M.hot_function(p)
  if hot and hot.share and hot.share >= M.thresholds.hot_function_share then
    out[#out + 1] = { resource = 'cpu', metric = 'hot_function', value = hot.share, severity = 'medium',
      summary = string.format('%s holds %.0f%% of on-CPU samples', tostring(hot.name), hot.share * 100),
      evidence = p.artifact }
  end
  return out
end

--- The results of a data dir as perf_manual.store.results(dir) reads them,
--- ready for the analyzers here and in root_cause (the USE result
--- normalised). Changes `res` in place and returns it.
function M.prepare(res)
  res.traces = res.traces or {}
  res.profiles = res.profiles or {}
  if res.use then use.normalize(res.use) end
  return res
end

--- Every finding from prepared results.
function M.all(data)
  local out = {}
  local function add(list) for _, f in ipairs(list) do out[#out + 1] = f end end
  add(M.from_use(data.use))
  for _, k in ipairs(util.keys(data.traces)) do add(M.from_trace(k, data.traces[k])) end
  if data.profiles.cpu then add(M.from_profile(data.profiles.cpu)) end
  return out
end

return M
