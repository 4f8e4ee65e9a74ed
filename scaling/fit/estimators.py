"""The five estimators. Each is `point(table, warm, options) -> Estimate`: one fit of a run table, optionally
warm-started from an earlier fit's params (bootstrap refits). `scaling.fit.fitting.fit_runs` adds the bootstrap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from gptcore.errors import UserError
from scaling.fit import FORMS, chinchilla
from scaling.fit.data import RunTable
from scaling.law import PARAM_NAMES, ChinchillaLaw

BUDGET_GAP_DEX = 0.1  # runs whose compute differs by less than 10^0.1 (26%) from a neighbour share a budget
BUDGET_MAX_WIDTH_DEX = 0.25
VPNLS_BOUNDS = (0.01, 2.0)


@dataclass
class Estimate:
    params: dict[str, float]
    objective: float
    law: ChinchillaLaw | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Estimator:
    name: str
    point: Callable[[RunTable, dict | None, dict], Estimate]
    min_sizes: int  # distinct model sizes the form needs
    min_points: int  # at least its number of parameters
    predicts_loss: bool


def budget_groups(
    flops: np.ndarray, gap_dex: float = BUDGET_GAP_DEX, max_width_dex: float = BUDGET_MAX_WIDTH_DEX
):
    """Label runs by compute budget (0 = smallest): sorted log10 C splits where neighbours are gap_dex apart.

    A sweep's budgets are well apart and split cleanly. Runs spread evenly over C (no budgets, as in
    Hoffmann's Fig. 4) would chain into one wide group, so a group wider than max_width_dex is cut into bins
    that wide.
    """
    logc = np.log10(np.asarray(flops, float))
    order = np.argsort(logc)
    sorted_c = logc[order]
    group = np.concatenate([[0], np.cumsum(np.diff(sorted_c) > gap_dex)])
    keys = np.zeros(len(logc))
    for g in np.unique(group):
        m = group == g
        start = sorted_c[m][0]
        width = sorted_c[m][-1] - start
        keys[m] = np.floor((sorted_c[m] - start) / max_width_dex) if width > max_width_dex else 0
    _, sorted_labels = np.unique(np.column_stack([group, keys]), axis=0, return_inverse=True)
    labels = np.empty(len(logc), dtype=int)
    labels[order] = sorted_labels.ravel()
    return labels


# --- chinchilla (Approach 3) --------------------------------------------------------------------------------


def _law_params(law: ChinchillaLaw) -> dict[str, float]:
    return {k: float(getattr(law, k)) for k in PARAM_NAMES}


def chinchilla_point(table: RunTable, warm: dict | None, options: dict) -> Estimate:
    starts = None if warm is None else chinchilla.params_to_theta(*(warm[k] for k in PARAM_NAMES))
    res = chinchilla.fit(table.params, table.tokens, table.loss, starts=starts, keep=options.get("keep", 250),
                         tied=bool(options.get("tie_exponents")))
    law = ChinchillaLaw(*chinchilla.theta_to_params(res.theta)[0])
    return Estimate(_law_params(law), res.objective, law, {"n_starts": res.n_starts, "n_kept": res.n_kept})


# --- vpnls: variable projection, (alpha, beta) searched, (E, A, B) by non-negative least squares -----------


def _nnls(alpha: float, beta: float, table: RunTable) -> tuple[np.ndarray, float]:
    from scipy.optimize import nnls

    x = np.column_stack([np.ones(len(table)), table.params**-alpha, table.tokens**-beta])
    scale = np.linalg.norm(x, axis=0)  # unit columns: N^-alpha is ~1e-3, which NNLS would otherwise mistreat
    coef, rnorm = nnls(x / scale, table.loss)
    return coef / scale, float(rnorm**2)


def vpnls_point(table: RunTable, warm: dict | None, options: dict) -> Estimate:
    from scipy.optimize import minimize

    lo, hi = VPNLS_BOUNDS
    if warm is None:
        grid = np.linspace(lo, hi, 40)
        sse = np.array([[_nnls(a, b, table)[1] for b in grid] for a in grid])
        i, j = np.unravel_index(np.argmin(sse), sse.shape)
        start = np.array([grid[i], grid[j]])
    else:
        start = np.array([warm["alpha"], warm["beta"]])
    res = minimize(
        lambda ab: _nnls(ab[0], ab[1], table)[1], start, method="L-BFGS-B", bounds=[VPNLS_BOUNDS] * 2
    )
    alpha, beta = (float(v) for v in res.x)
    (e, a, b), sse = _nnls(alpha, beta, table)
    params = {"E": float(e), "A": float(a), "B": float(b), "alpha": alpha, "beta": beta}
    law = ChinchillaLaw(**params) if min(e, a, b) > 0 else None
    return Estimate(params, sse, law, {})


# --- isoflop (Approach 2) -----------------------------------------------------------------------------------


class Refusal(str, Enum):
    """Why a compute budget gives no N_opt."""

    TOO_FEW_POINTS = "too_few_points"  # fewer than 3 distinct model sizes
    NOT_CONVEX = "not_convex"  # the parabola's curvature is not positive
    MINIMUM_OUTSIDE = "minimum_outside"  # the vertex lies outside the sampled sizes


def isoflop_parabola(log_x: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray | None, Refusal | None]:
    """Fit loss = c2 x^2 + c1 x + c0 in x = log size; return the coefficients, or the reason for refusing."""
    if len(np.unique(log_x)) < 3:
        return None, Refusal.TOO_FEW_POINTS
    coef = np.polyfit(log_x, loss, 2)
    if coef[0] <= 0:
        return coef, Refusal.NOT_CONVEX
    vertex = -coef[1] / (2 * coef[0])
    if not log_x.min() <= vertex <= log_x.max():
        return coef, Refusal.MINIMUM_OUTSIDE
    return coef, None


def _power_law(log_c: np.ndarray, log_y: np.ndarray) -> tuple[float, float, float]:
    """Least squares of log y = log k + e log C: (k, e, sum of squared residuals)."""
    slope, intercept = np.polyfit(log_c, log_y, 1)
    sse = float(np.sum((intercept + slope * log_c - log_y) ** 2))
    return float(np.exp(intercept)), float(slope), sse


def _frontier_params(c: np.ndarray, n_opt: np.ndarray, d_opt: np.ndarray) -> tuple[dict, float]:
    lc = np.log(c)
    k_n, a, sse_n = _power_law(lc, np.log(n_opt))
    k_d, b, sse_d = _power_law(lc, np.log(d_opt))
    return {"k_N": k_n, "a": a, "k_D": k_d, "b": b}, sse_n + sse_d


def isoflop_point(table: RunTable, warm: dict | None, options: dict) -> Estimate:
    labels = budget_groups(table.flops, options.get("budget_gap_dex", BUDGET_GAP_DEX))
    budgets, refused = [], []
    for g in np.unique(labels):
        m = labels == g
        c = float(np.exp(np.mean(np.log(table.flops[m]))))
        coef_n, why_n = isoflop_parabola(np.log(table.params[m]), table.loss[m])
        coef_d, why_d = isoflop_parabola(np.log(table.tokens[m]), table.loss[m])
        why = why_n or why_d
        if why is not None:
            refused.append({"flops": c, "reason": why.value, "n_points": int(m.sum())})
            continue
        n_opt = float(np.exp(-coef_n[1] / (2 * coef_n[0])))
        d_opt = float(np.exp(-coef_d[1] / (2 * coef_d[0])))
        budgets.append(
            {
                "flops": c,
                "N_opt": n_opt,
                "D_opt": d_opt,
                "parabola_logN": coef_n.tolist(),
                "parabola_logD": coef_d.tolist(),
                "n_points": int(m.sum()),
            }
        )
    if len(budgets) < 2:
        reasons = "; ".join(f"{r['flops']:.3g} FLOPs: {r['reason']}" for r in refused) or "no budgets"
        raise UserError(
            f"isoflop needs at least 2 budgets with an interior parabola minimum, got {len(budgets)} "
            f"({reasons})"
        )
    c = np.array([b["flops"] for b in budgets])
    params, sse = _frontier_params(
        c, np.array([b["N_opt"] for b in budgets]), np.array([b["D_opt"] for b in budgets])
    )
    return Estimate(params, sse, None, {"budgets": budgets, "refused": refused})


# --- envelope (Approach 1) ----------------------------------------------------------------------------------


def lower_envelope(flops: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of points no cheaper point beats: the lower envelope of loss against compute."""
    order = np.argsort(flops, kind="stable")
    best = np.minimum.accumulate(loss[order])
    first = np.concatenate([[True], best[1:] < best[:-1]])
    return order[first]


