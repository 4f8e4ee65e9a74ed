"""Benchmark of the Approach 3 fit on Epoch AI's 240 Chinchilla points, side by side with the plain reference.

    python benchmarks/bench_fit.py [--reference-starts 150] [--reference-replicates 100] [--replicates 1000]

Targets (issue 4): the full 4,500-start grid point fit under 10 s and 1,000 bootstrap replicates under 15 s,
reaching the same optimum as the reference, plain scipy L-BFGS-B from each start with the analytic gradient.
The reference runs on a random subset of the starts (and of the replicates) for time; its full cost is
extrapolated from the measured per-start time and printed as such. Both sides run in this one process, so the
ratio is meaningful on a shared, noisy machine even where the absolute seconds are not.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scaling.fit import chinchilla
from scaling.fit.data import epoch_chinchilla_table, runs_from_frame
from scaling.fit.fitting import resample_counts

DATA = (
    Path(__file__).resolve().parents[1] / "analysis" / "data" / "epoch_chinchilla" / "svg_extracted_data.csv"
)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--reference-starts", type=int, default=150, help="grid starts the reference runs (of 4500)"
    )
    ap.add_argument(
        "--reference-replicates", type=int, default=100, help="bootstrap refits the reference runs"
    )
    ap.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates for the batched fit")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t = runs_from_frame(epoch_chinchilla_table(DATA))
    n, d, loss = t.params, t.tokens, t.loss
    grid = chinchilla.initial_grid()
    print(f"data: {len(t)} points (Besiroglu et al. 2024), grid: {len(grid)} starts")

    fast, fast_s = timed(chinchilla.fit, n, d, loss)
    print(
        f"point fit, batched + pruned, all {len(grid)} starts: {fast_s:6.2f} s   "
        f"objective {fast.objective:.12g}"
    )

    rng = np.random.default_rng(args.seed)
    subset = grid[rng.choice(len(grid), args.reference_starts, replace=False)]
    ref, ref_s = timed(chinchilla.reference_fit, n, d, loss, starts=subset)
    per_start = ref_s / len(subset)
    print(
        f"reference, scipy L-BFGS-B per start, {len(subset)} starts: {ref_s:6.2f} s   "
        f"objective {ref.objective:.12g}"
        f"   -> {per_start * len(grid):.0f} s extrapolated to {len(grid)} starts"
    )
    sub_fast, sub_s = timed(chinchilla.fit, n, d, loss, starts=subset)
    print(f"batched on the same {len(subset)} starts: {sub_s:6.2f} s   objective {sub_fast.objective:.12g}")
    p_fast, p_ref = chinchilla.theta_to_params(fast.theta)[0], chinchilla.theta_to_params(ref.theta)[0]
    same = fast.objective <= ref.objective * (1 + 1e-9) and sub_fast.objective <= ref.objective * (1 + 1e-9)
    print(
        f"same optimum: {same}  (E, A, B, alpha, beta) batched {np.round(p_fast, 4).tolist()} "
        f"reference {np.round(p_ref, 4).tolist()}, max relative difference "
        f"{np.max(np.abs(p_fast / p_ref - 1)):.1e}"
    )
    print(f"point fit speed-up over the reference (extrapolated): {per_start * len(grid) / fast_s:.0f}x")

    counts = resample_counts(t, args.replicates, seed=args.seed)
    boot, boot_s = timed(chinchilla.bootstrap, n, d, loss, counts, fast.theta)
    print(f"bootstrap, batched from the point fit, {args.replicates} replicates: {boot_s:6.2f} s")
    k = min(args.reference_replicates, args.replicates)
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    t0 = time.perf_counter()
    ref_boot = np.array([chinchilla._scipy_lbfgs(fast.theta, log_n, log_d, log_l, w)[0] for w in counts[:k]])
    ref_boot_s = time.perf_counter() - t0
    print(
        f"reference bootstrap, scipy per replicate from the point fit, {k} replicates: {ref_boot_s:6.2f} s"
        f"   -> {ref_boot_s / k * args.replicates:.1f} s extrapolated to {args.replicates}"
    )
    f_fast = chinchilla.objective(boot[:k], log_n, log_d, log_l, counts[:k])[0]
    f_ref = chinchilla.objective(ref_boot, log_n, log_d, log_l, counts[:k])[0]
    gap = np.max((f_fast - f_ref) / f_ref)
    print(
        f"bootstrap optima vs reference on those {k}: worst relative objective gap {gap:.1e}; median "
        f"|alpha difference| {np.median(np.abs(boot[:k, 3] - ref_boot[:, 3])):.1e}"
    )
    print(
        "bootstrap speed-up over the reference (extrapolated): "
        f"{ref_boot_s / k * args.replicates / boot_s:.0f}x"
    )
    print(
        f"targets: point fit {fast_s:.2f} s < 10 s: {fast_s < 10};  "
        f"{args.replicates} replicates {boot_s:.2f} s "
        f"< 15 s: {boot_s < 15}"
    )


if __name__ == "__main__":
    main()
