"""Progress on stderr for every long step: a tqdm bar on a terminal, and without one (a log file, a pipe, a
CI job) a plain line now and then instead of a carriage-return bar redrawn into the file at every update.

`progress_bar` returns an object with the part of tqdm's interface the project uses: update, set_postfix,
set_postfix_str, refresh, close, n and total, and use as a context manager.
"""

from __future__ import annotations

import math
import os
import sys
import time

PLAIN_EVERY_S = 30.0  # seconds between plain lines without a terminal (SCALING_PROGRESS_EVERY_S overrides)


def format_duration(seconds: float | None) -> str:
    """'19 ms', '4.2 s', '3.5 min', '2.1 h', '3.0 days' (3 significant figures below a day). Here, the lowest
    layer, because the trainer's progress needs it too; scaling.units re-exports it for everything above."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    hours = seconds / 3600
    if hours < 48:
        return f"{hours:.3g} h"
    days = hours / 24
    if days < 1e4:
        return f"{days:,.1f} days"
    return f"{days:,.0f} days" if days < 1e12 else f"{days:.4g} days"


def _every_s() -> float:
    try:
        return max(0.0, float(os.environ.get("SCALING_PROGRESS_EVERY_S", PLAIN_EVERY_S)))
    except ValueError:
        return PLAIN_EVERY_S


def progress_bar(total: int | float | None, unit: str, desc: str | None = None, enabled: bool = True,
                 initial: int = 0, file=None, **tqdm_kwargs):
    """A tqdm bar when `file` (default stderr) is a terminal, else PlainProgress; a silent one when disabled."""
    from tqdm import tqdm

    file = file or sys.stderr
    if not enabled:
        return tqdm(total=total, disable=True)
    if getattr(file, "isatty", lambda: False)():
        return tqdm(total=total, unit=unit, desc=desc, initial=initial, file=file, dynamic_ncols=True,
                    **tqdm_kwargs)
    return PlainProgress(total, unit, desc, initial, file)


class PlainProgress:
    """A line "DESC: N/TOTAL UNIT (P%), ELAPSED elapsed, POSTFIX" at most every PLAIN_EVERY_S seconds, and a
    last one at close when any was written (a short step writes nothing)."""

    def __init__(self, total, unit: str, desc: str | None, initial: int, file):
        self.total, self.unit, self.desc, self.n, self.file = total, unit, desc, initial, file
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.every_s = _every_s()
        self.lines = 0
        self.printed: tuple | None = None  # (n, postfix) of the last line written
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        self._maybe_print()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in items.items()), refresh)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)
        if refresh:
            self._maybe_print()

    def refresh(self) -> None:
        self._maybe_print()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = f"{self.n:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        head = f"{self.desc}: " if self.desc else ""
        left = ""
        if self.total and 0 < self.n < self.total:
            left = f", ~{format_duration(elapsed / self.n * (self.total - self.n))} left"
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{head}{done} {self.unit}{pct}, {format_duration(elapsed)} elapsed{left}{tail}"

    def _maybe_print(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.closed or not (force or now - self.last >= self.every_s):
            return
        self.last = now
        self.lines += 1
        self.printed = (self.n, self.postfix)
        print(self.line(), file=self.file, flush=True)

    def close(self) -> None:
        if self.lines and not self.closed and self.printed != (self.n, self.postfix):  # the end, once
            self._maybe_print(force=True)
        self.closed = True
