"""Helpers shared by the tests: run the real CLI (in this process or in one of its own), read a sweep's store
and table, wait for a condition."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
# What every launch's report.json holds (test_demo.py's final run, test_launch.py's launches).
LAUNCH_REPORT_KEYS = {"predicted_loss", "predicted_interval", "actual_loss", "relative_error", "within_interval",
                      "planned_gpu_hours", "actual_gpu_hours"}
PEAK_CACHE = Path("scaling") / "cpu_matmul_peak.json"  # relative to XDG_CACHE_HOME, as gptcore writes it


class Ran(NamedTuple):
    """What a `scaling` command did: named as subprocess.CompletedProcess names them, and unpacks as a tuple."""

    returncode: int
    stdout: str
    stderr: str


def cli_env(**extra: str) -> dict:
    """The environment a `scaling` subprocess gets: this one (XDG_CACHE_HOME included), importing this checkout."""
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def scaling(*argv: str, capsys=None, timeout: float = 600, env: dict | None = None,
            python_flags: tuple[str, ...] = ()) -> Ran:
    """`scaling ARGV`: with pytest's `capsys`, scaling.cli.main in this process (argparse's exits included);
    without, `python -m scaling ARGV` in a process of its own, as a user runs it, with no terminal on stdin."""
    if capsys is not None:
        from scaling.cli import main

        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse's own errors exit from the parser
            code = e.code
        out, err = capsys.readouterr()
        return Ran(code, out, err)
    done = subprocess.run([sys.executable, *python_flags, "-m", "scaling", *argv], env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)
    return Ran(done.returncode, done.stdout, done.stderr)


def start_scaling(*argv: str, log: Path | None = None, **popen) -> subprocess.Popen:
    """`python -m scaling ARGV` started, not waited for: its output to `log` (else dropped), or as `popen` says."""
    with open(log or os.devnull, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "scaling", *argv], env=cli_env(), cwd=ROOT,
                                stdin=subprocess.DEVNULL, **{"stdout": f, "stderr": subprocess.STDOUT, **popen})


def cached_cpu_peaks(precision: str) -> list[float]:
    """The CPU matmul peaks (FLOP/s) in this session's cache (conftest's private XDG_CACHE_HOME), one a CPU."""
    cache = json.loads((Path(os.environ["XDG_CACHE_HOME"]) / PEAK_CACHE).read_text())
    return [entry[precision] for entry in cache.values() if precision in entry]


def table(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep.csv") as f:
        return list(csv.DictReader(f))


def rows(sweep_dir: Path) -> dict[str, dict]:
    from sweeps.store import Store

    store = Store(sweep_dir)
    try:
        return {r["run_id"]: r for r in store.rows()}
    finally:
        store.close()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is not alive either
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def require_slurm_cluster() -> None:
    """Skip, saying why, when no SLURM cluster answers here; with CI=true fail instead (.ci/run starts one)."""
    import pytest

    from sweeps.slurm import cluster_answers

    if cluster_answers():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no SLURM cluster answers `sinfo`: .ci/run should have run scripts/slurm-start.sh")
    pytest.skip("no SLURM cluster answers `sinfo` here (start one as root: bash scripts/slurm-start.sh)")
