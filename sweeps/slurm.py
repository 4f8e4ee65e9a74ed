"""The SLURM executor (submitit): one job array per group of runs that need the same resources.

Each array task is a `RunJob`, a `submitit.helpers.Checkpointable`. SLURM is asked for USR2 a grace period
before the time limit (`slurm_signal_delay_s`) and sends SIGTERM on preemption; the trainer takes either,
finishes its step and checkpoints, and the job then has submitit requeue it. Its `__call__` is idempotent,
claiming the same run again (a requeued job keeps its SLURM job id, its owner name) and resuming from the
run's last checkpoint. Runs record their own outcome in the store; this driver records only jobs that
ended without doing so.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import submitit

from gptcore.preemption import last_signal
from sweeps.progress import SweepProgress
from sweeps.runner import run_claimed
from sweeps.store import FINAL, Store

TIMEOUT_BUCKETS_MIN = (10, 30, 60, 120, 240, 480, 960, 1440, 2880)
POLL_S = 2.0


def cluster_answers(timeout_s: float = 10.0) -> bool:
    """True when a SLURM controller answers `sinfo` here."""
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=timeout_s).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def slurm_owner() -> str:
    return f"slurm:{os.environ.get('SLURM_JOB_ID', 'unknown')}"


def hand_on_preemption() -> None:
    """After the trainer checkpointed on a preemption signal, do what that signal asked of this job.

    USR2 (what submitit asks SLURM to send before the time limit): submitit's handler of it checkpoints
    this job (RunJob.checkpoint: call it again) and requeues it with `scontrol requeue`. SIGTERM (SLURM
    preempting, requeueing or cancelling the job): die of it, as SLURM expects, which then requeues the job
    or not; submitit only logs SIGTERM, so the default action is put back first.
    """
    signum = last_signal() or signal.SIGTERM
    if signum != submitit.JobEnvironment._usr_sig():
        signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


class RunJob(submitit.helpers.Checkpointable):
    """One sweep run as a SLURM job; calling it again (after a requeue) resumes the same run."""

    def __init__(self, sweep_dir: str, run_id: str, threads: int):
        self.sweep_dir, self.run_id, self.threads = str(sweep_dir), run_id, threads

    def __call__(self) -> dict:
        import torch

        torch.set_num_threads(self.threads)
        store = Store(self.sweep_dir)
        owner = slurm_owner()
        try:
            spec = store.claim(owner, self.run_id)
            if spec is None:  # finished already, or another live job holds it
                row = next(r for r in store.rows() if r["run_id"] == self.run_id)
                return {"run_id": self.run_id, "status": row["status"], "owner": row["owner"]}
            try:
                status = run_claimed(
                    store, spec, owner, self.threads, passthrough=(submitit.core.utils.UncompletedJobError,)
                )
            except submitit.core.utils.UncompletedJobError as e:  # timed out more often than submitit requeues
                store.finish(self.run_id, owner, "timeout", str(e))
                raise
            if status == "preempted":
                hand_on_preemption()
            return {"run_id": self.run_id, "status": status, "owner": owner}
        finally:
            store.close()


def timeout_for(estimated_s: float | None, timeout_min: float | None) -> int:
    """--timeout-min when given, else 3x the estimate + 5 minutes, rounded up to a bucket (fewer arrays)."""
    if timeout_min:
        return int(math.ceil(timeout_min))
    want = 3 * (estimated_s or 600) / 60 + 5
    return next((b for b in TIMEOUT_BUCKETS_MIN if b >= want), TIMEOUT_BUCKETS_MIN[-1])


class SlurmExecutor:
    def __init__(
        self,
        sweep_dir: Path,
        partition: str | None,
        timeout_min: float | None,
        gpus_per_run: int,
        cpus_per_run: int,
        mem_gb: float | None = None,
        parallelism: int | None = None,
    ):
        self.sweep_dir = Path(sweep_dir)
        self.partition, self.timeout_min = partition, timeout_min
        self.gpus_per_run, self.cpus_per_run, self.mem_gb = gpus_per_run, cpus_per_run, mem_gb
        self.parallelism = parallelism
        # A fresh folder for each submission: job ids restart at 1 on a new controller, and submitit
        # would read an old job's result file under a reused id.
        stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.folder = self.sweep_dir / "slurm" / stamp

    def submit(self, run_ids: list[str], estimated_s: dict[str, float]) -> list[tuple[str, submitit.Job]]:
        groups: dict[int, list[str]] = {}
        for rid in run_ids:
            groups.setdefault(timeout_for(estimated_s.get(rid), self.timeout_min), []).append(rid)
        jobs = []
        for minutes, rids in sorted(groups.items()):
            ex = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
            params = dict(
                timeout_min=minutes,
                cpus_per_task=self.cpus_per_run,
                name=f"sweep-{self.sweep_dir.name}",
                slurm_array_parallelism=self.parallelism or len(rids),
                # USR2 can come up to 30 s early (slurmctld checks limits every 30 s): leave room
                slurm_signal_delay_s=min(120, max(30, minutes * 6)),
            )
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.gpus_per_run:
                params["gpus_per_node"] = self.gpus_per_run
            if self.mem_gb:
                params["mem_gb"] = self.mem_gb
            ex.update_parameters(**params)
            with ex.batch():
                submitted = [ex.submit(RunJob(str(self.sweep_dir), rid, self.cpus_per_run)) for rid in rids]
            jobs += list(zip(rids, submitted, strict=True))
        return jobs

    def run(self, run_ids: list[str], progress: SweepProgress, estimated_s: dict[str, float]) -> None:
        store = Store(self.sweep_dir)
        try:
            rows = {r["run_id"]: r for r in store.rows()}
            todo = [rid for rid in run_ids if rows[rid]["status"] not in FINAL]
            jobs = self.submit(todo, estimated_s)
            pending = dict(jobs)
            while pending:
                progress.update(store.rows())
                for rid, job in list(pending.items()):
                    if job.done():
                        del pending[rid]
                        self._record_if_unrecorded(store, rid, job)
                time.sleep(POLL_S)
            progress.update(store.rows())
        finally:
            store.close()

    @staticmethod
    def _record_if_unrecorded(store: Store, run_id: str, job: submitit.Job) -> None:
        try:
            job.result()
        except Exception as e:  # the job failed before or outside the run's own bookkeeping
            state = job.state
            status = "timeout" if "TIMEOUT" in state else "failed"
            last_line = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
            reason = f"SLURM job {job.job_id} {state}: {last_line}"
            store.finish(run_id, None, status, reason)
