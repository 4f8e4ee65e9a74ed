"""Do the prediction intervals cover? Coverage, width and error of held-out larger runs, on real data.

    python benchmarks/interval_coverage.py                          # Epoch's 240 Chinchilla points
    python benchmarks/interval_coverage.py --csv demo=runs/demo/sweep.csv --csv small=runs/sweep-small
    python benchmarks/interval_coverage.py --bootstrap 200 --fold-bootstrap 30 --seed 0
    python benchmarks/interval_coverage.py --split 0.4 --split 0.5 --split 0.6 --split 0.7
    python benchmarks/interval_coverage.py --no-epoch --csv rpj=published_runs.csv  # with a held_out column
    python benchmarks/interval_coverage.py --no-epoch --synthetic 10 --form auto  # a known law, 2 grids

Each dataset is split at its median compute (or at each `--split Q` quantile of compute): the Chinchilla law
is fitted (Approach 3, bootstrap) on the runs below, its prediction intervals are calibrated by backtests on
those runs only (`scaling.fit.predictive`),
and every run above is predicted. Reported per dataset: the share of held-out runs inside the 95% prediction
interval (target: at least 80% on Epoch's split), its median width as % of the loss, the mean absolute and
mean signed error (predicted - actual) / actual, and for comparison the share inside the bootstrap
(parameter) interval, which is what `scaling predict` printed before. `--csv NAME=PATH` adds a run CSV or a
sweep directory (the demo's sweep, the `small` grid study's sweep); a CSV with a boolean `held_out` column
(a published sweep's own extrapolation targets) is split there instead: fit on the runs not held out, predict
the rest. `--form auto` fits the variant `scaling fit --form auto` chooses on the fitted runs, its
intervals calibrated as that command calibrates them (the choice redone in every backtest fold).
`--synthetic DRAWS` first draws sweeps from a known law (two grids) and reports the same coverage there.
Several CSVs with a `held_out` column (published sweeps) are also pooled: coverage, median width and mean |error|
over all their targets, as the targets for published sweeps are stated. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gptcore.errors import UserError
from scaling.fit import auto, predictive
from scaling.fit.data import RunTable, epoch_chinchilla_table, load_runs, runs_from_frame, synthetic_grid
from scaling.fit.fitting import fit_runs
from scaling.law import ChinchillaLaw

EPOCH_CSV = Path(__file__).resolve().parents[1] / "analysis" / "data" / "epoch_chinchilla" / "svg_extracted_data.csv"


def evaluate(table: RunTable, bootstrap: int, fold_bootstrap: int, seed: int, level: float = 0.95,
             warm: bool = True, held_out: np.ndarray | None = None, split: float = 0.5,
             form: str = "chinchilla") -> dict:
    """Fit at or below the `split` quantile of compute (or on the runs not `held_out`), calibrate there, predict
    the rest. form "auto": the variant `scaling fit --form auto` would choose on the fitted runs alone."""
    t0 = time.perf_counter()
    below = table.flops <= np.quantile(table.flops, split) if held_out is None else ~held_out
    train, test = table.subset(below), table.subset(~below)
    options, chosen, fitted, nested = {}, "chinchilla", {train.param_convention: train}, None
    if form == "auto":  # chosen by the fitted runs' own backtests: the held-out runs are never seen
        try:
            train, options, choice = auto.pick(fitted, train.param_convention)
            chosen = choice.chosen
        except UserError:  # too few runs to choose by backtest: the plain form, as `scaling fit` would need
            chosen, form = "chinchilla (too few runs for auto)", "chinchilla"
    result = fit_runs(train, "chinchilla", bootstrap=bootstrap, seed=seed, ci_level=level, options=dict(options))
    if form == "auto":  # as `scaling fit --form auto` calibrates: the choice redone in every backtest fold
        cal, bt = auto.calibrate_choice(fitted, train.param_convention, choice, result.law, train, level,
                                        fold_bootstrap, seed)
        nested = auto.score_nested(fitted, train.param_convention, bt, choice)
    else:
        cal, bt = predictive.calibrate_fit(train, result.law, options=dict(options), level=level,
                                           n_boot=fold_bootstrap, seed=seed, warm=warm)
    losses = result.bootstrap_losses(test.params, test.tokens)
    boot_sd = predictive.log_spread(losses)
    tail = 100 * (1 - level) / 2
    boot_lo, boot_hi = np.nanpercentile(losses, [tail, 100 - tail], axis=0)
    point = result.law.loss(test.params, test.tokens)
    rows = []
    for j in range(len(test)):
        pi = cal.interval(float(point[j]), test.params[j], test.tokens[j], float(boot_sd[j]), test.flops[j])
        actual = float(test.loss[j])
        rows.append({"inside": pi.bounded and pi.low <= actual <= pi.high,
                     "width_pct": 100 * (pi.high - pi.low) / actual if pi.bounded else np.inf,
                     "error_pct": 100 * (point[j] - actual) / actual,
                     "inside_bootstrap": bool(boot_lo[j] <= actual <= boot_hi[j]),
                     "flops_multiple": pi.where.flops_multiple, "beyond_backtests": pi.beyond_backtests})
    inside_folds = predictive.leave_fold_out(bt, cal)
    err = np.array([r["error_pct"] for r in rows])
    return {
        "n_fit": len(train), "n_held_out": len(test), "variant": chosen,
        "flops_multiple_max": float(max(r["flops_multiple"] for r in rows)),
        "coverage": float(np.mean([r["inside"] for r in rows])),
        "median_width_pct": float(np.median([r["width_pct"] for r in rows])),
        "mean_abs_error_pct": float(np.abs(err).mean()), "mean_error_pct": float(err.mean()),
        "bootstrap_interval_coverage": float(np.mean([r["inside_bootstrap"] for r in rows])),
        "beyond_backtests": int(sum(r["beyond_backtests"] for r in rows)),
        "coverage_beyond_backtests": _share([r["inside"] for r in rows if r["beyond_backtests"]]),
        "coverage_within_backtests": _share([r["inside"] for r in rows if not r["beyond_backtests"]]),
        "calibration": cal.to_json(),
        "backtest_folds": bt.n_folds,
        "backtest_coverage_leave_fold_out": (
            float(np.nanmean(inside_folds)) if np.isfinite(inside_folds).any() else None
        ),
        "nested": None if nested is None else dataclasses.asdict(nested),
        "seconds": round(time.perf_counter() - t0, 1),
        "targets": [{k: r[k] for k in ("inside", "width_pct", "error_pct")} for r in rows],
    }


def pooled(results: list[dict]) -> dict:
    """Every held-out target of several datasets as one set: the issue's targets are over published sweeps
    pooled (coverage at least 80%, median width at most 6% of the loss, mean |error|)."""
    rows = [t for r in results for t in r["targets"]]
    return {"n_held_out": len(rows), "coverage": float(np.mean([t["inside"] for t in rows])),
            "median_width_pct": float(np.median([t["width_pct"] for t in rows])),
            "mean_abs_error_pct": float(np.mean([abs(t["error_pct"]) for t in rows]))}


SYNTHETIC_LAW = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)  # Epoch's refit
SYNTHETIC_GRIDS = {"6 sizes x 6 token ratios": (6, 6), "4 sizes x 4 token ratios": (4, 4)}


def synthetic(draws: int, bootstrap: int, fold_bootstrap: int, form: str, split: float = 0.7) -> None:
    """Coverage against a known law: `draws` sweeps of each grid (scaling.fit.data.synthetic_grid), fitted at
    or below the `split` quantile of compute, every larger run predicted."""
    for label, (sizes, ratios) in SYNTHETIC_GRIDS.items():
        inside = held = 0
        widths, chosen = [], set()
        for seed in range(draws):
            r = evaluate(synthetic_grid(SYNTHETIC_LAW, seed, sizes=sizes, ratios=ratios), bootstrap, fold_bootstrap,
                         seed, split=split, form=form)
            inside += round(r["coverage"] * r["n_held_out"])
            held += r["n_held_out"]
            widths.append(r["median_width_pct"])
            chosen.add(r["variant"])
        print(f"synthetic, {label}, {draws} draws, fit at or below the {split:g} quantile of compute: "
              f"{inside} of {held} larger runs ({100 * inside / held:.1f}%) inside the 95% prediction interval, "
              f"median width {np.median(widths):.2f}% of the loss; form {', '.join(sorted(chosen))}", flush=True)


def _share(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def held_out_column(path: str, table: RunTable) -> np.ndarray | None:
    """The CSV's own `held_out` marks, aligned to the table's runs (None: no such column, or a sweep)."""
    if Path(path).is_dir():
        return None
    df = pd.read_csv(path)
    if "held_out" not in df.columns:
        return None
    held = df["held_out"].astype(str).str.strip().str.lower().isin(["true", "1", "yes"])
    if not held.any():
        return None
    # The held-out rows read as runs the same way: their run ids are the table's (runs_from_frame names them).
    return np.isin(table.run_id, runs_from_frame(df[held], table.param_convention).run_id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", action="append", default=[], metavar="NAME=PATH",
                    help="another dataset: a run CSV or sweep directory (repeatable)")
    ap.add_argument("--no-epoch", action="store_true", help="skip Epoch's Chinchilla points")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates of the fit (default 200)")
    ap.add_argument("--fold-bootstrap", type=int, default=predictive.FOLD_BOOTSTRAP,
                    help=f"bootstrap replicates per backtest fold (default {predictive.FOLD_BOOTSTRAP})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--form", choices=("chinchilla", "auto"), default="chinchilla",
                    help="the plain Chinchilla form, or the variant --form auto chooses on the fitted runs")
    ap.add_argument("--split", type=float, action="append", default=[], metavar="Q",
                    help="fit at or below this quantile of compute (repeatable; default 0.5, the median)")
    ap.add_argument("--grid-refits", action="store_true",
                    help="refit each backtest fold from the full start grid (default: from the fit's params)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="DRAWS",
                    help="also DRAWS synthetic sweeps of two grids from a known law (0: none)")
    args = ap.parse_args()
    if args.synthetic:
        synthetic(args.synthetic, args.bootstrap, args.fold_bootstrap, args.form)
    tables = {} if args.no_epoch else {"epoch_chinchilla": runs_from_frame(epoch_chinchilla_table(EPOCH_CSV))}
    splits = {}
    for spec in args.csv:
        name, _, path = spec.partition("=")
        tables[name] = load_runs(path or name)
        splits[name] = held_out_column(path or name, tables[name])
    out = {}
    for name, table in tables.items():
        for q in ([None] if splits.get(name) is not None else args.split or [0.5]):
            key = name if q in (None, 0.5) else f"{name}@{q:g}"
            r = evaluate(table, args.bootstrap, args.fold_bootstrap, args.seed, warm=not args.grid_refits,
                         held_out=splits.get(name), split=0.5 if q is None else q, form=args.form)
            out[key] = r
            how = ("runs not marked held_out", "held out") if q is None else (
                "runs below the median compute" if q == 0.5 else f"runs at or below the {q:g} quantile of compute",
                "above")
            print(f"{key}: fit {r['n_fit']} {how[0]}, predict {r['n_held_out']} {how[1]} "
                  f"(up to {r['flops_multiple_max']:.3g}x the largest fitted C; form {r['variant']})")
            print(f"  95% prediction interval: coverage {100 * r['coverage']:.1f}%, median width "
                  f"{r['median_width_pct']:.2f}% of the loss; bootstrap interval alone: "
                  f"{100 * r['bootstrap_interval_coverage']:.1f}%")
            if r["beyond_backtests"]:
                print(f"  {r['beyond_backtests']} of them beyond the backtests' reach: coverage there "
                      f"{100 * r['coverage_beyond_backtests']:.1f}%, within it "
                      + ("-" if r["coverage_within_backtests"] is None
                         else f"{100 * r['coverage_within_backtests']:.1f}%"))
            print(f"  error: mean |error| {r['mean_abs_error_pct']:.2f}%, mean {r['mean_error_pct']:+.2f}%  "
                  f"({r['backtest_folds']} backtest folds, {r['seconds']} s)")
            if r["nested"]:
                print(f"  the choice redone per fold (nested): mean |error| {r['nested']['mae_pct']:.2f}% on "
                      f"{r['nested']['n_scored']} backtest runs, the plain form {r['nested']['plain_mae_pct']:.2f}%")
    published = [out[name] for name in tables if splits.get(name) is not None]
    if len(published) > 1:
        out["pooled_held_out_columns"] = pool = pooled(published)
        print(f"pooled, the {len(published)} datasets split by their held_out column: {pool['n_held_out']} targets, "
              f"{100 * pool['coverage']:.1f}% inside the 95% prediction interval, median width "
              f"{pool['median_width_pct']:.2f}% of the loss, mean |error| {pool['mean_abs_error_pct']:.2f}%")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
