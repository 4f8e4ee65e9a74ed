"""`scaling data prepare`: tokenise text files into a data dir that `scaling train --data DIR` reads."""

from __future__ import annotations

import argparse

from scaling.units import format_duration

PREPARE_DESCRIPTION = """\
Tokenise text into train.bin / val.bin (uint16 token ids, memory-mapped) plus meta.json.
Sources: .txt and .txt.gz (one file = one document), .jsonl and .jsonl.gz (one line = one
document, field "text"), or directories of those. Documents are split into train/val with a
fixed seed and each is followed by <|endoftext|>. gpt2-compact keeps only the gpt2 tokens seen in
the train split (dense ids; 0 = <|endoftext|>, 1 = <unk>), which makes small models much faster;
losses compare only within one vocabulary. Re-running with the same sources and options does
nothing; a changed source or option rebuilds the dir."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="prepare tokenised datasets", description="Prepare tokenised datasets for training."
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True
    prep = actions.add_parser(
        "prepare",
        help="tokenise text files into a data dir",
        description=PREPARE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prep.add_argument("sources", nargs="+", metavar="SRC", help="text files or directories of them")
    prep.add_argument("--out", required=True, metavar="DIR", help="the data dir to write")
    prep.add_argument(
        "--tokenizer",
        choices=("gpt2-compact", "gpt2"),
        default="gpt2-compact",
        help="vocabulary (default: gpt2-compact)",
    )
    prep.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        metavar="F",
        help="share of documents held out for validation, in (0, 1) (default: 0.05)",
    )
    prep.add_argument("--encoding", default="utf-8", metavar="NAME",
                      help="text encoding of the sources, e.g. latin-1, cp1252, utf-16 (default: utf-8)")
    prep.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default: 0)")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.set_defaults(func=run)


def run(args) -> int:
    from gptcore.data import prepare

    meta = prepare(
        args.sources,
        args.out,
        tokenizer=args.tokenizer,
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=not args.no_progress,
        encoding=args.encoding,
    )
    tokens = meta["train_tokens"] + meta["val_tokens"]
    print(
        f"{args.out}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens "
        f"({meta['train_docs']} + {meta['val_docs']} docs), vocab {meta['tokenizer']} "
        f"{meta['vocab_size']:,} ids; prepared in {format_duration(meta['prepare_seconds'])} "
        f"({tokens / meta['prepare_seconds']:,.0f} tokens/s)"
    )
    return 0
