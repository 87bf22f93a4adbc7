--- The root namespace: `require('perf_manual').collectors.cpu` loads
--- submodules the first time they are used.
local M = {}
return setmetatable(M, {
  __index = function(t, k)
    local ok, mod = pcall(require, 'perf_manual.' .. k)
    if not ok then error('[perf_manual] no module ' .. k .. ': ' .. tostring(mod), 2) end
    rawset(t, k, mod)
    return mod
  end,
})
