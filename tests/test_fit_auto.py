"""`scaling fit --form auto`: the Chinchilla variant chosen by the user's own rolling-origin backtest, on
synthetic tables where one variant is known to be better; the table behind the choice printed and kept in the
law file; the same choice every time; too few runs refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import scaling

from scaling.fit import auto, chinchilla
from scaling.fit.data import runs_from_frame
from scaling.fit.estimators import ESTIMATORS
from scaling.fit.predictive import fold_masks
from scaling.law import ChinchillaLaw, FittedLaw

TRUE = ChinchillaLaw(E=1.9, A=450.0, B=1500.0, alpha=0.34, beta=0.31)
VOCAB = 100_000


def isoflop_table(noise: float = 0.004, seed: int = 0, budgets=(1e17, 4e17, 1.6e18, 6.4e18, 2.5e19, 1e20)):
    """Six sizes around TRUE's optimum per budget, lognormal noise on the loss."""
    rng = np.random.default_rng(seed)
    rows = [(n, c / (6 * n), c) for c in budgets for n in TRUE.compute_optimal(c)[0] * np.geomspace(1 / 6, 6, 6)]
    df = pd.DataFrame(rows, columns=["params", "tokens", "flops"])
    df["loss"] = TRUE.loss(df.params, df.tokens) * np.exp(noise * rng.standard_normal(len(df)))
    return df


def fit_auto(tmp_path, capsys, df: pd.DataFrame, *extra: str, name: str = "law.json", out: bool = True):
    """`scaling fit --form auto` on the table; with `out`, a law file too (and so the nested backtests that
    calibrate its prediction intervals: most of the time)."""
    csv = tmp_path / "runs.csv"
    df.to_csv(csv, index=False)
    law = ("--out", str(tmp_path / name)) if out else ()
    ran = scaling("fit", str(csv), "--form", "auto", *law, *extra, capsys=capsys)
    return ran, tmp_path / name


def test_auto_leaves_out_the_least_trained_runs_when_they_are_off_the_law(tmp_path, capsys):
    """The least-trained quarter of the runs lies 8% above the law (as short runs whose warmup dominates do):
    leaving them out predicts the held-out runs best, and the law file says so."""
    df = isoflop_table()
    per_param = df.tokens / df.params
    df.loc[per_param < per_param.quantile(0.25), "loss"] *= 1.08
    ran, law_path = fit_auto(tmp_path, capsys, df, "--backtest")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "--form auto: chose drop-least-trained by mean absolute % error" in ran.stdout
    assert "* drop-least-trained" in ran.stdout and "  chinchilla" in ran.stdout and "tied" in ran.stdout
    law = FittedLaw.load(law_path)
    table = {row["name"]: row for row in law.form_choice["table"]}
    assert law.form_choice["chosen"] == "drop-least-trained"
    assert table["drop-least-trained"]["mae_pct"] == min(r["mae_pct"] for r in table.values())
    assert table["drop-least-trained"]["mae_pct"] < table["chinchilla"]["mae_pct"]
    assert any("least-trained quarter" in reason for reason in law.excluded)
    assert law.n_points == len(df) - sum(law.excluded.values())
    # The intervals are calibrated on the choice redone in every fold of *all* the runs (nested), scoring the
    # held-out runs the chosen variant leaves out too: a backtest of the chosen runs alone would score fewer.
    assert "nested backtests" in law.calibration.method
    assert "the --form auto choice redone on each fold's runs (nested backtests): drop-least-trained in" in ran.stdout
    assert "not fitted" not in ran.stdout
    held = [m for _, _, m in fold_masks(runs_from_frame(df))]
    assert law.calibration.n_folds == len(held) and law.calibration.n_scores == sum(int(m.sum()) for m in held)
    # The choice scored as a procedure beside the plain form, on the same folds and runs, printed and kept.
    nested = law.form_choice["nested"]
    assert nested["folds"] == len(held) and nested["n_scored"] == law.calibration.n_scores
    assert (f"(nested backtests, {len(held)} folds): {nested['mae_pct']:.2f}% mean |error| on {nested['n_scored']} "
            f"held-out runs; the plain form on the same runs: {nested['plain_mae_pct']:.2f}%") in ran.stdout
    # Not the choice's own score, which was on the folds it won (the plain form lost there).
    assert nested["mae_pct"] != pytest.approx(table["drop-least-trained"]["mae_pct"], rel=1e-3)
    assert ("consider --form chinchilla" in ran.stdout) == (nested["plain_mae_pct"] < nested["mae_pct"])
    # Every prediction from the law says it too, and a law whose choice did better does not.
    assert nested["plain_mae_pct"] < nested["mae_pct"]  # on these runs (the dropped runs are 8% off in folds)
    raw = json.loads(law_path.read_text())
    raw["form_choice"]["nested"]["plain_mae_pct"] = nested["mae_pct"] + 1.0
    (tmp_path / "better.json").write_text(json.dumps(raw))
    for path, said in ((law_path, True), (tmp_path / "better.json", False)):
        pred = scaling("predict", "--law", str(path), "--params", "2e9", "--tokens", "4e10", "--json", capsys=capsys)
        warnings = json.loads(pred.stdout.splitlines()[-1])["warnings"]
        assert pred.returncode == 0 and any("consider refitting with --form chinchilla" in w for w in warnings) == said


