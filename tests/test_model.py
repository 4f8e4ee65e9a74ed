"""The model: exact parameter counts against the config's formulas, FLOPs, causality, sampling, MFU."""

import math
import time

import numpy as np
import pytest
import torch
from helpers import cached_cpu_peaks

from gptcore.config import (
    PRESETS,
    GPTConfig,
    count_non_embedding_params,
    count_params,
    flops_per_token_with_attention,
    shape_for_params,
)
from gptcore.errors import UserError
from gptcore.hardware import measure_matmul_peaks, peak_flops_per_s
from gptcore.head import HeadCrossEntropy
from gptcore.model import GPT, estimate_mfu


def _meta_model(cfg: GPTConfig) -> GPT:
    """The model on the meta device: real shapes, no memory, so the 1.5B preset is free to build."""
    with torch.device("meta"):
        return GPT(cfg)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("overrides", [{}, {"tie_weights": True}, {"bias": False, "tie_weights": True},
                                       {"qkv_bias": True}, {"ctx": 256, "vocab_size": 8192}])
def test_count_params_matches_the_module(name, overrides):
    cfg = GPTConfig.from_name(name, **overrides)
    model = _meta_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == count_params(cfg)
    embeddings = model.wpe.weight.numel() + model.wte.weight.numel() * (1 if cfg.tie_weights else 2)
    assert count_params(cfg) - embeddings == count_non_embedding_params(cfg)


def test_issue_figures():
    assert count_params(GPTConfig.from_name("gpt2-124m")) == 163_009_536
    assert count_params(GPTConfig.from_name("gpt2-124m", tie_weights=True, qkv_bias=True)) == 124_439_808
    palm = GPTConfig.from_name("gpt2-124m", bias=False, tie_weights=True)
    assert flops_per_token_with_attention(palm) * 1024 == 875_062_886_400


def _shape_by_stepping(target: float, convention: str, **fields) -> GPTConfig:
    """shape_for_params as first written: every width of the rule up to about twice the guess, tried in turn."""
    count = {"non_embedding": count_non_embedding_params, "total": count_params}[convention]
    max_d = max(64, int(2 * (target * 64 / 12) ** (1 / 3)) + 64)
    widths = [d for d in [*range(32, 256, 32), *range(256, max_d + 1, 64)] if d <= max_d]
    shapes = [GPTConfig(n_layer=max(1, int(d / 64 + 0.5)), n_head=d // (32 if d < 256 else 64), d_model=d,
                        **fields) for d in widths]
    return min(shapes, key=lambda c: abs(math.log(count(c) / target)))


@pytest.mark.parametrize("convention", ["non_embedding", "total"])
@pytest.mark.parametrize("fields", [{}, {"vocab_size": 8192, "ctx": 256, "bias": False, "tie_weights": True}])
def test_shape_for_params_keeps_the_stepping_rules_shapes(convention, fields):
    for target in np.logspace(3, 12, 200):
        assert shape_for_params(target, convention=convention, **fields) == \
            _shape_by_stepping(target, convention, **fields), target


def test_shape_for_params_is_fast_at_any_size():
    start = time.perf_counter()
    shape = shape_for_params(1e21)  # trying every width took about 3 s here; 1e30 never finished
    assert time.perf_counter() - start < 0.5
    assert count_non_embedding_params(shape) == pytest.approx(1e21, rel=0.05)
    assert count_non_embedding_params(shape_for_params(1e30)) == pytest.approx(1e30, rel=1e-6)
    with pytest.raises(UserError, match="must be a positive number, got inf"):
        shape_for_params(math.inf)


def _tiny(**kw) -> GPTConfig:
    return GPTConfig(**{"vocab_size": 97, "ctx": 16, "n_layer": 2, "n_head": 2, "d_model": 32, **kw})


def test_forward_shapes_and_initial_loss_near_uniform():
    torch.manual_seed(0)
    cfg = _tiny()
    model = GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (3, cfg.ctx))
    assert model(idx).shape == (3, cfg.ctx, cfg.vocab_size)
    # GPT-2 init (std 0.02) gives near-uniform predictions: loss close to ln(vocab).
    assert model(idx, idx).item() == pytest.approx(math.log(cfg.vocab_size), abs=0.05)
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.zeros(1, cfg.ctx + 1, dtype=torch.long))


