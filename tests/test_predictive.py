"""Prediction intervals (`scaling.fit.predictive`): coverage on a synthetic ground truth, the parameter
intervals' coverage, few runs, growth with distance, and the calibration's law-file record."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gptcore.errors import UserError
from scaling.fit import chinchilla, predictive
from scaling.fit.data import RunTable, synthetic_grid
from scaling.fit.fitting import fit_runs
from scaling.law import PARAM_NAMES, ChinchillaLaw

TRUE = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)  # Epoch's refit


def grid_table(seed: int, noise: float = 0.008, sizes: int = 6, ratios: int = 6) -> RunTable:
    """Sizes 1e7..1e9 times 4..128 tokens per parameter, losses from TRUE times lognormal noise."""
    return synthetic_grid(TRUE, seed, noise, sizes, ratios)


def warm_point(law: ChinchillaLaw):
    """A refit from one start, the full fit's optimum (as the bootstrap refits start): fast for tests."""
    theta = chinchilla.params_to_theta(*(float(getattr(law, k)) for k in PARAM_NAMES))

    def point(train: RunTable) -> ChinchillaLaw:
        res = chinchilla.fit(train.params, train.tokens, train.loss, starts=theta[None, :], keep=1)
        return ChinchillaLaw(*chinchilla.theta_to_params(res.theta)[0])

    return point


def test_synthetic_truth_coverage():
    """Fit on the runs below the 70th percentile of compute, predict those above (up to ~80x the largest
    fitted C): over draws, 85-99% of them inside the 95% prediction interval, the true parameters inside
    their 95% bootstrap intervals at about that rate, and the bootstrap interval alone covering less."""
    inside, inside_boot, params_inside = [], [], []
    truth = np.array([getattr(TRUE, k) for k in PARAM_NAMES])
    for seed in range(8):
        table = grid_table(seed)
        below = table.flops <= np.quantile(table.flops, 0.7)
        train, test = table.subset(below), table.subset(~below)
        fit = fit_runs(train, "chinchilla", bootstrap=40, seed=seed, options={"keep": 10})
        cal, _ = predictive.calibrate_fit(train, fit.law, n_boot=15, seed=seed, fit_point=warm_point(fit.law))
        losses = fit.bootstrap_losses(test.params, test.tokens)
        boot_sd = predictive.log_spread(losses)
        lo, hi = np.percentile(losses, [2.5, 97.5], axis=0)
        for j in range(len(test)):
            pi = cal.interval(float(fit.law.loss(test.params[j], test.tokens[j])), test.params[j], test.tokens[j],
                              float(boot_sd[j]))
            assert pi.bounded
            inside.append(pi.low <= test.loss[j] <= pi.high)
            inside_boot.append(lo[j] <= test.loss[j] <= hi[j])
        params_inside.extend((np.array([fit.ci[k][0] for k in PARAM_NAMES]) <= truth)
                             & (truth <= np.array([fit.ci[k][1] for k in PARAM_NAMES])))
    coverage = float(np.mean(inside))
    assert 0.85 <= coverage <= 0.99, coverage
    assert np.mean(inside_boot) < coverage  # the parameter interval alone is not a prediction interval
    assert 0.8 <= np.mean(params_inside) <= 1.0


