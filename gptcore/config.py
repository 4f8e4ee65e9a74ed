"""The configs: GPT-2 model shapes (presets, exact parameter counts, FLOPs per token) and training runs.

Torch-free on purpose: the planner and the sweeps size models and check trainer settings without torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from gptcore.errors import UserError
from gptcore.schedule import SCHEDULES

GPT2_VOCAB = 50257


@dataclass(frozen=True)
class GPTConfig:
    """One model shape. `bias` covers every Linear and LayerNorm bias; `qkv_bias` only the Q/K/V projection."""

    vocab_size: int = GPT2_VOCAB
    ctx: int = 1024
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    dropout: float = 0.0
    bias: bool = True
    qkv_bias: bool = False
    tie_weights: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "ctx", "n_layer", "n_head", "d_model"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise UserError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def d_ff(self) -> int:
        return 4 * self.d_model

    @classmethod
    def from_name(cls, name: str, **overrides) -> GPTConfig:
        """A named preset, with any field overridden (e.g. `from_name("gpt2-124m", ctx=256)`)."""
        key = name.lower()
        if key not in PRESETS:
            raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return replace(PRESETS[key], **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# The seed lecture's GPT_CONFIG_124M: untied head, no Q/K/V bias (163,009,536 parameters at ctx 1024).
# OpenAI's released GPT-2 ties the head and has Q/K/V bias: from_name("gpt2-124m", tie_weights=True,
# qkv_bias=True) gives its 124,439,808.
PRESETS: dict[str, GPTConfig] = {
    "gpt2-124m": GPTConfig(n_layer=12, n_head=12, d_model=768),
    "gpt2-355m": GPTConfig(n_layer=24, n_head=16, d_model=1024),
    "gpt2-774m": GPTConfig(n_layer=36, n_head=20, d_model=1280),
    "gpt2-1.5b": GPTConfig(n_layer=48, n_head=25, d_model=1600),
}


# ----------------------------------------------------------------------------- parameter counts


def _linear(n_in: int, n_out: int, bias: bool) -> int:
    return n_in * n_out + (n_out if bias else 0)


def block_params(cfg: GPTConfig) -> int:
    """Parameters in one transformer block: two LayerNorms, attention and the 4x GELU MLP."""
    d, b = cfg.d_model, cfg.bias
    layer_norms = 2 * (d + (d if b else 0))
    attention = _linear(d, 3 * d, b and cfg.qkv_bias) + _linear(d, d, b)
    mlp = _linear(d, cfg.d_ff, b) + _linear(cfg.d_ff, d, b)
    return layer_norms + attention + mlp


def count_params(cfg: GPTConfig) -> int:
    """Exact total parameter count, equal to sum(p.numel()) of gptcore.model.GPT(cfg)."""
    d = cfg.d_model
    embeddings = cfg.vocab_size * d + cfg.ctx * d
    final_norm = d + (d if cfg.bias else 0)
    head = 0 if cfg.tie_weights else cfg.vocab_size * d
    return embeddings + cfg.n_layer * block_params(cfg) + final_norm + head


def count_non_embedding_params(cfg: GPTConfig) -> int:
    """Kaplan et al. 2020's N: all parameters but the token and position embeddings (and an untied head)."""
    d = cfg.d_model
    vocab_matrices = cfg.vocab_size * d * (1 if cfg.tie_weights else 2)
    return count_params(cfg) - vocab_matrices - cfg.ctx * d


def count_matmul_params(cfg: GPTConfig) -> int:
    """Parameters that take part in a matmul per token: all but the embedding lookups, the head included.

    This is the N of "6N" as nanoGPT and PaLM use it: the position table and an untied token table are
    looked up, not multiplied, while the output head's V x d matrix is a matmul whether tied or not.
    """
    d = cfg.d_model
    return count_params(cfg) - cfg.ctx * d - (0 if cfg.tie_weights else cfg.vocab_size * d)


# ----------------------------------------------------------------------------- FLOPs per token


def flops_per_token_6n(n_params: int | float) -> float:
    """Kaplan et al. 2020 §2.1: training costs about 6 FLOPs per parameter per token (2 forward, 4 backward)."""
    return 6.0 * n_params


def attention_flops_per_token(cfg: GPTConfig, seq_len: int | None = None) -> float:
    """PaLM (Chowdhery et al. 2022) appendix B: 12*L*H*Q*T, the attention-score FLOPs per token."""
    t = cfg.ctx if seq_len is None else seq_len
    return 12.0 * cfg.n_layer * cfg.n_head * cfg.head_dim * t


