-- The house's layering rules, checked on the require graph of lib/ and
-- playbooks/ (see docs ARCHITECTURE "Lua library"). Every require is read from
-- the source with a small Lua lexer: top-level, in-function, pcall(require, 'x'),
-- try_require('x'), and names built by concatenation
-- (require('perf_manual.tracers.' .. name) is an edge to every module one level
-- under perf_manual.tracers). Comments and strings that mention require do not count.
--
-- ARCH_REPORT=1 prints the graph's counts and every violation;
-- ARCH_ROOT=/path/to/tree checks another checkout (e.g. an old commit).
local dirent = require('posix.dirent')
local stat = require('posix.sys.stat')

-- The only modules that may require perf_manual._c.*: the thin Lua wrappers
-- of the native modules.
local NATIVE_WRAPPERS = {
  ['perf_manual.bpf'] = true,
  ['perf_manual.cfi'] = true,
  ['perf_manual.fold'] = true,
  ['perf_manual.http'] = true,
  ['perf_manual.sym'] = true,
  ['perf_manual.sys'] = true,
}

-- Calls that load a module by name.
local REQUIRE_CALLS = { require = true, try_require = true }

local M_root = os.getenv('ARCH_ROOT') or test_helpers.root

---------------------------------------------------------------------------
-- Lexer: names, strings (short and long) and operators; comments dropped.

local function long_bracket(src, i)
  -- at src[i] == '[': returns the index after the closing bracket and the body
  local eq = src:match('^%[(=*)%[', i)
  if not eq then return nil end
  local open_len = #eq + 2
  local close = ']' .. eq .. ']'
  local s, e = src:find(close, i + open_len, true)
  if not s then error('unterminated long bracket at byte ' .. i) end
  return e + 1, src:sub(i + open_len, s - 1)
end

