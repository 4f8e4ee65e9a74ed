"""The local executor: worker processes on this machine, each with its share of the CPU cores.

workers x threads never exceeds the cores (or one worker per GPU, each seeing its own GPU). A worker
that dies (a crash, the OOM killer) or overruns --timeout-min costs only its current run, which is
recorded as failed or timed out with the reason; a new worker takes its place.

Several `scaling sweep` processes may run one directory at once: they share its runs through the store,
each waits until every run is final, and the cores are shared through one lock file per core
(DIR/.cores/HOST/K.lock, flock): a worker trains with the cores it holds, so all processes' workers
together never run more threads than the machine has cores. The kernel drops a dead worker's locks.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gptcore.preemption import EXIT_REQUEUE, Preemption
from sweeps.progress import SweepProgress
from sweeps.store import FINAL, Store, local_owner

POLL_S = 0.5


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_layout(workers: int | None, gpus: int, cores: int) -> tuple[int, int]:
    """(workers, torch threads per worker): one worker per GPU, else one per core, and w x t <= cores."""
    if workers is None:
        workers = gpus if gpus else cores
    workers = max(1, workers)
    return workers, max(1, cores // workers)


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class LocalExecutor:
    def __init__(self, sweep_dir: Path, workers: int, threads: int, gpus: int = 0, timeout_min: float | None = None):
        self.sweep_dir, self.workers, self.threads, self.gpus = Path(sweep_dir), workers, threads, gpus
        self.timeout_s = timeout_min * 60 if timeout_min else None

    def _spawn(self, slot: int) -> subprocess.Popen:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        cmd = [
            sys.executable,
            "-m",
            "sweeps.worker",
            str(self.sweep_dir),
            "--threads",
            str(self.threads),
            "--parent-pid",
            str(os.getpid()),
            "--cores",
            str(available_cores()),
        ]
        log = open(self.sweep_dir / f"worker-{slot}.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def run(self, run_ids: list[str], progress: SweepProgress) -> bool:
        """Train `run_ids` until each is final; True if a preemption signal stopped this first.

        On SIGTERM, SIGUSR1 or SIGUSR2 the workers get the signal too, finish their step, checkpoint and
        exit; their runs stay claimed by dead owners, so the next run of the command resumes them at once.
        """
        store = Store(self.sweep_dir)
        procs: dict[int, subprocess.Popen] = {}
        wanted = set(run_ids)
        try:
            with Preemption() as preemption:
                while not preemption.asked:
                    rows = store.rows()
                    progress.update(rows)
                    owners = {local_owner(p.pid): slot for slot, p in procs.items()}
                    self._reap(store, rows, procs)
                    if self.timeout_s:
                        self._enforce_timeout(store, rows, owners, procs)
                    mine = [r for r in rows if r["run_id"] in wanted]
                    # Work for a new worker: a pending run, or one whose owner (of any process) is dead or silent.
                    waiting = any(Store.claimable(r) and r["owner"] not in owners for r in mine)
                    while waiting and len(procs) < self.workers:
                        slot = min(set(range(self.workers)) - set(procs))
                        procs[slot] = self._spawn(slot)
                    if not procs and not waiting and all(r["status"] in FINAL for r in mine):
                        break  # runs still held by live workers of another process are waited for
                    time.sleep(POLL_S)
                if preemption.asked:  # the workers checkpoint their step before they exit
                    for p in procs.values():
                        p.send_signal(preemption.signum)
                    for p in procs.values():
                        p.wait()
                    procs.clear()
            progress.update(store.rows())
            return preemption.asked
        finally:
            for p in procs.values():
                p.kill()
                p.wait()
            store.close()

    @staticmethod
    def _reap(store: Store, rows: list[dict], procs: dict[int, subprocess.Popen]) -> None:
        """Forget exited workers; a worker that died (not one that was preempted) costs its run."""
        for slot, p in list(procs.items()):
            code = p.poll()
            if code is None:
                continue
            del procs[slot]
            if code not in (0, EXIT_REQUEUE):  # its claimed run (if any) dies with it
                for r in rows:
                    if r["status"] == "running" and r["owner"] == local_owner(p.pid):
                        store.finish(r["run_id"], r["owner"], "failed", f"worker process died ({_describe_exit(code)})")

    def _enforce_timeout(self, store: Store, rows: list[dict], owners: dict, procs: dict) -> None:
        now = time.time()
        for r in rows:
            if r["status"] == "running" and r["owner"] in owners and now - r["claimed_at"] > self.timeout_s:
                p = procs[owners[r["owner"]]]
                p.kill()
                p.wait()
                store.finish(
                    r["run_id"],
                    r["owner"],
                    "timeout",
                    f"ran {now - r['claimed_at']:.0f} s, over --timeout-min {self.timeout_s / 60:g}",
                )


def core_lock_dir(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / ".cores" / socket.gethostname()


def take_cores(sweep_dir: Path, want: int, cores: int) -> list:
    """Lock up to `want` of this host's `cores` core lock files, without waiting; the open files held.

    A lock lives as long as its file stays open in this process: the kernel drops it when the process dies,
    however it dies, so a killed worker never keeps a core.
    """
    lock_dir = core_lock_dir(sweep_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    held = []
    for k in range(cores):
        if len(held) == want:
            break
        f = open(lock_dir / f"{k}.lock", "a")  # noqa: SIM115 (held open: that is the lock)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(f)
        except BlockingIOError:
            f.close()
    return held
