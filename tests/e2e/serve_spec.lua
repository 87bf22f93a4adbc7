-- `perf_manual serve` scraped by a real Prometheus (Debian's
-- /usr/bin/prometheus on loopback, its own config and storage in a temp
-- dir) under a real workload: Prometheus' own histogram_quantile over our
-- histograms and its average of our USE gauges agree with what `perf_manual
-- trace` and `perf_manual use-check`, run over the same seconds, report.
-- The block I/O histogram is checked against the kernel's own count of the
-- disk's completed writes (/sys/block/DEV/stat) under synchronous writes.
local h = test_helpers
local sys = require('perf_manual._c.sys')
local util = require('perf_manual.util')
local hist = require('perf_manual.hist')
local httpd = require('perf_manual.serve.httpd')
local prom = require('perf_manual.report.prometheus')
local W = require('e2e.workload')

local PROMETHEUS = '/usr/bin/prometheus'
local WINDOW = 8 -- seconds both sides measure over

local function exists(p)
  local f = io.open(p, 'r')
  if f then f:close() return true end
  return false
end

local function free_port()
  local s = assert(httpd.listen('127.0.0.1:0'))
  local p = s.port
  s:close()
  return p
end

local function write(path, text)
  local f = assert(io.open(path, 'w'))
  f:write(text)
  f:close()
end

local function get(url, args)
  local line = "curl -sS --max-time 10 -G '" .. url .. "'"
  for _, a in ipairs(args or {}) do line = line .. " --data-urlencode '" .. a .. "'" end
  local out, err, st = h.sh(line)
  if st ~= 0 then return nil, err end
  return out
end