local function lex(src)
  local toks, i, n, line = {}, 1, #src, 1
  local function push(t, v) toks[#toks + 1] = { t = t, v = v, line = line } end
  local function count_lines(a, b)
    local _, c = src:sub(a, b):gsub('\n', '')
    line = line + c
  end
  if src:sub(1, 2) == '#!' then i = (src:find('\n', 1, true) or n) end
  while i <= n do
    local c = src:sub(i, i)
    if c == '\n' then
      line = line + 1; i = i + 1
    elseif c:match('%s') then
      i = i + 1
    elseif src:sub(i, i + 1) == '--' then
      local j = src:sub(i + 2, i + 2) == '[' and long_bracket(src, i + 2)
      if j then
        count_lines(i, j - 1); i = j
      else
        i = src:find('\n', i, true) or n + 1
      end
    elseif c == '[' and src:match('^%[=*%[', i) then
      local j, body = long_bracket(src, i)
      push('str', body:gsub('^\n', ''))
      count_lines(i, j - 1); i = j
    elseif c == '"' or c == "'" then
      local j, buf = i + 1, {}
      while true do
        local d = src:sub(j, j)
        if d == '' then error('unterminated string at line ' .. line) end
        if d == c then break end
        if d == '\\' then
          local e = src:sub(j + 1, j + 1)
          if e == '\n' then line = line + 1 end
          if e == 'z' then
            local k = src:match('^%s*()', j + 2)
            count_lines(j + 2, k - 1); j = k
          else
            buf[#buf + 1] = e; j = j + 2
          end
        else
          if d == '\n' then line = line + 1 end
          buf[#buf + 1] = d; j = j + 1
        end
      end
      push('str', table.concat(buf)); i = j + 1
    elseif c:match('[%a_]') then
      local w = src:match('^[%w_]+', i)
      push('name', w); i = i + #w
    elseif c:match('%d') or (c == '.' and src:sub(i + 1, i + 1):match('%d')) then
      local num = src:match('^0[xX][%x%.]*[pP]?[-+]?%x*', i) or src:match('^[%d%.]+[eE][-+]?%d+', i)
        or src:match('^%d*%.?%d+', i) or src:match('^%d+', i)
      push('num', num); i = i + #num
    else
      local op = src:match('^%.%.%.', i) or src:match('^%.%.', i) or src:match('^[=~<>]=', i)
        or src:match('^::', i) or c
      push('op', op); i = i + #op
    end
  end
  return toks
end

---------------------------------------------------------------------------
-- Requires of one file: { name =, prefix = bool, line =, in_function = bool }

local BLOCK_OPEN = { ['function'] = true, ['if'] = true, ['do'] = true, ['repeat'] = true }
local BLOCK_CLOSE = { ['end'] = true, ['until'] = true }

local function module_like(s) return s:match('^[%w_][%w_%.]*$') ~= nil end

local function requires_of(src)
  local toks = lex(src)
  local out = {}
  -- which tokens are inside a function body
  local in_fn, stack, fdepth = {}, {}, 0
  for k, t in ipairs(toks) do
    in_fn[k] = fdepth > 0
    if t.t == 'name' then
      if BLOCK_OPEN[t.v] then
        -- `while ... do` and `for ... do` open one block at `do`
        stack[#stack + 1] = t.v
        if t.v == 'function' then fdepth = fdepth + 1 end
      elseif BLOCK_CLOSE[t.v] then
        local top = table.remove(stack)
        if top == 'function' then fdepth = fdepth - 1 end
      end
    end
  end
  -- arguments of the call whose '(' is at index k: tokens up to the matching ')'
  local function args_from(k, stop_depth)
    local depth, j, list = stop_depth or 0, k, {}
    while j <= #toks do
      local t = toks[j]
      if t.t == 'op' and (t.v == '(' or t.v == '{' or t.v == '[') then depth = depth + 1
      elseif t.t == 'op' and (t.v == ')' or t.v == '}' or t.v == ']') then
        depth = depth - 1
        if depth == 0 then break end
      end
      list[#list + 1] = j
      j = j + 1
    end
    return list
  end
  local function take(idxs, k0)
    for _, j in ipairs(idxs) do
      local t = toks[j]
      if t.t == 'str' and module_like(t.v) then
        local prev, nxt = toks[j - 1], toks[j + 1]
        if not (prev and prev.t == 'op' and prev.v == '..') then
          out[#out + 1] = { name = t.v, prefix = (nxt and nxt.t == 'op' and nxt.v == '..') or false,
            line = t.line, in_function = in_fn[k0] }
        end
      end
    end
  end
  for k, t in ipairs(toks) do
    local prev = toks[k - 1]
    local is_field = prev and prev.t == 'op' and (prev.v == '.' or prev.v == ':')
    local is_def = prev and prev.t == 'name' and prev.v == 'function'
    if t.t == 'name' and REQUIRE_CALLS[t.v] and not is_field and not is_def then
      local nxt = toks[k + 1]
      if nxt and nxt.t == 'str' then
        take({ k + 1 }, k)
      elseif nxt and nxt.t == 'op' and nxt.v == '(' then
        take(args_from(k + 1), k)
      elseif nxt and nxt.t == 'op' and nxt.v == ',' and prev and prev.t == 'op' and prev.v == '('
        and toks[k - 2] and toks[k - 2].t == 'name' and (toks[k - 2].v == 'pcall' or toks[k - 2].v == 'xpcall') then
        -- pcall(require, 'x' ...): the rest of the pcall's arguments
        take(args_from(k + 2, 1), k)
      end
    end
  end
  return out
end

---------------------------------------------------------------------------
-- The tree

local function is_dir(p)
  local st = stat.stat(p)
  return st ~= nil and stat.S_ISDIR(st.st_mode) ~= 0
end

local function lua_files(dir, rel, acc)
  acc = acc or {}
  local names = {}
  for name in dirent.files(dir) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    if name ~= '.' and name ~= '..' then
      local p, r = dir .. '/' .. name, (rel and (rel .. '/') or '') .. name
      if is_dir(p) then
        lua_files(p, r, acc)
      elseif name:match('%.lua$') then
        acc[#acc + 1] = r
      end
    end
  end
  return acc
end

local function read(p)
  local f = assert(io.open(p, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

-- nodes[name] = { file =, kind = 'lib'|'playbook', reqs = {...} }
local function load_tree(root)
  local nodes = {}
  for _, rel in ipairs(lua_files(root .. '/lib')) do
    local src = read(root .. '/lib/' .. rel)
    if not src:match('^%-%-%-@meta') then
      local name = rel:gsub('%.lua$', ''):gsub('/', '.'):gsub('%.init$', '')
      nodes[name] = { file = 'lib/' .. rel, kind = 'lib', reqs = requires_of(src) }
    end
  end
  for _, rel in ipairs(lua_files(root .. '/playbooks')) do
    local name = 'playbooks.' .. rel:gsub('%.lua$', ''):gsub('/', '.')
    nodes[name] = { file = 'playbooks/' .. rel, kind = 'playbook',
      reqs = requires_of(read(root .. '/playbooks/' .. rel)) }
  end
  return nodes
end

-- Edges between perf_manual modules (and playbooks); a prefix require becomes
-- an edge to every known module one level under it.
local function edges_of(nodes)
  local known = {}
  for name in pairs(nodes) do known[name] = true end
  for _, n in pairs(nodes) do
    for _, r in ipairs(n.reqs) do
      if not r.prefix then known[r.name] = true end
    end
  end
  local edges, seen = {}, {}
  local function add(from, to, r, n)
    if from == to then return end
    local key = from .. ' -> ' .. to
    if seen[key] then return end
    seen[key] = true
    edges[#edges + 1] = { from = from, to = to, key = key, where = n.file .. ':' .. r.line,
      in_function = r.in_function }
  end
  local names = {}
  for name in pairs(nodes) do names[#names + 1] = name end
  table.sort(names)
  for _, from in ipairs(names) do
    local n = nodes[from]
    for _, r in ipairs(n.reqs) do
      local ours = r.name:match('^perf_manual') or r.name:match('^playbooks%.')
      if ours and r.prefix then
        local targets = {}
        for k in pairs(known) do
          if k:sub(1, #r.name) == r.name and not k:sub(#r.name + 1):find('.', 1, true) and #k > #r.name then
            targets[#targets + 1] = k
          end
        end
        table.sort(targets)
        for _, to in ipairs(targets) do add(from, to, r, n) end
      elseif ours then
        add(from, r.name, r, n)
      end
    end
  end
  return edges
end

---------------------------------------------------------------------------
-- Rules

local function layer(name)
  if name:match('^playbooks%.') then return 'playbooks' end
  if name:match('^perf_manual%._c%.') then return '_c' end
  if name == 'perf_manual.store' then return 'store' end
  return name:match('^perf_manual%.([%w_]+)%.') or name:match('^perf_manual%.([%w_]+)$')
end

local MEASURING = { collectors = true, tracers = true, profilers = true }

local function why_forbidden(e, nodes)
  local from_lib = nodes[e.from] and nodes[e.from].kind == 'lib'
  local lf, lt = layer(e.from), layer(e.to)
  if lt == '_c' and not NATIVE_WRAPPERS[e.from] then
    return 'only the native wrappers require perf_manual._c.*'
  end
  if from_lib and lt == 'playbooks' then return 'lib/ requires a playbook' end
  if lf == 'analyzers' and (MEASURING[lt] or lt == 'measure' or lt == 'store') then
    return 'analyzers are pure: no ' .. lt
  end
  if lf == 'report' and (MEASURING[lt] or lt == 'measure') then
    return 'report renders data, it does not measure: no ' .. lt
  end
  if MEASURING[lf] and (lt == 'report' or lt == 'playbooks') then
    return lf .. ' return plain tables: no ' .. lt
  end
  return nil
end

-- Strongly connected components of the lib/ graph (Tarjan); a cyclic one is
-- reported with one cycle path through it.
local function cycles_of(nodes, edges)
  local adj = {}
  for _, e in ipairs(edges) do
    if nodes[e.from] and nodes[e.from].kind == 'lib' and nodes[e.to] and nodes[e.to].kind == 'lib' then
      adj[e.from] = adj[e.from] or {}
      table.insert(adj[e.from], e.to)
    end
  end
  for _, l in pairs(adj) do table.sort(l) end
  local names = {}
  for name, n in pairs(nodes) do if n.kind == 'lib' then names[#names + 1] = name end end
  table.sort(names)
  local index, low, on, st, idx, comps = {}, {}, {}, {}, 0, {}
  local function strong(v)
    idx = idx + 1; index[v] = idx; low[v] = idx
    st[#st + 1] = v; on[v] = true
    for _, w in ipairs(adj[v] or {}) do
      if not index[w] then
        strong(w); low[v] = math.min(low[v], low[w])
      elseif on[w] then
        low[v] = math.min(low[v], index[w])
      end
    end
    if low[v] == index[v] then
      local comp = {}
      repeat
        local w = table.remove(st); on[w] = false; comp[#comp + 1] = w
      until w == v
      if #comp > 1 then table.sort(comp); comps[#comps + 1] = comp end
    end
  end
  for _, v in ipairs(names) do if not index[v] then strong(v) end end
  -- one shortest cycle through the first member, inside the component (BFS)
  local out = {}
  for _, comp in ipairs(comps) do
    local member = {}
    for _, v in ipairs(comp) do member[v] = true end
    local start = comp[1]
    local prev, queue, found = { [start] = false }, { start }, nil
    local qi = 1
    while qi <= #queue and not found do
      local v = queue[qi]; qi = qi + 1
      for _, w in ipairs(adj[v] or {}) do
        if member[w] then
          if w == start then found = v; break end
          if prev[w] == nil then prev[w] = v; queue[#queue + 1] = w end
        end
      end
    end
    local path, v = { start }, found
    while v and v ~= start do table.insert(path, 2, v); v = prev[v] end
    path[#path + 1] = start
    local inside = {}
    for _, e in ipairs(edges) do
      if member[e.from] and member[e.to] then inside[#inside + 1] = e.key .. ' (' .. e.where .. ')' end
    end
    out[#out + 1] = { members = comp, path = table.concat(path, ' -> '), edges = inside }
  end
  return out
end

local function check(root)
  local nodes = load_tree(root)
  local edges = edges_of(nodes)
  local forbidden = {}
  for _, e in ipairs(edges) do
    local why = why_forbidden(e, nodes)
    if why then forbidden[#forbidden + 1] = { edge = e, why = why } end
  end
  local in_fn = 0
  for _, e in ipairs(edges) do if e.in_function then in_fn = in_fn + 1 end end
  return { nodes = nodes, edges = edges, forbidden = forbidden, cycles = cycles_of(nodes, edges),
    in_function = in_fn }
end

local function describe_result(r)
  local lines = {}
  lines[#lines + 1] = string.format('%d forbidden edges, %d cycles (%d edges in all, %d of them from a require '
    .. 'inside a function)', #r.forbidden, #r.cycles, #r.edges, r.in_function)
  for _, f in ipairs(r.forbidden) do
    lines[#lines + 1] = string.format('  forbidden: %s  (%s; %s)', f.edge.key, f.edge.where, f.why)
  end
  for _, c in ipairs(r.cycles) do
    lines[#lines + 1] = '  cycle: ' .. c.path .. '  {' .. table.concat(c.members, ', ') .. '}'
    for _, e in ipairs(c.edges) do lines[#lines + 1] = '    edge in the cycle: ' .. e end
  end
  return table.concat(lines, '\n')
end

describe('architecture', function()
  describe('the require parser', function()
    it('finds every form of require and ignores comments and strings', function()
      local src = table.concat({
        "local a = require('perf_manual.a')",
        "local b = require \"perf_manual.b\"",
        "-- require('perf_manual.comment')",
        "--[==[ require('perf_manual.long_comment') ]==]",
        "local s = 'require(\"perf_manual.in_string\")'",
        "local l = [[ require('perf_manual.in_long_string') ]]",
        "local function f() return require('perf_manual.inner').x end",
        "local ok, c = pcall(require, 'perf_manual.c')",
        "local t = require('perf_manual.tracers.' .. name)",
        "local u = pcall(require, 'perf_manual.suites.' .. tostring(n))",
        "local v = try_require('perf_manual.v')",
        "local w = require(x and 'perf_manual.w1' or 'perf_manual.w2')",
        "local y = obj.require('perf_manual.not_a_require')",
        "local z = require('posix.' .. 'unistd')",
      }, '\n')
      local got = {}
      for _, r in ipairs(requires_of(src)) do
        got[#got + 1] = r.name .. (r.prefix and '*' or '') .. (r.in_function and '@fn' or '') .. ':' .. r.line
      end
      assert.same({ 'perf_manual.a:1', 'perf_manual.b:2', 'perf_manual.inner@fn:7', 'perf_manual.c:8',
        'perf_manual.tracers.*:9', 'perf_manual.suites.*:10', 'perf_manual.v:11', 'perf_manual.w1:12',
        'perf_manual.w2:12', 'posix.*:14' }, got)
    end)

    it('expands a prefix to the modules one level under it', function()
      local nodes = {
        ['perf_manual.tracers'] = { file = 'lib/perf_manual/tracers/init.lua', kind = 'lib',
          reqs = { { name = 'perf_manual.tracers.', prefix = true, line = 3 } } },
        ['perf_manual.tracers.io'] = { file = 'x', kind = 'lib', reqs = {} },
        ['perf_manual.tracers.sched'] = { file = 'x', kind = 'lib', reqs = {} },
        ['perf_manual.tracers.sub.deep'] = { file = 'x', kind = 'lib', reqs = {} },
      }
      local keys = {}
      for _, e in ipairs(edges_of(nodes)) do keys[#keys + 1] = e.key end
      assert.same({ 'perf_manual.tracers -> perf_manual.tracers.io',
        'perf_manual.tracers -> perf_manual.tracers.sched' }, keys)
    end)

    it('finds a cycle and names its path', function()
      local nodes = {
        ['perf_manual.a'] = { file = 'a', kind = 'lib', reqs = { { name = 'perf_manual.b', line = 1 } } },
        ['perf_manual.b'] = { file = 'b', kind = 'lib', reqs = { { name = 'perf_manual.c', line = 1 } } },
        ['perf_manual.c'] = { file = 'c', kind = 'lib', reqs = { { name = 'perf_manual.a', line = 1 } } },
        ['perf_manual.d'] = { file = 'd', kind = 'lib', reqs = { { name = 'perf_manual.a', line = 1 } } },
      }
      local cyc = cycles_of(nodes, edges_of(nodes))
      assert.equal(1, #cyc)
      assert.equal('perf_manual.a -> perf_manual.b -> perf_manual.c -> perf_manual.a', cyc[1].path)
    end)

    it('names the rule an edge breaks', function()
      local nodes = { ['perf_manual.analyzers.x'] = { kind = 'lib' }, ['perf_manual.collectors.y'] = { kind = 'lib' },
        ['perf_manual.report'] = { kind = 'lib' }, ['perf_manual.bpf'] = { kind = 'lib' } }
      local function why(a, b) return why_forbidden({ from = a, to = b }, nodes) end
      assert.truthy(why('perf_manual.analyzers.x', 'perf_manual.store'))
      assert.truthy(why('perf_manual.analyzers.x', 'perf_manual.collectors.y'))
      assert.truthy(why('perf_manual.collectors.y', 'perf_manual.report.hist'))
      assert.truthy(why('perf_manual.report', 'perf_manual.tracers.io'))
      assert.truthy(why('perf_manual.report', 'playbooks.report'))
      assert.truthy(why('perf_manual.store', 'perf_manual._c.sys'))
      assert.falsy(why('perf_manual.bpf', 'perf_manual._c.bpf'))
      assert.falsy(why('perf_manual.report', 'perf_manual.store'))
      assert.falsy(why('perf_manual.analyzers.x', 'perf_manual.analyzers.stats'))
    end)
  end)

  describe('the tree ' .. M_root, function()
    local r = check(M_root)
    if os.getenv('ARCH_REPORT') then print('\n[architecture] ' .. describe_result(r)) end

    it('has a graph to check', function()
      assert.truthy(r.nodes['perf_manual.store'], 'no lib/perf_manual/store.lua under ' .. M_root)
      assert.truthy(#r.edges > 50)
    end)

    it('has no forbidden edge and no cycle among lib/ modules', function()
      if #r.forbidden > 0 or #r.cycles > 0 then error(describe_result(r), 0) end
    end)
  end)
end)