def test_small_sweeps_get_student_t_intervals_that_cover_and_say_so():
    """A dozen or so runs give fewer backtest errors than the 19 a 95% conformal rank needs: the interval's
    quantiles are then Student-t ones, and over draws of 12- and 16-run sweeps (fit below the 70th
    percentile of compute, predict above) 85-99% of the held-out larger runs fall inside."""
    inside = []
    for sizes, ratios in ((4, 3), (4, 4)):
        for seed in range(16):  # 8 draws held 72 of 72: too few to tell 97% from 100%
            table = grid_table(seed, sizes=sizes, ratios=ratios)
            below = table.flops <= np.quantile(table.flops, 0.7)
            train, test = table.subset(below), table.subset(~below)
            fit = fit_runs(train, "chinchilla", bootstrap=20, seed=seed, options={"keep": 10})
            cal, _ = predictive.calibrate_fit(train, fit.law, n_boot=10, seed=seed, fit_point=warm_point(fit.law))
            assert cal.n_scores < predictive.conformal_minimum(0.95) == 19, cal.n_scores
            assert cal.quantiles.startswith("Student-t") and "too few" in cal.quantiles
            boot_sd = predictive.log_spread(fit.bootstrap_losses(test.params, test.tokens))
            for j in range(len(test)):
                pi = cal.interval(float(fit.law.loss(test.params[j], test.tokens[j])), test.params[j],
                                  test.tokens[j], float(boot_sd[j]))
                assert pi.bounded and predictive.quantile_note(pi, cal).startswith("the prediction interval's")
                inside.append(pi.low <= test.loss[j] <= pi.high)
    assert len(inside) >= 140 and 0.85 <= np.mean(inside) <= 0.99, np.mean(inside)


def test_few_runs_give_an_unbounded_interval_said_as_such():
    table = grid_table(0, sizes=2, ratios=3)  # 6 runs: one fold leaves enough to refit, MIN_FOLDS = 2
    law = warm_point(TRUE)(table)
    cal, bt = predictive.calibrate_fit(table, law, n_boot=0, fit_point=warm_point(TRUE))
    pi = cal.interval(3.0, 2e9, 4e10, 0.01)
    assert not pi.bounded and pi.low is None and "unbounded: 1 backtest fold(s), 2 needed" in pi.reason
    assert pi.to_json()["interval"] is None


def test_interval_widens_with_distance_and_carries_the_multiples():
    table = grid_table(1)
    law = warm_point(TRUE)(table)
    cal, bt = predictive.calibrate_fit(table, law, n_boot=10, fit_point=warm_point(TRUE))
    assert cal.n_folds >= predictive.MIN_FOLDS and cal.growth_per_dex >= 0 and cal.misfit_sd >= 0
    # The law's own parameter spread grows with distance (this truth is a Chinchilla law, so that is the
    # only error that grows: the backtests' growth term may fit to 0); the interval grows with it.
    fit = fit_runs(table, "chinchilla", bootstrap=30, seed=1, options={"keep": 10})
    sizes = np.array([1e9, 1e10, 1e11])
    boot_sd = predictive.log_spread(fit.bootstrap_losses(sizes, 20 * sizes))
    widths, flat = [], []
    for n, sd in zip(sizes, boot_sd, strict=True):
        pi = cal.interval(float(law.loss(n, 20 * n)), n, 20 * n, float(sd))
        widths.append(math.log(pi.high / pi.low))
        same = cal.interval(float(law.loss(n, 20 * n)), n, 20 * n, 0.01)
        flat.append(math.log(same.high / same.low))
    assert widths[0] < widths[1] < widths[2]
    assert flat[0] <= flat[1] + 1e-12 <= flat[2] + 2e-12  # at a fixed parameter spread, never narrower out
    far = cal.interval(2.0, 1e11, 2e12, 0.0)
    assert far.where.params_multiple == pytest.approx(1e11 / table.params.max())
    assert far.where.tokens_multiple == pytest.approx(2e12 / table.tokens.max())
    assert far.beyond_backtests and not cal.interval(2.5, 1e9, 4e9, 0.0).beyond_backtests
    covered = predictive.leave_fold_out(bt, cal)
    rows = predictive.by_distance(bt, covered)
    assert sum(r["n"] for r in rows) == len(bt.errors)


def test_conformal_rank_past_n_is_unbounded():
    """The quantile of |z| at rank ceil((n + 1) 0.95): past n below 19 scores, the largest |z| at 19, and
    symmetric however the scores lean."""
    lo, hi = predictive.conformal_quantiles(np.linspace(-1, 1, 18), 0.95)
    assert math.isinf(lo) and math.isinf(hi)
    z = np.concatenate([np.linspace(-0.5, 0, 9), np.linspace(0.1, 2, 10)])  # 19 scores, leaning up
    assert predictive.conformal_quantiles(z, 0.95) == (-2.0, 2.0)
    lo, hi = predictive.conformal_quantiles(np.linspace(-1, 1, 79), 0.95)
    assert -1 < lo < -0.9 and 0.9 < hi < 1 and lo == -hi


