"""The planner's memory (scaling/memory.py) against what really runs, and against the ZeRO paper.

Activations: the bytes gptcore.model.GPT saves for its backward pass, measured on CPU with
torch.autograd.graph.saved_tensors_hooks, each storage counted once and the parameters' own left out.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from gptcore.config import GPTConfig
from gptcore.model import GPT
from scaling.memory import (
    GB,
    activation_memory,
    layer_bytes,
    model_states,
    state_bytes_per_param,
    training_memory,
)


def saved_for_backward(cfg: GPTConfig, micro_batch: int, precision: str) -> int:
    """Bytes of the distinct storages one training forward pass saves for backward, parameters excluded."""
    torch.manual_seed(0)
    model = GPT(cfg)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    idx = torch.randint(0, cfg.vocab_size, (micro_batch, cfg.ctx), generator=torch.Generator().manual_seed(1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(idx, idx)
    loss.backward()  # the graph is a real training one
    return sum(storages.values())


def eager_attention(q, k, v, dropout_p=0.0, is_causal=True):
    """Attention as nanoGPT's slow path writes it: the (T x T) scores are built and kept for backward."""
    t = q.size(-2)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# (shape, micro-batch, precision): vocabularies from 512 to GPT-2's, 1 to 8 heads (head sizes 16 to 64),
# ctx 32 to 256, tied and untied heads.
SHAPES = [
    (GPTConfig(vocab_size=512, ctx=64, n_layer=2, n_head=4, d_model=64), 2, "fp32"),
    (GPTConfig(vocab_size=1000, ctx=128, n_layer=3, n_head=2, d_model=96, tie_weights=True), 1, "bf16"),
    (GPTConfig(vocab_size=50257, ctx=32, n_layer=1, n_head=8, d_model=128), 2, "fp32"),
    (GPTConfig(vocab_size=2048, ctx=256, n_layer=2, n_head=1, d_model=64), 2, "bf16"),
]


@pytest.mark.parametrize(("cfg", "micro_batch", "precision"), SHAPES)
def test_activations_match_what_the_model_saves_for_backward(cfg, micro_batch, precision):
    measured = saved_for_backward(cfg, micro_batch, precision)
    planned = activation_memory(cfg, micro_batch, precision).saved
    assert planned == pytest.approx(measured, rel=0.10)


@pytest.mark.parametrize(("cfg", "micro_batch", "precision"), SHAPES)
def test_eager_attention_keeps_the_scores_as_planned(monkeypatch, cfg, micro_batch, precision):
    monkeypatch.setattr(F, "scaled_dot_product_attention", eager_attention)
    measured = saved_for_backward(cfg, micro_batch, precision)
    planned = activation_memory(cfg, micro_batch, precision, attention="eager").saved
    assert planned == pytest.approx(measured, rel=0.10)
    assert planned > activation_memory(cfg, micro_batch, precision).saved


def test_flash_keeps_no_scores_and_eager_adds_korthikantis_score_terms():
    cfg = GPTConfig(vocab_size=100, ctx=1024, n_layer=2, n_head=16, d_model=256)
    s, b, a = 1024, 2, 16
    flash, eager = (layer_bytes(cfg, b, "bf16", kernel, layout="mixed") for kernel in ("flash", "eager"))
    assert eager - flash == pytest.approx(2 * a * s * s * b - 4 * a * s * b)  # softmax kept, no log-sum-exp
    dropped = GPTConfig(vocab_size=100, ctx=1024, n_layer=2, n_head=16, d_model=256, dropout=0.1)
    sbh = s * b * 256
    # Korthikanti eq. (1) in full 16 bits with dropout, plus the LayerNorm statistics: 34sbh + 5as^2b.
    korthikanti = sbh * (34 + 5 * a * s / 256)
    assert layer_bytes(dropped, b, "bf16", "eager", layout="mixed") == pytest.approx(korthikanti + 16 * s * b)


def test_recomputation_keeps_block_inputs_and_selective_equals_flash():
    cfg = GPTConfig(vocab_size=100, ctx=512, n_layer=8, n_head=8, d_model=256)
    none, full = (activation_memory(cfg, 4, "bf16", recompute=r) for r in ("none", "full"))
    one = layer_bytes(cfg, 4, "bf16")
    assert none.layers == pytest.approx(8 * one)
    assert full.layers == pytest.approx(8 * 4 * 512 * 4 * 256 + one)  # fp32 residual inputs + one block
    assert full.head == none.head and full.weight_copies == none.weight_copies
    eager, selective = (activation_memory(cfg, 4, "bf16", "eager", r) for r in ("none", "selective"))
    assert eager.layers > none.layers and selective.layers == pytest.approx(none.layers)


def test_head_buffers_follow_the_compute_dtype():
    cfg = GPTConfig(vocab_size=50257, ctx=1024, n_layer=1, n_head=12, d_model=768)
    rows = 1024 * 8
    bf16, fp32 = (activation_memory(cfg, 8, p) for p in ("bf16", "fp32"))
    # One (rows x vocab) buffer saved and one transient, in bf16 under autocast and fp32 otherwise.
    assert bf16.head_transient == 2 * rows * 50257 and fp32.head_transient == 4 * rows * 50257
    assert fp32.head - bf16.head == pytest.approx(2 * rows * 50257 + 2 * rows * 768)
    assert bf16.weight_copies > 0 and fp32.weight_copies == 0


def test_zero_paper_figure_1():
    """Rajbhandari et al. 2020, Fig. 1: 7.5B parameters, 64 GPUs, K = 12 mixed-precision Adam."""
    base = model_states(7.5e9, "bf16", layout="mixed")
    assert state_bytes_per_param("bf16", "mixed") == (2, 2, 12)
    totals = [base.total] + [base.sharded(stage, 64).total for stage in (1, 2, 3)]
    assert [round(t, 1) for t in totals] == [120.0, 31.4, 16.6, 1.9]


def test_the_trainer_keeps_fp32_states_and_16_bytes_a_parameter():
    assert state_bytes_per_param("bf16") == (4, 4, 8)  # fp32 weights and grads under autocast
    for precision in ("bf16", "fp16", "fp32", "tf32"):
        for layout in ("autocast", "mixed"):
            assert sum(state_bytes_per_param(precision, layout)) == 16
    cfg = GPTConfig(n_layer=2, n_head=2, d_model=64, vocab_size=100, ctx=16)
    m = training_memory(1e9, cfg, 1, "bf16")
    assert m.weights == pytest.approx(4.0)
    assert m.activations == pytest.approx(activation_memory(cfg, 1, "bf16").peak / GB)
