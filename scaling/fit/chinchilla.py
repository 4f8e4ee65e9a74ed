"""Approach 3 of Hoffmann et al. 2022, appendix D.2: the loss, the initial grid, the optimiser, the bootstrap.

theta = (log_A, log_B, log_E, alpha, beta);
log L_hat = logsumexp(log_A - alpha log N, log_B - beta log D, log_E), and the objective is the Huber loss
(delta 1e-3) between log L_hat and log L, summed over points.

Every function works on a batch of K parameter vectors at once, each with its own weights over the points:
the grid's starts share unit weights, bootstrap replicates carry resampling counts. The batched L-BFGS below
is what makes 4,500 starts or 1,000 replicates take seconds; `reference_fit` is the plain scipy loop it must
agree with.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HUBER_DELTA = 1e-3
# Hoffmann et al. appendix D.2: alpha, beta in {0, 0.5, ..., 2}; e in {-1, -0.5, ..., 1};
# a, b in {0, 5, ..., 25}.
GRID_ALPHA = GRID_BETA = np.arange(0.0, 2.01, 0.5)
GRID_LOG_E = np.arange(-1.0, 1.01, 0.5)
GRID_LOG_A = GRID_LOG_B = np.arange(0.0, 25.01, 5.0)
# scipy's L-BFGS-B stops when the reduction of f is below ftol * max(|f|, 1). The summed Huber loss is ~1e-3,
# so its default ftol (2.2e-9) stops refits after a few steps along the narrow log_A-alpha valley, and the
# bootstrap then shows no spread. These tolerances (used by the reference too) reach the optimum BFGS reaches.
FTOL, GTOL, MAX_ITER = 1e-14, 1e-12, 15000
LOG_FLOAT_MAX = float(np.log(np.finfo(float).max))  # exp of more overflows
# Tied starts stuck in a poor basin (an exponent near 0, a coefficient running off) crawl for all 15,000 steps,
# 100x above the best objective; 1,000 batched steps find the best one and scipy polishes it.
TIED_MAX_ITER = 1000


def initial_grid() -> np.ndarray:
    """The 4,500 starts of appendix D.2, rows of theta."""
    rows = itertools.product(GRID_LOG_A, GRID_LOG_B, GRID_LOG_E, GRID_ALPHA, GRID_BETA)
    return np.array(list(rows), dtype=float)


def theta_to_params(theta: np.ndarray) -> np.ndarray:
    """theta rows -> rows of (E, A, B, alpha, beta), the order of law.PARAM_NAMES."""
    theta = np.atleast_2d(theta)
    logs = theta[:, [2, 0, 1]]  # log E, log A, log B
    # A refit that ran off to a scale beyond float range has an infinite one, said so rather than left to
    # exp's overflow warning; the bootstrap drops such rows as refused (FittedLaw.with_finite_bootstrap).
    scales = np.where(logs > LOG_FLOAT_MAX, np.inf, np.exp(np.minimum(logs, LOG_FLOAT_MAX)))
    return np.column_stack([scales, theta[:, 3], theta[:, 4]])


def params_to_theta(E: float, A: float, B: float, alpha: float, beta: float) -> np.ndarray:
    """Log-scale parameters. A scale that underflowed to 0 (a fit whose log E ran below -745) starts from the
    smallest positive float instead of log(0): the same loss, a finite start, and no divide-by-zero warning."""
    scales = np.maximum(np.array([A, B, E], float), np.finfo(float).tiny)
    return np.array([*np.log(scales), alpha, beta])


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    absr = np.abs(r)
    return np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta))


def objective(
    theta: np.ndarray,
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_loss: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber loss of log-space residuals and its analytic gradient, for K theta rows at once.

    theta: (K, 5); weights: None (all ones), (n,) or (K, n). Returns f (K,) and grad (K, 5).
    """
    theta = np.atleast_2d(theta)
    la, lb, le, alpha, beta = (theta[:, i : i + 1] for i in range(5))
    t_n = la - alpha * log_n  # (K, n)
    t_d = lb - beta * log_d
    top = np.maximum(np.maximum(t_n, t_d), le)
    with np.errstate(over="ignore", invalid="ignore"):
        w_n, w_d, w_e = np.exp(t_n - top), np.exp(t_d - top), np.exp(le - top)
        total = w_n + w_d + w_e
        pred = top + np.log(total)
        r = pred - log_loss
        dr = np.clip(r, -HUBER_DELTA, HUBER_DELTA)  # dHuber/dr
        h = huber(r)
        if weights is not None:
            h = h * weights
            dr = dr * weights
        # d pred / d theta: softmax shares of the three terms, times -log N / -log D for the exponents.
        g_n, g_d, g_e = dr * (w_n / total), dr * (w_d / total), dr * (w_e / total)
        grad = np.column_stack(
            [g_n.sum(1), g_d.sum(1), g_e.sum(1), -(g_n * log_n).sum(1), -(g_d * log_d).sum(1)]
        )
        f = h.sum(1)
    bad = ~np.isfinite(f) | ~np.all(np.isfinite(grad), axis=1)
    f[bad] = np.inf
    grad[bad] = 0.0
    return f, grad


