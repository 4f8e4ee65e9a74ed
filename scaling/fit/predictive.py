"""Prediction intervals for a fitted law's loss, calibrated by backtests on the user's own runs.

The bootstrap interval of a fit is a *parameter* interval: where the law's curve would lie if the runs were
drawn again. A run's loss also scatters around the curve (seed noise, the law's misfit), and the law's error
grows the further it is extrapolated. The interval here adds both, and measures the second on the data:

1. **Backtests (rolling origin).** Hold out the largest compute budgets (and, separately, the largest model
   sizes), refit on the runs below, and record every held-out run's signed log error
   e = log L_pred - log L_actual, its distance beyond the runs fitted d = max(0, log10 of the N, D and C
   multiples of the largest fitted run), and the refit's own bootstrap spread s_boot there. This is the
   rolling-origin evaluation of forecasting (Tashman 2000, "Out-of-sample tests of forecasting accuracy").
2. **A scale model.** e ~ s * z, with
   s^2 = (boot_scale * s_boot)^2 + sigma_noise^2 + misfit_sd^2 + (growth_per_dex * d)^2:
   (a) parameter uncertainty at that point, the bootstrap's spread inflated by a factor boot_scale >= 1, (b)
   the fit's in-sample residual spread in log loss (run-to-run noise plus misfit), (c) a refit's offset at the
   edge of its runs, which does not shrink to nothing one step beyond them, (d) extrapolation error growing
   linearly with the distance in decades. sigma_noise is the robust spread of the full fit's residuals;
   boot_scale, misfit_sd and growth_per_dex are fitted to the backtest errors by maximum likelihood. Why (a) is
   inflated rather than left at 1: a refit on fewer runs extrapolates worse, and its own bootstrap spread says
   so (it grows with the distance and shrinks with the runs), but too narrowly when the runs' errors are
   correlated or the law is misspecified. Without the factor, the errors it misses could only be fitted as
   growth with distance, a growth measured on the weaker refits and then applied in full to the full fit: on Li
   et al. 2025's runs 8.5% per decade, intervals 23.0% wide (median) around errors of 0.79%. Scaled, the full
   fit's own, smaller spread carries the distance (boot_scale 1.5, no growth): 11.6% wide, the same 17 of 17
   inside; on Epoch's points split at 4 quantiles of compute 97.2-100% inside, against 95.8-98.3%
   (benchmarks/interval_coverage.py, 2026-12-02). Where the bootstrap is right (synthetic sweeps from a known
   law) it stays at 1. Without (c), a fold whose errors are large but close (on Epoch's points, the largest
   sizes held out 0.05-0.15 decades beyond the refit, -1.6% on average) could only be explained by a steep
   growth: on Epoch's median split the growth came out at 2.5% per decade and the intervals 9.7% wide; with
   (c), 4.4%. The interval is centred on the law's own prediction. A drift of the backtests' errors with
   distance widens it (through the growth) but does not shift it: a shift fitted to the refits (bias_per_dex,
   in law files before 2026-12-01, still applied when read) does not carry over to the full fit, whose runs
   reach further. On Li et al. 2025's 81 runs the refits under-predicted by 7.6% per decade while the full
   fit's 17 larger runs came out at +0.02% on average: the shifted intervals held 9 of them, the centred ones
   17; on Epoch's 0.7 split, 84.7% against 95.8% (benchmarks/interval_coverage.py).
3. **Calibrated quantiles.** The normalised scores z = e / s are the locally weighted
   (normalised) nonconformity scores of split conformal prediction (Vovk, Gammerman & Shafer 2005; Lei,
   G'Sell, Rinaldo, Tibshirani & Wasserman 2018, "Distribution-free predictive inference for regression",
   section 5.2). The interval is symmetric in z about the point: it takes the quantile of |z| at
   the conformal rank ceil((n + 1)(1 - a)), as Lei et al. do; a rank past n leaves it unbounded. Taking the
   lower and upper quantiles of the signed z separately instead (rank ceil((n + 1)(1 - a/2)) each side) needs
   twice the scores (39 at 95%, not 19) and was wider for the same coverage: on Epoch's points split at the
   0.4, 0.5, 0.6 and 0.7 quantiles of compute the same share of larger runs fell inside, and Gadre et al.'s
   intervals were 18.5% and 20.9% wide against 15.6% and 17.1% (both with the shift of before;
   benchmarks/interval_coverage.py, 2026-12-01). Because the scores of one fold share one
   refit, they are not n independent draws: the quantile is also at least the Student-t quantile with
   (n_eff - 1) degrees of freedom, n_eff the scores' effective count by Kish's design effect from their
   intraclass correlation within folds (`effective_draws`), never below the folds' count: wide but finite for
   few folds whose errors move together, close to the normal quantile for many scores that do not. With the
   folds' count alone (every fold one draw, whatever its errors), the intervals on 10 synthetic 6x6 sweeps
   from a known law (`--synthetic 10 --bootstrap 50`) held 97.3% at 6.38% wide, on Epoch's four splits
   97.2-100% at 4.2-5.4%; with n_eff, 95.5% at 6.17% and 91.7-100% at 3.3-5.4% (benchmarks/
   interval_coverage.py, 2026-12-02). Without a floor, 86.8% on 20 such synthetic sweeps and 87.5% on Epoch's
   0.7 split (a scratch copy of the calibration). On Li et al. 2025's runs the
   errors of a fold move together (n_eff is the 6 folds) and the floor is unchanged. Fewer than
   MIN_FOLDS folds: no interval (unbounded), said as such.
4. **Too few scores for the conformal rank** (n < 19 at 95%: a sweep of a dozen runs gives 10-20): the
   interval takes the Student-t quantile alone, or the largest |z| seen if that is wider: a parametric
   interval (the scores taken as roughly t-distributed over folds), not a distribution-free one, and said
   so with every prediction. On synthetic sweeps of 12-20 runs (tests/test_predictive.py) it covers 85-99%
   of the held-out larger runs; without it there was no interval at all below 19 scores.

What this covers: the errors the user's own backtests showed, scaled to the target's distance. What it does
not: conformal validity needs the target's normalised score to be exchangeable with the backtests', and a
target further out than any backtest (beyond `backtested_up_to_dex`) extrapolates the linear growth of the
scale model itself; a change of training recipe between sweep and target is not covered at all.

numpy/scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from gptcore.errors import UserError
from scaling.fit import chinchilla
from scaling.fit.data import RunTable
from scaling.fit.estimators import ESTIMATORS, budget_groups
from scaling.fit.fitting import check_table, resample_counts
from scaling.law import PARAM_NAMES, ChinchillaLaw

METHOD = ("rolling-origin backtests, normalised split-conformal scores (Lei et al. 2018), Student-t floor "
          "over the effective draws (Kish 1965)")
CONFORMAL = "split-conformal"
MIN_FOLDS = 2  # a scale that grows with distance needs at least two refits to be seen at all
MIN_TRAIN_FRACTION = 0.5  # a fold refits on at least half the runs: smaller refits overstate the error
MAX_COMPUTE_FOLDS = 6
MAX_SIZE_FOLDS = 3
FOLD_BOOTSTRAP = 30  # bootstrap replicates per fold, for s_boot at the held-out runs
MAX_BOOT_SCALE = 10.0  # the bootstrap spread's inflation is fitted in [1, 10]: beyond, the bootstrap says nothing
# Multiples of the largest fitted compute that the distance table bins by.
DISTANCE_BINS = (1.0, 2.0, 4.0, 10.0, 100.0, math.inf)


@dataclass(frozen=True)
class Extrapolation:
    """How far a point lies beyond the runs a law was fitted on, as multiples of their largest N, D and C."""

    params_multiple: float
    tokens_multiple: float
    flops_multiple: float

    @property
    def distance_dex(self) -> float:
        """Decades beyond the fitted range along the worst axis (0 inside it)."""
        worst = max(self.params_multiple, self.tokens_multiple, self.flops_multiple)
        return max(0.0, math.log10(worst))

    def to_json(self) -> dict:
        return {**asdict(self), "distance_dex": self.distance_dex}


@dataclass(frozen=True)
class FittedRange:
    """The largest N, D and C among the runs a law was fitted on."""

    params_max: float
    tokens_max: float
    flops_max: float

    @classmethod
    def of(cls, table: RunTable) -> FittedRange:
        return cls(float(table.params.max()), float(table.tokens.max()), float(table.flops.max()))

    def where(self, params, tokens, flops=None) -> Extrapolation:
        flops = 6.0 * params * tokens if flops is None else flops
        return Extrapolation(
            float(params) / self.params_max, float(tokens) / self.tokens_max, float(flops) / self.flops_max
        )


@dataclass(frozen=True)
class HeldOutError:
    """One held-out run of one backtest fold."""

    fold: str
    run_id: str
    log_error: float  # log(predicted) - log(actual): > 0 is an over-prediction
    boot_sd: float  # the fold's bootstrap spread of log loss at this run
    where: Extrapolation


@dataclass
class Fold:
    name: str
    kind: str  # "compute" or "size"
    n_train: int
    n_test: int
    refused: str | None = None  # why this fold could not be refitted
    variant: str | None = None  # --form auto's nested backtests: the variant chosen on this fold's runs


@dataclass
class Backtest:
    folds: list[Fold]
    errors: list[HeldOutError]

    @property
    def n_folds(self) -> int:
        return sum(f.refused is None for f in self.folds)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log errors, distances in decades, bootstrap spreads), one entry per held-out run and fold."""
        e = np.array([h.log_error for h in self.errors], float)
        d = np.array([h.where.distance_dex for h in self.errors], float)
        s = np.array([h.boot_sd for h in self.errors], float)
        return e, d, s


