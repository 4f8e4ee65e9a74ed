"""Where the final run trains. The launch directory is a one-run sweep directory (store, sweep.csv,
runs/RUN_ID), so the sweep's executors run it: a local worker, a SLURM job with requeue, or torchrun
on one node or several (each rank is `python -m scaling.launch.rank`). Each resumes a run from its last
checkpoint. A run of several processes trains with DDP or FSDP, as the launch chose (OUT/sweep.json)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from sweeps.grid import RunSpec
from sweeps.runner import run_dir

RANK_MODULE = "scaling.launch.rank"  # what torchrun starts in each process


def run_threads(executor: str, tasks_per_node: int) -> int:
    """CPU threads of each training process: every core for one local process, a share for each rank of
    this node."""
    from sweeps.local import available_cores

    return max(1, available_cores() // (tasks_per_node if executor != "local" else 1))


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


def run_slurm(out: Path, spec: RunSpec, partition: str | None, timeout_min: float | None, nodes: int,
              tasks_per_node: int, progress: bool) -> None:
    """One SLURM job of nodes x tasks_per_node tasks, each a rank (a Checkpointable: a timeout or preemption
    requeues the whole job, and every rank resumes from the same checkpoint). On a GPU partition each task
    has one GPU; on CPU nodes each takes its share of this machine's cores (the nodes are assumed alike)."""
    from sweeps.slurm import SlurmExecutor

    bar = _progress(out, spec.run_id, progress)
    try:
        SlurmExecutor(out, partition, timeout_min, gpus_per_run=tasks_per_node if _has_gpu() else 0,
                      cpus_per_run=run_threads("slurm", tasks_per_node), nodes=nodes,
                      tasks_per_node=tasks_per_node).run([spec.run_id], bar, {})
    finally:
        bar.close()


def _wait_forwarding(proc: subprocess.Popen, preemption) -> int:
    """Wait for torchrun; a preemption signal caught meanwhile is sent on to its ranks, not to torchrun
    itself, whose agent would SIGKILL them 30 s later, perhaps in the middle of their checkpoint."""
    forwarded = False
    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if preemption.asked and not forwarded:
                forwarded = True
                for pid in _children(proc.pid):
                    try:
                        os.kill(pid, preemption.signum)
                    except ProcessLookupError:
                        pass  # a rank that has just exited


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc; none elsewhere)."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except OSError:
        return []


def torchrun_command(out: Path, nodes: int, tasks_per_node: int, endpoint: str | None,
                     threads: int | None) -> list[str]:
    """torchrun of the launch's ranks: `--standalone` on one node, else a c10d rendezvous at `endpoint`
    (every node runs this same command; torchrun gives each node its rank as it joins)."""
    where = ["--standalone"] if nodes == 1 else \
        [f"--nnodes={nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", f"--rdzv-id={out.name}"]
    return [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={tasks_per_node}",
            "-m", RANK_MODULE, str(out), "--threads", str(threads or 0)]


def run_torchrun(out: Path, spec: RunSpec, nodes: int, tasks_per_node: int, endpoint: str | None) -> bool:
    """torchrun with nodes x tasks_per_node processes (NCCL on GPUs, gloo on CPU), each running
    `python -m scaling.launch.rank OUT`. With nodes > 1 this is the first node's agent: it prints the
    command each other node runs (the launch directory must be on a filesystem every node shares).

    This process holds the run's claim in the store and records the outcome from the trainer's summary.
    torchrun dies with this process (PR_SET_PDEATHSIG), and each rank with torchrun, so a killed launch
    leaves nothing training behind. A preemption signal to this process goes to this node's ranks, which
    agree on a step, checkpoint it and exit: True then (re-running the launch resumes the run).
    """
    from gptcore.preemption import Preemption
    from sweeps.store import Store, local_owner
    from sweeps.worker import die_with_parent

    threads = run_threads("torchrun", tasks_per_node) if not _has_gpu() else None
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    store = Store(out)
    owner = local_owner()
    try:
        claimed = store.claim(owner, spec.run_id)
        if claimed is None:
            return False  # finished already (or another live launch holds it)
        cmd = torchrun_command(out, nodes, tasks_per_node, endpoint, threads)
        if nodes > 1:
            other = " ".join(shlex.quote(c) for c in cmd[3:])  # after python -m torch.distributed.run
            print(f"on each of the other {nodes - 1} node(s), with this project installed: torchrun {other}",
                  flush=True)
        parent = os.getpid()
        log = out / "torchrun.log"  # not in the run folder: the trainer wants it empty until it starts
        with open(log, "ab") as f, Preemption() as preemption:
            proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=lambda: die_with_parent(parent))
            code = _wait_forwarding(proc, preemption)
        summary_path = run_dir(out, spec.run_id) / "summary.json"
        if preemption.asked and not summary_path.is_file():
            return True  # the ranks checkpointed one step; the claim dies with this process, a re-run resumes
        if code == 0 and summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            reason = f"loss not finite at step {summary.get('diverged_step')}" \
                if summary["status"] == "diverged" else None
            store.finish(spec.run_id, owner, summary["status"], reason, summary)
        else:
            store.finish(spec.run_id, owner, "failed", f"torchrun exited with code {code}; see {log}")
    finally:
        store.close()
