"""Preemption: a signal that says "you will be killed soon" becomes "stop after this step, checkpoint, exit".

SLURM sends SIGTERM before it kills a preempted or cancelled job, and the signal named by `#SBATCH --signal`
(submitit asks for USR2, `slurm_signal_delay_s` before the time limit); others send USR1. The trainer
finishes the step it is in, writes its checkpoint atomically and returns status "preempted"; `scaling
train` then exits with EXIT_REQUEUE, and a submitit job hands the signal on to submitit, which requeues it.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
EXIT_REQUEUE = 75  # EX_TEMPFAIL (sysexits.h), "try again later": checkpointed; run the same command to resume


class Preemption:
    """While entered, SIGNALS set `signum` instead of killing the process; leaving restores the handlers.

    Signal handlers can only be set in the main thread: elsewhere (a test's thread) this never fires.
    """

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        global _last_signal
        self.signum = self.signum or signum
        _last_signal = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    @property
    def asked(self) -> bool:
        return self.signum is not None


_last_signal: int | None = None  # what the trainer's caller hands on (a SLURM job: requeue, or be killed)


def last_signal() -> int | None:
    """The last preemption signal this process caught while a Preemption was entered, or None."""
    return _last_signal
