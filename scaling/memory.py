"""Training memory per GPU: weights, gradients, optimizer state and activations, with ZeRO sharding.

Model states follow Rajbhandari et al. 2020 (ZeRO, §3 and Fig. 1). Activations count what
gptcore.model.GPT really saves for its backward pass (tests/test_memory.py measures it with
torch.autograd.graph.saved_tensors_hooks), term by term against Korthikanti et al. 2022 ("Reducing
Activation Recomputation in Large Transformer Models", §4). GB here is 10^9 bytes. No torch here: the
planner imports this.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from gptcore.config import GPTConfig

GB = 1e9
ZERO_STAGES = (1, 2, 3)
ATTENTION_KERNELS = ("flash", "eager")  # flash: fused SDPA (what the trainer runs); eager: scores stored
RECOMPUTE = ("none", "selective", "full")
# How the model states are kept. "autocast" is the trainer: fp32 weights and gradients, the matmuls in
# 16 bits under torch.autocast. "mixed" is ZeRO §3.1's mixed precision: 16-bit weights and gradients
# plus an fp32 master copy inside the optimizer state.
STATE_LAYOUTS = ("autocast", "mixed")
_INDEX_BYTES = 8  # int64 token ids and positions, saved by the embedding lookups


def _sixteen_bit(precision: str) -> bool:
    return precision in ("bf16", "fp16")


def state_bytes_per_param(precision: str, layout: str = "autocast") -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per parameter when training with Adam(W).

    ZeRO §3.1: mixed precision keeps 2-byte weights and gradients and 12 bytes of fp32 optimizer state
    (master weights, momentum, variance), K = 12. The trainer (layout "autocast") keeps fp32 weights and
    gradients and Adam's two fp32 moments: 4 + 4 + 8, and autocast's 16-bit weight copies are counted with
    the activations (they are saved for the backward pass). In fp32/tf32 both layouts are 4 + 4 + 8.
    """
    if layout not in STATE_LAYOUTS:
        raise ValueError(f"unknown state layout {layout!r}; use one of {STATE_LAYOUTS}")
    return (2, 2, 12) if _sixteen_bit(precision) and layout == "mixed" else (4, 4, 8)


def _matmul_weights(cfg: GPTConfig) -> int:
    """Matmul weight elements (no biases): Q/K/V, output projection and the MLP per block, and the head."""
    d = cfg.d_model
    return cfg.n_layer * (3 * d * d + d * d + 2 * d * cfg.d_ff) + cfg.vocab_size * d


@dataclass(frozen=True)
class ActivationBytes:
    """Bytes kept for the backward pass of one micro-batch, by where they are saved, and the head's
    transient buffer that is alive only at the end of the forward pass (it counts towards the peak)."""

    layers: float
    head: float
    weight_copies: float
    embeddings: float
    head_transient: float

    @property
    def saved(self) -> float:
        return self.layers + self.head + self.weight_copies + self.embeddings

    @property
    def peak(self) -> float:
        return self.saved + self.head_transient


def _widths(precision: str, layout: str) -> tuple[int, int]:
    """(compute, residual) bytes per element. Under autocast the residual stream and the LayerNorms
    stay fp32 (LayerNorm is on autocast's fp32 list) and the matmuls, GELU and attention run in 16 bits."""
    if not _sixteen_bit(precision):
        return 4, 4
    return (2, 4) if layout == "autocast" else (2, 2)


def layer_bytes(cfg: GPTConfig, micro_batch: int, precision: str, attention: str = "flash",
                layout: str = "autocast") -> float:
    """Bytes one transformer block saves for its backward pass (no tensor or sequence parallelism).

    Korthikanti et al. 2022 eq. (1), sbh(34 + 5as/h) in 16 bits, is this block with dropout: 4sbh for the
    two LayerNorm inputs, 10sbh for the LayerNorm outputs, Q/K/V and the attention output that feed
    matmuls, 16sbh for the GELU's input and output, 2sbh of 1-byte dropout masks, and 5as^2b for the
    attention scores (softmax output 2, its dropout mask 1 and output 2). Here the LayerNorm inputs are
    at the residual stream's width, and each LayerNorm also keeps its fp32 mean and 1/std (2 x 4 bytes a
    row). FlashAttention (Dao et al. 2022, §3.1), as the fused scaled_dot_product_attention kernels run
    it, keeps no s x s scores: only its output and the fp32 log-sum-exp of each row (4abs bytes), and it
    regenerates its dropout mask from the RNG state. Eager attention keeps the softmax output (and, with
    dropout, its mask and output), in the compute width.
    """
    if attention not in ATTENTION_KERNELS:
        raise ValueError(f"unknown attention kernel {attention!r}; use one of {ATTENTION_KERNELS}")
    act, resid = _widths(precision, layout)
    s, b, h, a = cfg.ctx, micro_batch, cfg.d_model, cfg.n_head
    sbh = s * b * h
    kept = 2 * resid * sbh + 14 * act * sbh + 2 * 2 * 4 * s * b
    dropout = cfg.dropout > 0
    if dropout:
        kept += 2 * sbh  # residual dropout masks after attention and after the MLP, 1 byte each
    if attention == "flash":
        return kept + 4 * a * s * b
    return kept + a * s * s * b * (act + ((1 + act) if dropout else 0))


