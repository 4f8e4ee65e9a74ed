"""`scaling fit --form auto`: the variant of the Chinchilla fit that the user's own backtest predicts best.

The variants are the ones the literature uses to get better point predictions from few or small runs:
- the plain Chinchilla form (Hoffmann et al. 2022, Approach 3);
- tied exponents alpha = beta (Gadre et al. 2024, "Language models scale reliably with over-training and on
  downstream tasks", who tie them when runs are few): one parameter fewer to extrapolate with;
- the smallest model size left out, or the least-trained quarter of the runs (fewest tokens per parameter)
  left out: small and short runs sit where the law's form fits worst (Porian et al. 2024 §3; Hoffmann et al.
  2022 leave out their smallest models from some fits);
- N counted another way where the table has the columns: total parameters (Pearce & Song 2024), Kaplan's
  non-embedding count, or non-embedding plus the head's matrix (Porian et al. 2024).

Each variant is refitted on the same rolling-origin folds (scaling.fit.predictive.fold_masks: the largest
budgets, then the largest sizes, held out) from the form's full start grid, never from a fit that saw the
held-out runs, and scored by the mean absolute % error of the held-out losses, over the folds every variant
could fit. The lowest wins; a tie goes to the simpler variant (the order below). Nothing is random: the same
table gives the same choice (--seed moves only the bootstrap).

Folds along D (the largest token budgets held out) were tried and left out (2026-12-01). On the `small`
grid's sweeps they kept the choice off variants that miss a longer run of a fitted size (9.7% and 8.2% off
the 800K-token runs without them, 2.4% with), but on published sweeps they chose worse: Gadre et al.'s runs
0.76% and 4.99% off their 1.4B and 7B runs against 0.18% and 2.19%, and Epoch's median split 0.92% against
0.83% (benchmarks/interval_coverage.py and holdout_accuracy.py --form auto).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from gptcore.errors import UserError
from scaling.fit.data import RunTable
from scaling.fit.estimators import ESTIMATORS
from scaling.fit.fitting import check_table
from scaling.fit.predictive import MIN_FOLDS, fold_masks

CRITERION = "mean absolute % error of held-out losses on rolling-origin backtests (folds every variant fitted)"
BACKTEST_KEEP = 32  # starts carried to convergence in a fold's refit: the grid's best 32 after 10 steps
LEAST_TRAINED_QUANTILE = 0.25


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    convention: str = "total"
    options: dict = field(default_factory=dict)  # the estimator's options (tie_exponents)
    drop: str | None = None  # "smallest" (model size) or "least_trained" (tokens per parameter)

    def keep(self, table: RunTable) -> np.ndarray:
        """The rows this variant fits: all, or all but the smallest size or the least-trained quarter."""
        if self.drop == "smallest":
            return table.params > table.params.min()
        if self.drop == "least_trained":
            per_param = table.tokens / table.params
            return per_param >= np.quantile(per_param, LEAST_TRAINED_QUANTILE)
        return np.ones(len(table), bool)

    def dropped_reason(self) -> str:
        return {"smallest": "of the smallest model size (--form auto: left out)",
                "least_trained": "among the least-trained quarter (fewest tokens per parameter; --form auto: "
                "left out)"}[self.drop]


def variants(base: str, conventions: list[str]) -> list[Variant]:
    """The candidates, simplest first: the plain form and its options in the table's convention, then the
    plain form in each other convention the table has columns for."""
    out = [Variant("chinchilla", "plain Chinchilla form", base),
           Variant("tied", "tied exponents alpha = beta (Gadre et al. 2024)", base, {"tie_exponents": True}),
           Variant("drop-smallest", "smallest model size left out", base, drop="smallest"),
           Variant("drop-least-trained", "least-trained quarter of the runs left out", base, drop="least_trained")]
    out += [Variant(f"N={c}", f"plain form, N counted as {c.replace('_', '-')} parameters", c)
            for c in conventions if c != base]
    return out


@dataclass
class VariantScore:
    name: str
    description: str
    convention: str
    folds_fitted: int = 0
    n_scored: int = 0  # held-out runs on the common folds
    mae_pct: float | None = None
    mean_error_pct: float | None = None  # (predicted - actual) / actual: > 0 over-predicts
    max_abs_error_pct: float | None = None
    refused: str | None = None


@dataclass(frozen=True)
class AutoChoice:
    """The chosen variant and the backtest table behind the choice: what the law file keeps (form_choice)."""

    chosen: str
    scores: list[VariantScore]
    folds: list[str]
    criterion: str = CRITERION

    @property
    def variant(self) -> VariantScore:
        return next(s for s in self.scores if s.name == self.chosen)

    def to_json(self) -> dict:
        return {"chosen": self.chosen, "criterion": self.criterion, "folds": self.folds,
                "table": [asdict(s) for s in self.scores]}


def _fold_errors(v: Variant, table: RunTable, masks) -> dict[str, np.ndarray | str]:
    """Per fold: the held-out runs' % errors (predicted - actual) / actual, or why the refit was refused."""
    out: dict[str, np.ndarray | str] = {}
    options = {**v.options, "keep": BACKTEST_KEEP}
    for name, _, held in masks:
        train = table.subset(~held)
        train = train.subset(v.keep(train))
        try:
            check_table(train, "chinchilla")
            law = ESTIMATORS["chinchilla"].point(train, None, options).law
        except UserError as e:
            out[name] = str(e)
            continue
        pred = law.loss(table.params[held], table.tokens[held])
        out[name] = 100 * (pred - table.loss[held]) / table.loss[held]
    return out


