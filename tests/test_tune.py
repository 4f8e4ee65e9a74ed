"""`scaling tune`: Optuna LR studies per size with pruning, a resumed study, diverged trials, lr_opt(N)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from helpers import scaling

from gptcore.errors import UserError
from sweeps.hparams import load_lr_law
from sweeps.tune import fit_lr_law, make_storage

pytestmark = pytest.mark.slow

GRID = """
ctx = 64
params = ["12K", "50K"]
tokens = ["4K"]
[train]
batch_size = 8
eval_every = 2
eval_batches = 2
"""


def read_trials(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tune_prunes_resumes_and_writes_the_lr_law_the_sweep_uses(prepared_data, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out = tmp_path / "tune"
    args = ["tune", "--grid", str(grid), "--data", str(prepared_data), "--out", str(out), "--seed", "1"]
    first = scaling(*args, "--trials", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    trials = read_trials(out / "trials.csv")
    assert len(trials) == 8 and len({t["study"] for t in trials}) == 2
    lrs = [float(t["lr"]) for t in trials]
    assert max(lrs) / min(lrs) > 3  # log-uniform over two decades, not one point
    assert any(t["state"] == "PRUNED" for t in trials), trials  # the pruner acted on intermediate val loss
    assert (out / "optuna.db").is_file() and (out / "loss_vs_lr.png").stat().st_size > 10_000
    assert not list(out.rglob("ckpt.pt")) and list(out.rglob("summary.json"))  # trials never resume: dropped

    again = scaling(*args, "--trials", "5")  # the same studies, resumed: one more trial each
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = read_trials(out / "trials.csv")
    assert len(resumed) == 10
    assert [t["lr"] for t in resumed if int(t["trial"]) < 4] == [t["lr"] for t in trials]

    law = load_lr_law(out / "lr_law.json")
    best = {}
    for t in resumed:
        if t["state"] == "COMPLETE":
            n = int(t["non_embedding_params"])
            best[n] = min(best.get(n, (np.inf, 0)), (float(t["loss"]), float(t["lr"])))
    assert law.tuned == {n: lr for n, (_, lr) in best.items()}

    sweep = scaling(
        "sweep",
        "--params",
        "12K,200K",
        "--tokens",
        "8K",
        "--ctx",
        "64",
        "--data",
        str(prepared_data),
        "--out",
        str(tmp_path / "sweep"),
        "--lr-law",
        str(out / "lr_law.json"),
        "--dry-run",
        "--no-estimate",
    )
    assert sweep.returncode == 0, sweep.stderr
    assert not (tmp_path / "sweep").exists()  # a dry run of a new sweep writes nothing
    lines = {line.split()[0]: line.split() for line in sweep.stdout.splitlines() if line.startswith("L")}
    assert lines["L1-d32-D8K"][-1] == "tuned" and lines["L2-d96-D8K"][-1] == "lr-law"
    small = min(law.tuned)
    assert float(lines["L1-d32-D8K"][5]) == pytest.approx(law.tuned[small], rel=1e-2)


def test_a_diverging_trial_is_recorded_as_failed_and_the_study_goes_on(prepared_data, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace('["12K", "50K"]', '["12K"]') + "grad_clip = 0.0\n")
    out = tmp_path / "tune"
    # an absurd LR range: the loss overflows to inf within a few steps, for real
    run = scaling(
        "tune",
        "--grid",
        str(grid),
        "--data",
        str(prepared_data),
        "--out",
        str(out),
        "--trials",
        "2",
        "--pruner",
        "none",
        "--lr-range",
        "1e8,1e9",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    trials = read_trials(out / "trials.csv")
    assert [t["state"] for t in trials] == ["FAIL", "FAIL"]
    assert all(t["reason"].startswith("diverged: loss not finite at step") for t in trials)
    assert "not fitted" in run.stdout and not (out / "lr_law.json").exists()


def test_fit_lr_law_recovers_a_power_law_and_needs_two_sizes():
    n = np.array([1e4, 1e5, 1e6])
    law = fit_lr_law(n, 0.3 * n**-0.25)
    assert law.coef == pytest.approx(0.3) and law.exponent == pytest.approx(0.25)
    assert law.lr(10**7)[0] == pytest.approx(0.3 * 1e7**-0.25) and law.lr(10**4) == (pytest.approx(0.3e-1), "tuned")
    with pytest.raises(UserError, match="at least two sizes"):
        fit_lr_law([1e4], [1e-3])


def test_storage_urls(tmp_path):
    from optuna.storages import RDBStorage
    from optuna.storages.journal import JournalStorage

    assert isinstance(make_storage(f"sqlite:///{tmp_path}/a/optuna.db"), RDBStorage)
    assert isinstance(make_storage(f"journal://{tmp_path}/j/optuna.journal"), JournalStorage)
    with pytest.raises(UserError, match="--storage"):
        make_storage("optuna.db")
    with pytest.raises(UserError, match="--storage"):
        make_storage("nosuchdb://x")
