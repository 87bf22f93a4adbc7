--- The screen of `perf_manual top`, as plain lines: pure (a frame from
--- perf_manual.measure.top and a view in, lines out), so the layout is
--- tested at any width and height without a terminal.
---
---   local lines = top.frame(f, { sort = 'cpu', filter = 'nginx' }, 120, 40)
---   top.json(f, view)   -- the same frame as a JSON-ready table
local util = require('perf_manual.util')
local use = require('perf_manual.analyzers.use')

local M = {}

--- The process table's columns, in screen order. `sort`: the key that sorts
--- by it (and the letter that picks it); `fmt`: value -> text.
local function num(fmt) return function(v) return v and string.format(fmt, v) or '-' end end

local function bytes(v)
  if not v then return '-' end
  local units = { 'B', 'K', 'M', 'G', 'T' }
  local i = 1
  while v >= 1024 and i < #units do v = v / 1024; i = i + 1 end
  return string.format(v < 10 and i > 1 and '%.1f%s' or '%.0f%s', v, units[i])
end

local function rate(v)
  if not v then return '-' end
  if v >= 1e6 then return string.format('%.1fM', v / 1e6) end
  if v >= 1e4 then return string.format('%.0fk', v / 1e3) end
  return string.format('%.0f', v)
end

M.COLUMNS = {
  { id = 'pid', head = 'PID', width = 7, fmt = num('%d') },
  { id = 'comm', head = 'COMM', width = 15, left = true },
  { id = 'state', head = 'S', width = 1, left = true },
  { id = 'threads', head = 'THR', width = 4, fmt = num('%d') },
  { id = 'cpu_pct', head = 'CPU%', width = 6, fmt = num('%.1f'), sort = 'cpu', key = 'c' },
  { id = 'runq_ms', head = 'RUNQms/s', width = 9, fmt = num('%.1f'), sort = 'runq', key = 'r' },
  { id = 'offcpu_ms', head = 'OFFCPUms/s', width = 11, fmt = num('%.0f'), sort = 'offcpu', key = 'o' },
  { id = 'iolat_ms', head = 'IOLATms', width = 8, fmt = num('%.2f'), sort = 'iolat', key = 'i' },
  { id = 'iops', head = 'IO/s', width = 5, fmt = rate },
  { id = 'sysc', head = 'SYSC/s', width = 7, fmt = rate, sort = 'sysc', key = 's' },
  { id = 'rss_bytes', head = 'RSS', width = 6, fmt = bytes },
}

