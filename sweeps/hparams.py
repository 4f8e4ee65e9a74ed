"""The stated rules that give every sweep run its learning rate, batch size and warmup.

Learning rate: the tuned LR law (`scaling tune` writes it) when one is given, else Kaplan et al.'s rule.
Batch size and warmup follow two findings about small runs:
- Hoffmann et al. 2022 appendix B: the cosine cycle must match the run's length; a schedule set for a
  longer run overestimates the loss of the shorter one. So every run's schedule ends at its own tokens.
- Porian et al. 2024 (§3.3, "Resolving discrepancies in compute-optimal scaling"): Kaplan's fixed long
  warmup is far too long for small models and biases the fitted exponents; warmup of about N tokens,
  and batch sizes that grow with scale, fix it. So warmup is short and the batch grows with compute.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from gptcore.errors import UserError

LR_FLOOR = 1e-4
MIN_STEPS = 64
WARMUP_MAX_FRACTION = 0.1
LR_LAW_SCHEMA = "lr-law/1"
# The rules by name, as sweep.json and law.json record them: a final run is trained by the rule its sweep's
# runs were, and a rule that changes gets a new name.
DEFAULT_LR_RULE = "kaplan2020-eq-D1"
BATCH_RULE = "deepseek2024-eq1, power of two sequences, >= 64 steps"
WARMUP_RULE = "porian2024: about N tokens, <= 10% of the run"


def default_lr(non_embedding_params: float) -> float:
    """Kaplan et al. 2020 eq. (D.1): LR(N) = 0.003239 - 0.0001395 ln N, for AdamW with warmup + decay.

    The linear fit reaches zero near N = 1.2e10, so it is floored at 1e-4 (reached at about 8e9).
    """
    return max(LR_FLOOR, 0.003239 - 0.0001395 * math.log(non_embedding_params))


def batch_size_for(flops: float, tokens: int, ctx: int) -> int:
    """Sequences per optimizer step: DeepSeek-AI 2024 (DeepSeek LLM, eq. 1) B_opt = 0.292 C^0.3271 tokens.

    Rounded down to a power of two sequences, at least one, and capped so the run gets at least
    MIN_STEPS optimizer steps (a cosine schedule over a handful of steps is not a schedule).
    """
    batch_tokens = 0.292 * flops**0.3271
    cap_tokens = max(ctx, tokens // MIN_STEPS)
    seqs = max(1, int(min(batch_tokens, cap_tokens) // ctx))
    return 1 << (seqs.bit_length() - 1)


def warmup_steps_for(non_embedding_params: float, tokens: int, batch_tokens: int) -> int:
    """Porian et al. 2024: warm up for about N tokens, and never more than 10% of the run."""
    warmup_tokens = min(non_embedding_params, WARMUP_MAX_FRACTION * tokens)
    return max(1, round(warmup_tokens / batch_tokens))


MAX_LR = 1e3  # no optimiser trains at a larger rate; a law that gives one is broken (coef 50 still diverges)
MAX_LR_EXPONENT = 10.0  # |exponent|: published fits are below 1; beyond 10, N^exponent overflows for big N


def _finite_in(v: object, low: float, high: float, low_open: bool = True) -> bool:
    """A JSON number (not a bool, not a string) in (low, high] (or [low, high]); NaN fails."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return (low < v if low_open else low <= v) and v <= high


@dataclass(frozen=True)
class LRLaw:
    """lr_opt(N) = coef * N^(-exponent), N the non-embedding parameters, plus the tuned optimum per size."""

    coef: float
    exponent: float
    tuned: dict[int, float]  # non-embedding params -> best LR found by `scaling tune`
    source: str = ""
    path: str = ""  # the file it was read from, for errors
    sha256: str | None = None  # of the file it was read from: what sweep.json, law.json and launch compare

    def lr(self, non_embedding_params: int) -> tuple[float, str]:
        """The LR for a size and where it came from: 'tuned' for a tuned size, else 'lr-law'.

        A law whose values are each in range can still give no rate at an extreme size (1e6 * N^4): that
        is refused here, where the size is known, with the file named.
        """
        if int(non_embedding_params) in self.tuned:
            return self.tuned[int(non_embedding_params)], "tuned"
        try:
            lr = self.coef * float(non_embedding_params) ** (-self.exponent)
        except OverflowError:
            lr = math.inf
        if not 0 < lr <= MAX_LR:
            raise UserError(f"LR law file {self.path or '(in memory)'}: coef {self.coef:g}, exponent "
                            f"{self.exponent:g} gives a learning rate of {lr:.3g} at N = {non_embedding_params:,}, "
                            f"outside (0, {MAX_LR:g}]")
        return lr, "lr-law"

    def to_dict(self) -> dict:
        return {
            "schema": LR_LAW_SCHEMA,
            "coef": self.coef,
            "exponent": self.exponent,
            "tuned": {str(k): v for k, v in sorted(self.tuned.items())},
            "source": self.source,
        }


