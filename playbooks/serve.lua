-- serve: a Prometheus exporter. Which metrics are served is a metrics
-- playbook (playbooks/metrics/default.lua, or a team's own); the server,
-- the exposition and the cardinality guard are lib/perf_manual/serve/ and
-- lib/perf_manual/report/prometheus.lua.
return playbook {
  name = 'serve',
  topic = 'monitoring',
  summary = 'Prometheus exporter: USE gauges and BPF latency histograms (kernel log2 buckets) on /metrics',
  examples = '  perf_manual serve                                # 127.0.0.1:9464, until Ctrl-C\n'
    .. '  perf_manual serve --listen 0.0.0.0:9464 --top-k 20\n'
    .. '  perf_manual serve --playbook team   # ~/.config/perf_manual/playbooks/metrics/team.lua\n'
    .. '  perf_manual serve --requests 1234   # also the request latency of server pid 1234\n'
    .. '  perf_manual serve --playbook ./my_metrics.lua --duration 1h',
  params = {
    listen = param.string { 'HOST:PORT to listen on (loopback unless told otherwise)', default = '127.0.0.1:9464' },
    playbook = param.string { 'metrics playbook: NAME (metrics/NAME.lua on the playbook path) or a file',
      default = 'default' },
    top_k = param.integer { 'label values kept per label; the rest are folded into "other"', default = 10,
      min = 1, max = 100000 },
    duration = param.duration { 'stop after this long (default: until Ctrl-C)', optional = true, above = 0 },
    requests = param.pid { "also serve this server process's request latency (read to first write)",
      optional = true },
  },

  step 'serve' {
    function(inv, p)
      local r = require('perf_manual.serve').run {
        listen = p.listen, playbook = p.playbook, top_k = p.top_k, duration = p.duration, requests = p.requests,
        note = function(text) inv:warn(text) end,
        on_ready = function(addr, s)
          inv:print(string.format('perf_manual serve: http://%s/metrics (playbook %s, top-k %d)', addr,
            s.pb.name or s.pb.path, s.top_k))
          inv:flush()
        end,
      }
      inv:print(string.format('perf_manual serve: stopped after %d scrapes', r.scrapes))
    end,
  },
}
