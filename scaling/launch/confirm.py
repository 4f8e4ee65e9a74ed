"""Asking before an expensive launch: above a price, or above a wall clock even when the price is unknown."""

from __future__ import annotations

import sys

from gptcore.errors import UserError
from scaling.launch.request import LaunchRequest


def confirm(cost_usd: float | None, wall_clock_hours: float, req: LaunchRequest) -> None:
    """Ask before a run above --confirm-above dollars or --confirm-above-hours; without a terminal, --yes must say so.

    The wall-clock rule holds when no price is known too (a CPU, a device the table has no price for).
    """
    reasons = []
    if cost_usd is not None and cost_usd > req.confirm_above_usd:
        reasons.append(f"costs about ${cost_usd:,.2f}, above --confirm-above ${req.confirm_above_usd:,.2f}")
    if not wall_clock_hours <= req.confirm_above_hours:  # NaN asks too
        reasons.append(f"takes about {wall_clock_hours:.3g} h of wall clock, above --confirm-above-hours "
                       f"{req.confirm_above_hours:g}")
    if req.yes or not reasons:
        return
    question = f"this run {' and '.join(reasons)}"
    if not sys.stdin.isatty():
        raise UserError(f"{question}; pass --yes to launch without a terminal to confirm on")
    answer = input(f"{question}. Launch it? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("not launched (answered no)")
