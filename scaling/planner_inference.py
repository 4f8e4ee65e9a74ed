"""Inference in the bill: the model that reaches a loss for the least training plus serving compute.

Sardana et al. 2023 ("Beyond Chinchilla-Optimal: Accounting for Inference in Language Model Scaling
Laws", §2): serving T tokens costs 2N FLOPs each, so the cheapest model for a target loss l minimises
6 N D(N) + 2 N T, where D(N) is the data that brings a model of N parameters to l under the law. With
T > 0 it is smaller and trained longer than Chinchilla-optimal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptcore.errors import UserError

INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0  # one forward pass per served token (Kaplan et al. 2020 §2.1)
_LOG_D_MAX = math.log(1e30)  # data beyond 1e30 tokens is "never": the law's loss floor for that N


@dataclass(frozen=True)
class InferenceRun:
    params: float
    tokens: float
    training_flops: float
    inference_flops: float

    @property
    def total_flops(self) -> float:
        return self.training_flops + self.inference_flops


@dataclass(frozen=True)
class InferencePlan:
    """Training plus serving `inference_tokens`, for the plan's run and for the cheapest run to the loss."""

    inference_tokens: float
    target_loss: float
    target_loss_source: str
    planned: InferenceRun  # the run as asked for, serving the tokens
    optimal: InferenceRun  # the least total FLOPs reaching target_loss (Sardana et al. 2023)
    chinchilla: InferenceRun  # the least training FLOPs reaching target_loss, serving the same tokens
    optimal_tokens_per_param: float
    saving_vs_chinchilla: float  # 1 - optimal total / chinchilla total

    def to_json(self) -> dict:
        runs = {name: {**vars(getattr(self, name)), "total_flops": getattr(self, name).total_flops}
                for name in ("planned", "optimal", "chinchilla")}
        return {"inference_tokens": self.inference_tokens, "target_loss": self.target_loss,
                "target_loss_source": self.target_loss_source, **runs,
                "optimal_tokens_per_param": self.optimal_tokens_per_param,
                "saving_vs_chinchilla": self.saving_vs_chinchilla}


def _bisect(f, lo: float, hi: float, steps: int = 64) -> float:
    """The root of an increasing f on [lo, hi] (f(lo) < 0 <= f(hi))."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return hi


def tokens_for_loss(loss, params: float, target: float) -> float | None:
    """D with loss(N, D) = target (the loss falls with D), or None when N cannot reach it at any D."""
    def gap(log_d: float) -> float:
        return target - float(loss(params, math.exp(log_d)))
    if gap(_LOG_D_MAX) < 0:
        return None
    return math.exp(_bisect(gap, 0.0, _LOG_D_MAX)) if gap(0.0) < 0 else 1.0


def _cheapest(loss, target: float, inference_tokens: float, log_n_min: float) -> InferenceRun:
    """Golden-section search over log N for the least 6ND(N) + 2NT (unimodal: D(N) falls, 2NT grows)."""
    def run(log_n: float) -> InferenceRun:
        n = math.exp(log_n)
        d = tokens_for_loss(loss, n, target)
        d = math.inf if d is None else d  # only at the very edge of the search, where N barely reaches it
        return InferenceRun(n, d, 6.0 * n * d, INFERENCE_FLOPS_PER_PARAM_TOKEN * n * inference_tokens)

    lo, hi = log_n_min + 1e-9, log_n_min + math.log(1e12)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (lo, b) if run(a).total_flops <= run(b).total_flops else (a, hi)
    return run((lo + hi) / 2)


def plan_inference(loss, params: float, tokens: float, inference_tokens: float, target_loss: float | None,
                   predicted_loss: float) -> InferencePlan:
    """Sardana et al.'s optimum and Chinchilla's (T = 0) for the target loss (default: the planned run's)."""
    target = predicted_loss if target_loss is None else target_loss
    source = "the planned run's predicted loss" if target_loss is None else "--target-loss"
    # The smallest N that reaches the target with unlimited data: below it no D suffices.
    def floor_gap(log_n: float) -> float:
        return target - float(loss(math.exp(log_n), math.exp(_LOG_D_MAX)))
    lo, hi = 0.0, math.log(1e18)
    if floor_gap(hi) < 0:
        raise UserError(f"--target-loss: {target:.4g} is below what the law predicts for any model and data")
    log_n_min = _bisect(floor_gap, lo, hi) if floor_gap(lo) < 0 else lo
    planned = InferenceRun(params, tokens, 6.0 * params * tokens,
                           INFERENCE_FLOPS_PER_PARAM_TOKEN * params * inference_tokens)
    optimal = _cheapest(loss, target, inference_tokens, log_n_min)
    training_only = _cheapest(loss, target, 0.0, log_n_min)
    chinchilla = InferenceRun(training_only.params, training_only.tokens, training_only.training_flops,
                              INFERENCE_FLOPS_PER_PARAM_TOKEN * training_only.params * inference_tokens)
    return InferencePlan(inference_tokens=inference_tokens, target_loss=target, target_loss_source=source,
                         planned=planned, optimal=optimal, chinchilla=chinchilla,
                         optimal_tokens_per_param=optimal.tokens / optimal.params,
                         saving_vs_chinchilla=1.0 - optimal.total_flops / chinchilla.total_flops)
