"""`scaling fit SRC`: fit a scaling law to a sweep directory or a CSV of runs, with bootstrap intervals."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gptcore.fileio import dumps_json
from scaling.fit import FORMS, PARAM_CONVENTIONS
from scaling.units import format_interval

if TYPE_CHECKING:  # numpy comes in with the fit, not when the CLI lists its commands
    from scaling.fit.auto import AutoChoice
    from scaling.fit.predictive import CoverageReport
    from scaling.law import FittedLaw


AUTO_HINT = ("; or --form auto, which lets these runs' own backtests choose a variant of the form (tied exponents, "
             "a size left out) that may give a law")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit a Chinchilla- or Kaplan-style law to finished runs",
        description="Fit a scaling law to a sweep directory (its sweep.csv) or a CSV with columns params, "
        "tokens, "
        "loss (optional: flops, non_embedding_params, run_id, status). Runs whose status is not "
        "'completed' are left out and reported. With --json the last line of stdout is one JSON object.",
    )
    p.add_argument("src", metavar="SRC", help="sweep directory or CSV file of runs")
    p.add_argument(
        "--form",
        choices=(*FORMS, "auto"),
        default="chinchilla",
        help="chinchilla (Hoffmann Approach 3, default), vpnls (variable projection), isoflop "
        "(Approach 2), envelope (Approach 1), kaplan (L(N), L(D), L(C) power laws), or auto: the Chinchilla "
        "variant (plain, tied exponents, smallest or least-trained runs left out, another count of N) with the "
        "lowest error on rolling-origin backtests of these runs, printed with the table behind the choice (its "
        "prediction intervals redo the choice in every backtest fold: nested)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=0, metavar="K", help="bootstrap refits for intervals (0: none)"
    )
    p.add_argument(
        "--bootstrap-by",
        choices=("run", "size"),
        default="run",
        help="resample runs (default) or whole model sizes",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)")
    p.add_argument("--ci", type=float, default=0.95, metavar="LEVEL", help="interval level (default 0.95)")
    p.add_argument(
        "--param-convention",
        choices=PARAM_CONVENTIONS,
        default="total",
        help="model size N as total parameters (default), non-embedding (column non_embedding_params), or "
        "non-embedding plus the head's V x d matrix (non_embedding_with_head_params, or from a sweep table's "
        "non_embedding_params, vocab_size and d_model)",
    )
    p.add_argument(
        "--at-flops",
        metavar="C",
        help="comma-separated budgets for N_opt/D_opt (default: the largest budget in the data and 10x it)",
    )
    p.add_argument("--irreducible", action="store_true", help="kaplan: fit an irreducible term E in each law")
    p.add_argument(
        "--backtest",
        action="store_true",
        help="also hold out each compute budget (largest first) and the largest N; report errors, and the "
        "prediction intervals' coverage and error against distance on rolling-origin backtests",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--out", metavar="LAW.json", help="write the law file (chinchilla, vpnls)")
    p.add_argument("--plot", metavar="DIR", help="write the plots (PNG and SVG) into DIR")
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a checkpoint (run dir, ckpt.pt, Hugging Face dir or cached model name) evaluated on the sweep's "
        "data and shown as a marker on the plots and in the report; never used in the fit (repeatable)",
    )
    p.add_argument("--reference-data", metavar="DIR",
                   help="the data to evaluate --reference on (default: the sweep directory's data)")
    p.add_argument("--reference-tokens", type=int, metavar="N",
                   help="evaluate each --reference on at most N validation tokens (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from gptcore.errors import UserError
    from scaling.fit.fitting import backtest, fit_runs, law_for_file
    from scaling.law import ChinchillaLaw, check_law_destination
    from scaling.units import parse_sizes

    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    at_flops = parse_sizes(args.at_flops, "--at-flops") if args.at_flops is not None else None
    if at_flops == []:
        raise UserError(f"--at-flops: no budgets in {args.at_flops!r}; give sizes such as 1e21,1e22")
    reference_specs = _reference_specs(args)  # a malformed flag is refused before the fit's work
    table, form, options, choice, tables = _table_and_form(args)
    result = fit_runs(
        table,
        form,
        bootstrap=args.bootstrap,
        seed=args.seed,
        by=args.bootstrap_by,
        ci_level=args.ci,
        at_flops=at_flops,
        options=options,
    )
    result = replace(_with_sweep_records(result, table), form_choice=None if choice is None else choice.to_json())
    # Refuse before writing anything; where the plain form gives no law, --form auto may.
    law = law_for_file(result, AUTO_HINT if args.form == "chinchilla" else "") if args.out else None
    if args.out:
        check_law_destination(args.out)
    folds = backtest(table, form, options) if args.backtest else None
    coverage = None
    if (args.out or args.backtest) and isinstance(result.law, ChinchillaLaw):
        result, coverage, choice = _calibrated(result, table, form, args, options, tables, choice)
        law = law_for_file(result) if args.out else None
    references = _evaluate_references(reference_specs, table.param_convention, args)
    report = FitReport(result, folds, coverage if args.backtest else None, references, choice)
    if args.plot:
        from analysis.plots import plot_all

        written = plot_all(result, table, args.plot, references)
    if law is not None:
        law.save(args.out)
    if args.json:
        print(dumps_json(report.to_json()))
        return 0
    if choice is not None:
        print(format_choice(choice))
    print(format_result(report))
    if report.backtest is not None:
        print(format_backtest(report.backtest))
    if report.coverage is not None:
        print(format_coverage(report.coverage))
    if references:
        print(format_references(report))
    if args.plot:
        print(f"plots: {len(written)} files in {args.plot}")
    if args.out:
        print(f"law file: {args.out}")
    return 0


def _table_and_form(args) -> tuple:
    """(table, form, options, AutoChoice or None, the tables per count of N or None): as given, or for
    --form auto the variant its backtest chose (scaling.fit.auto), its runs in its convention, its estimator
    options, and the tables it chose among (its intervals redo the choice in every backtest fold)."""
    from scaling.fit.data import load_runs

    if args.form != "auto":
        table = load_runs(args.src, args.param_convention)
        return table, args.form, {"irreducible": True} if args.irreducible else {}, None, None
    from scaling.fit import auto

    tables = auto.convention_tables(args.src, args.param_convention)
    table, options, choice = auto.pick(tables, args.param_convention)
    return table, "chinchilla", options, choice, tables


def _with_sweep_records(result: FittedLaw, table) -> FittedLaw:
    """The law with its sweep's training record (LR rule and the rest) copied from sweep.json, so a launch
    trains its final run as the fitted runs were trained, and how many fitted runs end above the data's
    unigram loss (scaling.fit.baseline), said as a warning where any do."""
    from dataclasses import replace

    from scaling.fit.baseline import UnigramBaseline
    from sweeps.orchestrate import recorded_training, recorded_unigram_nats

    training = recorded_training(table.source) if table.source else None
    if training is not None:
        result = replace(result, sweep_training=training)
    nats = recorded_unigram_nats(table.source) if table.source else None
    if nats is None:
        return result
    baseline = UnigramBaseline.of(table.loss, nats)
    note = baseline.note()
    return replace(result, data_baseline=baseline, warnings=result.warnings + ([note] if note else []))


def _calibrated(result: FittedLaw, table, form: str, args, options: dict, tables: dict | None,
                choice: AutoChoice | None) -> tuple[FittedLaw, CoverageReport, AutoChoice | None]:
    """The law with its prediction-interval calibration (rolling-origin backtests of these runs; for --form
    auto, of the choice itself: `tables` are what it chose among), and how the calibrated intervals covered
    the held-out folds. Fold refits bootstrap only when the fit does, so that parameter uncertainty is
    counted the same way in the backtests and at the target. --form auto: the choice comes back with its
    nested score (the procedure's error beside the plain form's), also in the law's form_choice."""
    from dataclasses import replace

    from scaling.fit import auto, predictive

    n_boot = predictive.FOLD_BOOTSTRAP if args.bootstrap > 0 else 0
    if tables is None:
        cal, bt = predictive.calibrate_fit(table, result.law, form, options, args.ci, n_boot, args.seed)
        return replace(result, calibration=cal), predictive.coverage_report(bt, cal), None
    cal, bt = auto.calibrate_choice(tables, args.param_convention, choice, result.law, table, args.ci, n_boot,
                                    args.seed)
    choice = replace(choice, nested=auto.score_nested(tables, args.param_convention, bt, choice))
    result = replace(result, calibration=cal, form_choice=choice.to_json())
    return result, predictive.coverage_report(bt, cal), choice


