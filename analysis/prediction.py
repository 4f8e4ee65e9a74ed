"""The pre-registered prediction file: written once by `scaling launch`, read by the report and the ranks.

Its name, schema and type live here, at the analysis layer, so the report can read it without importing
the launch (which sits above it, at the CLI).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gptcore.errors import UserError

PREDICTION_NAME = "prediction.json"
PREDICTION_SCHEMA = "scaling-prediction/1"

# The sections of prediction.json, in the order they are written. Keys outside them are the prediction
# interval's record (scaling.fit.predictive.prediction_record): kept in `details`, written back flat.
_SECTIONS = ("law", "request", "run", "data", "training", "plan")


@dataclass(frozen=True)
class Prediction:
    """The law's predicted final loss for one run, and everything it rests on, registered before training.

    `predicted_interval` is the law's parameter (bootstrap) interval at `ci_level`; the prediction interval,
    the extrapolation multiples and the warnings are in `details` (absent in files registered before them).
    """

    created_utc: str
    predicted_loss: float
    predicted_interval: list | None
    ci_level: float
    law: dict  # path, sha256, form, param_convention, params, n_bootstrap, sweep_table
    request: dict  # the arguments a re-run must repeat
    run: dict  # the RunSpec, plus law_params, tokens and the requested sizes
    data: dict  # path, hash
    plan: dict  # the launch plan as printed
    training: dict | None = None  # how the final run is trained against the fitted runs (None: not recorded)
    details: dict = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    @property
    def config_hash(self) -> str:
        return self.run["config_hash"]

    @property
    def prediction_interval(self) -> list | None:
        return self.details.get("prediction_interval")

    def to_json(self) -> dict:
        head = {"schema": PREDICTION_SCHEMA, "created_utc": self.created_utc, "predicted_loss": self.predicted_loss,
                "predicted_interval": self.predicted_interval, "ci_level": self.ci_level}
        sections = {name: getattr(self, name) for name in _SECTIONS}
        if self.training is None:
            del sections["training"]
        return {**head, **self.details, **sections}

    @classmethod
    def from_json(cls, raw: dict, path: Path) -> Prediction:
        try:
            head = {k: raw[k] for k in ("created_utc", "predicted_loss", "predicted_interval", "ci_level")}
            sections = {k: raw[k] for k in _SECTIONS if k != "training"}
        except KeyError as e:
            raise UserError(f"{path} lacks {e.args[0]!r}: not a complete launch prediction; use another --out") \
                from None
        if not all(isinstance(v, dict) for v in sections.values()) or not isinstance(raw["run"].get("run_id"), str):
            raise UserError(f"{path} is malformed (a section is not an object); it is kept as is: use another --out")
        details = {k: v for k, v in raw.items() if k not in {"schema", *head, *_SECTIONS}}
        return cls(**head, **sections, training=raw.get("training"), details=details)


def read_prediction(out: Path) -> Prediction | None:
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
    return Prediction.from_json(raw, path)
