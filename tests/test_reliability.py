"""Issue 15: reliability under preemption, concurrent sweeps, untrusted stores and extreme values.

Each test reproduces one failure the fault-injection pass found, then checks the fix.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import scaling

from scaling.cli import main

GRID = """description = "reliability test grid"
ctx = 32
params = ["12K"]
tokens = ["4K"]

[train]
eval_every = 16
eval_batches = 2
"""


def one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def quick(prepared_data, tmp_path) -> dict:
    """A hand-written law, the test grid and the data: enough to plan (and train) a launch."""
    from scaling.law import CHINCHILLA, FittedLaw

    (tmp_path / "grid.toml").write_text(GRID)
    FittedLaw.of(CHINCHILLA).save(tmp_path / "law.json")
    return {"root": tmp_path, "grid": str(tmp_path / "grid.toml"), "data": str(prepared_data),
            "law": str(tmp_path / "law.json")}


def launch_args(q: dict, out: Path, *extra: str) -> list[str]:
    return ["launch", "--law", q["law"], "--params", "8.8M", "--tokens", "8K", "--grid", q["grid"],
            "--data", q["data"], "--out", str(out), "--no-progress", *extra]


def write_lr_law(path: Path, coef, exponent, tuned=None) -> Path:
    path.write_text(json.dumps({"schema": "lr-law/1", "coef": coef, "exponent": exponent, "tuned": tuned or {}}))
    return path


# ----------------------------------------------------------------------------- 1. a diverged final run


@pytest.mark.slow
def test_a_diverged_launch_prints_its_report_and_exits_0(quick, tmp_path, capsys):
    lr_law = write_lr_law(tmp_path / "lr.json", 50.0, 0.0)
    out = tmp_path / "diverged"
    args = launch_args(quick, out, "--lr-law", str(lr_law))
    for _ in range(2):  # the first run and a re-run of the finished launch
        done = scaling(*args, capsys=capsys)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "actual none (the run diverged" in done.stdout, done.stdout
    report = json.loads((out / "report.json").read_text(), parse_constant=_no_constant)
    assert report["status"] == "diverged" and report["actual_loss"] is None


def _no_constant(name):
    raise ValueError(f"not strict JSON: {name}")
