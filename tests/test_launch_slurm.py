"""`scaling launch --executor slurm --tasks-per-node 2` on a real SLURM cluster (scripts/slurm-start.sh; .ci/run
starts it): the final run is one job of 2 tasks, a rank each, and a `scontrol requeue` of it mid-run restarts
both ranks, which resume from the run's one checkpoint.

The local cluster is one node. Debian's slurm 22.05 is built with MULTIPLE_SLURMD (`scontrol show config`),
so two slurmd could emulate two nodes on one host, but the shared CI cluster runs one: 2 nodes x 1 task is
covered by torchrun's two agents instead (tests/test_launch.py, tests/test_parallel.py).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import require_slurm_cluster, rows, start_scaling, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GRID = """
ctx = 32
params = ["12K"]
tokens = ["8K"]
[train]
batch_size = 8
eval_every = 50
eval_batches = 2
checkpoint_every = 25
"""


@pytest.fixture(scope="module", autouse=True)
def cluster():
    require_slurm_cluster()


def test_the_final_run_is_one_job_of_two_ranks_and_a_requeue_resumes_both(prepared_data, tmp_path):
    from scaling.law import ChinchillaLaw, FittedLaw

    (tmp_path / "grid.toml").write_text(GRID)
    FittedLaw.of(ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)).save(tmp_path / "law.json")
    out = tmp_path / "launch"  # fresh per test: SLURM job ids restart on a new controller (stale results)
    log = tmp_path / "launch.log"
    proc = start_scaling("launch", "--law", str(tmp_path / "law.json"), "--params", "4.4M", "--tokens", "64K",
                         "--grid", str(tmp_path / "grid.toml"), "--data", str(prepared_data), "--out", str(out),
                         "--executor", "slurm", "--tasks-per-node", "2", "--timeout-min", "10", "--yes",
                         "--no-progress", log=log)

    def checkpointed():
        if not (out / "sweep.db").exists():
            return None
        (row,) = rows(out).values()
        ok = row["status"] == "running" and (out / "runs" / row["run_id"] / "ckpt.pt").exists()
        return row if ok else None

    row = wait_for(checkpointed, 300, "the final run's first checkpoint")
    job_id = row["owner"].split(":", 1)[1]
    subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]

    (final,) = rows(out).values()  # the store holds one run, trained by the one (requeued) job
    assert final["status"] == "completed" and final["attempts"] == 2 and final["owner"] == row["owner"]
    run = out / "runs" / final["run_id"]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["world_size"], summary["parallel"]) == (2, "ddp")
    assert summary["tokens"] >= 64_000
    resumed_at = int((run / "train.log").read_text().split("resuming ")[1].split(" at step ")[1].split("/")[0])
    assert resumed_at >= 25  # every rank from the checkpoint, not from step 0
    tasks = subprocess.run(["sacct", "-j", job_id, "-D", "-n", "-o", "JobID,State,NTasks", "--parsable2"],
                           capture_output=True, text=True).stdout
    assert "REQUEUED" in tasks
    assert any(line.split("|")[2] == "2" for line in tasks.splitlines() if line.count("|") == 2), tasks
    assert "parallel           ddp over 2 processes" in log.read_text()
