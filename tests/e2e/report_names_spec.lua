-- A real investigation, rendered: the technical report (Markdown and HTML),
-- the executive report and the slides read findings first and show every
-- metric the run recorded by its human name, never by its key. Root: the
-- investigation's drill-down loads BPF tracers.
local h = test_helpers
local W = require('e2e.workload')
local store = require('perf_manual.store')
local report = require('perf_manual.report')
local names = require('perf_manual.metric_names')
local util = require('perf_manual.util')

-- every key the run's data holds, and the same without its file name
local function raw_keys(ds)
  local keys = {}
  local function add(k)
    keys[k] = true
    local short = k:gsub('^[^.]*%.', '', 1)
    if short:find('.', 1, true) then keys[short] = true end
  end
  for _, t in ipairs({ ds.series, ds.samples, ds.scalars, ds.histograms }) do for k in pairs(t) do add(k) end end
  return util.keys(keys)
end

describe('a real investigation, rendered', function()
  teardown(function() W.cleanup_scratch() end)

  it('reads findings first and names every metric it recorded', function()
    if not h.need_root('the drill-down loads BPF tracers') then return end
    h.with_machine_lock(function()
      local root = h.tmpdir()
      local ok, err = pcall(function()
        local cmd = h.workload('fsync_writer') .. ' 30 ' .. W.scratch()
        local out, stderr, st = h.pm(string.format('investigate --workload "%s" --symptom "writes are slow" --batch '
          .. '--duration 2 --store %s', cmd, root))
        assert.equal(0, st, out .. stderr)
        local dir = root .. '/' .. store.list(root)[1]
        local ds = assert(report.load(dir))
        local keys = raw_keys(ds)
        assert.is_true(#keys >= 10, 'only ' .. #keys .. ' keys in the run')
        for _, k in ipairs(keys) do
          local r = names.lookup(k)
          assert.is_true(r.known, k .. ' has no name (derived: ' .. r.name .. ')')
        end
        -- the draft report the investigation wrote, and every format rendered again
        local texts = { ['report.md'] = assert(util.readfile(dir .. '/report.md')) }
        for _, f in ipairs({ { 'technical', 'md' }, { 'technical', 'html' }, { 'executive', 'md' },
          { 'executive', 'html' } }) do
          texts[f[1] .. '.' .. f[2]] = report.render(ds, { format = f[1], output = f[2] })
        end
        texts.slides = report.render(ds, { format = 'slides' })
        for what, text in pairs(texts) do
          local plain = text:gsub('\\', '')
          for _, k in ipairs(keys) do
            assert.is_nil(plain:find(k, 1, true), what .. ' shows the raw key ' .. k)
          end
        end
        local md = texts['report.md']
        local last = 0
        for _, hd in ipairs({ '## Summary', '## Root Cause', '## Fix and Validation', '## Recommendations',
          '## Technical Details', '## Appendix A: Timeline' }) do
          local at = md:find('\n' .. hd .. '\n', 1, true)
          assert.is_true(at and at > last, hd .. ' missing or out of order in report.md')
          last = at
        end
        assert.matches('No fix recorded%. .-`perf_manual fix %S+ "text" %-%-validate`', md)
        assert.matches('| CPU busy, %% of all CPUs |', md)
      end)
      h.rmrf(root)
      assert(ok, err)
    end)
  end)
end)