def envelope_point(table: RunTable, warm: dict | None, options: dict) -> Estimate:
    idx = lower_envelope(table.flops, table.loss)
    # The smallest and largest sizes hold the envelope beyond their own optimal range (nothing smaller or
    # bigger competes there), which flattens the fitted exponent: keep only the interior sizes' stretches.
    interior = idx[(table.params[idx] > table.params.min()) & (table.params[idx] < table.params.max())]
    idx = interior if len(np.unique(table.params[interior])) >= 2 else idx
    if len(np.unique(table.params[idx])) < 2:
        raise UserError(
            "envelope: the lower envelope of loss against compute holds fewer than 2 model sizes; "
            "it needs runs (or training-curve points) of several sizes"
        )
    params, sse = _frontier_params(table.flops[idx], table.params[idx], table.tokens[idx])
    return Estimate(params, sse, None, {"envelope": idx.tolist()})


# --- kaplan: L(N), L(D), L(C) as power laws, optionally with an irreducible term --------------------------


def _kaplan_law(x: np.ndarray, loss: np.ndarray, irreducible: bool) -> tuple[float, float, float, float]:
    """Fit L = E + (x_c / x)^alpha in log space: (alpha, x_c, E, sum of squared log residuals)."""
    from scipy.optimize import least_squares

    lx, ll = np.log(x), np.log(loss)
    slope, intercept = np.polyfit(lx, ll, 1)
    with np.errstate(over="ignore", divide="ignore"):  # a flat series (slope ~ 0) has x_c at infinity
        alpha, x_c, e = -slope, float(np.exp(intercept / -slope)) if slope else np.inf, 0.0
    if irreducible:

        def resid(p):  # p = (log E, alpha, log x_c)
            return np.log(np.exp(p[0]) + np.exp(p[1] * (p[2] - lx))) - ll

        start = [np.log(0.5 * loss.min()), max(-slope, 1e-3), np.log(x_c) if np.isfinite(x_c) else lx.max()]
        res = least_squares(resid, start)
        e, alpha, x_c = float(np.exp(res.x[0])), float(res.x[1]), float(np.exp(res.x[2]))
        return alpha, x_c, e, float(np.sum(res.fun**2))
    return float(alpha), float(x_c), e, float(np.sum((intercept + slope * lx - ll) ** 2))


