"""`scaling eval`: the validation loss and perplexity of any checkpoint on a prepared dataset."""

from __future__ import annotations

from gptcore.fileio import dumps_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="validation loss and perplexity of a checkpoint on a prepared dataset",
        description="Evaluate a checkpoint (a run directory, a ckpt.pt, a Hugging Face GPT-2 directory, or a "
        "model NAME in ~/.cache/scaling/models) on a prepared dataset's validation split, in fixed "
        "non-overlapping windows of the model's context. The data must use the model's vocabulary.",
    )
    p.add_argument("--checkpoint", required=True,
                   help="run dir, launch or sweep dir (its one run), ckpt.pt, Hugging Face dir or cached model name")
    p.add_argument("--data", required=True, metavar="DIR", help="a data dir from `scaling data prepare`")
    p.add_argument("--tokens", type=_size, help="score at most N validation tokens, whole windows (default: all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=run)


def _size(text: str) -> int:
    from scaling.commands.train import _size as parse

    return parse(text)


def run(args) -> int:
    from gptcore.evaluate import evaluate_checkpoint
    from gptcore.train import resolve_device

    _, result = evaluate_checkpoint(args.checkpoint, args.data, args.tokens, device=resolve_device(args.device))
    if args.json:
        print(dumps_json({"checkpoint": args.checkpoint, "data": args.data, **result.to_dict()}), flush=True)
    else:
        print(f"{args.checkpoint} on {args.data}: val loss {result.loss:.4f}, perplexity {result.perplexity:,.2f} "
              f"({result.tokens:,} tokens in {result.windows} windows of {result.ctx})", flush=True)
    return 0
