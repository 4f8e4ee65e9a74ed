"""The GPT-2 model, top to bottom: attention, MLP, block, the GPT itself, sampling, then MFU.

Shapes come from gptcore.config.GPTConfig; its count_params is exact for this module (tests pin it).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptcore.config import GPTConfig, flops_per_token_with_attention
from gptcore.hardware import match_torch_device_name


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one fused Q/K/V matmul, then scaled_dot_product_attention."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias and cfg.qkv_bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.residual = True  # scaled init, see GPT._init_weights
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.proj.residual = True
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class HeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of the LM head's logits h @ w.T against targets, with a leaner backward.

    One softmax pass in the forward makes both the loss (-log of the target's probability) and the logits'
    gradient (softmax minus one-hot), so neither a log-softmax, its backward, nor the zero-filled
    (rows x vocab) NLL gradient is ever built: on a CPU with the full gpt2 vocabulary those memory-bound
    passes cost as much as the head's matmuls. The upstream gradient (a scalar) scales only the small
    (rows x d) and (vocab x d) results. The matmuls and the (rows x vocab) buffer are in `dtype`: bf16
    under autocast, as autocast runs a plain head's matmul, so the buffer is half the size and never copied
    to fp32 (the softmax kernel accumulates in fp32 either way).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        hc, wc = h.to(dtype), w.to(dtype)
        logits = hc @ wc.t()
        grad_logits = torch.softmax(logits, dim=-1)
        rows = torch.arange(len(targets), device=targets.device)
        p_target = grad_logits[rows, targets].float()
        losses = -p_target.log()
        # A target probability below fp32's (and bf16's) normal range would give an infinite loss: those rare
        # rows (a target e^-87 less likely than the top token) take their exact loss from the logits.
        tiny = p_target < 1e-30
        if tiny.any():
            exact = logits[tiny].float()
            losses[tiny] = torch.logsumexp(exact, dim=-1) - exact.gather(1, targets[tiny, None]).squeeze(1)
        del logits
        loss = losses.mean()
        grad_logits[rows, targets] -= 1.0
        ctx.save_for_backward(hc, wc, grad_logits)
        ctx.dtypes = h.dtype, w.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        h, w, grad_logits = ctx.saved_tensors
        scale = grad_loss / grad_logits.shape[0]
        h_dtype, w_dtype = ctx.dtypes
        # The same product two ways: torch 2.13's CPU bf16 matmul runs (h.T @ g).T at 1.2-1.7x the speed of
        # g.T @ h for these shapes; fp32 is the other way round (measured on 2-core Zen 4, d 64 and 128).
        grad_w = (h.t() @ grad_logits).t() if grad_logits.dtype == torch.bfloat16 else grad_logits.t() @ h
        return (grad_logits @ w).to(h_dtype) * scale, grad_w.to(w_dtype) * scale, None, None


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.ctx, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 init: N(0, 0.02), zero biases, and residual projections scaled by 1/sqrt(2 * n_layer)

        so the residual stream's variance does not grow with depth (GPT-2 paper, section 2.3).
        """
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if getattr(module, "residual", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) for `idx`, or the mean cross-entropy against `targets` when given."""
        T = idx.shape[1]
        if T > self.cfg.ctx:
            raise ValueError(f"sequence length {T} exceeds the model's context {self.cfg.ctx}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x)
        if torch.is_grad_enabled():
            autocast = torch.is_autocast_enabled(x.device.type)
            dtype = torch.get_autocast_dtype(x.device.type) if autocast else x.dtype
            return HeadCrossEntropy.apply(x.reshape(-1, x.size(-1)), self.lm_head.weight, targets.reshape(-1), dtype)
        logits = self.lm_head(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append max_new_tokens sampled tokens to idx (B, T), as in the seed lecture.

        Temperature 0 means greedy; top_k keeps only the k most likely tokens before sampling.
        """
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.cfg.ctx:])[:, -1, :].float()
            if temperature <= 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


# ----------------------------------------------------------------------------- MFU


def flops_per_token(cfg: GPTConfig) -> float:
    """Training FLOPs per token used for MFU and budgets: 6N + attention (PaLM appendix B), head included."""
    return flops_per_token_with_attention(cfg)


def measure_matmul_peaks(n: int = 1024, seconds: float = 1.0) -> dict[str, float]:
    """This CPU's matmul throughput in FLOP/s, fp32 and bf16: the best n x n torch.mm of each over about
    `seconds`, the two alternating so that both see the same load on a shared machine."""
    gen = torch.Generator().manual_seed(0)  # never the global RNG: a training run's stream must not move
    a = {"fp32": torch.randn(n, n, generator=gen), "bf16": torch.randn(n, n, generator=gen).bfloat16()}
    best = dict.fromkeys(a, 0.0)
    for m in a.values():  # warm the kernels up
        torch.mm(m, m)
    deadline = time.perf_counter() + seconds
    while not all(best.values()) or time.perf_counter() < deadline:
        for precision, m in a.items():
            t0 = time.perf_counter()
            torch.mm(m, m)
            best[precision] = max(best[precision], 2 * n**3 / (time.perf_counter() - t0))
    return best


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scaling"


def cpu_model_name() -> str:
    """This CPU's model, e.g. "AMD EPYC" or "Intel(R) Xeon(R) ...": the peak cache's key, because one home
    directory (a cluster's NFS home) serves nodes of different CPUs, and platform.processor() is "" on Linux."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_matmul_peak(precision: str, at_least: float = 0.0) -> float:
    """The measured CPU matmul peak (FLOP/s) for fp32 or bf16, measured once per CPU/threads/torch and cached.

    CPUs are not in the hardware table: their peak depends on cores, threads and vector units, so it is
    measured (measure_matmul_peaks) rather than assumed. A measurement taken while other jobs load the
    machine comes out low; `at_least`, a rate a run has achieved, exposes that: the peak is measured again,
    and the cache keeps the best of its measurements and that rate, so an MFU above 1 is never reported.
    """
    key = f"{cpu_model_name()}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}"
    path = _cache_dir() / "cpu_matmul_peak.json"
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    old = cache.get(key) if isinstance(cache.get(key), dict) else {}
    if old.get(precision, 0.0) <= 0 or old[precision] < at_least:
        from gptcore.fileio import atomic_write_json

        fresh = measure_matmul_peaks()
        cache[key] = {p: max(v, old.get(p, 0.0)) for p, v in fresh.items()}
        cache[key][precision] = max(cache[key][precision], at_least)
        try:
            atomic_write_json(path, cache)
        except OSError:
            pass  # a read-only home only costs a re-measurement next time
    return float(cache[key][precision])


def peak_flops_per_s(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of `device` at `precision`: the hardware table for GPUs, a measurement for CPUs."""
    if device.type == "cuda":
        dev = match_torch_device_name(torch.cuda.get_device_name(device))
        if dev is None or precision not in dev.peak_tflops:
            return None
        return dev.peak_flops_per_s(precision)
    if device.type == "cpu":
        return cpu_matmul_peak(precision)
    return None


def estimate_mfu(cfg: GPTConfig, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s (tokens/s x FLOPs per token) over the peak."""
    if not peak or not tokens_per_s:
        return None
    return tokens_per_s * flops_per_token(cfg) / peak