def test_calibration_round_trip_and_malformed_records():
    table = grid_table(2)
    law = warm_point(TRUE)(table)
    cal, _ = predictive.calibrate_fit(table, law, n_boot=0, fit_point=warm_point(TRUE))
    assert predictive.Calibration.from_json(cal.to_json()) == cal
    raw = cal.to_json()
    for broken in ({**raw, "sigma_noise": "x"}, {k: v for k, v in raw.items() if k != "growth_per_dex"},
                   {**raw, "fitted": {"params_max": -1}}, {**raw, "level": 2.0}, {**raw, "misfit_sd": -0.1},
                   {**raw, "misfit_sd": "x"}, {**raw, "boot_scale": 0.5}, {**raw, "boot_scale": None},
                   {**raw, "floor_dof": 0}, {**raw, "floor_dof": "x"}, [1, 2]):
        with pytest.raises(UserError, match="prediction_calibration"):
            predictive.Calibration.from_json(broken)
    older = {k: v for k, v in raw.items() if k != "misfit_sd"}  # a law file from before the misfit term
    assert predictive.Calibration.from_json(older).misfit_sd == 0.0
    unscaled = {k: v for k, v in raw.items() if k != "boot_scale"}  # from before the bootstrap's inflation
    assert predictive.Calibration.from_json(unscaled).boot_scale == 1.0
    assert cal.floor_dof >= cal.n_folds - 1
    assert predictive.Calibration.from_json({k: v for k, v in raw.items() if k != "floor_dof"}).floor_dof is None


def test_effective_draws_count_a_fold_of_shared_errors_as_one_draw():
    """Kish's design effect: scores that are one offset per fold count as the folds, independent scores as
    themselves, and a mix in between; the Student-t floor's degrees of freedom follow, so independent
    errors get a narrower quantile than errors that move together within their folds."""
    rng = np.random.default_rng(3)
    folds = [f"f{i}" for i in range(5) for _ in range(20)]
    offsets = np.repeat(rng.normal(0, 1, 5), 20)
    assert predictive.effective_draws(offsets + 1e-9 * rng.normal(0, 1, 100), folds) == pytest.approx(5, rel=0.01)
    assert predictive.effective_draws(rng.normal(0, 1, 100), folds) > 70
    mixed = predictive.effective_draws(offsets + rng.normal(0, 1, 100), folds)
    assert 5 < mixed < 40

    def calibrated(e):
        errors = [predictive.HeldOutError(f, str(i), float(x), 0.0, predictive.Extrapolation(2.0, 2.0, 4.0))
                  for i, (f, x) in enumerate(zip(folds, e, strict=True))]
        bt = predictive.Backtest([predictive.Fold(f, "compute", 50, 20) for f in dict.fromkeys(folds)], errors)
        return predictive.calibrate(bt, 0.0, predictive.FittedRange(1.0, 1.0, 1.0))

    shared, independent = calibrated(0.01 * offsets), calibrated(0.01 * rng.normal(0, 1, 100))
    assert shared.floor_dof == pytest.approx(4, abs=0.05) and independent.floor_dof > 60
    assert shared.score_high > 2.7 > 2.1 > independent.score_high