def log_spread(losses: np.ndarray) -> np.ndarray:
    """Robust standard deviation of log loss over axis 0 (half the 16-84% range): a refused or degenerate
    bootstrap refit (an infinite loss) moves it no more than any other outlier."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.asarray(losses, float))
    logs = np.where(np.isfinite(logs), logs, np.nan)
    lo, hi = np.nanpercentile(logs, [15.865, 84.135], axis=0)
    return (hi - lo) / 2


def residual_spread(law, table: RunTable, n_params: int = len(PARAM_NAMES)) -> float:
    """Robust spread (1.4826 MAD) of the fit's log residuals, corrected for the parameters fitted."""
    r = np.log(law.loss(table.params, table.tokens)) - np.log(table.loss)
    mad = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    n = len(r)
    return mad * math.sqrt(n / max(n - n_params, 1))


# --- backtests ----------------------------------------------------------------------------------------------


def _default_point(form: str, options: dict, warm: dict | None) -> Callable[[RunTable], ChinchillaLaw | None]:
    def point(train: RunTable):
        return ESTIMATORS[form].point(train, warm, dict(options)).law

    return point


def fold_masks(table: RunTable) -> list[tuple[str, str, np.ndarray]]:
    """(name, kind, held-out mask) of the rolling-origin folds: compute cuts, then size cuts.

    A cut holds out every budget (or size) group above it. The cuts that leave at least MIN_TRAIN_FRACTION of
    the runs to refit on are thinned to at most MAX_COMPUTE_FOLDS (MAX_SIZE_FOLDS) spread evenly over that
    range, so that the backtests see short and long extrapolations alike.
    """
    out = []
    for kind, values, limit in (("compute", table.flops, MAX_COMPUTE_FOLDS), ("size", table.params, MAX_SIZE_FOLDS)):
        labels = budget_groups(values)
        cuts = [g for g in np.unique(labels)[1:] if (labels < g).sum() >= MIN_TRAIN_FRACTION * len(table)]
        if len(cuts) > limit:
            cuts = [cuts[i] for i in np.unique(np.round(np.linspace(0, len(cuts) - 1, limit)).astype(int))]
        for cut in sorted(cuts, reverse=True):
            held = labels >= cut
            below = float(values[~held].max())
            out.append((f"{kind} above {below:.3g} {'FLOPs' if kind == 'compute' else 'params'}", kind, held))
    return out