def _reference_specs(args) -> list[tuple[str, str, str]]:
    """(name, checkpoint, data dir) of each --reference; the data is --reference-data or the sweep's own."""
    from pathlib import Path

    from gptcore.errors import UserError

    specs = []
    for text in args.reference:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--reference {text!r}: give NAME=PATH, e.g. gpt2=~/.cache/scaling/models/gpt2")
        specs.append((name, path))
    if not specs:
        return []
    data = args.reference_data
    if data is None:
        from sweeps.orchestrate import read_recorded
        from sweeps.runner import SETTINGS_NAME

        settings = Path(args.src) / SETTINGS_NAME
        if not settings.is_file():
            raise UserError(f"--reference: {args.src} is not a sweep directory with a {SETTINGS_NAME} naming "
                            "its data; give --reference-data DIR")
        data = read_recorded(settings, "give --reference-data DIR").get("data")
        if not isinstance(data, str):
            raise UserError(f"--reference: {settings} names no data dir; give --reference-data DIR")
    if args.reference_tokens is not None and args.reference_tokens <= 0:
        raise UserError(f"--reference-tokens must be positive, got {args.reference_tokens}")
    return [(name, path, data) for name, path in specs]


def _evaluate_references(specs, param_convention: str, args) -> list:
    """Each reference's loss on the data (fixed windows, as `scaling eval`), size and, when known, compute."""
    if not specs:
        return []
    from analysis.plots import Reference
    from gptcore.config import flops_per_token_with_attention
    from gptcore.evaluate import evaluate_checkpoint
    from scaling.planner_shape import law_params

    refs = []
    for name, path, data in specs:
        loaded, result = evaluate_checkpoint(path, data, args.reference_tokens)
        cfg = loaded.model.cfg
        n = law_params(cfg, param_convention)
        d = loaded.tokens_trained
        # The trainer's count, as the sweep's own flops column is: 6N (head included) + attention.
        c = None if d is None else d * flops_per_token_with_attention(cfg)
        refs.append(Reference(name, result.loss, float(n), None if d is None else float(d), c))
    return refs


