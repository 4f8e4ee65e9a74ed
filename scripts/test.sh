#!/usr/bin/env bash
# The test command: set up (once), lint, run the whole suite (what CI runs). Extra arguments go to pytest.
# --fast (first argument): the fast lane, everything but the tests marked slow or slurm (575 tests in 3.3 min on
# 2 idle cores, 2026-12-01; the whole suite: 616 tests in 12.3 min).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lane=()
if [ "${1:-}" = "--fast" ]; then
    shift
    lane=(-m "not slow and not slurm")
fi
bash scripts/setup.sh
.venv/bin/ruff check .
# --durations: CI's log names the slowest tests, so the suite's time can be kept in hand.
# Serial on purpose: pytest-xdist with 2 workers (module groups, the SLURM tests on one worker) took
# 13 min 35 s against 12 min, the tests' torch threads contending for 2 cores (2026-12-01).
exec .venv/bin/python -m pytest -q --durations=25 "${lane[@]}" "$@"
