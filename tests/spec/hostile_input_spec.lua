-- Hostile input (issue 17): every command with a table of bad inputs — the
-- cases the issue found and more of the same kind for each command (unknown
-- flags, empty strings, negative, huge and non-finite numbers, paths that
-- are files, folders or missing). Each must end with exit 2, one line on
-- stderr that starts "perf_manual: " and names the problem, nothing on
-- stdout, no process left behind, in bounded time. None of them measures:
-- they are all refused before anything runs, so no root is needed.
local h = test_helpers
local sys = require('perf_manual._c.sys')

local DATA = h.root .. '/tests/fixtures/datadirs/cpu_burn'
local DATA2 = h.root .. '/tests/fixtures/datadirs/fsync_writer'
local FOLDED = h.root .. '/tests/fixtures/profile/system_3s.folded'
local BOUND = 20 -- seconds per case: generous, a refused input takes milliseconds

-- a marker in the environment of every run: a process that still carries it
-- after its run ended was left behind
local MARK = 'PM_HOSTILE_' .. sys.getpid()

local function leftovers()
  local out = h.sh(string.format("grep -l '%s=1' /proc/[0-9]*/environ 2>/dev/null", MARK))
  local pids = {}
  for pid in out:gmatch('/proc/(%d+)/environ') do
    if tonumber(pid) ~= sys.getpid() then pids[#pids + 1] = pid end
  end
  return pids
end

-- { arguments (shell words), pattern the message must match (plain text) }
local function cases(store, file, dir)
  local missing = dir .. '/no-such-thing'
  return {
    -- global options and commands
    { "--bogus list", "unknown option '--bogus'" },
    { "--playbooks /nonexistent list", '--playbooks /nonexistent: no such directory' },
    { "--playbooks " .. file .. " list", 'not a directory' },
    { "--playbooks '' list", '--playbooks must not be empty' },
    { "no-such-command", "unknown command 'no-such-command'" },
    { "run " .. missing, 'run: cannot open' },
    -- investigate
    { "investigate --workload '' --symptom x --batch", 'investigate: --workload must not be empty' },
    { "investigate --workload 1 --symptom '' --batch", 'investigate: --symptom must not be empty' },
    { "investigate --workload 1 --symptom x --duration 0", 'investigate: --duration must be more than 0' },
    { "investigate --workload 1 --symptom x --duration -1", 'investigate: --duration must be more than 0' },
    { "investigate --workload 1 --symptom x --duration 100000h", '--duration must be at most' },
    { "investigate --workload 1 --symptom x --duration nan", "bad value for --duration 'nan'" },
    { "investigate --workload 99999999999999999999 --symptom x", 'bad pid' },
    { "investigate --workload 1 --symptom x --bogus", "unknown option '--bogus'" },
    { "investigate --workload 1 --symptom x --store ''", '--store must not be empty' },
    { "investigate --replay " .. DATA .. " --symptom x --batch --answers " .. file,
      "'bogus_key' answers no question" },
    { "investigate --replay " .. DATA .. " --symptom x --batch --answer nosuch=1", "'nosuch' answers no question" },
    { "investigate --replay " .. DATA .. " --symptom x --batch --answers " .. missing, '--answers: cannot read' },
    -- collect (--output names a file)
    { "collect --output " .. file .. " --duration 1", 'collect: --output ' .. file .. ' is not a directory' },
    { "collect --output " .. dir .. "/c --duration -5", 'collect: --duration must be more than 0' },
    { "collect --output " .. dir .. "/c --duration 2d", "bad value for --duration '2d'" },
    { "collect --output ''", 'collect: --output must not be empty' },
    -- an interval of 0 busy-looped (issue 17 item 4)
    { "collect --output " .. dir .. "/c --interval 0", 'collect: --interval must be more than 0' },
    -- use-check, trace, profile, red-check: refused before they measure
    { "use-check --duration -1", 'use-check: --duration must be more than 0' },
    { "use-check --interval -0.5", 'use-check: --interval must be more than 0' },
    { "use-check --pid 99999999999999999999", "use-check: bad value for --pid '99999999999999999999': bad pid" },
    { "use-check --pid -3", "bad value for --pid '-3'" },
    { "use-check --pid 1 --cgroup /x", 'give --pid or --cgroup, not both' },
    { "use-check --target ''", 'use-check: --target must not be empty' },
    { "use-check --max-overhead inf", "bad value for --max-overhead 'inf'" },
    { "use-check --max-overhead -1", '--max-overhead must be more than 0' },
    { "trace --events ''", 'trace: --events must not be empty' },
    { "trace --events ,", 'trace: --events must not be empty' },
    { "trace --top 0", 'trace: --top must be at least 1' },
    { "trace --duration 1e400", "bad value for --duration '1e400'" },
    { "profile --freq -5", 'profile: --freq must be at least 1' },
    { "profile --top 1e300", 'profile: --top must be at most' },
    { "profile --duration 90000", 'profile: --duration must be at most' },
    { "red-check --endpoint http://127.0.0.1:1/ --passive 1", 'give --passive or --endpoint, not both' },
    { "red-check --passive 1 --rate 5", 'give --passive or --rate, not both' },
    { "red-check --passive 99999999999999999999", 'bad pid' },
    { "red-check --endpoint http://127.0.0.1:1/ --timeout 0", 'red-check: --timeout must be more than 0' },
    { "red-check --endpoint http://127.0.0.1:1/ --rate nan", "bad value for --rate 'nan'" },
    { "red-check --endpoint http://127.0.0.1:1/ --connections 0", '--connections must be at least 1' },
    -- report, present: templates that are missing or a folder
    { "report --template /nonexistent " .. DATA, 'report: cannot read template /nonexistent' },
    { "report --template " .. dir .. " " .. DATA, 'it is a directory' },
    { "report " .. DATA .. " --format nosuch", "bad value for --format 'nosuch'" },
    { "report ''", 'report: <investigation> must not be empty' },
    { "present --slides --template /nonexistent --data " .. DATA .. " --output " .. dir .. "/s.html",
      'present: cannot read template /nonexistent' },
    { "present --slides --template " .. dir .. " --data " .. DATA .. " --output " .. dir .. "/s.html",
      'it is a directory' },
    -- show, hypotheses: a folder that is not an investigation
    { "show " .. dir, 'show: ' .. dir .. ' is not an investigation' },
    { "hypotheses " .. dir, 'hypotheses: ' .. dir .. ' is not an investigation' },
    { "show --store " .. store .. " ''", 'show: <id> must not be empty' },
    { "show --store " .. store .. " nothing-like-this", "no investigation 'nothing-like-this'" },
    -- search, list-investigations
    { "search --store " .. store .. " --limit 0 x", 'search: --limit must be at least 1' },
    { "search --store " .. store .. " --limit -1 x", 'search: --limit must be at least 1' },
    { "search --store " .. store .. " '()'", 'search: nothing to search for' },
    { "search --store " .. missing .. " x", 'no investigation store at' },
    { "list-investigations --store ''", 'list-investigations: --store must not be empty' },
    { "list-investigations --store " .. store .. " --limit 0", '--limit must be at least 1' },
    { "list-investigations --store " .. store .. " --limit 1.5", "bad value for --limit '1.5'" },
    -- root-cause, analyze
    { "root-cause --hypothesis '' --evidence " .. DATA, 'root-cause: --hypothesis must not be empty' },
    { "root-cause --hypothesis '   ' --evidence " .. DATA, 'root-cause: --hypothesis must not be empty' },
    { "root-cause --hypothesis cpu --evidence ''", 'root-cause: --evidence must not be empty' },
    { "analyze --data ''", 'analyze: --data must not be empty' },
    { "analyze --data " .. missing, 'no data dir ' .. missing },
    { "analyze --data " .. file, 'no data dir ' .. file },
    { "root-cause --hypothesis cpu --evidence " .. missing, missing .. ' does not exist' },
    { "report " .. missing, missing .. ' does not exist' },
    { "report " .. file, file .. ' is not a folder' },
    { "report " .. DATA .. " --output " .. dir .. "/x.txt", 'report: --output must end in .md or .html' },
    { "present --slides --data " .. missing, missing .. ' does not exist' },
    { "present --data " .. DATA, 'present: say --slides' },
    { "show " .. missing, missing .. ' does not exist' },
    { "hypotheses " .. file, file .. ' is not a folder' },
    { "fold " .. missing, 'fold: cannot read ' .. missing },
    { "fold " .. dir, 'fold: cannot read ' .. dir .. ': Is a directory' },
    { "flamegraph " .. missing, 'flamegraph: cannot read ' .. missing },
    { "profile --output " .. file .. " --duration 1", 'is a file, not a directory' },
    { "trace --replay " .. missing, 'trace: not in the recorded data' },
    { "reindex --store " .. missing, 'no investigation store at ' .. missing },
    -- diff
    { "diff --before " .. DATA .. " --after " .. DATA2 .. " --expect 'p101 -5%'", "'p101' is not a percentile" },
    { "diff --before " .. DATA .. " --after " .. DATA2 .. " --expect 'p0 -5%'", "'p0' is not a percentile" },
    { "diff --before " .. DATA .. " --after " .. DATA2 .. " --expect 'p99 -150%'", 'below -100%' },
    { "diff --before /nonexistent --after " .. DATA, 'diff: --before /nonexistent does not exist' },
    { "diff --before " .. FOLDED .. " --after /nonexistent", 'diff: --after /nonexistent does not exist' },
    { "diff --before '' --after " .. DATA, 'diff: --before must not be empty' },
    -- flamegraph, fold
    { "flamegraph --width 1e300 " .. FOLDED, 'flamegraph: --width must be' },
    { "flamegraph --colors nosuch " .. FOLDED, "bad value for --colors 'nosuch'" },
    { "fold --format nosuch " .. FOLDED, "bad value for --format 'nosuch'" },
    { "fold --bogus", "unknown option '--bogus'" },
    -- reindex
    { "reindex --store ''", 'reindex: --store must not be empty' },
  }
end

describe('hostile input', function()
  local dir, store, file
  setup(function()
    dir = h.tmpdir()
    store = dir .. '/store'
    os.execute("mkdir -p '" .. store .. "'")
    file = dir .. '/answers.yaml'
    local f = assert(io.open(file, 'w'))
    f:write('bogus_key: yes\n')
    f:close()
  end)
  teardown(function() h.rmrf(dir) end)

  it('is refused with exit 2, one line naming the problem, no output, nothing left behind, in bounded time',
    function()
      local failures = {}
      -- the store in the environment too: a case that slipped through must
      -- not write into ./investigations
      local env = string.format("cd '%s' && %s=1 PERF_MANUAL_STORE='%s' timeout -k 5 %d", dir, MARK, store, BOUND + 5)
      for _, c in ipairs(cases(store, file, dir)) do
        local t0 = sys.now()
        local out, err, st = h.pm(c[1] .. ' </dev/null', env)
        local took = sys.now() - t0
        local problems = {}
        if st ~= 2 then problems[#problems + 1] = 'exit ' .. tostring(st) end
        if out ~= '' then problems[#problems + 1] = 'stdout ' .. string.format('%q', out:sub(1, 120)) end
        if not err:match('^perf_manual: [^\n]*\n$') then
          problems[#problems + 1] = 'stderr is not one "perf_manual: " line'
        end
        if not err:find(c[2], 1, true) then problems[#problems + 1] = 'message does not say: ' .. c[2] end
        if took > BOUND then problems[#problems + 1] = string.format('took %.1f s', took) end
        local left = leftovers()
        if #left > 0 then
          problems[#problems + 1] = 'left processes ' .. table.concat(left, ' ')
          for _, pid in ipairs(left) do sys.kill(tonumber(pid), 9) end
        end
        if #problems > 0 then
          failures[#failures + 1] = string.format('perf_manual %s\n    %s\n    stderr: %s', c[1],
            table.concat(problems, '; '), (err:gsub('\n', '\\n')):sub(1, 300))
        end
      end
      -- nothing was stored by a refused command
      local stored = h.sh(string.format("ls -A '%s'", store))
      if stored ~= '' then failures[#failures + 1] = 'the store holds: ' .. stored end
      assert(#failures == 0, #failures .. ' case(s) failed:\n' .. table.concat(failures, '\n'))
    end)

  it('searches FTS syntax characters as plain words and keeps non-ASCII letters in words', function()
    local kb = require('perf_manual.kb')
    -- quoted words only: NEAR(, col:val and quotes are no query syntax
    assert.equal('"near"', kb.fts_query('NEAR('))
    assert.equal('"col" OR "val"', kb.fts_query('col:val'))
    assert.equal('"x" OR "y"', kb.fts_query('x" OR "y'))
    -- "ünïcode" is one word, not "n" and "code"
    assert.equal('"ünïcode"', kb.fts_query('ünïcode'))
  end)
  it('prints typed escape sequences escaped, finds names in any case and non-ASCII words', function()
    local root = h.tmpdir()
    local _, err, st = h.pm(string.format("investigate --replay '%s' --symptom \"$(printf 'evil " ..
      "\\033[31mred\\nünïcode \\302\\233')\" "
      .. "--name Evil-Case --batch --store '%s'", DATA, root))
    assert.equal(0, st, err)
    local out
    out, err, st = h.pm("list-investigations --store '" .. root .. "'")
    assert.equal(0, st, err)
    assert.is_nil(out:find('\27', 1, true))
    assert.is_nil(out:find('\194\155', 1, true))
    assert.matches('evil \\e[31mred\\nünïcode \\u009b', out, 1, true)
    -- stored as evil-case, found as Evil-Case
    out, err, st = h.pm("show --store '" .. root .. "' EVIL-case")
    assert.equal(0, st, err)
    assert.is_nil(out:find('\27', 1, true))
    assert.matches('Symptom:      evil \\e[31mred\\nünïcode', out, 1, true)
    out, err, st = h.pm("search --store '" .. root .. "' 'ÜNÏCODE'")
    assert.equal(0, st, err)
    assert.matches('evil-case', out, 1, true)
    -- a word of letters beyond ASCII does not match its ASCII pieces
    _, _, st = h.pm("search --store '" .. root .. "' 'xünïx'")
    assert.equal(1, st)
    h.rmrf(root)
  end)
end)