@dataclass(frozen=True)
class FitReport:
    """What `scaling fit` reports: the fitted law and, with --backtest, its held-out errors per fold and
    its prediction intervals' coverage on the rolling-origin backtests."""

    law: FittedLaw
    backtest: list[dict] | None = None
    coverage: CoverageReport | None = None
    references: list = ()  # analysis.plots.Reference: shown beside the fit, never in it
    choice: AutoChoice | None = None  # --form auto: the variant chosen and the backtest table behind it

    def reference_rows(self) -> list[dict]:
        """Each reference with the law's loss at its (N, D) where D is known: the law's view of that model."""
        rows = []
        for ref in self.references:
            row = ref.to_json()
            if ref.tokens is not None and self.law.law is not None:
                row["law_loss"] = float(self.law.law.loss(ref.params, ref.tokens))
            rows.append(row)
        return rows

    def prediction_rows(self) -> list[dict]:
        """The prediction interval of the loss at each --at-flops budget's optimum, where calibrated."""
        rows = []
        for row in self.law.details.get("at_flops", []):
            pi = self.law.prediction_interval(row["N_opt"], row["D_opt"]) if "loss" in row else None
            rows.append({"flops": row["flops"], **({} if pi is None else pi.to_json())})
        return rows

    def to_json(self) -> dict:
        """The JSON object `scaling fit --json` prints: the form's params at the top level, then the rest."""
        law = self.law
        out: dict = {"form": law.form, **law.params}
        if law.has_frontier:
            out["a"], out["b"] = float(law.a), float(law.b)
        out.update(
            ci=law.ci,
            ci_level=law.ci_level,
            n_points=law.n_points,
            excluded=law.excluded,
            objective=law.objective,
            seconds=round(law.seconds, 3),
            param_convention=law.param_convention,
            warnings=law.warnings,
        )
        for key in ("at_flops", "refused"):
            if law.details.get(key):
                out[key] = law.details[key]
        if self.backtest is not None:
            out["backtest"] = self.backtest
        if self.law.calibration is not None:
            out["prediction_calibration"] = self.law.calibration.to_json()
            out["prediction_at_flops"] = self.prediction_rows()
        if self.coverage is not None:
            out["prediction_backtest"] = self.coverage.to_json()
        if self.references:
            out["references"] = self.reference_rows()
        if self.choice is not None:
            out["form_choice"] = self.choice.to_json()
        return _finite(out)