def fold_spread(train: RunTable, law: ChinchillaLaw, test: RunTable, n_boot: int, seed: int,
                tied: bool = False) -> np.ndarray:
    """The refit's bootstrap spread of log loss at the held-out runs (zeros with n_boot = 0)."""
    if n_boot <= 0:
        return np.zeros(len(test))
    counts = resample_counts(train, n_boot, seed)
    theta0 = chinchilla.params_to_theta(*(float(getattr(law, k)) for k in PARAM_NAMES))
    theta = chinchilla.bootstrap(train.params, train.tokens, train.loss, counts, theta0, tied)
    losses = ChinchillaLaw.from_rows(chinchilla.theta_to_params(theta)).loss(test.params, test.tokens)
    return np.nan_to_num(log_spread(losses), nan=0.0)


def run_backtest(
    table: RunTable,
    form: str = "chinchilla",
    options: dict | None = None,
    n_boot: int = FOLD_BOOTSTRAP,
    seed: int = 0,
    fit_point: Callable[[RunTable], ChinchillaLaw | None] | None = None,
    warm: dict | None = None,
) -> Backtest:
    """Refit each rolling-origin fold and record its held-out runs' errors against their distance.

    fit_point(train) -> law (None: the fit predicts no loss) defaults to the form's own estimator: from its
    full start grid, as a user would refit, or with `warm` (the full fit's params) from that one start, as
    the bootstrap refits start (a subset of the runs moves the optimum, rarely to another basin; 10-50x
    cheaper, what `scaling fit` uses).
    """
    if not ESTIMATORS[form].predicts_loss:
        raise UserError(f"prediction intervals need a form that predicts loss (chinchilla, vpnls), not {form}")
    fit_point = fit_point or _default_point(form, options or {}, warm)
    folds, errors = [], []
    for i, (name, kind, held) in enumerate(fold_masks(table)):
        train, test = table.subset(~held), table.subset(held)
        fold = Fold(name, kind, len(train), len(test))
        folds.append(fold)
        try:
            check_table(train, form)
            law = fit_point(train)
        except UserError as e:
            fold.refused = str(e)
            continue
        if law is None:
            fold.refused = "the refit has a zero term and predicts no loss"
            continue
        spread = fold_spread(train, law, test, n_boot, seed + i, bool((options or {}).get("tie_exponents")))
        errors += held_out_errors(name, train, law, test, spread)
    return Backtest(folds, errors)


