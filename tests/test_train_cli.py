"""`scaling train` and `scaling generate` from the command line: bad inputs, sampling, DDP under torchrun."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, cached_cpu_peaks, cli_env, scaling

from scaling.cli import main

TINY = ["--n-layer", "1", "--n-head", "2", "--d-model", "32", "--ctx", "32", "--batch-size", "4",
        "--warmup", "2", "--eval-batches", "2", "--sample-tokens", "4", "--threads", "1", "--dtype", "fp32",
        "--device", "cpu", "--no-progress", "--json"]


def _one_line_error(capsys, argv: list[str], match: str) -> None:
    code, _, err = scaling(*argv, capsys=capsys)  # argparse's own errors (a flag's value) included
    assert code == 2
    err = err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"scaling {argv[0]}: error:"), err
    assert match in err, err


def test_missing_data_dir(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *TINY],
                    "no such data dir")
    assert not (tmp_path / "o").exists()


def test_ctx_longer_than_the_data(capsys, prepared_data, tmp_path):
    _one_line_error(capsys, ["train", "--data", str(prepared_data), "--out", str(tmp_path / "o"), *TINY,
                             "--ctx", "10000000"], "longer than the data")


def test_unknown_preset(capsys, prepared_data, tmp_path):
    _one_line_error(capsys, ["train", "--data", str(prepared_data), "--out", str(tmp_path / "o"),
                             "--preset", "gpt2-7b"], "unknown preset")


def test_negative_tokens(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--out", str(tmp_path / "o"), "--tokens", "-5"], "positive")


@pytest.mark.parametrize("flags, match", [
    (["--threads", "-1"], "threads must be a positive integer, got -1"),
    (["--lr", "inf"], "lr must be a finite number > 0, got inf"),
    (["--min-lr-ratio", "-1"], "min_lr_ratio must be a number in [0, 1], got -1.0"),
    (["--wsd-decay-fraction", "2"], "wsd_decay_fraction must be a number in [0, 1], got 2.0"),
    (["--weight-decay", "-1"], "weight_decay must be a finite number >= 0, got -1"),
    (["--grad-clip", "-1"], "grad_clip must be a finite number >= 0 (0: no clipping), got -1"),
    (["--checkpoint-every", "0"], "checkpoint_every must be a positive integer, got 0"),
    (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
])
def test_out_of_range_training_flags(capsys, prepared_data, tmp_path, flags, match):
    _one_line_error(capsys, ["train", "--data", str(prepared_data), "--out", str(tmp_path / "o"), *TINY, *flags],
                    match)
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def finished_run(prepared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data", str(prepared_data), "--out", str(out), *TINY, "--max-steps", "4"]) == 0
    return out


def test_generate_continues_the_prompt(finished_run, capsys):
    argv = ["generate", "--checkpoint", str(finished_run), "--prompt", "It was a dark", "--max-new-tokens",
            "12", "--temperature", "0.8", "--top-k", "20", "--seed", "3"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("It was a dark") and len(first) > len("It was a dark\n")
    assert main(argv) == 0
    assert capsys.readouterr().out == first  # seeded: the same sample again


@pytest.mark.parametrize("temperature", ["nan", "inf", "-1"])
def test_generate_refuses_a_temperature_that_is_not_a_finite_number_from_0(finished_run, capsys, temperature):
    _one_line_error(capsys, ["generate", "--checkpoint", str(finished_run), "--temperature", temperature],
                    f"--temperature must be a finite number >= 0, got {float(temperature)}")


def _copy_run(finished_run: Path, run: Path) -> None:
    run.mkdir()
    for name in ("config.json", "ckpt.pt", "metrics.jsonl", "summary.json"):
        (run / name).write_bytes((finished_run / name).read_bytes())


RUN_DIRS = {  # what is at --out, and the error it must give
    "a file": (lambda finished, run: run.write_text("notes\n"), "is a file, not a run directory"),
    "config.json of another shape": (lambda finished, run: (run.mkdir(), (run / "config.json").write_text("[1]")),
                                     "config.json is not a config this trainer wrote"),
    "config.json a directory": (lambda finished, run: (run / "config.json").mkdir(parents=True),
                                "config.json is not a config this trainer wrote"),
    "a finished run, summary.json torn": (
        lambda finished, run: (_copy_run(finished, run), (run / "summary.json").write_text('{"status": "comp')),
        "summary.json is unreadable (torn or foreign); delete it and re-run"),
    "a finished run, summary.json empty": (
        lambda finished, run: (_copy_run(finished, run), (run / "summary.json").write_text("")),
        "summary.json is unreadable (torn or foreign); delete it and re-run"),
}


@pytest.mark.parametrize("case", RUN_DIRS)
def test_out_that_is_not_a_usable_run_directory(finished_run, capsys, tmp_path, case):
    make, match = RUN_DIRS[case]
    run = tmp_path / "run"
    make(finished_run, run)
    before = {p: p.read_bytes() for p in [run, *run.rglob("*")] if p.is_file()}
    data = json.loads((finished_run / "config.json").read_text())["train"]["data"]
    _one_line_error(capsys, ["train", "--data", data, "--out", str(run), *TINY, "--max-steps", "4"], match)
    assert {p: p.read_bytes() for p in [run, *run.rglob("*")] if p.is_file()} == before  # nothing touched


def test_corrupted_checkpoint(finished_run, capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        (run / name).write_bytes((finished_run / name).read_bytes())
    whole = (finished_run / "ckpt.pt").read_bytes()
    (run / "ckpt.pt").write_bytes(whole[: len(whole) // 2])  # truncated, as a full disk would leave it
    _one_line_error(capsys, ["generate", "--checkpoint", str(run / "ckpt.pt")], "corrupt")
    config = json.loads((run / "config.json").read_text())["train"]
    _one_line_error(capsys, ["train", "--data", config["data"], "--out", str(run), *TINY, "--max-steps", "4"],
                    "corrupt")
    assert (run / "ckpt.pt").read_bytes() == whole[: len(whole) // 2]  # left for the user to inspect


@pytest.mark.slow
def test_ddp_on_cpu_matches_one_process_with_accumulation(prepared_data, tmp_path):
    """torchrun, 2 gloo processes x 4 sequences == 1 process x 2 micro-batches of 4: the same batches
    (they derive from (seed, step)) and the same averaged gradients, up to float summation order."""
    steps = ["--max-steps", "6", "--eval-every", "3", "--data", str(prepared_data)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = subprocess.run([*torchrun, "-m", "scaling", "train", *TINY, *steps, "--out", str(tmp_path / "ddp")],
                         capture_output=True, text=True, env=cli_env(OMP_NUM_THREADS="1"), cwd=ROOT, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    got = json.loads(ddp.stdout.strip().splitlines()[-1])
    assert got["world_size"] == 2 and got["tokens"] == 6 * 2 * 4 * 32
    assert main(["train", *TINY, *steps, "--grad-accum", "2", "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert got["tokens"] == one["tokens"]
    assert got["final_train_loss"] == pytest.approx(one["final_train_loss"], abs=1e-5)
    assert got["final_val_loss"] == pytest.approx(one["final_val_loss"], abs=1e-5)
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    for row in (got, rows[-1]):  # MFU is per device: one process's tokens/s over one CPU's measured peak
        peak = row["tokens_per_s"] / 2 * got["flops_per_token"] / row["mfu"]
        assert any(peak == pytest.approx(p) for p in cached_cpu_peaks("fp32")), peak
