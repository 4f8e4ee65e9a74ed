"""`scaling predict --law PATH --params N --tokens D`: the loss a fitted law predicts, with its interval."""

from __future__ import annotations

import argparse

from gptcore.fileio import dumps_json
from scaling.units import format_interval


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict the loss of a model of N params trained on D tokens from a law file",
        description="Read a law file written by `scaling fit --out` and predict L(N, D). Two intervals: the "
        "parameter interval (the fit's bootstrap replicates: where the law's curve lies) and the prediction "
        "interval (where a run's actual loss lies: parameter error plus run-to-run noise and extrapolation "
        "error, calibrated by the fit's backtests), with how far (N, D, C multiples) the target lies beyond "
        "the fitted runs.",
    )
    p.add_argument("--law", required=True, metavar="PATH",
                   help="law file from `scaling fit --out`, or a published law: chinchilla, epoch, kaplan")
    p.add_argument(
        "--params", required=True, metavar="N", help="model size, e.g. 124M (in the law's convention)"
    )
    p.add_argument("--tokens", required=True, metavar="D", help="training tokens, e.g. 2.5B")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scaling.fit.predictive import prediction_record
    from scaling.planner import resolve_law
    from scaling.units import parse_size

    law, _ = resolve_law(args.law)
    n = parse_size(args.params, "--params")
    d = parse_size(args.tokens, "--tokens")
    loss, ci = law.predict_loss(n, d)
    out = {
        "params": n,
        "tokens": d,
        "loss": loss,
        "ci": ci,
        "ci_level": law.ci_level if ci else None,
        "param_convention": law.param_convention,
        "form": law.form,
        **prediction_record(law, n, d),
    }
    if args.json:
        print(dumps_json(out))
        return 0
    text = f"L(N={n:.4g}, D={d:.4g}) = {loss:.4f}"
    if ci:
        text += f"   {100 * law.ci_level:.0f}% parameter interval {format_interval(*ci, '.4f')}"
    print(text + f"   ({law.form} law, N = {law.param_convention} params)")
    print("\n".join(prediction_lines(out)))
    return 0


def prediction_lines(out: dict) -> list[str]:
    from scaling.fit.predictive import prediction_lines as lines_of

    details = out["prediction"]
    return lines_of(out["prediction_interval"], details.get("level"), details.get("reason", ""),
                    out["extrapolation"], out["warnings"])
