"""One learning-rate rule end to end: a sweep records how its runs were trained (sweep.json), the fit copies it
into the law file, and a launch trains its final run by it unless told otherwise, which it records.

The launch tests stop before training (`prepare_launch`: plan, checks, prediction registered): the rule is
chosen there. The demo's launch (tests/test_demo.py) checks the whole loop.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import scaling

from analysis.prediction import read_prediction
from gptcore.errors import UserError
from scaling.law import ChinchillaLaw, FittedLaw
from scaling.units import format_mfu
from sweeps import grid as grids
from sweeps import hparams

GRID = """ctx = 32
params = ["12K", "50K", "200K"]
tokens = ["8K", "16K"]

[train]
eval_every = 16
eval_batches = 2
"""
ONE_RUN_GRID = """ctx = 32
params = ["12K"]
tokens = ["2K"]

[train]
eval_every = 64
eval_batches = 1
"""
LAW = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def write_lr_law(path: Path, coef: float = 0.05, exponent: float = 0.2) -> Path:
    law = hparams.LRLaw(coef=coef, exponent=exponent, tuned={}, source="test")
    path.write_text(json.dumps(law.to_dict()))
    return path


def test_a_sweep_records_its_lr_rule_and_the_fit_copies_it_into_the_law(prepared_data, tmp_path):
    grid = tmp_path / "one.toml"
    grid.write_text(ONE_RUN_GRID)
    lr_law = write_lr_law(tmp_path / "lr_law.json")
    out = tmp_path / "sweep"
    ran = scaling("sweep", "--grid", str(grid), "--data", str(prepared_data), "--out", str(out),
                  "--executor", "local", "--workers", "1", "--no-estimate", "--lr-law", str(lr_law))
    assert ran.returncode == 0, ran.stderr[-2000:]
    training = json.loads((out / "sweep.json").read_text())["training"]
    rule = training["lr_rule"]
    assert rule["rule"] == "lr-law" and rule["sha256"] == hashlib.sha256(lr_law.read_bytes()).hexdigest()
    assert rule["law"]["coef"] == 0.05 and training["ctx"] == 32 and training["batch_rule"] == hparams.BATCH_RULE
    assert training["train"] == {"eval_every": 64, "eval_batches": 1}

    # The fit reads a sweep directory's sweep.csv: its sweep.json is next to it. One run is too few to fit, so
    # the sweep's table is replaced by a synthetic one of 12 runs; sweep.json is the real sweep's.
    rows = [(f"r{i}", n, d, float(LAW.loss(n, d))) for i, (n, d) in
            enumerate((n, d) for n in (1e6, 3e6, 1e7, 3e7) for d in (2e7, 6e7, 2e8))]
    pd.DataFrame(rows, columns=["run_id", "params", "tokens", "loss"]).to_csv(out / "sweep.csv", index=False)
    fit = scaling("fit", str(out), "--out", str(tmp_path / "law.json"))
    assert fit.returncode == 0, fit.stderr[-2000:]
    law = FittedLaw.load(tmp_path / "law.json")
    assert law.sweep_training == training
    copy = tmp_path / "elsewhere.csv"  # a table that is not a sweep's records no rule
    shutil.copy(out / "sweep.csv", copy)
    assert scaling("fit", str(copy), "--out", str(tmp_path / "law2.json")).returncode == 0
    assert FittedLaw.load(tmp_path / "law2.json").sweep_training is None


def test_training_records_differ_where_a_setting_does_and_one_lr_law_is_its_bytes(tmp_path):
    grid = grids.grid_from_toml(GRID, name="g", where="test")
    law_a = hparams.load_lr_law(write_lr_law(tmp_path / "a.json"))
    (tmp_path / "copy").mkdir()
    law_a_copy = hparams.load_lr_law(shutil.copy(tmp_path / "a.json", tmp_path / "copy" / "a.json"))
    law_b = hparams.load_lr_law(write_lr_law(tmp_path / "b.json", coef=0.09))
    sweep = grids.training_record(grid, 1000, "h1", law_a)
    assert grids.training_differences(sweep, grids.training_record(grid, 1000, "h1", law_a_copy)) == []
    differ = grids.training_differences(sweep, grids.training_record(grid, 1000, "h1", law_b))
    assert [d["setting"] for d in differ] == ["lr_rule"]
    assert "learning-rate rule: sweep LR law" in grids.describe_difference(differ[0])
    assert [d["setting"] for d in grids.training_differences(sweep, grids.training_record(
        grids.grid_from_toml(GRID.replace("ctx = 32", "ctx = 64"), name="g", where="t"), 999, "h2", law_a))] == \
        ["ctx", "data_hash", "vocab_size"]
    default = grids.training_record(grid, 1000, "h1", None)["lr_rule"]
    assert default == {"rule": "default", "name": hparams.DEFAULT_LR_RULE}
    fixed = grids.grid_from_toml(GRID + "lr = 0.002\n", name="g", where="t")
    assert grids.training_record(fixed, 1000, "h1", law_a)["lr_rule"] == {"rule": "grid", "lr": 0.002}


def test_a_recorded_lr_law_is_read_from_its_values_once_the_file_is_gone_and_checked(tmp_path):
    law = hparams.load_lr_law(write_lr_law(tmp_path / "a.json"))
    record = hparams.lr_rule_record(law)
    (tmp_path / "a.json").unlink()
    again = hparams.lr_law_from_record(record, "law file x")
    assert (again.coef, again.exponent, again.sha256) == (law.coef, law.exponent, law.sha256)
    bad = {**record, "law": {**record["law"], "coef": -1}}
    with pytest.raises(UserError, match="law file x: the recorded LR law: coef"):
        hparams.lr_law_from_record(bad, "law file x")
    assert hparams.lr_law_from_record({"rule": "default", "name": hparams.DEFAULT_LR_RULE}, "x") is None


# ----------------------------------------------------------------------------- launch


@pytest.fixture(scope="module")
def swept(prepared_data, tmp_path_factory) -> dict:
    """A law whose sweep (the test grid, on the prepared data) was trained by a tuned LR law, as a fit of a
    sweep directory writes it; the LR law file, and another one."""
    from gptcore.data import open_dataset
    from sweeps.provenance import data_hash

    root = tmp_path_factory.mktemp("rules")
    (root / "grid.toml").write_text(GRID)
    lr_law = hparams.load_lr_law(write_lr_law(root / "lr_law.json"))
    write_lr_law(root / "other.json", coef=0.09)
    ds = open_dataset(prepared_data)
    grid = grids.grid_from_toml(GRID, name="grid", where="test")
    training = grids.training_record(grid, ds.vocab_size, data_hash(ds.meta), lr_law)
    FittedLaw.of(LAW, sweep_training=json.loads(json.dumps(training))).save(root / "law.json")
    return {"root": root, "data": prepared_data, "lr_law": lr_law}


def prepare(swept: dict, out: Path, lr_law: Path | None = None, allow: bool = False):
    from scaling.launch.orchestrate import prepare_launch
    from scaling.launch.request import LaunchRequest

    req = LaunchRequest(law=swept["root"] / "law.json", out=out, params=8.8e6, tokens=8e3,
                        grid=str(swept["root"] / "grid.toml"), data=swept["data"], lr_law=lr_law,
                        allow_other_lr_rule=allow, yes=True, progress=False)
    return prepare_launch(req)


def test_launch_trains_by_the_rule_the_law_recorded_even_once_its_file_is_gone(swept, tmp_path, capsys):
    moved = swept["root"] / "lr_law.moved"
    (swept["root"] / "lr_law.json").rename(moved)
    try:
        registered, spec, *_ = prepare(swept, tmp_path / "a")
    finally:
        moved.rename(swept["root"] / "lr_law.json")
    assert spec.lr_source == "lr-law" and spec.lr == pytest.approx(swept["lr_law"].lr(spec.non_embedding_params)[0])
    raw = json.loads((tmp_path / "a" / "prediction.json").read_text())
    # The typed prediction the launch returns is the file, key for key and in order.
    assert registered.to_json() == raw and list(registered.to_json()) == list(raw)
    assert read_prediction(tmp_path / "a") == registered
    training = raw["training"]
    assert training["trained_like_sweep"] is True and training["differences"] == []
    assert training["final_run"]["lr_rule"]["sha256"] == swept["lr_law"].sha256
    printed = capsys.readouterr().out
    assert "trained like the law's runs" in printed
    assert "prediction interval: no backtest calibration" in printed  # a hand-written law: none, said so
    # The same file, named by --lr-law, is the same rule.
    _, same, *_ = prepare(swept, tmp_path / "b", lr_law=swept["root"] / "lr_law.json")
    assert same.lr == spec.lr


@pytest.mark.parametrize("other", ["other.json", "default"])
def test_another_lr_rule_is_refused_unless_asked_for_and_then_recorded(swept, tmp_path, capsys, other):
    lr_law = swept["root"] / other if other != "default" else Path("default")
    with pytest.raises(UserError, match="--lr-law: the final run would be trained by .* but the law's runs were "
                       "trained by LR law .*--allow-other-lr-rule"):
        prepare(swept, tmp_path / "refused", lr_law=lr_law)
    assert not (tmp_path / "refused" / "prediction.json").exists()
    _, spec, *_ = prepare(swept, tmp_path / "asked", lr_law=lr_law, allow=True)
    expected = "default-rule" if other == "default" else "lr-law"
    assert spec.lr_source == expected
    training = json.loads((tmp_path / "asked" / "prediction.json").read_text())["training"]
    assert training["trained_like_sweep"] is False and [d["setting"] for d in training["differences"]] == ["lr_rule"]
    assert "warning: not as the law's runs were trained: learning-rate rule" in capsys.readouterr().out


def test_the_report_says_how_the_final_run_was_trained(swept, tmp_path):
    from analysis.report import markdown, report_numbers

    prepare(swept, tmp_path / "asked", lr_law=swept["root"] / "other.json", allow=True)
    prediction = read_prediction(tmp_path / "asked")
    summary = {"status": "completed", "final_val_loss": 5.0, "final_train_loss": 5.0, "flops_per_token": 1e7,
               "mfu": 0.00234, "tokens": 8192, "flops": 1e11, "tokens_per_s": 1e4}
    nums = report_numbers({"prediction": prediction, "summary": summary, "law_unchanged": True,
                           "metrics": [{"tokens": 8192, "tokens_per_s": 1e4}]})
    assert nums["trained_like_sweep"] is False and "other.json" in nums["lr_rule"]
    assert len(nums["training_differences"]) == 1 and "learning-rate rule" in nums["training_differences"][0]
    text = markdown(nums, {}, tmp_path)
    assert "| trained like the law's runs" in text and "Trained otherwise than the law's runs: learning-rate" in text
    # A CPU run's MFU (a few thousandths) with two significant digits, as the plan's own MFU is printed.
    fed_back = format_mfu(nums["fed_back_mfu"])
    assert f"(MFU {fed_back} as the planner counts)" in text
    caption = markdown(nums, {"gpu_hours": tmp_path / "plots" / "gpu_hours.png"}, tmp_path)
    assert f"fed-back MFU ({fed_back}) is the trainer's (0.0023) times" in caption
    assert float(fed_back) == pytest.approx(nums["fed_back_mfu"], rel=0.05)  # not 0.002 or 0.003


def test_a_malformed_sweep_training_in_a_law_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "law.json"
    FittedLaw.of(LAW, sweep_training={"lr_rule": {"rule": "default"}}).save(path)
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "sweep_training": ["not", "an", "object"]}))
    with pytest.raises(UserError, match="sweep_training must be an object with an lr_rule object"):
        FittedLaw.load(path)



@pytest.mark.parametrize("damage", [{"run": [1, 2]}, {"run": {"tokens": 8}}, {"plan": None}, {"law": "x"}])
def test_a_damaged_prediction_is_one_line_and_kept(swept, tmp_path, damage):
    prepare(swept, tmp_path / "p")
    path = tmp_path / "p" / "prediction.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, **damage}))
    with pytest.raises(UserError, match="prediction.json is malformed|prediction.json lacks"):
        read_prediction(tmp_path / "p")
    dropped = {k: v for k, v in raw.items() if k != "ci_level"}
    path.write_text(json.dumps(dropped))
    with pytest.raises(UserError, match="lacks 'ci_level'"):
        read_prediction(tmp_path / "p")
    assert path.read_text() == json.dumps(dropped)  # a reader never rewrites the file
