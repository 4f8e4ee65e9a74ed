"""Sweep grids: presets, TOML files and flags give the runs the rules say; bad grids: one-line errors."""

from __future__ import annotations

import math

import pytest

from gptcore.config import GPTConfig, count_non_embedding_params, flops_per_token_with_attention
from gptcore.errors import UserError
from scaling.cli import main
from sweeps import hparams
from sweeps.grid import TRAIN_KEYS, grid_from_toml, grid_to_toml, load_grid, make_grid, preset_names, resolve

VOCAB = 32779  # the bundled corpus' compact vocabulary


def test_presets_are_data_and_tiny_is_4_sizes_by_3_budgets():
    assert {"tiny", "small", "medium", "large"} <= set(preset_names())
    runs = resolve(load_grid("tiny"), VOCAB, "data")
    assert len(runs) >= 12
    assert len({r.non_embedding_params for r in runs}) == 4 and len({r.tokens for r in runs}) == 3
    assert len({r.config_hash for r in runs}) == len(runs) == len({r.run_id for r in runs})


@pytest.mark.parametrize("name, lo, hi", [("medium", 5e6, 2e8), ("large", 5e7, 2e9)])
def test_gpu_presets_span_their_sizes(name, lo, hi):
    runs = resolve(load_grid(name), 50257, "data")
    sizes = [r.non_embedding_params for r in runs]
    assert lo <= min(sizes) and max(sizes) <= hi


def test_shape_lr_batch_and_warmup_follow_the_stated_rules():
    for r in resolve(load_grid("medium"), VOCAB, "data"):
        cfg = GPTConfig(**r.model)
        assert r.non_embedding_params == count_non_embedding_params(cfg)
        assert r.flops == pytest.approx(r.tokens * flops_per_token_with_attention(cfg))
        assert r.lr == pytest.approx(hparams.default_lr(r.non_embedding_params))
        assert r.lr_source == "default-rule"
        steps = r.tokens / (r.batch_size * cfg.ctx)
        assert steps >= hparams.MIN_STEPS or r.batch_size == 1
        assert r.batch_size & (r.batch_size - 1) == 0  # a power of two
        assert r.warmup * r.batch_size * cfg.ctx <= 0.1 * r.tokens + r.batch_size * cfg.ctx


def test_small_grid_fixes_the_batch_so_tokens_are_steps():
    """At <= 800K tokens the batch rule's step floor binds for every run; the small grid fixes the batch instead."""
    runs = resolve(load_grid("small"), VOCAB, "data")
    assert {r.batch_size for r in runs} == {8}
    assert sorted({round(r.tokens / (8 * 128)) for r in runs}) == [98, 195, 391, 781]  # steps grow with tokens
    # What the batch rule would give: tokens span 8x, yet steps only 2x; the batch would carry the rest.
    rule_steps = [r.tokens / (hparams.batch_size_for(r.flops, r.tokens, 128) * 128) for r in runs]
    assert max(rule_steps) <= 2 * min(rule_steps) and max(r.tokens for r in runs) == 8 * min(r.tokens for r in runs)


def test_default_lr_falls_with_size_and_is_floored():
    assert hparams.default_lr(1e5) > hparams.default_lr(1e7) > hparams.default_lr(1e9)
    assert hparams.default_lr(1e12) == hparams.LR_FLOOR


def test_tuned_lr_law_is_used_exactly_for_tuned_sizes_and_as_a_law_otherwise():
    grid = make_grid("g", params="12K,50K", tokens="64K", ctx=64)
    plain = resolve(grid, VOCAB, "data")
    law = hparams.LRLaw(coef=0.5, exponent=0.5, tuned={plain[0].non_embedding_params: 0.0123})
    runs = {r.non_embedding_params: r for r in resolve(grid, VOCAB, "data", law)}
    small, big = sorted(runs)
    assert runs[small].lr == 0.0123 and runs[small].lr_source == "tuned"
    assert runs[big].lr == pytest.approx(0.5 * big**-0.5) and runs[big].lr_source == "lr-law"
    assert runs[small].config_hash != plain[0].config_hash  # another LR is another config


