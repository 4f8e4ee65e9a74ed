"""Each planner formula against a hand calculation (scaling/formulas.py, scaling/memory.py)."""

import math

import pytest

from gptcore.config import GPTConfig
from scaling import formulas
from scaling.memory import MemoryGB, min_gpus, training_memory


def test_training_flops_is_6nd():
    assert formulas.training_flops(1e9, 2e10) == pytest.approx(1.2e20)


def test_attention_term_is_what_torch_counts_in_a_real_training_step():
    """PaLM's 12*L*H*Q*T per token, against torch's own FLOP counter over a forward and backward of the model:
    whatever the matmuls do beyond 6 FLOPs per weight per token is the attention's."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from gptcore.model import GPT

    cfg = GPTConfig(vocab_size=97, ctx=64, n_layer=2, n_head=4, d_model=64, bias=False, dropout=0.0)
    model = GPT(cfg)
    batch = torch.randint(0, cfg.vocab_size, (2, cfg.ctx))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # the math kernel's matmuls
        model(batch, batch).backward()  # are counted; the fused CPU kernel's are not
    tokens = batch.numel()
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention = counter.get_total_flops() - 6 * weights * tokens
    assert attention > 0
    with_attention = formulas.training_flops_with_attention(weights, tokens, cfg, cfg.ctx)
    assert with_attention - formulas.training_flops(weights, tokens) == pytest.approx(attention, rel=1e-9)


def test_gpu_hours_wall_clock_cost_energy_co2():
    # 1 GPU-hour is exactly peak * mfu * 3600 FLOPs.
    assert formulas.gpu_hours(1e15 * 0.5 * 3600 * 10, 1e15, 0.5) == pytest.approx(10.0)
    assert formulas.wall_clock_hours(100.0, 8) == pytest.approx(12.5)
    assert formulas.cost_usd(10.0, 2.5) == pytest.approx(25.0)
    assert formulas.energy_kwh(10.0, 700.0, 1.1) == pytest.approx(7.7)
    assert formulas.co2_kg(100.0, 0.4) == pytest.approx(40.0)


def test_defaults_are_sourced_and_in_range():
    assert 0 < formulas.DEFAULT_MFU.value <= 1 and "Llama 3" in formulas.DEFAULT_MFU.source
    assert formulas.DEFAULT_PUE.value >= 1 and "PUE" in formulas.DEFAULT_PUE.source


def test_zero_stages_shard_optimizer_then_gradients_then_weights():
    m = MemoryGB(weights=2.0, gradients=2.0, optimizer=12.0, activations=5.0)
    assert m.total == 21.0
    z1, z2, z3 = (m.sharded(s, 4) for s in (1, 2, 3))
    assert (z1.weights, z1.gradients, z1.optimizer, z1.activations) == (2.0, 2.0, 3.0, 5.0)
    assert (z2.weights, z2.gradients, z2.optimizer) == (2.0, 0.5, 3.0)
    assert (z3.weights, z3.gradients, z3.optimizer, z3.activations) == (0.5, 0.5, 3.0, 5.0)


def test_min_gpus_is_fewest_zero3_shards_that_fit():
    m = MemoryGB(weights=20.0, gradients=20.0, optimizer=120.0, activations=10.0)  # 10B params, bf16
    assert min_gpus(m, 80.0) == math.ceil(160 / 70)
    assert min_gpus(MemoryGB(1.0, 1.0, 6.0, 1.0), 80.0) == 1
    assert min_gpus(MemoryGB(1.0, 1.0, 6.0, 81.0), 80.0) is None


def test_a_7b_model_at_ctx_4096_fits_one_80gb_gpu_only_with_sharding():
    cfg = GPTConfig(n_layer=32, n_head=32, d_model=4096, ctx=4096)
    m = training_memory(6.74e9, cfg, 1, "bf16")
    assert m.weights == pytest.approx(26.96) and m.optimizer == pytest.approx(53.92)  # fp32 weights, Adam m, v
    # Flash attention keeps no scores: 32 layers x 4096*4096*36 bytes, the bf16 weight copies and the head.
    assert 30 < m.activations < 40 and min_gpus(m, 80.0) == 3
    recomputed = training_memory(6.74e9, cfg, 1, "bf16", recompute="full")
    assert recomputed.activations < 20 and min_gpus(recomputed, 80.0) == 2