def lr_law_problems(raw: dict) -> list[str]:
    """What is out of range in an lr-law/1 object: each field named with what it must be."""
    bad = []
    if not _finite_in(raw.get("coef"), 0, sys.float_info.max):
        bad.append(f"coef = {raw.get('coef')!r} (must be a finite number > 0)")
    if not _finite_in(raw.get("exponent"), -MAX_LR_EXPONENT, MAX_LR_EXPONENT, low_open=False):
        bad.append(f"exponent = {raw.get('exponent')!r} (must be a number in [-{MAX_LR_EXPONENT:g}, "
                   f"{MAX_LR_EXPONENT:g}])")
    tuned = raw.get("tuned", {})
    if not isinstance(tuned, dict):
        bad.append("tuned must be an object of size -> learning rate")
    else:
        for k, v in tuned.items():
            if not (k.isdigit() and int(k) > 0) or not _finite_in(v, 0, MAX_LR):
                bad.append(f"tuned[{k!r}] = {v!r} (sizes are positive integers, rates numbers in (0, {MAX_LR:g}])")
                break
    return bad


def load_lr_law(path: str | Path) -> LRLaw:
    """Read an LR law, with every value checked here (before a sweep or a launch writes anything)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"LR law file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"LR law file {path} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(raw, dict) or raw.get("schema") != LR_LAW_SCHEMA:
        got = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
        raise UserError(f"LR law file {path} is not a valid {LR_LAW_SCHEMA} file: schema is {got!r}")
    bad = lr_law_problems(raw)
    if bad:
        raise UserError(f"LR law file {path}: {'; '.join(bad)}")
    return _law_of(raw, str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def _law_of(raw: dict, path: str, sha256: str | None) -> LRLaw:
    return LRLaw(coef=float(raw["coef"]), exponent=float(raw["exponent"]),
                 tuned={int(k): float(v) for k, v in raw.get("tuned", {}).items()},
                 source=str(raw.get("source", "")), path=path, sha256=sha256)


def lr_rule_record(lr_law: LRLaw | None) -> dict:
    """The learning-rate rule as sweep.json records it: the default rule by name, or the tuned LR law with
    its file's sha256 and its values (so a launch can train by it when the file has moved)."""
    if lr_law is None:
        return {"rule": "default", "name": DEFAULT_LR_RULE}
    return {"rule": "lr-law", "sha256": lr_law.sha256, "path": lr_law.path, "law": lr_law.to_dict()}


def lr_rule_key(record: dict | None) -> tuple:
    """What identifies a recorded rule: the LR law's sha256, the grid's rate, or the default rule's name."""
    if not isinstance(record, dict):
        return (None,)
    field_ = {"lr-law": "sha256", "grid": "lr"}.get(record.get("rule"), "name")
    return record.get("rule"), record.get(field_)


def describe_lr_rule(record: dict | None) -> str:
    """One phrase for a recorded rule: 'default rule kaplan2020-eq-D1', 'LR law runs/tune/lr_law.json
    (sha256 1a2b3c4d5e6f)', 'grid lr 0.001'."""
    if not record:
        return "not recorded"
    if record.get("rule") == "lr-law":
        return f"LR law {record.get('path') or '(in memory)'} (sha256 {str(record.get('sha256'))[:12]})"
    if record.get("rule") == "grid":
        return f"the grid's fixed lr {record.get('lr')}"
    return f"default rule {record.get('name')}"


def lr_law_from_record(record: dict, where: str) -> LRLaw | None:
    """The LR law a recorded rule names (None for the default rule): its file when it is still there with the
    recorded sha256, else the values recorded with it, each checked as a file's are."""
    if record.get("rule") != "lr-law":
        return None
    path = Path(str(record.get("path") or ""))
    if record.get("path") and path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == record.get("sha256"):
        return load_lr_law(path)
    raw = record.get("law")
    bad = ["law is not an object"] if not isinstance(raw, dict) else lr_law_problems(raw)
    if bad:
        raise UserError(f"{where}: the recorded LR law: {'; '.join(bad)}")
    return _law_of(raw, str(record.get("path") or ""), record.get("sha256"))
