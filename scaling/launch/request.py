"""What `scaling launch` was asked, and its defaults (imported when the CLI builds its parser: no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXECUTORS = ("local", "slurm", "torchrun")
DEFAULT_CONFIRM_ABOVE_USD = 100.0
DEFAULT_CONFIRM_ABOVE_HOURS = 24.0  # a day of wall clock: asked for even when the price is unknown (a CPU)


@dataclass(frozen=True)
class LaunchRequest:
    """What `scaling launch` was asked. Sizes are in the law's parameter convention."""

    law: Path
    out: Path
    compute: float | None = None
    params: float | None = None
    tokens: float | None = None
    executor: str = "local"
    gpus: int = 1  # the run's processes, nodes x tasks_per_node: one GPU each, or CPU processes with gloo
    nodes: int = 1
    tasks_per_node: int = 1
    rdzv_endpoint: str | None = None  # torchrun across nodes: HOST:PORT of the c10d rendezvous
    parallel: str = "auto"  # auto | ddp | fsdp (scaling.parallelism)
    data: Path | None = None
    grid: str | None = None  # the sweep grid whose ctx, seed and [train] settings the run shares
    lr_law: Path | None = None  # None: the rule the law's sweep recorded; Path("default"): the default rule
    allow_other_lr_rule: bool = False  # train by --lr-law even where it is not the sweep's rule
    gpu: str | None = None  # the planner's device (default: what this machine trains on)
    price_per_gpu_hour: float | None = None
    confirm_above_usd: float = DEFAULT_CONFIRM_ABOVE_USD
    confirm_above_hours: float = DEFAULT_CONFIRM_ABOVE_HOURS
    yes: bool = False
    partition: str | None = None
    timeout_min: float | None = None
    progress: bool = True
    keep_checkpoints: str | None = None  # sweeps.keep.POLICIES; None: the one recorded, else the default (last)
    loggers: tuple[str, ...] | None = None  # gptcore.loggers; None: the ones recorded, else none
