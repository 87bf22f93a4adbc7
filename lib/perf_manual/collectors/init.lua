--- The /proc collectors, loaded the first time each is used:
--- `require('perf_manual.collectors').cpu` (or `require('perf_manual').collectors.cpu`).
--- Each exposes `sample(...)` → snapshot and `rates(prev, cur)` → per-second
--- values; shapes are documented in each module and in _meta/collectors.lua.
local M = {}

M.names = { 'cpu', 'memory', 'disk', 'network', 'psi', 'process', 'cgroup', 'threads' }
M.system = { 'cpu', 'memory', 'disk', 'network' }

--- The collector named `name`, or nil when there is none.
function M.get(name)
  for _, n in ipairs(M.names) do
    if n == name then return M[n] end
  end
end

return setmetatable(M, {
  __index = function(t, k)
    local ok, mod = pcall(require, 'perf_manual.collectors.' .. k)
    if not ok then error('[perf_manual.collectors] no collector ' .. tostring(k) .. ': ' .. tostring(mod), 2) end
    rawset(t, k, mod)
    return mod
  end,
})