@dataclass
class BatchResult:
    theta: np.ndarray  # (K, 5)
    f: np.ndarray  # (K,)
    converged: np.ndarray  # (K,) bool
    iterations: int


def batch_lbfgs(
    fun: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    theta0: np.ndarray,
    max_iter: int = MAX_ITER,
    memory: int = 10,
    ftol: float = FTOL,
    gtol: float = GTOL,
    active_rows: np.ndarray | None = None,
) -> BatchResult:
    """L-BFGS run on K independent problems in lockstep: one vectorised objective call per step for all rows.

    fun(theta_subset, row_indices) -> (f, grad). Stopping rules are scipy L-BFGS-B's (relative reduction ftol,
    max |grad| gtol), per row; finished rows drop out so later steps cost less. Backtracking Armijo line
    search.
    """
    x = np.array(theta0, dtype=float)
    k, p = x.shape
    rows = np.arange(k) if active_rows is None else np.asarray(active_rows)
    f, g = np.full(k, np.inf), np.zeros_like(x)
    f[rows], g[rows] = fun(x[rows], rows)
    s_hist, y_hist, rho = np.zeros((k, memory, p)), np.zeros((k, memory, p)), np.zeros((k, memory))
    converged = np.zeros(k, dtype=bool)
    active = rows[np.isfinite(f[rows])]
    it = 0
    for it in range(1, max_iter + 1):
        if active.size == 0:
            break
        d = -_two_loop(g[active], s_hist[active], y_hist[active], rho[active], it - 1, memory)
        slope = np.einsum("ij,ij->i", g[active], d)
        uphill = slope >= 0  # a stale curvature pair: restart that row from steepest descent
        if uphill.any():
            d[uphill] = -g[active][uphill]
            slope[uphill] = -np.einsum("ij,ij->i", g[active][uphill], g[active][uphill])
            rho[active[uphill]] = 0.0
        step = np.ones(active.size)
        if it == 1:  # scipy's first step: unit length along -g
            step = 1.0 / np.maximum(np.linalg.norm(d, axis=1), 1e-300)
        f_new, g_new = np.empty(active.size), np.empty((active.size, p))
        todo = np.arange(active.size)
        for _ in range(40):
            trial = x[active[todo]] + step[todo, None] * d[todo]
            ft, gt = fun(trial, active[todo])
            ok = ft <= f[active[todo]] + 1e-4 * step[todo] * slope[todo]
            f_new[todo[ok]], g_new[todo[ok]] = ft[ok], gt[ok]
            todo = todo[~ok]
            if todo.size == 0:
                break
            step[todo] *= 0.5
        stuck = np.zeros(active.size, dtype=bool)
        stuck[todo] = True  # no decrease along d: as good as this row gets
        moved = ~stuck
        idx = active[moved]
        s = step[moved, None] * d[moved]
        yv = g_new[moved] - g[idx]
        sy = np.einsum("ij,ij->i", s, yv)
        slot = (it - 1) % memory
        s_hist[idx, slot], y_hist[idx, slot] = s, yv
        rho[idx, slot] = np.where(sy > 1e-300, 1.0 / np.where(sy > 1e-300, sy, 1.0), 0.0)
        f_old = f[idx]
        x[idx] += s
        f[idx], g[idx] = f_new[moved], g_new[moved]
        small_f = (f_old - f[idx]) <= ftol * np.maximum(np.maximum(np.abs(f_old), np.abs(f[idx])), 1.0)
        small_g = np.abs(g[idx]).max(axis=1) <= gtol
        done = np.zeros(active.size, dtype=bool)
        done[moved] = small_f | small_g
        converged[active[done | stuck]] = True
        active = active[~(done | stuck)]
    return BatchResult(theta=x, f=f, converged=converged, iterations=it)


def _two_loop(
    g: np.ndarray, s: np.ndarray, y: np.ndarray, rho: np.ndarray, n_pairs: int, memory: int
) -> np.ndarray:
    """The L-BFGS two-loop recursion, vectorised over rows: returns H g."""
    q = g.copy()
    m = min(n_pairs, memory)
    order = [(n_pairs - 1 - j) % memory for j in range(m)]  # newest first
    alphas = []
    for slot in order:
        a = rho[:, slot] * np.einsum("ij,ij->i", s[:, slot], q)
        q -= a[:, None] * y[:, slot]
        alphas.append(a)
    if m:
        newest = order[0]
        yy = np.einsum("ij,ij->i", y[:, newest], y[:, newest])
        sy = np.where(rho[:, newest] > 0, 1.0 / np.where(rho[:, newest] > 0, rho[:, newest], 1.0), 0.0)
        gamma = np.where((yy > 0) & (sy > 0), sy / np.where(yy > 0, yy, 1.0), 1.0)
        q *= gamma[:, None]
    for slot, a in zip(reversed(order), reversed(alphas), strict=False):
        b = rho[:, slot] * np.einsum("ij,ij->i", y[:, slot], q)
        q += (a - b)[:, None] * s[:, slot]
    return q


