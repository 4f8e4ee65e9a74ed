"""Fit a run table with any estimator, bootstrap it, warn about weak parameters, backtest it."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from gptcore.errors import UserError
from scaling.fit import chinchilla
from scaling.fit.data import RunTable
from scaling.fit.estimators import ESTIMATORS, FORMS, budget_groups
from scaling.law import PARAM_NAMES, ChinchillaLaw, FittedLaw, extrapolation_problem
from scaling.units import format_factor, format_interval

BOOTSTRAP_BY = ("run", "size")
EXPONENTS = {"alpha", "beta", "a", "b", "alpha_N", "alpha_D", "alpha_C"}
# Coefficients judged by their interval ratio. Not k_N, k_D, N_c, D_c, C_c: those are values at C, N or D = 1
# (or where the loss would reach 1), far outside any data, where a small change of exponent moves them by
# orders of magnitude; the N_opt/D_opt intervals at real budgets carry their uncertainty instead.
SCALES = {"E", "A", "B"}


def check_table(table: RunTable, form: str) -> None:
    """The one-line refusals: unknown form, fewer points than parameters, too few model sizes."""
    if form not in ESTIMATORS:
        raise UserError(f"unknown form {form!r}; use one of {', '.join(FORMS)}")
    est = ESTIMATORS[form]
    if len(table) < est.min_points:
        raise UserError(
            f"{form} needs at least {est.min_points} completed runs (no fewer points than parameters); "
            f"the table has only {len(table)}"
        )
    if table.n_sizes < est.min_sizes:
        raise UserError(
            f"{form} needs runs of at least {est.min_sizes} model sizes; the table has "
            f"{table.n_sizes} ({', '.join(f'{n:.3g}' for n in np.unique(table.params))})"
        )


def resample_counts(table: RunTable, k: int, seed: int, by: str = "run") -> np.ndarray:
    """K bootstrap resamples as counts per row (K, n): rows drawn with replacement, or whole model sizes."""
    if by not in BOOTSTRAP_BY:
        raise UserError(f"--bootstrap-by must be one of {', '.join(BOOTSTRAP_BY)}, got {by!r}")
    rng = np.random.default_rng(seed)
    n = len(table)
    if by == "run":
        draws = rng.integers(0, n, size=(k, n))
        return np.stack([np.bincount(row, minlength=n) for row in draws])
    sizes, size_of_row = np.unique(table.params, return_inverse=True)
    draws = rng.integers(0, len(sizes), size=(k, len(sizes)))
    per_size = np.stack([np.bincount(row, minlength=len(sizes)) for row in draws])
    return per_size[:, size_of_row]


def fit_runs(
    table: RunTable,
    form: str = "chinchilla",
    bootstrap: int = 0,
    seed: int = 0,
    by: str = "run",
    ci_level: float = 0.95,
    at_flops=None,
    options: dict | None = None,
) -> FittedLaw:
    """The point fit, then (with bootstrap > 0) K refits on resamples, intervals and warnings."""
    check_table(table, form)
    if not 0 < ci_level < 1:
        raise UserError(f"the interval level must be between 0 and 1, got {ci_level}")
    options = dict(options or {})
    t0 = time.perf_counter()
    point = ESTIMATORS[form].point(table, None, options)
    result = FittedLaw(
        form=form,
        params=point.params,
        law=point.law,
        objective=point.objective,
        n_points=len(table),
        param_convention=table.param_convention,
        excluded=dict(table.excluded),
        options={"form": form, "bootstrap": bootstrap, "seed": seed, "bootstrap_by": by, **options},
        details=point.details,
        ci_level=ci_level,
        rows=table.rows_record(),
    )
    warnings = []
    if bootstrap > 0:
        boot = _bootstrap_params(table, form, point.params, resample_counts(table, bootstrap, seed, by), options)
        failed = int(np.isnan(boot).any(axis=1).sum())
        if failed:
            warnings.append(f"{failed} of {bootstrap} bootstrap refits failed (refused) and are left out")
        result = replace(result, bootstrap=boot)
        result = replace(result, ci=_intervals(result))
    if result.has_frontier:
        result = replace(result, details={**result.details, "at_flops": _at_flops(result, table, at_flops)})
    warnings += parameter_warnings(result)
    return replace(result, warnings=warnings, seconds=time.perf_counter() - t0)


def _intervals(result: FittedLaw) -> dict[str, list[float]]:
    """Each parameter's interval over the replicates, and a's and b's where the form has a loss law."""
    ci = {name: result.interval(result.bootstrap[:, j]) for j, name in enumerate(result.params)}
    reps = result.replicates()
    if isinstance(reps, ChinchillaLaw):
        ci["a"], ci["b"] = result.interval(reps.a[:, 0]), result.interval(reps.b[:, 0])
    return ci


def _bootstrap_params(
    table: RunTable, form: str, params: dict, counts: np.ndarray, options: dict
) -> np.ndarray:
    """Refitted params per replicate (K, len(params)); NaN rows where a refit was refused."""
    if form == "chinchilla":  # all replicates at once, batched, from the point fit
        theta0 = chinchilla.params_to_theta(*(params[k] for k in PARAM_NAMES))
        return chinchilla.theta_to_params(
            chinchilla.bootstrap(table.params, table.tokens, table.loss, counts, theta0,
                                 tied=bool(options.get("tie_exponents")))
        )
    est = ESTIMATORS[form]
    rows = []
    for c in counts:
        try:
            refit = est.point(table.subset(np.repeat(np.arange(len(table)), c)), params, options)
            rows.append([refit.params[k] for k in params])
        except UserError:
            rows.append([np.nan] * len(params))
    return np.array(rows, dtype=float)


