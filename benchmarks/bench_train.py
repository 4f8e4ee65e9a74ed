"""Training throughput: this project's trainer against the textbook GPT-2 (benchmarks/textbook_gpt.py).

Both train the same config on the bundled corpus with the full gpt2 vocabulary, alternating round by round
in one run, each in its own process: the textbook in the default environment, ours through `scaling train`
exactly as a user runs it (its allocator settings, its dtype choice). Prints tokens/s of each, the ratio,
and MFU against this machine's matmul peak, fp32 and bf16, measured here too.

    python benchmarks/bench_train.py                   # CPU: configs tiny, small, medium
    python benchmarks/bench_train.py --configs tiny --rounds 3
    python benchmarks/bench_train.py --gpu             # GPU: GPT-2 124M, bf16, ctx 1024, with MFU

This box is shared and noisy: compare the ratio, which both sides of one run share, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {  # issue 2: (n_layer, n_head, d_model, ctx, batch_size, steps per process)
    "tiny": (2, 2, 64, 128, 16, 12),
    "small": (4, 4, 128, 256, 16, 10),
    "medium": (6, 6, 384, 256, 8, 8),
    "gpt2-124m": (12, 12, 768, 1024, 16, 30),
}


def gpt2_vocab_data() -> Path:
    """The bundled corpus with the full gpt2 vocabulary, prepared once into the cache."""
    from gptcore.data import BUNDLED_CORPUS, prepare

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scaling"
    out = cache / "data" / "gutenberg-mini-gpt2"
    prepare(BUNDLED_CORPUS, out, tokenizer="gpt2", progress=False)
    return out


def _default_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _last_json(proc: subprocess.CompletedProcess, what: str) -> dict:
    if proc.returncode != 0:
        sys.exit(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_textbook(data: Path, shape: tuple, device: str) -> float:
    n_layer, n_head, d_model, ctx, batch, steps = shape
    cmd = [sys.executable, str(REPO / "benchmarks" / "textbook_gpt.py"), "--data", str(data),
           "--n-layer", str(n_layer), "--n-head", str(n_head), "--d-model", str(d_model), "--ctx", str(ctx),
           "--batch-size", str(batch), "--steps", str(steps), "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_default_env())
    return _last_json(proc, "textbook")["tokens_per_s"]


def run_ours(data: Path, shape: tuple, device: str, extra: list[str]) -> dict:
    """One `scaling train` run, through the console entry point (so with its allocator re-exec)."""
    n_layer, n_head, d_model, ctx, batch, steps = shape
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "scaling", "train", "--data", str(data), "--out", tmp,
               "--n-layer", str(n_layer), "--n-head", str(n_head), "--d-model", str(d_model),
               "--ctx", str(ctx), "--batch-size", str(batch), "--max-steps", str(steps),
               "--eval-every", str(steps), "--eval-batches", "1", "--sample-tokens", "0", "--device", device,
               "--no-progress", "--json", *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_default_env())
        return _last_json(proc, "scaling train")


def flops_per_token(shape: tuple, vocab_size: int) -> float:
    from gptcore.config import GPTConfig
    from gptcore.config import flops_per_token_with_attention as fpt  # the trainer's MFU convention

    n_layer, n_head, d_model, ctx, _, _ = shape
    return fpt(GPTConfig(vocab_size=vocab_size, ctx=ctx, n_layer=n_layer, n_head=n_head, d_model=d_model))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="tiny,small,medium", help=f"comma-separated, from {list(CONFIGS)}")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per config (median is kept)")
    p.add_argument("--ours", default="",
                   help="extra `scaling train` flags for our side, e.g. --ours='--dtype bf16 --compile'")
    p.add_argument("--gpu", action="store_true", help="GPT-2 124M, bf16, ctx 1024 on CUDA")
    a = p.parse_args()

    import torch

    from gptcore.data import open_dataset
    from gptcore.hardware import measure_matmul_peaks

    data = gpt2_vocab_data()
    vocab = open_dataset(data).vocab_size
    device = "cuda" if a.gpu else "cpu"
    names = ["gpt2-124m"] if a.gpu else a.configs.split(",")
    extra = a.ours.split() + (["--dtype", "bf16", "--compile"] if a.gpu and not a.ours else [])
    if not a.gpu:
        peaks = measure_matmul_peaks(seconds=2.0)
        print(f"CPU matmul peak ({torch.get_num_threads()} threads): fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
              f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    for name in names:
        shape = CONFIGS[name]
        textbook, ours, last = [], [], {}
        for _ in range(a.rounds):
            textbook.append(run_textbook(data, shape, device))
            last = run_ours(data, shape, device, extra)
            ours.append(last["tokens_per_s"])
        tb, us = statistics.median(textbook), statistics.median(ours)
        fpt = flops_per_token(shape, vocab)
        line = (f"{name:9s} textbook {tb:9,.0f} tok/s   ours {us:9,.0f} tok/s ({last['dtype']})   "
                f"ratio {us / tb:4.2f}x")
        if a.gpu:
            line += f"   MFU ours {last['mfu']:.1%} (hardware-table peak, {last['dtype']})"
        else:
            line += "   MFU vs fp32/bf16 peak: textbook {:.1%}/{:.1%}, ours {:.1%}/{:.1%}".format(
                tb * fpt / peaks["fp32"], tb * fpt / peaks["bf16"], us * fpt / peaks["fp32"], us * fpt / peaks["bf16"])
        print(line, flush=True)


if __name__ == "__main__":
    main()
