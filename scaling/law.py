"""Parametric scaling laws L(N, D) = E + A/N^alpha + B/D^beta, the published fits, and the fitted law.

numpy only. The loss and the compute-optimal frontier are written once, in `ChinchillaLaw`, and accept arrays
both ways: evaluated at many (N, D) or C, and with many parameter sets at once (`ChinchillaLaw.from_rows`, the
bootstrap replicates). `FittedLaw` is a fit in memory and the law file on disk, one type.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json
from scaling.fit import PARAM_CONVENTIONS
from scaling.fit.baseline import UnigramBaseline

if TYPE_CHECKING:  # scaling.fit.predictive imports this module
    from scaling.fit.predictive import Calibration, PredictionInterval

LAW_SCHEMA = "scaling-law/1"
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
LOSS_LAW_FORMS = ("chinchilla", "vpnls")  # the fit forms whose result is an L(N, D) law (scaling.fit.estimators)
LAW_FILE_KEYS = ("schema", "form", "params", "a", "b", "ci", "ci_level", "param_convention", "fit_options", "rows",
                 "bootstrap_params", "objective", "n_points", "warnings", "at_flops", "prediction_calibration",
                 "sweep_training", "form_choice", "data_baseline")


def percentile_interval(samples, level: float) -> list:
    """The central `level` percentile interval over axis 0: [lo, hi] floats for one column, lists for several.

    NaN samples (bootstrap refits that were refused) are left out.
    """
    tail = 100 * (1 - level) / 2
    samples = np.asarray(samples, dtype=float)
    columns = samples.reshape(len(samples), -1)
    if np.isinf(samples).any() or np.isnan(columns).all(axis=0).any():
        # An infinite replicate (a refit whose scale ran off) makes that side unbounded, where numpy's
        # interpolation would compute inf - inf; a column of refused refits only has no interval. Both are
        # read off the order statistics here instead of left to numpy's RuntimeWarnings.
        lo, hi = (np.array([_order_quantile(c, q) for c in columns.T]).reshape(samples.shape[1:])
                  for q in (tail, 100 - tail))
    else:
        lo, hi = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return [float(lo), float(hi)] if np.ndim(lo) == 0 else [lo.tolist(), hi.tolist()]


def _order_quantile(column: np.ndarray, q: float) -> float:
    """numpy's linear-interpolation percentile of one column without its NaNs, where an infinite
    neighbour of the percentile's position makes it infinite; NaN for a column of NaNs."""
    x = np.sort(column[~np.isnan(column)])
    if len(x) == 0:
        return math.nan
    pos = q / 100 * (len(x) - 1)
    i = int(math.floor(pos))
    a, b, t = x[i], x[min(i + 1, len(x) - 1)], pos - i
    if t == 0 or a == b:
        return float(a)
    if math.isinf(b) or math.isinf(a):
        return float(b if math.isinf(b) else a)
    return float(a + (b - a) * t)


