"""Two torch processes on one machine's cores: how much their OpenMP threads' spin-waiting costs.

scripts/test.sh runs the suite on 2 pytest-xdist workers, and each worker's torch uses every core, so two
trainings often share the cores. libgomp's threads spin while they wait for work (OMP_WAIT_POLICY unset),
and a spinning thread holds a core the other process needs; OMP_WAIT_POLICY=PASSIVE makes them sleep.
This times one small GPT's training steps (gptcore's model, bf16 autocast, AdamW) alone and two at once,
under each policy, alternating in one run, each in a process of its own. Prints steps/s per process
and, for each policy, what two at once keep of one process's throughput (100%: no loss from sharing).

    python benchmarks/bench_wait_policy.py              # 3 rounds of 40 steps (about 3 min on 2 cores)
    python benchmarks/bench_wait_policy.py --rounds 5 --steps 60

This box is shared and noisy: compare the policies within one run, not against another run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# GOMP_SPINCOUNT between them (10K, 100K) measured no better than passive here (2026-12-03): left out.
POLICIES = {"spin (unset)": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}


def child(steps: int) -> None:
    """Train L3 d192 (ctx 128, batch 8, vocabulary 8,192) on random tokens; print steps/s as JSON."""
    import torch

    from gptcore.config import GPTConfig
    from gptcore.model import GPT

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=8192, ctx=128, n_layer=3, n_head=3, d_model=192)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randint(0, cfg.vocab_size, (2, 8, cfg.ctx))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up: the first steps allocate and pick kernels
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    print(json.dumps({"steps_per_s": steps / (time.perf_counter() - t0), "threads": torch.get_num_threads()}))


def run_together(copies: int, policy: dict[str, str], steps: int) -> list[float]:
    """steps/s of each of `copies` processes started at once under one wait policy."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(policy)
    cmd = [sys.executable, __file__, "--child", "--steps", str(steps)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("a training process failed")
    return [json.loads(o.strip().splitlines()[-1])["steps_per_s"] for o in outs]


def positive_int(text: str) -> int:
    """argparse's type for --rounds and --steps: 0 rounds has no median, 0 steps no throughput."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=positive_int, default=3, help="alternating rounds (the median is kept)")
    p.add_argument("--steps", type=positive_int, default=40, help="timed training steps per process")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.steps)
    results = {(name, copies): [] for name in POLICIES for copies in (1, 2)}
    for _ in range(a.rounds):
        for (name, copies), got in results.items():
            got.extend(run_together(copies, POLICIES[name], a.steps))
    print(f"{os.cpu_count()} CPUs; steps/s per process, median of {a.rounds} round(s):")
    for (name, copies), got in results.items():
        print(f"  {name:13s} {'alone' if copies == 1 else 'two at once':11s} {statistics.median(got):6.2f}")
    for name in POLICIES:
        alone, pair = (statistics.median(results[name, c]) for c in (1, 2))
        print(f"  {name}: two at once keep {2 * pair / alone:.0%} of one process's throughput in all")


if __name__ == "__main__":
    main()
