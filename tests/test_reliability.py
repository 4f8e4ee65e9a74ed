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
    return ["launch", "--law", q["law"], "--params", "4.4M", "--tokens", "8K", "--grid", q["grid"],
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


# ----------------------------------------------------------------------------- 6 and 7. values at the boundary


def law_file(path: Path, **changes) -> Path:
    from scaling.law import CHINCHILLA, FittedLaw

    raw = FittedLaw.of(CHINCHILLA).to_json()
    for key, value in changes.items():
        if key in raw["params"]:
            raw["params"][key] = value
        else:
            raw[key] = value
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("changes, needles", [
    ({"alpha": 1e-300, "beta": 1e-300}, ["alpha", "beta"]),
    ({"A": 1e308}, ["A"]),
    ({"rows": [1, 2]}, ["rows must be an object"]),
    ({"bootstrap_params": [[math.nan] * 5] * 4}, ["bootstrap_params", "no finite row"]),
    ({"bootstrap_params": [[1.7, 400.0, 410.0, 0.3, math.inf]] * 3}, ["bootstrap_params", "no finite row"]),
    ({"params": {"E": "1.69", "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}}, ["numeric params"]),
])
def test_a_poisoned_law_is_one_line_in_plan_and_launch_and_writes_nothing(quick, tmp_path, capsys, changes,
                                                                          needles):
    law = law_file(tmp_path / "law.json", **changes)
    code = main(["plan", "--law", str(law), "--compute", "1e20"])
    one_line_error(capsys, code, str(law), *needles)
    out = tmp_path / "launch"
    code = main(["launch", "--law", str(law), "--compute", "1e13", "--data", quick["data"], "--out", str(out)])
    one_line_error(capsys, code, str(law), *needles)
    assert not out.exists()


@pytest.mark.parametrize("coef, exponent, tuned, needles", [
    (1e308, -100, {}, ["exponent"]),
    (math.nan, 0.1, {}, ["coef"]),
    (-0.01, 0.1, {}, ["coef"]),
    (0.01, 0.1, {"20000": math.nan}, ["tuned"]),
    ("0.01", 0.1, {}, ["coef"]),
])
def test_a_poisoned_lr_law_is_one_line_in_sweep_and_launch(quick, tmp_path, capsys, coef, exponent, tuned, needles):
    lr_law = write_lr_law(tmp_path / "lr.json", coef, exponent, tuned)
    out = tmp_path / "sweep"
    code = main(sweep_args(quick["data"], out, Path(quick["grid"]), "--lr-law", str(lr_law)))
    one_line_error(capsys, code, str(lr_law), *needles)
    assert not (out / "sweep.db").exists()
    launch = tmp_path / "launch"
    code = main(launch_args(quick, launch, "--lr-law", str(lr_law)))
    one_line_error(capsys, code, str(lr_law), *needles)
    assert not (launch / "prediction.json").exists()


def test_an_lr_law_whose_rate_overflows_at_a_size_is_refused(tmp_path):
    from gptcore.errors import UserError
    from sweeps.hparams import load_lr_law

    law = load_lr_law(write_lr_law(tmp_path / "lr.json", 1e6, -4.0))  # in range, but 1e6 * N^4 is no rate
    with pytest.raises(UserError, match="lr.json.*gives a learning rate of"):
        law.lr(10**9)


def test_a_grid_device_that_is_not_a_device_is_refused(quick, tmp_path, capsys):
    grid = tmp_path / "bad.toml"
    grid.write_text(GRID + 'device = "../../x"\n')
    code = main(sweep_args(quick["data"], tmp_path / "sweep", grid))
    one_line_error(capsys, code, "device", "../../x")
    assert not (tmp_path / "sweep").exists()


def runs_csv(path: Path, rows: list[tuple]) -> Path:
    lines = ["run_id,params,tokens,loss,status"] + [",".join(map(str, r)) + ",completed" for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def good_rows() -> list[tuple]:
    from scaling.law import CHINCHILLA

    return [(f"r{n}-{d}", n, d, round(float(CHINCHILLA.loss(n, d)), 4))
            for n in (1e6, 4e6, 16e6) for d in (2e7, 8e7, 32e7)]


def test_fit_refuses_duplicated_run_ids(tmp_path, capsys):
    rows = good_rows()
    csv = runs_csv(tmp_path / "runs.csv", rows + rows[:3])
    code = main(["fit", str(csv), "--out", str(tmp_path / "law.json")])
    one_line_error(capsys, code, str(csv), "run_id", rows[0][0])
    assert not (tmp_path / "law.json").exists()


def test_fit_refuses_a_loss_of_1e308(tmp_path, capsys):
    rows = good_rows()
    rows[4] = (*rows[4][:3], 1e308)
    csv = runs_csv(tmp_path / "runs.csv", rows)
    code = main(["fit", str(csv), "--out", str(tmp_path / "law.json")])
    one_line_error(capsys, code, str(csv), "loss", "1e+308")
    assert not (tmp_path / "law.json").exists()


# ----------------------------------------------------------------------------- 8. residue: a full disk


def test_a_full_disk_in_a_store_write_is_said_as_such(tmp_path):
    """A real SQLITE_FULL: the store's file may not grow past its pages (what a full disk gives SQLite)."""
    from gptcore.errors import UserError

    store, spec = _one_run_store(tmp_path, "nobody:1")
    before = store.rows()
    (pages,) = store.db.execute("PRAGMA page_count").fetchone()
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(UserError, match=r"^disk full: could not write .*sweep\.db") as e:
        store.finish(spec.run_id, "nobody:1", "completed", None, {"final_val_loss": 3.0, "blob": "x" * 100_000})
    assert "not a sweep store" not in str(e.value)
    store.db.execute("PRAGMA max_page_count = 1073741823")
    assert store.rows() == before  # intact: the failed write left the last committed state
    store.close()


def test_a_disk_io_error_at_open_on_a_full_disk_is_not_a_foreign_store(tmp_path, monkeypatch, capsys):
    import shutil
    import sqlite3

    from sweeps import store as store_module

    def full(*args, **kwargs):
        e = sqlite3.OperationalError("disk I/O error")
        e.sqlite_errorcode = sqlite3.SQLITE_IOERR | (4 << 8)  # SQLITE_IOERR_SHORT_READ
        raise e

    monkeypatch.setattr(store_module.sqlite3, "connect", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 0))
    from gptcore.errors import UserError

    with pytest.raises(UserError, match=r"^disk full: could not write .*sweep\.db \(0\.0 MiB free\)"):
        store_module.Store(tmp_path / "sweep")


def test_an_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    import os

    from gptcore.errors import UserError
    from gptcore.fileio import atomic_write_json

    path = tmp_path / "summary.json"
    atomic_write_json(path, {"status": "completed"})

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(UserError, match=r"^disk full: could not write .*summary\.json") as e:
        atomic_write_json(path, {"status": "diverged"})
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC  # `except OSError` still catches it
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp file left


# ----------------------------------------------------------------------------- 5. concurrent sweeps


@pytest.mark.slow
def test_four_concurrent_sweeps_share_the_work_and_all_exit_0(prepared_data, tmp_path):
    from helpers import rows, start_scaling

    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace('tokens = ["4K"]', 'tokens = ["4K", "6K"]'))
    out = tmp_path / "sweep"
    procs = [start_scaling(*sweep_args(prepared_data, out, grid), log=tmp_path / f"sweep-{i}.log")
             for i in range(4)]
    codes = [p.wait(timeout=600) for p in procs]
    logs = [(tmp_path / f"sweep-{i}.log").read_text() for i in range(4)]
    assert codes == [0, 0, 0, 0], "\n".join(log[-1500:] for log in logs)
    stored = rows(out)
    assert len(stored) == 2
    for r in stored.values():  # each trained once: one claim, one completion, no resume
        assert (r["status"], r["attempts"], r["completions"]) == ("completed", 1, 1), r
        assert "resuming" not in (out / "runs" / r["run_id"] / "train.log").read_text()
    assert all("still running elsewhere" not in log for log in logs)


def test_core_locks_share_the_cores_among_workers_of_all_processes(tmp_path):
    from sweeps.local import take_cores

    first = take_cores(tmp_path, 2, 3)  # wants 2 of 3 cores: gets them
    second = take_cores(tmp_path, 2, 3)  # only one is left
    assert (len(first), len(second)) == (2, 1)
    probe = subprocess.run([sys.executable, "-c", "import sys; from sweeps.local import take_cores; "
                            f"sys.exit(len(take_cores({str(tmp_path)!r}, 3, 3)))"], cwd=Path(__file__).parent.parent)
    assert probe.returncode == 0  # another process finds every core held
    for f in first:
        f.close()  # as a dying worker's files are closed
    assert len(take_cores(tmp_path, 3, 3)) == 2


# ----------------------------------------------------------------------------- 8. strict JSON


def strict_loads(text: str):
    return json.loads(text, parse_constant=_no_constant)


@pytest.mark.slow
def test_every_json_output_and_summary_is_strict_json(prepared_data, tmp_path, capsys):
    run = tmp_path / "diverged"
    done = scaling("train", "--n-layer", "1", "--n-head", "1", "--d-model", "32", "--ctx", "32", "--batch-size", "2",
                   "--max-steps", "30", "--lr", "1000", "--grad-clip", "0", "--warmup", "1", "--eval-every", "6",
                   "--eval-batches", "1",
                   "--data", str(prepared_data), "--out", str(run), "--no-progress", "--json", capsys=capsys)
    assert done.returncode == 0, done.stderr
    summary = strict_loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "diverged" and summary["final_val_loss"] is None
    assert summary["final_val_sequences"] is None  # no final loss, so no sequences it averages
    assert strict_loads((run / "summary.json").read_text()) == summary
    for line in (run / "metrics.jsonl").read_text().splitlines():
        strict_loads(line)
    fine = tmp_path / "fine"  # a diverged run keeps no checkpoint: eval reads a finished one
    done = scaling("train", "--n-layer", "1", "--n-head", "1", "--d-model", "32", "--ctx", "32", "--batch-size", "2",
                   "--max-steps", "4", "--eval-every", "4", "--eval-batches", "1", "--data", str(prepared_data),
                   "--out", str(fine), "--no-progress", capsys=capsys)
    assert done.returncode == 0, done.stderr
    done = scaling("eval", "--checkpoint", str(fine), "--data", str(prepared_data), "--tokens", "256", "--json",
                   capsys=capsys)
    assert done.returncode == 0, done.stderr
    strict_loads(done.stdout.strip().splitlines()[-1])

    csv = runs_csv(tmp_path / "runs.csv", good_rows())
    law = tmp_path / "law.json"
    for argv in (["fit", str(csv), "--out", str(law), "--bootstrap", "20", "--json"],
                 ["predict", "--law", str(law), "--params", "1e9", "--tokens", "2e10", "--json"],
                 ["plan", "--law", str(law), "--compute", "1e20", "--json"]):
        done = scaling(*argv, capsys=capsys)
        assert done.returncode == 0, (argv, done.stderr)
        strict_loads(done.stdout.strip().splitlines()[-1] if argv[0] != "plan" else done.stdout)
    strict_loads(law.read_text())


# ----------------------------------------------------------------------------- 2. preemption


TRAIN = ("train", "--n-layer", "1", "--n-head", "1", "--d-model", "32", "--ctx", "32", "--batch-size", "2",
         "--max-steps", "200", "--eval-every", "50", "--eval-batches", "1", "--checkpoint-every", "1000",
         "--dtype", "fp32", "--threads", "1", "--no-progress")
TIMING = ("tokens_per_s", "mfu")  # measured, not computed: they differ between any two runs


def metric_rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(a: Path, b: Path) -> None:
    import torch

    wa = torch.load(a / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(b / "ckpt.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def signal_when(proc, run: Path, rows: int, signum) -> int:
    """Send `signum` once the run has logged `rows` steps; the steps logged by then."""

    from helpers import wait_for

    wait_for(lambda: (run / "metrics.jsonl").is_file()
             and len((run / "metrics.jsonl").read_text().splitlines()) >= rows, 120, f"{rows} steps logged")
    seen = len((run / "metrics.jsonl").read_text().splitlines())
    assert proc.poll() is None, "the run finished before the signal"
    proc.send_signal(signum)
    return seen


def test_every_preemption_signal_is_caught_while_entered_and_the_handlers_restored_after():
    """SIGTERM, USR1 and USR2 each set the flag instead of killing (one trainer run, below, takes SIGTERM end
    to end; tests/test_sweep_slurm.py takes SLURM's USR2 end to end)."""
    import os
    import signal

    from gptcore.preemption import SIGNALS, Preemption

    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        with Preemption() as p:
            os.kill(os.getpid(), s)
            assert p.asked and p.signum == s
    assert {s: signal.getsignal(s) for s in SIGNALS} == before


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM"])  # the others take the same handler, tested just above
def test_a_signal_mid_run_checkpoints_and_a_rerun_is_bitwise_an_uninterrupted_run(prepared_data, tmp_path, signame):
    import signal

    import torch
    from helpers import start_scaling

    from gptcore.preemption import EXIT_REQUEUE

    data = ("--data", str(prepared_data))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert scaling(*TRAIN, *data, "--out", str(whole)).returncode == 0
    proc = start_scaling(*TRAIN, *data, "--out", str(cut), log=tmp_path / "cut.log")
    seen = signal_when(proc, cut, 20, getattr(signal, signame))
    assert proc.wait(timeout=120) == EXIT_REQUEUE, (tmp_path / "cut.log").read_text()[-2000:]
    step = torch.load(cut / "ckpt.pt", weights_only=True)["step"]
    assert seen <= step < 200 and len(metric_rows(cut)) == step  # no step lost since the signal
    assert not (cut / "summary.json").exists()
    done = scaling(*TRAIN, *data, "--out", str(cut))
    assert done.returncode == 0, done.stderr
    assert metric_rows(cut) == metric_rows(whole)
    assert_same_weights(cut, whole)


@pytest.mark.slow
def test_sigterm_under_two_process_ddp_checkpoints_one_step_on_every_rank(prepared_data, tmp_path):
    import os
    import signal
    import subprocess

    import torch
    from helpers import cli_env

    from gptcore.preemption import EXIT_REQUEUE

    def torchrun(out: Path, log: Path):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "scaling",
               *TRAIN, "--data", str(prepared_data), "--out", str(out)]
        with open(log, "wb") as f:
            return subprocess.Popen(cmd, env=cli_env(OMP_NUM_THREADS="1"), stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=Path(__file__).parent.parent)

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert torchrun(whole, tmp_path / "whole.log").wait(timeout=300) == 0, (tmp_path / "whole.log").read_text()
    proc = torchrun(cut, tmp_path / "cut.log")
    from helpers import wait_for

    wait_for(lambda: (cut / "metrics.jsonl").is_file()
             and len((cut / "metrics.jsonl").read_text().splitlines()) >= 10, 180, "10 steps logged")
    ranks = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                            text=True).stdout.split()]
    assert len(ranks) == 2
    seen = len((cut / "metrics.jsonl").read_text().splitlines())
    os.kill(ranks[1], signal.SIGTERM)  # one rank only: the ranks agree on the step to stop after
    proc.wait(timeout=180)
    log = (tmp_path / "cut.log").read_text()
    assert f"exitcode  : {EXIT_REQUEUE}" in log or "preempted" in log, log[-3000:]
    step = torch.load(cut / "ckpt.pt", weights_only=True)["step"]
    assert seen <= step < 200 and len(metric_rows(cut)) == step
    assert not (cut / "summary.json").exists()
    assert torchrun(cut, tmp_path / "rerun.log").wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()
    assert metric_rows(cut) == metric_rows(whole)
    assert_same_weights(cut, whole)


def test_temp_checkpoints_of_a_killed_write_are_removed_at_the_next_start(prepared_data, tmp_path, capsys):
    run = tmp_path / "run"
    args = (*TRAIN[:12], "4", *TRAIN[13:], "--data", str(prepared_data), "--out", str(run))
    assert scaling(*args, capsys=capsys).returncode == 0
    (run / "summary.json").unlink()  # so the next start resumes from its checkpoint
    orphans = [run / ".ckpt.pt.k1ll3d.tmp", run / ".ckpt.pt.x_9.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"\0" * 4096)  # what a SIGKILL during torch.save leaves
    keep = run / "notes.tmp"
    keep.write_text("not a checkpoint's")
    assert scaling(*args, capsys=capsys).returncode == 0
    assert not any(o.exists() for o in orphans) and keep.exists() and (run / "ckpt.pt").is_file()


@pytest.mark.slow
def test_a_sigterm_to_a_local_sweep_checkpoints_its_runs_and_a_rerun_resumes_them(prepared_data, tmp_path):
    import signal

    from helpers import rows, start_scaling, wait_for

    from gptcore.preemption import EXIT_REQUEUE

    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace('tokens = ["4K"]', 'tokens = ["24K"]') + "checkpoint_every = 1000\n")
    out = tmp_path / "sweep"
    args = sweep_args(prepared_data, out, grid, "--workers", "1")
    proc = start_scaling(*args, log=tmp_path / "sweep.log")
    metrics = out / "runs" / "L1-d32-D24K" / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 10, 180, "10 steps logged")
    seen = len(metrics.read_text().splitlines())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == EXIT_REQUEUE, (tmp_path / "sweep.log").read_text()[-2000:]
    (row,) = rows(out).values()
    assert row["status"] == "running" and (out / "runs" / row["run_id"] / "ckpt.pt").is_file()
    done = scaling(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = rows(out).values()
    assert (row["status"], row["attempts"], row["completions"]) == ("completed", 2, 1)
    log = (out / "runs" / row["run_id"] / "train.log").read_text()
    assert "preempted by SIGTERM" in log
    resumed_at = int(log.split("resuming ")[1].split(" at step ")[1].split("/")[0])
    assert resumed_at >= seen  # no step lost since the signal
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))


