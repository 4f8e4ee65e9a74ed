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
could fit. The lowest wins, among the variants whose fit on all the runs is a law that can be extrapolated (a
variant can predict its folds well and still fit all the runs to a negative or runaway exponent, which
`scaling fit` would refuse to write: it is passed over, saying why); a tie goes to the simpler variant (the
order below). Nothing is random: the same table gives the same choice (--seed moves only the bootstrap).

The chosen fit's prediction intervals (`calibrate_choice`) are calibrated on nested backtests: in every
rolling-origin fold of all the runs the choice is made again on that fold's runs alone, and the variant it
picks predicts the fold's held-out runs. The chosen variant's own backtest would be optimistic: it won on
those folds. On Epoch's points, fitted below the 0.4, 0.6 and 0.7 quantiles of compute, its own backtest's
intervals held 79.9%, 87.5% and 94.4% of the larger runs; the nested ones hold 98.6%, 94.8% and 97.2%, at
6.0%, 4.1% and 4.7% of the loss wide (benchmarks/interval_coverage.py --form auto, 2026-12-01). The price is
width where the choice is unstable: Gadre et al.'s C4 runs, fitted on 31 runs, chose tied exponents, but
folds of 16-24 runs chose other variants that missed by 8-9%, and the intervals are 27% wide, not 14% (29%
before degenerate variants were passed over in the folds as in the full choice).
The same nested backtests score the choice as a procedure (`score_nested`): their mean |error| beside the
plain form's on the same folds and runs, printed by `scaling fit` with a suggestion of --form chinchilla
where the plain form did better. It is advice, not part of the choice: on the benchmark's datasets it pointed
the right way on 5 of 6 where the two forms' held-out errors differ (README, "how the method got here").
The one-standard-error rule (the first variant below within one standard error, over folds, of the best;
Hastie, Tibshirani & Friedman 2009, section 7.10), to steady the choice, was tried and left out: Li et
al.'s nested intervals narrowed from 10.0% to 6.6%, but Gadre et al.'s RedPajama ones widened from 17.2%
to 38.9% (measured before small folds fell back to the full fit's choice).

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
from scaling.fit import predictive
from scaling.fit.data import RunTable
from scaling.fit.estimators import ESTIMATORS
from scaling.fit.fitting import check_table
from scaling.fit.predictive import MIN_FOLDS, Backtest, Calibration, Fold, fold_masks

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
    passed_over: str | None = None  # scored, but its fit on all the runs is no law to extrapolate with


@dataclass(frozen=True)
class NestedScore:
    """The choice scored as a procedure: the nested backtests' mean |error| against the plain form's, refitted
    on the same folds and scored on the same held-out runs (a variant that wins the folds it was chosen on
    can still lose here, when choosing on fewer runs picks worse ones)."""

    folds: int
    n_scored: int
    mae_pct: float  # the choice redone on each fold's runs
    plain_mae_pct: float  # the plain Chinchilla form on the same folds and runs
    plain_failed: int = 0  # folds left out of both: the plain refit refused, or predicting no finite loss

    @property
    def plain_better(self) -> bool:
        """Only where the plain form predicted every fold: a form that runs away on some is not the better."""
        return self.plain_failed == 0 and self.plain_mae_pct < self.mae_pct


@dataclass(frozen=True)
class AutoChoice:
    """The chosen variant and the backtest table behind the choice: what the law file keeps (form_choice)."""

    chosen: str
    scores: list[VariantScore]
    folds: list[str]
    criterion: str = CRITERION
    refits: dict = field(default_factory=dict, repr=False, compare=False)  # the backtests' fits, for reuse
    nested: NestedScore | None = None  # once the intervals' nested backtests have run (score_nested)

    @property
    def variant(self) -> VariantScore:
        return next(s for s in self.scores if s.name == self.chosen)

    def to_json(self) -> dict:
        out = {"chosen": self.chosen, "criterion": self.criterion, "folds": self.folds,
               "table": [asdict(s) for s in self.scores]}
        if self.nested is not None:
            out["nested"] = asdict(self.nested)
        return out


Refits = dict  # (variant name, run ids fitted) -> law, or why the refit was refused


def refit(v: Variant, train: RunTable, cache: Refits | None = None):
    """The variant fitted on `train` (its own rows of it) from the full start grid, or why it was refused.
    The nested backtests meet the same runs again and again (a fold's inner cuts are other folds' cuts):
    the fit is deterministic in its runs, so `cache` keeps each one."""
    train = train.subset(v.keep(train))
    key = (v.name, tuple(train.run_id))
    if cache is not None and key in cache:
        return cache[key]
    try:
        check_table(train, "chinchilla")
        law = ESTIMATORS["chinchilla"].point(train, None, {**v.options, "keep": BACKTEST_KEEP}).law
    except UserError as e:
        law = str(e)
    if law is None:
        law = "the refit has a zero term and predicts no loss"
    if cache is not None:
        cache[key] = law
    return law


def _fold_errors(v: Variant, table: RunTable, masks, cache: Refits | None) -> dict[str, np.ndarray | str]:
    """Per fold: the held-out runs' % errors (predicted - actual) / actual, or why the refit was refused."""
    out: dict[str, np.ndarray | str] = {}
    for name, _, held in masks:
        law = refit(v, table.subset(~held), cache)
        if isinstance(law, str):
            out[name] = law
            continue
        pred = law.loss(table.params[held], table.tokens[held])
        out[name] = 100 * (pred - table.loss[held]) / table.loss[held]
    return out


def choose(tables: dict[str, RunTable], base: str, cache: Refits | None = None) -> tuple[AutoChoice, Variant]:
    """Backtest every variant the tables allow (one table per convention, rows aligned) and pick the best.
    `cache`: refits to reuse and add to (a new one if None), kept in the choice as `refits`."""
    cache = {} if cache is None else cache
    masks = fold_masks(tables[base])
    candidates = variants(base, list(tables))
    errors = {v.name: _fold_errors(v, tables[v.convention], masks, cache) for v in candidates}
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
    best = _best_with_a_law(comparable, {v.name: v for v in candidates}, tables, cache)
    choice = AutoChoice(best.name, scores, [f for f, _, _ in masks if f in common], refits=cache)
    return choice, next(v for v in candidates if v.name == best.name)


def _best_with_a_law(comparable: list[VariantScore], by_name: dict[str, Variant], tables: dict[str, RunTable],
                     cache: Refits) -> VariantScore:
    """The lowest backtest error (first of equals) among the variants whose fit on all the runs can be
    extrapolated: a variant that predicts its folds best can still fit all the runs to a degenerate law
    (the tiny grid's seed-1 sweep: the smallest size left out fits the other 9 of its 12 runs to alpha = -4.9,
    where tied exponents give a law). The fit command would refuse to write that law; choosing the next
    variant instead is the same rule in every nested fold, since `choose` runs there too. The check's refit
    (BACKTEST_KEEP starts) is cached with the backtests' refits; the fit command then fits the chosen variant
    from its full start grid."""
    from scaling.law import extrapolation_problem

    for s in sorted(comparable, key=lambda s: s.mae_pct):  # sorted is stable: first of equals
        v = by_name[s.name]
        law = refit(v, tables[v.convention], cache)
        problem = law if isinstance(law, str) else extrapolation_problem(law.to_dict())
        if problem is None:
            return s
        s.passed_over = f"its fit on all {int(v.keep(tables[v.convention]).sum())} runs: {problem}"
    raise UserError("--form auto: every comparable variant's fit on all the runs is degenerate "
                    f"({comparable[0].passed_over}); these runs do not constrain a law: add sizes or budgets")


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


# --- the intervals of the chosen variant: nested backtests --------------------------------------------------

NESTED = "the --form auto choice redone on each fold's own runs (nested backtests; Varma & Simon 2006)"
NOT_REDONE = "the full fit's choice: too few runs to redo it"


def nested_backtest(tables: dict[str, RunTable], base: str, fallback: Variant,
                    n_boot: int = predictive.FOLD_BOOTSTRAP, seed: int = 0,
                    cache: Refits | None = None) -> Backtest:
    """The rolling-origin folds of `tables[base]`, each refitted with the variant that `choose` picks on that
    fold's runs alone (its own inner folds), and scored on all its held-out runs.

    Why not the chosen variant's own backtest: it won on those very folds, so its errors there are the
    smallest of several draws (the selection bias of Varma & Simon 2006, "Bias in error estimation when
    using cross-validation for model selection"; Cawley & Talbot 2010). Redoing the choice inside every fold
    scores the whole procedure, choice included, as the target will meet it. A fold whose runs are too few
    to choose on (a dozen runs leave inner folds of 3-6) is refitted with `fallback`, the full fit's choice,
    and says so: its error is then that of a variant chosen with its held-out runs in view, and a table whose
    folds are all such is backtested as before nesting. `cache`: refits already made on these tables.
    """
    folds, errors, cache = [], [], {} if cache is None else cache
    for i, (name, kind, held) in enumerate(fold_masks(tables[base])):
        inner = {c: t.subset(~held) for c, t in tables.items()}
        fold = Fold(name, kind, int((~held).sum()), int(held.sum()))
        folds.append(fold)
        try:
            variant = choose(inner, base, cache)[1]
            fold.variant = variant.name
        except UserError:
            variant = fallback
            fold.variant = f"{fallback.name} ({NOT_REDONE})"
        law = refit(variant, inner[variant.convention], cache)
        if isinstance(law, str):
            fold.refused = f"the {variant.name} refit: {law}"
            continue
        train, test = chosen_table(inner, variant), tables[variant.convention].subset(held)
        spread = predictive.fold_spread(train, law, test, n_boot, seed + i, bool(variant.options.get("tie_exponents")))
        errors += predictive.held_out_errors(name, train, law, test, spread)
    return Backtest(folds, errors)


def calibrate_choice(tables: dict[str, RunTable], base: str, choice: AutoChoice, law, table: RunTable,
                     level: float = 0.95, n_boot: int = predictive.FOLD_BOOTSTRAP,
                     seed: int = 0) -> tuple[Calibration, Backtest]:
    """The prediction-interval calibration of a --form auto fit (`law`, the `choice` fitted on its `table`):
    the scale model and quantiles of its nested backtests, the noise and fitted range of the fit itself."""
    from dataclasses import replace

    chosen = next(v for v in variants(base, list(tables)) if v.name == choice.chosen)
    bt = nested_backtest(tables, base, chosen, n_boot, seed, choice.refits)
    cal = predictive.calibrate(bt, predictive.residual_spread(law, table), predictive.FittedRange.of(table), level)
    fitted = [f for f in bt.folds if f.refused is None]
    redone = sum(NOT_REDONE not in (f.variant or "") for f in fitted)
    return replace(cal, method=f"{cal.method}; {NESTED}, in {redone} of {len(fitted)} folds"), bt


def score_nested(tables: dict[str, RunTable], base: str, backtest: Backtest, choice: AutoChoice) -> NestedScore:
    """The nested backtests' mean |error| beside the plain form's on the same folds and held-out runs (its
    refits mostly in `choice.refits` already: the choice refitted it on these folds)."""
    plain = variants(base, [base])[0]
    masks = {name: held for name, _, held in fold_masks(tables[base])}
    nested, reference, folds, failed = [], [], 0, 0
    for fold in backtest.folds:
        errors = [h.log_error for h in backtest.errors if h.fold == fold.name]
        if not errors:  # a fold the nested backtests refused
            continue
        law = refit(plain, tables[base].subset(~masks[fold.name]), choice.refits)
        test = tables[base].subset(masks[fold.name])
        with np.errstate(all="ignore"):
            ref = None if isinstance(law, str) else np.log(law.loss(test.params, test.tokens)) - np.log(test.loss)
        if ref is None or not np.isfinite(ref).all():  # refused, or ran away: no number to compare with
            failed += 1
            continue
        nested += errors
        reference += list(ref)
        folds += 1

    def mae(e) -> float:
        return float(np.mean(np.abs(100 * np.expm1(np.asarray(e, float))))) if len(e) else float("nan")

    return NestedScore(folds, len(nested), mae(nested), mae(reference), failed)