def test_scale_fit_tells_a_constant_misfit_from_growth_with_distance():
    """Backtest errors of constant spread (a refit off by the same amount near and far) fit a scale that stays
    flat with distance, mostly misfit; errors whose spread is proportional to the distance fit a scale that
    grows from near 0, all growth."""
    rng = np.random.default_rng(0)
    d = np.tile(np.linspace(0.05, 1.0, 20), 50)
    none = np.zeros_like(d)

    def sd_at(fitted, where):
        return float(predictive.scale_sd(0.0, 0.0, fitted.misfit_sd, fitted.growth_per_dex, where))

    flat = predictive.fit_scale(rng.normal(0, 0.01, len(d)), d, none, 0.0)
    assert sd_at(flat, 0.05) == pytest.approx(0.01, rel=0.15) and sd_at(flat, 1.0) == pytest.approx(0.01, rel=0.15)
    assert flat.misfit_sd > flat.growth_per_dex
    growing = predictive.fit_scale(0.02 * d * rng.normal(0, 1, len(d)), d, none, 0.0)
    assert sd_at(growing, 1.0) == pytest.approx(0.02, rel=0.15) and sd_at(growing, 0.05) < 0.003


def test_scale_fit_inflates_the_bootstrap_when_the_errors_follow_it_and_not_otherwise():
    """Errors 2.5x the refits' bootstrap spread at each held-out run (a bootstrap too narrow by a constant
    factor, as a refit on fewer runs extrapolates worse), with no other trend in distance, fit as that
    inflation, not as growth; errors of the bootstrap's own size leave it at 1."""
    rng = np.random.default_rng(1)
    d = np.tile(np.linspace(0.05, 1.0, 20), 50)
    s_boot = np.tile(rng.uniform(0.002, 0.03, 20), 50)  # unrelated to the distance
    inflated = predictive.fit_scale(2.5 * s_boot * rng.normal(0, 1, len(d)), d, s_boot, 0.0)
    assert inflated.boot_scale == pytest.approx(2.5, rel=0.1) and inflated.growth_per_dex < 0.002
    honest = predictive.fit_scale(s_boot * rng.normal(0, 1, len(d)), d, s_boot, 0.0)
    assert honest.boot_scale == pytest.approx(1.0, abs=0.1) and honest.growth_per_dex < 0.002


