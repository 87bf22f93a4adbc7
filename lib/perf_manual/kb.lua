--- The knowledge base: a SQLite FTS5 index over past investigations
--- (symptoms, findings, hypotheses, root causes, notes, checklist answers),
--- kept in `<store>/.index.sqlite`. The index is a cache of the metadata
--- files: each investigation write replaces its row in one transaction, and
--- `reindex` rebuilds it into a new file that is renamed over the old one.
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')
local sqlite3 = require('luasql.sqlite3')
local fcntl = require('posix.fcntl')
local unistd = require('posix.unistd')

local M = {}

M.FILE = '.index.sqlite'

local SCHEMA = {
  [[CREATE TABLE IF NOT EXISTS inv (id TEXT PRIMARY KEY, date TEXT, name TEXT,
      symptom TEXT, status TEXT, verdict TEXT, root_cause TEXT)]],
  -- column order matters for the bm25 weights below
  [[CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(id UNINDEXED, symptom,
      root_cause, findings, hypotheses, notes, answers, name, tokenize = 'porter unicode61')]],
}
-- symptom and root cause weigh most: "have we seen this before?"
local WEIGHTS = '0.0, 10.0, 8.0, 4.0, 4.0, 2.0, 1.0, 3.0'

local function sq(s)
  return "'" .. tostring(s or ''):gsub("'", "''") .. "'"
end

local function connect(path)
  local driver = sqlite3.sqlite3()
  local db, err = driver:connect(path)
  if not db then return nil, 'search index ' .. path .. ': ' .. tostring(err) end
  local c = db:execute('PRAGMA busy_timeout = 5000')
  if type(c) == 'userdata' then c:close() end
  for _, s in ipairs(SCHEMA) do
    local ok, serr = db:execute(s)
    if not ok then db:close(); return nil, 'search index ' .. path .. ': ' .. tostring(serr) end
  end
  return db
end

local function exec(db, sql)
  local ok, err = db:execute(sql)
  if not ok then error('[perf_manual.kb] ' .. tostring(err), 2) end
  return ok
end

