"""How long a sweep will take: throughput measured here with a few real training steps, then scheduled."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

from scaling.formulas import SECONDS_PER_HOUR
from scaling.planner_time import Schedule, run_time
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
    # A short call's start-up share, roughly; run_seconds counts the evaluations themselves.
    overhead_s = min(wall for _, _, wall in measured) / 2

    def rate(n: int) -> float:
        if len(measured) == 1:
            return measured[0][1]
        (x0, r0, _), (x1, r1, _) = measured
        t = min(1.0, max(0.0, (math.log(n) - x0) / (x1 - x0)))
        return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))

    est = {s.run_id: run_seconds(s, data, threads, rate(s.non_embedding_params)) + overhead_s for s in specs}
    what = ", ".join(f"{s.run_id} {r / 1e9:.2f} GFLOP/s" for s, (_, r, _) in zip(ends, measured, strict=True))
    return est, f"measured {what} per worker"


def run_seconds(spec: RunSpec, data: str, threads: int | None, rate_flops_per_s: float) -> float:
    """A run's training, evaluation and checkpoint seconds at `rate_flops_per_s` (the trainer's FLOPs
    convention), on the run's own schedule (the planner's run_time).

    Why not training alone: the evaluations are forward passes the throughput measurement does not time,
    the same schedule `scaling plan` and `launch` count (one implementation). On the tiny grid the
    256-sequence final evaluation is a third of a 16K-token run's work, 5-6% of the whole sweep's: its
    --dry-run said 1.34 and 1.23 min before, 1.41 and 1.31 min with them (alternating runs; Xeon, 2026-12-03).
    Its runs then took 97.6 s against 82.2 s planned (benchmarks/plan_accuracy.py, ratio 0.84): the rest is
    start-up the measurement does not time (the workers' processes, each run's model and data set-up, the
    warm-up steps its throughput skips), of which overhead_s is a rough share."""
    from gptcore.config import count_params
    from sweeps.runner import train_config

    cfg = train_config(spec, data, Path("estimate"), threads)
    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.model.ctx
    schedule = Schedule(tokens_per_step=tokens_per_step, eval_every=cfg.eval_every, eval_batches=cfg.eval_batches,
                        final_eval_batches=cfg.final_eval_batches, eval_sequences_per_batch=cfg.batch_size,
                        ctx=cfg.model.ctx, checkpoint_every=cfg.checkpoint_every)
    # run_time counts a forward pass as 2N per token against training's 6N: N here is the trainer's FLOPs
    # per token over 6, so that evaluation costs a third of training per token in the same convention.
    params = spec.flops / spec.tokens / 6.0
    plan = run_time(spec.tokens, spec.flops, params, count_params(cfg.model), rate_flops_per_s, 1, schedule)
    return plan.wall_clock_hours * SECONDS_PER_HOUR


def makespan(seconds: list[float], workers: int) -> float:
    """Wall-clock of running jobs on `workers` slots, longest first, each to the least busy slot."""
    slots = [0.0] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        slots[slots.index(min(slots))] += s
    return max(slots)
