"""Settings every test directory shares."""

from __future__ import annotations

import os

from hypothesis import settings

# `make test` replays the same examples on every run (CI runs once on a clean clone: a property test
# must not pass or fail by the draw); `make bench` (bench/bench_drills.py sets VIGIE_FUZZ_EXAMPLES)
# draws fresh, many more, to find what the fixed set does not.
settings.register_profile("replayable", derandomize=True, database=None)
settings.register_profile("exploring", database=None)
settings.load_profile("exploring" if os.environ.get("VIGIE_FUZZ_EXAMPLES") else "replayable")
