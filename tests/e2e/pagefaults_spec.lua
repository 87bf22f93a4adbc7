-- pagefaults end to end on fault_touch (major faults re-reading a mapped
-- file whose cache it drops, minor faults rewriting anonymous memory it
-- gives back), judged by `perf stat -e minor-faults,major-faults` (the
-- kernel's software counters) over the same seconds.
local h = test_helpers
local W = require('e2e.workload')
local util = require('perf_manual.util')

-- the tools these runs need: skipped (with the reason) when one is missing, a failure in CI
local function have_tools()
  for _, t in ipairs({ { 'perf', 'linux-perf' } }) do
    local _, _, st = h.sh('command -v ' .. t[1])
    if st ~= 0 then
      h.skip_unless_required('PM_REQUIRE_BPF', t[1] .. ' is not installed (' .. t[2] .. ')')
      return false
    end
  end
  return true
end

local SECONDS = 3

-- perf stat -x, output → event → count
local function perf_stat(path)
  local out = {}
  for line in (util.readfile(path) or ''):gmatch('[^\n]+') do
    local n, ev = line:match('^(%d+),[^,]*,([%w-]+)')
    if n then out[ev] = tonumber(n) end
  end
  return out
end

describe('pagefaults (e2e)', function()
  it('agrees with perf stat on the rates, and names the file and the stacks', function()
    if not h.need_root() then return end
    if not have_tools() then return end
    h.with_machine_lock(function()
      W.with('fault_touch', { '30', W.scratch() }, {}, function(w)
        local stat = os.tmpname()
        -- both windows start together; pagefaults waits for its own perf to attach first
        local out, err, st = h.sh(string.format('perf stat -x, -e minor-faults,major-faults -p %d -o %s -- sleep %d &'
          .. ' %s/bin/perf_manual pagefaults --target %d --duration %d --json; wait', w.pid, stat, SECONDS + 0.3,
          h.root, w.pid, SECONDS))
        local truth = perf_stat(stat)
        os.remove(stat)
        assert.equal(0, st, err)
        local doc = assert(util.json_decode(out), out)
        assert.is_true((truth['major-faults'] or 0) > 100, 'perf stat saw too few major faults')
        -- the two windows are a few hundred ms apart and the workload's pace swings with the disk:
        -- the rates agree within 25%, the major share of all faults within 3 points
        local function near(what, ours, theirs)
          assert.is_true(math.abs(ours - theirs) <= theirs * 0.25,
            string.format('%s: pagefaults %.0f/s, perf stat %.0f/s', what, ours, theirs))
        end
        local pmaj, pmin = truth['major-faults'], truth['minor-faults']
        near('major', doc.major_rate, pmaj / (SECONDS + 0.3))
        near('minor', doc.minor_rate, pmin / (SECONDS + 0.3))
        local share = doc.major / (doc.major + doc.minor)
        assert.is_true(math.abs(share - pmaj / (pmaj + pmin)) < 0.03,
          string.format('major share: pagefaults %.3f, perf stat %.3f', share, pmaj / (pmaj + pmin)))
        local by = {}
        for _, m in ipairs(doc.mappings) do by[m.path:match('fault_touch') and 'file' or m.path] = m end
        assert.is_table(by.file, 'no mapping of the workload file')
        assert.equal(by.file.count, by.file.read)
        assert.is_table(by['[anon]'])
        local frames = {}
        for _, s in ipairs(doc.stacks) do frames[s.frames[1]] = (frames[s.frames[1]] or 0) + s.count end
        assert.equal(by.file.count, frames.read_file)
        local f = {}
        for _, x in ipairs(doc.findings) do f[x.kind] = x.severity end
        assert.equal('high', f.major)
      end)
      W.cleanup_scratch()
    end)
  end)
end)
