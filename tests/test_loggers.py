"""Run loggers (issue 18, part 6): --logger csv|tensorboard|wandb beside metrics.jsonl, which is always written.

What each logger wrote is read back and compared with metrics.jsonl: TensorBoard's event file through
tensorboard's own reader, metrics.csv through the csv module; a resume leaves each step logged once.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from dataclasses import replace

import pytest
from helpers import scaling

from gptcore.config import GPTConfig, TrainConfig
from gptcore.loggers import CSV_COLUMNS, CSV_NAME, TENSORBOARD_DIR

TINY = ["--n-layer", "1", "--n-head", "2", "--d-model", "32", "--ctx", "32", "--batch-size", "4", "--max-steps",
        "6", "--eval-every", "3", "--eval-batches", "1", "--sample-tokens", "4", "--threads", "1", "--device", "cpu",
        "--dtype", "fp32", "--no-progress"]


def jsonl(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(run, tag: str) -> list[tuple[int, float]]:
    """(step, value) of each event of `tag` TensorBoard shows, in the order it reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def logged(rows: list[dict], key: str) -> list[tuple[int, float]]:
    """What TensorBoard should show of metrics.jsonl's `key`: each step once, float32 in the event file."""
    return [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows if key in r]


def csv_rows(run) -> list[dict]:
    with open(run / CSV_NAME, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


def assert_csv_matches(run, rows: list[dict]) -> None:
    got = csv_rows(run)
    assert [int(r["step"]) for r in got] == [r["step"] for r in rows]
    for mine, theirs in zip(got, rows, strict=True):
        for column in CSV_COLUMNS:
            if column in theirs:
                assert float(mine[column]) == pytest.approx(theirs[column], rel=1e-12, abs=0), (column, mine)
            else:  # an eval column on a step that did not evaluate
                assert mine[column] == "", (column, mine)


def test_train_with_tensorboard_and_csv_logs_what_metrics_jsonl_holds(prepared_data, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    code, _, err = scaling("train", "--data", str(prepared_data), *TINY, "--out", str(run),
                           "--logger", "tensorboard,csv", capsys=capsys)
    assert code == 0, err
    rows = jsonl(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert tensorboard_scalars(run, "train_loss") == logged(rows, "train_loss")
    assert tensorboard_scalars(run, "val_loss") == logged(rows, "val_loss")
    assert_csv_matches(run, rows)
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["loggers"] == ["tensorboard", "csv"]


def test_the_logger_choice_is_not_hashed():
    cfg = TrainConfig(model=GPTConfig(), data="d", out="o", max_steps=1)
    assert replace(cfg, loggers=("csv", "tensorboard")).config_hash() == cfg.config_hash()


def test_a_resume_logs_each_step_once_in_every_logger(prepared_data, tmp_path):
    """Stopped at step 3 (checkpointed), then rows of steps 4 and 5 a killed run logged after its checkpoint;
    the resume cuts them from metrics.jsonl, metrics.csv and TensorBoard and logs them again."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from gptcore.data import open_dataset
    from gptcore.train import train

    run = tmp_path / "run"
    vocab = open_dataset(prepared_data).vocab_size
    cfg = TrainConfig(model=GPTConfig(n_layer=1, n_head=2, d_model=32, ctx=32, vocab_size=vocab),
                      data=str(prepared_data), out=str(run), batch_size=4, max_steps=6, eval_every=3, eval_batches=1,
                      sample_tokens=0, threads=1, device="cpu", dtype="fp32", progress=False,
                      loggers=("csv", "tensorboard"))
    assert train(cfg, log=lambda m: None, on_eval=lambda step, loss: step == 3).status == "stopped"
    stale = [{"step": s, "tokens": 0, "flops": 0.0, "train_loss": 99.0, "lr": 0.0, "grad_norm": 0.0,
              "tokens_per_s": 1.0, "mfu": 0.0} for s in (4, 5)]
    with open(run / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in stale)
    with open(run / CSV_NAME, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n").writerows(stale)
    with SummaryWriter(log_dir=str(run / TENSORBOARD_DIR)) as w:
        for r in stale:
            w.add_scalar("train_loss", r["train_loss"], global_step=r["step"])

    assert train(cfg, log=lambda m: None).status == "completed"
    rows = jsonl(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and all(r["train_loss"] != 99.0 for r in rows)
    assert tensorboard_scalars(run, "train_loss") == logged(rows, "train_loss")  # steps 4, 5 once, not 99
    assert_csv_matches(run, rows)
    assert all(math.isfinite(float(r["train_loss"])) for r in csv_rows(run))


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_without_the_package_is_one_line_before_anything_is_written(prepared_data, tmp_path, capsys):
    for argv in (["train", "--data", str(prepared_data), *TINY, "--out", str(tmp_path / "run"), "--logger", "wandb"],
                 ["sweep", "--grid", "tiny", "--data", str(prepared_data), "--out", str(tmp_path / "sweep"),
                  "--logger", "csv", "--logger", "wandb"]):
        code, _, err = scaling(*argv, capsys=capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert "the wandb package is not installed; pip install 'scaling[wandb]'" in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_an_unknown_logger_is_one_line(prepared_data, tmp_path, capsys):
    code, _, err = scaling("train", "--data", str(prepared_data), *TINY, "--out", str(tmp_path / "run"),
                           "--logger", "csv,mlflow", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "'mlflow' is not a logger" in err, err
