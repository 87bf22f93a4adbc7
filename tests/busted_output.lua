-- busted output: one line per test (ok / FAIL / skip with reason), failures
-- in full, then "<n> passed, <n> failed, <n> skipped"; counts are appended to
-- build/test-results for the summary of `make test`.
return function(options)
  local busted = require('busted')
  local handler = require('busted.outputHandlers.base')()
  local pretty = require('pl.pretty')
  local root = require('perf_manual._host').root

  local function msg(m)
    if type(m) == 'string' then return m end
    if m == nil then return 'nil error' end
    return pretty.write(m)
  end

  local function where(el)
    local t = el.element and el.element.trace
    if t and t.short_src then return t.short_src .. ':' .. t.currentline end
    return '?'
  end

  handler.testEnd = function(element, _parent, status)
    local name = handler.getFullName(element)
    if status == 'success' then
      io.write('  ok    ', name, '\n')
    elseif status == 'pending' then
      io.write('  skip  ', name, '\n')
    end
    io.flush()
    return nil, true
  end

  local function on_fail(kind)
    return function(element, _parent, _message, _trace)
      io.write('  ', kind, '  ', handler.getFullName(element), '\n')
      io.flush()
      return nil, true
    end
  end

  handler.suiteEnd = function()
    local p, f, e, s = #handler.successes, #handler.failures, #handler.errors, #handler.pendings
    for _, pend in ipairs(handler.pendings) do
      -- pending() prefixes the file:line it was called from: where() says that
      local why = msg(pend.message):gsub('^[^\n:]+:%d+: ', '', 1)
      io.write('\nSKIP ', pend.name, ' (', where(pend), ')\n  ', why, '\n')
    end
    for _, lst in ipairs({ handler.failures, handler.errors }) do
      for _, fail in ipairs(lst) do
        io.write('\nFAIL ', fail.name, ' (', where(fail), ')\n', msg(fail.message), '\n')
        if fail.trace and fail.trace.traceback and options.verbose then
          io.write(fail.trace.traceback, '\n')
        end
      end
    end
    io.write(string.format('\nbusted: %d passed, %d failed, %d skipped\n', p, f + e, s))
    local rf = io.open(root .. '/build/test-results', 'a')
    if rf then rf:write(string.format('lua %d %d %d\n', p, f + e, s)); rf:close() end
    return nil, true
  end

  busted.subscribe({ 'test', 'end' }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ 'failure', 'it' }, on_fail('FAIL'))
  busted.subscribe({ 'error', 'it' }, on_fail('ERROR'))
  busted.subscribe({ 'error' }, function(element, _parent, message)
    if element.descriptor ~= 'it' then io.write('  ERROR ', msg(message), '\n') end
    return nil, true
  end)
  busted.subscribe({ 'suite', 'end' }, handler.suiteEnd)
  return handler
end
