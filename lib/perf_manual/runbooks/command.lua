--- Running the system's tools (perf, ss, nsenter) for the runbooks.
local util = require('perf_manual.util')
local sys = require('perf_manual.sys')

local M = {}

--- Runs argv to its end, stdout/stderr to files (or discarded): true when
--- it exited 0, else false; then how it ended and its code.
function M.run(argv, out, err)
  local pid, why = sys.spawn(argv, { stdout = out or 'null', stderr = err or 'null' })
  if not pid then return nil, why end
  local how, code = sys.wait(pid)
  return how == 'exited' and code == 0, how, code
end

--- argv's stdout, or nil, why when it could not run or did not exit 0.
function M.capture(argv)
  local tmp = os.tmpname()
  local ok, how, code = M.run(argv, tmp)
  local text = util.readfile(tmp)
  os.remove(tmp)
  if not ok then
    return nil, argv[1] .. ' failed (' .. tostring(how) .. (code and (' ' .. tostring(code)) or '') .. ')'
  end
  return text
end

return M
