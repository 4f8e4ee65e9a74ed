"""The LM head's loss: the mean cross-entropy of the logits h @ w.T against targets, in one kernel.

Used for every loss the model computes: `GPT.forward(idx, targets)` calls `head_cross_entropy` in training
(with gradients) and in evaluation (under torch.no_grad). Only sampling (`GPT.forward(idx)`, no targets)
builds plain logits through `lm_head`.

Why a kernel of its own: with gradients, one softmax pass in the forward makes both the loss (-log of the
target's probability) and the logits' gradient (softmax minus one-hot), so neither a log-softmax, its
backward, nor the zero-filled (rows x vocab) NLL gradient is ever built. On a CPU with the full gpt2
vocabulary those memory-bound passes cost as much as the head's matmuls. Without gradients there is no
buffer to save, so evaluation takes the exact cross-entropy of the same logits in fp32: under bf16 it
differs from the training arithmetic (-log of a bf16 probability) by about 1e-4, and keeps validation
losses what they have always been (the sweeps' fits on tiny grids are sensitive to that much).

Where: the kernel was tuned and measured on CPUs only, so it runs on CPUs only (KERNEL_DEVICES). On CUDA
(and MPS) the loss is PyTorch's own path, `F.cross_entropy` of `F.linear`'s logits under autocast (the
matmul in bf16, the loss in fp32), whose fused kernels GPUs are tuned for. Whether the kernel beats that
on a GPU is not measured yet (no GPU here; README, "The LM head on CUDA"): until it is, the standard path
stays the CUDA default.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

KERNEL_DEVICES = ("cpu",)  # where HeadCrossEntropy runs; elsewhere standard_cross_entropy


class HeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of h @ w.T against targets, with a leaner backward.

    The upstream gradient (a scalar) scales only the small (rows x d) and (vocab x d) results. The matmuls
    and the (rows x vocab) buffer are in `dtype`: bf16 under autocast, as autocast runs a plain head's
    matmul, so the buffer is half the size and never copied to fp32 (the softmax kernel accumulates in fp32
    either way). With `need_grad` False (evaluation) no buffer is built: the loss is F.cross_entropy's.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype,
                need_grad: bool = True) -> torch.Tensor:
        hc, wc = h.to(dtype), w.to(dtype)
        logits = hc @ wc.t()
        if not need_grad:  # evaluation: the exact loss, as a plain head computes it
            return F.cross_entropy(logits.float(), targets)
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
        return (grad_logits @ w).to(h_dtype) * scale, grad_w.to(w_dtype) * scale, None, None, None


def head_cross_entropy(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the head (rows of `h` (..., d) against `w` (vocab, d)) on `targets` (...).

    In autocast's dtype when autocast is on (as a plain head would run), else in h's; gradients only when
    grad mode is on and an input needs them.
    """
    device_type = h.device.type
    if device_type not in KERNEL_DEVICES:
        return standard_cross_entropy(h, w, targets)
    autocast = torch.is_autocast_enabled(device_type)
    dtype = torch.get_autocast_dtype(device_type) if autocast else h.dtype
    need_grad = torch.is_grad_enabled() and (h.requires_grad or w.requires_grad)
    return HeadCrossEntropy.apply(h.reshape(-1, h.size(-1)), w, targets.reshape(-1), dtype, need_grad)


def standard_cross_entropy(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PyTorch's path for the same loss: the logits by F.linear (bf16 under autocast), then F.cross_entropy,
    which autocast runs in fp32. What the model uses on CUDA and MPS."""
    logits = F.linear(h.reshape(-1, h.size(-1)), w)
    return F.cross_entropy(logits.float(), targets.reshape(-1))