def _at_flops(result: FittedLaw, table: RunTable, at_flops) -> list[dict]:
    """N_opt, D_opt (and the loss there) at given budgets, default the largest in the data and 10x beyond."""
    budgets = np.atleast_1d(
        np.asarray(at_flops if at_flops is not None else [table.flops.max(), 10 * table.flops.max()], float)
    )
    n_opt, d_opt = result.compute_optimal(budgets)
    boot = result.bootstrap_frontiers(budgets)
    loss = None if result.law is None else result.law.loss(n_opt, d_opt)
    boot_loss = result.bootstrap_losses(n_opt, d_opt)
    out = []
    for i, c in enumerate(budgets):
        row = {"flops": float(c), "N_opt": float(n_opt[i]), "D_opt": float(d_opt[i]), "ci": {}}
        if loss is not None:
            row["loss"] = float(loss[i])
        if boot is not None:
            row["ci"]["N_opt"] = result.interval(boot[0][:, i])
            row["ci"]["D_opt"] = result.interval(boot[1][:, i])
        if boot_loss is not None:
            row["ci"]["loss"] = result.interval(boot_loss[:, i])
        out.append(row)
    return out


def parameter_warnings(result: FittedLaw) -> list[str]:
    """Parameters on a bound (E driven to 0, exponents at the search edge) or not constrained by the data."""
    from scaling.fit.estimators import VPNLS_BOUNDS

    out = []
    p = result.params
    if "E" in p and p["E"] < 1e-6:
        out.append("E is on its bound 0: the data do not show an irreducible loss")
    for name in ("alpha", "beta"):
        if name in p and result.form == "vpnls" and min(abs(p[name] - v) for v in VPNLS_BOUNDS) < 1e-3:
            out.append(f"{name} = {p[name]:.4g} is on the search bound {VPNLS_BOUNDS}")
        elif name in p and not 0.01 < p[name] < 2.0:
            out.append(
                f"{name} = {p[name]:.4g} is outside the initial grid's range [0, 2]: likely degenerate"
            )
    if result.form == "vpnls" and min(p["A"], p["B"]) <= 0:
        out.append("A or B is on its bound 0: that term is not supported by the data")
    for name, (lo, hi) in result.ci.items():
        if name in EXPONENTS:
            if hi - lo > 0.5:
                out.append(
                    f"{name} is not constrained by the data: its interval {format_interval(lo, hi, '.3g')} "
                    "is wider than 0.5"
                )
        elif name in SCALES and lo > 0 and hi / lo > 10:
            out.append(
                f"{name} is not constrained by the data: its interval {format_interval(lo, hi, '.3g')} spans "
                f"{format_factor(float(hi) / float(lo))}"
            )
        elif lo <= 0 < hi and name in p and p[name] > 0:
            out.append(f"{name} is not constrained by the data: its interval {format_interval(lo, hi, '.3g')} "
                       "reaches 0")
    return out


def backtest(table: RunTable, form: str = "chinchilla", options: dict | None = None) -> list[dict]:
    """Leave-one-budget-out (largest budget first), then the largest N held out: held-out loss errors."""
    check_table(table, form)
    if not ESTIMATORS[form].predicts_loss:
        raise UserError(f"--backtest needs a form that predicts loss (chinchilla, vpnls), not {form}")
    labels = budget_groups(table.flops)
    folds = []
    for g in sorted(np.unique(labels), reverse=True):
        c = float(np.exp(np.mean(np.log(table.flops[labels == g]))))
        folds.append((f"budget {c:.3g} FLOPs", labels == g))
    folds.append((f"largest N {table.params.max():.3g}", table.params == table.params.max()))
    out = []
    for name, held in folds:
        train = table.subset(~held)
        row = {"held_out": name, "n_train": int((~held).sum()), "n_test": int(held.sum())}
        try:
            check_table(train, form)
            law = ESTIMATORS[form].point(train, None, dict(options or {})).law
        except UserError as e:
            out.append({**row, "error": str(e)})
            continue
        if law is None:
            out.append({**row, "error": "the fit has a zero term and predicts no loss"})
            continue
        err = law.loss(table.params[held], table.tokens[held]) - table.loss[held]
        out.append(
            {
                **row,
                "mae": float(np.mean(np.abs(err))),
                "rmse": float(np.sqrt(np.mean(err**2))),
                "mean_error": float(np.mean(err)),
                "max_abs_error": float(np.max(np.abs(err))),
                "mape_pct": float(100 * np.mean(np.abs(err) / table.loss[held])),
            }
        )
    return out


def law_for_file(result: FittedLaw, hint: str = "") -> FittedLaw:
    """The fit as it is saved: a law that predicts L(N, D) and can be extrapolated, with only the bootstrap
    replicates that were refitted (no refused or infinite rows). `hint` ends the refusal of a law that cannot
    be extrapolated (what else the user may try)."""
    if result.law is None:
        raise UserError(f"--out writes a loss law; the {result.form} form has none (use chinchilla or vpnls)")
    problem = extrapolation_problem(result.law.to_dict())
    if problem:
        raise UserError(f"the fit gives {problem}, so it cannot be extrapolated; no law file written (more sizes "
                        f"or larger token budgets help){hint}")
    return result.with_finite_bootstrap()