def activation_memory(cfg: GPTConfig, micro_batch: int, precision: str, attention: str = "flash",
                      recompute: str = "none", layout: str = "autocast") -> ActivationBytes:
    """Activations of one micro-batch on one GPU, as gptcore.model.GPT keeps them.

    recompute: "none"; "selective" (Korthikanti §5: recompute only the attention scores in the backward,
    which FlashAttention already does, so with it selective is the same as none); "full" (§4.1, Chen et
    al. 2016's checkpointing per layer: keep each block's input and rebuild one block's activations at a
    time in the backward pass).

    The head (gptcore.head.HeadCrossEntropy) keeps the final LayerNorm's input, its output in the compute
    width, and one (rows x vocab) buffer in the compute width: the softmax, turned into the logits'
    gradient in place (bf16 under autocast, never an fp32 copy). The logits themselves live beside it only
    until the forward pass ends: head_transient. Under autocast every matmul also saves a 16-bit copy of
    its weight (the head's included, tied or not).
    """
    if recompute not in RECOMPUTE:
        raise ValueError(f"unknown recomputation {recompute!r}; use one of {RECOMPUTE}")
    act, resid = _widths(precision, layout)
    s, b, h, v = cfg.ctx, micro_batch, cfg.d_model, cfg.vocab_size
    kernel = "flash" if recompute == "selective" else attention
    one_layer = layer_bytes(cfg, micro_batch, precision, kernel, layout)
    if recompute == "full":
        layers = cfg.n_layer * resid * s * b * h + one_layer
    else:
        layers = cfg.n_layer * one_layer
    head = resid * s * b * h + 2 * 4 * s * b + act * s * b * h + act * s * b * v
    copies = 2 * _matmul_weights(cfg) if _sixteen_bit(precision) and layout == "autocast" else 0
    embeddings = _INDEX_BYTES * (s * b + s) + (s * b * h if cfg.dropout > 0 else 0)
    return ActivationBytes(layers=float(layers), head=float(head), weight_copies=float(copies),
                           embeddings=float(embeddings), head_transient=float(act * s * b * v))


@dataclass(frozen=True)
class MemoryGB:
    """GB per GPU for each part of training memory."""

    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    def sharded(self, stage: int, gpus: int) -> MemoryGB:
        """ZeRO stage 1 shards the optimizer state over the data-parallel GPUs, 2 also the gradients, 3
        also the weights (Rajbhandari et al. 2020, Fig. 1). Activations are per-GPU and never sharded."""
        return replace(
            self,
            optimizer=self.optimizer / gpus,
            gradients=self.gradients / gpus if stage >= 2 else self.gradients,
            weights=self.weights / gpus if stage >= 3 else self.weights,
        )

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


def model_states(n_params: float, precision: str, layout: str = "autocast") -> MemoryGB:
    """Weights, gradients and Adam state of n_params, unsharded, with no activations."""
    w, g, o = state_bytes_per_param(precision, layout)
    return MemoryGB(n_params * w / GB, n_params * g / GB, n_params * o / GB, 0.0)


def training_memory(n_params: float, cfg: GPTConfig, micro_batch: int, precision: str,
                    attention: str = "flash", recompute: str = "none", layout: str = "autocast") -> MemoryGB:
    """Unsharded (plain data-parallel) memory per GPU for training n_params with Adam(W), at the peak:
    model states plus the activations kept and the head's transient logits."""
    act = activation_memory(cfg, micro_batch, precision, attention, recompute, layout)
    return replace(model_states(n_params, precision, layout), activations=act.peak / GB)


def min_gpus(memory: MemoryGB, device_memory_gb: float) -> int | None:
    """Fewest GPUs on which ZeRO-3 fits: states / K + activations <= device memory; None if never."""
    states = memory.weights + memory.gradients + memory.optimizer
    room = device_memory_gb - memory.activations
    if room <= 0:
        return None
    return max(1, math.ceil(states / room))
