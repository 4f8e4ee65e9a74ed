"""Issue 15: reliability under preemption, concurrent sweeps, untrusted stores and extreme values.

Each test reproduces one failure the fault-injection pass found, then checks the fix.
"""

from __future__ import annotations

import json
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


# ----------------------------------------------------------------------------- 3. liveness


@pytest.fixture
def zombie():
    """A real zombie: a child that has exited and that nobody has reaped (yet)."""
    import os
    import time

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    while True:  # not proc.poll(): that would reap it
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "Z":
            break
        time.sleep(0.05)
    os.kill(proc.pid, 0)  # what the old check used: a zombie passes it
    yield proc.pid
    proc.wait()


def _one_run_store(tmp_path, owner: str):
    from sweeps.grid import load_grid, resolve
    from sweeps.store import Store

    (tmp_path / "grid.toml").write_text(GRID)
    (spec,) = resolve(load_grid(str(tmp_path / "grid.toml")), 512, "datahash", None)
    store = Store(tmp_path / "sweep")
    store.register([spec])
    assert store.claim(owner) is not None
    return store, spec


def test_a_zombie_owner_is_taken_over_at_once(tmp_path, zombie):
    from sweeps.store import local_owner, owner_is_dead

    assert owner_is_dead(local_owner(zombie))
    assert not owner_is_dead(local_owner())  # this process, alive
    store, spec = _one_run_store(tmp_path, local_owner(zombie))
    try:
        taken = store.claim(local_owner())  # its heartbeat is fresh: only the process state tells
        assert taken is not None and taken.run_id == spec.run_id
        (row,) = store.rows()
        assert row["owner"] == local_owner() and row["attempts"] == 2
    finally:
        store.close()


def test_a_live_owner_with_a_fresh_heartbeat_keeps_its_run(tmp_path):
    from sweeps.store import local_owner

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store, _ = _one_run_store(tmp_path, local_owner(sleeper.pid))
        assert store.claim(local_owner()) is None
        store.close()
    finally:
        sleeper.kill()
        sleeper.wait()


# ----------------------------------------------------------------------------- 4. run ids and paths


def sweep_args(data, out: Path, grid: Path, *extra: str) -> list[str]:
    return ["sweep", "--grid", str(grid), "--data", str(data), "--out", str(out), "--executor", "local",
            "--no-estimate", *extra]


@pytest.fixture(scope="module")
def swept(prepared_data, tmp_path_factory) -> dict:
    """A finished one-run sweep (12K parameters, 4K tokens: seconds), copied by the tests that tamper with it."""
    root = tmp_path_factory.mktemp("swept")
    (root / "grid.toml").write_text(GRID)
    done = scaling(*sweep_args(prepared_data, root / "sweep", root / "grid.toml"))
    assert done.returncode == 0, done.stderr[-2000:]
    return {"dir": root / "sweep", "grid": root / "grid.toml", "data": prepared_data}


def copy_sweep(swept: dict, dest: Path) -> Path:
    import shutil

    shutil.copytree(swept["dir"], dest)
    return dest


def test_a_planted_dotdot_run_id_is_refused_and_nothing_trains_outside(swept, tmp_path, capsys):
    import sqlite3

    out = copy_sweep(swept, tmp_path / "a" / "b" / "sweep")
    db = sqlite3.connect(out / "sweep.db")
    (spec_json,) = db.execute("SELECT spec_json FROM runs").fetchone()
    planted = json.loads(spec_json) | {"run_id": "../../escaped"}
    db.execute("INSERT INTO runs (run_id, config_hash, spec_json) VALUES (?, ?, ?)",
               ("../../escaped", planted["config_hash"], json.dumps(planted)))
    db.commit()
    db.close()
    table_before = (out / "sweep.csv").read_bytes()
    code = main(sweep_args(swept["data"], out, swept["grid"]))
    one_line_error(capsys, code, "'../../escaped'", "not in this grid", "refused")
    assert not (tmp_path / "a" / "escaped").exists() and not (out / "escaped").exists()
    assert (out / "sweep.csv").read_bytes() == table_before


def test_a_run_id_that_is_not_a_name_builds_no_path(tmp_path):
    from gptcore.errors import UserError
    from sweeps.runner import run_dir

    assert run_dir(tmp_path, "L2-d128-D8K") == tmp_path / "runs" / "L2-d128-D8K"
    for bad in ("../../escaped", "/etc", "a/b", "..", "", "x\n", ".hidden"):
        with pytest.raises(UserError, match="not a run id"):
            run_dir(tmp_path, bad)


def test_a_symlinked_runs_dir_is_refused(swept, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "fresh"
    out.mkdir()
    (out / "runs").symlink_to(elsewhere)
    code = main(sweep_args(swept["data"], out, swept["grid"]))
    one_line_error(capsys, code, "runs is a symlink", "refused")
    assert list(elsewhere.iterdir()) == []


def test_a_symlink_inside_a_run_folder_is_refused(swept, tmp_path, capsys):
    out = copy_sweep(swept, tmp_path / "sweep")
    (run,) = (out / "runs").iterdir()
    (run / "summary.json").unlink()  # so the run is trained again
    (out / "sweep.db").unlink()
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(target)
    code = main(sweep_args(swept["data"], out, swept["grid"]))
    one_line_error(capsys, code, "metrics.jsonl is a symlink inside a run folder", "refused")
    assert target.read_text() == "keep me"