def test_auto_counts_n_as_the_losses_do_when_the_table_has_the_columns(tmp_path, capsys):
    """Exact losses of N = non-embedding + head (Porian et al.'s count) on a large vocabulary: that count fits
    them exactly, every other count misfits the small models."""
    df = isoflop_table(noise=0.0)
    n_ne = df.params.to_numpy()
    d_model = np.round((n_ne * 64 / 12) ** (1 / 3))
    df = df.assign(non_embedding_params=n_ne, d_model=d_model, vocab_size=VOCAB, params=n_ne + 2 * VOCAB * d_model,
                   loss=TRUE.loss(n_ne + VOCAB * d_model, df.tokens))
    ran, _ = fit_auto(tmp_path, capsys, df, "--json", out=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    law = json.loads(ran.stdout.splitlines()[-1])
    assert law["form_choice"]["chosen"] == "N=non_embedding_with_head"
    assert law["param_convention"] == "non_embedding_with_head"
    assert {r["name"] for r in law["form_choice"]["table"]} >= {"N=non_embedding", "N=non_embedding_with_head"}
    assert law["alpha"] == pytest.approx(TRUE.alpha, rel=1e-3)


def test_auto_is_deterministic_given_the_seed_and_json_carries_the_table(tmp_path, capsys):
    """Two runs, the same choice, table and bootstrap interval. (Without --out: the law file's intervals are
    the nested backtests' in the test above; here the choice is the point.)"""
    df = isoflop_table(seed=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    runs = [fit_auto(tmp_path / d, capsys, df, "--bootstrap", "20", "--seed", "7", "--json", out=False)[0]
            for d in ("a", "b")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    one, two = (json.loads(r.stdout.splitlines()[-1]) for r in runs)
    for run in (one, two):
        run.pop("seconds")
    assert one == two
    assert one["form"] == "chinchilla"  # what was fitted: the chosen variant of the form
    assert one["form_choice"]["chosen"] in {r["name"] for r in one["form_choice"]["table"]}
    assert len(one["form_choice"]["folds"]) >= 2


def test_auto_with_too_few_runs_to_backtest_is_a_one_line_error(tmp_path, capsys):
    ran, law_path = fit_auto(tmp_path, capsys, isoflop_table(budgets=(1e18,)))  # 6 runs: enough to fit
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1
    assert "--form auto: 6 runs give " in ran.stderr and "backtest fold(s) that every variant can refit" in ran.stderr
    assert "2 are needed to choose by backtest" in ran.stderr
    assert not law_path.exists()


def test_tied_fit_ties_the_exponents_and_its_bootstrap_too():
    df = isoflop_table()
    fit = chinchilla.fit(df.params, df.tokens, df.loss, tied=True)
    e, a, b, alpha, beta = chinchilla.theta_to_params(fit.theta)[0]
    assert alpha == beta and 0.2 < alpha < 0.5
    untied = chinchilla.fit(df.params, df.tokens, df.loss)
    assert fit.objective >= untied.objective - 1e-12  # one constraint more: never a better fit in-sample
    counts = np.random.default_rng(0).multinomial(len(df), np.full(len(df), 1 / len(df)), size=8)
    boot = chinchilla.theta_to_params(chinchilla.bootstrap(df.params, df.tokens, df.loss, counts, fit.theta, True))
    assert np.array_equal(boot[:, 3], boot[:, 4]) and np.ptp(boot[:, 3]) > 0


# A real sweep of the bundled tiny grid with seed = 1 (scaling demo, 2026-12-01): at 16K-64K tokens the
# largest model is no better than the smaller ones, and several variants' fold refits run away to
# exponents whose predictions are NaN. Before, a NaN score won the choice (every comparison with NaN is
# false, so min() kept the first variant). The plain form fits all 12 runs to alpha = 33.6, which
# `scaling fit` refuses to write; the variant with the lowest backtest error, the smallest size left out,
# fits its 9 runs to alpha = -4.9.
TINY_SEED1 = pd.DataFrame({
    "params": [2112576, 2112576, 4249728, 6523008, 2112576, 4249728, 8795648, 6523008, 4249728, 8795648,
               6523008, 8795648],
    "tokens": [16384, 32256, 16384, 16384, 64000, 32256, 16384, 32256, 64000, 32256, 64000, 64000],
    "loss": [7.407192, 6.777054, 6.902024, 6.832226, 6.582736, 6.598437, 6.920074, 6.684394, 6.325730,
             6.654808, 6.358969, 6.611899]})


def test_nested_backtests_redo_the_choice_per_fold_and_fall_back_where_a_fold_is_too_small():
    """18 runs: the full table chooses, and so do the folds that keep enough runs; the fold that keeps 9
    runs cannot, is refitted with the full fit's choice, and says so, as does the calibration's method."""
    table = runs_from_frame(isoflop_table(budgets=(1e17, 4e17, 1.6e18)))
    tables = {"total": table}
    choice, variant = auto.choose(tables, "total")
    law = ESTIMATORS["chinchilla"].point(auto.chosen_table(tables, variant), None, dict(variant.options)).law
    cal, bt = auto.calibrate_choice(tables, "total", choice, law, auto.chosen_table(tables, variant), n_boot=0)
    masks = fold_masks(table)
    assert [f.name for f in bt.folds] == [name for name, _, _ in masks] and all(f.refused is None for f in bt.folds)
    fell_back = [f for f in bt.folds if auto.NOT_REDONE in f.variant]
    redone = [f for f in bt.folds if auto.NOT_REDONE not in f.variant]
    assert fell_back and redone
    assert all(f.variant.startswith(choice.chosen) for f in fell_back)
    for f in redone:  # the choice made on the fold's own runs, as `choose` makes it there
        held = next(m for name, _, m in masks if name == f.name)
        assert f.variant == auto.choose({"total": table.subset(~held)}, "total", choice.refits)[0].chosen
    assert f"in {len(redone)} of {len(bt.folds)} folds" in cal.method
    assert cal.n_scores == sum(int(m.sum()) for _, _, m in masks)  # every held-out run, the dropped ones too


@pytest.mark.slow  # 20 s: --form auto's nested backtests on 12 runs
def test_where_the_plain_form_gives_no_law_the_demo_lets_the_backtests_choose_one_that_does(tmp_path, capsys):
    """The seed-1 tiny sweep through the demo's fit step: the plain fit is refused in one line; --form auto
    passes over the variant whose fit on all the runs is degenerate, prints why, and writes the next one's
    law, calibrated. (Where the plain form gives a law, the demo takes it: tests/test_demo.py.)"""
    from scaling.commands.demo import fit_step

    seed1 = tmp_path / "seed1.csv"
    TINY_SEED1.to_csv(seed1, index=False)
    fit_step(str(seed1), str(tmp_path / "law.json"), str(tmp_path / "plots"), bootstrap=20)
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "outside [0.001, 10]" in err  # the plain fit's refusal, as a user sees it
    assert "; or --form auto, which lets these runs' own backtests choose a variant" in err
    assert "== no law from the plain form on these runs" in out and " --form auto" in out
    assert "passed over, no law: its fit on all 9 runs: alpha = -" in out  # printed with the table
    law = FittedLaw.load(tmp_path / "law.json")
    scores = {s["name"]: s for s in law.form_choice["table"]}
    # A refit that ran away is not comparable (its NaN score would win every min()), and never chosen.
    assert scores["chinchilla"]["mae_pct"] is None and "predicts no finite loss" in scores["chinchilla"]["refused"]
    chosen = scores[law.form_choice["chosen"]]
    assert np.isfinite(chosen["mae_pct"]) and chosen["passed_over"] is None and law.calibration is not None
    # The lowest backtest error among the variants whose fit on all the runs is a law to extrapolate with:
    # the best-scoring one is passed over, saying why.
    passed = scores["drop-smallest"]
    assert passed["mae_pct"] < chosen["mae_pct"] and passed["passed_over"].startswith("its fit on all 9 runs: alpha")
    assert all(s["mae_pct"] is None or s["passed_over"] or s["mae_pct"] >= chosen["mae_pct"] for s in scores.values())
    nested = law.form_choice["nested"]  # the plain form's fold refits that ran away are counted, not scored
    assert nested["plain_failed"] >= 1 and "more fold(s), left out of both" in out


def test_the_choice_table_keeps_its_columns_apart_when_a_variant_misses_by_thousands_of_percent():
    """A demo sweep (seed 1, 2026-12-03) printed drop-smallest's row as '104128.90%+4128.18%14050.58%': its
    10 runs and three errors, run together. Each column keeps a space before it, and ordinary rows line up."""
    from scaling.commands.fit import format_choice

    wild = auto.VariantScore("drop-smallest", "", "total", folds_fitted=4, n_scored=10, mae_pct=4128.9,
                             mean_error_pct=4128.18, max_abs_error_pct=14050.58)
    fine = auto.VariantScore("tied", "", "total", folds_fitted=6, n_scored=10, mae_pct=1.86,
                             mean_error_pct=-1.56, max_abs_error_pct=3.17)
    header, *rows = format_choice(auto.AutoChoice("tied", [fine, wild], ["a", "b", "c", "d"])).splitlines()[1:]
    assert rows[1].split()[-4:] == ["10", "4128.90%", "+4128.18%", "14050.58%"]
    assert rows[0].split()[-4:] == ["10", "1.86%", "-1.56%", "3.17%"]
    assert len(rows[0]) == len(header)  # the ordinary row ends under the header's last column
