"""The validation loss of any model on a prepared dataset, in fixed non-overlapping windows of its ctx.

Window i feeds val[i*ctx : (i+1)*ctx] and scores the next token at each position, val[i*ctx+1 : (i+1)*ctx+1];
every scored token counts once, so the mean is per token and the perplexity is exp(mean). Used by
`scaling eval` and by `scaling fit --reference`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from gptcore.errors import UserError
from gptcore.tokenizer import Tokenizer

if TYPE_CHECKING:
    from gptcore.pretrained import Pretrained

LOGITS_PER_BATCH = 1 << 26  # fp32 logits held at once (256 MiB): one window of gpt2-124m's ctx and vocab


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean cross-entropy per scored token, nats
    perplexity: float
    tokens: int  # scored tokens
    windows: int
    ctx: int

    def to_dict(self) -> dict:
        return asdict(self)


def check_vocabulary(model_tokenizer: Tokenizer, model_vocab_size: int, data_tokenizer: Tokenizer,
                     checkpoint: str, data: str) -> None:
    """Refuse data whose ids mean other tokens than the model's: one line naming the --tokenizer to use."""
    mc, dc = model_tokenizer.compact, data_tokenizer.compact
    if mc is None and dc is not None:
        raise UserError(f"{checkpoint} is a full-vocabulary (gpt2) model but {data} has a compact vocabulary; "
                        "prepare the data with `scaling data prepare --tokenizer gpt2`")
    if mc is not None and dc is None:
        raise UserError(f"{checkpoint} has a compact vocabulary ({len(mc):,} ids) but {data} has the full gpt2 "
                        "one; use data prepared with `--tokenizer gpt2-compact` from the model's training sources")
    if mc is not None and not np.array_equal(mc.gpt2_ids, dc.gpt2_ids):
        raise UserError(f"{checkpoint} and {data} have different compact vocabularies ({len(mc):,} and "
                        f"{len(dc):,} ids); use the data the model was trained on (`--tokenizer gpt2-compact`)")
    if model_vocab_size < data_tokenizer.vocab_size:
        raise UserError(f"{checkpoint} has {model_vocab_size:,} token ids, fewer than {data}'s "
                        f"{data_tokenizer.vocab_size:,}; prepare the data with `--tokenizer gpt2`")


@torch.no_grad()
def evaluate_windows(model, tokens: np.ndarray, max_tokens: int | None = None,
                     device: torch.device | str = "cpu") -> EvalResult:
    """Mean loss of `model` (a gptcore GPT) on the first windows of `tokens` covering at most `max_tokens`
    scored tokens (all whole windows when None)."""
    ctx = model.cfg.ctx
    batch_size = max(1, LOGITS_PER_BATCH // (ctx * model.cfg.vocab_size))
    n_windows = (len(tokens) - 1) // ctx
    if max_tokens is not None:
        if max_tokens < ctx:
            raise UserError(f"--tokens {max_tokens} is less than one window of the model's ctx ({ctx})")
        n_windows = min(n_windows, max_tokens // ctx)
    if n_windows < 1:
        raise UserError(f"the validation split ({len(tokens)} tokens) is shorter than one window of ctx {ctx} + 1")
    was_training = model.training
    model.eval()
    total = 0.0
    for first in range(0, n_windows, batch_size):
        rows = np.arange(first, min(first + batch_size, n_windows))
        idx = rows[:, None] * ctx + np.arange(ctx + 1)
        block = torch.from_numpy(np.asarray(tokens)[idx].astype(np.int64)).to(device)
        logits = model(block[:, :-1]).float()
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), block[:, 1:].reshape(-1),
                                 reduction="sum").double().item()
    model.train(was_training)
    n_tokens = n_windows * ctx
    loss = total / n_tokens
    return EvalResult(loss=loss, perplexity=math.exp(min(loss, 700.0)), tokens=n_tokens, windows=n_windows, ctx=ctx)


def evaluate_checkpoint(checkpoint: str, data: str, max_tokens: int | None = None,
                        device: torch.device | str = "cpu") -> tuple[Pretrained, EvalResult]:
    """Load `checkpoint` (any that gptcore.pretrained reads), check its vocabulary against `data`'s and
    evaluate it on the data's validation split: the loaded checkpoint and its result."""
    from gptcore.data import open_dataset
    from gptcore.pretrained import open_checkpoint

    dataset = open_dataset(data)
    loaded = open_checkpoint(checkpoint)
    check_vocabulary(loaded.tokenizer, loaded.model.cfg.vocab_size, dataset.tokenizer, checkpoint, data)
    return loaded, evaluate_windows(loaded.model.to(device), dataset.val, max_tokens, device=device)
