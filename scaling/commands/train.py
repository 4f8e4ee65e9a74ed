"""`scaling train`: train a GPT-2-style model on a prepared dataset; re-run on the same --out, it resumes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gptcore.fileio import dumps_json
from gptcore.preemption import EXIT_REQUEUE


def register(subparsers) -> None:
    from gptcore.config import DTYPES
    from gptcore.schedule import SCHEDULES

    p = subparsers.add_parser(
        "train",
        help="train a GPT model (re-running the same command resumes)",
        description="Train a GPT-2-style model. Re-running the same command on the same --out resumes from "
        "its last checkpoint; a finished run re-prints its summary. Under torchrun, trains with DDP or FSDP "
        "(--parallel).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m = p.add_argument_group("model (a --preset, the four shape flags, or --init-from)")
    m.add_argument("--preset", help="named shape, e.g. gpt2-124m (see gptcore.config.PRESETS)")
    m.add_argument("--n-layer", type=int, help="layers (default: 2)")
    m.add_argument("--n-head", type=int, help="attention heads (default: 2)")
    m.add_argument("--d-model", type=int, help="width (default: 64)")
    m.add_argument("--ctx", type=int, help="context length (default: 128, or the preset's)")
    m.add_argument("--vocab-size", type=int, help="override the vocabulary size (default: the data's)")
    m.add_argument("--dropout", type=float, default=0.0)
    m.add_argument("--tie-weights", action="store_true", help="share the token embedding and LM head")
    m.add_argument("--init-from", metavar="PATH",
                   help="start from this checkpoint's weights (a run dir, ckpt.pt, Hugging Face GPT-2 dir or "
                   "cached model name; optimizer and schedule fresh); the shape is the checkpoint's")

    t = p.add_argument_group("training")
    t.add_argument("--batch-size", type=int, default=16, help="sequences per process per micro-step")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--tokens", type=_size, help="token budget, e.g. 2M (rounded up to whole steps)")
    budget.add_argument("--max-steps", type=int, help="step budget (default: 500 without --tokens)")
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    t.add_argument("--min-lr-ratio", type=float, default=0.1, help="final LR as a fraction of the peak")
    t.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    t.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    t.add_argument("--wsd-decay-fraction", type=float, default=0.2,
                   help="wsd: the final fraction of the steps over which the LR decays")
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    t.add_argument("--seed", type=int, default=1337)

    io = p.add_argument_group("data, output and hardware")
    io.add_argument("--data", help="prepared dataset dir (default: the bundled corpus, prepared once)")
    io.add_argument("--out", default="runs/train", help="run directory (checkpoint, metrics, summary)")
    io.add_argument("--eval-every", type=int, default=100, help="evaluate (and sample) every N steps")
    io.add_argument("--eval-batches", type=int, default=10, help="validation batches per evaluation")
    io.add_argument("--final-eval-batches", type=int, metavar="N",
                    help="validation batches of the last step's evaluation, the final val loss (default: "
                         "--eval-batches): more of them make it less noisy at the price of one evaluation")
    io.add_argument("--sample-tokens", type=int, default=32, help="tokens sampled at each evaluation")
    io.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: --eval-every)")
    io.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    io.add_argument("--dtype", choices=DTYPES, default="auto",
                    help="auto: bf16 autocast on CUDA, and on CPU when its measured bf16 matmul is fast")
    io.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    io.add_argument("--compile", action="store_true", help="torch.compile the model (slow first steps)")
    io.add_argument("--parallel", choices=("auto", "ddp", "fsdp"), default="auto",
                    help="across torchrun's processes: ddp replicates the model, fsdp shards it (FSDP2); auto "
                    "takes fsdp when the planner's memory model says the replicated states do not fit the GPU "
                    "(on a CPU: ddp), and what an existing run was checkpointed with")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_logger_argument(io)
    io.add_argument("--json", action="store_true", help="print the summary as one JSON line, last on stdout")
    p.set_defaults(func=run)


def add_logger_argument(p, more: str = "") -> None:
    """--logger, shared by train, sweep, launch and demo (gptcore.loggers)."""
    from gptcore.config import LOGGERS

    p.add_argument("--logger", action="append", metavar="|".join(LOGGERS),
                   help="also log each run's metrics to metrics.csv, TensorBoard (RUN/tensorboard; pip install "
                   "'scaling[tensorboard]') or Weights & Biases (offline unless WANDB_MODE says otherwise; pip "
                   "install 'scaling[wandb]'): repeat it or give a comma list; metrics.jsonl is always written"
                   + more)


def _size(text: str) -> int:
    from gptcore.errors import UserError
    from scaling.units import parse_size

    try:
        return int(parse_size(text, "token count"))
    except UserError as e:  # reported by argparse as one line
        raise argparse.ArgumentTypeError(str(e)) from None


def bundled_data_dir() -> Path:
    """The bundled corpus, prepared once (compact vocabulary) into the user's cache."""
    from gptcore.data import BUNDLED_CORPUS, prepare
    from gptcore.fileio import cache_dir

    out = cache_dir() / "data" / "gutenberg-mini-gpt2-compact"
    prepare(BUNDLED_CORPUS, out, tokenizer="gpt2-compact")
    return out


