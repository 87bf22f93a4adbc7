--- The metric registry a metrics playbook fills at every scrape. Families
--- are declared on first use and keep their order; their samples are
--- cleared before each scrape, so a series nobody set this time is not
--- served (a missing measurement is absent, never 0).
---
---   local reg = metrics.new()
---   reg:begin()
---   reg:gauge('perf_manual_use_utilization', { help = '...', labels = { 'resource', 'name' } })
---      :set({ resource = 'cpu', name = 'CPU' }, 42.5)
---   reg:histogram('perf_manual_runq_latency_seconds', { help = '...', scale = 1e-9 })
---      :observe({}, slots, sum_ns, count)
---   reg:families()  -> the plain tables perf_manual.report.prometheus renders
local hist = require('perf_manual.hist')

local M = {}

local NAME = '^[a-zA-Z_:][a-zA-Z0-9_:]*$'
local LABEL = '^[a-zA-Z_][a-zA-Z0-9_]*$'

local Family = {}
Family.__index = Family

--- Sets a gauge or counter sample. labels: table of label name -> value
--- (names outside the family's labels are an error: they would be dropped).
function Family:set(labels, value)
  if type(value) ~= 'number' then return self end -- not measured: no sample
  labels = labels or {}
  for k in pairs(labels) do
    if not self.label_set[k] then error(string.format("metric %s has no label '%s'", self.name, k), 2) end
  end
  self.samples[#self.samples + 1] = { labels = labels, value = value }
  return self
end

--- Adds a histogram sample from the kernel's log2 slots (slots[1] = slot
--- 0), its exact sum in the kernel's unit when known, and its count.
function Family:observe(labels, slots, sum, count)
  labels = labels or {}
  for k in pairs(labels) do
    if not self.label_set[k] then error(string.format("metric %s has no label '%s'", self.name, k), 2) end
  end
  local s = slots
  if #slots ~= self.nslots then
    s = {}
    for i = 1, self.nslots do s[i] = slots[i] or 0 end
    -- values the kernel clamped into its last slot stay there (+Inf)
    for i = self.nslots + 1, #slots do s[self.nslots] = s[self.nslots] + slots[i] end
  end
  self.samples[#self.samples + 1] = { labels = labels, slots = s, sum = sum, count = count }
  return self
end

--- Same, from a bucket list (perf_manual.hist.log2_buckets: bucket i is
--- log2 slot i-1).
function Family:observe_buckets(labels, buckets, sum, count)
  local slots = {}
  for i, b in ipairs(buckets or {}) do
    local s = hist.log2_slot(b.lo) + 1
    assert(s == i, 'not log2 buckets from slot 0')
    slots[i] = b.count
  end
  return self:observe(labels, slots, sum, count)
end

local Registry = {}
Registry.__index = Registry

function M.new()
  return setmetatable({ list = {}, by = {} }, Registry)
end

function Registry:_family(name, spec, kind)
  local f = self.by[name]
  if f then
    if f.type ~= kind then error(string.format('metric %s is a %s, not a %s', name, f.type, kind), 3) end
    return f
  end
  if type(name) ~= 'string' or not name:match(NAME) then error('bad metric name: ' .. tostring(name), 3) end
  if kind == 'counter' and not name:match('_total$') then error('counter ' .. name .. ' must end in _total', 3) end
  spec = spec or {}
  local labels, set = {}, {}
  for i, l in ipairs(spec.labels or {}) do
    if not l:match(LABEL) or l == 'le' then error('bad label name for ' .. name .. ': ' .. tostring(l), 3) end
    labels[i] = l
    set[l] = true
  end
  f = setmetatable({ name = name, type = kind, help = spec.help or name, unit = spec.unit, labels = labels,
    label_set = set, scale = spec.scale, fold = spec.fold, guard = spec.guard, guard_key = spec.guard_key,
    always = spec.always,
    nslots = spec.slots or hist.LOG2_SLOTS, samples = {} }, Family)
  self.by[name] = f
  self.list[#self.list + 1] = f
  return f
end

--- A gauge family (spec: help, labels, unit, fold = 'max'|'sum', guard = false,
--- guard_key = families that fold the same label values).
function Registry:gauge(name, spec) return self:_family(name, spec, 'gauge') end
--- A counter family (name ends in _total).
function Registry:counter(name, spec) return self:_family(name, spec, 'counter') end
--- A histogram family over log2 slots (spec.scale: base unit per kernel
--- unit, e.g. 1e-9 for ns -> seconds; spec.slots: number of kernel slots).
function Registry:histogram(name, spec) return self:_family(name, spec, 'histogram') end

--- Clears every family's samples (start of a scrape).
function Registry:begin()
  for _, f in ipairs(self.list) do f.samples = {} end
end

--- The families, in declaration order.
function Registry:families()
  return self.list
end

return M