def held_out_errors(fold: str, train: RunTable, law: ChinchillaLaw, test: RunTable,
                    spread: np.ndarray) -> list[HeldOutError]:
    """A fold's held-out runs scored against the law refitted on `train`, their distance beyond it."""
    pred = law.loss(test.params, test.tokens)
    rng = FittedRange.of(train)
    return [HeldOutError(fold, str(test.run_id[j]), float(np.log(pred[j]) - np.log(test.loss[j])), float(spread[j]),
                         rng.where(test.params[j], test.tokens[j], test.flops[j])) for j in range(len(test))]


# --- calibration --------------------------------------------------------------------------------------------


def scale_sd(boot_sd, sigma_noise: float, misfit_sd: float, growth_per_dex: float, distance_dex,
             boot_scale: float = 1.0) -> np.ndarray:
    """The scale model's standard deviation of log error: parameters, noise, misfit and extrapolation."""
    extrapolation = growth_per_dex * np.asarray(distance_dex, float)
    parameters = boot_scale * np.asarray(boot_sd, float)
    return np.sqrt(parameters**2 + sigma_noise**2 + misfit_sd**2 + extrapolation**2)


@dataclass(frozen=True)
class ScaleFit:
    """The scale model's three fitted terms (module docstring, step 2)."""

    growth_per_dex: float
    misfit_sd: float
    boot_scale: float


def fit_scale(e: np.ndarray, d: np.ndarray, s_boot: np.ndarray, sigma_noise: float) -> ScaleFit:
    """Gaussian maximum likelihood of e ~ N(0, (c s_boot)^2 + sigma^2 + m^2 + (k d)^2), c >= 1, from a few
    starts of c: the likelihood can have a local optimum that explains the same errors by growth alone."""
    from scipy.optimize import minimize

    def nll(x):
        k, m, c = x
        var = scale_sd(s_boot, sigma_noise, m, k, d, c) ** 2 + 1e-12
        return float(np.sum(np.log(var) + e**2 / var))

    spread = max(float(np.std(e)), 1e-4)
    best = None
    for c0 in (1.0, 2.0, 4.0):
        res = minimize(nll, [spread / max(float(np.mean(d)), 1e-3), spread / 2, c0], method="L-BFGS-B",
                       bounds=[(0.0, None), (0.0, None), (1.0, MAX_BOOT_SCALE)])
        if best is None or res.fun < best.fun:
            best = res
    return ScaleFit(float(best.x[0]), float(best.x[1]), float(best.x[2]))


def conformal_quantiles(z: np.ndarray, level: float) -> tuple[float, float]:
    """(-q, q): q the split-conformal quantile of |z| at rank ceil((n + 1) level); infinite where n is too
    small for the rank."""
    a = np.sort(np.abs(np.asarray(z, float)))
    rank = math.ceil((len(a) + 1) * level)
    q = float(a[rank - 1]) if 1 <= rank <= len(a) else math.inf
    return -q, q


