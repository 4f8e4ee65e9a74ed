"""Time that holds: training, evaluation and checkpoint time from the run's own schedule, a goodput factor,
the compute a budget buys, and the measured throughput of an earlier run or sweep.

The trainer (gptcore.train) evaluates every `eval_every` steps and at the last step, on `eval_batches`
batches of the run's micro-batch split over the ranks (the last step on `final_eval_batches` if set), and
checkpoints every `checkpoint_every` steps (default: at each evaluation) and at the last step. A checkpoint is
the fp32 weights and Adam's two fp32 moments: 12 bytes a parameter.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from gptcore.errors import UserError
from scaling.formulas import SECONDS_PER_HOUR, Assumption
from scaling.units import format_mfu

# Datacentre NVMe SSDs are specified at 1-7 GB/s sequential write (PCIe 3 to 5); a checkpoint also pays
# torch.save's serialisation and a shared filesystem is often slower: 1 GB/s is the conservative round figure.
DEFAULT_CHECKPOINT_GB_PER_S = Assumption(1.0, "1 GB/s: a conservative single-NVMe sequential write "
                                              "(datacentre NVMe drives are specified at 1-7 GB/s)")
# Offered, not assumed: restarts cost big runs a few per cent (Llama 3: 466 interruptions in 54 days).
GOODPUT_HINT = "Llama 3 (Dubey et al. 2024) §3.3.4: higher than 90% effective training time on 16K H100s"
CHECKPOINT_BYTES_PER_PARAM = 12  # fp32 weights + Adam m and v, as gptcore.train saves them
EVAL_FLOPS_PER_PARAM_TOKEN = 2.0  # a forward pass: 2N per token (Kaplan et al. 2020 §2.1), a third of 6N


@dataclass(frozen=True)
class Schedule:
    """The run's evaluation and checkpoint schedule, in steps. eval_every None: not counted."""

    tokens_per_step: int
    eval_every: int | None = None
    eval_batches: int = 10
    final_eval_batches: int | None = None  # the last step's evaluation; None: eval_batches
    eval_sequences_per_batch: int = 1  # the trainer's batch_size: sequences per process per micro-step
    ctx: int = 1024
    checkpoint_every: int | None = None
    checkpoint_gb_per_s: float | None = None
    goodput: float | None = None


@dataclass(frozen=True)
class TimePlan:
    """Where the wall clock goes. Hours are wall-clock hours of the whole run (all GPUs at once)."""

    steps: int
    tokens_per_step: int
    train_hours: float
    evaluations: int
    eval_hours: float
    checkpoints: int
    checkpoint_gb: float
    checkpoint_gb_per_s: float | None
    checkpoint_hours: float
    goodput: float | None
    wall_clock_hours: float
    billed_gpu_hours: float  # wall clock x GPUs: what a rented cluster bills
    schedule_source: str


def _every(steps: int, every: int) -> int:
    """How many of `steps` steps act on a schedule of `every` steps, the last step always acting."""
    return steps // every + (1 if steps % every else 0)


def run_time(tokens: float, flops: float, params: float, params_total: int, rate_flops_per_s: float,
             gpus: int, s: Schedule) -> TimePlan:
    """The wall clock of training `tokens` (6ND = `flops`) at `rate_flops_per_s` over all GPUs, plus the
    schedule's evaluations (2N FLOPs a token at the same rate) and checkpoints, over the goodput."""
    steps = max(1, math.ceil(tokens / s.tokens_per_step))
    train_h = flops / rate_flops_per_s / SECONDS_PER_HOUR
    evals = ckpts = 0
    eval_h = ckpt_h = 0.0
    bandwidth = None
    ckpt_gb = CHECKPOINT_BYTES_PER_PARAM * params_total / 1e9
    if s.eval_every is not None:
        evals = _every(steps, s.eval_every)
        eval_batches = (evals - 1) * s.eval_batches + (s.final_eval_batches or s.eval_batches)
        eval_tokens = eval_batches * s.eval_sequences_per_batch * s.ctx
        eval_h = eval_tokens * EVAL_FLOPS_PER_PARAM_TOKEN * params / rate_flops_per_s / SECONDS_PER_HOUR
        ckpts = _every(steps, s.checkpoint_every or s.eval_every)
        bandwidth = s.checkpoint_gb_per_s or DEFAULT_CHECKPOINT_GB_PER_S.value
        ckpt_h = ckpts * ckpt_gb / bandwidth / SECONDS_PER_HOUR
    wall = (train_h + eval_h + ckpt_h) / (s.goodput or 1.0)
    final = f", the last {s.final_eval_batches}" if s.final_eval_batches else ""
    how = (f"eval every {s.eval_every} steps ({s.eval_batches} batches{final}), checkpoint every "
           f"{s.checkpoint_every or s.eval_every} steps" if s.eval_every is not None
           else "pass --eval-every STEPS to count them (the trainer evaluates every 100 by default)")
    return TimePlan(steps=steps, tokens_per_step=s.tokens_per_step, train_hours=train_h, evaluations=evals,
                    eval_hours=eval_h, checkpoints=ckpts, checkpoint_gb=ckpt_gb, checkpoint_gb_per_s=bandwidth,
                    checkpoint_hours=ckpt_h, goodput=s.goodput, wall_clock_hours=wall,
                    billed_gpu_hours=wall * gpus, schedule_source=how)


