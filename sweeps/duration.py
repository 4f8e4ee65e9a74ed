"""How long a sweep will take: throughput measured here with a few real training steps, then scheduled."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

from sweeps.grid import RunSpec

MEASURE_STEPS = 6  # the trainer's throughput skips its first 3 steps (warm-up)


def measure_flops_per_s(spec: RunSpec, data: str, threads: int | None) -> tuple[float, float]:
    """(training FLOP/s, wall seconds of the whole call) for `spec`'s shape, from MEASURE_STEPS real steps."""
    from gptcore.train import train
    from sweeps.runner import train_config

    with tempfile.TemporaryDirectory(prefix="sweep-measure-") as tmp:
        cfg = train_config(spec, data, Path(tmp) / "run", threads)
        cfg = dataclasses.replace(
            cfg,
            tokens=None,
            max_steps=MEASURE_STEPS,
            eval_every=MEASURE_STEPS,
            eval_batches=1,
            checkpoint_every=10**9,
        )
        t0 = time.perf_counter()
        summary = train(cfg, log=lambda msg: None)
        wall = time.perf_counter() - t0
    return summary.tokens_per_s * summary.flops_per_token, wall


def estimate_seconds(specs: list[RunSpec], data: str, threads: int | None) -> tuple[dict[str, float], str]:
    """Seconds per run, interpolating the FLOP/s measured on the smallest and largest shape in log size.

    Returns the estimates and a line saying what was measured.
    """
    by_size = sorted(specs, key=lambda s: s.non_embedding_params)
    ends = [by_size[0]] if by_size[0].model == by_size[-1].model else [by_size[0], by_size[-1]]
    measured = [(math.log(s.non_embedding_params), *measure_flops_per_s(s, data, threads)) for s in ends]
    overhead_s = min(wall for _, _, wall in measured) / 2  # start-up and eval share of a short call, roughly

    def rate(n: int) -> float:
        if len(measured) == 1:
            return measured[0][1]
        (x0, r0, _), (x1, r1, _) = measured
        t = min(1.0, max(0.0, (math.log(n) - x0) / (x1 - x0)))
        return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))

    est = {s.run_id: s.flops / rate(s.non_embedding_params) + overhead_s for s in specs}
    what = ", ".join(f"{s.run_id} {r / 1e9:.2f} GFLOP/s" for s, (_, r, _) in zip(ends, measured, strict=True))
    return est, f"measured {what} per worker"


def makespan(seconds: list[float], workers: int) -> float:
    """Wall-clock of running jobs on `workers` slots, longest first, each to the least busy slot."""
    slots = [0.0] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        slots[slots.index(min(slots))] += s
    return max(slots)
