local redact = require('perf_manual.report.redact')

describe('perf_manual.report.redact', function()
  local cases = {
    { 'myapp --db-password=hunter2 --port 80 --api-key s3cr3t --verbose',
      'myapp --db-password=[REDACTED] --port 80 --api-key [REDACTED] --verbose' },
    { 'PGPASSWORD=x API_TOKEN=abcd PATH=/usr/bin HOME=/root', 'PGPASSWORD=[REDACTED] API_TOKEN=[REDACTED] ' ..
      'PATH=/usr/bin HOME=/root' },
    { 'curl https://user:hunter2@example.com/x', 'curl https://[REDACTED]@example.com/x' },
    { 'key AKIAIOSFODNN7EXAMPLE and ghp_abcdefghijklmnop1234', 'key [REDACTED] and [REDACTED]' },
    { 'jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.c2lnbmF0dXJl end', 'jwt [REDACTED] end' },
    { 'reading /home/bob/.ssh/id_rsa and /var/log/app.log', 'reading [REDACTED](secret path) and /var/log/app.log' },
    { 'cert /etc/nginx/tls/server.key', 'cert [REDACTED](secret path)' },
    { 'header Authorization: Bearer abc.def', 'header Authorization: [REDACTED] [REDACTED]' },
    -- ordinary words that only contain a secret word stay
    { 'sort_key=3 compass=north author=me passes=4', 'sort_key=3 compass=north author=me passes=4' },
    { 'db_pass=x session=y', 'db_pass=[REDACTED] session=[REDACTED]' },
  }
  for _, c in ipairs(cases) do
    it('redacts ' .. c[1], function()
      assert.equal(c[2], (redact.string(c[1])))
    end)
  end

  it('hides the argument after a secret flag in an argv list', function()
    assert.same({ 'app', '--password', '[REDACTED]', '--user', 'bob' },
      (redact.argv({ 'app', '--password', 'hunter2', '--user', 'bob' })))
  end)

  it('redacts environments by name and nested tables deeply', function()
    assert.same({ AWS_SECRET_ACCESS_KEY = '[REDACTED]', LANG = 'C' },
      redact.env({ AWS_SECRET_ACCESS_KEY = 'abc', LANG = 'C' }))
    local t = { params = { cmd = 'run --token abc', token = 'zzz', count = 3 }, list = { 'PASSWORD=1' } }
    assert.same({ params = { cmd = 'run --token [REDACTED]', token = '[REDACTED]', count = 3 },
      list = { 'PASSWORD=[REDACTED]' } }, redact.deep(t))
    assert.equal('run --token abc', t.params.cmd)   -- the original is left alone
  end)

  it('takes rules a team adds in Lua', function()
    table.insert(redact.rules, { why = 'customer ids', pattern = 'cust%-%d+', replace = 'cust-[REDACTED]' })
    local s = redact.string('slow for cust-12345')
    table.remove(redact.rules)
    assert.equal('slow for cust-[REDACTED]', s)
  end)
end)

describe('redaction in reports', function()
  it('keeps C++ and Rust scopes, which name code', function()
    assert.equal('main;Session::get;auth::token_check 5', (redact.string('main;Session::get;auth::token_check 5')))
    assert.equal('session: [REDACTED]', (redact.string('session: abc')))
  end)

  it("hides a secret in the target's command line of the thread-states section", function()
    local report = require('perf_manual.report')
    local util = require('perf_manual.util')
    local dir = test_helpers.tmpdir()
    finally(function() test_helpers.rmrf(dir) end)
    local text = util.readfile(test_helpers.root .. '/tests/fixtures/tsa/results/wait_peer_pipe.json')
    -- the recorded target, launched with a password on its command line
    text = text:gsub('wait_peer pipe 4 %(pid', 'wait_peer pipe 4 --password hunter2 %(pid')
    assert(text:find('hunter2', 1, true))
    assert(os.execute('mkdir -p ' .. dir .. '/raw_data'))
    assert(util.write_atomic(dir .. '/raw_data/tsa.json', text))
    local ds = assert(report.load(dir))
    for _, out in ipairs({ 'md', 'html' }) do
      local doc = report.render(ds, { format = 'technical', output = out })
      assert.is_nil(doc:find('hunter2', 1, true))
      assert.matches('Thread states of %./build/workloads/wait\\?_peer pipe 4 %-%-password \\?%[REDACTED\\?%]', doc)
    end
    assert.is_nil(report.render(ds, { format = 'slides' }):find('hunter2', 1, true))
  end)
end)

describe('redaction of text already redacted', function()
  it('leaves a mark escaped for Markdown as it is, and counts nothing', function()
    local md = 'app --password \\[REDACTED\\] (pid 4)'
    assert.same({ md, 0 }, { redact.string(md) })
    assert.same({ 'DB_PASS=\\[REDACTED\\]', 0 }, { redact.string('DB_PASS=\\[REDACTED\\]') })
  end)
end)
