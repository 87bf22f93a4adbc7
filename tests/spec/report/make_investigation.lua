-- Builds a throwaway investigation folder from the captured report fixtures
-- (tests/fixtures/report/before, after), with metadata holding hostile text
-- and secrets, and a Fix Validation from `perf_manual diff`.
local h = test_helpers
local store = require('perf_manual.store')

local M = {}

M.HOSTILE = '<script>alert("pwned")</script> & <b>bold</b>'

function M.make()
  local dir = os.tmpname()
  os.remove(dir)
  local fx = h.root .. '/tests/fixtures/report'
  assert(os.execute(string.format("mkdir -p '%s/raw_data' '%s/analysis' && cp '%s'/before/* '%s/raw_data/' && cp " ..
    "'%s/after/profile-cpu.folded' '%s/raw_data/profile-cpu-2.folded' && cp '%s/compare.json' '%s/raw_data/'",
    dir, dir, fx, dir, fx, dir, fx, dir)) == 0)
  local meta = {
    id = '2026-11-22_slow-api', name = 'slow-api', symptom = 'API p99 went from 5 ms to 50 ms ' .. M.HOSTILE,
    status = 'complete', playbook = 'investigate',
    params = { workload = 'myapp --db-password=hunter2 --port 8080', env = 'API_TOKEN=abc123' },
    checklist = { { key = 'impact', question = 'Who is affected?', answer = 'all checkout users', answered = true } },
    hypotheses = { { id = 'H1', text = 'CPU saturation from the burn loop', status = 'supported', score = 2,
      evidence = { { stance = 'for', artifact = 'raw_data/use-check.json', note = 'CPU HIGH' } } } },
    findings = { { resource = 'cpu', metric = 'busy', severity = 'high', summary = 'CPU 100% busy, run queue 4 on 2 ' ..
      'CPUs' } },
    timeline = { { t = '2026-11-22T05:00:00.000Z', kind = 'step-done', what = 'USE and RED' } },
    root_cause = 'burn() spins on 3 threads on a 2-CPU machine; secret file /root/.ssh/id_rsa was open',
    fix = 'moved the work off the request path',
    artifacts = {},
  }
  local f = assert(io.open(dir .. '/metadata.yaml', 'w'))
  f:write(store.yaml_dump(meta))
  f:close()
  local _, err, status = h.pm(string.format("diff --before '%s/before' --after '%s/after' --expect 'p99 -20%%' " ..
    "--iterations 300 --output '%s/analysis/fix-validation.json'",
    fx, fx, dir))
  assert(status == 0, err)
  return dir
end

function M.remove(dir) os.execute("rm -rf '" .. dir .. "'") end

return M
