"""How well does a law fitted on a sweep predict larger runs? The issue's accuracy check, on real runs.

    python benchmarks/holdout_accuracy.py             # runs `scaling sweep --grid small` first (~40 min, 2 cores)
    python benchmarks/holdout_accuracy.py --sweep runs/sweep-small --bootstrap 400
    python benchmarks/holdout_accuracy.py --sweep runs/sweep-small --repeats runs/seed1 runs/seed2
    python benchmarks/holdout_accuracy.py --sweep runs/sweep-small --form auto

Fits the Chinchilla law (Approach 3, with bootstrap) on every completed run but a held-out set, then predicts
each held-out run's final validation loss: relative error (predicted - actual) / actual and whether the actual
loss falls in the bootstrap (parameter) interval and in the prediction interval calibrated by backtests on the
fitted runs alone (scaling.fit.predictive, as `scaling fit --out` stores it). Three held-out sets, each an
extrapolation: the largest compute budget (the issue's check), the largest token budget (every size), and the
largest size (every budget). The goal is within 2% (the best public pre-registered predictions).
--form auto fits, for each check, the variant `scaling fit --form auto` chooses by backtests on that check's
fitted runs alone (tied exponents, a left-out smallest size or least-trained quarter, another count of N): the
held-out runs are never seen by the choice. --repeats
names sweeps of held-out runs trained again with other seeds: their spread is the noise floor no law can beat.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from scaling.cli import main as scaling
from scaling.fit import auto, predictive
from scaling.fit.data import RunTable, load_runs
from scaling.fit.estimators import budget_groups
from scaling.fit.fitting import fit_runs, law_for_file


def held_out_sets(table: RunTable) -> dict[str, np.ndarray]:
    """Masks of the runs each check holds out."""
    labels = budget_groups(table.flops)
    return {"largest compute": labels == labels[np.argmax(table.flops)],
            "largest tokens": table.tokens == table.tokens.max(),
            "largest size": table.params == table.params.max()}


def holdout(tables: dict[str, RunTable], base: str, held: np.ndarray, bootstrap: int, seed: int,
            form: str = "chinchilla") -> dict:
    """Fit on the runs not held (form "auto": the variant chosen on them alone); predict the held-out runs."""
    train, options, chosen = tables[base].subset(~held), {}, "chinchilla"
    fitted = {c: t.subset(~held) for c, t in tables.items()}
    if form == "auto":
        train, options, choice = auto.pick(fitted, base)
        chosen = choice.chosen
    table = tables[train.param_convention]  # the held-out runs' N counted as the chosen variant counts it
    result = fit_runs(train, "chinchilla", bootstrap=bootstrap, seed=seed, options=dict(options))
    if form == "auto":  # as `fit --form auto --out`: the choice redone in every backtest fold
        cal, _ = auto.calibrate_choice(fitted, base, choice, result.law, train, seed=seed)
    else:  # as `fit --out`
        cal, _ = predictive.calibrate_fit(train, result.law, options=dict(options), seed=seed)
    law = dataclasses.replace(law_for_file(result), calibration=cal)
    rows = []
    for i in np.flatnonzero(held):
        point, interval = law.predict_loss(float(table.params[i]), float(table.tokens[i]))
        pi = law.prediction_interval(float(table.params[i]), float(table.tokens[i]))
        actual = float(table.loss[i])
        rows.append({"run_id": str(table.run_id[i]), "params": float(table.params[i]),
                     "tokens": float(table.tokens[i]), "flops": float(table.flops[i]), "actual_loss": actual,
                     "predicted_loss": point, "predicted_interval": interval,
                     "relative_error": (point - actual) / actual,
                     "within_interval": None if interval is None else bool(interval[0] <= actual <= interval[1]),
                     "prediction_interval": [pi.low, pi.high] if pi.bounded else None,
                     "within_prediction_interval": bool(pi.low <= actual <= pi.high) if pi.bounded else None})
    errors = np.array([abs(r["relative_error"]) for r in rows])
    return {"n_fit": len(train), "n_held_out": len(rows), "form": chosen, "law": result.law.to_dict(),
            "warnings": result.warnings, "held_out": rows, "prediction_quantiles": cal.quantiles,
            "mean_abs_relative_error": float(errors.mean()), "max_abs_relative_error": float(errors.max())}


def seed_spread(table: RunTable, repeats: list[Path], param_convention: str) -> list[dict]:
    """Each run found in a repeat sweep: its losses over seeds (this sweep's first), and their spread."""
    out = []
    for run_id, loss in zip(table.run_id, table.loss, strict=True):
        losses = [float(loss)]
        for sweep in repeats:
            other = load_runs(sweep, param_convention)
            losses += [float(v) for r, v in zip(other.run_id, other.loss, strict=True) if r == run_id]
        if len(losses) > 1:
            out.append({"run_id": str(run_id), "losses": losses,
                        "relative_std": float(np.std(losses, ddof=1) / np.mean(losses))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", type=Path, help="a finished sweep directory (default: run the small grid)")
    ap.add_argument("--grid", default="small", help="grid to sweep when --sweep is not given (default small)")
    ap.add_argument("--repeats", type=Path, nargs="*", default=[], help="sweeps of some runs again, other seeds")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param-convention", choices=("total", "non_embedding"), default="total")
    ap.add_argument("--form", choices=("chinchilla", "auto"), default="chinchilla",
                    help="the plain Chinchilla form, or per check the variant --form auto chooses on its fitted runs")
    args = ap.parse_args()
    sweep = args.sweep
    if sweep is None:
        sweep = Path("runs") / f"sweep-{args.grid}"
        if scaling(["sweep", "--grid", args.grid, "--out", str(sweep), "--executor", "local"]):
            raise SystemExit("the sweep did not complete every run; re-run to resume it")
    tables = auto.convention_tables(sweep, args.param_convention)
    table = tables[args.param_convention]
    out = {"sweep": str(sweep), "param_convention": args.param_convention, "form": args.form, "checks": {}}
    for name, held in held_out_sets(table).items():
        check = out["checks"][name] = holdout(tables, args.param_convention, held, args.bootstrap, args.seed,
                                              args.form)
        law = check["law"]
        print(f"hold out the {name}: fitted on {check['n_fit']} runs, form {check['form']} "
              f"(E {law['E']:.3g}, A {law['A']:.3g}, B {law['B']:.3g}, alpha {law['alpha']:.3f}, "
              f"beta {law['beta']:.3f}), predicted {check['n_held_out']}")
        for r in check["held_out"]:
            lo_hi, pi = r["predicted_interval"], r["prediction_interval"]
            print(f"  {r['run_id']:<16} actual {r['actual_loss']:.4f}  predicted {r['predicted_loss']:.4f}"
                  + (f" [{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]" if lo_hi else "")
                  + f"  error {100 * r['relative_error']:+.2f}%" + ("" if r["within_interval"] else "  (outside)")
                  + (f"  prediction interval [{pi[0]:.4f}, {pi[1]:.4f}]"
                     + ("" if r["within_prediction_interval"] else " (outside)") if pi else "  no prediction interval"))
        print(f"  mean |relative error| {100 * check['mean_abs_relative_error']:.2f}% (goal: within 2%)")
    if args.repeats:
        out["seeds"] = seed_spread(table, args.repeats, args.param_convention)
        for s in out["seeds"]:
            print(f"seeds: {s['run_id']} losses {', '.join(f'{v:.4f}' for v in s['losses'])}: "
                  f"relative std {100 * s['relative_std']:.2f}%")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
