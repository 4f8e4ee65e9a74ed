"""The run table a fit reads: a CSV or a sweep directory's sweep.csv, checked, reduced to completed runs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gptcore.errors import UserError
from scaling.fit import PARAM_CONVENTIONS

REQUIRED = ("params", "tokens", "loss")
SWEEP_TABLE = "sweep.csv"


@dataclass
class RunTable:
    """Completed runs, one row each: size N (in the chosen convention), tokens D, compute C, final loss."""

    params: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray  # the `flops` column where given, else 6 N D
    loss: np.ndarray
    run_id: np.ndarray
    param_convention: str = "total"
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> count of rows left out
    failed: pd.DataFrame | None = None  # the rows left out, with their params/tokens/loss where known
    source: str = ""
    source_sha256: str = ""

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def n_sizes(self) -> int:
        return len(np.unique(self.params))

    def subset(self, index) -> RunTable:
        """The same table restricted to rows `index` (a mask or integer indices)."""
        return RunTable(
            self.params[index],
            self.tokens[index],
            self.flops[index],
            self.loss[index],
            self.run_id[index],
            self.param_convention,
            dict(self.excluded),
            self.failed,
            self.source,
            self.source_sha256,
        )

    def row_hashes(self) -> list[str]:
        """A short sha256 per row of (run_id, params, tokens, flops, loss): which rows a fit used."""
        return [
            hashlib.sha256(f"{r}|{n!r}|{d!r}|{c!r}|{v!r}".encode()).hexdigest()[:16]
            for r, n, d, c, v in zip(
                self.run_id,
                self.params.tolist(),
                self.tokens.tolist(),
                self.flops.tolist(),
                self.loss.tolist(),
                strict=False,
            )
        ]

    def rows_record(self) -> dict:
        """What the law file keeps about the rows: source and its hash, count, set hash and per-row hashes."""
        hashes = self.row_hashes()
        return {
            "source": self.source,
            "source_sha256": self.source_sha256,
            "n": len(self),
            "excluded": self.excluded,
            "set_sha256": hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest(),
            "row_sha256": hashes,
        }


SIZE_COLUMNS = {"total": "params", "non_embedding": "non_embedding_params",
                "non_embedding_with_head": "non_embedding_with_head_params"}


def _with_head_column(df: pd.DataFrame) -> pd.DataFrame:
    """The table with non_embedding_with_head_params: as given, or non_embedding_params + vocab_size x d_model
    (the head's matrix) where a sweep's table has those columns; missing, the column check names it."""
    if SIZE_COLUMNS["non_embedding_with_head"] in df.columns or not {"non_embedding_params", "vocab_size",
                                                                     "d_model"} <= set(df.columns):
        return df
    num = {c: pd.to_numeric(df[c], errors="coerce") for c in ("non_embedding_params", "vocab_size", "d_model")}
    return df.assign(non_embedding_with_head_params=num["non_embedding_params"] + num["vocab_size"] * num["d_model"])


def load_runs(src: str | Path, param_convention: str = "total") -> RunTable:
    """Read a CSV of runs or a sweep directory; one-line UserError for every kind of bad input."""
    path = Path(src)
    if path.is_dir():
        table = path / SWEEP_TABLE
        if not table.is_file():
            raise UserError(
                f"{path} is a directory without {SWEEP_TABLE}; give a sweep directory or a CSV file"
            )
        path = table
    if not path.is_file():
        raise UserError(f"{src} does not exist")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty")
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable CSV ({e.__class__.__name__})") from None
    if not isinstance(df.index, pd.RangeIndex):  # pandas made the surplus leading fields an index
        raise UserError(f"{path}: rows have more fields than the header's {len(df.columns)} columns")
    return runs_from_frame(
        df, param_convention, source=str(path), source_sha256=hashlib.sha256(path.read_bytes()).hexdigest()
    )


def runs_from_frame(
    df: pd.DataFrame, param_convention: str = "total", source: str = "", source_sha256: str = ""
) -> RunTable:
    if param_convention not in PARAM_CONVENTIONS:
        raise UserError(
            f"unknown parameter convention {param_convention!r}; use one of {', '.join(PARAM_CONVENTIONS)}"
        )
    where = source or "the table"
    df = _with_head_column(df) if param_convention == "non_embedding_with_head" else df
    size_col = SIZE_COLUMNS[param_convention]
    needed = list(REQUIRED) + ([size_col] if size_col not in REQUIRED else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise UserError(
            f"{where} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns)) or 'none'})"
        )
    if len(df) == 0:
        raise UserError(f"{where} has a header but no rows")
    status = (
        df["status"].astype(str).str.strip()
        if "status" in df.columns
        else pd.Series("completed", index=df.index)
    )
    done = status == "completed"
    excluded: dict[str, int] = {}
    for i in df.index[~done]:
        reason = status[i]
        if "reason" in df.columns and isinstance(df.at[i, "reason"], str) and df.at[i, "reason"].strip():
            reason = f"{reason}: {df.at[i, 'reason'].strip()}"
        excluded[reason] = excluded.get(reason, 0) + 1
    failed = df[~done].copy()
    ok = df[done]
    if len(ok) == 0:
        raise UserError(f"{where} has no completed runs ({_describe(excluded)} left out)")
    cols = {c: pd.to_numeric(ok[c], errors="coerce").to_numpy(float) for c in needed}
    if "flops" in ok.columns:
        cols["flops"] = pd.to_numeric(ok["flops"], errors="coerce").to_numpy(float)
    for name, values in cols.items():
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{where}: column {name} must be positive numbers; row {int(ok.index[first]) + 2} "
                f"has {ok[name].iloc[first]!r} ({int(bad.sum())} bad value(s))"
            )
    _check_ranges(cols, ok, where)
    params = cols[size_col]
    tokens, loss = cols["tokens"], cols["loss"]
    flops = cols.get("flops", 6.0 * params * tokens)
    run_id = (
        ok["run_id"].astype(str).to_numpy()
        if "run_id" in ok.columns
        else np.array([f"row{i + 2}" for i in ok.index])
    )
    _check_unique(run_id, tokens, where)
    return RunTable(
        params, tokens, flops, loss, run_id, param_convention, excluded, failed, source, source_sha256
    )


# What a run's numbers can be: a loss above 100 nats per token is no language model's (ln of a vocabulary of
# 2.7e43 words), and sizes past these would overflow the fit's powers; such a row is a typo or a poisoned file.
MAX_VALUE = {"loss": 100.0, "params": 1e15, "non_embedding_params": 1e15, "non_embedding_with_head_params": 1e15,
             "tokens": 1e18, "flops": 1e35}


def _check_ranges(cols: dict[str, np.ndarray], ok: pd.DataFrame, where: str) -> None:
    for name, values in cols.items():
        high = values > MAX_VALUE[name]
        if high.any():
            first = int(np.flatnonzero(high)[0])
            raise UserError(f"{where}: column {name} must be at most {MAX_VALUE[name]:g}; row "
                            f"{int(ok.index[first]) + 2} has {values[first]:g} ({int(high.sum())} such value(s))")


def _check_unique(run_id: np.ndarray, tokens: np.ndarray, where: str) -> None:
    """One row per run and token count: a run twice at the same tokens (concatenated sweeps, a copied row)
    would weigh it twice. One run at several token counts is a training curve (the envelope reads those)."""
    keys = np.char.add(np.char.add(run_id.astype(str), "@"), tokens.astype(str))
    ids, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        dup = [str(i).split("@", 1)[0] for i in ids[counts > 1]]
        raise UserError(f"{where}: column run_id has {len(dup)} run(s) more than once at the same tokens "
                        f"({', '.join(dup[:3])}{' ...' if len(dup) > 3 else ''}); keep one row per run")


def _describe(excluded: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in excluded.items()) or "nothing"


def epoch_chinchilla_table(path: str | Path, drop_highest: int = 5) -> pd.DataFrame:
    """Besiroglu et al. 2024's points digitised from Hoffmann et al. Fig. 4, as a run table.

    Tokens are C / (6 N), as theirs; like them we leave out the `drop_highest` highest losses (their n = 240).
    """
    raw = pd.read_csv(path)
    n = raw["Model Size"].to_numpy(float)
    c = raw["Training FLOP"].to_numpy(float)
    loss = raw["loss"].to_numpy(float)
    keep = loss < np.sort(loss)[-drop_highest] if drop_highest else np.ones(len(loss), bool)
    status = np.where(keep, "completed", "excluded")
    reason = np.where(keep, "", f"one of the {drop_highest} highest losses, left out as by Besiroglu et al.")
    return pd.DataFrame(
        {
            "run_id": [f"fig4-{i}" for i in range(len(n))],
            "params": n,
            "tokens": c / (6 * n),
            "flops": c,
            "loss": loss,
            "status": status,
            "reason": reason,
        }
    )


def synthetic_grid(law, seed: int, noise: float = 0.008, sizes: int = 6, ratios: int = 6) -> RunTable:
    """A sweep drawn from a known law, to check intervals against a ground truth (tests/test_predictive.py,
    benchmarks/interval_coverage.py --synthetic): sizes 1e7..1e9 times 4..128 tokens per parameter, the
    law's loss times lognormal noise of `noise` in log loss (0.8%: about the seed-to-seed spread of the
    `small` grid's runs)."""
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(1e7, 1e9, sizes), ratios)
    d = n * np.tile(np.geomspace(4, 128, ratios), sizes)
    loss = law.loss(n, d) * np.exp(rng.normal(0, noise, len(n)))
    return RunTable(n, d, 6 * n * d, loss, np.array([f"r{i}" for i in range(len(n))]))
