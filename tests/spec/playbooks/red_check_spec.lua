-- red-check --replay: a RED summary a live `red-check --save` left (50 req/s
-- for 2 s against a local HTTP server), judged and shown again.
local h = test_helpers
local util = require('perf_manual.util')
local DIR = h.root .. '/tests/fixtures/replay/red'

describe('red-check playbook (replay)', function()
  it('shows the recorded rate, errors and latency', function()
    local out, err, st = h.pm('red-check --replay ' .. DIR)
    assert.equal(0, st, err)
    assert.matches('^RED check: http://127%.0%.0%.1:18181/', out)
    assert.matches('completed +50%.0 req/s', out)
    assert.matches('Errors +0 of 100 ', out)
  end)

  it('gives the recorded summary as JSON without its series', function()
    local out, err, st = h.pm('red-check --replay ' .. DIR .. ' --json')
    assert.equal(0, st, err)
    local doc = assert(util.json_decode(out))
    local rec = assert(util.json_decode(h.fixture('replay/red/red-check.json')))
    assert.equal(rec.latency.p99, doc.latency.p99)
    assert.is_nil(doc.series)
    assert.is_nil(doc.text)
  end)

  it('needs an endpoint, a process or a recording', function()
    local _, err, st = h.pm('red-check --duration 1')
    assert.equal(2, st)
    assert.equal('perf_manual: red-check: give --endpoint URL (or --passive PID)\n', err)
  end)
end)

describe('red-check playbook (request and TLS options)', function()
  -- each is refused before any load is sent: one line, exit 2
  local cases = {
    { "--endpoint https://127.0.0.1:1/ --cacert /x.pem --insecure", 'give --cacert or --insecure, not both' },
    { "--endpoint https://127.0.0.1:1/ --header 'no colon'", "bad header 'no colon' (expected 'Name: value')" },
    { "--endpoint https://127.0.0.1:1/ --header 'X-A: 1' --header 'Content-Length: 3'",
      "header 'Content-Length' is set by red-check itself (from --body)" },
    { "--endpoint https://127.0.0.1:1/ --body /nonexistent/body.json",
      'cannot read --body: /nonexistent/body.json: No such file or directory' },
    { "--endpoint https://127.0.0.1:1/ --method 'GET /'",
      "bad method 'GET /' (expected a token like GET, POST or PURGE)" },
    { "--endpoint http://127.0.0.1:1/ --insecure", '--insecure is for https:// URLs' },
    { "--passive 1 --method POST", 'give --method or --passive, not both' },
  }
  for _, case in ipairs(cases) do
    it('refuses ' .. case[1], function()
      local out, err, st = h.pm('red-check --duration 0.2 ' .. case[1])
      assert.equal(2, st)
      assert.equal('', out)
      assert.equal('perf_manual: red-check: ' .. case[2] .. '\n', err)
    end)
  end
  it('lists the new options in --help', function()
    local out = h.pm('red-check --help')
    for _, o in ipairs({ '--method', '--header', '--body', '--cacert', '--insecure' }) do
      assert.matches(o:gsub('%-', '%%-'), out)
    end
  end)
end)
