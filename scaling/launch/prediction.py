"""The pre-registered prediction: built from the law before training, written once, never rewritten.

A re-run must repeat the arguments it was registered with (`request_record`), so a resumed launch trains
the run its prediction is about. The file's name, schema and reader are in `analysis.prediction`.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from analysis.prediction import PREDICTION_NAME, Prediction
from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json
from scaling.launch.planning import LaunchPlan
from scaling.launch.request import LaunchRequest
from scaling.launch.sizing import DEFAULT_RULE_ARG, Training
from scaling.law import FittedLaw, file_sha256
from sweeps.grid import RunSpec


def write_once_json(path: Path, obj: dict) -> bool:
    """Create `path` holding `obj` if it does not exist, atomically; False (and no write) if it does.

    The bytes go to a temporary file first, then os.link puts them in place, which fails if the name
    exists: a reader never sees a partial file, and two launches cannot both register.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    atomic_write_json(tmp, obj)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def request_record(req: LaunchRequest, law_sha256: str, data: Path) -> dict:
    """The arguments that decide the run and its prediction: a re-run must repeat them."""
    return {"law_sha256": law_sha256, "compute": req.compute, "params": req.params, "tokens": req.tokens,
            "executor": req.executor, "gpus": req.gpus, "data": str(data), "grid": req.grid,
            "lr_law_sha256": _lr_law_sha256(req.lr_law)}


def _lr_law_sha256(path: Path | None) -> str | None:
    """--lr-law as the request records it: the file's sha256, "default" for the default rule, None unset."""
    if path is None or str(path) == DEFAULT_RULE_ARG:
        return None if path is None else DEFAULT_RULE_ARG
    return file_sha256(path) if Path(path).is_file() else None  # a missing file is refused with the LR law


def check_same_request(stored: Prediction, record: dict, out: Path) -> None:
    differ = [k for k in record if stored.request.get(k) != record[k]]
    if differ:
        raise UserError(f"{out / PREDICTION_NAME} was registered with other arguments ({', '.join(differ)} "
                        "differ); re-run with the same ones to resume, or use another --out")


def check_same_run(stored: Prediction, spec: RunSpec, out: Path) -> None:
    if stored.config_hash != spec.config_hash:
        raise UserError(f"{out / PREDICTION_NAME} registered run {stored.config_hash}, but these "
                        f"arguments now give {spec.config_hash} (a new LR law?); use another --out")


def new_prediction(law: FittedLaw, law_path: Path, record: dict, spec: RunSpec, sizes: dict, data: Path,
                   planned: LaunchPlan, training: Training) -> Prediction:
    """The record to register: the law's predicted loss for the run's (N, D), and everything behind it.

    `sizes` holds the run's law_params and tokens (what is predicted) and the requested ones.
    """
    from scaling.fit.predictive import prediction_record

    point, interval = law.predict_loss(sizes["law_params"], sizes["tokens"])
    return Prediction(
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        predicted_loss=point,
        predicted_interval=interval,
        ci_level=law.ci_level,
        details=prediction_record(law, sizes["law_params"], sizes["tokens"]),
        law={"path": str(Path(law_path).resolve()), "sha256": record["law_sha256"], "form": law.form,
             "param_convention": law.param_convention, "params": law.law.to_dict(),
             "n_bootstrap": law.n_bootstrap, "sweep_table": law.rows.get("source")},
        request=record,
        run={**spec.to_dict(), **sizes},
        data={"path": str(data), "hash": spec.data_hash},
        training=training.to_json(),
        plan=planned.to_json(),
    )
