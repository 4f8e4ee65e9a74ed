"""`scaling sweep`: run a grid of small GPTs (local worker processes or SLURM) into a results store."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

DESCRIPTION = """Train a grid of GPT sizes x token budgets (or an isoFLOP grid) and keep the results in
DIR/sweep.db and the table DIR/sweep.csv that `scaling fit DIR` reads. Re-running the same command skips
finished runs, resumes interrupted ones from their checkpoints, and refuses a changed config.
Grids: presets (tiny, small, medium, large), a TOML file, or --params with --tokens, or --compute with
--sizes (isoFLOP)."""


def at_least(low: float, kind: type = float, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite `kind` >= low (> low when strict); anything else is a one-line usage error."""
    what = f"{'an integer' if kind is int else 'a finite number'} {'>' if strict else '>='} {low:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (low < value if strict else low <= value) or not value < math.inf:  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="run a grid of training runs (local or SLURM)", description=DESCRIPTION)
    add_grid_arguments(p)
    p.add_argument("--data", type=Path, help="prepared data dir (default: the bundled corpus, prepared into OUT/data)")
    p.add_argument("--out", type=Path, help="sweep directory (default: runs/sweep-GRID)")
    p.add_argument(
        "--executor",
        choices=("auto", "local", "slurm"),
        default="auto",
        help="auto: SLURM when `sinfo` answers, else local (default: auto)",
    )
    p.add_argument(
        "--workers",
        type=at_least(1, int),
        help="local: worker processes (default: one per GPU, else one per core); slurm: array tasks at once",
    )
    p.add_argument("--partition", help="SLURM partition (default: the cluster's default)")
    p.add_argument(
        "--timeout-min",
        type=at_least(0, strict=True),
        help="per-run time limit in minutes (slurm default: 3x the estimate + 5, in buckets)",
    )
    p.add_argument("--gpus-per-run", type=at_least(0, int), default=0,
                   help="SLURM GPUs per run; K > 1 makes each run one job of K tasks, a rank a GPU (default 0)")
    p.add_argument("--cpus-per-run", type=at_least(1, int), default=1,
                   help="SLURM CPUs (and torch threads) per run (default 1)")
    p.add_argument(
        "--lr-law",
        type=Path,
        help="LR law from `scaling tune` (default: runs/tune/lr_law.json if it exists, else Kaplan et al.'s rule)",
    )
    p.add_argument("--no-estimate", action="store_true", help="skip the throughput measurement before the plan")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr (as train, tune, launch)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (and its measured estimate), run nothing")
    add_run_output_arguments(p)
    p.set_defaults(func=run)


def add_run_output_arguments(p: argparse.ArgumentParser) -> None:
    """--keep-checkpoints (sweeps.keep) and --logger (gptcore.loggers), shared by sweep, launch and demo."""
    from scaling.commands.train import add_logger_argument
    from sweeps.keep import DEFAULT, POLICIES

    add_logger_argument(p, "; recorded in DIR/sweep.json: a re-run without the flag logs as before (none: stop)")

    p.add_argument("--keep-checkpoints", choices=POLICIES, metavar="|".join(POLICIES),
                   help="which finished runs keep their ckpt.pt: last, the final (launch) run's only, a sweep's "
                   "runs' dropped as each finishes; best, the lowest final val loss's; none; all. A run not "
                   "finished always keeps its checkpoint. Recorded in DIR/sweep.json: a re-run without the flag "
                   f"applies the same policy (default for a new directory: {DEFAULT})")


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", help="preset name (tiny, small, medium, large) or a .toml grid file")
    p.add_argument("--params", help="target non-embedding sizes, e.g. 1M,2M,4M")
    p.add_argument("--tokens", help="token budgets for every size, e.g. 20M,40M")
    p.add_argument("--compute", help="isoFLOP compute budgets in FLOPs, e.g. 1e14,3e14,1e15")
    p.add_argument("--sizes", type=int, default=5, help="model sizes per compute budget (default 5)")
    p.add_argument("--ctx", type=int, default=256, help="context length for a flags grid (default 256)")


def grid_from_args(args):
    from gptcore.errors import UserError
    from sweeps.grid import load_grid, make_grid

    flags = args.params or args.tokens or args.compute
    if args.grid and flags:
        raise UserError("give --grid, or --params/--tokens/--compute, not both")
    if args.grid:
        return load_grid(args.grid)
    if not flags:
        raise UserError("give --grid NAME|FILE, or --params with --tokens, or --compute with --sizes")
    name = "custom-isoflop" if args.compute else "custom"
    return make_grid(
        name,
        params=args.params,
        tokens=args.tokens,
        compute=args.compute,
        sizes=args.sizes,
        ctx=args.ctx,
        where="flags",
    )


def loggers_from_args(args) -> tuple[str, ...] | None:
    """--logger as given (None when left out: the directory's recorded choice), its packages checked."""
    from gptcore.loggers import check_available, parse_names

    loggers = parse_names(args.logger)
    check_available(loggers or ())  # before anything is prepared, registered or trained
    return loggers


def run(args) -> int:
    from sweeps.orchestrate import SweepOptions, run_sweep

    grid = grid_from_args(args)
    out = args.out or Path("runs") / f"sweep-{grid.name}"
    opts = SweepOptions(
        out=out,
        data=args.data,
        executor=args.executor,
        workers=args.workers,
        partition=args.partition,
        timeout_min=args.timeout_min,
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
        lr_law=args.lr_law,
        estimate=not args.no_estimate,
        progress=not args.no_progress,
        dry_run=args.dry_run,
        keep_checkpoints=args.keep_checkpoints,
        loggers=loggers_from_args(args),
    )
    return run_sweep(grid, opts)