@dataclass(frozen=True)
class ChinchillaLaw:
    """Hoffmann et al. 2022 eq. (2): L(N, D) = E + A / N^alpha + B / D^beta.

    The parameters are floats, or (K, 1) columns for K laws at once (`from_rows`): then loss and frontier at m
    points come back as (K, m) arrays, by broadcasting, from the same formulas.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @classmethod
    def from_rows(cls, rows) -> ChinchillaLaw:
        """K laws from rows of (E, A, B, alpha, beta), each parameter a (K, 1) column."""
        rows = np.atleast_2d(np.asarray(rows, dtype=float))
        return cls(*(rows[:, j, None] for j in range(len(PARAM_NAMES))))

    def loss(self, params, tokens):
        n, d = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
        # A degenerate bootstrap refit (an exponent far below 0, a scale beyond float range) predicts an infinite
        # or undefined loss: that is its answer, and the intervals read such columns off the order statistics.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """Hoffmann et al. eq. (4): G = (alpha*A / (beta*B))^(1/(alpha+beta)); nan for a law with no frontier."""
        with np.errstate(invalid="ignore"):  # one exponent below 0 (a fit to data that show none)
            return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def compute_optimal(self, flops):
        """Hoffmann et al. eq. (4) with C = 6ND: N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b."""
        c6 = np.asarray(flops, dtype=float) / 6.0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # G of 0 or inf: a degenerate refit
            return self.G * c6**self.a, c6**self.b / self.G

    def optimal_tokens(self, params):
        """D_opt for a given N on the same frontier: invert N_opt = G (C/6)^a, then D = (C/6) / N."""
        n = np.asarray(params, dtype=float)
        c6 = (n / self.G) ** (1.0 / self.a)
        return c6 / n

    def to_dict(self) -> dict:
        return {k: float(getattr(self, k)) for k in PARAM_NAMES}


@dataclass(frozen=True)
class PowerLawFrontier:
    """The frontier Approaches 1 and 2 fit directly: N_opt = k_N C^a, D_opt = k_D C^b (floats or columns)."""

    k_N: float
    a: float
    k_D: float
    b: float

    def compute_optimal(self, flops):
        c = np.asarray(flops, dtype=float)
        return self.k_N * c**self.a, self.k_D * c**self.b


PF_DAY_FLOPS = 1e15 * 86400.0  # one petaFLOP/s-day, Kaplan et al. 2020's unit of compute


@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. 2020: L(N, D) of eq. (1.5) and the compute-efficient size N_opt = 1.3e9 * C^0.73.

    C is in PF-days (Kaplan §6.1, Fig. 14); N counts non-embedding parameters and the loss is in nats per
    GPT-2 BPE token on WebText2, so both are only roughly comparable with a Chinchilla-form fit.
    """

    N_c: float = 8.8e13
    D_c: float = 5.4e13
    alpha_N: float = 0.076
    alpha_D: float = 0.095
    n_opt_coef: float = 1.3e9
    n_opt_exp: float = 0.73

    def loss(self, params, tokens):
        n, d = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
        return ((self.N_c / n) ** (self.alpha_N / self.alpha_D) + self.D_c / d) ** self.alpha_D

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a."""
        return self.n_opt_exp

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b: D = C / (6 N_opt)."""
        return 1.0 - self.n_opt_exp

    def compute_optimal(self, flops):
        """N_opt = 1.3e9 (C / 1 PF-day)^0.73, and D_opt = C / (6 N_opt) from C = 6ND."""
        c = np.asarray(flops, dtype=float)
        n = self.n_opt_coef * (c / PF_DAY_FLOPS) ** self.n_opt_exp
        return n, c / (6.0 * n)

    def optimal_tokens(self, params):
        """D for a given N on the same frontier: invert N_opt(C), then D = C / (6N)."""
        n = np.asarray(params, dtype=float)
        c = PF_DAY_FLOPS * (n / self.n_opt_coef) ** (1.0 / self.n_opt_exp)
        return c / (6.0 * n)

    def to_dict(self) -> dict:
        return {k: float(v) for k, v in self.__dict__.items()}


# Hoffmann et al. 2022, eq. (10), as printed.
CHINCHILLA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", their refit of Approach 3.
EPOCH = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
PUBLISHED = {"chinchilla": CHINCHILLA, "epoch": EPOCH}
KAPLAN = KaplanLaw()