def model_config(args, vocab_size: int):
    from gptcore.config import GPTConfig

    if args.init_from:
        return init_model_config(args)
    extra = dict(dropout=args.dropout, tie_weights=args.tie_weights, vocab_size=args.vocab_size or vocab_size)
    if args.preset:
        if args.ctx is not None:  # 0 too: GPTConfig refuses it rather than a default silently replacing it
            extra["ctx"] = args.ctx
        return GPTConfig.from_name(args.preset, **extra)
    def given(value, default):  # None: the flag was left out (0 is given, and refused by GPTConfig)
        return default if value is None else value

    return GPTConfig(n_layer=given(args.n_layer, 2), n_head=given(args.n_head, 2), d_model=given(args.d_model, 64),
                     ctx=given(args.ctx, 128), **extra)


def init_model_config(args):
    """The --init-from checkpoint's shape (with this run's dropout); a shape flag that says otherwise is an error."""
    from dataclasses import replace

    from gptcore.config import GPTConfig
    from gptcore.errors import UserError
    from gptcore.pretrained import SHAPE_FIELDS, open_checkpoint, shape_conflicts

    have = open_checkpoint(args.init_from).model.cfg
    asked = {"n_layer": args.n_layer, "n_head": args.n_head, "d_model": args.d_model, "ctx": args.ctx,
             "vocab_size": args.vocab_size, "tie_weights": True if args.tie_weights else None}
    if args.preset:
        preset = GPTConfig.from_name(args.preset)
        asked = {k: getattr(preset, k) for k in ("n_layer", "n_head", "d_model")} | asked
    flags = {k: v for k, v in asked.items() if v is not None and k in SHAPE_FIELDS}
    conflicts = shape_conflicts(have, flags)
    if conflicts:
        raise UserError(f"--init-from {args.init_from} fixes the model's shape, and the flags ask for "
                        f"{', '.join(conflicts)}; leave the shape flags out")
    return replace(have, dropout=args.dropout)


def resolve_parallel(requested: str, cfg, world: int) -> str:
    """--parallel auto made ddp or fsdp: what the run in cfg.out was checkpointed with, else the planner's
    memory model at this device's memory (scaling.parallelism.choose; a CPU's is not modelled: ddp)."""
    from gptcore import parallel
    from gptcore.train import resolve_device, resolve_dtype

    if requested != "auto":
        return requested
    if parallel.latest_sharded(Path(cfg.out)) is not None:
        return "fsdp"
    if world < 2:
        return "ddp"
    import torch

    from gptcore.config import count_params
    from scaling.memory import training_memory
    from scaling.parallelism import choose

    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    memory_gb = torch.cuda.get_device_properties(device).total_memory / 1e9 if device.type == "cuda" else None
    precision = resolve_dtype(cfg.dtype, device)
    unsharded = training_memory(count_params(cfg.model), cfg.model, cfg.batch_size, precision)
    choice = choose("auto", unsharded, memory_gb, world)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"parallel: {choice.parallel} ({choice.reason})", flush=True)
    return choice.parallel


def run(args) -> int:
    from dataclasses import replace

    from gptcore import parallel
    from gptcore.data import open_dataset
    from gptcore.loggers import check_available, parse_names
    from gptcore.train import TrainConfig, close_distributed, train

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.parallel != "auto":  # before anything is prepared or written
        parallel.check(args.parallel, world)
    loggers = parse_names(args.logger) or ()
    check_available(loggers)  # before the bundled corpus is prepared
    data = Path(args.data) if args.data else bundled_data_dir()
    dataset = open_dataset(data)
    cfg = TrainConfig(
        model=model_config(args, dataset.vocab_size), data=str(data), out=args.out,
        batch_size=args.batch_size, grad_accum=args.grad_accum, tokens=args.tokens,
        max_steps=args.max_steps if args.max_steps is not None or args.tokens is not None else 500,
        lr=args.lr, min_lr_ratio=args.min_lr_ratio, warmup=args.warmup, schedule=args.schedule,
        wsd_decay_fraction=args.wsd_decay_fraction,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, eval_every=args.eval_every,
        eval_batches=args.eval_batches, final_eval_batches=args.final_eval_batches,
        sample_tokens=args.sample_tokens,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed, device=args.device, dtype=args.dtype, compile=args.compile, threads=args.threads,
        progress=not args.no_progress, init_from=args.init_from, loggers=loggers,
    )
    try:
        summary = train(replace(cfg, parallel=resolve_parallel(args.parallel, cfg, world)))
    finally:
        close_distributed()
    if summary.status == "preempted":  # checkpointed after the step in flight; every rank says "requeue me"
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"preempted at step {summary.steps}: checkpointed in {summary.out}; run the same command to "
                  f"resume (exit {EXIT_REQUEUE}: requeue me)", file=sys.stderr, flush=True)
        return EXIT_REQUEUE
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        print(dumps_json(summary.to_json()), flush=True)
    else:
        s = summary
        print(f"{s.status}: {s.steps} steps, {s.tokens:,} tokens, "
              f"train loss {s.final_train_loss or float('nan'):.4f}, val loss {s.final_val_loss or float('nan'):.4f}, "
              f"{s.tokens_per_s or 0:,.0f} tokens/s, MFU {'n/a' if s.mfu is None else f'{s.mfu:.1%}'}; "
              f"run in {s.out}")
    return 0
