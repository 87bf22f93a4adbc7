-- perf_manual.top: keys and the choice between the live screen and batch text.
local top = require('perf_manual.top')

local function view() return { sort = 'cpu' } end

describe('perf_manual.top', function()
  it('sorts, cycles, pauses, shows help and quits on keys', function()
    local v = view()
    assert.same({ false, true }, { top.keys(v, 'r') })
    assert.equal('runq', v.sort)
    top.keys(v, 'o'); assert.equal('offcpu', v.sort)
    top.keys(v, 'i'); assert.equal('iolat', v.sort)
    top.keys(v, 's'); assert.equal('sysc', v.sort)
    top.keys(v, '>'); assert.equal('cpu', v.sort)
    top.keys(v, '<'); assert.equal('sysc', v.sort)
    top.keys(v, 'p'); assert.is_true(v.paused)
    top.keys(v, ' '); assert.is_false(v.paused)
    top.keys(v, 'h'); assert.is_true(v.help)
    -- any key leaves the help, and only that
    top.keys(v, 'r'); assert.is_false(v.help); assert.equal('sysc', v.sort)
    assert.is_true((top.keys(v, 'q')))
    assert.is_true((top.keys(view(), '\3')))
    assert.same({ false, false }, { top.keys(v, 'x') })
  end)

  it('types a filter after /, with backspace, Enter to keep and Esc to clear', function()
    local v = view()
    top.keys(v, '/')
    assert.equal('', v.prompt)
    top.keys(v, 'burnx\127')
    assert.equal('burn', v.prompt)
    -- q inside the prompt is text, not quit
    assert.is_false((top.keys(v, 'q')))
    top.keys(v, '\127\r')
    assert.equal('burn', v.filter)
    assert.is_nil(v.prompt)
    top.keys(v, '/\27')
    assert.is_nil(v.filter)
    assert.is_nil(v.prompt)
  end)

  it('skips arrow keys instead of reading their letters', function()
    local v = view()
    -- up arrow is ESC [ A; "A" is no key, but "\27[D" must not pick a sort
    top.keys(v, '\27[A\27[D\27OC')
    assert.equal('cpu', v.sort)
    assert.is_nil(v.help)
  end)

  it('falls back to batch text on a dumb terminal or without one', function()
    local function env(term) return function(k) return k == 'TERM' and term or nil end end
    local function tty(fds) return function(fd) return fds[fd] == true end end
    assert.is_nil(top.no_tty_reason(env('xterm-256color'), tty{ [0] = true, [1] = true }))
    assert.equal('TERM is dumb', top.no_tty_reason(env('dumb'), tty{ [0] = true, [1] = true }))
    assert.equal('TERM is unset', top.no_tty_reason(env(nil), tty{ [0] = true, [1] = true }))
    assert.equal('stdout is not a terminal', top.no_tty_reason(env('xterm'), tty{ [0] = true }))
    assert.equal('stdin is not a terminal', top.no_tty_reason(env('xterm'), tty{ [1] = true }))
  end)

end)