@pytest.mark.slow
def test_a_sigterm_to_a_local_launch_exits_requeue_and_a_rerun_reports(quick, tmp_path):
    import signal

    from helpers import start_scaling, wait_for

    from gptcore.preemption import EXIT_REQUEUE

    out = tmp_path / "launch"
    args = launch_args(quick, out)
    proc = start_scaling(*args, log=tmp_path / "launch.log")
    wait_for(lambda: any(len(m.read_text().splitlines()) >= 3 for m in out.glob("runs/*/metrics.jsonl")), 300,
             "3 steps logged")
    prediction = (out / "prediction.json").read_bytes()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == EXIT_REQUEUE, (tmp_path / "launch.log").read_text()[-2000:]
    assert "preempted" in (tmp_path / "launch.log").read_text()
    done = scaling(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout and (out / "prediction.json").read_bytes() == prediction
    (run,) = out.glob("runs/*/")
    assert "preempted by SIGTERM" in (run / "train.log").read_text()


@pytest.mark.slow
def test_a_sigterm_to_an_fsdp_torchrun_launch_checkpoints_every_rank_and_exits_requeue(quick, tmp_path):
    """The signal reaches the launch (as SLURM's or a shell's would); it goes on to both FSDP ranks, which
    agree on one step, each write their shard of it and exit; the launch exits 75 and a re-run resumes."""
    import signal

    from helpers import start_scaling, wait_for

    from gptcore.preemption import EXIT_REQUEUE

    out = tmp_path / "launch"
    args = launch_args(quick, out, "--executor", "torchrun", "--gpus", "2", "--parallel", "fsdp", "--yes")
    args[args.index("8K")] = "12K"  # enough steps of 2 ranks to land the signal mid-run, after 3
    proc = start_scaling(*args, log=tmp_path / "launch.log")
    wait_for(lambda: any(len(m.read_text().splitlines()) >= 3 for m in out.glob("runs/*/metrics.jsonl")), 300,
             "3 steps logged")
    (metrics,) = out.glob("runs/*/metrics.jsonl")
    seen = len(metrics.read_text().splitlines())
    prediction = (out / "prediction.json").read_bytes()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=180) == EXIT_REQUEUE, (tmp_path / "launch.log").read_text()[-3000:]
    run = metrics.parent
    log = (out / "torchrun.log").read_text()  # the ranks' output
    assert "preempted by SIGTERM" in log and not (run / "summary.json").exists()
    stopped = len(metrics.read_text().splitlines())
    assert stopped >= seen
    done = scaling(*args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "prediction.json").read_bytes() == prediction
    log = (out / "torchrun.log").read_text()
    assert f"at step {stopped}/" in log.split("preempted by SIGTERM")[1]  # resumed at the signalled step
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # every step once: none lost since the signal
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["world_size"], summary["parallel"]) == ("completed", 2, "fsdp")
