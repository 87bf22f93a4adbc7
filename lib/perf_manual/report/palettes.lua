--- Flame-graph palettes, as data: name -> palette. perf_manual.report.flamegraph
--- draws with one of these (`colors = 'kind'`), or with a palette table of
--- the same shape passed in its place (see docs/flamegraphs.md).
---
--- A palette is either
---   { rules = { rule, ... }, root = {r, g, b} }
--- where a frame takes the colour of the first rule that matches it (frames
--- no rule matches, and the "all" frame, take `root`, default grey), or
---   { diff = { grow = {r, g, b}, shrink = {r, g, b}, fade = N } }
--- for differential graphs (frames coloured by the change of their self share).
---
--- A rule:
---   kind      frame kind(s) it matches, by FlameGraph suffix: 'kernel' (_[k]),
---             'jit' (_[j]), 'inline' (_[i]), 'offcpu' (_[o]), 'user' (none);
---             a name or a list of names; absent: any kind
---   contains  a plain substring the frame name must hold (or a list: any)
---   r, g, b   each {from, to, n}: the channel varies from `from` to `to` by
---             hash value n (1, 2 or 3) of the frame name, so a name keeps
---             its colour from graph to graph and channels with the same n
---             vary together; or a number for a fixed value
--- Values are 0..255.

-- off-CPU time is blue in every palette that does not colour by change
local OFFCPU = { kind = 'offcpu', r = { 0, 40, 1 }, g = { 90, 180, 2 }, b = { 190, 255, 3 } }

return {
  -- by kind: user code red, kernel amber, JIT green, inline aqua, off-CPU blue
  kind = {
    rules = {
      OFFCPU,
      { kind = 'kernel', r = { 225, 255, 1 }, g = { 160, 210, 2 }, b = { 0, 40, 3 } },
      { kind = 'jit', r = { 60, 120, 1 }, g = { 190, 245, 2 }, b = { 60, 110, 3 } },
      { kind = 'inline', r = { 70, 120, 1 }, g = { 200, 255, 2 }, b = { 200, 255, 3 } },
      { r = { 205, 255, 3 }, g = { 40, 130, 1 }, b = { 30, 80, 2 } },
    },
  },
  -- FlameGraph's classic red-yellow for everything on-CPU
  hot = {
    rules = {
      OFFCPU,
      { r = { 205, 255, 3 }, g = { 0, 230, 1 }, b = { 0, 55, 2 } },
    },
  },
  offcpu = {
    rules = {
      { r = { 0, 40, 1 }, g = { 90, 180, 2 }, b = { 190, 255, 3 } },
    },
  },
  mem = {
    rules = {
      OFFCPU,
      { r = { 0, 30, 1 }, g = { 190, 255, 2 }, b = { 0, 60, 3 } },
    },
  },
  -- differential: red grew, blue shrank, the largest change at full colour,
  -- smaller ones lighter (fade added to each channel, capped at 255)
  diff = {
    diff = { grow = { 255, 45, 45 }, shrink = { 45, 45, 255 }, fade = 210 },
  },
}