@dataclass(frozen=True, eq=False)  # eq=False: the bootstrap array has no truth value to compare by
class FittedLaw:
    """A fitted law: what every estimator's fit returns, what `scaling fit --out` saves as the law file and
    what `scaling plan/predict/launch --law` load. A published law is one too (`FittedLaw.of`).

    `params` are the form's own (E, A, B, alpha, beta for chinchilla/vpnls; k_N, a, k_D, b for isoflop and
    envelope; the three power laws for kaplan). `law` is set when the form predicts L(N, D). `bootstrap` holds
    the refitted params, one row per replicate, columns in `params`' order (NaN rows: refused refits).
    """

    form: str
    params: dict[str, float]
    law: ChinchillaLaw | KaplanLaw | None = None
    objective: float = math.nan  # what the estimator minimised (summed Huber for chinchilla, else squares)
    n_points: int = 0
    param_convention: str = "total"
    excluded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    options: dict = field(default_factory=dict)  # the fit's settings; "fit_options" in the law file
    details: dict = field(default_factory=dict)  # per-budget parabolas, envelope points, refusals, at_flops
    bootstrap: np.ndarray | None = None
    ci: dict[str, list[float]] = field(default_factory=dict)
    ci_level: float = 0.95
    warnings: list[str] = field(default_factory=list)
    rows: dict = field(default_factory=dict)  # which rows were fitted: RunTable.rows_record()
    extra: dict = field(default_factory=dict)  # law-file keys this version does not know, kept when re-saved
    calibration: Calibration | None = None  # the backtests' prediction-interval model (scaling.fit.predictive)
    # How the fitted runs were trained (LR, batch and warmup rules, ctx, data), as their sweep recorded it in
    # sweep.json (sweeps.grid.training_record): what a launch trains its final run by. None: not from a sweep.
    sweep_training: dict | None = None
    form_choice: dict | None = None  # `fit --form auto`: the variant chosen and its backtest table (scaling.fit.auto)
    # How many fitted runs end above their data's unigram loss (scaling.fit.baseline); None: not recorded.
    data_baseline: UnigramBaseline | None = None

    def __post_init__(self):
        if self.bootstrap is not None:  # rows given as lists (a hand-written law); none at all is None
            boot = np.asarray(self.bootstrap, dtype=float).reshape(-1, len(self.params))
            object.__setattr__(self, "bootstrap", boot if len(boot) else None)

    @classmethod
    def of(cls, law: ChinchillaLaw | KaplanLaw, **kwargs) -> FittedLaw:
        """A law given by its parameters (a published one, or one written by hand)."""
        form = "kaplan" if isinstance(law, KaplanLaw) else "chinchilla"
        return cls(form=form, params=law.to_dict(), law=law, **kwargs)

    # ------------------------------------------------------------------------- the law and its frontier

    @property
    def frontier(self) -> ChinchillaLaw | KaplanLaw | PowerLawFrontier | None:
        """The compute-optimal frontier: the loss law's closed form (the planner's), the fitted power laws,
        or None (a kaplan fit's L(N), L(D), L(C) give none)."""
        if self.law is not None:
            return self.law
        if "k_N" in self.params:
            return PowerLawFrontier(**{k: self.params[k] for k in ("k_N", "a", "k_D", "b")})
        return None

    @property
    def a(self) -> float | None:
        """Exponent of N_opt ∝ C^a, when the form has a frontier."""
        return None if self.frontier is None else self.frontier.a

    @property
    def b(self) -> float | None:
        """Exponent of D_opt ∝ C^b, when the form has a frontier."""
        return None if self.frontier is None else self.frontier.b

    @property
    def has_frontier(self) -> bool:
        return self.frontier is not None

    def compute_optimal(self, flops):
        """(N_opt, D_opt) at compute C."""
        return self.frontier.compute_optimal(flops)

    # ------------------------------------------------------------------------- the bootstrap

    @property
    def n_bootstrap(self) -> int:
        return 0 if self.bootstrap is None else len(self.bootstrap)

    def replicates(self) -> ChinchillaLaw | PowerLawFrontier | None:
        """Every bootstrap replicate at once: the law (or frontier) with (K, 1) parameter columns."""
        if self.bootstrap is None or not self.has_frontier:
            return None
        cols = dict(zip(self.params, self.bootstrap.T[:, :, None], strict=True))
        if isinstance(self.law, ChinchillaLaw):
            return ChinchillaLaw(**{k: cols[k] for k in PARAM_NAMES})
        return PowerLawFrontier(**{k: cols[k] for k in ("k_N", "a", "k_D", "b")})

    def bootstrap_frontiers(self, flops) -> tuple[np.ndarray, np.ndarray] | None:
        """N_opt and D_opt at `flops` for every bootstrap replicate: arrays (K, len(flops))."""
        reps = self.replicates()
        return None if reps is None else reps.compute_optimal(np.atleast_1d(np.asarray(flops, float)))

    def bootstrap_losses(self, params, tokens) -> np.ndarray | None:
        """Predicted loss at (N, D) for every bootstrap replicate (K, len(N))."""
        if not isinstance(self.law, ChinchillaLaw):
            return None
        reps = self.replicates()
        n, d = np.atleast_1d(np.asarray(params, float)), np.atleast_1d(np.asarray(tokens, float))
        return None if reps is None else reps.loss(n, d)

    def interval(self, samples) -> list:
        """The percentile interval of samples at this law's level."""
        return percentile_interval(samples, self.ci_level)

    def prediction_interval(self, params, tokens) -> PredictionInterval | None:
        """The interval for a run's actual loss (noise, extrapolation and parameter error, calibrated by the
        fit's backtests); None for a law without backtest calibration (a published law, an older file)."""
        if self.calibration is None or not isinstance(self.law, ChinchillaLaw):
            return None
        from scaling.fit.predictive import log_spread

        losses = self.bootstrap_losses(params, tokens)
        boot_sd = 0.0 if losses is None else float(log_spread(losses[:, 0])[()])
        return self.calibration.interval(float(self.law.loss(params, tokens)), params, tokens, boot_sd)

    def predict_loss(self, params, tokens) -> tuple[float, list[float] | None]:
        """The point prediction, and its percentile interval from the bootstrap fits when there are any."""
        losses = self.bootstrap_losses(params, tokens)
        return float(self.law.loss(params, tokens)), None if losses is None else self.interval(losses[:, 0])

    # ------------------------------------------------------------------------- the law file

    def to_json(self) -> dict:
        """The law file (schema scaling-law/1) of a law that predicts L(N, D), with its fit's provenance."""
        out = {
            "schema": LAW_SCHEMA,
            "form": self.form,
            "params": self.law.to_dict(),
            "a": self.law.a,
            "b": self.law.b,
            "ci": self.ci,
            "ci_level": self.ci_level,
            "param_convention": self.param_convention,
            "fit_options": self.options,
            "rows": self.rows,
            "bootstrap_params": [] if self.bootstrap is None else self.bootstrap.tolist(),
            "objective": self.objective if math.isfinite(self.objective) else None,
            "n_points": self.n_points,
            "warnings": self.warnings,
        }
        if self.calibration is not None:
            out["prediction_calibration"] = self.calibration.to_json()
        if self.details.get("at_flops"):
            out["at_flops"] = self.details["at_flops"]
        if self.sweep_training is not None:
            out["sweep_training"] = self.sweep_training
        if self.form_choice is not None:
            out["form_choice"] = self.form_choice
        if self.data_baseline is not None:
            out["data_baseline"] = self.data_baseline.to_json()
        return {**out, **self.extra}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> FittedLaw:
        """Read a law file, with a one-line UserError for a missing, foreign or malformed one."""
        path = Path(path)
        raw = _read_law_json(path)
        values = _law_values(path, raw)
        ci_level = raw.get("ci_level", 0.95)
        if isinstance(ci_level, bool) or not isinstance(ci_level, (int, float)) or not 0 < ci_level < 1:
            raise UserError(f"law file {path}: ci_level must be a number in (0, 1), got {ci_level!r}")
        replicates = _bootstrap_rows(path, raw)
        if not isinstance(raw.get("ci") or {}, dict):
            raise UserError(f"law file {path}: ci must be an object of intervals")
        form = raw.get("form", "chinchilla")
        if form not in LOSS_LAW_FORMS:  # a law file holds an L(N, D) law: only these forms fit one
            raise UserError(f"law file {path}: form must be one of {', '.join(LOSS_LAW_FORMS)}, got {form!r}")
        convention = raw.get("param_convention", "total")
        if convention not in PARAM_CONVENTIONS:
            raise UserError(f"law file {path}: param_convention must be one of {', '.join(PARAM_CONVENTIONS)}, "
                            f"got {convention!r}")
        rows = raw.get("rows", {})
        if not isinstance(rows, dict) or not isinstance(rows.get("source", ""), (str, type(None))) \
                or not isinstance(rows.get("excluded") or {}, dict):
            raise UserError(f"law file {path}: rows must be an object (source: a path, excluded: reason -> count), "
                            f"got {json.dumps(rows)[:60]}")
        objective, n_points = raw.get("objective"), raw.get("n_points", rows.get("n"))
        training = raw.get("sweep_training")
        if training is not None and not (isinstance(training, dict) and isinstance(training.get("lr_rule"), dict)):
            raise UserError(f"law file {path}: sweep_training must be an object with an lr_rule object, got "
                            f"{json.dumps(training)[:60]}")
        choice = raw.get("form_choice")
        if choice is not None and not (isinstance(choice, dict) and isinstance(choice.get("chosen"), str)):
            raise UserError(f"law file {path}: form_choice must be an object naming the chosen variant")
        return cls(
            form=form,
            params=values,
            law=ChinchillaLaw(**values),
            objective=float(objective) if _is_number(objective) else math.nan,
            n_points=int(n_points) if _is_number(n_points) else 0,
            param_convention=convention,
            excluded=rows.get("excluded") or {},
            options=raw.get("fit_options") or {},
            details={"at_flops": raw["at_flops"]} if raw.get("at_flops") else {},
            bootstrap=replicates,
            ci=raw.get("ci") or {},
            ci_level=float(ci_level),
            warnings=raw.get("warnings") or [],
            rows=rows,
            extra={k: v for k, v in raw.items() if k not in LAW_FILE_KEYS},
            calibration=_read_calibration(raw, path),
            sweep_training=training,
            form_choice=choice,
            data_baseline=None if raw.get("data_baseline") is None else UnigramBaseline.from_json(
                raw["data_baseline"], f"law file {path}"),
        )

    def with_finite_bootstrap(self) -> FittedLaw:
        """The same law without the bootstrap rows that hold a refused (NaN) or infinite refit."""
        if self.bootstrap is None:
            return self
        return replace(self, bootstrap=self.bootstrap[np.all(np.isfinite(self.bootstrap), axis=1)])


