-- CPU and disk culprits on evidence recorded from real investigations
-- (tests/fixtures/catalogue/*): every figure a sentence gives is computed
-- here again from the raw files, independently of the analyzers.
local F = require('perf_manual.analyzers.findings')
local rc = require('perf_manual.analyzers.root_cause')
local drill = require('perf_manual.report.drill')
local store = require('perf_manual.store')
local util = require('perf_manual.util')
local h = test_helpers

local base = h.root .. '/tests/fixtures/catalogue/'
local function data(name) return F.prepare(store.results(base .. name)) end
local function json(path) return assert(util.json_decode(assert(util.readfile(base .. path)))) end
local function plain(s) return (s:gsub('[%p]', '%%%0')) end

-- folded lines -> { {frames, n} }
local function stacks(path)
  local out = {}
  for line in assert(util.readfile(base .. path)):gmatch('[^\n]+') do
    local st, n = line:match('^(.*) (%d+)$')
    local fr = {}
    for f in st:gmatch('[^;]+') do fr[#fr + 1] = f end
    out[#out + 1] = { frames = fr, n = tonumber(n) }
  end
  return out
end

describe('CPU culprit (cpu_burn, recorded)', function()
  local S = stacks('cpu_burn/raw_data/profile-cpu.folded')
  local total, kernel, burn_self, callers = 0, 0, 0, {}
  for _, s in ipairs(S) do
    total = total + s.n
    local leaf = s.frames[#s.frames]
    if leaf:match('_%[k%]$') then kernel = kernel + s.n end
    if leaf == 'burn' then burn_self = burn_self + s.n end
    for i = #s.frames, 2, -1 do
      if s.frames[i] == 'burn' then callers[s.frames[i - 1]] = (callers[s.frames[i - 1]] or 0) + s.n break end
    end
  end
  local top_caller, top_n = nil, 0
  for k, v in pairs(callers) do if v > top_n then top_caller, top_n = k, v end end
  local hot = { cpu = -1 }
  for _, th in ipairs(json('cpu_burn/raw_data/tsa.json').threads) do
    if th.shares.cpu > hot.cpu then hot = { tid = th.tid, comm = th.comm, cpu = th.shares.cpu } end
  end
  local want = {
    string.format('burn holds %.0f%% of on-CPU samples', burn_self / total * 100),
    string.format('hot path %s > burn', top_caller),
    string.format('%.0f%% user / %.0f%% kernel', (total - kernel) / total * 100, kernel / total * 100),
    string.format('%d (%s) %.0f%%', hot.tid, hot.comm, hot.cpu),
  }

  it('the root cause names the hot function, its path, the split and the hottest thread', function()
    assert.equal(590, total)   -- the recording holds what it held
    local r = rc.score('the workload is CPU-bound: a hot loop keeps the CPUs busy', data('cpu_burn'))
    assert.equal('supported', r.verdict)
    for _, w in ipairs(want) do assert.matches(plain(w), r.cause) end
    assert.not_matches('kernel path', r.cause)   -- kernel time is under 30%: no kernel path
  end)

  it('the finding and the drill-down say the same', function()
    local d = data('cpu_burn')
    local found
    for _, f in ipairs(F.all(d)) do if f.metric == 'hot_function' then found = f end end
    for _, w in ipairs(want) do assert.matches(plain(w), found.summary) end
    local lines = table.concat(drill.cpu(d.profiles.cpu, d.tsa), '\n')
    assert.matches(string.format('hot path %%(%.0f%%%% of samples%%): %s > burn', top_n / total * 100, top_caller),
      lines)
    assert.matches(string.format('on%%-CPU samples: %.0f%%%% user, %.0f%%%% kernel %%(%d samples%%)',
      (total - kernel) / total * 100, kernel / total * 100, total), lines)
    assert.matches(string.format('cpu_burn %d %.0f%%%%', hot.tid, hot.cpu), lines)
  end)

  it('single-thread and run-queue entries name the thread and the function', function()
    local r = rc.score('one thread is single-threaded bound', data('hot_thread'))
    local tsa = json('hot_thread/raw_data/tsa.json')
    local best = tsa.threads[1]
    for _, th in ipairs(tsa.threads) do if th.shares.cpu > best.shares.cpu then best = th end end
    assert.matches(plain(string.format('thread %d (%s)', best.tid, best.comm)), r.cause)
    assert.matches('in spin %(hot path start_thread > spin%), 100%% user / 0%% kernel', r.cause)
    local q = rc.score('run queue contention: too many threads for the CPUs', data('cpu_burn'))
    assert.matches(plain(string.format('%d (%s) %.0f%%', hot.tid, hot.comm, hot.cpu)), q.cause)
    assert.matches('in burn$', q.cause)
  end)
end)

describe('kernel split and kernel path (recorded stacks ending in the kernel)', function()
  it('counts kernel leaves and finds the heaviest kernel chain', function()
    local path = 'pipe_waiter/raw_data/profile-offcpu.folded'
    local S = stacks(path)
    local total, kernel, chains = 0, 0, {}
    for _, s in ipairs(S) do
      total = total + s.n
      if s.frames[#s.frames]:match('_%[k%]$') then
        kernel = kernel + s.n
        local from = #s.frames
        while from > 2 and s.frames[from - 1]:match('_%[k%]$') do from = from - 1 end
        local key = table.concat(s.frames, ';', from)
        chains[key] = (chains[key] or 0) + s.n
      end
    end
    local best, bn = nil, 0
    for k, v in pairs(chains) do if v > bn then best, bn = k, v end end
    local leaf = best:match('([^;]+)$'):gsub('_%[k%]$', '')
    local sp = F.cpu_split(util.readfile(base .. path))
    assert.equal(total, sp.samples)
    assert.equal(kernel, sp.kernel)
    assert.equal(leaf, sp.kernel_path[#sp.kernel_path])
    assert.near(bn / total, sp.kernel_path_share, 1e-12)
    assert.is_true(#sp.kernel_path <= 5)
  end)
end)

describe('disk culprit (fsync_writer, recorded)', function()
  local tsa = json('fsync_writer/raw_data/tsa.json')
  local sc = json('fsync_writer/raw_data/trace-syscall.json')
  local io = json('fsync_writer/raw_data/trace-io.json')
  local files, threads, share_sum, first = {}, 0, 0, nil
  for _, th in ipairs(tsa.threads) do
    for _, w in ipairs(th.waits or {}) do
      if w.reason == 'io' then
        threads = threads + 1
        share_sum = share_sum + w.share
        files[#files + 1] = w.fd_link
        if not first or w.seconds > first.seconds then first = w end
      end
    end
  end
  local fsync
  for _, s in ipairs(sc.syscalls) do if s.name == 'fsync' then fsync = s end end
  local wrow
  for _, r in ipairs(io.rows) do if r.op == 'write' then wrow = r end end

  it('the root cause names the threads, the file synced, the call rate and latency, the write size', function()
    local r = rc.score('fsync after every write', data('fsync_writer'))
    assert.equal('supported', r.verdict)
    assert.matches(plain(string.format(
      '%d threads wait in fsync of %s (and %d other files) on vda %.0f%% of their time',
      threads, first.fd_link, #files - 1, share_sum / threads)), r.cause)
    assert.matches(plain(string.format('fsync %.0f calls/s, %.2f ms each', fsync.count / sc.seconds,
      fsync.total_ns / fsync.count / 1e6)), r.cause)
    assert.matches(plain(string.format('mean %.1f KiB', wrow.bytes / wrow.count / 1024)), r.cause)
    assert.matches('block writes 4%-8 KiB', r.cause)   -- 20319 of 20324 writes in the 4096..8191 bucket
  end)

  it('the drill-down lists the files with their threads, the calls and the device', function()
    local lines = drill.disk(io, sc, tsa)
    local text = table.concat(lines, '\n')
    assert.matches(plain(first.fd_link), lines[1])
    assert.matches(string.format('^%d threads wait in fsync', threads), lines[1])
    assert.matches(string.format('fsync: %d calls, %.0f/s', fsync.count, fsync.count / sc.seconds), text)
    assert.matches('queue time not measured', text)
    assert.matches(plain(string.format('p50 %.2f ms', io.devices[1].p50_us / 1e3)), text)
    -- without the accounting, no thread or file is claimed
    assert.not_matches('threads wait', table.concat(drill.disk(io, sc, nil), '\n'))
  end)

  it('a disk finding carries the file and the call', function()
    local found
    for _, f in ipairs(F.all(data('fsync_writer'))) do if f.metric == 'io_wait_culprit' then found = f end end
    assert.equal('fsync', found.syscall)
    assert.equal(first.fd_link, found.file)
    assert.equal('medium', found.severity)
  end)
end)

describe('disk culprit from a live io trace', function()
  it('says the sync share of the writes and the time queued before issue', function()
    local io_t = require('perf_manual.tracers.io')
    local findings = require('perf_manual.analyzers.findings')
    local hist = require('perf_manual.hist')
    local rec = assert(util.json_decode(test_helpers.fixture('bpfmaps/io.json')))
    local function unhex(hx) return (hx:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) end
    local hs = {}
    for _, e in ipairs(rec.maps.hists) do hs[#hs + 1] = io_t.decode_hist(unhex(e.key), unhex(e.value)) end
    local rows, devices = io_t.aggregate(hs, 0.5)
    for _, r in ipairs(rows) do r.size_buckets = hist.log2_buckets(r.size) end
    for _, d in ipairs(devices) do d.p50_us, d.p99_us = 100, 1500 end
    local c = assert(findings.disk_culprit(nil, { rows = rows, devices = devices }, nil))
    local w
    for _, r in ipairs(rows) do if r.op == 'write' then w = r end end
    assert.matches(string.format(', %.0f%% sync', w.sync_pct), c.text, 1, true)
    assert.matches('ms queued before issue', c.text, 1, true)
    assert.not_matches('queue time not measured', c.text, 1, true)
  end)
end)
