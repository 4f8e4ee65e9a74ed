"""Parametric scaling laws L(N, D) = E + A/N^alpha + B/D^beta, the published fits, and the law file.

numpy only. The compute-optimal frontier here is the one both `scaling fit` and `scaling plan` use.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json

LAW_SCHEMA = "scaling-law/1"
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class ChinchillaLaw:
    """Hoffmann et al. 2022 eq. (2): L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, params, tokens):
        n, d = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
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
        return self.G * c6**self.a, c6**self.b / self.G

    def optimal_tokens(self, params):
        """D_opt for a given N on the same frontier: invert N_opt = G (C/6)^a, then D = (C/6) / N."""
        n = np.asarray(params, dtype=float)
        c6 = (n / self.G) ** (1.0 / self.a)
        return c6 / n

    def to_dict(self) -> dict:
        return {k: float(getattr(self, k)) for k in PARAM_NAMES}


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


@dataclass
class LawFile:
    """What `scaling fit --out` writes and `scaling plan/predict/launch --law` read."""

    law: ChinchillaLaw
    ci: dict[str, list[float]] = field(default_factory=dict)
    ci_level: float = 0.95
    bootstrap_params: list[list[float]] = field(default_factory=list)  # rows of (E, A, B, alpha, beta)
    param_convention: str = "total"
    form: str = "chinchilla"
    fit_options: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def predict_loss(self, params, tokens) -> tuple[float, list[float] | None]:
        """The point prediction, and its percentile interval from the bootstrap fits when there are any."""
        point = float(self.law.loss(params, tokens))
        if not self.bootstrap_params:
            return point, None
        p = np.asarray(self.bootstrap_params, dtype=float)
        with np.errstate(over="ignore"):  # a degenerate refit (exponent far below 0) predicts an infinite loss
            losses = p[:, 0] + p[:, 1] / params ** p[:, 3] + p[:, 2] / tokens ** p[:, 4]
        tail = 100 * (1 - self.ci_level) / 2
        lo, hi = np.percentile(losses, [tail, 100 - tail])
        return point, [float(lo), float(hi)]

    def to_dict(self) -> dict:
        return {
            "schema": LAW_SCHEMA,
            "form": self.form,
            "params": self.law.to_dict(),
            "a": self.law.a,
            "b": self.law.b,
            "ci": self.ci,
            "ci_level": self.ci_level,
            "param_convention": self.param_convention,
            "fit_options": self.fit_options,
            "rows": self.rows,
            "bootstrap_params": self.bootstrap_params,
            **self.extra,
        }


def params_problem(params: dict[str, float]) -> str | None:
    """Why these Chinchilla params cannot be extrapolated with, or None. E may sit on its bound 0 (data that
    show no irreducible loss); A, B and the exponents must be positive, or loss would not fall with N or D."""
    bad = [k for k, v in params.items() if not math.isfinite(v) or v < 0 or (v == 0 and k != "E")]
    return None if not bad else ", ".join(f"{k} = {params[k]:.3g}" for k in bad)


def save_law(path: str | Path, law_file: LawFile) -> None:
    atomic_write_json(path, law_file.to_dict())


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


def load_law(path: str | Path) -> LawFile:
    """Read a law file, with a one-line UserError for a missing, foreign or malformed one."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"law file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"law file {path} is not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(raw, dict) or raw.get("schema") != LAW_SCHEMA:
        raise UserError(f"law file {path} is not a scaling law file (expected schema {LAW_SCHEMA!r})")
    try:
        values = {k: float(raw["params"][k]) for k in PARAM_NAMES}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"law file {path} lacks numeric params {', '.join(PARAM_NAMES)}") from None
    if params_problem(values):
        raise UserError(f"law file {path} has non-finite params, a negative E, or A, B, alpha, beta not positive")
    ci_level = raw.get("ci_level", 0.95)
    if isinstance(ci_level, bool) or not isinstance(ci_level, (int, float)) or not 0 < ci_level < 1:
        raise UserError(f"law file {path}: ci_level must be a number in (0, 1), got {ci_level!r}")
    try:
        replicates = np.asarray(raw.get("bootstrap_params") or np.empty((0, 5)), dtype=float)
    except (TypeError, ValueError):
        replicates = None
    if replicates is None or replicates.ndim != 2 or replicates.shape[1] != len(PARAM_NAMES):
        raise UserError(f"law file {path}: bootstrap_params must be rows of {', '.join(PARAM_NAMES)}")
    if not isinstance(raw.get("ci") or {}, dict):
        raise UserError(f"law file {path}: ci must be an object of intervals")
    known = {"schema", "form", "params", "a", "b", "ci", "ci_level", "param_convention", "fit_options",
             "rows", "bootstrap_params"}
    return LawFile(
        law=ChinchillaLaw(**values),
        ci=raw.get("ci") or {},
        ci_level=float(ci_level),
        bootstrap_params=replicates.tolist(),
        param_convention=raw.get("param_convention", "total"),
        form=raw.get("form", "chinchilla"),
        fit_options=raw.get("fit_options") or {},
        rows=raw.get("rows") or {},
        extra={k: v for k, v in raw.items() if k not in known},
    )


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
