"""The pre-registered prediction file: written once by `scaling launch`, read by the report and the ranks.

Its name and schema live here, at the analysis layer, so the report can find it without importing the
launch (which sits above it, at the CLI).
"""

from __future__ import annotations

import json
from pathlib import Path

from gptcore.errors import UserError

PREDICTION_NAME = "prediction.json"
PREDICTION_SCHEMA = "scaling-prediction/1"


def read_prediction(out: Path) -> dict | None:
    """OUT/prediction.json, or None when there is none; a one-line error when it is torn or something else."""
    path = Path(out) / PREDICTION_NAME
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is unreadable; it is kept as is: use another --out") from None
    if not isinstance(raw, dict) or raw.get("schema") != PREDICTION_SCHEMA:
        raise UserError(f"{path} is not a launch prediction (schema {PREDICTION_SCHEMA!r}); use another --out")
    return raw
