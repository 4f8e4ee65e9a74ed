"""`scaling tune`: Optuna learning-rate studies per model size, then the fitted law lr_opt(N)."""

from __future__ import annotations

from pathlib import Path

from scaling.commands.sweep import add_grid_arguments, grid_from_args

DESCRIPTION = """One Optuna study per model size of the grid: the learning rate, log-uniform around Kaplan's
rule, on a short budget (each size's smallest token budget, or --trial-tokens), with pruning on the intermediate
validation loss. Diverged trials are recorded as failed with the reason. Studies resume from their
storage. Writes DIR/trials.csv, DIR/loss_vs_lr.png and DIR/lr_law.json (lr_opt(N) = c N^-k), which
`scaling sweep` uses for sizes it has not tuned."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="tune the learning rate per size (Optuna) and fit lr_opt(N)", description=DESCRIPTION
    )
    add_grid_arguments(p)
    p.add_argument("--trials", type=int, required=True, help="finished trials wanted per size")
    p.add_argument(
        "--storage",
        help="Optuna storage: an RDB URL (default sqlite:///DIR/optuna.db) or "
        "journal:///PATH (for SLURM on a shared filesystem, where SQLite breaks)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/tune"),
        help="output dir (default runs/tune, where `scaling sweep` looks for lr_law.json)",
    )
    p.add_argument("--data", type=Path, help="prepared data dir (default: the bundled corpus, prepared into OUT/data)")
    p.add_argument("--trial-tokens", help="training budget per trial (default: each size's smallest in the grid)")
    p.add_argument(
        "--pruner",
        choices=("median", "hyperband", "none"),
        default="median",
        help="Optuna pruner on the intermediate val loss (default median)",
    )
    p.add_argument("--lr-range", help="LR search range LO,HI (default: Kaplan's rule /10 to x10 for each size)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    from analysis.tune_plots import plot_loss_vs_lr
    from scaling.units import parse_size
    from sweeps.local import available_cores
    from sweeps.tune import TuneOptions, run_tune

    grid = grid_from_args(args)
    tokens = int(parse_size(args.trial_tokens, "--trial-tokens")) if args.trial_tokens else None
    lr_range = parse_lr_range(args.lr_range) if args.lr_range else None
    opts = TuneOptions(
        trials=args.trials, pruner=args.pruner, seed=args.seed, lr_range=lr_range, threads=available_cores(),
        progress=not args.no_progress,
    )
    trials_csv = run_tune(grid, args.out, opts, args.storage, args.data, tokens)
    plot = trials_csv.with_name("loss_vs_lr.png")
    plot_loss_vs_lr(trials_csv, plot)
    print(f"plot: {plot}")
    return 0


def parse_lr_range(text: str) -> tuple[float, float]:
    from gptcore.errors import UserError

    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"--lr-range {text!r}: give two numbers LO,HI such as 1e-4,1e-2") from None
    if not 0 < lo < hi:
        raise UserError(f"--lr-range {text!r}: need 0 < LO < HI")
    return lo, hi
