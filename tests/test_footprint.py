"""A modest footprint (issue 18, part 5): --keep-checkpoints last|best|none|all for sweeps and launches.

The policy only touches finished runs; an unfinished one keeps the checkpoint it resumes from. A dropped
checkpoint leaves a note that generate and eval read, and the run stays finished on a re-run.
"""

from __future__ import annotations

import json

import pytest
from helpers import rows, scaling

from gptcore import checkpoint
from sweeps import keep

GRID = """description = "footprint test grid"
ctx = 32
params = ["12K"]
tokens = ["4K", "6K"]

[train]
eval_every = 16
eval_batches = 2
"""


def _row(run_id: str, status: str, loss: float | None = None) -> dict:
    summary = {"final_val_loss": loss} if loss is not None else None
    return {"run_id": run_id, "status": status, "summary_json": json.dumps(summary) if summary else None}


FINISHED = [_row("a", "completed", 3.0), _row("b", "completed", 2.5), _row("c", "diverged"),
            _row("d", "completed", 2.9)]


@pytest.mark.parametrize(("policy", "final_run", "kept"), [
    ("all", None, {"a", "b", "c", "d"}),
    ("none", "d", set()),
    ("last", None, set()),  # a sweep has no final run: its runs are measurements
    ("last", "d", {"d"}),  # a launch keeps its run
    ("best", None, {"b"}),  # the lowest final val loss; a diverged run has none
])
def test_each_policy_keeps_what_it_says(policy, final_run, kept):
    assert keep.keepers(policy, FINISHED, final_run) == kept


def test_best_of_runs_that_all_diverged_keeps_none():
    assert keep.keepers("best", [_row("c", "diverged")], None) == set()


def test_the_flag_overrides_the_recorded_policy_and_says_so():
    assert keep.choose(None, None) == (keep.DEFAULT, None)
    assert keep.choose(None, "all") == ("all", None)  # a re-run without the flag applies the recorded one
    assert keep.choose("all", "all") == ("all", None)
    policy, note = keep.choose("none", "all")
    assert policy == "none" and "kept checkpoints by 'all' so far" in note and "does not come back" in note


def _fake_run(sweep, run_id: str) -> None:
    d = sweep / "runs" / run_id
    d.mkdir(parents=True)
    (d / checkpoint.FILENAME).write_bytes(b"weights")
    (d / "dcp-step-4").mkdir()  # a sharded checkpoint goes with it
    (d / "dcp-step-4" / "shard").write_bytes(b"shard")


def test_unfinished_runs_keep_their_checkpoint_whatever_the_policy(tmp_path):
    rows_ = [_row("done", "completed", 3.0), _row("mid", "running"), _row("queued", "pending"),
             _row("broke", "failed"), _row("slow", "timeout")]
    for r in rows_:
        _fake_run(tmp_path, r["run_id"])
    applied = keep.apply(tmp_path, rows_, {"keep_checkpoints": "none"})
    assert applied.dropped == ["done"]
    done = tmp_path / "runs" / "done"
    assert not (done / checkpoint.FILENAME).exists() and not (done / "dcp-step-4").exists()
    assert (done / checkpoint.DROPPED).is_file()
    for r in rows_[1:]:  # resumed or retried from these
        assert (tmp_path / "runs" / r["run_id"] / checkpoint.FILENAME).is_file(), r
    assert keep.apply(tmp_path, rows_, {"keep_checkpoints": "none"}).dropped == []  # idempotent


def test_a_sweep_json_without_a_policy_drops_nothing(tmp_path):
    _fake_run(tmp_path, "done")
    assert keep.apply(tmp_path, [_row("done", "completed", 3.0)], {}).dropped == []
    assert (tmp_path / "runs" / "done" / checkpoint.FILENAME).is_file()


def _sweep(data, grid, out, *flags):
    return scaling("sweep", "--grid", str(grid), "--data", str(data), "--out", str(out), "--executor", "local",
                   "--workers", "1", "--no-estimate", *flags)


def _kept(out) -> set[str]:
    return {p.parent.name for p in (out / "runs").glob(f"*/{checkpoint.FILENAME}")}


@pytest.mark.slow
def test_a_sweep_drops_finished_runs_checkpoints_by_default_and_stays_finished(prepared_data, tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out = tmp_path / "sweep"
    first = _sweep(prepared_data, grid, out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "checkpoints: 0 of 2 finished run(s) keep theirs (--keep-checkpoints last" in first.stdout
    assert _kept(out) == set()
    assert json.loads((out / "sweep.json").read_text())["keep_checkpoints"] == "last"
    run_ids = sorted(rows(out))
    for run_id in run_ids:  # dropped by the worker as the run finished, not only at the end
        run = out / "runs" / run_id
        assert (run / "summary.json").is_file() and (run / checkpoint.DROPPED).is_file()
        assert "checkpoints dropped (last)" in (run / "train.log").read_text()

    again = _sweep(prepared_data, grid, out, "--keep-checkpoints", "all")
    assert again.returncode == 0 and "(0 new, 2 finished" in again.stdout, again.stdout
    assert "this directory kept checkpoints by 'last' so far" in again.stdout
    assert all(r["attempts"] == 1 for r in rows(out).values())  # finished, not trained again

    code, _, err = scaling("generate", "--checkpoint", str(out / "runs" / run_ids[0]), capsys=capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "the checkpoint was not kept (--keep-checkpoints last" in err and "--keep-checkpoints all" in err
    code, _, err = scaling("eval", "--checkpoint", str(out), "--data", str(prepared_data), capsys=capsys)
    assert code == 2 and "the checkpoints of its 2 finished runs were not kept" in err, err


@pytest.mark.slow
def test_all_then_best_then_none_on_a_two_run_sweep(prepared_data, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out = tmp_path / "sweep"
    first = _sweep(prepared_data, grid, out, "--keep-checkpoints", "all", "--logger", "csv")
    assert first.returncode == 0, first.stderr[-3000:]
    stored = rows(out)
    assert _kept(out) == set(stored)
    assert all((out / "runs" / i / "metrics.csv").is_file() for i in stored)  # the workers log as sweep.json says

    best = _sweep(prepared_data, grid, out, "--keep-checkpoints", "best")
    assert best.returncode == 0, best.stderr[-3000:]
    losses = {i: json.loads(r["summary_json"])["final_val_loss"] for i, r in stored.items()}
    assert _kept(out) == {min(losses, key=losses.get)}

    same = _sweep(prepared_data, grid, out)  # no flag: the recorded policy, no note
    assert "so far" not in same.stdout and "--keep-checkpoints best" in same.stdout
    assert _kept(out) == {min(losses, key=losses.get)}

    none = _sweep(prepared_data, grid, out, "--keep-checkpoints", "none")
    assert none.returncode == 0 and _kept(out) == set()
    assert all(r["attempts"] == 1 and r["status"] == "completed" for r in rows(out).values())
