"""`scaling predict --law PATH --params N --tokens D`: the loss a fitted law predicts, with its interval."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict the loss of a model of N params trained on D tokens from a law file",
        description="Read a law file written by `scaling fit --out` and predict L(N, D); the interval "
        "comes from "
        "the fit's bootstrap replicates when it has them.",
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
    }
    if args.json:
        print(json.dumps(out))
        return 0
    text = f"L(N={n:.4g}, D={d:.4g}) = {loss:.4f}"
    if ci:
        text += f"   {100 * law.ci_level:.0f}% [{ci[0]:.4f}, {ci[1]:.4f}]"
    print(text + f"   ({law.form} law, N = {law.param_convention} params)")
    return 0
