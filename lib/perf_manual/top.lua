--- `perf_manual top`: the live screen (raw terminal, alternate screen,
--- keys) or plain text / JSON-lines frames (--batch) over
--- perf_manual.measure.top, laid out by perf_manual.report.top.
---
---   require('perf_manual.top').run{ interval = 1, batch = false, ... }
local sys = require('perf_manual.sys')
local measure = require('perf_manual.measure.top')
local layout = require('perf_manual.report.top')
local util = require('perf_manual.util')
local ffi = require('ffi')

local M = {}

-- Terminal ---------------------------------------------------------------------

ffi.cdef [[
struct pm_top_winsize { unsigned short rows, cols, xpixel, ypixel; };
int ioctl(int fd, unsigned long request, ...);
]]
local TIOCGWINSZ = 0x5413

--- rows, cols of the terminal on fd (nil when it is not one).
function M.winsize(fd)
  local ws = ffi.new('struct pm_top_winsize')
  if ffi.C.ioctl(fd or 1, TIOCGWINSZ, ws) ~= 0 or ws.rows == 0 then return nil end
  return ws.rows, ws.cols
end

--- Why the live screen cannot run here (nil when it can): stdout and stdin
--- must be terminals that understand cursor movement. env and isatty:
--- os.getenv and sys.isatty unless given.
function M.no_tty_reason(env, isatty)
  env, isatty = env or os.getenv, isatty or sys.isatty
  local term = env('TERM')
  if not isatty(1) then return 'stdout is not a terminal' end
  if not isatty(0) then return 'stdin is not a terminal' end
  if not term or term == '' or term == 'dumb' then return 'TERM is ' .. (term and term ~= '' and term or 'unset') end
end

local ENTER = '\27[?1049h\27[?25l\27[H\27[2J'
local LEAVE = '\27[?25h\27[?1049l'

--- Raw mode (no echo, keys one at a time; Ctrl-C still a signal) and the
--- alternate screen; returns the function that puts everything back.
function M.enter_terminal(out)
  local termio = require('posix.termio')
  local saved = assert(termio.tcgetattr(0))
  local raw = {}
  for k, v in pairs(saved) do raw[k] = v end
  raw.cc = {}
  for k, v in pairs(saved.cc) do raw.cc[k] = v end
  raw.lflag = require('bit').band(saved.lflag, require('bit').bnot(termio.ICANON + termio.ECHO))
  raw.cc[termio.VMIN], raw.cc[termio.VTIME] = 1, 0
  assert(termio.tcsetattr(0, termio.TCSANOW, raw))
  out:write(ENTER)
  out:flush()
  local restored = false
  return function()
    if restored then return end
    restored = true
    termio.tcsetattr(0, termio.TCSANOW, saved)
    out:write(LEAVE)
    out:flush()
  end
end

-- Keys -------------------------------------------------------------------------

--- Applies the bytes `input` typed to the view; returns true when the user
--- asked to quit, and whether the screen must be redrawn now.
function M.keys(view, input)
  local redraw = false
  local i = 1
  while i <= #input do
    local ch = input:sub(i, i)
    i = i + 1
    redraw = true
    if view.prompt then
      if ch == '\r' or ch == '\n' then
        view.filter, view.prompt = view.prompt, nil
      elseif ch == '\27' then
        view.filter, view.prompt = nil, nil
        -- an escape sequence (an arrow key) is not a second Esc
        if input:sub(i, i) == '[' then i = #input + 1 end
      elseif ch == '\127' or ch == '\8' then
        view.prompt = view.prompt:sub(1, -2)
      elseif ch:byte() >= 32 then
        view.prompt = view.prompt .. ch
      end
    elseif view.help then
      view.help = false
      if ch == 'q' or ch == '\3' then return true, redraw end
    elseif ch == 'q' or ch == '\3' then
      return true, redraw
    elseif ch == '\27' then
      -- arrows and the like: skip the sequence
      if input:sub(i, i) == '[' or input:sub(i, i) == 'O' then
        i = i + 1
        while i <= #input and not input:sub(i, i):match('[%a~]') do i = i + 1 end
        i = i + 1
      end
    elseif ch == '/' then
      view.prompt = view.filter or ''
    elseif ch == 'p' or ch == ' ' then
      view.paused = not view.paused
    elseif ch == 'h' or ch == '?' then
      view.help = true
    elseif ch == '<' or ch == '>' then
      view.sort = layout.cycle_sort(view.sort, ch == '>' and 1 or -1)
    elseif layout.sort_for_key(ch) then
      view.sort = layout.sort_for_key(ch)
    else
      redraw = false
    end
  end
  return false, redraw
end

-- The loops --------------------------------------------------------------------

-- Longest sleep between looks at the I/O completion stream (its ring buffer
-- holds about 10k requests). Keys, Ctrl-C and SIGWINCH cut a sleep short.
M.SLICE = 1

