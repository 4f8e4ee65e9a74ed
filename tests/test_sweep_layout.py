"""Small pieces of the executors: worker layout, SLURM time limits, the schedule estimate, metrics tails."""

from __future__ import annotations

import json

import pytest

from sweeps.duration import makespan
from sweeps.local import worker_layout
from sweeps.runner import latest_loss
from sweeps.slurm import TIMEOUT_BUCKETS_MIN, gres_gpus, partition_slots, timeout_for


@pytest.mark.parametrize(
    "workers, gpus, cores, want",
    [
        (None, 0, 2, (2, 1)),
        (1, 0, 2, (1, 2)),
        (3, 0, 8, (3, 2)),
        (None, 4, 16, (4, 4)),
        (5, 0, 2, (5, 1)),
    ],
)
def test_workers_times_threads_never_exceed_the_cores(workers, gpus, cores, want):
    w, t = worker_layout(workers, gpus, cores)
    assert (w, t) == want
    assert w * t <= max(cores, w)  # more workers than cores only when asked, then one thread each


def test_slurm_time_limits_come_from_the_flag_or_the_estimate_in_buckets():
    assert timeout_for(None, 7.5) == 8
    assert timeout_for(60.0, None) == 10  # 3 min + 5 min -> the 10-minute bucket
    assert timeout_for(3600.0, None) == 240  # 3 h + 5 min -> 4 h
    assert timeout_for(1e9, None) == TIMEOUT_BUCKETS_MIN[-1]


# `sinfo -h -o "%P %C %D %G"` as slurm 22.05 prints it: this machine's one-node cluster, and a GPU cluster.
SINFO_HERE = "debug* 0/2/0/2 1 (null)\noversub 0/2/0/2 1 (null)\n"
SINFO_GPUS = "gpu* 64/128/0/192 2 gpu:a100:8(S:0-1)\ngpu* 0/96/0/96 1 gpu:h100:4\ncpu 0/512/0/512 4 (null)\n"


@pytest.mark.parametrize("lines, partition, cpus, gpus, want", [
    (SINFO_HERE, None, 1, 0, 2),  # 2 CPUs of the default partition: 2 runs at once, not a whole array
    (SINFO_HERE, "oversub", 2, 0, 1),
    (SINFO_HERE, None, 4, 0, 1),  # a run larger than the partition still gets one slot
    (SINFO_GPUS, None, 4, 1, 20),  # 2 x 8 + 1 x 4 GPUs bound it before 288 CPUs do
    (SINFO_GPUS, None, 32, 1, 9),  # 288 CPUs / 32 per run
    (SINFO_GPUS, "cpu", 8, 0, 64),
    (SINFO_GPUS, "missing", 1, 0, None),
    ("", None, 1, 0, None),
])
def test_a_slurm_estimate_runs_no_more_at_once_than_the_partition_holds(lines, partition, cpus, gpus, want):
    assert partition_slots(lines, partition, cpus, gpus) == want


def test_gres_strings_give_their_gpu_count():
    assert [gres_gpus(g) for g in ("gpu:8", "gpu:a100:4(S:0-1)", "(null)", "craynetwork:4,gpu:2")] == [8, 4, None, 2]


def test_makespan_puts_the_longest_runs_first_on_the_least_busy_worker():
    assert makespan([4, 3, 3, 2], 2) == 6
    assert makespan([5, 1, 1], 1) == 7
    assert makespan([5, 1, 1], 3) == 5


def test_latest_loss_prefers_the_last_rows_val_loss(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [
        {"step": 1, "train_loss": 9.0},
        {"step": 2, "train_loss": 8.0, "val_loss": 8.5},
        {"step": 3, "train_loss": 7.5},
    ]
    assert latest_loss(path) is None
    path.write_text(json.dumps(rows[0]) + "\n")
    assert latest_loss(path) == 9.0
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    assert latest_loss(path) == 8.5
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "tra')  # a half-written row
    assert latest_loss(path) == 7.5
    long = [{"step": i, "train_loss": 1.0 + i / 1000, "sample": "x" * 300} for i in range(100)]
    path.write_text("".join(json.dumps(r) + "\n" for r in long))  # past the 4 KiB tail window
    assert latest_loss(path) == 1.099


def test_a_slurm_dry_run_without_the_estimate_asks_sinfo_nothing(monkeypatch, tmp_path, capsys):
    """The partition's slots bound only the estimate's schedule, so --no-estimate must not wait on sinfo
    (which can hang on a cluster that is slow to answer); with the estimate it is asked once."""
    from scaling.cli import main
    from sweeps import orchestrate

    asked = []
    monkeypatch.setattr(orchestrate, "cluster_answers", lambda: True)
    monkeypatch.setattr(orchestrate, "cluster_slots", lambda *a: asked.append(a) or 1)
    assert main(["sweep", "--grid", "tiny", "--out", str(tmp_path / "a"), "--executor", "slurm", "--dry-run",
                 "--no-estimate"]) == 0
    assert asked == [] and "estimate: skipped (--no-estimate)" in capsys.readouterr().out
    monkeypatch.setattr(orchestrate, "estimate_seconds",
                        lambda todo, data, threads: ({s.run_id: 60.0 for s in todo}, "measured"))
    assert main(["sweep", "--grid", "tiny", "--out", str(tmp_path / "b"), "--executor", "slurm", "--dry-run"]) == 0
    assert len(asked) == 1 and "on 1 slot(s)" in capsys.readouterr().out


def test_a_runs_estimate_counts_its_evaluations_as_forward_passes_on_its_own_schedule():
    """The tiny grid's runs evaluate every 50 steps on 4 batches and last on 32 (256 sequences): at the
    same FLOP rate, that forward work (a third of training's per token) and the checkpoints are added."""
    from gptcore.config import GPTConfig, count_params
    from sweeps.duration import run_seconds
    from sweeps.grid import load_grid, resolve

    rate = 1e9
    for spec in resolve(load_grid("tiny"), 32779, "data"):
        steps = -(-spec.tokens // (8 * 64))
        eval_batches = (steps // 50 + (1 if steps % 50 else 0) - 1) * 4 + 32
        forward_s = eval_batches * 8 * 64 * (spec.flops / spec.tokens / 3) / rate
        checkpoints = steps // 50 + (1 if steps % 50 else 0)
        checkpoint_s = checkpoints * 12 * count_params(GPTConfig.from_dict(spec.model)) / 1e9
        assert run_seconds(spec, "data", 1, rate) == pytest.approx(spec.flops / rate + forward_s + checkpoint_s)
    small = min(resolve(load_grid("tiny"), 32779, "data"), key=lambda s: s.flops)
    assert run_seconds(small, "data", 1, rate) > 1.3 * small.flops / rate  # 16K tokens: the final eval is 1/3
