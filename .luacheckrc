-- Playbooks run with `playbook`, `param` and `step` in their environment
-- (perf_manual.playbook.env); specs get `test_helpers` from tests/spec/preload.lua.
files['playbooks'] = { read_globals = { 'playbook', 'param', 'step' } }
files['tests'] = { read_globals = { 'test_helpers' } }
