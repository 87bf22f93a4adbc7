-- busted helper: runs before the specs, inside the perf_manual host.
local h = require('helpers')
_G.fixture = h.fixture
_G.test_helpers = h
