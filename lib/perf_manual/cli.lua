--- Command line: `perf_manual [global options] <command> [options]`.
--- Every command is a playbook found on the playbook search path; `list`,
--- `run FILE` and `help` are built in.
local M = {}

local function host() return require('perf_manual._host') end
local function util_printable(s) return require('perf_manual.util').printable(s) end

-- One line, whatever went wrong: the problem, then where to read more
-- (argparse's "Did you mean" joins the line instead of starting another).
local function usage_error(msg, hint)
  local util = require('perf_manual.util')
  msg = tostring(msg):gsub('%s*\n%s*', '; '):gsub('; Did you mean', '; did you mean')
  util.user_error(msg .. (hint and (' (' .. hint .. ')') or ''))
end

--- The argparse parser of a playbook, built from its declaration.
function M.parser(pb, prog)
  local argparse = require('argparse')
  local p = argparse(prog, pb.summary, pb.description)
  p:add_help(false)
  p:flag('-h --help', 'Show this help and exit.')
  -- the examples go after the description, not in its place
  if pb.examples then
    p:epilog((pb.description and (pb.description .. '\n\n') or '') .. 'Examples:\n' .. pb.examples)
  end
  for _, spec in ipairs(pb.params) do
    local flagname = '--' .. spec.name:gsub('_', '-')
    local desc = spec.desc or ''
    if spec.choices then desc = desc .. ' (' .. table.concat(spec.choices, '|') .. ')' end
    if spec.default ~= nil and spec.kind ~= 'flag' then
      desc = desc .. ' [default: ' .. tostring(spec.default) .. ']'
    end
    if spec.positional then
      local a = p:argument(spec.name, desc)
      if spec.optional then a:args('?') end
    elseif spec.kind == 'flag' then
      local names = spec.short and ('-' .. spec.short .. ' ' .. flagname) or flagname
      p:flag(names, desc):target(spec.name)
    else
      local names = spec.short and ('-' .. spec.short .. ' ' .. flagname) or flagname
      local o = p:option(names, desc):target(spec.name)
      o:argname('<' .. spec.kind .. '>')
      if spec.kind == 'list' or spec.kind == 'strings' then o:count('*') end
      -- --pid N is --target pid:N: each alias is its own option, merged below
      for _, a in ipairs(spec.aliases or {}) do
        p:option('--' .. a.name:gsub('_', '-'), a.desc or ('same as --' .. flagname:sub(3) .. ' ' .. a.prefix
          .. 'VALUE'))
          :target(spec.name .. '@' .. a.name):argname('<' .. (a.argname or a.name) .. '>')
      end
    end
  end
  return p
end

local function flag_of(name) return '--' .. name:gsub('_', '-') end

-- argparse reads "-1" after an option as another option ("unknown option
-- '-1'"): a negative number after an option that takes a value is joined to
-- it (--duration=-1), so it parses and the range check says what is wrong.
local function join_negative_values(pb, argv)
  local takes = {}
  for _, spec in ipairs(pb.params) do
    if not spec.positional and spec.kind ~= 'flag' then
      takes[flag_of(spec.name)] = true
      if spec.short then takes['-' .. spec.short] = true end
      for _, a in ipairs(spec.aliases or {}) do takes[flag_of(a.name)] = true end
    end
  end
  local out, i = {}, 1
  while i <= #argv do
    local a, nxt = argv[i], argv[i + 1]
    if a == '--' then
      for j = i, #argv do out[#out + 1] = argv[j] end
      break
    end
    if takes[a] and nxt and nxt:match('^%-[%d%.]') then
      out[#out + 1] = a .. (a:sub(1, 2) == '--' and '=' or '') .. nxt
      i = i + 2
    else
      out[#out + 1] = a
      i = i + 1
    end
  end
  return out
end

--- The param that takes a command given after `--` (perf_manual trace --
--- ./app args): the playbook's target param, or the one marked command = true.
function M.command_param(pb)
  for _, spec in ipairs(pb.params) do
    if spec.command then return spec end
  end
  for _, spec in ipairs(pb.params) do
    if spec.kind == 'target' and not spec.positional then return spec end
  end
end

-- Splits argv at the first `--` when the playbook takes a command: the
-- options before it, the command's argv (kept as given) after it.
local function split_command(pb, argv)
  local cp = M.command_param(pb)
  if not cp then return argv end
  for i, a in ipairs(argv) do
    if a == '--' then
      local opts, cmd = {}, {}
      for j = 1, i - 1 do opts[j] = argv[j] end
      for j = i + 1, #argv do cmd[#cmd + 1] = argv[j] end
      return opts, cmd, cp
    end
  end
  return argv
end

--- Parses argv for a playbook: returns converted params.
function M.parse_params(pb, argv, prog)
  local p = M.parser(pb, prog)
  for _, a in ipairs(argv) do
    if a == '-h' or a == '--help' then
      io.stdout:write(p:get_help(), '\n')
      return nil
    end
    if a == '--' then break end
  end
  local cmd, cmd_param
  argv, cmd, cmd_param = split_command(pb, argv)
  if cmd and #cmd == 0 then
    usage_error(pb.name .. ': expected a command after --', 'e.g. ' .. prog .. ' -- ./app args')
  end
  local ok, args = p:pparse(join_negative_values(pb, argv))
  if not ok then usage_error(pb.name .. ': ' .. args, 'see `' .. prog .. ' --help`') end
  local params, given_flags = {}, {}
  for _, spec in ipairs(pb.params) do
    local raw = args[spec.name]
    -- a repeatable option not given at all comes back as {}
    if type(raw) == 'table' and #raw == 0 and spec.kind == 'list' then raw = nil end
    local given = (raw ~= nil and not (type(raw) == 'table' and #raw == 0))
      and { spec.positional and ('<' .. spec.name .. '>') or flag_of(spec.name) } or {}
    for _, a in ipairs(spec.aliases or {}) do
      local v = args[spec.name .. '@' .. a.name]
      if v ~= nil then
        -- the alias' own value is checked like the param's
        if tostring(v):match('^%s*$') then
          usage_error(string.format('%s: %s must not be empty', pb.name, flag_of(a.name)))
        end
        raw = a.prefix .. tostring(v)
        given[#given + 1] = flag_of(a.name)
      end
    end
    if #given > 1 then usage_error(string.format('%s: give %s, not both', pb.name, table.concat(given, ' or '))) end
    local flag = given[1] or flag_of(spec.name)
    -- an empty value is a slip (an unset shell variable), never a choice:
    -- --workload "" must not fall back to the whole system
    if spec.kind ~= 'flag' and not spec.empty and raw ~= nil then
      for _, v in ipairs(type(raw) == 'table' and raw or { raw }) do
        if tostring(v):match('^%s*$') then usage_error(string.format('%s: %s must not be empty', pb.name, flag)) end
      end
    end
    if spec.kind == 'list' and type(raw) == 'table' then
      local flat = {}
      for _, v in ipairs(raw) do for item in tostring(v):gmatch('[^,%s]+') do flat[#flat + 1] = item end end
      if #flat == 0 then usage_error(string.format('%s: %s must not be empty', pb.name, flag)) end
      raw = flat
    end
    if spec.kind == 'flag' and not raw then raw = nil end
    if given[1] and (spec.kind ~= 'flag' or raw) then given_flags[spec.name] = flag end
    if raw == nil then raw = spec.default end
    if raw == nil then
      if not spec.optional then
        usage_error(string.format('%s: missing %s', pb.name,
          spec.positional and ('<' .. spec.name .. '>') or flag_of(spec.name)), 'see `' .. prog .. ' --help`')
      end
    else
      local v, err = spec:convert(raw)
      if v == nil then
        local shown = given[1] and given[1]:sub(1, 2) == '--' and given[1] ~= flag_of(spec.name)
          and tostring(raw):gsub('^[%w_]+:', '') or tostring(raw)
        usage_error(string.format("%s: bad value for %s '%s': %s", pb.name, flag,
          require('perf_manual.util').printable(shown), err))
      end
      local range = spec:out_of_range(v)
      if range then usage_error(string.format('%s: %s %s', pb.name, flag, range)) end
      params[spec.name] = v
    end
  end
  if cmd then
    -- the command is the target: given twice is a slip
    local other = given_flags[cmd_param.name]
    if other then usage_error(string.format('%s: give %s or -- COMMAND, not both', pb.name, other)) end
    for _, spec in ipairs(pb.params) do
      local clash = given_flags[spec.name] and spec ~= cmd_param
      if clash then
        clash = false
        for _, c in ipairs(spec.conflicts or {}) do clash = clash or c == cmd_param.name end
        for _, c in ipairs(cmd_param.conflicts or {}) do clash = clash or c == spec.name end
      end
      if clash then
        usage_error(string.format('%s: give %s or -- COMMAND, not both', pb.name, given_flags[spec.name]))
      end
    end
    params[cmd_param.name] = require('perf_manual.measure.target').argv_spec(cmd)
    given_flags[cmd_param.name] = '-- COMMAND'
    -- the window is the command's life unless a duration is given (commands
    -- whose duration says until_exit; the others keep their default window)
    for _, spec in ipairs(pb.params) do
      if spec.until_exit and spec.kind == 'duration' and not given_flags[spec.name] then
        params[spec.name] = math.huge
      end
    end
  end
  -- options that make no sense together: --endpoint with --passive
  for _, spec in ipairs(pb.params) do
    for _, other in ipairs(given_flags[spec.name] and spec.conflicts or {}) do
      if given_flags[other] then
        usage_error(string.format('%s: give %s or %s, not both', pb.name, given_flags[spec.name], given_flags[other]))
      end
    end
  end
  if pb.params_check then pb.params_check(params) end
  return params
end

local function global_help(dirs)
  local playbook = require('perf_manual.playbook')
  local lines = {
    'Usage: perf_manual [--playbooks DIR] <command> [options]',
    '       perf_manual <command> --help',
    '       perf_manual run FILE.lua [options]',
    '',
    'A Linux performance-investigation runtime: USE/RED checks, eBPF tracers,',
    'profilers and guided investigations, written as Lua playbooks.',
    '',
    'Commands:',
  }
  for _, e in ipairs(playbook.list(dirs)) do
    if not (e.pb and e.pb.hidden) then
      lines[#lines + 1] = string.format('  %-18s %s', e.name, e.pb and e.pb.summary or ('(broken: ' .. e.err .. ')'))
    end
  end
  lines[#lines + 1] = string.format('  %-18s %s', 'list', 'List the playbooks on the search path and where each ' ..
    'comes from.')
  lines[#lines + 1] = string.format('  %-18s %s', 'run FILE.lua', 'Run a playbook file.')
  lines[#lines + 1] = ''
  lines[#lines + 1] = 'Global options:'
  lines[#lines + 1] = '  --playbooks DIR    Also look for playbooks in DIR (before the others).'
  lines[#lines + 1] = '  --version          Print the version.'
  lines[#lines + 1] = '  -h, --help         Show this help.'
  lines[#lines + 1] = ''
  lines[#lines + 1] = 'Playbook search path: --playbooks DIR, $PERF_MANUAL_PLAYBOOKS,'
  lines[#lines + 1] = '~/.config/perf_manual/playbooks, then the built-in playbooks/.'
  io.stdout:write(table.concat(lines, '\n'), '\n')
end

local function list(dirs, as_json)
  local playbook = require('perf_manual.playbook')
  local groups = require('perf_manual.topics').group(playbook.list(dirs))
  if as_json then
    local util = require('perf_manual.util')
    local out = util.array()
    for _, g in ipairs(groups) do
      local cmds = util.array()
      for _, e in ipairs(g.entries) do
        cmds[#cmds + 1] = { name = e.name, path = e.path, summary = e.pb and e.pb.summary, error = e.err }
      end
      out[#out + 1] = { topic = g.topic, heading = g.heading, commands = cmds }
    end
    io.stdout:write(util.json_encode(out, true), '\n')
    return 0
  end
  for i, g in ipairs(groups) do
    io.stdout:write(i > 1 and '\n' or '', g.heading, '\n')
    for _, e in ipairs(g.entries) do
      io.stdout:write(string.format('  %-19s %-60s %s\n', e.name,
        e.pb and e.pb.summary or ('BROKEN: ' .. e.err), e.path))
    end
  end
  return 0
end

--- Runs one playbook with argv (the arguments after the command).
function M.run_playbook(pb, argv, prog)
  local params = M.parse_params(pb, argv, prog)
  if not params then return 0 end
  -- the engine and what a run needs load here, after parsing: `--version`,
  -- `--help` and a bad flag stay a few milliseconds, and a plain command
  -- does not load the investigation store (YAML, SQLite)
  local inv
  if pb.investigation then
    inv = require('perf_manual.investigation').run(pb, params)
  else
    inv = require('perf_manual.playbook').run(pb, params)
  end
  return inv.exit_status or 0
end

--- Entry point from the host: argv is arg-style (arg[1..n]).
function M.main(argv)
  local args = {}
  for i = 1, #argv do args[i] = argv[i] end
  local extra_dirs = {}
  -- global options come before the command
  while args[1] and args[1]:sub(1, 1) == '-' do
    local a = table.remove(args, 1)
    if a == '--version' or a == '-V' then
      io.stdout:write('perf_manual ', host().version, '\n')
      return 0
    elseif a == '--playbooks' then
      local d = table.remove(args, 1)
      if not d then usage_error('--playbooks needs a directory') end
      extra_dirs[#extra_dirs + 1] = d
    elseif a:match('^%-%-playbooks=') then
      extra_dirs[#extra_dirs + 1] = a:match('^%-%-playbooks=(.*)$')
    elseif a == '-h' or a == '--help' then
      global_help(require('perf_manual.playbook').search_path(extra_dirs))
      return 0
    else
      usage_error("unknown option '" .. a .. "'", 'usage: perf_manual [--playbooks DIR] <command> [options]; see ' ..
        'perf_manual --help')
    end
  end
  -- a --playbooks folder that is not there is a typo: its playbooks would
  -- silently be the built-in ones
  for _, d in ipairs(extra_dirs) do
    if d == '' then usage_error('--playbooks must not be empty') end
    local st = require('posix.sys.stat').stat(d)
    if not st then usage_error('--playbooks ' .. d .. ': no such directory') end
    if require('posix.sys.stat').S_ISDIR(st.st_mode) == 0 then
      usage_error('--playbooks ' .. d .. ': not a directory')
    end
  end
  local playbook = require('perf_manual.playbook')
  local dirs = playbook.search_path(extra_dirs)
  -- a team's verbs/ and suites/ live beside its playbooks
  require('perf_manual.verbs').set_path(dirs)
  require('perf_manual.suites').set_path(dirs)
  local cmd = table.remove(args, 1)
  if not cmd or cmd == 'help' then
    if cmd == 'help' and args[1] then
      cmd = table.remove(args, 1)
      args = { '--help' }
    else
      global_help(dirs)
      return cmd and 0 or 2
    end
  end
  if cmd == 'list' then
    return list(dirs, args[1] == '--json')
  end
  if cmd == 'run' then
    local file = table.remove(args, 1)
    if not file or file == '--help' or file == '-h' then
      if file then
        io.stdout:write('Usage: perf_manual run FILE.lua [options]\n\n'
          .. 'Runs the playbook in FILE.lua; FILE.lua --help shows its options.\n')
        return 0
      end
      usage_error('run: missing FILE.lua', 'usage: perf_manual run FILE.lua [options]')
    end
    local f = io.open(file, 'r')
    if not f then usage_error('run: cannot open ' .. file) end
    f:close()
    local pb = playbook.load(file)
    return M.run_playbook(pb, args, 'perf_manual run ' .. file)
  end
  local path = playbook.find(cmd, dirs)
  if not path then
    usage_error("unknown command '" .. util_printable(cmd) .. "'", '`perf_manual list` shows the commands')
  end
  local pb = playbook.load(path)
  return M.run_playbook(pb, args, 'perf_manual ' .. cmd)
end

return M