--- Sort keys in cycling order, with their column.
M.SORTS = {}
local by_sort = {}
for _, c in ipairs(M.COLUMNS) do
  if c.sort then M.SORTS[#M.SORTS + 1] = c.sort; by_sort[c.sort] = c end
end

--- The column a sort key orders by, or nil.
function M.sort_column(key) return by_sort[key] end

--- The sort key a letter picks (c r o i s), or nil.
function M.sort_for_key(ch)
  for _, c in ipairs(M.COLUMNS) do if c.key == ch then return c.sort end end
end

--- The next (dir = 1) or previous (-1) sort key after `key`.
function M.cycle_sort(key, dir)
  for i, k in ipairs(M.SORTS) do
    if k == key then return M.SORTS[(i - 1 + dir) % #M.SORTS + 1] end
  end
  return M.SORTS[1]
end

--- Rows sorted by a sort key, biggest first; unmeasured values (nil) last;
--- ties by pid. Sorts in place and returns rows.
function M.sort(rows, key)
  local col = assert(by_sort[key], 'top: unknown sort key ' .. tostring(key)).id
  table.sort(rows, function(a, b)
    local x, y = a[col], b[col]
    if x ~= y then
      if x == nil then return false end
      if y == nil then return true end
      return x > y
    end
    return a.pid < b.pid
  end)
  return rows
end

--- Rows whose comm contains `pattern` (plain text, case-insensitive); all
--- rows for nil or ''.
function M.filter(rows, pattern)
  if not pattern or pattern == '' then return rows end
  local p = pattern:lower()
  local out = {}
  for _, r in ipairs(rows) do
    if (r.comm or ''):lower():find(p, 1, true) then out[#out + 1] = r end
  end
  return out
end

--- Fits text to width: cut, or padded on the right (left = true) or left.
function M.fit(text, width, left)
  text = tostring(text)
  if #text > width then return text:sub(1, width) end
  if left then return text .. string.rep(' ', width - #text) end
  return string.rep(' ', width - #text) .. text
end

--- The worst USE row of each resource (cpu, memory, disk, network) and how
--- many others of the kind there were: { {row=, others=}, ... } in that order.
function M.use_rows(r)
  local best, count = {}, {}
  for _, row in ipairs(r and r.rows or {}) do
    local k = row.resource
    count[k] = (count[k] or 0) + 1
    local b = best[k]
    local rank = use.RANK[row.status] or 0
    -- equal rank: the busier-looking one (the first active row)
    if not b or rank > (use.RANK[b.status] or 0) or (rank == (use.RANK[b.status] or 0) and b.status == 'idle'
        and row.status ~= 'idle') then
      best[k] = row
    end
  end
  local out = {}
  for _, k in ipairs({ 'cpu', 'memory', 'disk', 'network' }) do
    if best[k] then out[#out + 1] = { row = best[k], others = count[k] - 1 } end
  end
  return out
end

local function cell_text(c)
  if not c then return '-' end
  return c.text or (c.missing and ('not measured (' .. c.missing .. ')')) or '-'
end

--- One USE line: "CPU      warn   U 82% of 2 CPUs busy | S PSI some 26% | E -".
function M.use_line(u)
  local row = u.row
  local name = row.name or row.resource
  if row.resource == 'disk' then name = 'disk ' .. tostring(row.name)
  elseif row.resource == 'network' then name = 'net ' .. tostring(row.name) end
  if u.others > 0 then name = name .. ' +' .. u.others end
  return string.format('%-13s %-5s U %s | S %s | E %s', M.fit(name, 13, true), row.status == 'not measured'
    and 'n/a' or row.status, cell_text(row.utilization), cell_text(row.saturation), cell_text(row.errors))
end

--- A bar of `pct` on a `full` scale, `width` cells: "[###.......]".
function M.bar(pct, full, width)
  local n = pct and math.floor(math.min(1, math.max(0, pct / full)) * width + 0.5) or 0
  return '[' .. string.rep('#', n) .. string.rep('.', width - n) .. ']'
end

--- The cost line: the tool's own CPU (a bar on a 5% scale) and each BPF
--- program set's run time, as bpftop shows program cost.
function M.cost_line(c)
  if not c then return 'cost: not measured yet' end
  local parts = {}
  for _, b in ipairs(c.bpf or {}) do
    parts[#parts + 1] = b.name .. ' ' .. (b.cpu_pct and string.format('%.2f%%', b.cpu_pct) or 'n/a')
  end
  local bpf = #parts > 0 and ('  BPF ' .. (c.bpf_cpu_pct and string.format('%.2f%%', c.bpf_cpu_pct) or 'n/a')
    .. ' (' .. table.concat(parts, ', ') .. ')') or '  BPF off'
  return string.format('cost: perf_manual %s %s of one CPU%s', M.bar(c.self_cpu_pct, 5, 10),
    c.self_cpu_pct and string.format('%.2f%%', c.self_cpu_pct) or 'n/a', bpf)
end

--- Which columns are not measured and why, grouped by reason.
function M.missing_line(missing)
  local by, order = {}, {}
  for _, c in ipairs(M.COLUMNS) do
    local why = missing and missing[c.id:gsub('_ms$', ''):gsub('_pct$', '')]
    if why then
      if not by[why] then by[why] = {}; order[#order + 1] = why end
      table.insert(by[why], c.head)
    end
  end
  if #order == 0 then return nil end
  local parts = {}
  for _, why in ipairs(order) do parts[#parts + 1] = table.concat(by[why], ' ') .. ': ' .. why end
  return 'not measured: ' .. table.concat(parts, '; ')
end

--- The table header and one row, columns that fit in width (COMM grows
--- into the spare room).
function M.row_text(values, width)
  local out = {}
  for i, c in ipairs(M.COLUMNS) do
    out[i] = M.fit(values[i], c.width, c.left)
  end
  local s = table.concat(out, ' ')
  return #s > width and s:sub(1, width) or s
end

local function header_values(sort)
  local v = {}
  for i, c in ipairs(M.COLUMNS) do v[i] = (c.sort and c.sort == sort) and (c.head .. '*') or c.head end
  -- the sorted column keeps its width: its mark replaces a padding space
  for i, c in ipairs(M.COLUMNS) do if #v[i] > c.width then v[i] = v[i]:sub(-c.width) end end
  return v
end

local function row_values(r)
  local v = {}
  for i, c in ipairs(M.COLUMNS) do
    local x = r[c.id]
    v[i] = c.fmt and c.fmt(x) or (x == nil and '-' or util.printable(tostring(x)))
  end
  return v
end

M.HELP = {
  'perf_manual top: keys',
  '',
  '  c  sort by CPU%             (of one CPU, from /proc/PID/stat)',
  '  r  sort by run-queue wait   (ms waiting for a CPU per second, sched tracer)',
  '  o  sort by off-CPU time     (ms blocked per second, all threads, offcpu tracer)',
  '  i  sort by I/O latency      (mean block I/O latency, io tracer)',
  '  s  sort by syscalls/s       (bpf/top.bpf.c)',
  '  < >  previous / next sort key',
  '  /  filter by command name (Enter keeps it, Esc clears it)',
  '  p or space  pause / resume',
  '  h or ?  this help (any key returns)',
  '  q  quit (Ctrl-C too)',
}

--- The screen as lines, at most `height` lines of at most `width` chars.
--- view: { sort, filter, paused, prompt (filter being typed), help,
--- rows (max process rows when height is nil) }.
function M.frame(f, view, width, height)
  local lines = {}
  local function add(s) lines[#lines + 1] = #s > width and s:sub(1, width) or s end
  if view.help then
    for _, l in ipairs(M.HELP) do add(l) end
    while height and #lines > height do table.remove(lines) end
    return lines
  end
  local rows = M.sort(M.filter(f.procs or {}, view.filter), view.sort)
  add(string.format('perf_manual top  %s  every %.1fs  %d processes  sort %s%s%s', os.date('%H:%M:%S',
    math.floor(f.time or 0)), f.elapsed or 0, #rows, by_sort[view.sort].head,
    (view.filter and view.filter ~= '') and ('  filter "' .. view.filter .. '"') or '',
    view.paused and '  PAUSED' or ''))
  for _, u in ipairs(M.use_rows(f.use)) do add(M.use_line(u)) end
  add(M.cost_line(f.cost))
  local miss = M.missing_line(f.missing)
  if miss then add(miss) end
  add('')
  add(M.row_text(header_values(view.sort), width))
  local footer = view.prompt and ('filter: ' .. view.prompt .. '_')
    or 'c r o i s sort  < > cycle  / filter  p pause  h help  q quit'
  local room = height and (height - #lines - 1) or (view.rows or #rows)
  for i = 1, math.min(room, #rows) do add(M.row_text(row_values(rows[i]), width)) end
  if height then
    while #lines < height - 1 do lines[#lines + 1] = '' end
    while #lines > height - 1 do table.remove(lines) end
    add(footer)
  end
  return lines
end

--- The frame as a JSON-ready table: the USE rows, the cost, the missing
--- columns and the process rows in view order (at most view.rows).
function M.json(f, view)
  local rows = M.sort(M.filter(f.procs or {}, view.filter), view.sort)
  local procs = util.array()
  for i = 1, math.min(#rows, view.rows or #rows) do
    local r = rows[i]
    procs[i] = { pid = r.pid, comm = r.comm, state = r.state, threads = r.threads, cpu_pct = r.cpu_pct,
      runq_ms_per_s = r.runq_ms, offcpu_ms_per_s = r.offcpu_ms, iolat_ms = r.iolat_ms, iops = r.iops,
      syscalls_per_s = r.sysc, rss_bytes = r.rss_bytes }
  end
  local urows = util.array()
  for _, u in ipairs(M.use_rows(f.use)) do
    local row = u.row
    urows[#urows + 1] = { resource = row.resource, name = row.name, status = row.status,
      utilization = cell_text(row.utilization), saturation = cell_text(row.saturation), errors = cell_text(row.errors),
      others = u.others }
  end
  local bpf = util.array()
  for _, b in ipairs(f.cost and f.cost.bpf or {}) do
    bpf[#bpf + 1] = { name = b.name, cpu_pct = b.cpu_pct, note = b.note }
  end
  return { time = f.time, interval_s = f.elapsed, sort = view.sort, filter = view.filter, use = urows,
    cost = f.cost and { self_cpu_pct = f.cost.self_cpu_pct, bpf_cpu_pct = f.cost.bpf_cpu_pct, bpf = bpf,
      self_maxrss_kb = f.cost.self_rss_kb },
    missing = f.missing or {}, processes = procs }
end

return M
