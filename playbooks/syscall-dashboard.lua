-- syscall-dashboard: per-syscall latency on a dashboard. Writes what a team
-- needs to put `perf_manual serve`'s syscall histograms on screens (a
-- Grafana dashboard, the Prometheus recording and alerting rules, a
-- prometheus.yml that scrapes serve), starts serve if asked, and shows the
-- same figures in the terminal from a running serve: calls/s, time/s,
-- errors/s, p50 and p99 per syscall between two scrapes. A thin runbook over
-- `serve` (docs/serve.md) and docs/prometheus/.
local scrape = require('perf_manual.serve.scrape')
local text = require('perf_manual.report.hist')

local SHIPPED = { 'syscall-dashboard.json', 'syscalls.rules.yml', 'perf_manual.rules.yml' }

local function prometheus_yml(listen)
  return table.concat({
    '# Prometheus scraping perf_manual serve, with the syscall dashboard\'s rules.',
    '# Made by perf_manual syscall-dashboard; run: prometheus --config.file=prometheus.yml',
    'global:',
    '  scrape_interval: 15s',
    '  evaluation_interval: 15s',
    'rule_files:',
    '  - perf_manual.rules.yml',
    '  - syscalls.rules.yml',
    'scrape_configs:',
    '  - job_name: perf_manual',
    '    static_configs:',
    "      - targets: ['" .. listen .. "']",
    '',
  }, '\n')
end

local function dur(s)
  if not s then return '-' end
  if s >= 1 then return string.format('%.2f s', s) end
  if s >= 1e-3 then return string.format('%.2f ms', s * 1e3) end
  return string.format('%.1f us', s * 1e6)
end

return playbook {
  name = 'syscall-dashboard',
  topic = 'monitoring',
  summary = 'Per-syscall latency dashboard: Grafana board + Prometheus rules for serve, or the figures in the terminal',
  examples = '  perf_manual syscall-dashboard --output /etc/perf_manual/dash      # dashboard, rules, prometheus.yml\n'
    .. '  sudo perf_manual syscall-dashboard --output ./dash --serve        # ... and serve the metrics\n'
    .. '  perf_manual syscall-dashboard --from 127.0.0.1:9464 --interval 5  # the figures, from a running serve\n'
    .. '  perf_manual syscall-dashboard --from 127.0.0.1:9464 --save /tmp/sd && '
    .. 'perf_manual syscall-dashboard --replay /tmp/sd --json',
  params = {
    output = param.path { 'write the Grafana dashboard, the rules and a prometheus.yml into DIR', optional = true },
    listen = param.string { 'HOST:PORT of serve (scraped by the prometheus.yml; where --serve listens)',
      default = '127.0.0.1:9464' },
    serve = param.flag { 'then run perf_manual serve on --listen (until Ctrl-C or --duration)' },
    duration = param.duration { '--serve: stop after this long', optional = true, above = 0 },
    -- every syscall by name: serve's guard picks names when first seen and
    -- folds the later ones into "other" for good, and a busy machine calls
    -- over a hundred different syscalls
    top_k = param.integer { '--serve: syscalls kept by name; the rest are folded into "other" for good',
      default = 512, min = 1, max = 100000 },
    from = param.string { 'show the figures of a running serve at HOST:PORT (two scrapes --interval apart)',
      optional = true, conflicts = { 'serve' } },
    interval = param.duration { '--from: seconds between the two scrapes', default = '5s', above = 0, max = 3600 },
    top = param.integer { 'syscalls shown', default = 15, min = 1, max = 10000 },
    json = param.flag { 'print the figures as one JSON document' },
    save = param.path { '--from: also write DIR/scrapes.json (both scrapes), for --replay', optional = true },
    replay = param.path { 'show the figures of the scrapes in DIR/scrapes.json again', optional = true,
      conflicts = { 'from', 'serve' } },
  },

  check = function(p)
    if not (p.output or p.serve or p.from or p.replay) then
      require('perf_manual.util').user_error('syscall-dashboard: give --output DIR, --serve, --from HOST:PORT '
        .. 'or --replay DIR')
    end
  end,

  step 'write the dashboard, the rules and prometheus.yml' {
    function(inv, p)
      if not p.output then return end
      local dir = inv:mkdir(p.output)
      for _, name in ipairs(SHIPPED) do
        local body, err = scrape.shipped(name)
        if not body then inv:fail('syscall-dashboard: the shipped ' .. name .. ' is missing: ' .. err) end
        inv:save_file(dir .. '/' .. name, body)
      end
      inv:save_file(dir .. '/prometheus.yml', prometheus_yml(p.listen))
      inv:printf('wrote %s/{%s,prometheus.yml}\n', dir, table.concat(SHIPPED, ','))
      inv:printf('  prometheus --config.file=%s/prometheus.yml     # scrapes %s\n', dir, p.listen)
      inv:printf('  Grafana: Dashboards > New > Import > %s/syscall-dashboard.json (a Prometheus data source)\n', dir)
    end,
  },

  step 'serve the metrics' {
    function(inv, p)
      if not p.serve then return end
      local r = require('perf_manual.serve').run {
        listen = p.listen, duration = p.duration, top_k = p.top_k,
        note = function(t) inv:warn(t) end,
        on_ready = function(addr)
          inv:printf('perf_manual serve: http://%s/metrics (syscall dashboard)\n', addr)
          inv:flush()
        end,
      }
      inv:printf('perf_manual serve: stopped after %d scrapes\n', r.scrapes)
    end,
  },

  step 'the figures in the terminal' {
    function(inv, p)
      if not (p.from or p.replay) then return end
      local rec
      if p.replay then
        local why
        rec, why = require('perf_manual.verbs.common').recorded(inv, 'scrapes.json')
        if not rec then inv:fail('syscall-dashboard: ' .. why) end
      else
        inv:check_output(p.save, 'dir', '--save')
        local why
        rec, why = scrape.twice(p.from, p.interval)
        if not rec then inv:fail('syscall-dashboard: ' .. why) end
        if p.save then inv:save_file(inv:mkdir(p.save) .. '/scrapes.json', rec) end
      end
      local rows, err = scrape.between(rec.first, rec.second, rec.seconds)
      if not rows then inv:fail('syscall-dashboard: ' .. err) end
      if p.json then
        inv:json { from = rec.from, seconds = rec.seconds, syscalls = inv:list(rows) }
        return
      end
      local shown = {}
      for i = 1, math.min(p.top, #rows) do shown[i] = rows[i] end
      inv:printf('syscalls of %s over %.1f s (%d syscalls called):\n', rec.from or '?', rec.seconds, #rows)
      inv:show(text.table(shown, {
        { key = 'syscall', title = 'SYSCALL', align = 'l' },
        { key = 'calls_per_s', title = 'CALLS/s', fmt = function(v) return string.format('%.1f', v) end },
        { key = 'seconds_per_s', title = 'TIME/s', fmt = function(v) return string.format('%.4f', v) end },
        { key = 'errors_per_s', title = 'ERRORS/s', fmt = function(v) return string.format('%.1f', v) end },
        { key = 'p50_s', title = 'P50', fmt = dur },
        { key = 'p99_s', title = 'P99', fmt = dur },
      }))
    end,
  },
}
