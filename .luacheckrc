-- Playbooks run with `playbook`, `param` and `step` in their environment
-- (perf_manual.playbook.env); specs get `test_helpers` and `fixture` from
-- tests/spec/preload.lua, and busted's own globals.
max_line_length = 120
files['playbooks'] = { read_globals = { 'playbook', 'param', 'step' } }
files['tests'] = { std = '+busted', read_globals = { 'test_helpers', 'fixture' } }
files['tests/busted_runner.lua'] = { globals = { 'arg' } }
-- the API descriptions document argument names they do not use
files['lib/perf_manual/_meta'] = { unused_args = false }
