"""The model a plan describes: a trainer preset, a shape given by flags, or the trainer's sizing rule for N.

One shape rule for plan, sweep and launch: `gptcore.config.shape_for_params`, reading N in the law's
parameter convention (total or non-embedding) with the run's vocabulary and context, as `scaling launch`
sizes its final run (scaling.launch.sizing.shape_for calls `shape_for_law` below).
"""

from __future__ import annotations

from dataclasses import dataclass

from gptcore.config import (
    GPT2_VOCAB,
    PRESETS,
    GPTConfig,
    count_matmul_params,
    count_non_embedding_params,
    count_params,
    shape_for_params,
)
from gptcore.errors import UserError

DEFAULT_CTX = 1024


@dataclass(frozen=True)
class ShapeFlags:
    """The shape flags of `scaling plan`; None: not given."""

    preset: str | None = None
    n_layer: int | None = None
    d_model: int | None = None
    n_head: int | None = None
    vocab_size: int | None = None
    ctx: int | None = None
    tie_weights: bool | None = None
    qkv_bias: bool | None = None

    @property
    def fixed(self) -> bool:
        """True when the flags name the model (a preset, or --n-layer with --d-model): N follows from it."""
        return self.preset is not None or self.n_layer is not None


def law_params(cfg: GPTConfig, convention: str) -> int:
    """The model's N as a law counts it: every parameter ("total"), Kaplan's non-embedding count, or that plus
    the head's V x d matrix (the matmul parameters)."""
    counters = {"total": count_params, "non_embedding": count_non_embedding_params,
                "non_embedding_with_head": count_matmul_params}
    return counters[convention](cfg)


def shape_for_law(params: float, convention: str, vocab_size: int, ctx: int, **overrides) -> GPTConfig:
    """The trainer's sizing rule for N counted in the law's convention: the one rule plan and launch use."""
    return shape_for_params(params, vocab_size=vocab_size, ctx=ctx, convention=convention, **overrides)


def check_shape_flags(f: ShapeFlags) -> None:
    """One line for each shape flag out of range or in a combination that means nothing."""
    if f.preset is not None and f.preset.lower() not in PRESETS:
        raise UserError(f"--preset: unknown preset {f.preset!r}; choose one of: {', '.join(PRESETS)}")
    if f.preset is not None and (f.n_layer is not None or f.d_model is not None):
        raise UserError("--preset: gives the shape; drop --n-layer/--d-model (or drop --preset)")
    if (f.n_layer is None) != (f.d_model is None):
        raise UserError("--n-layer/--d-model: give both, or neither to derive the shape from --params")
    for flag, value in {"--vocab": f.vocab_size, "--n-head": f.n_head, "--ctx": f.ctx, "--n-layer": f.n_layer,
                        "--d-model": f.d_model}.items():
        if value is not None and not (isinstance(value, int) and value > 0):
            raise UserError(f"{flag}: must be a positive integer; got {value}")
    if f.n_head is not None and not f.fixed:
        raise UserError("--n-head: goes with --n-layer/--d-model or --preset; a shape derived from --params "
                        "takes the sizing rule's heads (32 or 64 wide)")
    d_model = f.d_model if f.d_model is not None else PRESETS[f.preset.lower()].d_model if f.preset else None
    if f.n_head is not None and d_model % f.n_head:
        raise UserError(f"--n-head: {f.n_head} heads do not divide --d-model {d_model}")


def _overrides(f: ShapeFlags) -> dict:
    given = {"vocab_size": f.vocab_size, "ctx": f.ctx, "tie_weights": f.tie_weights, "qkv_bias": f.qkv_bias}
    return {k: v for k, v in given.items() if v is not None}


def fixed_shape(f: ShapeFlags) -> GPTConfig:
    """The model the flags name: a trainer preset with any flag overriding it, or --n-layer/--d-model
    (heads 64 wide where d_model allows, else 32, as the sizing rule makes them, unless --n-head)."""
    if f.preset is not None:
        heads = {"n_head": f.n_head} if f.n_head is not None else {}
        return GPTConfig.from_name(f.preset, **_overrides(f), **heads)
    head_dim = 64 if f.d_model % 64 == 0 else 32 if f.d_model % 32 == 0 else f.d_model
    n_head = f.n_head if f.n_head is not None else f.d_model // head_dim
    return GPTConfig(**{"vocab_size": GPT2_VOCAB, "ctx": DEFAULT_CTX, **_overrides(f)}, n_layer=f.n_layer,
                     n_head=n_head, d_model=f.d_model)


def derived_shape(f: ShapeFlags, params: float, convention: str) -> GPTConfig:
    """The sizing rule's shape for N (in the law's convention) with the flags' vocabulary, ctx and head."""
    extra = {k: v for k, v in _overrides(f).items() if k in ("tie_weights", "qkv_bias")}
    return shape_for_law(params, convention, f.vocab_size or GPT2_VOCAB, f.ctx or DEFAULT_CTX, **extra)
