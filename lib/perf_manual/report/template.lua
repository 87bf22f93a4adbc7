--- A very small template engine for the report templates in templates/.
---
---   {{ a.b }}            the value, escaped for the output (HTML or Markdown)
---   {{{ a.b }}}          the value as is (for SVG this module's callers built)
---   {{#each list}}...{{/each}}   repeat; inside, names resolve on the item
---                        first, then outward; {{.}} is the item, {{@index}} its number
---   {{#if x}}...{{else}}...{{/if}}   a missing, false, empty string or empty
---                        list is false
---   {{! comment }}
---
--- A value tag naming a field that does not exist is an error that names the
--- template, the line and the field, so a typo never ships as an empty hole.
--- A missing measurement is passed as text ("not measured (why)"), not nil.
local M = {}

local function tmpl_error(name, line, msg)
  error(string.format('[perf_manual.report.template] %s:%d: %s', name, line, msg), 0)
end

--- Compiles template text into a tree; `name` is used in error messages.
function M.compile(text, name)
  name = name or 'template'
  local root = { kind = 'root', children = {} }
  local stack = { root }
  local pos, line = 1, 1
  local function add(node) local top = stack[#stack]; top.children[#top.children + 1] = node end
  while true do
    local s, e, triple = text:find('{{({?)', pos)
    if not s then
      add({ kind = 'text', text = text:sub(pos) })
      break
    end
    if s > pos then add({ kind = 'text', text = text:sub(pos, s - 1) }) end
    for _ in text:sub(pos, s - 1):gmatch('\n') do line = line + 1 end
    local close = triple == '{' and '}}}' or '}}'
    local cs, ce = text:find(close, e + 1, true)
    if not cs then tmpl_error(name, line, "unclosed '{{'") end
    local body = text:sub(e + 1, cs - 1):match('^%s*(.-)%s*$')
    local tag_line = line
    for _ in text:sub(s, ce):gmatch('\n') do line = line + 1 end
    pos = ce + 1
    -- a block or comment tag alone on its line takes the whole line with it
    local c1 = body:sub(1, 1)
    if triple ~= '{' and (c1 == '#' or c1 == '/' or c1 == '!' or body == 'else') then
      local before = text:sub(1, s - 1):match('\n([ \t]*)$') or (s == 1 and '' or text:sub(1, s - 1):match('^([ ' ..
        '\t]*)$'))
      local after = text:match('^[ \t]*\r?\n', pos) or (text:match('^[ \t]*$', pos) and '')
      if before and after then
        local top = stack[#stack]
        local last = top.children[#top.children]
        if last and last.kind == 'text' and #before > 0 then last.text = last.text:sub(1, #last.text - #before) end
        if #after > 0 then line = line + 1 end
        pos = pos + #after
      end
    end
    if triple == '{' then
      if not body:match('^[%w_.@]+$') then tmpl_error(name, tag_line, "bad field name '" .. body .. "'") end
      add({ kind = 'raw', path = body, line = tag_line })
    elseif body:sub(1, 1) == '!' then -- luacheck: ignore 542 (a comment renders nothing)
    elseif body:match('^#each%s') or body:match('^#if%s') then
      local kw, path = body:match('^#(%a+)%s+([%w_.@]+)$')
      if not kw then tmpl_error(name, tag_line, "bad block tag '{{" .. body .. "}}'") end
      local node = { kind = kw, path = path, line = tag_line, children = {} }
      add(node)
      stack[#stack + 1] = node
    elseif body == 'else' then
      local top = stack[#stack]
      if top.kind ~= 'if' or top.else_children then tmpl_error(name, tag_line, "'{{else}}' outside an {{#if}}") end
      top.then_children = top.children
      top.else_children = {}
      top.children = top.else_children
    elseif body:match('^/') then
      local kw = body:match('^/(%a+)$')
      local top = stack[#stack]
      if top.kind ~= kw then
        tmpl_error(name, tag_line, string.format("'{{%s}}' does not close %s", body,
          top.kind == 'root' and 'any block' or ("the {{#" .. top.kind .. "}} of line " .. top.line)))
      end
      if top.kind == 'if' and not top.then_children then top.then_children = top.children end
      stack[#stack] = nil
    else
      if not body:match('^[%w_.@]+$') then tmpl_error(name, tag_line, "bad field name '" .. body .. "'") end
      add({ kind = 'value', path = body, line = tag_line })
    end
  end
  if #stack > 1 then
    local top = stack[#stack]
    tmpl_error(name, top.line, "{{#" .. top.kind .. ' ' .. top.path .. '}} is never closed')
  end
  root.name = name
  return root
end

local NOTHING = {}

-- Looks a dotted path up through the scopes (innermost first).
local function lookup(scopes, path)
  if path == '.' then return scopes[#scopes] end
  local first, rest = path:match('^([^.]+)%.?(.*)$')
  for i = #scopes, 1, -1 do
    local sc = scopes[i]
    if type(sc) == 'table' and sc[first] ~= nil then
      local v = sc[first]
      for part in rest:gmatch('[^.]+') do
        if type(v) ~= 'table' then return NOTHING end
        v = v[part]
        if v == nil then return NOTHING end
      end
      return v
    end
  end
  return NOTHING
end

local function truthy(v)
  if v == NOTHING or v == nil or v == false or v == '' then return false end
  if type(v) == 'table' and next(v) == nil then return false end
  return true
end

local function render_nodes(nodes, scopes, out, ctx)
  for _, n in ipairs(nodes) do
    local k = n.kind
    if k == 'text' then
      out[#out + 1] = n.text
    elseif k == 'value' or k == 'raw' then
      local v = lookup(scopes, n.path)
      if v == NOTHING then tmpl_error(ctx.name, n.line, "unknown field '" .. n.path .. "'") end
      if type(v) == 'table' then tmpl_error(ctx.name, n.line, "field '" .. n.path .. "' is a table, not text") end
      v = tostring(v)
      out[#out + 1] = k == 'value' and ctx.escape(v) or v
    elseif k == 'if' then
      local body = truthy(lookup(scopes, n.path)) and n.then_children or n.else_children
      if body then render_nodes(body, scopes, out, ctx) end
    elseif k == 'each' then
      local list = lookup(scopes, n.path)
      if list == NOTHING then tmpl_error(ctx.name, n.line, "unknown field '" .. n.path .. "'") end
      if type(list) ~= 'table' then tmpl_error(ctx.name, n.line, "field '" .. n.path .. "' is not a list") end
      for i, item in ipairs(list) do
        scopes[#scopes + 1] = { ['@index'] = i }
        scopes[#scopes + 1] = item
        render_nodes(n.children, scopes, out, ctx)
        scopes[#scopes] = nil
        scopes[#scopes] = nil
      end
    end
  end
end

--- Renders a compiled template with `data`. opts.escape(text) escapes
--- {{ }} values (default: none).
function M.render(tree, data, opts)
  local out = {}
  render_nodes(tree.children, { data }, out, { name = tree.name, escape = (opts and opts.escape) or tostring })
  return table.concat(out)
end

local cache = {}

--- Loads and compiles a template file (cached by path).
function M.load(path, name)
  if cache[path] then return cache[path] end
  -- level 0: the message is shown to the user as is (report and present
  -- turn it into a one-line error), without this file's position
  local f, err = io.open(path, 'rb')
  if not f then error('[perf_manual.report.template] cannot read template ' .. tostring(err), 0) end
  -- a directory opens, then fails to read
  local text, rerr = f:read('*a')
  f:close()
  if not text then
    error('[perf_manual.report.template] cannot read template ' .. path .. ': '
      .. (tostring(rerr):match('Is a directory') and 'it is a directory' or tostring(rerr)), 0)
  end
  local tree = M.compile(text, name or path:match('[^/]+$'))
  cache[path] = tree
  return tree
end

return M
