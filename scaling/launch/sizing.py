"""Choosing the final run: (N, D) from the law, and the run built exactly as a sweep run is built.

The shape, learning rate, batch and warmup come from `sweeps.grid.resolve` on a one-run grid that shares
the sweep's ctx, seed and [train] settings, so the final run differs from the sweep's runs only in size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gptcore.config import GPTConfig, count_non_embedding_params
from gptcore.errors import UserError
from scaling import planner_shape
from scaling.law import FittedLaw
from scaling.planner_shape import shape_for_law
from sweeps import grid as grids
from sweeps import hparams
from sweeps.hparams import LRLaw
from sweeps.runner import SETTINGS_NAME


def choose_size(law: FittedLaw, compute: float | None, params: float | None,
                tokens: float | None) -> tuple[float, float]:
    """(N, D): compute-optimal under the law for a budget, or N given and D given or the law's optimum for N."""
    if (compute is None) == (params is None):
        raise UserError("--compute: give --compute C alone, or --params N (optionally with --tokens D)")
    if compute is not None and tokens is not None:
        raise UserError("--tokens: goes with --params, not with --compute")
    if compute is not None:
        n, d = law.law.compute_optimal(compute)
        return float(n), float(d)
    return params, float(tokens if tokens is not None else law.law.optimal_tokens(params))


def sweep_grid(law: FittedLaw, grid: str | None) -> grids.Grid:
    """The grid whose settings the final run shares: --grid, else the grid the law's sweep recorded."""
    from sweeps.orchestrate import read_recorded

    if grid is not None:
        return grids.load_grid(grid)
    source = Path(law.rows.get("source", "")) if law.rows.get("source") else None
    settings = source.parent / SETTINGS_NAME if source else None
    if settings is None or not settings.is_file():
        raise UserError("--grid: the law file does not point at a sweep directory; name the sweep's grid "
                        "(e.g. --grid tiny) so the final run is trained as its runs were")
    recorded = read_recorded(settings, "name the sweep's grid with --grid")
    if isinstance(recorded.get("grid_spec"), dict):
        return grids.grid_from_dict(recorded["grid_spec"], where=str(settings))
    name = recorded.get("grid")  # a sweep directory written before grids were recorded whole
    if name not in grids.preset_names():
        raise UserError(f"--grid: the law's sweep ran grid {name!r}, not a preset; give its grid file with --grid")
    return grids.load_grid(name)


DEFAULT_RULE_ARG = "default"  # `--lr-law default`: the default rule, asked for by name


@dataclass(frozen=True)
class Training:
    """How the final run is trained against how the law's runs were: the LR law it uses (None: the default
    rule), both training records (sweeps.grid.training_record) and where they differ."""

    lr_law: LRLaw | None
    final_run: dict
    sweep: dict | None  # None: the law records none (a table not from a sweep, or an older sweep)
    differences: list[dict]
    notes: list[str]

    def to_json(self) -> dict:
        """prediction.json's "training": what the report says about the final run's training."""
        return {"final_run": self.final_run, "sweep": self.sweep, "differences": self.differences,
                "trained_like_sweep": None if self.sweep is None else not self.differences, "notes": self.notes}


def training_for(law: FittedLaw, law_path: Path, grid: grids.Grid, vocab_size: int, data_hash: str,
                 requested: Path | None, allow_other_lr_rule: bool) -> Training:
    """The final run's training: by the LR rule the law's sweep recorded unless --lr-law asks for another,
    which is refused unless --allow-other-lr-rule (a run trained by another rule than the fitted runs is not
    the run the law predicts)."""
    from sweeps.orchestrate import lr_law_for

    sweep = law.sweep_training
    recorded = sweep.get("lr_rule") if sweep else None
    notes = []
    if requested is not None:
        lr_law = None if str(requested) == DEFAULT_RULE_ARG else hparams.load_lr_law(requested)
    elif recorded is not None:
        lr_law = hparams.lr_law_from_record(recorded, f"law file {law_path}")
    else:
        lr_law = lr_law_for(None)
        notes.append(f"the law records no training rules for its runs (not fitted from a sweep directory that "
                     f"records them): trained by {hparams.describe_lr_rule(hparams.lr_rule_record(lr_law))}, "
                     "which may not be the rule the fitted runs were trained by")
    final_run = grids.training_record(grid, vocab_size, data_hash, lr_law)
    differences = [] if sweep is None else grids.training_differences(sweep, final_run)
    if any(d["setting"] == "lr_rule" for d in differences) and not allow_other_lr_rule:
        raise UserError(f"--lr-law: the final run would be trained by "
                        f"{hparams.describe_lr_rule(final_run['lr_rule'])}, but the law's runs were trained by "
                        f"{hparams.describe_lr_rule(recorded)}; drop --lr-law (and --grid) to train by the sweep's "
                        "rule, or pass --allow-other-lr-rule to train by this one (recorded in prediction.json "
                        "and the report)")
    return Training(lr_law, final_run, sweep, differences, notes)


def shape_for(law: FittedLaw, params: float, vocab_size: int, ctx: int) -> GPTConfig:
    """The trainer's sizing rule, reading N in the law's convention (total or non-embedding): the rule
    `scaling plan` applies too (scaling.planner_shape.shape_for_law)."""
    return shape_for_law(params, law.param_convention, vocab_size, ctx)


def law_params(law: FittedLaw, cfg: GPTConfig) -> int:
    """The model's N as the law counts it."""
    return planner_shape.law_params(cfg, law.param_convention)


def tokens_for_budget(law: FittedLaw, compute: float, params: float, vocab_size: int, ctx: int) -> float:
    """D = C / 6N for the shape the sizing rule gives N: it rounds N to a real shape (far up, for tiny

    embedding-heavy models), and the budget is spent on that shape, not on the N the law asked for.
    """
    return compute / (6 * law_params(law, shape_for(law, params, vocab_size, ctx)))


def final_spec(law: FittedLaw, params: float, tokens: float, grid: grids.Grid, vocab_size: int, data_hash: str,
               lr_law: LRLaw | None) -> grids.RunSpec:
    """The run, built by the sweep's own rules (`sweeps.grid.resolve`) as a one-run grid of the chosen shape."""
    cfg = shape_for(law, params, vocab_size, grid.ctx)
    one = grids.make_grid("final", params=[str(count_non_embedding_params(cfg))], tokens=[str(round(tokens))],
                          ctx=grid.ctx, seed=grid.seed, train=grid.train, where="launch")
    (spec,) = grids.resolve(one, vocab_size, data_hash, lr_law)
    if spec.model != cfg.to_dict():  # resolve re-derives the shape from its non-embedding count
        raise AssertionError(f"sizing rule disagrees: {spec.model} vs {cfg.to_dict()}")
    return spec


def trained_tokens(spec: grids.RunSpec) -> int:
    """Tokens the trainer will actually see: the budget rounded up to whole steps of batch x ctx."""
    per_step = spec.batch_size * spec.model["ctx"]
    return math.ceil(spec.tokens / per_step) * per_step