local function draw(out, lines)
  -- home, each line cleared to its end, then the rest of the screen
  local buf = { '\27[H' }
  for i, l in ipairs(lines) do
    buf[#buf + 1] = l
    buf[#buf + 1] = '\27[K'
    if i < #lines then buf[#buf + 1] = '\r\n' end
  end
  buf[#buf + 1] = '\27[J'
  out:write(table.concat(buf))
  out:flush()
end

-- Sleeps until `deadline` in slices, doing the session's work between them;
-- returns false when a stop was requested. `on_input(bytes)` -> quit?.
local function wait_until(s, deadline, on_input, slice, on_slice)
  local poll = require('posix.poll')
  local unistd = require('posix.unistd')
  while true do
    if sys.stop_requested() then return false end
    local now = sys.now()
    if now >= deadline then return true end
    if on_slice then on_slice() end
    local next_stats = s:poll()
    local stop = math.min(deadline, now + slice)
    if next_stats and next_stats > now and next_stats < stop then stop = next_stats end
    local ms = math.max(1, math.floor((stop - now) * 1000))
    if on_input then
      local fds = { [0] = { events = { IN = true } } }
      local n = poll.poll(fds, ms)
      if n and n > 0 and fds[0].revents and fds[0].revents.IN then
        local bytes = unistd.read(0, 256)
        if not bytes or bytes == '' or on_input(bytes) then return false end
      elseif n and n > 0 and fds[0].revents and (fds[0].revents.HUP or fds[0].revents.ERR) then
        return false
      end
    else
      if not sys.sleep(ms / 1000) then return false end
    end
  end
end

local function batch_text(f, view, width)
  local lines = layout.frame(f, view, width, nil)
  return table.concat(lines, '\n') .. '\n'
end

--- Runs top. opts: interval (s), batch, json, iterations (nil: until
--- Ctrl-C), sort, filter, rows (batch rows per frame), bpf (false: /proc
--- only), out, err (files; default stdout, stderr), env (getenv for tests).
---@return table { frames = n, ended_by = 'quit'|'iterations'|'signal' }
function M.run(opts)
  -- interpreted: at one refresh a second, LuaJIT keeps compiling new traces
  -- (~30 a second here), and each one's mprotect flushes the TLB of every
  -- CPU; on this VM that was a third of top's CPU (0.85% -> 0.55% with the
  -- /proc columns, tests/bench/top.lua)
  if opts.jit ~= true then jit.off() end
  local out, err = opts.out or io.stdout, opts.err or io.stderr
  local view = { sort = opts.sort or 'cpu', filter = opts.filter, rows = opts.rows }
  local batch = opts.batch or opts.json
  if not batch then
    local why = M.no_tty_reason(opts.env)
    if why then
      err:write('top: ', why, ': printing --batch text frames instead\n')
      batch = true
    end
  end
  local s = measure.start{ bpf = opts.bpf, note = batch and function(text)
    err:write('top: not measured: ', text, '\n')
  end or nil }
  local frames, ended_by = 0, 'signal'
  local restore
  local ok, e = xpcall(function()
    if batch then
      local width = opts.width or 200
      while true do
        if not wait_until(s, sys.now() + opts.interval, nil, M.SLICE) then break end
        local f = s:tick()
        frames = frames + 1
        if opts.json then
          out:write(util.json_encode(layout.json(f, view)), '\n')
        else
          out:write(frames > 1 and '\n' or '', batch_text(f, view, width))
        end
        out:flush()
        if opts.iterations and frames >= opts.iterations then ended_by = 'iterations' break end
      end
      return
    end
    restore = M.enter_terminal(out)
    -- a handler (doing nothing) so SIGWINCH interrupts the poll
    local psig = require('posix.signal')
    psig.signal(psig.SIGWINCH or 28, function() end) -- 28: Linux's number
    local rows, cols = M.winsize(1)
    local f
    local function redraw()
      if f then draw(out, layout.frame(f, view, cols, rows)) end
    end
    draw(out, { 'perf_manual top: first refresh in ' .. opts.interval .. ' s ...' })
    local quit = false
    local deadline = sys.now() + opts.interval
    while true do
      local go = wait_until(s, deadline, function(bytes)
        local q, again = M.keys(view, bytes)
        if q then quit = true return true end
        if again then redraw() end
      end, M.SLICE, function()
        -- a resize (SIGWINCH cuts the poll short) redraws at the new size
        local r2, c2 = M.winsize(1)
        if r2 and (r2 ~= rows or c2 ~= cols) then
          rows, cols = r2, c2
          redraw()
        end
      end)
      if quit then ended_by = 'quit' break end
      if not go then break end
      deadline = sys.now() + opts.interval
      if not view.paused then
        f = s:tick()
        frames = frames + 1
      end
      redraw()
      if opts.iterations and frames >= opts.iterations then ended_by = 'iterations' break end
    end
  end, debug.traceback)
  if restore then restore() end
  s:stop()
  if not ok then error(e, 0) end
  return { frames = frames, ended_by = ended_by }
end

return M
