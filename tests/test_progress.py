"""Progress on stderr: a tqdm bar on a terminal; without one, a plain line now and then (every
SCALING_PROGRESS_EVERY_S seconds, 0 here so that each update prints), and nothing for a short step."""

from __future__ import annotations

import io
import json
import re

import pytest
from helpers import scaling

from gptcore.progress import PlainProgress, progress_bar
from sweeps.grid import make_grid, resolve
from sweeps.progress import SweepProgress
from sweeps.runner import run_dir
from sweeps.store import Store, local_owner


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_tqdm_and_a_log_gets_plain_lines(monkeypatch):
    from tqdm import tqdm

    assert isinstance(progress_bar(10, "step", file=Terminal()), tqdm)
    log = io.StringIO()
    monkeypatch.setenv("SCALING_PROGRESS_EVERY_S", "0")
    bar = progress_bar(6, "run", desc="sweep", file=log)
    assert isinstance(bar, PlainProgress)
    bar.update(3)
    bar.set_postfix_str("L1-d32 40/128")
    bar.close()
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2  # one a change; close repeats no line already written
    assert re.fullmatch(r"sweep: 3/6 run \(50%\), \S+ \S+ elapsed, ~\S+ \S+ left", lines[0]), lines
    assert lines[-1].endswith(", L1-d32 40/128") and "\r" not in log.getvalue()


def test_a_short_step_without_a_terminal_prints_nothing():
    log = io.StringIO()
    with progress_bar(100, "B", file=log) as bar:  # the default: a line at most every 30 s
        bar.update(100)
    assert log.getvalue() == ""


def test_a_sweeps_bar_shows_the_running_runs_step_loss_and_time_left(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCALING_PROGRESS_EVERY_S", "0")
    specs = resolve(make_grid("bar", params="12K,48K", tokens="16K", ctx=64), 1000, "data")
    store = Store(tmp_path)
    store.register(specs)
    spec = store.claim(local_owner())
    folder = run_dir(tmp_path, spec.run_id)
    folder.mkdir(parents=True)
    per_step = spec.tokens // 32  # 32 steps
    rows = [{"step": s, "tokens": s * per_step, "train_loss": 9.0 - s / 10, "tokens_per_s": per_step / 0.5}
            for s in range(1, 9)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bar = SweepProgress([s.run_id for s in specs], sweep_dir=tmp_path)
    bar.update(store.rows())
    bar.close()
    store.close()
    err = capsys.readouterr().err
    assert "0/2 run (0%)" in err and f"{spec.run_id} 8/32 loss 8.200 ~12 s left" in err, err


def test_the_tune_shows_trial_i_of_n_with_the_best_lr_so_far():
    import optuna

    from sweeps.tune import _TrialProgress

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log = io.StringIO()
    bar = PlainProgress(3, "trial", "L1-d32-D4000", 0, log)
    bar.every_s = 0.0
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("lr", 1e-4, 1e-2, log=True) - 3e-3) ** 2 + 7.0, n_trials=3,
                   callbacks=[_TrialProgress(bar)])
    lines = log.getvalue().splitlines()
    assert [line.split(" trial")[0] for line in lines] == [f"L1-d32-D4000: {i}/3" for i in (1, 2, 3)]
    best = min(study.trials, key=lambda t: t.value)
    assert f"best lr {best.params['lr']:.3g} (val loss {best.value:.4f}), last complete" in lines[-1]


@pytest.mark.parametrize("command", ["train", "data"])
def test_training_and_data_prepare_report_progress_without_a_terminal(command, tmp_path, monkeypatch, capsys,
                                                                     prepared_data, bundled_books):
    monkeypatch.setenv("SCALING_PROGRESS_EVERY_S", "0")
    if command == "train":
        argv = ["train", "--data", str(prepared_data), "--n-layer", "1", "--n-head", "2", "--d-model", "32",
                "--ctx", "32", "--batch-size", "4", "--max-steps", "3", "--eval-every", "3", "--eval-batches", "1",
                "--sample-tokens", "0", "--threads", "1", "--device", "cpu", "--out", str(tmp_path / "run")]
        want = r"3/3 step \(100%\), .* elapsed, loss=\d"
    else:
        for i, book in enumerate(bundled_books[:2]):
            (tmp_path / f"{i}.txt").write_text(book, encoding="utf-8")
        argv = ["data", "prepare", str(tmp_path / "0.txt"), str(tmp_path / "1.txt"), "--out", str(tmp_path / "data")]
        want = r"tokenizing: .* B .*, [\d,]+ tokens, [\d,]+ tokens/s"
    code, _, err = scaling(*argv, capsys=capsys)
    assert code == 0, err
    assert re.search(want, err), err[-2000:]