@dataclass(frozen=True)
class PredictionInterval:
    """A prediction interval for one run's loss. low/high None: unbounded (the reason says why)."""

    low: float | None
    high: float | None
    level: float
    where: Extrapolation
    bias_corrected: float | None = None  # the point shifted by a law file's bias_per_dex (0 since 2026-12-01)
    sd_log: dict = field(default_factory=dict)  # the three components of the scale, in log loss
    beyond_backtests: bool = False  # farther out than any backtest: the scale model is extrapolated
    reason: str = ""

    @property
    def bounded(self) -> bool:
        return self.low is not None and self.high is not None

    def to_json(self) -> dict:
        out = {"interval": [self.low, self.high] if self.bounded else None, "level": self.level,
               "bias_corrected_loss": self.bias_corrected, "sd_log": self.sd_log,
               "extrapolation": self.where.to_json(), "beyond_backtests": self.beyond_backtests}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Calibration:
    """What a law file keeps to give prediction intervals later: the scale model and its score quantiles."""

    level: float
    sigma_noise: float
    bias_per_dex: float
    growth_per_dex: float
    score_low: float  # -inf: unbounded below
    score_high: float  # inf: unbounded above
    n_folds: int
    n_scores: int
    backtested_up_to_dex: float
    fitted: FittedRange
    method: str = METHOD
    quantiles: str = CONFORMAL  # or the reason the score quantiles are Student-t ones (too few scores)
    misfit_sd: float = 0.0  # 0 in law files from before the misfit term
    boot_scale: float = 1.0  # 1 in law files from before the bootstrap's inflation was fitted (2026-12-02)
    floor_dof: float | None = None  # the Student-t floor's degrees of freedom; None in older files (folds - 1)

    def scale(self, distance_dex, boot_sd) -> np.ndarray:
        return scale_sd(boot_sd, self.sigma_noise, self.misfit_sd, self.growth_per_dex, distance_dex, self.boot_scale)

    def interval(self, point: float, params: float, tokens: float, boot_sd: float, flops=None) -> PredictionInterval:
        """The interval for the actual loss of a run of N params on D tokens whose law predicts `point`."""
        where = self.fitted.where(params, tokens, flops)
        d = where.distance_dex
        sd = {"parameters": self.boot_scale * float(boot_sd), "noise": self.sigma_noise, "misfit": self.misfit_sd,
              "extrapolation": self.growth_per_dex * d}
        beyond = d > self.backtested_up_to_dex + 1e-9
        if self.n_folds < MIN_FOLDS or not (math.isfinite(self.score_low) and math.isfinite(self.score_high)):
            why = (f"unbounded: {self.n_folds} backtest fold(s), {MIN_FOLDS} needed" if self.n_folds < MIN_FOLDS
                   else f"unbounded: {self.n_scores} backtest errors are too few for a {self.level:.0%} interval")
            return PredictionInterval(None, None, self.level, where, None, sd, beyond, why)
        s = float(self.scale(d, boot_sd))
        shift = self.bias_per_dex * d
        # e = log pred - log actual = shift + s z, so log actual = log pred - shift - s z.
        low = point * math.exp(-shift - s * self.score_high)
        high = point * math.exp(-shift - s * self.score_low)
        return PredictionInterval(low, high, self.level, where, point * math.exp(-shift), sd, beyond)

    def to_json(self) -> dict:
        out = asdict(self)
        out["score_low"] = None if math.isinf(self.score_low) else self.score_low
        out["score_high"] = None if math.isinf(self.score_high) else self.score_high
        return out

    @classmethod
    def from_json(cls, raw, where: str = "the law file") -> Calibration:
        """Read what to_json wrote; a one-line UserError for a missing or malformed field."""
        if not isinstance(raw, dict):
            raise UserError(f"{where}: prediction_calibration must be an object")
        try:
            fitted = FittedRange(**{k: _positive(raw["fitted"][k]) for k in ("params_max", "tokens_max", "flops_max")})
            nums = {k: _number(raw[k]) for k in ("level", "sigma_noise", "bias_per_dex", "growth_per_dex",
                                                  "backtested_up_to_dex")}
            low = -math.inf if raw["score_low"] is None else _number(raw["score_low"])
            high = math.inf if raw["score_high"] is None else _number(raw["score_high"])
            counts = {k: int(_number(raw[k])) for k in ("n_folds", "n_scores")}
            misfit = _number(raw.get("misfit_sd", 0.0))
            boot_scale = _number(raw.get("boot_scale", 1.0))
            floor_dof = None if raw.get("floor_dof") is None else _positive(raw["floor_dof"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where}: prediction_calibration is malformed ({_describe(e)})") from None
        if (not 0 < nums["level"] < 1 or min(nums["sigma_noise"], nums["growth_per_dex"], misfit) < 0
                or boot_scale < 1 or low > high):
            raise UserError(f"{where}: prediction_calibration has out-of-range values")
        method = str(raw.get("method", METHOD))
        quantiles = str(raw.get("quantiles", CONFORMAL))  # law files from before the Student-t fallback
        return cls(score_low=low, score_high=high, fitted=fitted, method=method, quantiles=quantiles,
                   misfit_sd=misfit, boot_scale=boot_scale, floor_dof=floor_dof, **nums, **counts)


def _number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{v!r} is not a finite number")
    return float(v)


def _positive(v) -> float:
    if _number(v) <= 0:
        raise ValueError(f"{v!r} is not positive")
    return float(v)


def _describe(e: Exception) -> str:
    return f"missing {e.args[0]!r}" if isinstance(e, KeyError) else str(e)


def calibrate(backtest: Backtest, sigma_noise: float, fitted: FittedRange, level: float = 0.95) -> Calibration:
    """The scale model and score quantiles from a backtest's errors (unbounded with too few folds)."""
    from scipy.stats import t as student_t

    e, d, s_boot = backtest.arrays()
    n_folds = len({h.fold for h in backtest.errors})
    top = float(d.max()) if len(d) else 0.0
    if n_folds < MIN_FOLDS:
        return Calibration(level, sigma_noise, 0.0, 0.0, -math.inf, math.inf, n_folds, len(e), top, fitted)
    fit = fit_scale(e, d, s_boot, sigma_noise)
    bias = 0.0  # centred on the law's prediction: a drift of the refits does not carry over (module docstring)
    z = e / (scale_sd(s_boot, sigma_noise, fit.misfit_sd, fit.growth_per_dex, d, fit.boot_scale) + 1e-12)
    lo, hi = conformal_quantiles(z, level)
    draws = effective_draws(z, [h.fold for h in backtest.errors])
    dof = max(draws - 1.0, n_folds - 1.0)  # never fewer than the folds: each is one refit at least
    floor = float(student_t.ppf(1 - (1 - level) / 2, dof))
    quantiles = CONFORMAL
    if math.isinf(lo) or math.isinf(hi):  # too few scores for the rank: parametric, said with every prediction
        quantiles = (f"Student-t ({dof:.3g} degrees of freedom): {len(e)} backtest errors are too few for "
                     f"distribution-free conformal quantiles at {level:.0%} (they need {conformal_minimum(level)})")
        lo, hi = -float(np.abs(z).max()), float(np.abs(z).max())
    lo, hi = min(lo, -floor), max(hi, floor)
    return Calibration(level, sigma_noise, bias, fit.growth_per_dex, lo, hi, n_folds, len(e), top, fitted,
                       quantiles=quantiles, misfit_sd=fit.misfit_sd, boot_scale=fit.boot_scale,
                       floor_dof=dof)


def effective_draws(z: np.ndarray, folds: list[str]) -> float:
    """How many independent draws the scores are worth, given that the scores of one fold share one refit:
    Kish's design effect for cluster samples, n / (1 + (m - 1) rho) (Kish 1965, "Survey Sampling"), with m the
    size-weighted mean fold size and rho the scores' intraclass correlation within folds, from the one-way
    ANOVA estimator with the usual n0 for unequal group sizes (Donner 1986), clipped to [0, 1]. Between the folds' count
    (rho = 1, every fold one draw) and the scores' (rho = 0)."""
    z, labels = np.asarray(z, float), np.asarray(folds)
    groups = [z[labels == g] for g in dict.fromkeys(folds)]
    n, k = len(z), len(groups)
    sizes = np.array([len(g) for g in groups], float)
    if k < 2 or n <= k:
        return float(k)
    between = sum(len(g) * (g.mean() - z.mean()) ** 2 for g in groups) / (k - 1)
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / (n - k)
    n0 = (n - float((sizes**2).sum()) / n) / (k - 1)
    denom = between + (n0 - 1) * within
    rho = float(np.clip((between - within) / denom, 0.0, 1.0)) if denom > 0 else 1.0
    m = float((sizes**2).sum() / n)
    return float(n / (1 + (m - 1) * rho))


def conformal_minimum(level: float) -> int:
    """The fewest scores whose split-conformal rank ceil((n + 1) level) is within n (19 at 95%)."""
    return next(n for n in range(1, 10**6) if math.ceil((n + 1) * level) <= n)


def calibrate_fit(
    table: RunTable,
    law,
    form: str = "chinchilla",
    options: dict | None = None,
    level: float = 0.95,
    n_boot: int = FOLD_BOOTSTRAP,
    seed: int = 0,
    fit_point=None,
    warm: bool = True,
) -> tuple[Calibration, Backtest]:
    """Backtest a fit's runs and calibrate its prediction intervals: what `scaling fit` stores. warm: fold
    refits start from the fit's own params (else from the form's full start grid)."""
    start = {k: float(getattr(law, k)) for k in PARAM_NAMES} if warm else None
    bt = run_backtest(table, form, options, n_boot, seed, fit_point, start)
    return calibrate(bt, residual_spread(law, table), FittedRange.of(table), level), bt


# --- how well it did: coverage of held-out folds, error against distance -----------------------------------


def leave_fold_out(backtest: Backtest, calibration: Calibration) -> np.ndarray:
    """For every backtest error: is it inside the interval calibrated on the *other* folds' errors?

    The honest coverage of the backtests themselves (the in-sample one is optimistic by construction); NaN
    where the other folds are too few to calibrate on."""
    inside = np.full(len(backtest.errors), np.nan)
    names = [h.fold for h in backtest.errors]
    for fold in dict.fromkeys(names):
        rest = Backtest(backtest.folds, [h for h in backtest.errors if h.fold != fold])
        cal = calibrate(rest, calibration.sigma_noise, calibration.fitted, calibration.level)
        if cal.n_folds < MIN_FOLDS or math.isinf(cal.score_low) or math.isinf(cal.score_high):
            continue
        for i, h in enumerate(backtest.errors):
            if h.fold == fold:
                z = h.log_error / float(cal.scale(h.where.distance_dex, h.boot_sd))  # centred: calibrate()
                inside[i] = float(cal.score_low <= z <= cal.score_high)
    return inside


def by_distance(backtest: Backtest, inside: np.ndarray) -> list[dict]:
    """The error table: per bin of the compute multiple, runs, mean signed and absolute % error, coverage."""
    rows = []
    mult = np.array([h.where.flops_multiple for h in backtest.errors])
    rel = np.array([math.expm1(-h.log_error) for h in backtest.errors])  # actual / pred - 1
    pct = 100 * (1 / (1 + rel) - 1)  # (pred - actual) / actual
    for lo, hi in zip(DISTANCE_BINS[:-1], DISTANCE_BINS[1:], strict=True):
        m = (mult >= lo) & (mult < hi) if lo > 1 else mult < hi
        if not m.any():
            continue
        cov = inside[m][np.isfinite(inside[m])]
        rows.append({"flops_multiple": [lo, None if math.isinf(hi) else hi], "n": int(m.sum()),
                     "mean_error_pct": float(pct[m].mean()), "mean_abs_error_pct": float(np.abs(pct[m]).mean()),
                     "coverage": float(cov.mean()) if len(cov) else None})
    return rows


@dataclass(frozen=True)
class CoverageReport:
    """What `scaling fit --backtest` reports about the prediction intervals themselves."""

    level: float
    coverage: float | None  # share of held-out runs inside the interval calibrated on the other folds
    n_scored: int
    by_distance: list[dict]
    folds: list[Fold]

    def to_json(self) -> dict:
        return {"level": self.level, "coverage_leave_fold_out": self.coverage, "n_scored": self.n_scored,
                "by_distance": self.by_distance, "folds": [asdict(f) for f in self.folds]}


def coverage_report(backtest: Backtest, calibration: Calibration) -> CoverageReport:
    inside = leave_fold_out(backtest, calibration)
    scored = inside[np.isfinite(inside)]
    return CoverageReport(calibration.level, float(scored.mean()) if len(scored) else None, len(scored),
                          by_distance(backtest, inside), backtest.folds)


def extrapolation_warning(pi: PredictionInterval, calibration: Calibration) -> str | None:
    """A warning when the target lies farther beyond the fitted runs than any backtest reached: there the
    interval rests on the scale model's linear growth, not on measured errors."""
    w = pi.where
    where = (f"{w.params_multiple:.3g}x the largest fitted N, {w.tokens_multiple:.3g}x its D and "
             f"{w.flops_multiple:.3g}x its C")
    if not pi.beyond_backtests:
        return None
    reach = 10**calibration.backtested_up_to_dex
    if not pi.bounded:  # nothing to call too narrow: say what the missing interval leaves the user with
        return (f"the target is {where}, beyond the backtests' reach ({reach:.3g}x), and there is no prediction "
                "interval: the point prediction's error there is unmeasured")
    return (f"the target is {where}, beyond the backtests' reach ({reach:.3g}x): the prediction interval "
            "extrapolates the measured error growth and may be too narrow")


def prediction_lines(interval: list | None, level: float | None, reason: str, extrapolation: dict | None,
                     warnings: list[str]) -> list[str]:
    """The lines predict, plan and launch print: the prediction interval (or why there is none), the N, D and
    C multiples beyond the fitted runs, and the warnings."""
    from scaling.units import format_factor, format_interval

    lines = []
    if interval is not None:
        lines.append(f"  {100 * level:.0f}% prediction interval {format_interval(*interval, '.4f')} (the actual "
                     "loss of such a run: noise, extrapolation and parameter error, calibrated by backtests)")
    else:
        lines.append(f"  prediction interval: {reason}")
    if extrapolation is not None:
        where = extrapolation
        lines.append(f"  beyond the fitted runs: {format_factor(where['params_multiple'])} N, "
                     f"{format_factor(where['tokens_multiple'])} D, {format_factor(where['flops_multiple'])} C")
    lines.extend(f"  warning: {w}" for w in warnings)
    return lines


def prediction_record(law, params: float, tokens: float) -> dict:
    """prediction_interval (null when unbounded or uncalibrated), its details, the multiples beyond the fitted
    runs and the extrapolation warning, for a FittedLaw: the keys `predict --json` carries beside ci and
    launch's prediction.json beside predicted_interval."""
    pi = law.prediction_interval(params, tokens)
    if pi is None:
        why = "no backtest calibration in this law (a published law, or fitted before; refit with scaling fit --out)"
        return {"prediction_interval": None, "prediction": {"reason": why}, "extrapolation": None, "warnings": []}
    baseline = getattr(law, "data_baseline", None)
    warnings = [w for w in (extrapolation_warning(pi, law.calibration), quantile_note(pi, law.calibration),
                            choice_note(getattr(law, "form_choice", None)), baseline and baseline.note()) if w]
    details = pi.to_json()
    details["quantiles"] = law.calibration.quantiles
    return {"prediction_interval": details.pop("interval"), "prediction": details,
            "extrapolation": details.pop("extrapolation"), "warnings": warnings}


def quantile_note(pi: PredictionInterval, calibration: Calibration) -> str | None:
    """What a bounded interval from Student-t quantiles rests on (None for conformal ones)."""
    if not pi.bounded or calibration.quantiles == CONFORMAL:
        return None
    return f"the prediction interval's quantiles are {calibration.quantiles}: it assumes roughly t-distributed errors"


def choice_note(form_choice: dict | None) -> str | None:
    """A --form auto law whose choice, redone in every backtest fold, predicted worse than the plain form
    (scaling.fit.auto.score_nested): said with each prediction, as `scaling fit` said it (None otherwise)."""
    nested = (form_choice or {}).get("nested")
    if not isinstance(nested, dict):
        return None
    try:
        mine, plain = _number(nested["mae_pct"]), _number(nested["plain_mae_pct"])
        plain_failed = _number(nested.get("plain_failed", 0))
    except (KeyError, ValueError):
        return None  # an unreadable record says nothing either way
    from scaling.fit.auto import NestedScore  # (auto imports this module)

    if not NestedScore(0, 0, mine, plain, int(plain_failed)).plain_better:  # the one rule `scaling fit` prints by
        return None
    return (f"--form auto chose {form_choice.get('chosen')}, but choosing, redone in every backtest fold, "
            f"predicted worse ({mine:.2f}% mean |error|) than the plain form ({plain:.2f}%): consider refitting "
            "with --form chinchilla")