def _read_calibration(raw: dict, path: Path) -> Calibration | None:
    """The law file's prediction-interval calibration; absent is None, malformed is a one-line error."""
    if "prediction_calibration" not in raw:
        return None
    from scaling.fit.predictive import Calibration

    return Calibration.from_json(raw["prediction_calibration"], f"law file {path}")


MIN_EXPONENT, MAX_EXPONENT = 1e-3, 10.0  # alpha, beta: below 1e-3 a 1e6x larger N or D lowers its term by
# under 1.4% (no scaling to extrapolate), and the frontier's 1 / (alpha + beta) overflows near 0


def exponents_out_of_range(values: dict[str, float]) -> bool:
    """alpha or beta outside [MIN_EXPONENT, MAX_EXPONENT]: the one rule for the fit that writes a law and the
    reader that loads it (a fit of a few barely trained runs can give alpha = 4e3: no scaling at all)."""
    return not all(MIN_EXPONENT <= values[k] <= MAX_EXPONENT for k in ("alpha", "beta"))


def extrapolation_problem(values: dict[str, float]) -> str | None:
    """Why a fit's Chinchilla params are no law to extrapolate with (the words `scaling fit` refuses it in),
    or None: a term that does not fall with N or D (params_problem), or exponents out of range."""
    problem = params_problem(values)
    if problem:
        return f"{problem}: loss does not fall with model size and tokens as the law needs"
    if exponents_out_of_range(values):
        return (f"alpha = {values['alpha']:.3g}, beta = {values['beta']:.3g}, outside [{MIN_EXPONENT:g}, "
                f"{MAX_EXPONENT:g}]: the runs do not constrain how loss falls with model size and tokens")
    return None


