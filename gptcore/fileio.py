"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A crash or kill leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path

from gptcore.errors import UserError


class DiskFullError(UserError, OSError):
    """A write that found the disk full: a one-line UserError to the CLI, and still an OSError (ENOSPC) to
    code that catches those (a cache that may fail to write)."""

    def __init__(self, path: str | os.PathLike, code: int = errno.ENOSPC):
        super().__init__(f"disk full: could not write {path}; the previous {Path(path).name}, if any, is kept: "
                         "free some space and run again")
        self.errno = code


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(path, e.errno) from None
        raise


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed atomic write of `path` left (.NAME.*.tmp); returns them.

    Only for a path this process alone writes (a run folder its trainer holds): another writer's temp file
    would be deleted under it.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict(obj):
    """`obj` with every non-finite float (NaN, inf) replaced by None, so it dumps as strict JSON.

    Python's json writes bare NaN and Infinity, which strict parsers (JavaScript, jq, Go) reject; what was
    written must say why a number is missing in a status or reason field of its own.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps_json(obj, **kwargs) -> str:
    """json.dumps as strict JSON: non-finite numbers become null (see `strict`)."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, dumps_json(obj, indent=2, sort_keys=False) + "\n")


def cache_dir() -> Path:
    """This package's cache: $XDG_CACHE_HOME/scaling, by default ~/.cache/scaling."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scaling"