# ----------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    """What the user can spend: dollars, GPU-hours, or days on the run's GPUs. Exactly one is set."""

    usd: float | None = None
    gpu_hours: float | None = None
    days: float | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.usd, self.gpu_hours, self.days))

    def check(self) -> None:
        named = {"--budget-usd": self.usd, "--gpu-hours": self.gpu_hours, "--days": self.days}
        given = [flag for flag, v in named.items() if v is not None]
        if len(given) > 1:
            raise UserError(f"{given[1]}: give one budget ({', '.join(named)}), not {' and '.join(given)}")
        for flag, value in named.items():
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UserError(f"{flag}: must be a positive number; got {value}")

    def billed_gpu_hours(self, price_usd_per_gpu_hour: float | None, gpus: int, device: str) -> tuple[float, str]:
        """(GPU-hours the budget buys, how): dollars over the price, or days x 24 x GPUs."""
        if self.usd is not None:
            if not price_usd_per_gpu_hour:
                raise UserError(f"--budget-usd: no price per GPU-hour for {device}; pass --price-per-gpu-hour")
            return self.usd / price_usd_per_gpu_hour, f"${self.usd:,.0f} at ${price_usd_per_gpu_hour:g}/GPU-hour"
        if self.gpu_hours is not None:
            return self.gpu_hours, f"{self.gpu_hours:g} GPU-hours"
        return self.days * 24 * gpus, f"{self.days:g} days on {gpus} GPUs"


def compute_for_budget(gpu_hours: float, guess_flops: float, billed_hours_for) -> float:
    """The most training FLOPs whose planned billed GPU-hours (`billed_hours_for(C)`: training, evaluation
    and checkpoints, over the goodput) stay within the budget, by bisection in log C (the bill grows with
    C). `guess_flops` (H x 3600 x peak x MFU, the bill without evaluation or checkpoints) starts the bracket."""
    lo = hi = math.log(guess_flops)
    for _ in range(40):
        if billed_hours_for(math.exp(hi)) >= gpu_hours:
            break
        hi += math.log(10.0)
    for _ in range(40):
        if billed_hours_for(math.exp(lo)) <= gpu_hours:
            break
        lo -= math.log(10.0)
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if billed_hours_for(math.exp(mid)) <= gpu_hours else (lo, mid)
    return math.exp(lo)


# ----------------------------------------------------------------------------- measured throughput


@dataclass(frozen=True)
class Measured:
    """The trainer's MFU of earlier runs (its FLOPs: matmul parameters + attention, over the device peak)."""

    trainer_mfu: float
    runs: int
    devices: str
    source: str


def read_measured(path: str | Path) -> Measured:
    """The FLOP-weighted MFU of every finished run under `path` (a run directory, a sweep or a launch):
    total trainer FLOPs over total FLOP-seconds at the peak, from each run's summary.json."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"--measured-from: {path} is not a directory (a run, sweep or launch directory)")
    flops = peak_seconds = 0.0
    devices: set[str] = set()
    runs = 0
    for summary in sorted(root.rglob("summary.json")):
        try:
            s = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue  # a torn or foreign file is not a measurement
        ok = isinstance(s, dict) and s.get("status") == "completed"
        if not ok or not isinstance(s.get("mfu"), (int, float)) or not s["mfu"] > 0 or not s.get("flops"):
            continue
        flops += float(s["flops"])
        peak_seconds += float(s["flops"]) / float(s["mfu"])
        devices.add(str(s.get("device", "?")))
        runs += 1
    if not runs:
        raise UserError(f"--measured-from: no finished run with a measured MFU (summary.json) under {path}")
    mfu = flops / peak_seconds
    where = ", ".join(sorted(devices))
    return Measured(mfu, runs, where, f"measured: {path}, {runs} run(s) on {where}, trainer MFU {format_mfu(mfu)}")