def _law_values(path: Path, raw: dict) -> dict[str, float]:
    """The law's E, A, B, alpha, beta, each checked here, where the file is read: finite, in range, and with a
    finite compute-optimal frontier (G), so no later step overflows on them."""
    try:
        values = {k: raw["params"][k] for k in PARAM_NAMES}
    except (KeyError, TypeError):
        values = None
    if values is None or not all(_is_number(v) for v in values.values()):
        raise UserError(f"law file {path} lacks numeric params {', '.join(PARAM_NAMES)}")
    values = {k: float(v) for k, v in values.items()}
    if params_problem(values):
        raise UserError(f"law file {path} has non-finite params, a negative E, or A, B, alpha, beta not positive "
                        f"({params_problem(values)})")
    shown = ", ".join(f"{k} = {values[k]:.3g}" for k in PARAM_NAMES)
    if exponents_out_of_range(values):
        raise UserError(f"law file {path}: params alpha and beta must be in [{MIN_EXPONENT:g}, {MAX_EXPONENT:g}] "
                        f"({shown})")
    with np.errstate(all="ignore"):
        g = ChinchillaLaw(*(np.float64(values[k]) for k in PARAM_NAMES)).G
    if not (np.isfinite(g) and g > 0):
        raise UserError(f"law file {path}: params {shown} give no finite compute-optimal frontier "
                        "(G = (alpha A / (beta B))^(1 / (alpha + beta)) overflows)")
    return values


