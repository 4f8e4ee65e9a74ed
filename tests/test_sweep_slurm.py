"""`scaling sweep --executor slurm` on a real SLURM cluster (scripts/slurm-start.sh; .ci/run starts it).

With CI=true a missing cluster fails these tests; elsewhere they skip, saying why.
"""

from __future__ import annotations

import subprocess

import pytest
from helpers import require_slurm_cluster, rows, start_scaling, table, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GRID = """
ctx = 64
params = ["12K"]
tokens = ["8K", "12K", "16K", "128K"]  # the last one long enough to be requeued mid-run
[train]
batch_size = 8
eval_every = 25
eval_batches = 2
checkpoint_every = 5
"""


@pytest.fixture(scope="module", autouse=True)
def cluster():
    require_slurm_cluster()


def test_an_array_of_4_runs_with_one_requeued_resumes_from_its_checkpoint(prepared_data, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out = tmp_path / "sweep"  # fresh per test: SLURM job ids restart on a new controller (stale results)
    proc = start_scaling("sweep", "--grid", str(grid), "--data", str(prepared_data), "--out", str(out),
                         "--executor", "auto", "--no-estimate", "--timeout-min", "10", log=tmp_path / "sweep.log")
    victim = "L1-d32-D128K"

    def checkpointed():
        if not (out / "sweep.db").exists():
            return None
        row = rows(out).get(victim)
        ok = row and row["status"] == "running" and (out / "runs" / victim / "ckpt.pt").exists()
        return row if ok else None

    row = wait_for(checkpointed, 240, "the long run to save a checkpoint")
    job_id = row["owner"].split(":", 1)[1]
    subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True)
    assert proc.wait(timeout=400) == 0, (tmp_path / "sweep.log").read_text()[-3000:]

    log = (tmp_path / "sweep.log").read_text()
    assert "executor slurm" in log  # auto picked SLURM because the cluster answers
    final = rows(out)
    assert len(final) == 4 and all(r["status"] == "completed" and r["completions"] == 1 for r in final.values())
    assert {r["owner"].split(":")[0] for r in final.values()} == {"slurm"}
    assert final[victim]["attempts"] == 2 and final[victim]["owner"] == row["owner"]  # the same job, requeued
    train_log = (out / "runs" / victim / "train.log").read_text()
    resumed_at = int(train_log.split("resuming ")[1].split(" at step ")[1].split("/")[0])
    assert resumed_at >= 5  # from its checkpoint, not from step 0
    # The owner names the array task, so the requeue took that one run's task, not the whole array's.
    array = job_id.split("_")[0]
    states = subprocess.run(["sacct", "-j", array, "-X", "-D", "-n", "-o", "JobID,State", "--parsable2"],
                            capture_output=True, text=True).stdout
    requeued = {line.split("|")[0] for line in states.splitlines() if "REQUEUED" in line}
    assert requeued == {job_id}, states
    assert len(table(out)) == 4
    sacct = subprocess.run(["sacct", "-j", job_id, "-D", "-n", "-o", "State", "--parsable2"],
                           capture_output=True, text=True).stdout
    assert "REQUEUED" in sacct


def test_usr2_before_the_time_limit_checkpoints_the_step_and_submitit_requeues(prepared_data, tmp_path):
    """The signal SLURM is told to send (submitit: USR2) reaches the trainer, which finishes its step and
    checkpoints; submitit then requeues the job, which resumes with no step lost since the signal."""
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace('tokens = ["8K", "12K", "16K", "128K"]', 'tokens = ["128K"]')
                    .replace("checkpoint_every = 5", "checkpoint_every = 1000"))
    out = tmp_path / "sweep"
    proc = start_scaling("sweep", "--grid", str(grid), "--data", str(prepared_data), "--out", str(out),
                         "--executor", "slurm", "--no-estimate", "--timeout-min", "10", log=tmp_path / "sweep.log")
    victim = "L1-d32-D128K"
    metrics = out / "runs" / victim / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 10, 240, "10 steps logged")
    row = rows(out)[victim]
    seen = len(metrics.read_text().splitlines())
    job_id = row["owner"].split(":", 1)[1]
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, capture_output=True)
    assert proc.wait(timeout=400) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    final = rows(out)[victim]
    assert (final["status"], final["attempts"], final["completions"]) == ("completed", 2, 1)
    train_log = (out / "runs" / victim / "train.log").read_text()
    assert "preempted by SIGUSR2" in train_log
    resumed_at = int(train_log.split("resuming ")[1].split(" at step ")[1].split("/")[0])
    assert resumed_at >= seen  # the checkpoint the signal asked for, not an older one
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))
