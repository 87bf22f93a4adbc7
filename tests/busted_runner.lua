-- Runs busted inside the perf_manual host so specs reach perf_manual._c.*.
-- bin/perf_manual --lua tests/busted_runner.lua -- [busted args] [paths]
local root = require('perf_manual._host').root
package.path = root .. '/tests/?.lua;' .. package.path
local defaults = {
  '--helper=' .. root .. '/tests/spec/preload.lua',
  '--output=' .. root .. '/tests/busted_output.lua',
  '--pattern=_spec',
}
local args = {}
for _, a in ipairs(defaults) do args[#args + 1] = a end
for i = 1, #arg do args[#args + 1] = arg[i] end
for i = 1, #args do arg[i] = args[i] end
arg[0] = 'busted'
-- busted ends a failed run with a bare error() on Lua 5.1 (its way to a
-- non-zero exit); the counts are already printed, so exit 1 quietly
local ok, err = pcall(require('busted.runner'), { standalone = false })
if not ok then
  if err ~= nil then io.stderr:write(tostring(err), '\n') end
  os.exit(1)
end
