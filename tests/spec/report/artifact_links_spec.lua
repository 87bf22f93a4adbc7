-- Every root-cause evidence line and every recommendation of a report links
-- to the artifact behind it, a file of the investigation folder; on stored
-- real investigations (tests/fixtures/report/investigations/lock and the
-- catalogue recordings tests/fixtures/catalogue/*).
local report = require('perf_manual.report')
local rc = require('perf_manual.analyzers.root_cause')
local F = require('perf_manual.analyzers.findings')
local store = require('perf_manual.store')
local h = test_helpers

local DIRS = { 'tests/fixtures/report/investigations/lock' }
for _, n in ipairs({ 'cpu_burn', 'cpu_quota', 'fsync_writer', 'hot_thread', 'mem_pressure', 'mutex_contention',
  'pipe_waiter' }) do
  DIRS[#DIRS + 1] = 'tests/fixtures/catalogue/' .. n
end

local function exists(dir, rel)
  local f = io.open(dir .. '/' .. rel, 'rb')
  if f then f:close() end
  return f ~= nil
end

-- what `investigate` writes as recommendations (inv:recommend()): the
-- catalogue's fixes for the supported hypotheses, from the recorded data
local function with_recommendations(ds, dir)
  local hs = {}
  for _, x in ipairs(ds.meta.hypotheses or {}) do hs[#hs + 1] = { text = x.text, status = x.status } end
  ds.meta.recommendations = rc.recommendations(F.prepare(store.results(dir)), hs)
  return ds
end

-- the lines of a Markdown section: from its heading to the next blank-line-led heading
local function md_section(text, heading, item)
  local out, on = {}, false
  for line in (text .. '\n'):gmatch('(.-)\n') do
    if line:match('^#') then on = line:find(heading, 1, true) ~= nil
    elseif on and line:match(item) then out[#out + 1] = line end
  end
  return out
end

local function md_links(line)
  local out = {}
  for target in line:gmatch('%]%(([^)%s]+)%)') do out[#out + 1] = target end
  return out
end

local function html_items(text, id)
  local body = text:match('id="' .. id:gsub('%-', '%%-') .. '">(.-)</[ou]l>')
  local out = {}
  for li in (body or ''):gmatch('<li>(.-)</li>') do out[#out + 1] = li end
  return out, body ~= nil
end

local function html_links(li)
  local out = {}
  for target in li:gmatch('<a href="([^"]+)"') do out[#out + 1] = target end
  return out
end

local function check_lines(dir, lines, links_of, what)
  for _, l in ipairs(lines) do
    if not l:find('No recommendation recorded', 1, true) then
      local ls = links_of(l)
      assert.is_true(#ls > 0, string.format('%s: %s without a link: %s', dir, what, l))
      for _, t in ipairs(ls) do
        assert.is_true(exists(h.root .. '/' .. dir, t), string.format('%s: %s links %s, not in the folder', dir, what,
          t))
      end
    end
  end
  return #lines
end

describe('report: each sentence links to the artifact behind it', function()
  for _, dir in ipairs(DIRS) do
    for _, recs in ipairs({ 'as recorded', 'recommended' }) do
      it(dir .. ' (' .. recs .. '): technical and executive Markdown and HTML, slides', function()
        local function load()
          local ds = assert(report.load(h.root .. '/' .. dir))
          if recs == 'recommended' then with_recommendations(ds, h.root .. '/' .. dir) end
          return ds
        end
        local md = report.render(load(), { format = 'technical', output = 'md' })
        local n_ev = check_lines(dir, md_section(md, 'Root Cause', '^%- '), md_links, 'evidence line')
        local n_rec = check_lines(dir, md_section(md, 'Recommendations', '^%d+%. '), md_links, 'recommendation')
        assert.is_true(n_rec > 0, dir .. ': no recommendation rendered')
        -- the suffix is said by the links, not again in the text
        assert.is_nil(md:find('[evidence:', 1, true), dir)
        local html = report.render(load(), { format = 'technical', output = 'html' })
        local ev_li = html_items(html, 'root-cause-evidence')
        local n_ev_html = check_lines(dir, ev_li, html_links, 'HTML evidence line')
        n_ev_html = n_ev_html + check_lines(dir, (html_items(html, 'findings')), html_links, 'HTML finding')
        assert.equal(n_ev, n_ev_html)
        n_ev = #ev_li
        local rec_li = html_items(html, 'recommendations')
        assert.equal(n_rec, check_lines(dir, rec_li, html_links, 'HTML recommendation'))
        local ex = report.render(load(), { format = 'executive', output = 'md' })
        assert.equal(n_rec, check_lines(dir, md_section(ex, 'What happens next', '^%d+%. '), md_links,
          'executive recommendation'))
        assert.equal(n_ev, check_lines(dir, md_section(ex, 'Why we think so', '^%- '), md_links,
          'executive evidence line'))
        local exh = report.render(load(), { format = 'executive', output = 'html' })
        assert.equal(n_ev, check_lines(dir, (html_items(exh, 'root-cause-evidence')), html_links,
          'executive HTML evidence'))
        local deck = report.render(load(), { format = 'slides' })
        local recs_slide = deck:match('id="s%-recommendations">(.-)</section>')
        local n = 0
        for li in recs_slide:gmatch('<li>(.-)</li>') do
          n = n + check_lines(dir, { li }, html_links, 'slide recommendation')
        end
        assert.equal(n_rec, n)
        local rc_slide = deck:match('id="s%-root%-cause">(.-)</section>')
        for li in rc_slide:gmatch('<li>(.-)</li>') do check_lines(dir, { li }, html_links, 'slide evidence line') end
      end)
    end
  end

  it('names the lock fixture evidence and the catalogue fix with their artifacts', function()
    local dir = h.root .. '/tests/fixtures/catalogue/mutex_contention'
    local ds = with_recommendations(assert(report.load(dir)), dir)
    assert.is_true(#ds.meta.recommendations > 0)
    local md = report.render(ds, { format = 'technical', output = 'md' })
    assert.truthy(md:find('[raw_data/trace-lock.json](raw_data/trace-lock.json)', 1, true))
    assert.truthy(md:find('[raw_data/use-check.json](raw_data/use-check.json)', 1, true))
  end)

  it('does not link an artifact that is not in the folder', function()
    local dir = h.root .. '/tests/fixtures/report/investigations/lock'
    local ds = assert(report.load(dir))
    ds.meta.recommendations = { { status = 'OPEN', text = 'shard the lock [evidence: raw_data/gone.json]' } }
    local md = report.render(ds, { format = 'technical', output = 'md' })
    local line = md_section(md, 'Recommendations', '^%d+%. ')[1]
    assert.equal('1. [OPEN] shard the lock (evidence raw\\_data/gone.json: not in this folder)', line)
  end)
end)

describe('report --output away from the investigation', function()
  it('links the artifacts by their path in the investigation folder, and each exists', function()
    local inv = h.root .. '/tests/fixtures/report/investigations/lock'
    local dir = h.tmpdir()
    local _, err, st = h.pm(string.format("report '%s' --output '%s/r.md'", inv, dir))
    assert.equal(0, st, err)
    local text = assert(io.open(dir .. '/r.md')):read('*a')
    local n = 0
    for href in text:gmatch('%]%((/[^)]+raw_data/[^)]+)%)') do
      n = n + 1
      assert.is_truthy(io.open((href:gsub('%%(%x%x)', function(x) return string.char(tonumber(x, 16)) end))), href)
    end
    assert.is_true(n > 0, 'no artifact link in ' .. dir .. '/r.md')
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