def flops_per_token_with_attention(cfg: GPTConfig, seq_len: int | None = None) -> float:
    """Kaplan 2020 / PaLM appendix B: 6N + 12*L*H*Q*T, with N the matmul parameters (count_matmul_params)."""
    return flops_per_token_6n(count_matmul_params(cfg)) + attention_flops_per_token(cfg, seq_len)


# ----------------------------------------------------------------------------- shape for a target size

def _family_shape(i: int, vocab_size: int, ctx: int, **overrides) -> GPTConfig:
    """The i-th shape the sizing rule allows (i >= 0): d_model 32, 64, ..., 224, then 256, 320, 384, ..."""
    d = 32 * (i + 1) if i < 7 else 256 + 64 * (i - 7)
    head_dim = 32 if d < 256 else 64
    return GPTConfig(vocab_size=vocab_size, ctx=ctx, n_layer=max(1, int(d / 64 + 0.5)), n_head=d // head_dim,
                     d_model=d, **overrides)


def shape_for_params(
    target_params: float,
    vocab_size: int = GPT2_VOCAB,
    ctx: int = 1024,
    convention: str = "non_embedding",
    **overrides,
) -> GPTConfig:
    """The GPT shape whose parameter count is nearest `target_params` (in log terms).

    `convention` says which count the target is: "non_embedding" (Kaplan's N) or "total" (every
    parameter, the default of `scaling fit` after Pearce & Song 2024).

    Rule: aspect ratio d_model / n_layer = 64, n_layer = round(d_model / 64) and at least 1. Kaplan et
    al. 2020 §3.1 found loss nearly flat for aspect ratios 20-200; 64 is GPT-2 124M's 768/12. d_model is a
    multiple of 32 below 256 (head size 32) and of 64 from 256 on (head size 64, GPT-2's), so small CPU
    sweeps still get distinct sizes. Non-embedding size is about 12 * n_layer * d_model^2.
    """
    if not (target_params > 0 and math.isfinite(target_params)):
        raise UserError(f"target parameter count must be a positive number, got {target_params}")
    counters = {"non_embedding": count_non_embedding_params, "total": count_params,
                "non_embedding_with_head": count_matmul_params}
    if convention not in counters:
        raise UserError(f"unknown parameter convention {convention!r}; use one of {', '.join(counters)}")
    count = counters[convention]

    def shape(i: int) -> GPTConfig:
        return _family_shape(i, vocab_size, ctx, **overrides)

    # The count grows with i: bisect for the first shape at or above the target, then take the nearer of it
    # and the one below (the smaller on a tie), in O(log N) counts.
    hi = 1
    while count(shape(hi)) < target_params:
        hi *= 2
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(shape(mid)) < target_params else (lo, mid)
    candidates = [shape(i) for i in (lo - 1, lo) if i >= 0]
    return min(candidates, key=lambda c: abs(math.log(count(c) / target_params)))


# ----------------------------------------------------------------------------- training runs


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)  # True is not a count


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _optional(rule: tuple[Callable[[object], bool], str]) -> tuple[Callable[[object], bool], str]:
    return (lambda v: v is None or rule[0](v)), rule[1]