def _data(params, tokens, loss):
    return (
        np.log(np.asarray(params, float)),
        np.log(np.asarray(tokens, float)),
        np.log(np.asarray(loss, float)),
    )


@dataclass
class PointFit:
    theta: np.ndarray  # (5,)
    objective: float
    n_starts: int
    n_kept: int


def untie(theta4: np.ndarray) -> np.ndarray:
    """Rows (log_A, log_B, log_E, g) of a tied fit as theta rows with alpha = beta = g."""
    theta4 = np.atleast_2d(theta4)
    return np.column_stack([theta4, theta4[:, 3]])


def tied_objective(theta4, log_n, log_d, log_loss, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """The objective with one exponent for N and D (Gadre et al. 2024 tie alpha = beta when runs are few): the
    full objective at (log_A, log_B, log_E, g, g), its gradient in g the sum of those in alpha and beta."""
    f, g = objective(untie(theta4), log_n, log_d, log_loss, weights)
    return f, np.column_stack([g[:, :3], g[:, 3] + g[:, 4]])


def _starts(starts: np.ndarray | None, tied: bool) -> np.ndarray:
    """The appendix D.2 grid (its alpha = beta rows when tied), or given starts (their first 4 columns when tied)."""
    grid = initial_grid() if starts is None else np.atleast_2d(starts)
    if not tied:
        return grid
    return grid[grid[:, 3] == grid[:, 4], :4] if starts is None else grid[:, :4]


def fit(
    params, tokens, loss, starts: np.ndarray | None = None, prune_after: int = 10, keep: int = 250,
    tied: bool = False,
) -> PointFit:
    """The best of L-BFGS runs from every start of the grid (theta rows of 5; tied: alpha = beta).

    All starts take `prune_after` batched steps; only the `keep` lowest objectives go on to convergence (bad
    starts are far behind by then), and the best is polished by scipy's L-BFGS-B, the reference optimiser.
    """
    log_n, log_d, log_l = _data(params, tokens, loss)
    starts = _starts(starts, tied)
    obj = tied_objective if tied else objective

    def fun(theta, _rows):
        return obj(theta, log_n, log_d, log_l)

    early = batch_lbfgs(fun, starts, max_iter=prune_after)
    kept = np.argsort(early.f)[: min(keep, len(starts))]
    late = batch_lbfgs(fun, early.theta[kept], max_iter=TIED_MAX_ITER if tied else MAX_ITER)
    best = int(np.argmin(late.f))
    theta, f = _scipy_lbfgs(late.theta[best], log_n, log_d, log_l, obj=obj)
    if not f <= late.f[best]:
        theta, f = late.theta[best], float(late.f[best])
    theta = untie(theta)[0] if tied else theta
    return PointFit(theta=theta, objective=f, n_starts=len(starts), n_kept=len(kept))


def _scipy_lbfgs(theta0, log_n, log_d, log_l, weights=None, obj=objective) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    def fg(theta):
        f, g = obj(theta[None, :], log_n, log_d, log_l, weights)
        return float(f[0]), g[0]

    res = minimize(
        fg,
        np.asarray(theta0, float),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": FTOL, "gtol": GTOL, "maxiter": MAX_ITER},
    )
    return res.x, float(res.fun)


def reference_fit(params, tokens, loss, starts: np.ndarray | None = None) -> PointFit:
    """The plain way: scipy L-BFGS-B with the analytic gradient from each start in turn, keep the best."""
    log_n, log_d, log_l = _data(params, tokens, loss)
    starts = initial_grid() if starts is None else np.atleast_2d(starts)
    best_theta, best_f = None, np.inf
    for start in starts:
        theta, f = _scipy_lbfgs(start, log_n, log_d, log_l)
        if f < best_f:
            best_theta, best_f = theta, f
    return PointFit(theta=best_theta, objective=best_f, n_starts=len(starts), n_kept=len(starts))


def bootstrap(params, tokens, loss, counts: np.ndarray, theta0: np.ndarray, tied: bool = False) -> np.ndarray:
    """Refit every replicate at once, each weighting the points by its resampling counts (K, n).

    Replicates start from the point fit theta0: a resample moves the optimum a little, not to another basin.
    Returns theta rows (K, 5) (tied: alpha = beta in each).
    """
    log_n, log_d, log_l = _data(params, tokens, loss)
    counts = np.asarray(counts, float)
    obj = tied_objective if tied else objective

    def fun(theta, rows):
        return obj(theta, log_n, log_d, log_l, counts[rows])

    start = np.repeat(np.atleast_2d(theta0)[:, : 4 if tied else 5], len(counts), axis=0)
    theta = batch_lbfgs(fun, start).theta
    return untie(theta) if tied else theta