def _bootstrap_rows(path: Path, raw: dict) -> np.ndarray:
    """bootstrap_params as rows of the five params. NaN rows are refused refits; a file holding rows but no
    finite one has nothing to make an interval from (it would be [nan, nan])."""
    try:
        replicates = np.asarray(raw.get("bootstrap_params") or np.empty((0, 5)), dtype=float)
    except (TypeError, ValueError):
        replicates = None
    if replicates is None or replicates.ndim != 2 or replicates.shape[1] != len(PARAM_NAMES):
        raise UserError(f"law file {path}: bootstrap_params must be rows of {', '.join(PARAM_NAMES)}")
    if len(replicates) and not np.isfinite(replicates).all(axis=1).any():
        raise UserError(f"law file {path}: bootstrap_params has {len(replicates)} rows but no finite row "
                        "(every refit refused?); refit, or remove the rows to use the law without an interval")
    return replicates


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read_law_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"law file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"law file {path} is not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(raw, dict) or raw.get("schema") != LAW_SCHEMA:
        raise UserError(f"law file {path} is not a scaling law file (expected schema {LAW_SCHEMA!r})")
    return raw


def params_problem(params: dict[str, float]) -> str | None:
    """Why these Chinchilla params cannot be extrapolated with, or None. E may sit on its bound 0 (data that
    show no irreducible loss); A, B and the exponents must be positive, or loss would not fall with N or D."""
    bad = [k for k, v in params.items() if not math.isfinite(v) or v < 0 or (v == 0 and k != "E")]
    return None if not bad else ", ".join(f"{k} = {params[k]:.3g}" for k in bad)


def check_law_destination(path: str | Path) -> None:
    """Refuse to write a law over a file that is not a law file (a runs CSV, a sweep's own files)."""
    path = Path(path)
    if not path.exists() or path.is_dir():
        return  # a directory: the write fails with its own one-line error
    try:
        schema = json.loads(path.read_text()).get("schema")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        schema = None
    if schema != LAW_SCHEMA:
        raise UserError(f"{path} exists and is not a law file; not overwritten (give another path)")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
