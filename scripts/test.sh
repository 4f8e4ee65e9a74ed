#!/usr/bin/env bash
# The test command: set up (once), lint, run the whole suite (what CI runs). Extra arguments go to pytest.
# --fast (first argument): the fast lane, everything but the tests marked slow or slurm.
# SCALING_TEST_WORKERS=1: serial, one pytest process (the default is 2 workers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lane=()
if [ "${1:-}" = "--fast" ]; then
    shift
    lane=(-m "not slow and not slurm")
fi
workers=${SCALING_TEST_WORKERS:-2}
case "$workers" in
    ''|*[!0-9]*) echo "scripts/test.sh: SCALING_TEST_WORKERS must be a whole number, got '$workers'" >&2; exit 2 ;;
esac
bash scripts/setup.sh
.venv/bin/ruff check .
# Two workers (pytest-xdist), a test file to a worker: most of the suite's time is one process at a time
# (Python and torch start-up, the SLURM tests' requeue waits, single-threaded fits), so serial it kept 2 cores
# 104% busy. On 2 Zen 4 cores (2026-12-02) the whole suite took 22.0 min serial and 14.3 min on 2 workers,
# 617 passed each. Whole files (--dist loadfile), so a module's fixture (the demo's, 3-4 min) runs once, in
# the order tests/conftest.py gives them, slowest first (--no-loadscope-reorder): 11.9 min, 618 passed, the
# two workers done within 10 s of each other.
parallel=()
# Passive OpenMP waits: two workers each run torch on every core, and torch's OpenMP threads spin while they
# wait for work, so each process's spinning steals the other's cores. Two small trainings at once on this
# 2-core Xeon (2026-12-03, benchmarks/bench_wait_policy.py) kept 35-56% of one process's throughput in all
# with spinning and 132-150% passive. There the suite took 914.5 s passive against 1099.9 s, 636 passed each;
# 3 workers (passive) took 1016.7 s.
if [ "$workers" -gt 1 ]; then
    parallel=(-n "$workers" --dist loadfile --no-loadscope-reorder)
    export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
fi
# --durations: CI's log names the slowest tests, so the suite's time can be kept in hand.
exec .venv/bin/python -m pytest -q --durations=25 "${parallel[@]}" "${lane[@]}" "$@"
