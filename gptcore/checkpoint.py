"""Training checkpoints: one atomic file holding everything a bitwise-exact resume needs.

Model and optimizer state, the step (which also fixes the data position: batches derive from (seed, step)),
the RNG states of torch, CUDA, numpy and Python for every rank, the configs and their hash, and the
vocabulary, so `scaling generate` needs nothing but the file. Loaded with `weights_only=True`.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import shutil
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_bytes, atomic_write_json

FORMAT = "scaling-checkpoint/1"
FILENAME = "ckpt.pt"
DROPPED = "ckpt.dropped.json"  # left where a finished run's checkpoint was deleted (drop), saying why
SHARDED_GLOB = "dcp-step-*"  # gptcore.parallel's sharded (FSDP) checkpoints beside ckpt.pt (DCP_PREFIX)


def rng_state() -> dict:
    """This process's RNG states, in types that torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, payload: dict) -> None:
    """Write a checkpoint atomically: a kill leaves the previous checkpoint or this one, never half."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save`; anything else (corrupt, truncated, foreign) is a UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise UserError(not_kept(path) or f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # a foreign pickle makes torch warn before it fails
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile,
            pickle.UnpicklingError):
        raise UserError(f"{path} is corrupt, truncated or not a checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a scaling checkpoint (expected format {FORMAT})")
    return ckpt


def drop(run_dir: str | Path, why: str) -> bool:
    """Delete a finished run's checkpoint (ckpt.pt, any sharded one, temporary files a killed write left) and
    leave DROPPED saying `why` (and how to keep one), so that a reader is told it was not kept rather than
    that it is missing.

    Only for a run that will never resume (its summary.json is written): the checkpoint is what a run
    resumes from. Returns whether anything was deleted.
    """
    run_dir = Path(run_dir)
    files = [run_dir / FILENAME, *run_dir.glob(f".{FILENAME}.*.tmp")]
    gone = [f for f in files if f.is_file()]
    shards = [d for pattern in (SHARDED_GLOB, f".{SHARDED_GLOB}.tmp") for d in run_dir.glob(pattern) if d.is_dir()]
    if not gone and not shards:
        return False
    atomic_write_json(run_dir / DROPPED, {"why": why, "dropped_utc": datetime.now(timezone.utc).isoformat()})
    for f in gone:
        f.unlink(missing_ok=True)
    for d in shards:
        shutil.rmtree(d, ignore_errors=True)
    return True


def not_kept(path: str | Path) -> str | None:
    """For a run directory (or its ckpt.pt path) whose checkpoint `drop` deleted: the one-line error saying
    so and how to keep one; None otherwise."""
    path = Path(path)
    run_dir = path.parent if path.name == FILENAME else path
    marker = run_dir / DROPPED
    if (run_dir / FILENAME).is_file() or not marker.is_file():
        return None
    try:
        why = json.loads(marker.read_text(encoding="utf-8")).get("why", "")
    except (OSError, ValueError, AttributeError):
        why = ""
    return f"{run_dir}: the checkpoint was not kept ({why or 'dropped when the run finished'})"