def choose(tables: dict[str, RunTable], base: str) -> tuple[AutoChoice, Variant]:
    """Backtest every variant the tables allow (one table per convention, rows aligned) and pick the best."""
    masks = fold_masks(tables[base])
    candidates = variants(base, list(tables))
    errors = {v.name: _fold_errors(v, tables[v.convention], masks) for v in candidates}
    fitted = {n: {f for f, e in errs.items() if not isinstance(e, str)} for n, errs in errors.items()}
    common = set.intersection(*(f for f in fitted.values() if f)) if any(fitted.values()) else set()
    if len(common) < MIN_FOLDS:
        raise UserError(f"--form auto: {len(tables[base])} runs give {len(common)} backtest fold(s) that every "
                        f"variant can refit (rolling origin: the largest budgets or sizes held out, at least half "
                        f"the runs, and 5 of 2 sizes, left to refit); {MIN_FOLDS} are needed to choose by "
                        "backtest: add budgets or sizes, or name a --form")
    scores = []
    for v in candidates:
        s = VariantScore(v.name, v.description, v.convention, len(fitted[v.name]))
        if not fitted[v.name] >= common:
            s.refused = next(e for e in errors[v.name].values() if isinstance(e, str))
        else:
            pct = np.concatenate([errors[v.name][f] for f, _, _ in masks if f in common])
            if not np.isfinite(pct).all():  # a refit whose exponents ran away: its NaN would win every min()
                bad = next(f for f, _, _ in masks if f in common and not np.isfinite(errors[v.name][f]).all())
                s.refused = f"its refit on the fold '{bad}' predicts no finite loss (the fit ran away)"
            else:
                s.n_scored, s.mae_pct = len(pct), float(np.mean(np.abs(pct)))
                s.mean_error_pct, s.max_abs_error_pct = float(np.mean(pct)), float(np.max(np.abs(pct)))
        scores.append(s)
    comparable = [s for s in scores if s.mae_pct is not None]
    if not comparable:
        raise UserError("--form auto: no variant's backtest refits predict finite losses on these runs "
                        f"({scores[0].refused}); name a --form, or add sizes or budgets")
    best = min(comparable, key=lambda s: s.mae_pct)  # first of equals
    choice = AutoChoice(best.name, scores, [f for f, _, _ in masks if f in common])
    return choice, next(v for v in candidates if v.name == best.name)


def convention_tables(src, base: str) -> dict[str, RunTable]:
    """The runs of a CSV or sweep directory with N counted as `base`, and as each other convention the source
    has the columns for (rows aligned): the tables `choose` compares the counts of N on."""
    from scaling.fit import PARAM_CONVENTIONS
    from scaling.fit.data import load_runs

    table = load_runs(src, base)
    tables = {base: table}
    for convention in PARAM_CONVENTIONS:
        if convention != base:
            try:
                other = load_runs(src, convention)
            except UserError:  # no columns for this count
                continue
            if np.array_equal(other.run_id, table.run_id):
                tables[convention] = other
    return tables


def pick(tables: dict[str, RunTable], base: str) -> tuple[RunTable, dict, AutoChoice]:
    """What `--form auto` fits: the chosen variant's runs (in its convention), its estimator options and the
    choice with the backtest table behind it."""
    choice, variant = choose(tables, base)
    return chosen_table(tables, variant), dict(variant.options), choice


def chosen_table(tables: dict[str, RunTable], variant: Variant) -> RunTable:
    """The runs the chosen variant fits, in its convention, with what it leaves out counted as excluded."""
    table = tables[variant.convention]
    keep = variant.keep(table)
    if keep.all():
        return table
    out = table.subset(keep)
    out.excluded[variant.dropped_reason()] = int((~keep).sum())
    return out
