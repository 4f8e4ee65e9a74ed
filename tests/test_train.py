"""The trainer: schedules, learning on real data, exact resume after SIGKILL, run-directory rules."""

import contextlib
import dataclasses
import json
import math
import signal
import time
from pathlib import Path

import pytest
import torch
from helpers import scaling, start_scaling

from gptcore.config import GPTConfig
from gptcore.errors import UserError
from gptcore.schedule import lr_at

GOLDEN_TRAIN_LOSS_STEP_50 = 7.4918
GOLDEN_FINAL_VAL_LOSS = 6.1483


def _vocab(prepared_data) -> int:
    from gptcore.data import open_dataset

    return open_dataset(prepared_data).vocab_size


def test_cosine_and_wsd_schedules():
    lrs = [lr_at(s, 100, 1.0, 10, "cosine", 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    wsd = [lr_at(s, 100, 1.0, 10, "wsd", 0.1, decay_fraction=0.2) for s in range(100)]
    assert wsd[10:80] == [1.0] * 70
    assert wsd[-1] == pytest.approx(0.1) and all(a > b for a, b in zip(wsd[80:], wsd[81:], strict=False))


def _tiny_args(data: Path, out: Path, steps: int = 40) -> list[str]:
    # dropout > 0 so that an exact resume also needs the restored torch RNG state
    return ["train", "--data", str(data), "--out", str(out), "--n-layer", "1", "--n-head", "2",
            "--d-model", "32", "--ctx", "32", "--batch-size", "4", "--max-steps", str(steps),
            "--warmup", "5", "--dropout", "0.1", "--eval-every", "10", "--eval-batches", "2",
            "--checkpoint-every", "5", "--sample-tokens", "4", "--threads", "1", "--dtype", "fp32",
            "--device", "cpu", "--json", "--no-progress"]


def _losses(out: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"], r.get("val_loss")) for r in rows]


@pytest.mark.slow
def test_sigkill_and_rerun_resumes_bitwise(prepared_data, tmp_path):
    data = prepared_data
    whole = scaling(*_tiny_args(data, tmp_path / "whole"), timeout=300)
    assert whole.returncode == 0, whole.stderr
    expected = json.loads(whole.stdout.splitlines()[-1])

    out = tmp_path / "killed"
    proc = start_scaling(*_tiny_args(data, out))
    metrics = out / "metrics.jsonl"
    # Kill between checkpoints, after the first one: steps 6-9 are logged but not checkpointed.
    while proc.poll() is None:
        if (out / "ckpt.pt").exists() and metrics.exists() and len(metrics.read_text().splitlines()) >= 7:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "summary.json").exists()

    resumed = scaling(*_tiny_args(data, out), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    got = json.loads(resumed.stdout.splitlines()[-1])
    assert got["final_train_loss"] == expected["final_train_loss"]
    assert got["final_val_loss"] == expected["final_val_loss"]
    assert _losses(out) == _losses(tmp_path / "whole")  # every step, no duplicated rows

    again = scaling(*_tiny_args(data, out), timeout=300)  # finished: a no-op that re-prints the summary
    assert again.returncode == 0 and "already finished" in again.stdout
    assert json.loads(again.stdout.splitlines()[-1]) == got

    changed = scaling(*_tiny_args(data, out)[:-2], "--lr", "0.01", "--json", timeout=300)
    assert changed.returncode == 2
    assert "different config" in changed.stderr and len(changed.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_tiny_model_learns_and_golden_loss(prepared_data, tmp_path):
    """300 steps of a 2-layer model on the bundled corpus: val loss falls far below ln(vocab), to a pinned value.

    Run as a subprocess: the CLI's allocator settings make it several times faster than in-process.
    """
    data = prepared_data
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--n-layer", "2", "--n-head", "2",
            "--d-model", "32", "--ctx", "32", "--batch-size", "8", "--max-steps", "300", "--lr", "3e-3",
            "--warmup", "30", "--eval-every", "100", "--eval-batches", "4", "--sample-tokens", "8",
            "--threads", "1", "--dtype", "fp32", "--device", "cpu", "--seed", "1234", "--json", "--no-progress"]
    run = scaling(*args, timeout=600)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    vocab = _vocab(prepared_data)
    assert summary["status"] == "completed" and summary["steps"] == 300
    assert summary["tokens"] == 300 * 8 * 32
    assert summary["final_val_loss"] < math.log(vocab) - 3.5
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r] == [100, 200, 300]
    assert all(r["sample"] for r in rows if "val_loss" in r)
    # Golden values, computed on this project's CPU (fp32, 1 thread). Another CPU's kernels round
    # differently, by about 1e-6 per op, which 300 steps grow to around 1e-3; a real change (init, schedule,
    # batch sampling, the data split, the loss) moves these by 0.05 or more. Hence 0.02.
    assert rows[49]["train_loss"] == pytest.approx(GOLDEN_TRAIN_LOSS_STEP_50, abs=0.02)
    assert summary["final_val_loss"] == pytest.approx(GOLDEN_FINAL_VAL_LOSS, abs=0.02)


def test_diverged_run_is_reported_not_raised(prepared_data, tmp_path):
    from gptcore.train import TrainConfig, train

    cfg = TrainConfig(
        model=GPTConfig(vocab_size=_vocab(prepared_data), ctx=16, n_layer=1, n_head=1, d_model=16),
        data=str(prepared_data), out=str(tmp_path / "run"), batch_size=2, max_steps=50,
        lr=1e30, warmup=0, grad_clip=0, weight_decay=0.0, threads=1, dtype="fp32", device="cpu",
        sample_tokens=0, progress=False,
    )
    summary = train(cfg, log=lambda msg: None)
    assert summary.status == "diverged"
    assert 1 < summary.diverged_step <= 50 and summary.steps == summary.diverged_step - 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_train_config_rejects_bad_budgets():
    m = GPTConfig(vocab_size=10, ctx=8, n_layer=1, n_head=1, d_model=8)
    with pytest.raises(UserError, match="tokens must be a positive integer, got -5"):
        from gptcore.train import TrainConfig

        TrainConfig(model=m, data="d", out="o", tokens=-5)
    with pytest.raises(UserError, match="exactly one budget"):
        TrainConfig(model=m, data="d", out="o")


@pytest.mark.parametrize("field, value, match", [
    ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
    ("min_lr_ratio", 1.5, r"min_lr_ratio must be a number in \[0, 1\], got 1.5"),
    ("wsd_decay_fraction", -0.1, r"wsd_decay_fraction must be a number in \[0, 1\], got -0.1"),
    ("grad_clip", float("inf"), "grad_clip must be a finite number >= 0"),
    ("beta1", 1.0, r"beta1 must be a number in \[0, 1\), got 1.0"),
    ("beta2", -0.5, r"beta2 must be a number in \[0, 1\), got -0.5"),
    ("threads", 0, "threads must be a positive integer, got 0"),
    ("checkpoint_every", -3, "checkpoint_every must be a positive integer, got -3"),
    ("sample_tokens", -1, "sample_tokens must be an integer >= 0, got -1"),
    ("batch_size", 2.5, "batch_size must be a positive integer, got 2.5"),
    ("seed", -1, "seed must be an integer >= 0, got -1"),
    ("schedule", "linear", "schedule must be one of cosine, wsd, got 'linear'"),
    ("device", "tpu", "device must be one of auto, cpu, mps, cuda, cuda:N, got 'tpu'"),
])
def test_train_config_names_the_field_out_of_range(field, value, match):
    """Sweeps build TrainConfig from grid files, so each error names the field as the config spells it."""
    from gptcore.train import TrainConfig

    m = GPTConfig(vocab_size=10, ctx=8, n_layer=1, n_head=1, d_model=8)
    with pytest.raises(UserError, match=match):
        TrainConfig(model=m, data="d", out="o", max_steps=1, **{field: value})


def test_the_resolved_dtype_is_what_the_run_records_and_hashes(prepared_data, tmp_path):
    """dtype "auto" is stored as what it resolved to, so the same run is never resumed in another dtype."""
    from gptcore.train import TrainConfig, resolve_dtype, train

    def cfg(dtype: str, steps: int) -> TrainConfig:
        return TrainConfig(
            model=GPTConfig(vocab_size=_vocab(prepared_data), ctx=16, n_layer=1, n_head=1, d_model=16),
            data=str(prepared_data), out=str(tmp_path / "run"), batch_size=2, max_steps=steps, threads=1,
            dtype=dtype, device="cpu", sample_tokens=0, eval_batches=1, progress=False)

    resolved = resolve_dtype("auto", torch.device("cpu"))
    first = train(cfg("auto", 2), log=lambda msg: None)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["train"]["dtype"] == first.dtype == resolved
    assert recorded["config_hash"] == first.config_hash == cfg(resolved, 2).config_hash()
    assert train(cfg(resolved, 2), log=lambda msg: None).config_hash == first.config_hash  # finished, kept
    other = "bf16" if resolved == "fp32" else "fp32"
    with pytest.raises(UserError, match="different config"):
        train(cfg(other, 2), log=lambda msg: None)


def test_no_step_reports_an_mfu_above_one_after_a_peak_measured_under_load(prepared_data, tmp_path, monkeypatch):
    """A cached CPU peak far below what the run achieves is measured again at the first step that beats it."""
    from gptcore import hardware
    from gptcore.train import TrainConfig, train

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    hardware.cpu_matmul_peak("fp32")
    path = tmp_path / "cache" / "scaling" / "cpu_matmul_peak.json"
    (key,) = json.loads(path.read_text())
    path.write_text(json.dumps({key: {"fp32": 1.0, "bf16": 1.0}}))  # as if measured with the cores busy
    summary = train(TrainConfig(
        model=GPTConfig(vocab_size=_vocab(prepared_data), ctx=16, n_layer=1, n_head=1, d_model=16),
        data=str(prepared_data), out=str(tmp_path / "run"), batch_size=2, max_steps=5, threads=None,
        dtype="fp32", device="cpu", sample_tokens=0, eval_batches=1, progress=False), log=lambda msg: None)
    assert list(json.loads(path.read_text())) == [key]  # the run's threads: the same cache entry
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < row["mfu"] <= 1 for row in rows) and 0 < summary.mfu <= 1
    assert json.loads(path.read_text())[key]["fp32"] > 1.0


@pytest.mark.slow
def test_bf16_autocast_training_follows_fp32_on_real_text(prepared_data, tmp_path):
    """The bf16 head (its softmax, its loss and gradients in bf16) learns as fp32 does, step for step."""
    from gptcore.train import TrainConfig, train

    def run(dtype: str):
        out = tmp_path / dtype
        summary = train(TrainConfig(
            model=GPTConfig(vocab_size=_vocab(prepared_data), ctx=64, n_layer=2, n_head=2, d_model=64),
            data=str(prepared_data), out=str(out), batch_size=8, max_steps=90, lr=2e-3, warmup=10, threads=2,
            dtype=dtype, device="cpu", eval_every=30, eval_batches=4, sample_tokens=0, seed=3, progress=False),
            log=lambda msg: None)
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return summary, [r["val_loss"] for r in rows if r.get("val_loss") is not None]

    (fp32, fp32_val), (bf16, bf16_val) = run("fp32"), run("bf16")
    assert bf16.dtype == "bf16" and fp32.dtype == "fp32"
    assert len(bf16_val) == len(fp32_val) >= 3
    assert bf16_val[-1] < math.log(_vocab(prepared_data)) - 3.5  # it learned
    for a, b in zip(bf16_val, fp32_val, strict=True):
        assert a == pytest.approx(b, rel=0.005)  # measured: within 0.03%


def test_a_finished_run_whose_summary_was_deleted_rebuilds_it_with_its_throughput(prepared_data, tmp_path):
    """Re-running a finished run rewrites summary.json from the checkpoint, tokens/s too, even for 2 steps."""
    from gptcore.train import TrainConfig, train

    cfg = TrainConfig(
        model=GPTConfig(vocab_size=_vocab(prepared_data), ctx=16, n_layer=1, n_head=1, d_model=16),
        data=str(prepared_data), out=str(tmp_path / "run"), batch_size=2, max_steps=2, threads=1,
        dtype="fp32", device="cpu", sample_tokens=0, eval_batches=1, progress=False)
    first = train(cfg, log=lambda msg: None)
    (tmp_path / "run" / "summary.json").unlink()
    again = train(cfg, log=lambda msg: None)
    assert first.tokens_per_s > 0 and again.tokens_per_s == pytest.approx(first.tokens_per_s)
    assert again.mfu == pytest.approx(first.mfu)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["tokens_per_s"] == again.tokens_per_s


def _small_cfg(prepared_data, out: Path, **kw):
    from gptcore.train import TrainConfig

    return TrainConfig(**{
        "model": GPTConfig(vocab_size=_vocab(prepared_data), ctx=16, n_layer=1, n_head=1, d_model=16, dropout=0.1),
        "data": str(prepared_data), "out": str(out), "batch_size": 2, "max_steps": 8, "eval_every": 2,
        "eval_batches": 1, "checkpoint_every": 3, "threads": 1, "dtype": "fp32", "device": "cpu",
        "sample_tokens": 0, "progress": False, **kw})


def test_on_eval_sees_every_eval_and_its_stop_is_a_resumable_pause(prepared_data, tmp_path):
    """on_eval gets (step, val loss) at each eval; returning true stops there (checkpointed, no summary.json),
    and re-running finishes the run exactly as if it had never stopped."""
    from gptcore.train import train

    seen = []
    whole = train(_small_cfg(prepared_data, tmp_path / "whole"), log=lambda m: None,
                  on_eval=lambda step, loss: seen.append((step, loss)))
    rows = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert seen == [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    assert [s for s, _ in seen] == [2, 4, 6, 8]

    out = tmp_path / "paused"
    stopped = train(_small_cfg(prepared_data, out), log=lambda m: None, on_eval=lambda step, loss: step == 4)
    assert stopped.status == "stopped" and stopped.steps == 4 and not (out / "summary.json").exists()
    from gptcore import checkpoint

    assert checkpoint.load(out)["step"] == 4  # checkpointed where it stopped, though 4 is not a multiple of 3
    resumed = train(_small_cfg(prepared_data, out), log=lambda m: None)  # step 4 is not a checkpoint step
    assert resumed.status == "completed" and resumed.steps == 8
    assert (resumed.final_train_loss, resumed.final_val_loss) == (whole.final_train_loss, whole.final_val_loss)
    assert _losses(out) == _losses(tmp_path / "whole")


def test_the_final_evaluation_takes_final_eval_batches_and_the_periodic_ones_eval_batches(prepared_data, tmp_path):
    """final_eval_batches sets the sequences of the last step's evaluation only: the final val loss is the
    mean over those (checked against evaluate() on the saved weights), and summary.json says how many."""
    from gptcore import pretrained
    from gptcore.data import open_dataset
    from gptcore.train import Dist, evaluate, train

    base = _small_cfg(prepared_data, tmp_path / "plain")
    cfg = _small_cfg(prepared_data, tmp_path / "final", final_eval_batches=6)
    assert cfg.config_hash() != base.config_hash()  # the final loss measures another sample: not the same run
    assert _small_cfg(prepared_data, tmp_path / "x", final_eval_batches=None).config_hash() == base.config_hash()
    plain, final = train(base, log=lambda m: None), train(cfg, log=lambda m: None)
    rows = [json.loads(x) for x in (tmp_path / "final" / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["val_sequences"]) for r in rows if "val_loss" in r]
    assert evals == [(2, 2), (4, 2), (6, 2), (8, 12)]  # batch_size 2: 1 batch periodic, 6 at the last step
    assert final.final_val_sequences == 12 and plain.final_val_sequences == 2
    assert json.loads((tmp_path / "final" / "summary.json").read_text())["final_val_sequences"] == 12
    assert final.final_train_loss == plain.final_train_loss  # the same training; only the measure differs
    assert final.final_val_loss != plain.final_val_loss
    model = pretrained.load(tmp_path / "final" / "ckpt.pt")
    val = open_dataset(prepared_data).val
    again = [evaluate(model, val, cfg, torch.device("cpu"), contextlib.nullcontext, Dist(), batches=b)
             for b in (1, 6)]
    assert again == pytest.approx([plain.final_val_loss, final.final_val_loss], rel=1e-6)


def test_an_exception_from_on_eval_stops_the_run_and_propagates(prepared_data, tmp_path):
    from gptcore.train import train

    class Pruned(Exception):
        pass

    def prune(step, loss):
        raise Pruned(step)

    with pytest.raises(Pruned):
        train(_small_cfg(prepared_data, tmp_path / "run"), log=lambda m: None, on_eval=prune)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and not (tmp_path / "run" / "summary.json").exists()  # stopped at the first eval


def test_the_summary_is_summary_json_and_the_checkpoint_keeps_its_keys(prepared_data, tmp_path):
    """summary.json is TrainSummary.to_json(), read back equal; ckpt.pt keeps the keys older code wrote, and a
    checkpoint from before first_steps was saved still resumes."""
    from gptcore import checkpoint
    from gptcore.train import TrainSummary, train

    cfg = _small_cfg(prepared_data, tmp_path / "run", max_steps=3)
    summary = train(cfg, log=lambda m: None)
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk == summary.to_json() and TrainSummary.from_json(on_disk) == summary
    assert list(on_disk)[:4] == ["status", "diverged_step", "steps", "params"] and len(on_disk) == 23
    assert (on_disk["parallel"], on_disk["world_size"]) == ("none", 1)
    assert on_disk["final_val_sequences"] == 2  # eval_batches 1 x batch_size 2
    before = ("init_from", "init_from_sha256", "parallel", "final_val_sequences")
    older = {k: v for k, v in on_disk.items() if k not in before}
    assert TrainSummary.from_json(older) == dataclasses.replace(summary, final_val_sequences=None)
    ck = checkpoint.load(tmp_path / "run")
    assert set(ck) == {"format", "config_hash", "train_config", "model_config", "step", "tokens", "model",
                       "optimizer", "rng", "vocab", "steady_tokens", "steady_seconds", "first_steps",
                       "train_loss", "val_loss", "parallel"}
    assert ck["step"] == 3 and ck["tokens"] == 3 * 2 * 16 and len(ck["first_steps"]) == 3

    # An older checkpoint (no first_steps, no parallel) taken at step 4 of 8: the run resumes from it, bitwise.
    whole = train(_small_cfg(prepared_data, tmp_path / "whole"), log=lambda m: None)
    old = tmp_path / "old"
    train(_small_cfg(prepared_data, old), log=lambda m: None, on_eval=lambda step, loss: step == 4)
    ck = checkpoint.load(old)
    checkpoint.save(old / "ckpt.pt", {k: v for k, v in ck.items() if k not in ("format", "first_steps", "parallel")})
    resumed = train(_small_cfg(prepared_data, old), log=lambda m: None)
    assert resumed.final_val_loss == whole.final_val_loss and _losses(old) == _losses(tmp_path / "whole")