# --- the CLI: fit stores the calibration, predict prints both intervals and warns far out


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A law file fitted by `scaling fit --out --backtest` on 36 synthetic runs, and the --json report."""
    import pandas as pd

    from tests.helpers import scaling

    tmp = tmp_path_factory.mktemp("calibrated")
    t = grid_table(4)
    pd.DataFrame({"params": t.params, "tokens": t.tokens, "loss": t.loss}).to_csv(tmp / "runs.csv", index=False)
    ran = scaling("fit", str(tmp / "runs.csv"), "--bootstrap", "20", "--backtest", "--out", str(tmp / "law.json"),
                  "--json")
    assert ran.returncode == 0, ran.stderr
    return tmp / "law.json", json.loads(ran.stdout.strip().splitlines()[-1]), t


def test_fit_backtest_reports_coverage_and_error_by_distance(fitted):
    law_path, report, table = fitted
    bt = report["prediction_backtest"]
    assert 0 <= bt["coverage_leave_fold_out"] <= 1 and bt["n_scored"] > 0
    assert sum(r["n"] for r in bt["by_distance"]) >= bt["n_scored"]
    assert {"mean_error_pct", "mean_abs_error_pct", "coverage", "flops_multiple"} <= set(bt["by_distance"][0])
    raw = json.loads(law_path.read_text())
    cal = predictive.Calibration.from_json(raw["prediction_calibration"])
    assert cal.fitted.params_max == table.params.max() and cal.n_folds >= predictive.MIN_FOLDS
    assert report["prediction_at_flops"][0]["interval"] is not None


def test_predict_prints_the_prediction_interval_apart_and_warns_only_far_out(fitted, capsys):
    from tests.helpers import scaling

    law_path, _, table = fitted
    inside = scaling("predict", "--law", str(law_path), "--params", "1e8", "--tokens", "2e9", "--json", capsys=capsys)
    near = json.loads(inside.stdout)
    assert near["ci"] is not None and near["prediction_interval"] is not None
    assert near["prediction_interval"][0] < near["ci"][0] and near["prediction_interval"][1] > near["ci"][1]
    assert near["extrapolation"]["params_multiple"] == pytest.approx(1e8 / table.params.max())
    assert near["warnings"] == []
    far = json.loads(scaling("predict", "--law", str(law_path), "--params", "1e12", "--tokens", "2e13", "--json",
                             capsys=capsys).stdout)
    assert far["extrapolation"]["tokens_multiple"] == pytest.approx(2e13 / table.tokens.max())
    assert far["prediction"]["beyond_backtests"] and "beyond the backtests' reach" in far["warnings"][0]
    text = scaling("predict", "--law", str(law_path), "--params", "1e12", "--tokens", "2e13", capsys=capsys).stdout
    assert "parameter interval" in text and "prediction interval" in text and "warning:" in text


def test_far_out_without_an_interval_the_warning_says_so_not_too_narrow(fitted):
    import dataclasses

    from scaling.law import FittedLaw

    law = FittedLaw.load(fitted[0])
    far = law.prediction_interval(1e12, 2e13)
    assert far.bounded and "may be too narrow" in predictive.extrapolation_warning(far, law.calibration)
    unbounded = dataclasses.replace(far, low=None, high=None, reason="too few backtest errors")
    warning = predictive.extrapolation_warning(unbounded, law.calibration)
    assert "no prediction interval" in warning and "too narrow" not in warning
    assert predictive.extrapolation_warning(law.prediction_interval(1e8, 2e9), law.calibration) is None


@pytest.mark.parametrize("change", [
    lambda c: c.pop("growth_per_dex"),
    lambda c: c.update(score_high="wide"),
    lambda c: c.update(fitted=None),
])
def test_a_law_file_with_malformed_interval_data_is_a_one_line_error(fitted, tmp_path, capsys, change):
    from tests.helpers import scaling

    raw = json.loads(fitted[0].read_text())
    change(raw["prediction_calibration"])
    (tmp_path / "law.json").write_text(json.dumps(raw))
    ran = scaling("predict", "--law", str(tmp_path / "law.json"), "--params", "1e9", "--tokens", "2e10",
                  capsys=capsys)
    assert ran.returncode == 2 and len(ran.stderr.strip().splitlines()) == 1
    assert "prediction_calibration is malformed" in ran.stderr


def test_plan_with_a_law_shows_the_prediction_interval_and_warns_only_far_out(fitted, capsys):
    from tests.helpers import scaling

    law_path, _, table = fitted
    args = ["plan", "--law", str(law_path), "--gpu", "h100-sxm"]
    near = json.loads(scaling(*args, "--params", "1e8", "--tokens", "2e9", "--json", capsys=capsys).stdout)
    pred = near["prediction"]
    assert pred["interval"] is not None and pred["interval"][0] < near["predicted_loss"] < pred["interval"][1]
    assert pred["interval"][0] < near["predicted_loss_interval"][0]  # wider than the parameter interval
    assert pred["extrapolation"]["params_multiple"] == pytest.approx(1e8 / table.params.max())
    assert pred["warnings"] == [] and pred["level"] == 0.95
    far = json.loads(scaling(*args, "--params", "1e12", "--tokens", "2e13", "--json", capsys=capsys).stdout)
    assert far["prediction"]["extrapolation"]["tokens_multiple"] == pytest.approx(2e13 / table.tokens.max())
    assert "beyond the backtests' reach" in far["prediction"]["warnings"][0]
    text = scaling(*args, "--params", "1e12", "--tokens", "2e13", capsys=capsys).stdout
    assert "Prediction for the planned run" in text and "95% prediction interval [" in text
    assert "beyond the fitted runs:" in text and "warning: the target is" in text
    published = json.loads(scaling("plan", "--law", "chinchilla", "--params", "1e8", "--tokens", "2e9", "--json",
                                   capsys=capsys).stdout)["prediction"]
    assert published["interval"] is None and "no backtest calibration" in published["reason"]
    assert json.loads(scaling("plan", "--params", "1e8", "--tokens", "2e9", "--json",
                              capsys=capsys).stdout)["prediction"] is None  # no --law: none asked for