def test_residual_projections_get_scaled_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, ctx=16, n_layer=8, n_head=4, d_model=256))
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].mlp.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(_tiny()).eval()
    a = torch.randint(0, 97, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 97  # change only the future of position 9
    la, lb = model(a), model(b)
    assert torch.equal(la[0, :10], lb[0, :10])
    assert not torch.allclose(la[0, 10:], lb[0, 10:])


def test_tied_head_shares_the_embedding():
    model = GPT(_tiny(tie_weights=True))
    assert model.lm_head.weight is model.wte.weight


def test_generate_top_k_and_greedy():
    torch.manual_seed(0)
    model = GPT(_tiny()).eval()
    start = torch.zeros(2, 1, dtype=torch.long)
    out = model.generate(start, 20, temperature=1.0, top_k=1)  # top-1 sampling is greedy decoding
    assert out.shape == (2, 21)
    assert torch.equal(out, model.generate(start, 20, temperature=0))
    # Beyond ctx the model sees only the last ctx tokens, and still generates.
    assert model.generate(start, 40, temperature=1.0, top_k=5).shape == (2, 41)


def test_mfu_is_achieved_flops_over_the_peak():
    # test_issue_figures: 875,062,886,400 training FLOPs per 1024-token sequence of this gpt2-124m. A thousand
    # sequences a second on a device of twice that peak use half of it.
    palm = GPTConfig.from_name("gpt2-124m", bias=False, tie_weights=True)
    assert estimate_mfu(palm, 1024 * 1000.0, 2 * 875_062_886_400 * 1000.0) == pytest.approx(0.5)
    assert estimate_mfu(palm, 1000.0, None) is None and estimate_mfu(palm, 0.0, 1e12) is None


def test_a_cpu_peak_is_this_machines_cached_measurement():
    assert peak_flops_per_s(torch.device("cpu"), "fp32") in cached_cpu_peaks("fp32")
    assert peak_flops_per_s(torch.device("meta"), "fp32") is None  # no table, no measurement


def test_measuring_the_peak_leaves_the_global_rng_alone():
    """A run that measures the CPU peak and one that finds it cached must draw the same dropout masks."""
    state = torch.get_rng_state()
    peaks = measure_matmul_peaks(n=64, seconds=0.01)
    assert torch.equal(state, torch.get_rng_state())
    assert peaks["fp32"] > 0 and peaks["bf16"] > 0


def test_head_cross_entropy_matches_autograd_of_plain_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(12, 8, generator=gen, requires_grad=True)
    w = torch.randn(50, 8, generator=gen, requires_grad=True)
    t = torch.randint(0, 50, (12,), generator=gen)
    (3.0 * HeadCrossEntropy.apply(h, w, t, torch.float32)).backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = torch.nn.functional.cross_entropy(h2 @ w2.t(), t)
    (3.0 * ref).backward()
    assert HeadCrossEntropy.apply(h, w, t, torch.float32).item() == pytest.approx(ref.item(), abs=1e-6)
    assert torch.allclose(h.grad, h2.grad, atol=1e-6) and torch.allclose(w.grad, w2.grad, atol=1e-6)


def test_head_cross_entropy_under_bf16_autocast_matches_autocast_of_plain_cross_entropy():
    """bf16: the head's matmuls and its (rows x vocab) buffer in bf16, as autocast runs the plain path."""
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(64, 32, generator=gen, requires_grad=True)
    w = (0.3 * torch.randn(5000, 32, generator=gen)).requires_grad_()
    t = torch.randint(0, 5000, (64,), generator=gen)
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = HeadCrossEntropy.apply(h, w, t, torch.bfloat16)
        ref = torch.nn.functional.cross_entropy((h2 @ w2.t()).float(), t)
    ours.backward()
    ref.backward()
    assert ours.dtype == torch.float32 and h.grad.dtype == w.grad.dtype == torch.float32
    assert ours.item() == pytest.approx(ref.item(), rel=1e-4)
    for g, g2 in ((h.grad, h2.grad), (w.grad, w2.grad)):
        assert (g - g2).norm() / g2.norm() < 1e-3


def test_head_cross_entropy_of_a_target_beyond_float_range_is_exact_not_infinite():
    """A target e^-200 less likely than the top token underflows the softmax; its loss comes from the logits."""
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    w = torch.tensor([[100.0, 0.0], [-100.0, 0.0], [0.0, 0.0]], requires_grad=True)
    t = torch.tensor([1, 2])  # row 0: logits (100, -100, 0), target -100; row 1: all logits 0
    for dtype in (torch.float32, torch.bfloat16):
        loss = HeadCrossEntropy.apply(h, w, t, dtype)
        exact = torch.nn.functional.cross_entropy(h.detach() @ w.detach().t(), t)
        assert torch.isfinite(loss) and loss.item() == pytest.approx(exact.item(), rel=1e-3)
        loss.backward()
        assert torch.isfinite(h.grad).all() and torch.isfinite(w.grad).all()


def test_training_and_evaluation_losses_are_the_heads_cross_entropy():
    """Both go through gptcore.head: evaluation (no grad) is exactly the plain head's fp32 cross-entropy of the
    same logits, training the kernel's, equal to it within rounding (fp32) or bf16's resolution."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=300, ctx=16, n_layer=1, n_head=2, d_model=16)
    model = GPT(cfg)
    idx = torch.randint(0, 300, (2, 16))
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype == torch.bfloat16):
            with torch.no_grad():
                evaluation = model(idx, idx)
                plain = torch.nn.functional.cross_entropy(model(idx).view(-1, 300).float(), idx.view(-1))
            training = model(idx, idx)
        assert training.requires_grad and not evaluation.requires_grad
        assert evaluation.item() == plain.item()
        assert training.item() == pytest.approx(evaluation.item(), abs=tolerance)

def test_a_peak_measured_under_load_is_measured_again_once_a_run_beats_it(tmp_path, monkeypatch):
    """A cached peak below a rate a run achieved was taken on a loaded machine: never an MFU above 1."""
    import json

    from gptcore import hardware

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = hardware.cpu_matmul_peak("fp32")  # measured and cached
    path = tmp_path / "scaling" / "cpu_matmul_peak.json"
    cache = json.loads(path.read_text())
    (key,) = cache
    cache[key] = {"fp32": 1.0, "bf16": 1.0}  # as if measured while other jobs held the cores
    path.write_text(json.dumps(cache))
    assert hardware.cpu_matmul_peak("fp32") == 1.0  # cached: no new measurement without evidence
    achieved = measured / 100
    again = hardware.cpu_matmul_peak("fp32", at_least=achieved)
    assert again >= achieved and again > 1.0
    assert json.loads(path.read_text())[key]["fp32"] == again
    assert hardware.cpu_matmul_peak("fp32", at_least=1e30) == 1e30  # at least what a run achieved


def test_the_peak_cache_keeps_one_entry_per_cpu_model(tmp_path, monkeypatch):
    """One home directory serves nodes of different CPUs: a peak measured on one is never another's."""
    import json

    from gptcore import hardware

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = tmp_path / "scaling" / "cpu_matmul_peak.json"
    monkeypatch.setattr(hardware, "cpu_model_name", lambda: "Intel(R) Xeon(R) Platinum")
    hardware.cpu_matmul_peak("fp32")
    (xeon_key,) = json.loads(path.read_text())
    cache = {xeon_key: {"fp32": 1.0, "bf16": 1.0}}
    path.write_text(json.dumps(cache))
    monkeypatch.setattr(hardware, "cpu_model_name", lambda: "AMD EPYC")
    assert hardware.cpu_matmul_peak("fp32") > 1.0  # measured afresh, not the Xeon's figure
    keys = json.loads(path.read_text())
    assert len(keys) == 2 and keys[xeon_key] == {"fp32": 1.0, "bf16": 1.0}
    assert any(k.startswith("AMD EPYC|") for k in keys)


def test_the_standard_head_path_cuda_takes_gives_the_kernels_loss_and_gradients(monkeypatch):
    """On CUDA the loss is PyTorch's F.cross_entropy (gptcore.head.KERNEL_DEVICES is the CPU only); run here
    by taking the CPU off that list, it trains the same model to the same loss and gradients."""
    import gptcore.head
    from gptcore.config import GPTConfig
    from gptcore.model import GPT

    cfg = GPTConfig(vocab_size=300, ctx=16, n_layer=1, n_head=2, d_model=32)
    x = torch.randint(0, 300, (4, 16), generator=torch.Generator().manual_seed(0))
    y = torch.roll(x, -1, dims=1)

    def loss_and_grads():
        torch.manual_seed(0)
        model = GPT(cfg)
        loss = model(x, y)
        loss.backward()
        return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters()}

    kernel_loss, kernel_grads = loss_and_grads()
    monkeypatch.setattr(gptcore.head, "KERNEL_DEVICES", ())
    calls, standard = [], gptcore.head.standard_cross_entropy
    monkeypatch.setattr(gptcore.head, "standard_cross_entropy", lambda *a: calls.append(1) or standard(*a))
    standard_loss, standard_grads = loss_and_grads()
    assert calls  # the standard path ran, not the kernel
    assert standard_loss == pytest.approx(kernel_loss, rel=1e-6)
    for name, grad in kernel_grads.items():
        torch.testing.assert_close(standard_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
