"""`scaling generate`: sample text from a checkpoint (temperature and top-k).

The checkpoint is anything gptcore.pretrained reads: a run directory or ckpt.pt (with the vocabulary it was
trained on), a Hugging Face GPT-2 directory or a model NAME in ~/.cache/scaling/models (the full gpt2
tokenizer, bundled).
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="sample text from a checkpoint",
        description="Continue a prompt with a trained model: temperature sampling restricted to the top-k tokens.",
    )
    p.add_argument("--checkpoint", required=True,
                   help="a run dir or ckpt.pt, a launch or sweep dir (its one run), a Hugging Face GPT-2 dir, or a "
                   "model NAME in ~/.cache/scaling/models")
    p.add_argument("--prompt", default="", help="text to continue (default: start from end-of-text)")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    p.add_argument("--top-k", type=int, default=50, help="sample among the k most likely tokens (0: all)")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    import math

    import torch

    from gptcore.errors import UserError
    from gptcore.pretrained import open_checkpoint
    from gptcore.train import resolve_device

    bounds = {"--max-new-tokens": (args.max_new_tokens, 0), "--temperature": (args.temperature, 0),
              "--top-k": (args.top_k, 0), "--num-samples": (args.num_samples, 1)}
    for flag, (value, low) in bounds.items():
        if not low <= value < math.inf:  # NaN fails too; an infinite temperature would drop --top-k
            raise UserError(f"{flag} must be a finite number >= {low}, got {value}")
    loaded = open_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    tokenizer, model = loaded.tokenizer, loaded.model.to(device)

    ids = tokenizer.encode(args.prompt) if args.prompt else [tokenizer.eot_id]
    start = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    out = model.generate(start, args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k or None, generator=gen)
    skip = 0 if args.prompt else 1  # do not print the end-of-text token we started from
    for i, row in enumerate(out.tolist()):
        if i:
            print("-" * 40)
        print(tokenizer.decode(row[skip:]), flush=True)
    return 0
