"""A local sweep worker process: `python -m sweeps.worker SWEEP_DIR --threads T`.

It claims runs from the store and trains them one after another until none is left. It dies with the
`scaling sweep` process that started it (PR_SET_PDEATHSIG), so a killed sweep leaves no orphan training
behind and its claims become free for the next run of the command.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time

from gptcore.preemption import EXIT_REQUEUE
from sweeps.local import take_cores
from sweeps.runner import run_claimed
from sweeps.store import Store, local_owner

PR_SET_PDEATHSIG = 1
CORE_POLL_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent exits; exit now if the parent is already gone."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweeps.worker", description=__doc__)
    ap.add_argument("sweep_dir")
    ap.add_argument("--threads", type=int, required=True, help="torch threads for this worker")
    ap.add_argument("--parent-pid", type=int, required=True)
    ap.add_argument("--cores", type=int, default=0, help="this host's cores, shared by lock files (0: no locks)")
    args = ap.parse_args(argv)
    die_with_parent(args.parent_pid)
    import torch

    store = Store(args.sweep_dir)
    owner = local_owner()
    held = wait_for_cores(store, args.threads, args.cores) if args.cores else [None] * args.threads
    if held:
        torch.set_num_threads(len(held))
        while (spec := store.claim(owner)) is not None:
            if run_claimed(store, spec, owner, len(held)) == "preempted":
                store.close()
                return EXIT_REQUEUE  # claim no more: the machine is being taken away
    store.close()
    return 0


def wait_for_cores(store: Store, want: int, cores: int) -> list:
    """Hold at least one core (up to `want`) before claiming a run; [] when no work is left to wait for.

    Other sweep processes' workers on this directory may hold every core: this worker then waits for one,
    so the machine never runs more training threads than it has cores.
    """
    while not (held := take_cores(store.dir, want, cores)):
        if not any(Store.claimable(r) for r in store.rows()):
            return []
        time.sleep(CORE_POLL_S)
    return held


if __name__ == "__main__":
    sys.exit(main())
