--- Redaction of secrets before a report is shared: command lines, the
--- environment and paths that look like tokens, passwords or keys.
---
--- The rules are plain Lua tables a team edits (or extends at run time with
--- `table.insert(require('perf_manual.report.redact').rules, {...})`):
---   secret_names  Lua patterns matched against lower-cased variable / option /
---                 field names; a match hides the whole value
---   rules         {pattern=, replace=, why=} applied to every string
---   secret_paths  Lua patterns for files that hold secrets; the path is hidden
local M = {}

M.MARK = '[REDACTED]'

-- substrings that mark a name as secret wherever they appear
M.secret_names = {
  'password', 'passwd', 'secret', 'token', 'api[_-]?key', 'private[_-]?key', 'access[_-]?key',
  'credential', 'passphrase', 'authorization', 'signature', 'ssh[_-]?key', 'gpg[_-]?key',
  'encryption[_-]?key', 'signing[_-]?key', 'secret[_-]?key', 'master[_-]?key',
}
-- short words that mark a name as secret only as a whole word (db_pass, not compass)
M.secret_words = { 'pass', 'pwd', 'pw', 'auth', 'dsn', 'cookie', 'session', 'sessionid' }

M.secret_paths = {
  '%.ssh/', 'id_rsa', 'id_ed25519', 'id_ecdsa', '%.pem$', '%.key$', '%.p12$', '%.pfx$', '%.keystore$',
  '%.aws/credentials', '%.netrc', '%.pgpass', '%.git%-credentials', '/secrets?/', '%.kube/config',
  '%.docker/config%.json', 'htpasswd', 'shadow$',
}

-- Order matters: specific token shapes first, then name=value forms.
M.rules = {
  { why = 'URL credentials', pattern = '(%a[%w+.-]*://)[^/%s:@]+:[^/%s@]+@', replace = '%1' .. M.MARK .. '@' },
  { why = 'Authorization header', pattern = '([Aa]uthorization:%s*%a+%s+)[^%s"\']+', replace = '%1' .. M.MARK },
  { why = 'bearer token', pattern = '([Bb]earer%s+)[%w%-._~+/]+=*', replace = '%1' .. M.MARK },
  { why = 'AWS access key id',
    pattern = 'AKIA[0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z]'
      .. '[0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z]', replace = M.MARK },
  { why = 'GitHub token', pattern = 'gh[pousr]_[%w]+', replace = M.MARK },
  { why = 'Slack token', pattern = 'xox[abprs]%-[%w%-]+', replace = M.MARK },
  { why = 'JSON web token', pattern = 'eyJ[%w_-]+%.[%w_-]+%.[%w_-]+', replace = M.MARK },
  { why = 'private key block', pattern = '%-%-%-%-%-BEGIN [%u ]*PRIVATE KEY%-%-%-%-%-.-%-%-%-%-%-END [%u ]*PRIVATE ' ..
    'KEY%-%-%-%-%-', replace = M.MARK },
}

local function secret_name(name)
  local n = tostring(name):lower()
  for _, p in ipairs(M.secret_names) do
    if n:find(p) then return true end
  end
  local words = {}
  for w in n:gmatch('[%a%d]+') do words[#words + 1] = w end
  for _, w in ipairs(words) do
    for _, sw in ipairs(M.secret_words) do
      if w == sw then return true end
    end
  end
  return false
end
M.is_secret_name = secret_name

local function secret_path(p)
  for _, pat in ipairs(M.secret_paths) do
    if p:find(pat) then return true end
  end
  return false
end
M.is_secret_path = secret_path

-- a value that is already the mark (as is, or escaped for Markdown: \[REDACTED\])
local function is_mark(val)
  return (val:gsub('\\', '')):sub(1, #M.MARK) == M.MARK
end

--- Redacts one string. Returns the new string and how many things were hidden.
function M.string(s)
  if type(s) ~= 'string' then return s, 0 end
  local total = 0
  for _, r in ipairs(M.rules) do
    local n
    s, n = s:gsub(r.pattern, r.replace)
    total = total + n
  end
  -- NAME=value, --name=value, name: value, -name value where NAME looks secret
  s = s:gsub('([%w_.-]+)(%s*[=:]%s*)("?)([^%s"&;,]+)', function(name, sep, q, val)
    if is_mark(val) then return nil end
    -- C++ and Rust scopes (Session::get, auth::token) name code, not a value
    if sep == ':' and val:sub(1, 1) == ':' then return nil end
    if secret_name(name:gsub('^%-+', '')) then
      total = total + 1
      return name .. sep .. q .. M.MARK
    end
  end)
  s = s:gsub('(%-%-?([%w_-]+))(%s+)([^%s%-][^%s]*)', function(flag, name, sp, val)
    if is_mark(val) then return nil end
    if secret_name(name) then
      total = total + 1
      return flag .. sp .. M.MARK
    end
  end)
  -- paths of files that hold secrets
  s = s:gsub('([~%w_./-]*/[%w_.@+-]+)', function(p)
    if secret_path(p) then total = total + 1; return M.MARK .. '(secret path)' end
  end)
  return s, total
end

--- Redacts a command line given as a list of arguments.
function M.argv(argv)
  local out, hide_next, n = {}, false, 0
  for i, a in ipairs(argv) do
    if hide_next then
      out[i] = M.MARK; hide_next = false; n = n + 1
    else
      local flag = a:match('^%-%-?([%w_-]+)$')
      if flag and secret_name(flag) then hide_next = true end
      local r, k = M.string(a)
      out[i] = r; n = n + k
    end
  end
  return out, n
end

--- Redacts an environment table {NAME = value}: secret-looking names lose
--- their value entirely; other values go through M.string.
function M.env(env)
  local out = {}
  for k, v in pairs(env) do
    if secret_name(k) then out[k] = M.MARK else out[k] = (M.string(tostring(v))) end
  end
  return out
end

--- A deep copy of `t` with every string redacted; a field whose key looks
--- secret loses its value.
function M.deep(t, seen)
  if type(t) == 'string' then return (M.string(t)) end
  if type(t) ~= 'table' then return t end
  seen = seen or {}
  if seen[t] then return seen[t] end
  local out = {}
  seen[t] = out
  for k, v in pairs(t) do
    if type(k) == 'string' and (type(v) == 'string' or type(v) == 'number') and secret_name(k) then
      out[k] = M.MARK
    else
      out[k] = M.deep(v, seen)
    end
  end
  return setmetatable(out, getmetatable(t))
end

return M