--- The text fields of one investigation's metadata, for indexing.
function M.document(id, meta)
  local function join(list, fn)
    local out = {}
    for _, x in ipairs(list or {}) do
      local s = fn(x)
      if s and s ~= '' then out[#out + 1] = s end
    end
    return table.concat(out, '\n')
  end
  local root_cause = meta.root_cause or meta.conclusion or ''
  if type(root_cause) == 'table' then root_cause = root_cause.text or '' end
  local supported = join(meta.hypotheses, function(h)
    if h.status == 'supported' then return h.text end
  end)
  return {
    id = id,
    name = meta.name or '',
    symptom = meta.symptom or '',
    root_cause = root_cause .. (supported ~= '' and ('\n' .. supported) or ''),
    findings = join(meta.findings, function(f)
      return table.concat({ f.summary or '', f.resource or '', f.metric or '', f.severity or '' }, ' ')
    end),
    hypotheses = join(meta.hypotheses, function(h)
      return (h.text or '') .. ' ' .. join(h.evidence, function(e) return e.note end)
    end),
    notes = join(meta.notes, function(n) return type(n) == 'table' and n.text or tostring(n) end),
    answers = join(meta.checklist, function(q)
      if q.answered then return (q.question or '') .. ' ' .. tostring(q.answer or '') end
    end),
    date = (id:match('^(%d%d%d%d%-%d%d%-%d%d)')) or '',
    status = meta.status or '',
    verdict = meta.verdict or '',
  }
end

-- one row in inv per investigation; its rowid is the docs rowid, so an
-- update finds the old FTS entry without scanning
local function insert(db, doc, fresh)
  exec(db, string.format([[INSERT INTO inv (id, date, name, symptom, status, verdict, root_cause)
      VALUES (%s, %s, %s, %s, %s, %s, %s)
      ON CONFLICT(id) DO UPDATE SET date = excluded.date, name = excluded.name, symptom = excluded.symptom,
        status = excluded.status, verdict = excluded.verdict, root_cause = excluded.root_cause]],
    sq(doc.id), sq(doc.date), sq(doc.name), sq(doc.symptom), sq(doc.status), sq(doc.verdict), sq(doc.root_cause)))
  local cur = db:execute('SELECT rowid FROM inv WHERE id = ' .. sq(doc.id))
  local rowid = cur and tonumber(cur:fetch())
  if cur then cur:close() end
  if not rowid then error('[perf_manual.kb] no row for ' .. doc.id, 2) end
  if not fresh then exec(db, 'DELETE FROM docs WHERE rowid = ' .. rowid) end
  exec(db, string.format('INSERT INTO docs (rowid, id, symptom, root_cause, findings, hypotheses, notes, answers, '
    .. 'name) VALUES (%d, %s, %s, %s, %s, %s, %s, %s, %s)',
    rowid, sq(doc.id), sq(doc.symptom), sq(doc.root_cause), sq(doc.findings), sq(doc.hypotheses),
    sq(doc.notes), sq(doc.answers), sq(doc.name)))
end

local function in_tx(db, fn)
  exec(db, 'BEGIN IMMEDIATE')
  local ok, err = pcall(fn)
  if ok then
    exec(db, 'COMMIT')
  else
    db:execute('ROLLBACK')
    error(err, 0)
  end
end

--- Replaces one investigation's entry (one transaction).
function M.update(root, id, meta)
  local db, err = connect(root .. '/' .. M.FILE)
  if not db then error(err, 0) end
  local ok, ierr = pcall(in_tx, db, function() insert(db, M.document(id, meta)) end)
  db:close()
  if not ok then error(ierr, 0) end
end

--- Rebuilds the index into a new file renamed over the old one.
--- `each(visit)` calls visit(id, meta, err, partial) for every investigation
--- (perf_manual.store.reindex walks the store: the index does not know the
--- folder layout). Returns counts {indexed=, unreadable={ {id, err} }}.
function M.reindex(root, each)
  local tmp = string.format('%s/%s.tmp.%d', root, M.FILE, sys.getpid())
  -- a failed rebuild (full disk) leaves nothing behind: the file and its journal
  local function drop()
    os.remove(tmp)
    os.remove(tmp .. '-journal')
  end
  drop()
  local db, err = connect(tmp)
  if not db then drop(); util.user_error(err) end
  local res = { indexed = 0, unreadable = {} }
  local ok, ierr = pcall(in_tx, db, function()
    each(function(id, meta, merr, partial)
      if not meta then
        res.unreadable[#res.unreadable + 1] = { id = id, err = merr }
        meta = partial or {}
      end
      insert(db, M.document(id, meta), true)
      res.indexed = res.indexed + 1
    end)
  end)
  db:close()
  if not ok then drop(); error(ierr, 0) end
  -- make the new index durable before it replaces the old one
  local fd = fcntl.open(tmp, fcntl.O_RDONLY)
  if fd then unistd.fsync(fd); unistd.close(fd) end
  local rok, rerr = os.rename(tmp, root .. '/' .. M.FILE)
  if not rok then drop(); util.user_error('reindex: ' .. tostring(rerr)) end
  return res
end

local STOP = {}
for w in ([[a an and are as at be but by for from has have in is it its of on or
  that the their then there these this to was were when where which while who why
  will with after before very]]):gmatch('%S+') do STOP[w] = true end

--- Free text → an FTS5 query: every word quoted (no syntax injection), OR'ed
--- so partial matches still rank, stop words dropped. Bytes of UTF-8
--- letters (>= 0x80) belong to words: "ünïcode" is one word, and the
--- unicode61 tokenizer folds its case and diacritics as it did when indexing.
function M.fts_query(text)
  local words, seen = {}, {}
  for w in tostring(text or ''):lower():gmatch('[%w_\128-\255]+') do
    if not STOP[w] and not seen[w] then
      seen[w] = true
      words[#words + 1] = '"' .. w .. '"'
    end
  end
  if #words == 0 then return nil end
  return table.concat(words, ' OR ')
end

--- Searches the index. Returns a list of {id, name, symptom, status,
--- verdict, date, score, snippet} best first (score: higher is better).
function M.search(root, text, opts)
  opts = opts or {}
  local q = M.fts_query(text)
  if not q then return {} end
  local path = root .. '/' .. M.FILE
  local f = io.open(path, 'r')
  if not f then return {}, 'no search index in ' .. root end
  f:close()
  local db, err = connect(path)
  if not db then return {}, err end
  local sql = string.format([[SELECT d.id, i.name, i.symptom, i.status, i.verdict, i.date,
      bm25(docs, %s) AS score,
      snippet(docs, -1, '[', ']', '...', 10)
    FROM docs d LEFT JOIN inv i ON i.rowid = d.rowid
    WHERE docs MATCH %s %s ORDER BY score LIMIT %d]],
    WEIGHTS, sq(q), opts.exclude and ('AND d.id != ' .. sq(opts.exclude)) or '', opts.limit or 10)
  local cur, qerr = db:execute(sql)
  if not cur then db:close(); return {}, 'search: ' .. tostring(qerr) end
  local out = {}
  local row = cur:fetch({}, 'n')
  while row do
    out[#out + 1] = { id = row[1], name = row[2], symptom = row[3], status = row[4],
      verdict = row[5] ~= '' and row[5] or nil, date = row[6],
      score = -tonumber(row[7]), snippet = row[8] }
    row = cur:fetch({}, 'n')
  end
  cur:close()
  db:close()
  return out
end

--- Number of indexed investigations (nil when there is no index).
function M.count(root)
  local path = root .. '/' .. M.FILE
  local f = io.open(path, 'r')
  if not f then return nil end
  f:close()
  local db = connect(path)
  if not db then return nil end
  local cur = db:execute('SELECT count(*) FROM inv')
  local n = cur and tonumber(cur:fetch())
  if cur then cur:close() end
  db:close()
  return n
end

return M