def kaplan_point(table: RunTable, warm: dict | None, options: dict) -> Estimate:
    irreducible = bool(options.get("irreducible", False))
    need = 3 if irreducible else 2
    per_n = {n: table.loss[table.params == n].min() for n in np.unique(table.params)}
    d_groups = budget_groups(table.tokens)
    per_d = [
        (np.exp(np.mean(np.log(table.tokens[d_groups == g]))), table.loss[d_groups == g].min())
        for g in np.unique(d_groups)
    ]
    env = lower_envelope(table.flops, table.loss)
    series = {
        "N": (np.array(list(per_n)), np.array(list(per_n.values()))),
        "D": (np.array([p[0] for p in per_d]), np.array([p[1] for p in per_d])),
        "C": (table.flops[env], table.loss[env]),
    }
    params, total = {}, 0.0
    for name, (x, y) in series.items():
        if len(x) < need:
            raise UserError(f"kaplan: L({name}) needs at least {need} distinct {name} values, got {len(x)}")
        alpha, x_c, e, sse = _kaplan_law(x, y, irreducible)
        params[f"alpha_{name}"], params[f"{name}_c"] = alpha, x_c
        if irreducible:
            params[f"E_{name}"] = e
        total += sse
    return Estimate(
        params, total, None, {"series": {k: [v[0].tolist(), v[1].tolist()] for k, v in series.items()}}
    )


ESTIMATORS = {
    "chinchilla": Estimator("chinchilla", chinchilla_point, min_sizes=2, min_points=5, predicts_loss=True),
    "vpnls": Estimator("vpnls", vpnls_point, min_sizes=2, min_points=5, predicts_loss=True),
    "isoflop": Estimator("isoflop", isoflop_point, min_sizes=3, min_points=6, predicts_loss=False),
    "envelope": Estimator("envelope", envelope_point, min_sizes=2, min_points=4, predicts_loss=False),
    "kaplan": Estimator("kaplan", kaplan_point, min_sizes=2, min_points=6, predicts_loss=False),
}
assert tuple(ESTIMATORS) == FORMS
