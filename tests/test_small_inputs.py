"""Small things a user meets: `scaling --version`, input that used to be accepted silently (--ctx 0, a law
file of an unknown form), and a sweep header that counts the interrupted runs it resumes."""

from __future__ import annotations

import json

import pytest
from helpers import scaling

from gptcore.errors import UserError
from scaling.law import LOSS_LAW_FORMS, ChinchillaLaw, FittedLaw
from sweeps.grid import make_grid, resolve
from sweeps.orchestrate import print_plan
from sweeps.store import Store


def test_version_is_the_installed_one(capsys):
    from importlib.metadata import version

    code, out, _ = scaling("--version", capsys=capsys)
    assert code == 0 and out.strip() == f"scaling {version('scaling')}"


def test_ctx_zero_is_refused_not_replaced_by_the_default(tmp_path, capsys, prepared_data):
    for extra in ([], ["--preset", "gpt2-124m"]):
        code, _, err = scaling("train", "--data", str(prepared_data), "--ctx", "0", "--max-steps", "1",
                               "--out", str(tmp_path / "run"), *extra, capsys=capsys)
        assert code == 2 and "ctx must be a positive integer, got 0" in err, err
    assert not (tmp_path / "run").exists()


def test_loss_law_forms_are_the_estimators_that_predict_loss():
    from scaling.fit.estimators import ESTIMATORS

    assert set(LOSS_LAW_FORMS) == {name for name, e in ESTIMATORS.items() if e.predicts_loss}


@pytest.mark.parametrize("field, value, message", [
    ("form", "weird", "form must be one of chinchilla, vpnls, got 'weird'"),
    ("form", "isoflop", "form must be one of chinchilla, vpnls, got 'isoflop'"),
    ("param_convention", "embedding", "param_convention must be one of total, non_embedding, non_embedding_with_head"),
])
def test_a_law_file_of_an_unknown_form_is_refused(tmp_path, capsys, field, value, message):
    path = tmp_path / "law.json"
    FittedLaw.of(ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)).save(path)
    assert FittedLaw.load(path).form == "chinchilla"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps(raw | {field: value}))
    with pytest.raises(UserError, match=message):
        FittedLaw.load(path)
    code, _, err = scaling("predict", "--law", str(path), "--params", "1B", "--tokens", "20B", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_the_sweep_header_counts_interrupted_runs(tmp_path, capsys):
    """10 finished, 2 left running by a killed sweep: the header of the re-run says it resumes those 2."""
    grid = make_grid("header", params="12K,48K,192K,768K", tokens="16K,32K,64K", ctx=64)
    specs = resolve(grid, 1000, "data")
    store = Store(tmp_path)
    store.register(specs)
    with store.db:
        store.db.executemany("UPDATE runs SET status = ? WHERE run_id = ?",
                             [("completed" if i < 10 else "running", s.run_id) for i, s in enumerate(specs)])
    counts = store.register(specs)
    store.close()
    print_plan(grid, specs, counts, "local", "1 worker(s)", "estimate: skipped")
    header = capsys.readouterr().out.splitlines()[0]
    assert "12 runs (0 new, 10 finished, 2 interrupted or not yet started (resumed), 0 failed before" in header
