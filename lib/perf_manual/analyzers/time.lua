--- Where a target's time goes, judged from a thread-state accounting
--- result (perf_manual.measure.tsa): the wait that holds it up, if any.
--- Pure: plain tables in, plain tables out.
local waits = require('perf_manual.waits')

local M = {}

-- Waits that are a thread with nothing to do, not a thread held up: events
-- it polls for, a sleep it chose, a condition variable it waits on for work
-- (FUTEX_WAIT_BITSET is what glibc's condition variables, semaphores and
-- joins use; a contended mutex waits with FUTEX_WAIT or LOCK_PI).
local function idle_wait(w)
  if w.reason == 'poll' or w.reason == 'sleep' then return true end
  if w.reason == 'lock' and w.syscall == 'futex' and w.futex_op == 'wait_bitset' then return true end
  return false
end
M.idle_wait = idle_wait

--- The dominant wait of a thread-state accounting result: the kind of wait
--- holding the most wall time of the target's active threads (a thread
--- idle all along, in poll, sleep or a condition variable, is left out, so
--- a pool of idle workers does not dilute the one that waits), among the
--- waits that hold a thread up (idle waits aside). Returns
--- { reason=, label=, share= (% of the active threads' wall time), wait=
--- (the top entry, with the object when it was named), object=, also= (the
--- next biggest state), shares = { state = % }, threads = active count }
--- or nil.
function M.dominant_wait(t)
  if type(t) ~= 'table' or t.available == false or type(t.threads) ~= 'table' then return nil end
  local life, states, by, top, n = 0, {}, {}, {}, 0
  for _, th in ipairs(t.threads) do
    local tl = tonumber(th.life_s) or 0
    local idle = 0
    for _, w in ipairs(th.waits or {}) do
      if idle_wait(w) then idle = idle + (tonumber(w.seconds) or 0) end
    end
    if tl > 0 and idle < tl * 0.95 then
      n = n + 1
      life = life + tl
      for _, st in ipairs(waits.STATES) do
        states[st] = (states[st] or 0) + (tonumber(th.states and th.states[st]) or 0)
      end
      for _, w in ipairs(th.waits or {}) do
        if w.reason and not idle_wait(w) then
          by[w.reason] = (by[w.reason] or 0) + (tonumber(w.seconds) or 0)
          if not top[w.reason] or (tonumber(w.seconds) or 0) > (tonumber(top[w.reason].seconds) or 0) then
            top[w.reason] = w
          end
        end
      end
    end
  end
  if life <= 0 then return nil end
  local best, bs = nil, 0
  for _, st in ipairs(waits.BLOCKED) do
    if (by[st] or 0) > bs then best, bs = st, by[st] end
  end
  if not best then return nil end
  local shares = {}
  for _, st in ipairs(waits.STATES) do shares[st] = (states[st] or 0) / life * 100 end
  local w = top[best]
  local obj = w.text or w.object
  if obj == nil and w.syscall then obj = tostring(w.syscall) .. (w.fd and (' on fd ' .. tostring(w.fd)) or '') end
  -- what else takes a good part of the time (the back-off sleep beside the peer)
  local also
  for _, st in ipairs(waits.STATES) do
    if st ~= best and shares[st] >= 10 and (not also or shares[st] > also.share) then
      also = { state = st, label = waits.LABELS[st], share = shares[st] }
    end
  end
  return { reason = best, label = waits.LABELS[best], share = bs / life * 100, wait = w, object = obj, also = also,
    shares = shares, threads = n }
end

--- "pid 4242 (feeder) via pipe (pipe / unix socket, 75% of wall time; sleep 25%)"
--- from a dominant wait.
function M.wait_phrase(d)
  local s = string.format('%s (%s, %.0f%% of wall time', tostring(d.object or d.label), d.label, d.share)
  if d.also then s = s .. string.format('; %s %.0f%%', d.also.label, d.also.share) end
  return s .. ')'
end

return M
