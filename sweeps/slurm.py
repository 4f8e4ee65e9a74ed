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


def _sinfo(fmt: str, partition: str | None) -> str | None:
    cmd = ["sinfo", "-h", "-o", fmt] + (["-p", partition] if partition else [])
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def gres_gpu_counts(gres: str) -> list[int]:
    """The count of each GPU item in one node's GRES string (`gpu:8`, `gpu:a100:4(S:0-1)`, `(null)`: none)."""
    counts = []
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) > 1 and parts[-1].isdigit():
            counts.append(int(parts[-1]))
    return counts


def gres_gpus(gres: str) -> int | None:
    """The GPUs in one node's GRES string, every type together; None for none."""
    return sum(gres_gpu_counts(gres)) or None


def gpus_per_node(partition: str | None) -> int | None:
    """The GPUs each node of `partition` (default: the default one) has, from its GRES (`gpu:8`,
    `gpu:a100:4(S:0-1)`); None on CPU nodes or when sinfo does not answer."""
    counts = [n for gres in (_sinfo("%G", partition) or "").split() for n in gres_gpu_counts(gres)]
    return min(counts) if counts else None


def partition_slots(sinfo_lines: str, partition: str | None, cpus_per_run: int, gpus_per_run: int) -> int | None:
    """How many runs of `cpus_per_run` CPUs and `gpus_per_run` GPUs the partition holds at once, from
    `sinfo -h -o "%P %C %D %G"` lines (partition, CPUs allocated/idle/other/total, nodes, GRES); without a
    partition, the default one (its name ends in *). None when the lines say nothing of it."""
    cpus = gpus = 0
    seen = False
    for line in sinfo_lines.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        name, counts, nodes, gres = fields[:4]
        if (partition is None and not name.endswith("*")) or (partition and name.rstrip("*") != partition):
            continue
        try:
            cpus += int(counts.split("/")[3])
            gpus += int(nodes) * (gres_gpus(gres) or 0)
        except (IndexError, ValueError):
            continue
        seen = True
    if not seen:
        return None
    slots = cpus // max(1, cpus_per_run)
    if gpus_per_run:
        slots = min(slots, gpus // gpus_per_run)
    return max(1, slots)


def cluster_slots(partition: str | None, cpus_per_run: int, gpus_per_run: int) -> int | None:
    """partition_slots of the cluster answering here (None when sinfo does not answer)."""
    out = _sinfo("%P %C %D %G", partition)
    return None if out is None else partition_slots(out, partition, cpus_per_run, gpus_per_run)


def slurm_owner() -> str:
    """slurm:JOB, or slurm:ARRAY_TASK for a task of an array: the id that `scontrol requeue` or `scancel`
    takes for this one run. An array task's SLURM_JOB_ID is a raw id, and the first task's is the array's
    own, so acting on it would requeue or cancel every task of the sweep."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"slurm:{array}_{task}"
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
    """One sweep run as a SLURM job; calling it again (after a requeue) resumes the same run.

    A job of several tasks (`tasks` > 1) trains the run on all of them, one rank each: submitit's
    TorchDistributedEnvironment sets torch's env:// rendezvous (the first node's address, a port drawn
    from the job id), rank 0 claims the run and records it in the store as a one-task job does, and every
    rank trains. A requeue (timeout, preemption, `scontrol requeue`) restarts every task, and every rank
    resumes from the run's one latest checkpoint."""

    def __init__(self, sweep_dir: str, run_id: str, threads: int, tasks: int = 1):
        self.sweep_dir, self.run_id, self.threads, self.tasks = str(sweep_dir), run_id, threads, tasks

    def __call__(self) -> dict:
        import torch

        torch.set_num_threads(self.threads)
        if self.tasks > 1:
            return self._call_rank()
        return self._call_owner()

    def _call_rank(self) -> dict:
        import atexit

        import torch
        import torch.distributed as dist

        from gptcore.train import close_distributed, exit_process, init_distributed

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        d = init_distributed("cuda" if torch.cuda.is_available() else "cpu")
        try:
            if d.main:
                result = self._call_owner(share=lambda spec: dist.broadcast_object_list([spec], src=0))
            else:
                box = [None]
                dist.broadcast_object_list(box, src=0)  # rank 0's claim: the run, or None (nothing to do)
                result = self._train_beside(box[0], d.world) if box[0] is not None else \
                    {"run_id": self.run_id, "status": "not claimed"}
            if result["status"] == "failed":  # recorded; exit non-zero so that srun stops the other ranks
                raise RuntimeError(f"{self.run_id} failed on rank {d.rank}; see its train.log")
        finally:
            close_distributed()
        # Once submitit has written the result, leave without the interpreter's teardown (see
        # gptcore.train.exit_process: a gloo worker freeing tensors then can abort the task).
        atexit.register(exit_process, 0)
        return result

    def _train_beside(self, spec, world: int) -> dict:
        """A rank other than 0: train the run rank 0 claimed (no store: rank 0 keeps its record)."""
        from gptcore.train import train
        from sweeps.runner import read_settings, recorded_loggers, run_dir, train_config

        settings = read_settings(self.sweep_dir)
        cfg = train_config(spec, settings["data"], run_dir(self.sweep_dir, spec.run_id), self.threads,
                           settings.get("device", "auto"), recorded_loggers(self.sweep_dir), world=world,
                           parallel=settings.get("parallel", "ddp"))
        summary = train(cfg, log=lambda msg: None)
        if summary.status == "preempted":
            hand_on_preemption()
        return {"run_id": self.run_id, "status": summary.status}

    def _call_owner(self, share=None) -> dict:
        """Claim the run, train it and record it (rank 0 of a job of several tasks: `share` hands the
        claimed run, or None, to the other ranks first)."""
        share = share or (lambda spec: None)
        store = Store(self.sweep_dir)
        owner = slurm_owner()
        try:
            spec = store.claim(owner, self.run_id)
            share(spec)
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
        nodes: int = 1,
        tasks_per_node: int = 1,
    ):
        """Each run is one job of nodes x tasks_per_node tasks (one rank each, `cpus_per_run` cores and, on
        GPUs, `gpus_per_run` GPUs per node), or of one task."""
        self.sweep_dir = Path(sweep_dir)
        self.partition, self.timeout_min = partition, timeout_min
        self.gpus_per_run, self.cpus_per_run, self.mem_gb = gpus_per_run, cpus_per_run, mem_gb
        self.parallelism = parallelism
        self.nodes, self.tasks_per_node = nodes, tasks_per_node
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
                params["gpus_per_node"] = self.gpus_per_run  # one GPU a task when there are several
            if self.tasks_per_node > 1 or self.nodes > 1:
                params.update(nodes=self.nodes, tasks_per_node=self.tasks_per_node,
                              slurm_srun_args=["--kill-on-bad-exit=1"])  # a rank that dies takes the others
            if self.mem_gb:
                params["mem_gb"] = self.mem_gb
            ex.update_parameters(**params)
            with ex.batch():
                submitted = [ex.submit(RunJob(str(self.sweep_dir), rid, self.cpus_per_run,
                                              self.nodes * self.tasks_per_node)) for rid in rids]
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
            job.results()  # every task's (a job of one task has one)
        except Exception as e:  # the job failed before or outside the run's own bookkeeping
            state = job.state
            status = "timeout" if "TIMEOUT" in state else "failed"
            last_line = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
            reason = f"SLURM job {job.job_id} {state}: {last_line}"
            store.finish(run_id, None, status, reason)
