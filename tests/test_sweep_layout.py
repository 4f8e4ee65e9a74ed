"""Small pieces of the executors: worker layout, SLURM time limits, the schedule estimate, metrics tails."""

from __future__ import annotations

import json

import pytest

from sweeps.duration import makespan
from sweeps.local import worker_layout
from sweeps.runner import latest_loss
from sweeps.slurm import TIMEOUT_BUCKETS_MIN, timeout_for


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
