"""`scaling fit` and `scaling predict`: the estimators on synthetic data with known parameters and on the
published Chinchilla points (Besiroglu et al. 2024), the batched optimiser against plain scipy, the CLI and
its one-line errors, the law file, backtests and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import scaling
from scipy.optimize import minimize_scalar

from scaling.fit import chinchilla
from scaling.fit.data import epoch_chinchilla_table, load_runs, runs_from_frame
from scaling.fit.estimators import Refusal, isoflop_parabola, isoflop_point, lower_envelope
from scaling.fit.fitting import backtest, fit_runs, resample_counts
from scaling.law import EPOCH, PARAM_NAMES, ChinchillaLaw, FittedLaw

EPOCH_CSV = (
    Path(__file__).resolve().parents[1] / "analysis" / "data" / "epoch_chinchilla" / "svg_extracted_data.csv"
)
TRUE = ChinchillaLaw(E=1.9, A=450.0, B=1500.0, alpha=0.34, beta=0.31)


def isoflop_sweep(
    noise: float = 0.005,
    seed: int = 0,
    budgets=(1e17, 4e17, 1.6e18, 6.4e18, 2.5e19, 1e20),
    per_budget: int = 9,
) -> pd.DataFrame:
    """An isoFLOP grid around TRUE's frontier: per budget, sizes from N_opt/8 to 8 N_opt, lognormal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = TRUE.compute_optimal(c)
        for n in n_opt * np.geomspace(1 / 8, 8, per_budget):
            d = c / (6 * n)
            rows.append((n, d, c, TRUE.loss(n, d) * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows, columns=["params", "tokens", "flops", "loss"])


def curves(noise: float = 0.003, seed: int = 0) -> pd.DataFrame:
    """Training curves: 24 sizes evaluated at 80 token counts (checkpoints), the input of Approach 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in np.geomspace(1e7, 3e9, 24):
        for d in np.geomspace(1e8, 1e12, 80):
            rows.append((f"n{n:.3g}", n, d, TRUE.loss(n, d) * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows, columns=["run_id", "params", "tokens", "loss"])


def write_csv(tmp_path: Path, df: pd.DataFrame, name: str = "runs.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def assert_inside(result, truth: dict[str, float]) -> None:
    for name, value in truth.items():
        lo, hi = result.ci[name]
        assert lo <= value <= hi, f"{result.form}: true {name}={value} outside [{lo}, {hi}]"


# --- the Approach 3 numerics


def test_initial_grid_is_hoffmanns():
    grid = chinchilla.initial_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 0])) == [0, 5, 10, 15, 20, 25]  # a = log A
    assert sorted(set(grid[:, 2])) == [-1, -0.5, 0, 0.5, 1]  # e = log E
    assert sorted(set(grid[:, 3])) == [0, 0.5, 1, 1.5, 2]  # alpha


def test_objective_gradient_matches_finite_differences():
    df = isoflop_sweep()
    args = np.log(df.params.to_numpy()), np.log(df.tokens.to_numpy()), np.log(df.loss.to_numpy())
    theta = np.array([[6.0, 7.0, 0.6, 0.3, 0.35], [5.0, 8.0, 0.7, 0.25, 0.4]])
    f, g = chinchilla.objective(theta, *args)
    eps = 1e-6
    for j in range(5):
        step = np.zeros(5)
        step[j] = eps
        numeric = (
            chinchilla.objective(theta + step, *args)[0] - chinchilla.objective(theta - step, *args)[0]
        ) / (2 * eps)
        np.testing.assert_allclose(g[:, j], numeric, rtol=1e-4, atol=1e-9)
    assert np.all(f > 0)


@pytest.fixture(scope="module")
def epoch_table():
    return runs_from_frame(epoch_chinchilla_table(EPOCH_CSV))


def test_batched_fit_reaches_the_reference_optimum(epoch_table):
    """The vectorised, pruned grid search finds what scipy L-BFGS-B from each start finds (same starts)."""
    starts = chinchilla.initial_grid()[np.random.default_rng(0).choice(4500, 12, replace=False)]
    t = epoch_table
    fast = chinchilla.fit(t.params, t.tokens, t.loss, starts=starts, keep=6)
    ref = chinchilla.reference_fit(t.params, t.tokens, t.loss, starts=starts)
    assert fast.objective <= ref.objective * (1 + 1e-9)
    np.testing.assert_allclose(
        chinchilla.theta_to_params(fast.theta), chinchilla.theta_to_params(ref.theta), rtol=2e-3
    )


def test_chinchilla_recovers_epochs_published_fit(epoch_table):
    """Besiroglu et al. 2024 report E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658 (240 points)."""
    assert len(epoch_table) == 240 and sum(epoch_table.excluded.values()) == 5
    result = fit_runs(epoch_table, "chinchilla")
    p = result.params
    assert p["E"] == pytest.approx(EPOCH.E, rel=0.005)
    assert p["alpha"] == pytest.approx(EPOCH.alpha, abs=0.005)
    assert p["beta"] == pytest.approx(EPOCH.beta, abs=0.005)
    # A and B sit in a long flat valley with alpha and beta (their bootstrap SEs are 124 and 1293): 5% apart.
    assert p["A"] == pytest.approx(EPOCH.A, rel=0.05)
    assert p["B"] == pytest.approx(EPOCH.B, rel=0.05)
    assert result.a == pytest.approx(EPOCH.a, abs=0.005)


def test_frontier_is_the_closed_form_the_planner_uses():
    """N_opt from Hoffmann's eq. 4 is the numeric minimiser of L(N, C/6N); the fit hands out that formula."""
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    for c in (1e19, 5.76e23):
        best = minimize_scalar(
            lambda x, c=c: law.loss(np.exp(x), c / (6 * np.exp(x))),
            bounds=(10, 40),
            method="bounded",
            options={"xatol": 1e-10},
        )
        n_opt, d_opt = law.compute_optimal(c)
        assert n_opt == pytest.approx(np.exp(best.x), rel=1e-4)
        assert 6 * n_opt * d_opt == pytest.approx(c)
    result = fit_runs(runs_from_frame(isoflop_sweep()), "vpnls")
    c = np.array([1e21, 1e23])
    np.testing.assert_allclose(result.compute_optimal(c), result.law.compute_optimal(c))


# --- synthetic recovery inside bootstrap intervals, per estimator


@pytest.mark.parametrize("form", ["chinchilla", "vpnls"])
def test_loss_law_forms_recover_known_params(form):
    result = fit_runs(runs_from_frame(isoflop_sweep()), form, bootstrap=150, seed=1)
    assert_inside(result, {k: getattr(TRUE, k) for k in PARAM_NAMES} | {"a": TRUE.a, "b": TRUE.b})
    assert set(result.ci) >= {"E", "A", "B", "alpha", "beta", "a", "b"}
    row = result.details["at_flops"][0]
    n_true, _ = TRUE.compute_optimal(row["flops"])
    assert row["ci"]["N_opt"][0] <= n_true <= row["ci"]["N_opt"][1]
    assert row["ci"]["loss"][0] <= TRUE.loss(*TRUE.compute_optimal(row["flops"])) <= row["ci"]["loss"][1]
    assert result.warnings == []


def test_isoflop_recovers_the_frontier_exponents():
    result = fit_runs(runs_from_frame(isoflop_sweep()), "isoflop", bootstrap=150, seed=1)
    assert_inside(result, {"a": TRUE.a, "b": TRUE.b})
    assert len(result.details["budgets"]) == 6 and result.details["refused"] == []


def test_envelope_recovers_the_frontier_exponent_from_training_curves():
    # The rows of one training curve are not independent draws: resample whole model sizes.
    result = fit_runs(runs_from_frame(curves()), "envelope", bootstrap=150, seed=1, by="size")
    assert_inside(result, {"a": TRUE.a})
    assert result.a == pytest.approx(TRUE.a, abs=0.02)


def test_kaplan_recovers_a_power_law_in_n():
    rng = np.random.default_rng(3)
    n = np.repeat(np.geomspace(1e6, 1e9, 8), 3)
    d = np.tile([1e9, 3e9, 1e10], 8)
    loss = (8.8e13 / n) ** 0.076 * np.exp(0.002 * rng.standard_normal(len(n)))
    result = fit_runs(
        runs_from_frame(pd.DataFrame({"params": n, "tokens": d, "loss": loss})),
        "kaplan",
        bootstrap=150,
        seed=0,
    )
    assert_inside(result, {"alpha_N": 0.076})
    assert result.a is None and result.law is None


def test_bootstrap_by_size_resamples_whole_sizes():
    table = runs_from_frame(isoflop_sweep())
    counts = resample_counts(table, 5, seed=0, by="size")
    for row in counts:
        for n in np.unique(table.params):  # every row of one size is drawn the same number of times
            assert len(set(row[table.params == n])) == 1
    result = fit_runs(table, "vpnls", bootstrap=40, seed=0, by="size")
    assert result.ci["alpha"][0] < result.params["alpha"] < result.ci["alpha"][1]


def test_warns_when_a_term_is_not_supported_by_the_data():
    """No data dependence at all (B = 0): vpnls puts B on its bound 0 and says so."""
    df = isoflop_sweep(noise=0.002)
    df["loss"] = 1.9 + 450.0 / df.params**0.34 * np.exp(
        0.002 * np.random.default_rng(0).standard_normal(len(df))
    )
    result = fit_runs(runs_from_frame(df), "vpnls", bootstrap=30, seed=0)
    assert any("bound" in w or "not constrained" in w for w in result.warnings), result.warnings


# --- isoflop refusals


def test_isoflop_parabola_refuses_with_typed_reasons():
    x = np.log(np.geomspace(1e7, 1e9, 5))
    assert isoflop_parabola(x[:2], np.array([3.0, 2.9]))[1] is Refusal.TOO_FEW_POINTS
    assert isoflop_parabola(x, -((x - x.mean()) ** 2))[1] is Refusal.NOT_CONVEX
    assert isoflop_parabola(x, (x - x.max() - 3) ** 2)[1] is Refusal.MINIMUM_OUTSIDE
    coef, why = isoflop_parabola(x, (x - x.mean()) ** 2 + 2)
    assert why is None and -coef[1] / (2 * coef[0]) == pytest.approx(x.mean())


def test_isoflop_refuses_when_too_few_budgets_have_a_minimum():
    df = isoflop_sweep(budgets=(1e18, 1e19))
    df = df[df.params < df.groupby("flops").params.transform("median")]  # only the left arm of each parabola
    with pytest.raises(Exception, match="minimum_outside|not_convex"):
        isoflop_point(runs_from_frame(df), None, {})


def test_lower_envelope_keeps_only_improving_points():
    flops = np.array([1, 2, 3, 4, 5.0])
    loss = np.array([3.0, 3.1, 2.5, 2.6, 2.0])
    assert lower_envelope(flops, loss).tolist() == [0, 2, 4]


# --- backtest


def test_backtest_holds_out_each_budget_and_the_largest_size():
    table = runs_from_frame(isoflop_sweep())
    folds = backtest(table, "vpnls")
    assert [f["held_out"].split()[0] for f in folds] == ["budget"] * 6 + ["largest"]
    assert folds[0]["held_out"].startswith("budget 1e+20")
    for f in folds:
        assert f["n_test"] > 0 and f["n_train"] + f["n_test"] == len(table)
        assert f["mae"] < 0.05  # 0.5% noise on losses near 2-3: held-out errors of a few hundredths at most
    with pytest.raises(Exception, match="predicts loss"):
        backtest(table, "isoflop")


# --- the CLI


def test_fit_json_law_file_and_predict(tmp_path, capsys):
    df = isoflop_sweep()
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    df["status"] = "completed"
    extra = pd.DataFrame(
        {
            "run_id": ["bad1", "bad2", "bad3"],
            "params": [1e8, 2e8, 3e8],
            "tokens": [1e9] * 3,
            "flops": [6e17, 1.2e18, 1.8e18],
            "loss": [np.nan, 9.0, np.nan],
            "status": ["diverged", "diverged", "failed"],
            "reason": ["loss nan", "", "OOM"],
        }
    )
    src = write_csv(tmp_path, pd.concat([df, extra]))
    law_path = tmp_path / "law.json"
    code, out, _ = scaling(
        "fit",
        str(src),
        "--bootstrap",
        "50",
        "--seed",
        "3",
        "--json",
        "--out",
        str(law_path),
        "--plot",
        str(tmp_path / "plots"),
        capsys=capsys,
    )
    assert code == 0
    s = json.loads(out.strip().splitlines()[-1])
    for key in (
        "form",
        "E",
        "A",
        "B",
        "alpha",
        "beta",
        "a",
        "b",
        "ci",
        "n_points",
        "excluded",
        "objective",
        "seconds",
    ):
        assert key in s
    assert s["n_points"] == len(df)
    assert s["excluded"] == {"diverged: loss nan": 1, "diverged": 1, "failed: OOM": 1}
    assert set(s["ci"]) == {"E", "A", "B", "alpha", "beta", "a", "b"}
    assert s["a"] == pytest.approx(s["beta"] / (s["alpha"] + s["beta"]))

    law = FittedLaw.load(law_path)
    assert law.law.alpha == pytest.approx(s["alpha"]) and law.bootstrap.shape == (50, 5)
    assert law.rows["n"] == len(df) and len(law.rows["row_sha256"]) == len(df)
    assert law.options["seed"] == 3 and law.param_convention == "total"
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["frontier.png", "isoflop.png", "loss_vs_compute.png", "parity.png", "residuals.png"]
    assert len(list((tmp_path / "plots").glob("*.svg"))) == 5

    code, out, _ = scaling(
        "predict", "--law", str(law_path), "--params", "400M", "--tokens", "8B", "--json", capsys=capsys
    )
    p = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and p["loss"] == pytest.approx(law.law.loss(4e8, 8e9))
    assert p["ci"][0] <= p["loss"] <= p["ci"][1]
    assert abs(p["loss"] - TRUE.loss(4e8, 8e9)) < 0.05


def test_fit_reads_a_sweep_directory_and_the_non_embedding_convention(tmp_path, capsys):
    df = isoflop_sweep()
    df["non_embedding_params"] = df.params * 0.8
    df["status"], df["reason"] = "completed", ""
    write_csv(tmp_path, df, "sweep.csv")
    code, out, _ = scaling(
        "fit", str(tmp_path), "--form", "vpnls", "--param-convention", "non_embedding", "--json", capsys=capsys
    )
    s = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and s["param_convention"] == "non_embedding"
    assert s["A"] == pytest.approx(TRUE.A * 0.8**TRUE.alpha, rel=0.2)  # A N^-alpha = A' (0.8 N)^-alpha


BAD_INPUTS = {
    "empty file": ("", "is empty"),
    "missing columns": ("params,loss\n1e8,3.0\n2e8,2.9\n", "lacks column(s) tokens"),
    "non-positive values": ("params,tokens,loss\n1e8,1e9,3.0\n2e8,-1e9,2.9\n", "must be positive"),
    "fewer points than parameters": (
        "params,tokens,loss\n1e8,1e9,3.0\n2e8,1e9,2.9\n3e8,2e9,2.8\n",
        "the table has only 3",
    ),
    "a single model size": (
        "params,tokens,loss\n"
        + "".join(f"1e8,{d:.3g},{3 - i / 10}\n" for i, d in enumerate(np.geomspace(1e9, 1e11, 8))),
        "at least 2 model sizes",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    text, message = BAD_INPUTS[case]
    src = tmp_path / "runs.csv"
    src.write_text(text)
    law_path = tmp_path / "law.json"
    law_path.write_text("keep me")
    code, out, err = scaling("fit", str(src), "--out", str(law_path), capsys=capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("scaling fit: error:") and message in err
    assert law_path.read_text() == "keep me"


def test_fit_never_writes_its_law_over_a_file_that_is_not_a_law(tmp_path, capsys):
    """`--out` naming the runs CSV itself (or a sweep's own files) is refused; an old law file is replaced."""
    src = write_csv(tmp_path, isoflop_sweep())
    before = src.read_bytes()
    code, _, err = scaling("fit", str(src), "--out", str(src), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is not a law file" in err
    assert src.read_bytes() == before
    law_path = tmp_path / "law.json"
    assert scaling("fit", str(src), "--out", str(law_path), capsys=capsys)[0] == 0
    assert scaling("fit", str(src), "--out", str(law_path), "--seed", "1", capsys=capsys)[0] == 0  # a re-fit


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1", "--bootstrap", "2"], "--seed must be 0 or more"),
    (["--at-flops", ","], "--at-flops: no budgets"),
])
def test_bad_fit_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    code, _, err = scaling("fit", str(write_csv(tmp_path, isoflop_sweep())), *argv, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_a_csv_with_more_fields_than_its_header_is_refused(tmp_path, capsys):
    df = isoflop_sweep()
    src = tmp_path / "ragged.csv"
    src.write_text("params,tokens,loss\n" + "".join(f"{r.params},{r.tokens},{r.loss},x\n" for r in df.itertuples()))
    code, _, err = scaling("fit", str(src), capsys=capsys)
    assert code == 2 and "more fields than the header" in err


@pytest.mark.parametrize("field, value, message", [
    ("ci_level", "abc", "ci_level must be a number in (0, 1)"),
    ("ci_level", 5, "ci_level must be a number in (0, 1)"),
    ("bootstrap_params", [[1.0, 2.0]], "bootstrap_params must be rows of"),
    ("bootstrap_params", [["a", "b", "c", "d", "e"]], "bootstrap_params must be rows of"),
    ("ci", [1, 2], "ci must be an object"),
])
def test_a_law_file_with_malformed_intervals_is_a_one_line_error(tmp_path, capsys, field, value, message):
    src = write_csv(tmp_path, isoflop_sweep())
    law_path = tmp_path / "law.json"
    assert scaling("fit", str(src), "--out", str(law_path), "--bootstrap", "3", capsys=capsys)[0] == 0
    raw = json.loads(law_path.read_text())
    raw[field] = value
    law_path.write_text(json.dumps(raw))
    code, _, err = scaling("predict", "--law", str(law_path), "--params", "124M", "--tokens", "2.5B", capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.parametrize("name", ["chinchilla", "epoch"])
def test_predict_reads_a_published_law_by_name(capsys, name):
    from scaling.law import PUBLISHED

    code, out, _ = scaling("predict", "--law", name, "--params", "70B", "--tokens", "1.4T", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["loss"] == pytest.approx(PUBLISHED[name].loss(70e9, 1.4e12))


def test_single_size_is_refused_by_isoflop_and_bad_predict_inputs(tmp_path, capsys):
    src = write_csv(tmp_path, isoflop_sweep().assign(params=1e8))
    code, _, err = scaling("fit", str(src), "--form", "isoflop", capsys=capsys)
    assert code == 2 and "at least 3 model sizes" in err
    code, _, err = scaling(
        "predict", "--law", str(tmp_path / "none.json"), "--params", "1B", "--tokens", "1T", capsys=capsys
    )
    assert code == 2 and "does not exist" in err
    code, _, err = scaling("fit", str(src), "--form", "isoflop", "--out", str(tmp_path / "x.json"), capsys=capsys)
    assert code == 2 and not (tmp_path / "x.json").exists()


def test_a_law_whose_loss_rises_with_size_is_not_written(tmp_path, capsys):
    """Bigger models doing worse (too few tokens, a bad LR) fit alpha < 0: no law file that launch would refuse."""
    df = isoflop_sweep(noise=0.002)
    df["loss"] = 2.0 + 0.01 * np.log(df.params) + 400.0 / df.tokens**0.3
    law_path = tmp_path / "law.json"
    law_path.write_text("keep me")
    code, _, err = scaling("fit", str(write_csv(tmp_path, df)), "--out", str(law_path), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "alpha = -" in err and "cannot be extrapolated" in err
    assert law_path.read_text() == "keep me"


def test_a_law_the_reader_would_refuse_is_not_written(tmp_path, capsys):
    """Loss that only steps down once N passes the smallest size fits an exponent in the thousands: the fit
    refuses to write it by the rule the law reader applies, so no law file exists that launch would refuse."""
    df = isoflop_sweep(noise=0.0)
    smallest = df.params.min()
    df["loss"] = 2.0 + np.where(df.params > smallest, 0.0, 0.5) + 400.0 / df.tokens**0.3
    law_path = tmp_path / "law.json"
    code, _, err = scaling("fit", str(write_csv(tmp_path, df)), "--out", str(law_path), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "outside [0.001, 10]" in err and "cannot be extrapolated" in err
    assert not law_path.exists()


def test_load_runs_reports_a_directory_without_a_sweep_table(tmp_path):
    with pytest.raises(Exception, match="without sweep.csv"):
        load_runs(tmp_path)


def test_iso_n_curves_meet_each_run_at_its_own_flops_count():
    """Points sit at the trainer's FLOPs, not 6ND: each size's curve uses that size's FLOPs per token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots import plot_loss_vs_compute

    df = isoflop_sweep(noise=0.0, per_budget=3, budgets=(1e17, 1e18))
    df["flops"] = df["flops"] * np.where(df.params < df.params.median(), 0.55, 1.1)  # embedding-heavy / attention
    table = runs_from_frame(df)
    fig, ax = plt.subplots()
    result = FittedLaw.of(TRUE, objective=0.0, n_points=len(df))
    plot_loss_vs_compute(result, table, ax)
    iso_n = ("_", "the law at each N")  # the first iso-N curve carries the legend entry, the rest none
    curves = [line for line in ax.get_lines() if line.get_label().startswith(iso_n)]
    assert len(curves) == len(np.unique(table.params))
    for line, n in zip(curves, np.unique(table.params), strict=True):
        c, loss = (np.log(v) for v in line.get_data())
        for flops, d in zip(table.flops[table.params == n], table.tokens[table.params == n], strict=True):
            assert np.interp(np.log(flops), c, loss) == pytest.approx(np.log(TRUE.loss(n, d)), abs=1e-3)
    plt.close(fig)


# --- one law: vectorised over parameter sets, one type in memory and on disk


def test_many_laws_at_once_agree_with_each_law_alone():
    """`from_rows` evaluates K laws in one broadcast: row k of the result is law k evaluated by itself."""
    rows = np.array([[1.9, 450.0, 1500.0, 0.34, 0.31], [1.7, 400.0, 410.0, 0.34, 0.28], [2.0, 90.0, 900.0, 0.2, 0.4]])
    many = ChinchillaLaw.from_rows(rows)
    n, d, c = np.array([1e8, 4e9]), np.array([2e9, 8e10]), np.array([1e20, 1e23])
    for k, row in enumerate(rows):
        one = ChinchillaLaw(*row)
        np.testing.assert_array_equal(many.loss(n, d)[k], one.loss(n, d))
        for got, want in zip(many.compute_optimal(c), one.compute_optimal(c), strict=True):
            np.testing.assert_array_equal(got[k], want)
        assert many.a[k, 0] == one.a and many.b[k, 0] == one.b


def test_a_saved_fit_loads_as_the_same_law(tmp_path):
    """save -> load keeps what the planner, launch and the report read, and predicts the same intervals."""
    from scaling.fit.fitting import law_for_file

    result = law_for_file(fit_runs(runs_from_frame(isoflop_sweep()), "vpnls", bootstrap=20, seed=2))
    path = tmp_path / "law.json"
    result.save(path)
    loaded = FittedLaw.load(path)
    assert loaded.law == result.law and loaded.form == "vpnls" and loaded.params == result.params
    np.testing.assert_array_equal(loaded.bootstrap, result.bootstrap)
    assert loaded.ci == result.ci and loaded.options == result.options and loaded.rows == result.rows
    assert loaded.n_points == result.n_points and loaded.warnings == result.warnings
    assert loaded.objective == result.objective and loaded.excluded == result.excluded
    assert loaded.details["at_flops"] == result.details["at_flops"]
    assert loaded.predict_loss(4e8, 8e9) == result.predict_loss(4e8, 8e9)
    np.testing.assert_array_equal(loaded.bootstrap_frontiers([1e21])[0], result.bootstrap_frontiers([1e21])[0])


def test_a_law_file_in_the_first_writers_shape_still_loads(tmp_path):
    """A scaling-law/1 file as the earlier writer left it (no objective, n_points, warnings), with a key this
    version does not know: it loads, predicts with its replicates, and a re-save keeps the unknown key."""
    old = {"schema": "scaling-law/1", "form": "chinchilla",
           "params": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}, "a": 0.4516, "b": 0.5484,
           "ci": {}, "ci_level": 0.9, "param_convention": "non_embedding", "fit_options": {},
           "rows": {"n": 12, "source": "sweep.csv"}, "bootstrap_params": [[1.6, 406.4, 410.7, 0.34, 0.28],
                                                                         [1.8, 406.4, 410.7, 0.34, 0.28]],
           "note": "kept"}
    path = tmp_path / "law.json"
    path.write_text(json.dumps(old))
    law = FittedLaw.load(path)
    assert law.law == ChinchillaLaw(1.69, 406.4, 410.7, 0.34, 0.28) and law.n_points == 12
    assert law.param_convention == "non_embedding" and law.n_bootstrap == 2 and np.isnan(law.objective)
    point, (lo, hi) = law.predict_loss(1e8, 2e9)
    assert point == pytest.approx(law.law.loss(1e8, 2e9))
    # the replicates predict point - 0.09 and point + 0.11; a 90% interval cuts 5% of that span off each end
    assert lo == pytest.approx(point - 0.09 + 0.01) and hi == pytest.approx(point + 0.11 - 0.01)
    law.save(path)
    assert json.loads(path.read_text())["note"] == "kept" and FittedLaw.load(path).rows == old["rows"]
