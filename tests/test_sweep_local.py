"""`scaling sweep` on the local executor, end to end with the real trainer on the bundled corpus.

The slowest tests of the sweeps (marked slow): the tiny grid (12 runs, about 2 minutes on 2 cores), a
kill -9 of a sweep and its re-run, a worker killed mid-run, and a run over its time limit.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from helpers import cli_env, pid_alive, rows, scaling, start_scaling, table, wait_for

pytestmark = pytest.mark.slow

SMALL_GRID = """
ctx = 64
params = ["12K", "50K"]
tokens = ["12K", "16K"]
[train]
batch_size = 8
eval_every = 20
eval_batches = 2
checkpoint_every = 5
"""


def test_kill_9_mid_run_then_rerun_completes_every_run_exactly_once(prepared_data, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(SMALL_GRID)
    out = tmp_path / "sweep"
    args = ("sweep", "--grid", str(grid), "--data", str(prepared_data), "--out", str(out), "--executor", "local",
            "--workers", "2", "--no-estimate")
    proc = start_scaling(*args, log=tmp_path / "first.log")

    def mid_run():  # a run with a checkpoint, still running
        return [r for r in rows(out).values() if r["status"] == "running"
                and (out / "runs" / r["run_id"] / "ckpt.pt").exists()] if (out / "sweep.db").exists() else []

    running = wait_for(mid_run, 240, "a run with a checkpoint")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    worker_pids = [int(r["owner"].rsplit(":", 1)[1]) for r in running]
    wait_for(lambda: not any(pid_alive(p) for p in worker_pids), 10, "the workers to die with the sweep")

    rerun = scaling(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    final = rows(out)
    assert len(final) == 4
    assert all(r["status"] == "completed" and r["completions"] == 1 for r in final.values())
    assert len(table(out)) == 4
    interrupted = final[running[0]["run_id"]]
    assert interrupted["attempts"] == 2
    assert "resuming" in (out / "runs" / interrupted["run_id"] / "train.log").read_text()


def test_a_worker_killed_mid_run_costs_only_its_run(prepared_data, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(SMALL_GRID.replace('["12K", "50K"]', '["12K"]'))
    out = tmp_path / "sweep"
    args = ("sweep", "--grid", str(grid), "--data", str(prepared_data), "--out", str(out), "--executor", "local",
            "--workers", "1", "--no-estimate")
    proc = start_scaling(*args, log=tmp_path / "first.log")
    running = wait_for(lambda: [r for r in rows(out).values() if r["status"] == "running"]
                       if (out / "sweep.db").exists() else [], 240, "a running run")
    os.kill(int(running[0]["owner"].rsplit(":", 1)[1]), signal.SIGKILL)  # the worker, as the OOM killer would
    assert proc.wait(timeout=300) == 1  # the sweep went on and says some run failed
    final = rows(out)
    victim = final[running[0]["run_id"]]
    assert victim["status"] == "failed" and victim["reason"] == "worker process died (killed by SIGKILL)"
    assert sum(r["status"] == "completed" for r in final.values()) == 1
    assert "failed" in {r["status"] for r in table(out)}


def test_a_run_over_its_time_limit_is_recorded_as_timed_out(prepared_data, tmp_path):
    out = tmp_path / "sweep"
    run = scaling("sweep", "--params", "50K", "--tokens", "2M", "--ctx", "64", "--data", str(prepared_data),
                  "--out", str(out), "--executor", "local", "--no-estimate", "--timeout-min", "0.1")
    assert run.returncode == 1
    (row,) = table(out)
    assert row["status"] == "timeout" and "over --timeout-min 0.1" in row["reason"] and row["loss"] == ""


def test_a_diverging_run_is_recorded_with_its_reason_and_left_out_of_fits(prepared_data, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('ctx = 64\nparams = ["12K"]\ntokens = ["4K"]\n[train]\nlr = 1e8\ngrad_clip = 0.0\nbatch_size = 8\n')
    out = tmp_path / "sweep"
    every_line = cli_env(SCALING_PROGRESS_EVERY_S="0")  # a plain progress line at every change
    run = scaling("sweep", "--grid", str(grid), "--data", str(prepared_data), "--out", str(out),
                  "--executor", "local", "--no-estimate", env=every_line)
    assert run.returncode == 0, run.stderr[-2000:]  # diverging is a result, not a failure of the sweep
    assert "1/1 run" in run.stderr, run.stderr
    quiet = scaling("sweep", "--grid", str(grid), "--data", str(prepared_data), "--out", str(tmp_path / "quiet"),
                    "--executor", "local", "--no-estimate", "--no-progress", env=every_line)
    assert quiet.returncode == 0 and " run (" not in quiet.stderr, quiet.stderr  # --no-progress: none
    (row,) = table(out)
    assert row["status"] == "diverged" and row["reason"].startswith("loss not finite at step") and row["loss"] == ""


def test_a_sweep_directory_takes_only_its_own_grid_and_resumes_it(prepared_data, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('ctx = 16\nparams = ["12K"]\ntokens = ["4K"]\n[train]\nbatch_size = 4\neval_every = 20\n')
    out = tmp_path / "sweep"
    common = ("--data", str(prepared_data), "--out", str(out), "--executor", "local", "--no-estimate")
    first = scaling("sweep", "--grid", str(grid), *common)
    assert first.returncode == 0, first.stderr[-2000:]
    kept = {name: (out / name).read_bytes() for name in ("sweep.json", "sweep.csv")}

    for extra in ((), ("--dry-run",)):  # another grid (ctx 32, new run ids): refused, with or without --dry-run
        other = scaling("sweep", "--params", "50K", "--tokens", "4K", "--ctx", "32", *common, *extra)
        assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr[-2000:]
        assert "holds a sweep of another grid ('grid'; this one differs in ctx, params, train)" in other.stderr
    assert {name: (out / name).read_bytes() for name in kept} == kept and len(rows(out)) == 1

    for extra in (("--dry-run",), ()):  # the same grid resumes, with or without --dry-run
        again = scaling("sweep", "--grid", str(grid), *common, *extra)
        assert again.returncode == 0 and "(0 new, 1 finished" in again.stdout, again.stderr[-2000:]

    # A directory written before sweeps recorded their grid has nothing to compare with.
    (out / "sweep.json").write_text(json.dumps({"grid": "grid", "data": str(prepared_data)}))
    plan = scaling("sweep", "--params", "50K", "--tokens", "4K", "--ctx", "32", *common, "--dry-run")
    assert plan.returncode == 0 and "(1 new, 0 finished" in plan.stdout, plan.stderr[-2000:]
