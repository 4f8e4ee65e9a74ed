"""`scaling launch`: the extrapolated final run, with its loss predicted and registered before it trains."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scaling.units import format_interval

EXAMPLES = """examples:
  scaling launch --law runs/law.json --compute 1e13 --grid tiny
  scaling launch --law runs/law.json --params 14M --tokens 128K --executor torchrun --gpus 2 --yes
  scaling launch --law law.json --compute 1e20 --executor slurm --nodes 4 --gpu H100-SXM --partition gpu
  scaling launch --law law.json --compute 1e20 --executor torchrun --nodes 2 --tasks-per-node 8 \
      --rdzv-endpoint node0:29500 --parallel fsdp
"""


def register(subparsers) -> None:
    from scaling.commands.sweep import add_run_output_arguments, at_least
    from scaling.launch.request import DEFAULT_CONFIRM_ABOVE_HOURS, DEFAULT_CONFIRM_ABOVE_USD, EXECUTORS

    p = subparsers.add_parser(
        "launch",
        help="train the extrapolated final run and check the law's prediction against it",
        description="Pick the run (compute-optimal for --compute under --law, or --params [--tokens]), "
        "print the plan and the predicted final loss with its bootstrap interval, write OUT/prediction.json "
        "once (before training; never rewritten), train with checkpoints, and write OUT/report.md and "
        "OUT/report.json. Re-running the same command resumes an interrupted launch.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--law", required=True, type=Path, help="law file from `scaling fit --out`")
    what = p.add_argument_group("the run (sizes in the law's parameter convention)")
    what.add_argument("--compute", metavar="C", help="training FLOPs: the law's compute-optimal N and D")
    what.add_argument("--params", metavar="N", help="model size, e.g. 14M")
    what.add_argument("--tokens", metavar="D", help="training tokens (default: the law's optimum for N)")
    what.add_argument("--grid", help="the sweep's grid (preset or .toml), whose ctx, seed and training settings "
                      "the run shares (default: read from the law's sweep directory)")
    what.add_argument("--lr-law", type=Path, help="tuned LR law from `scaling tune`, or 'default' for the default "
                      "rule (default: the rule the law's sweep recorded; for a law that records none, "
                      "runs/tune/lr_law.json if it exists, else the default rule)")
    what.add_argument("--allow-other-lr-rule", action="store_true",
                      help="train by --lr-law even where it is not the rule the law's runs were trained by "
                      "(recorded in prediction.json and the report)")
    what.add_argument("--data", type=Path, help="prepared data dir (default: the bundled corpus, prepared "
                      "into OUT/data); use the sweep's data")
    where = p.add_argument_group("where it trains")
    where.add_argument("--executor", choices=EXECUTORS, default="local",
                      help="local worker, SLURM job with requeue (submitit), or torchrun with DDP (default: local)")
    where.add_argument("--gpus", type=int, metavar="K",
                      help="processes in all, one GPU each (or CPU processes with gloo): --nodes x "
                      "--tasks-per-node (default: that product)")
    where.add_argument("--nodes", type=int, default=1, metavar="M", help="nodes (torchrun, slurm; default 1)")
    where.add_argument("--tasks-per-node", type=int, metavar="K",
                      help="processes per node, each a rank (default: --gpus / --nodes; on a SLURM GPU "
                      "partition, its GPUs per node; else 1)")
    where.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                      help="torchrun with --nodes > 1: this node's address for the c10d rendezvous")
    where.add_argument("--parallel", choices=("auto", "ddp", "fsdp"), default="auto",
                      help="ddp replicates the model, fsdp shards it; auto: fsdp when the planner's memory "
                      "model says the replicated states do not fit the GPU (default auto)")
    where.add_argument("--partition", help="SLURM partition")
    where.add_argument("--timeout-min", type=at_least(0, strict=True),
                      help="SLURM time limit per attempt (requeued past it)")
    where.add_argument("--out", type=Path, default=Path("runs/launch"), help="launch directory (default runs/launch)")
    cost = p.add_argument_group("plan and confirmation")
    cost.add_argument("--gpu", help="device for the plan, from the hardware table (default: the one training)")
    cost.add_argument("--price-per-gpu-hour", type=float, metavar="USD", help="default: the table's price")
    cost.add_argument("--confirm-above", type=at_least(0), default=DEFAULT_CONFIRM_ABOVE_USD, metavar="USD",
                      help=f"ask before a run that costs more (default {DEFAULT_CONFIRM_ABOVE_USD:g})")
    cost.add_argument("--confirm-above-hours", type=at_least(0), default=DEFAULT_CONFIRM_ABOVE_HOURS,
                      metavar="HOURS", help="ask before a run whose planned wall clock is longer, even when its "
                      f"cost is unknown, as on a CPU (default {DEFAULT_CONFIRM_ABOVE_HOURS:g})")
    cost.add_argument("--yes", action="store_true",
                      help="do not ask; needed above --confirm-above or --confirm-above-hours without a TTY")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_run_output_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from analysis.report import write_report
    from scaling.commands.sweep import loggers_from_args
    from scaling.launch.orchestrate import launch
    from scaling.launch.request import LaunchRequest
    from scaling.units import parse_optional_size

    req = LaunchRequest(
        law=args.law, out=args.out, compute=parse_optional_size(args.compute, "--compute"),
        params=parse_optional_size(args.params, "--params"), tokens=parse_optional_size(args.tokens, "--tokens"),
        executor=args.executor, **layout(args), parallel=args.parallel, rdzv_endpoint=args.rdzv_endpoint,
        data=args.data,
        grid=args.grid, lr_law=args.lr_law, allow_other_lr_rule=args.allow_other_lr_rule, gpu=args.gpu,
        price_per_gpu_hour=args.price_per_gpu_hour,
        confirm_above_usd=args.confirm_above, confirm_above_hours=args.confirm_above_hours, yes=args.yes,
        partition=args.partition, timeout_min=args.timeout_min, progress=not args.no_progress,
        keep_checkpoints=args.keep_checkpoints, loggers=loggers_from_args(args),
    )
    if launch(req) is None:
        from gptcore.preemption import EXIT_REQUEUE

        print(f"launch: preempted; the final run checkpointed its step: run the same command to resume "
              f"(exit {EXIT_REQUEUE}: requeue me)", file=sys.stderr)
        return EXIT_REQUEUE
    report = write_report(args.out)
    print(summary_line(report))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def layout(args) -> dict:
    """gpus (the run's processes), nodes and tasks_per_node from --gpus, --nodes and --tasks-per-node."""
    from gptcore.errors import UserError

    nodes, per_node, gpus = args.nodes, args.tasks_per_node, args.gpus
    for flag, value in (("--nodes", nodes), ("--tasks-per-node", per_node), ("--gpus", gpus)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: must be 1 or more, got {value}")
    if per_node is None:
        if gpus is not None:
            if gpus % nodes:
                raise UserError(f"--gpus {gpus} does not split over --nodes {nodes}")
            per_node = gpus // nodes
        elif args.executor == "slurm":
            from sweeps.slurm import gpus_per_node

            per_node = gpus_per_node(args.partition) or 1
        else:
            per_node = 1
    if gpus is not None and gpus != nodes * per_node:
        raise UserError(f"--gpus {gpus} is not --nodes {nodes} x --tasks-per-node {per_node}")
    return {"gpus": nodes * per_node, "nodes": nodes, "tasks_per_node": per_node}


def summary_line(report: dict) -> str:
    """One line: predicted against actual final loss, and whether it fell inside the parameter and the
    prediction interval; a run without a final loss (diverged) says why."""
    named = [(name, report.get(key), report.get(within)) for name, key, within in (
        ("parameter interval", "predicted_interval", "within_interval"),
        ("prediction interval", "prediction_interval", "within_prediction_interval")) if report.get(key)]
    predicted = f"predicted final loss {report['predicted_loss']:.4f}"
    if report["actual_loss"] is None:
        intervals = "; ".join(f"the {name} {format_interval(*lo_hi, '.4f')}" for name, lo_hi, _ in named)
        return f"{predicted}, actual none (the run {report['status']}; no final loss to compare)" + \
            (f"; {intervals}" if intervals else "")
    where = ", ".join(f"{'inside' if inside else 'outside'} the {name} {format_interval(*lo_hi, '.4f')}"
                      for name, lo_hi, inside in named)
    return (f"{predicted}, actual {report['actual_loss']:.4f}: "
            f"relative error {100 * report['relative_error']:+.2f}%" + (f" ({where})" if where else ""))
