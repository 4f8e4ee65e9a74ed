"""Where the final run trains. The launch directory is a one-run sweep directory (store, sweep.csv,
runs/RUN_ID), so the sweep's executors run it: a local worker, a SLURM job with requeue, or torchrun
with DDP (each rank is `python -m scaling.launch.rank`). Each resumes a run from its last checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sweeps.grid import RunSpec
from sweeps.runner import run_dir

RANK_MODULE = "scaling.launch.rank"  # what torchrun starts in each process


def run_threads(executor: str, gpus: int) -> int:
    """CPU threads of each training process: every core for one local process, a share for each rank."""
    from sweeps.local import available_cores

    return max(1, available_cores() // (gpus if executor == "torchrun" else 1))


def _progress(out: Path, run_id: str, enabled: bool):
    """The run's bar: step/total, loss and time left (sweeps.progress), the launch being a one-run sweep."""
    from sweeps.progress import SweepProgress

    return SweepProgress([run_id], enabled=enabled, sweep_dir=out)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def run_local(out: Path, spec: RunSpec, progress: bool) -> bool:
    """One sweep worker process with every core (one GPU if there is one): it resumes a claimed run.

    True when a preemption signal stopped it (the run checkpointed its step; re-running resumes it)."""
    from sweeps.local import LocalExecutor

    bar = _progress(out, spec.run_id, progress)
    try:
        return LocalExecutor(out, workers=1, threads=run_threads("local", 1), gpus=1 if _has_gpu() else 0).run(
            [spec.run_id], bar)
    finally:
        bar.close()


def run_slurm(out: Path, spec: RunSpec, partition: str | None, timeout_min: float | None, gpus: int,
              progress: bool) -> None:
    """A one-task SLURM array of a Checkpointable job: a timeout or preemption requeues and resumes it."""
    from sweeps.slurm import SlurmExecutor

    bar = _progress(out, spec.run_id, progress)
    try:
        SlurmExecutor(out, partition, timeout_min, gpus_per_run=gpus if _has_gpu() else 0,
                      cpus_per_run=max(1, os.cpu_count() or 1)).run([spec.run_id], bar, {})
    finally:
        bar.close()


def run_torchrun(out: Path, spec: RunSpec, gpus: int) -> None:
    """torchrun with `gpus` processes (DDP; gloo on CPU), each running `python -m scaling.launch.rank OUT`.

    This process holds the run's claim in the store and records the outcome from the trainer's summary.
    torchrun dies with this process (PR_SET_PDEATHSIG), and each rank with torchrun, so a killed launch
    leaves nothing training behind.
    """
    from sweeps.store import Store, local_owner
    from sweeps.worker import die_with_parent

    threads = run_threads("torchrun", gpus) if not _has_gpu() else None
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    store = Store(out)
    owner = local_owner()
    try:
        claimed = store.claim(owner, spec.run_id)
        if claimed is None:
            return  # finished already (or another live launch holds it)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
               "-m", RANK_MODULE, str(out), "--threads", str(threads or 0)]
        parent = os.getpid()
        log = out / "torchrun.log"  # not in the run folder: the trainer wants it empty until it starts
        with open(log, "ab") as f:
            code = subprocess.call(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=lambda: die_with_parent(parent))
        summary_path = run_dir(out, spec.run_id) / "summary.json"
        if code == 0 and summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            reason = f"loss not finite at step {summary.get('diverged_step')}" \
                if summary["status"] == "diverged" else None
            store.finish(spec.run_id, owner, summary["status"], reason, summary)
        else:
            store.finish(spec.run_id, owner, "failed", f"torchrun exited with code {code}; see {log}")
    finally:
        store.close()