def _finite(obj):
    """JSON has no inf or nan: a parameter the data leave at infinity (a flat Kaplan series) becomes null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def format_result(report: FitReport) -> str:
    """The human-readable report: parameters with intervals, exclusions, frontier points, warnings."""
    law = report.law
    lines = [
        f"{law.form} fit of {law.n_points} runs (N = {law.param_convention} params) in {law.seconds:.2f} s, "
        f"objective {law.objective:.6g}"
    ]
    for reason, n in law.excluded.items():
        lines.append(f"  left out: {n} run(s) {reason}")
    level = f"{100 * law.ci_level:.0f}%"
    values = dict(law.params) | ({"a": float(law.a), "b": float(law.b)} if law.has_frontier else {})
    for name, value in values.items():
        ci = law.ci.get(name)
        lines.append(
            f"  {name:>8} = {_fmt(value)}" + (f"   {level} {format_interval(*ci)}" if ci else "")
        )
    predicted = {r["flops"]: r for r in report.prediction_rows()} if law.calibration is not None else {}
    for row in law.details.get("at_flops", []):
        text = f"  at C = {row['flops']:.3g} FLOPs: N_opt = {_fmt(row['N_opt'])}, D_opt = {_fmt(row['D_opt'])}"
        if "loss" in row:
            text += f", loss = {_fmt(row['loss'])}"
        lines.append(text)
        for k, (lo, hi) in row["ci"].items():
            lines.append(f"      {k} {level} {format_interval(lo, hi)}" + (" (parameters)" if k == "loss" else ""))
        pi = predicted.get(row["flops"], {})
        if pi.get("interval"):
            lo, hi = pi["interval"]
            lines.append(f"      loss {level} {format_interval(lo, hi)} (prediction: a run's actual loss)")
        elif pi:
            lines.append(f"      loss prediction interval: {pi['reason']}")
    for r in law.details.get("refused", []):
        lines.append(f"  refused budget {r['flops']:.3g} FLOPs ({r['n_points']} runs): {r['reason']}")
    lines.extend(f"  warning: {w}" for w in law.warnings)
    return "\n".join(lines)


def _column(text: str, width: int) -> str:
    """Right-aligned under its header, and one space before it whatever its length: a variant whose refits
    miss by thousands of percent (seen on a demo sweep: 4128.90%) must not run into the next column."""
    return " " + f"{text:>{width - 1}}"


def format_choice(c: AutoChoice) -> str:
    """--form auto: the backtest table behind the choice, one variant a line, the chosen one marked."""
    lines = [f"--form auto: chose {c.chosen} by {c.criterion}, over {len(c.folds)} folds:",
             f"    {'variant':<30}{'N counted':<26}{'folds':>6}{'runs':>6}{'MAE':>8}{'mean':>9}{'max':>8}"]
    for s in c.scores:
        mark = "*" if s.name == c.chosen else " "
        head = f"  {mark} {s.name:<30}{s.convention:<26}{s.folds_fitted:>6}"
        lines.append(f"{head}  not comparable: {s.refused}" if s.mae_pct is None else
                     f"{head}{s.n_scored:>6}{_column(f'{s.mae_pct:.2f}%', 8)}"
                     f"{_column(f'{s.mean_error_pct:+.2f}%', 9)}{_column(f'{s.max_abs_error_pct:.2f}%', 8)}")
        if s.passed_over:
            lines.append(f"      passed over, no law: {s.passed_over}")
    n = c.nested
    if n is not None:  # the choice as a procedure: redone on each fold's runs, against not choosing at all
        lines.append(f"  the choice redone on each fold's own runs (nested backtests, {n.folds} folds): "
                     f"{n.mae_pct:.2f}% mean |error| on {n.n_scored} held-out runs; the plain form on the same "
                     f"runs: {n.plain_mae_pct:.2f}%" + (f" (its refits ran away or were refused on {n.plain_failed} "
                                                        "more fold(s), left out of both)" if n.plain_failed else ""))
        if n.plain_better:
            lines.append("  choosing predicted these runs worse than the plain form: consider --form chinchilla")
    return "\n".join(lines)


def format_references(report: FitReport) -> str:
    lines = ["references (evaluated on the sweep's data, not fitted):"]
    for r in report.reference_rows():
        d = "tokens unknown" if r["tokens"] is None else f"D = {_fmt(r['tokens'])}"
        law = f"; the law predicts {r['law_loss']:.4f} at its N and D" if "law_loss" in r else ""
        lines.append(f"  {r['name']}: loss {r['loss']:.4f} (N = {_fmt(r['params'])}, {d}){law}")
    return "\n".join(lines)


def format_backtest(folds: list[dict]) -> str:
    lines = ["backtest (held-out loss error = predicted - actual):"]
    for f in folds:
        head = f"  {f['held_out']:<28} train {f['n_train']:>4}  test {f['n_test']:>3}"
        if "error" in f:
            lines.append(f"{head}  not fitted: {f['error']}")
        else:
            lines.append(
                f"{head}  MAE {f['mae']:.4f}  RMSE {f['rmse']:.4f}  mean {f['mean_error']:+.4f}  "
                f"max {f['max_abs_error']:.4f}  ({f['mape_pct']:.2f}%)"
            )
    return "\n".join(lines)


def format_coverage(c: CoverageReport) -> str:
    """The prediction intervals on the rolling-origin backtests: coverage, and error by compute multiple."""
    level = f"{100 * c.level:.0f}%"
    cov = "n/a (too few folds)" if c.coverage is None else f"{100 * c.coverage:.0f}% of {c.n_scored}"
    fitted = sum(f.refused is None for f in c.folds)
    lines = [f"prediction intervals on {fitted} rolling-origin backtest folds: {cov} held-out runs inside the "
             f"{level} interval calibrated on the other folds",
             "  C / largest fitted C    runs   mean error   mean |error|   inside"]
    for r in c.by_distance:
        lo, hi = r["flops_multiple"]
        span = f"< {hi:g}x" if lo <= 1 else (f"{lo:g}x - {hi:g}x" if hi else f">= {lo:g}x")
        inside = "n/a" if r["coverage"] is None else f"{100 * r['coverage']:.0f}%"
        lines.append(f"  {span:<20} {r['n']:>6}   {r['mean_error_pct']:+9.2f}%   {r['mean_abs_error_pct']:10.2f}%"
                     f"   {inside:>6}")
    lines.extend(f"  fold {f.name}: not fitted ({f.refused})" for f in c.folds if f.refused)
    chosen = Counter(f.variant for f in c.folds if f.variant and not f.refused)
    if chosen:  # --form auto: the choice redone in every fold, so the intervals count its own errors
        lines.append("  the --form auto choice redone on each fold's runs (nested backtests): "
                     + ", ".join(f"{name} in {n}" for name, n in chosen.most_common()))
    return "\n".join(lines)