def test_isoflop_flags_give_equal_compute_per_budget():
    grid = make_grid("iso", compute="1e13,3e13", sizes=4, ctx=64)
    runs = resolve(grid, VOCAB, "data")
    for budget in (1e13, 3e13):
        mine = [r for r in runs if math.isclose(r.flops, budget, rel_tol=0.01)]
        assert len(mine) == 4 and len({r.non_embedding_params for r in mine}) == 4


def test_toml_grid_and_data_hash_enter_the_config_hash(tmp_path):
    text = 'params = ["12K"]\ntokens = ["32K"]\nctx = 64\n[train]\nlr = 3e-3\neval_every = 10\n'
    (run,) = resolve(grid_from_toml(text, "t", "t.toml"), VOCAB, "data-a")
    assert run.lr == 3e-3 and run.lr_source == "grid" and run.train == {"eval_every": 10}
    (other,) = resolve(grid_from_toml(text, "t", "t.toml"), VOCAB, "data-b")
    assert other.run_id == run.run_id and other.config_hash != run.config_hash


@pytest.mark.parametrize("content, message", [
    ("params = [", "not valid TOML"),
    ('params = ["1M"]\ntokens = ["1M"]\nbatch = 3\n', "unknown key(s) batch"),
    ('params = ["1M"]\n', "give either tokens"),
    ('params = ["1M"]\ntokens = ["lots"]\n', "cannot read 'lots'"),
    ('params = ["1M"]\ntokens = ["1M"]\n[train]\nwarmpu = 3\n', "unknown [train] key(s) warmpu"),
    ('compute = ["1e15"]\nsizes = 0\n', "sizes must be a positive integer"),
    ('params = [true]\ntokens = ["1M"]\n', "params must be a non-empty list of sizes"),
    (b"\xff\xfe\x00params", "not a TOML grid file (not UTF-8 text)"),
    *[(f'params = ["1M"]\ntokens = ["1M"]\n[train]\n{setting}\n', f"[train] {setting.split()[0]} must be {allowed}")
      for setting, allowed in [
          ('batch_size = "two"', "a positive integer"),
          ("batch_size = 0", "a positive integer"),
          ("batch_size = 2.7", "a positive integer"),
          ("batch_size = true", "a positive integer"),
          ('lr = "fast"', "a finite number > 0"),
          ("lr = -1", "a finite number > 0"),
          ("lr = nan", "a finite number > 0"),
          ("warmup = -5", "an integer >= 0"),
          ("eval_every = 0", "a positive integer"),
          ("checkpoint_every = 1.5", "a positive integer"),
          ('dtype = "fp16"', "one of auto, fp32, bf16"),
          ('schedule = "linear"', "one of cosine, wsd"),
          ('compile = "yes"', "true or false"),
          ("device = 0", "one of auto, cpu, mps, cuda"),
          ("weight_decay = -0.1", "a finite number >= 0"),
          ("beta2 = 1.0", "a number in [0, 1)"),
          ("grad_clip = inf", "a finite number >= 0"),
          ("min_lr_ratio = 1.5", "a number in [0, 1]"),
      ]],
])
def test_bad_grid_files_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.toml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    assert main(["sweep", "--grid", str(path), "--out", str(tmp_path / "out"), "--dry-run", "--no-estimate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scaling sweep: error: ") and message in err
    assert not (tmp_path / "out").exists()  # nothing written for a bad grid


@pytest.mark.parametrize("argv, message", [
    (["--grid", "enormous"], "unknown grid 'enormous'"),
    (["--grid", "nope.toml"], "does not exist"),
    (["--params", "1M"], "give either tokens"),
    (["--grid", "tiny", "--params", "1M"], "not both"),
    ([], "give --grid"),
])
def test_unknown_presets_and_bad_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    assert main(["sweep", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_binary_grid_file_is_a_one_line_error_for_the_demo_too(tmp_path, capsys):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00params")
    assert main(["demo", "--grid", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a TOML grid file" in err and not (tmp_path / "out").exists()


def test_every_train_setting_a_grid_allows_is_checked_and_good_values_pass():
    good = {"lr": 3e-3, "batch_size": 8, "warmup": 0, "eval_every": 10, "eval_batches": 2, "checkpoint_every": 5,
            "dtype": "bf16", "device": "cpu", "compile": False, "weight_decay": 0, "beta1": 0.9, "beta2": 0.95,
            "grad_clip": 0.0, "schedule": "wsd", "min_lr_ratio": 1, "wsd_decay_fraction": 0.5,
            "parallel": "fsdp", "final_eval_batches": 16}
    assert set(good) == TRAIN_KEYS
    assert make_grid("g", params="12K", tokens="64K", train=good).train == good


def test_a_grid_sets_wsd_decay_fraction_and_the_trainer_gets_it(tmp_path):
    from sweeps.runner import train_config

    text = 'params = ["12K"]\ntokens = ["32K"]\nctx = 64\n[train]\nschedule = "wsd"\nwsd_decay_fraction = 0.35\n'
    (run,) = resolve(grid_from_toml(text, "t", "t.toml"), VOCAB, "data")
    cfg = train_config(run, "data", tmp_path / "run", threads=1)
    assert cfg.schedule == "wsd" and cfg.wsd_decay_fraction == 0.35
    (default,) = resolve(grid_from_toml(text.replace("0.35", "0.2"), "t", "t.toml"), VOCAB, "data")
    assert default.config_hash != run.config_hash  # another decay is another config


@pytest.mark.parametrize("setting, flag", [
    ("wsd_decay_fraction = 1.5", ["--wsd-decay-fraction", "1.5"]),
    ("min_lr_ratio = -1.0", ["--min-lr-ratio", "-1"]),
    ("lr = inf", ["--lr", "inf"]),
    ("weight_decay = -0.5", ["--weight-decay", "-0.5"]),
])
def test_a_bad_setting_gives_the_same_one_line_message_in_a_grid_as_on_the_train_command(
        tmp_path, capsys, prepared_data, setting, flag):
    path = tmp_path / "bad.toml"
    path.write_text(f'params = ["12K"]\ntokens = ["32K"]\n[train]\n{setting}\n')
    assert main(["sweep", "--grid", str(path), "--out", str(tmp_path / "sweep"), "--dry-run", "--no-estimate"]) == 2
    grid_err = capsys.readouterr().err.strip()
    assert main(["train", "--data", str(prepared_data), "--out", str(tmp_path / "run"), "--max-steps", "1", *flag]) == 2
    cli_err = capsys.readouterr().err.strip()
    assert len(grid_err.splitlines()) == len(cli_err.splitlines()) == 1
    cli_message = cli_err.removeprefix("scaling train: error: ")
    assert cli_message.startswith(setting.split()[0] + " must be ") and cli_message != cli_err
    assert grid_err == f"scaling sweep: error: {path}: [train] {cli_message}"
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "argument --workers: must be an integer >= 1, got '0'"),
    (["--workers", "-2"], "argument --workers: must be an integer >= 1"),
    (["--workers", "2.5"], "argument --workers: must be an integer >= 1"),
    (["--cpus-per-run", "0"], "argument --cpus-per-run: must be an integer >= 1"),
    (["--gpus-per-run", "-1"], "argument --gpus-per-run: must be an integer >= 0"),
    (["--timeout-min", "-1"], "argument --timeout-min: must be a finite number > 0"),
    (["--timeout-min", "0"], "argument --timeout-min: must be a finite number > 0"),
    (["--timeout-min", "nan"], "argument --timeout-min: must be a finite number > 0"),
    (["--timeout-min", "inf"], "argument --timeout-min: must be a finite number > 0"),
])
def test_bad_sweep_flags_are_refused_when_parsed(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--grid", "tiny", "--out", str(tmp_path / "out"), "--dry-run", "--no-estimate", *flags])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("scaling sweep: error: ")
    assert message in err and not (tmp_path / "out").exists()


def test_grid_errors_name_the_problem():
    with pytest.raises(UserError, match="tokens grid needs params"):
        make_grid("x", tokens="1M")


def test_a_grid_written_as_toml_reads_back_the_same():
    """grid_to_toml (the demo's tune grid) round-trips every preset, an isoFLOP grid, and [train] values of
    every type, quotes and newlines in the description included."""
    isoflop = make_grid("iso", compute=[1e14, 3e14], sizes=3, ctx=64, seed=2, description='say "hi"\nthere',
                        train={"batch_size": 4, "dtype": "fp32", "schedule": "wsd", "wsd_decay_fraction": 0.25,
                               "compile": False})
    for grid in [load_grid(n) for n in preset_names()] + [isoflop]:
        assert grid_from_toml(grid_to_toml(grid), grid.name, "round trip") == grid