DTYPES = ("auto", "fp32", "bf16")
PARALLEL = ("ddp", "fsdp")  # gptcore.parallel; one process trains unsharded whatever this says
LOGGERS = ("csv", "tensorboard", "wandb")  # gptcore.loggers: besides metrics.jsonl, which is always written
_POSITIVE_INT = (lambda v: _is_int(v) and v > 0, "a positive integer")
_NON_NEGATIVE_INT = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_FRACTION = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_BETA = (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
_BOOL = (lambda v: isinstance(v, bool), "true or false")

# Every TrainConfig setting's check and what it allows: the one validator of trainer settings, used by
# TrainConfig (so by the CLI) and by sweep grid files (sweeps.grid), which therefore give the same message.
# The comparisons are written so that NaN fails every one.
TRAIN_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "batch_size": _POSITIVE_INT,
    "grad_accum": _POSITIVE_INT,
    "tokens": _optional(_POSITIVE_INT),
    "max_steps": _optional(_POSITIVE_INT),
    "lr": (lambda v: _is_number(v) and 0 < v < math.inf, "a finite number > 0"),
    "min_lr_ratio": _FRACTION,
    "warmup": _NON_NEGATIVE_INT,
    "schedule": (lambda v: v in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
    "wsd_decay_fraction": _FRACTION,
    "weight_decay": (lambda v: _is_number(v) and 0 <= v < math.inf, "a finite number >= 0"),
    "beta1": _BETA,
    "beta2": _BETA,
    "grad_clip": (lambda v: _is_number(v) and 0 <= v < math.inf, "a finite number >= 0 (0: no clipping)"),
    "eval_every": _POSITIVE_INT,
    "eval_batches": _POSITIVE_INT,
    "final_eval_batches": _optional(_POSITIVE_INT),
    "sample_tokens": _NON_NEGATIVE_INT,
    "checkpoint_every": _optional(_POSITIVE_INT),
    "seed": _NON_NEGATIVE_INT,
    "device": (lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", v) is not None,
               "one of auto, cpu, mps, cuda, cuda:N"),
    "dtype": (lambda v: v in DTYPES, f"one of {', '.join(DTYPES)}"),
    "compile": _BOOL,
    "threads": _optional(_POSITIVE_INT),
    "progress": _BOOL,
    "parallel": (lambda v: v in PARALLEL, f"one of {', '.join(PARALLEL)} (auto is resolved by the caller)"),
}


def train_setting_error(name: str, value: object) -> str | None:
    """What is wrong with `value` for the trainer setting `name`, in one line; None if it is allowed."""
    ok, allowed = TRAIN_RULES[name]
    try:
        good = ok(value)
    except TypeError:  # an unhashable value tested for membership
        good = False
    return None if good else f"{name} must be {allowed}, got {value!r}"


# Fields that do not change what is computed: they may differ between a run and its resume.
# init_from is a path: the weights' sha256 (init_from_sha256) is what is hashed, so a moved copy still resumes.
# parallel is not hashed either (the same computation, sharded or not), but a run's checkpoints are of
# one kind, so the trainer refuses to resume one with the other (gptcore.train.Trainer._resume).
NOT_HASHED = ("out", "device", "threads", "compile", "checkpoint_every", "progress", "init_from", "parallel")
NOT_HASHED += ("loggers",)  # where the metrics go besides metrics.jsonl (gptcore.loggers)


@dataclass(frozen=True)
class TrainConfig:
    """One training run (gptcore.train.train). `batch_size` is sequences per process per micro-step; a step
    is batch_size x grad_accum x world_size sequences of model.ctx tokens. Checked by TRAIN_RULES."""

    model: GPTConfig
    data: str
    out: str
    batch_size: int = 16
    grad_accum: int = 1
    tokens: int | None = None  # budget in tokens (rounded up to whole steps), or ...
    max_steps: int | None = None  # ... in steps; exactly one of the two
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100  # steps
    schedule: str = "cosine"
    wsd_decay_fraction: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables
    eval_every: int = 100  # steps; the last step always evaluates
    eval_batches: int = 10
    # The last step's evaluation, the run's final val loss (what a scaling law is fitted to and a prediction is
    # checked against), on more batches than the periodic ones: None, the same eval_batches.
    final_eval_batches: int | None = None
    sample_tokens: int = 32  # generated at each eval; 0 disables
    checkpoint_every: int | None = None  # steps; None: at every eval
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"  # auto | fp32 | bf16
    compile: bool = False
    threads: int | None = None
    progress: bool = True
    # Continued training: the weights of this checkpoint (anything gptcore.pretrained reads) start the run;
    # optimizer and schedule start fresh. train() fills in the sha256 of its weights file and checks it after.
    init_from: str | None = None
    init_from_sha256: str | None = None
    parallel: str = "ddp"  # ddp | fsdp, across processes (gptcore.parallel)
    loggers: tuple[str, ...] = ()  # of LOGGERS (gptcore.loggers); not hashed

    def __post_init__(self) -> None:
        if (self.tokens is None) == (self.max_steps is None):
            raise UserError("give exactly one budget: tokens or max_steps")
        if not isinstance(self.loggers, (tuple, list)) or not all(x in LOGGERS for x in self.loggers):
            raise UserError(f"loggers must be a list of {', '.join(LOGGERS)}, got {self.loggers!r}")
        for name in TRAIN_RULES:
            if name == "max_steps" and self.max_steps == 0 and self.init_from is not None:
                continue  # 0 steps from a checkpoint: a run holding exactly its weights, evaluated
            error = train_setting_error(name, getattr(self, name))
            if error:
                raise UserError(error)

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        """Hash of everything that changes the computation (not NOT_HASHED), data path resolved."""
        d = {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}
        for key in ("init_from_sha256", "final_eval_batches"):  # unset: a run keeps the hash it had before them
            if d[key] is None:
                del d[key]
        d["data"] = str(Path(self.data).resolve())
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