-- one instant query: the value of its only series (nil when empty)
local function query(port, expr, at)
  local body = assert(get('http://127.0.0.1:' .. port .. '/api/v1/query',
    { 'query=' .. expr, 'time=' .. string.format('%.3f', at) }))
  local doc = util.json_decode(body)
  assert(doc.status == 'success', body)
  local r = doc.data.result
  if #r == 0 then return nil end
  assert(#r == 1, 'more than one series for ' .. expr .. ': ' .. body)
  return tonumber(r[1].value[2])
end

local function wait_for(what, fn, timeout)
  local deadline = sys.now() + timeout
  while sys.now() < deadline do
    local v = fn()
    if v then return v end
    sys.sleep(0.2)
  end
  error('timed out waiting for ' .. what)
end

local function spawn(argv, log)
  local pid, err = sys.spawn(argv, { stdout = log, stderr = log, pdeathsig = 9 })
  assert(pid, err)
  return pid
end

local function stop(pid)
  if not pid then return end
  sys.kill(pid, 15)
  for _ = 1, 100 do
    if sys.wait(pid, true) ~= 'running' then return end
    sys.sleep(0.05)
  end
  sys.kill(pid, 9)
  sys.wait(pid)
end

-- the p99 of a JSON bucket list from `trace --json`, in seconds
local function p99(buckets, unit_s)
  local b = {}
  for i, x in ipairs(buckets) do b[i] = { lo = x.lo, hi = x.hi, count = x.count, open = x.open } end
  return hist.quantile(b, 0.99) * unit_s
end

-- log2 slots apart: within one bucket means at most 1
local function slots_apart(a, b)
  return math.abs(math.log(a / b) / math.log(2))
end

-- the whole disk under a directory: its name in /sys/block (a partition's parent)
local function disk_of(dir)
  local id = h.sh("stat -c '%Hd:%Ld' '" .. dir .. "'"):match('%d+:%d+')
  local sysdir = '/sys/dev/block/' .. id
  if not exists(sysdir .. '/stat') then return nil, dir .. ' is on ' .. id .. ', not a block device' end
  local real = h.sh("readlink -f '" .. sysdir .. "'"):gsub('%s+$', '')
  if exists(real .. '/partition') then real = real:match('^(.*)/[^/]+$') end
  return real:match('([^/]+)$')
end

-- writes and cache flushes completed on a disk, as the block layer counts them
local function disk_counts(name)
  local f = {}
  for n in util.readfile('/sys/block/' .. name .. '/stat'):gmatch('%d+') do f[#f + 1] = tonumber(n) end
  return { writes = f[5], flushes = f[16] }
end

-- one scrape with the disk's counts read just before and just after it
local function scrape_bracketed(port, disk)
  local k0 = disk_counts(disk)
  local body = assert(get('http://127.0.0.1:' .. port .. '/metrics'))
  local k1 = disk_counts(disk)
  return assert(prom.parse(body)), k0, k1
end

-- the histogram of one device and op: count, { [le string] = cumulative count }
local function blockio(samples, disk, op)
  local count, buckets = nil, {}
  for _, x in ipairs(samples) do
    if x.labels.device == disk and x.labels.op == op then
      if x.name == 'perf_manual_block_io_latency_seconds_count' then count = x.value end
      if x.name == 'perf_manual_block_io_latency_seconds_bucket' then buckets[x.labels.le] = x.value end
    end
  end
  return count, buckets
end

describe('serve e2e #priv', function()
  it('serves the request latency of a traced server: every request, in the bucket of its delay', function()
    if not h.need_root('BPF tracers for serve') then return end
    local dir = h.tmpdir()
    local pids = {}
    local ok, err = xpcall(function()
      h.with_machine_lock(function()
        -- fixval_http answers each request after the delay in its config: 3 ms
        write(dir .. '/delay', '3000\n')
        local hport, sport = free_port(), free_port()
        pids.http = spawn({ h.workload('fixval_http'), tostring(hport), dir .. '/delay', '120' }, '/dev/null')
        wait_for('the server', function() return (get('http://127.0.0.1:' .. hport .. '/')) end, 10)
        pids.serve = spawn({ h.root .. '/bin/perf_manual', 'serve', '--listen', '127.0.0.1:' .. sport,
          '--requests', tostring(pids.http), '--duration', '120' }, dir .. '/serve.log')
        wait_for('serve to listen', function()
          return (util.readfile(dir .. '/serve.log') or ''):find('/metrics', 1, true)
        end, 30)
        -- 100 requests, one curl each
        local N = 100
        local _, cerr, cst = h.sh(string.format("for i in $(seq %d); do curl -sS -o /dev/null "
          .. "'http://127.0.0.1:%d/' || exit 1; done", N, hport))
        assert.equal(0, cst, cerr)
        local samples = assert(prom.parse(assert(get('http://127.0.0.1:' .. sport .. '/metrics'))))
        local count, in_slot, below
        for _, x in ipairs(samples) do
          if x.name == 'perf_manual_request_latency_seconds_count' then count = x.value end
          -- 3 ms lies in log2 slot 21 (2097152 .. 4194303 ns)
          if x.name == 'perf_manual_request_latency_seconds_bucket' then
            if x.labels.le == '0.004194303' then in_slot = x.value end
            if x.labels.le == '0.002097151' then below = x.value end
          end
        end
        assert.is_true(count ~= nil and math.abs(count - N) <= 2, 'requests served: ' .. tostring(count))
        assert.is_true(in_slot - below >= 0.95 * count,
          string.format('%d of %d requests in the 2.1-4.2 ms bucket', in_slot - below, count))
      end)
    end, debug.traceback)
    for _, k in ipairs({ 'serve', 'http' }) do stop(pids[k]) end
    h.rmrf(dir)
    if not ok then error(err, 0) end
  end)

  it('counts every write the disk completes in its block I/O histogram, in the kernel log2 buckets', function()
    if not h.need_root('BPF tracers for serve') then return end
    local dir = h.tmpdir()
    local pids, writer = {}, nil
    local ok, err = xpcall(function()
      h.with_machine_lock(function()
        local scratch = W.scratch()
        local disk, why = disk_of(scratch)
        if not disk then return h.skip_unless_required('PM_REQUIRE_BPF', 'skipped: ' .. why) end
        local sport = free_port()
        pids.serve = spawn({ h.root .. '/bin/perf_manual', 'serve', '--listen', '127.0.0.1:' .. sport,
          '--duration', '120' }, dir .. '/serve.log')
        wait_for('serve to listen', function()
          return (util.readfile(dir .. '/serve.log') or ''):find('/metrics', 1, true)
        end, 30)
        -- 2 threads writing 4 KiB and fsyncing in a loop, on the real disk,
        -- only between the scrapes: the counts read around each scrape then
        -- move by the rest of the machine's I/O only
        local s0, a0, b0 = scrape_bracketed(sport, disk)
        writer = W.start('fsync_writer', { '30', scratch, '2' })
        sys.sleep(4)
        writer:stop()
        writer = nil
        sys.sleep(0.2)
        local s1, a1, b1 = scrape_bracketed(sport, disk)
        local function inc(op)
          local c0 = blockio(s0, disk, op) or 0
          local c1, buckets = blockio(s1, disk, op)
          assert.is_not_nil(c1, 'no ' .. op .. ' histogram for ' .. disk)
          return c1 - c0, c1, buckets
        end
        local writes, c1, buckets = inc('write')
        local flushes = inc('flush')
        -- the kernel's counts over the scrapes' window lie between these
        -- bounds; a request completing between the tracepoint and the stat
        -- update can fall on either side, hence 2 of slack per end
        local function between(k) return a1[k] - b0[k], b1[k] - a0[k] end
        local wlo, whi = between('writes')
        local flo, fhi = between('flushes')
        io.stderr:write(string.format('\nblock I/O on %s over 4 s of fsync_writer: serve %d writes, %d flushes; '
          .. '/sys/block/%s/stat %d..%d writes, %d..%d flushes\n', disk, writes, flushes, disk, wlo, whi, flo, fhi))
        assert.is_true(wlo > 1000, 'the writer made only ' .. wlo .. ' writes')
        -- cache flushes: the flush requests the disk completed, one for one but
        -- for a few the tracer loses at this rate (seen: 0 to 35 of 22000-26000;
        -- most likely its LRU map of in-flight requests dropping entries)
        assert.is_true(flushes >= flo - 2 - 0.005 * flo and flushes <= fhi + 2,
          string.format('serve counted %d flushes, the disk completed %d..%d', flushes, flo, fhi))
        -- the kernel counts an fsync's empty preflush as a write (0 sectors)
        -- besides the flush request issued for it; serve counts the flush
        -- request only, so its writes are the kernel's minus about one per
        -- flush (several preflushes can share one flush request, and a data
        -- write can carry one: 0.5% of slack; 6 to 109 apart in four runs)
        assert.is_true(writes <= whi + 2, string.format('serve counted %d writes, the disk only %d', writes, whi))
        local want = (wlo + whi) / 2 - (flo + fhi) / 2
        assert.is_true(math.abs(writes - want) <= 0.005 * want + 4,
          string.format('serve counted %d writes, the disk %d..%d less %d..%d flushes', writes, wlo, whi, flo, fhi))

        -- the buckets are the kernel's log2 slots: slot s ends at 2^(s+1)-1 us,
        -- all 31 closed ones written, cumulative, the open one in +Inf
        local by_slot = {}
        for le, v in pairs(buckets) do
          if le ~= '+Inf' then
            local us = tonumber(le) * 1e6
            local slot = math.floor(math.log(us + 1) / math.log(2) + 0.5) - 1
            assert.is_true(math.abs(us - (2 ^ (slot + 1) - 1)) < 1e-6 * us, 'le="' .. le .. '" is not a log2 slot end')
            assert.is_nil(by_slot[slot], 'two buckets for slot ' .. slot)
            by_slot[slot] = v
          end
        end
        local prev = 0
        for slot = 0, 30 do
          assert.is_not_nil(by_slot[slot], 'no bucket for slot ' .. slot)
          assert.is_true(by_slot[slot] >= prev, 'buckets not cumulative at slot ' .. slot)
          prev = by_slot[slot]
        end
        assert.equal(c1, buckets['+Inf'])
        -- the writes (mostly the writer's 4 KiB ones) took 2 us .. 1 s each
        assert.is_true(by_slot[19] - by_slot[0] >= 0.99 * c1, string.format(
          'of %d writes, %d in slot 0 and %d past slot 19', c1, by_slot[0], c1 - by_slot[19]))
      end)
    end, debug.traceback)
    if writer then pcall(writer.stop, writer) end
    stop(pids.serve)
    W.cleanup_scratch()
    h.rmrf(dir)
    if not ok then error(err, 0) end
  end)

  it('agrees with Prometheus on run-queue and syscall p99 and on the USE gauges', function()
    if not h.need_root('BPF tracers for serve') then return end
    if not exists(PROMETHEUS) then
      return h.skip_unless_required('PM_REQUIRE_BPF', 'skipped: ' .. PROMETHEUS .. ' is not installed')
    end
    local dir = h.tmpdir()
    local pids = {}
    local ok, err = xpcall(function()
      h.with_machine_lock(function()
        -- the workload: more runnable threads than CPUs (run-queue waits)
        -- and a tight loop of system calls
        local ncpu = sys.info().ncpu
        pids.burn = spawn({ h.workload('cpu_burn'), tostring(ncpu * 2), '120' }, '/dev/null')
        pids.calls = spawn({ h.workload('syscall_loop'), '2000000000' }, '/dev/null')

        local sport, pport = free_port(), free_port()
        pids.serve = spawn({ h.root .. '/bin/perf_manual', 'serve', '--listen', '127.0.0.1:' .. sport,
          '--duration', '300' }, dir .. '/serve.log')
        wait_for('serve to listen', function()
          return (util.readfile(dir .. '/serve.log') or ''):find('/metrics', 1, true)
        end, 30)

        write(dir .. '/prometheus.yml', string.format([[
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s/docs/prometheus/perf_manual.rules.yml
scrape_configs:
  - job_name: perf_manual
    static_configs:
      - targets: ['127.0.0.1:%d']
]], h.root, sport))
        pids.prom = spawn({ PROMETHEUS, '--config.file=' .. dir .. '/prometheus.yml',
          '--storage.tsdb.path=' .. dir .. '/data', '--web.listen-address=127.0.0.1:' .. pport,
          '--log.level=warn' }, dir .. '/prometheus.log')
        -- two scrapes at least, both successful
        wait_for('two scrapes by Prometheus', function()
          local n = select(2, pcall(query, pport, 'count_over_time(up{job="perf_manual"}[1m])', sys.realtime()))
          local up = select(2, pcall(query, pport, 'up{job="perf_manual"}', sys.realtime()))
          return type(n) == 'number' and n >= 2 and up == 1
        end, 60)

        -- the exposition Prometheus reads passes its own linter
        local expo = assert(get('http://127.0.0.1:' .. sport .. '/metrics'))
        write(dir .. '/expo.txt', expo)
        local _, lint, st = h.sh('promtool check metrics < ' .. dir .. '/expo.txt')
        assert.equal(0, st, lint)

        -- ours, over the same seconds: the tracers and use-check as their own processes
        local t_start = sys.realtime()
        local trace_out = dir .. '/trace.json'
        local use_out = dir .. '/use.json'
        local _, terr, tst = h.sh(string.format(
          "{ %s/bin/perf_manual trace --events sched,syscalls --duration %d --max-overhead 100 --json > '%s' & "
          .. "%s/bin/perf_manual use-check --duration %d --json --no-bpf > '%s'; wait; }",
          h.root, WINDOW, trace_out, h.root, WINDOW, use_out))
        assert.equal(0, tst, terr)
        local t_end = sys.realtime()
        -- the last scrape inside the window has landed
        sys.sleep(1.5)
        local tdoc = util.json_decode(util.readfile(trace_out))
        -- a tracer detached by the overhead guard would cover a fraction of the window
        -- (syscall_loop costs the syscall tracer more than its default 5% budget)
        for _, n in ipairs(tdoc.notes or {}) do assert.is_nil(tostring(n):find('detached', 1, true), n) end
        local tr = tdoc.intervals[1].results
        local uc = util.json_decode(util.readfile(use_out))
        local w = string.format('%ds', math.floor(t_end - t_start + 0.5))

        local rows = {}
        local function row(metric, promv, ours, ok_)
          rows[#rows + 1] = string.format('| %s | %s | %s |', metric, prom.number(util.round(promv, 6)),
            prom.number(util.round(ours, 6)))
          return ok_
        end
        local ours_rq = p99(tr.sched.buckets, tr.sched.unit == 'nsecs' and 1e-9 or 1e-6)
        local prom_rq = query(pport, 'histogram_quantile(0.99, sum by (le) (rate('
          .. 'perf_manual_runq_latency_seconds_bucket[' .. w .. '])))', t_end)
        local ours_sc = p99(tr.syscalls.buckets, 1e-9)
        local prom_sc = query(pport, 'histogram_quantile(0.99, sum by (le) (rate('
          .. 'perf_manual_syscall_latency_seconds_bucket[' .. w .. '])))', t_end)
        local cpu_row, mem_row
        for _, r in ipairs(uc.rows) do
          if r.resource == 'cpu' then cpu_row = r elseif r.resource == 'memory' then mem_row = r end
        end
        local function avg(sel) return query(pport, 'avg_over_time(' .. sel .. '[' .. w .. '])', t_end) end
        local prom_cpu = avg('perf_manual_use_utilization{resource="cpu"}')
        local prom_psi = avg('perf_manual_use_saturation{resource="cpu"}')
        local prom_mem = avg('perf_manual_use_utilization{resource="memory"}')
        local checks = {
          row('run-queue latency p99 (s)', prom_rq, ours_rq, slots_apart(prom_rq, ours_rq) <= 1),
          row('syscall latency p99 (s)', prom_sc, ours_sc, slots_apart(prom_sc, ours_sc) <= 1),
          row('CPU utilization (%)', prom_cpu, cpu_row.utilization.value,
            math.abs(prom_cpu - cpu_row.utilization.value) <= 2),
          row('CPU saturation, PSI some (%)', prom_psi, cpu_row.saturation.value,
            math.abs(prom_psi - cpu_row.saturation.value) <= 2),
          row('memory utilization (%)', prom_mem, mem_row.utilization.value,
            math.abs(prom_mem - mem_row.utilization.value) <= 2),
        }
        local table_text = '| metric | Prometheus | perf_manual |\n|---|---|---|\n' .. table.concat(rows, '\n')
        io.stderr:write('\nPrometheus vs perf_manual over ' .. w .. ':\n' .. table_text .. '\n')
        for i, c in ipairs(checks) do assert(c, 'disagree: ' .. rows[i] .. '\n' .. table_text) end
        -- the workload was there to be seen: cpu_burn keeps every CPU busy
        assert.is_true(cpu_row.utilization.value > 90, table_text)

        -- the shipped rules run on the real exposition: use-check's verdict
        -- on the CPU and the alert Prometheus holds agree, the p99 is recorded
        local high = query(pport, 'instance:perf_manual_use_saturated:count', sys.realtime())
        assert.is_not_nil(high, 'recording rule produced nothing')
        local pending = query(pport, 'count(ALERTS{alertname="PerfManualResourceSaturated",resource="cpu"})',
          sys.realtime())
        io.stderr:write(string.format('use-check CPU verdict %s; Prometheus '
          .. 'PerfManualResourceSaturated{resource="cpu"}: %s; saturated resources recorded: %s\n',
          tostring(cpu_row.status), pending and 'pending' or 'none', tostring(high)))
        assert.equal(cpu_row.status == 'HIGH', pending == 1,
          'use-check says ' .. tostring(cpu_row.status) .. ', Prometheus alerts: ' .. tostring(pending))
        local p99_rule = query(pport, 'instance:perf_manual_runq_latency_seconds:p99_5m', sys.realtime())
        assert.is_true(p99_rule ~= nil and p99_rule > 0, 'no recorded run-queue p99')
      end)
    end, debug.traceback)
    for _, k in ipairs({ 'prom', 'serve', 'calls', 'burn' }) do stop(pids[k]) end
    h.rmrf(dir)
    if not ok then error(err, 0) end
  end)
end)
