"""Parse human sizes ("124M", "2.5B", "1.5T", "7e9", "124_000_000") and FLOP counts ("1e21")."""

from __future__ import annotations

import math
import re

from gptcore.errors import UserError

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_SIZE = re.compile(r"^\s*([-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*$", re.IGNORECASE)


def parse_size(text: str | float | int, what: str = "size") -> float:
    """A positive count such as 124M, 2.5B, 1.5T, 7e9 or 124_000_000."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise UserError(
                f"{what}: cannot read {text!r}; use a number like 124M, 2.5B, 1.5T, 7e9 or 124_000_000")
        value = float(m.group(1).replace("_", "")) * _SUFFIX[m.group(2).lower()]
    if not (value > 0 and math.isfinite(value)):
        raise UserError(f"{what}: must be a positive number like 124M, 2.5B or 7e9, got {text!r}")
    return value


def parse_optional_size(text: str | None, flag: str) -> float | None:
    """parse_size for an optional flag: None stays None."""
    return None if text is None else parse_size(text, flag)


def parse_sizes(text: str, what: str = "sizes") -> list[float]:
    """A comma-separated list of sizes: "1M,2M,4M"."""
    return [parse_size(part, what) for part in str(text).split(",") if part.strip()]


def format_size(n: float) -> str:
    """124000000 -> '124M', 2.5e9 -> '2.5B', 999.9e6 -> '1B', 3e16 -> '3e+16'."""
    n = float(f"{n:.3g}")  # round first, so 999.9M is 1B and not '1e+03M'
    if abs(n) >= 1e15:
        return f"{n:.3g}"
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"
