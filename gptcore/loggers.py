"""Where a run's metrics rows go: metrics.jsonl always, and the loggers `--logger csv|tensorboard|wandb` adds.

The trainer (rank 0) opens a MetricsLog when it starts stepping and hands it each step's row (eval rows
carry val_loss, val_ppl and the sample). Every logger is resume-safe as metrics.jsonl is: the trainer has
already cut metrics.jsonl back to the checkpointed step, so
- csv rewrites metrics.csv from metrics.jsonl at the start, then appends (one header, CSV_COLUMNS always);
- tensorboard (torch.utils.tensorboard, package `tensorboard`) writes DIR/tensorboard/ and, on a resume,
  purges the events logged after the checkpointed step (SummaryWriter's purge_step);
- wandb runs offline unless WANDB_MODE says otherwise (nothing here reaches a network by default), one
  wandb run per run directory and config, resumed with it (resume="allow").
Each logger writes through after every row, as metrics.jsonl is flushed, so a kill loses no row a resume
will not write again. The choice of loggers does not change the computation: it is not hashed.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import math
import os
from pathlib import Path

from gptcore.config import LOGGERS
from gptcore.errors import UserError
from gptcore.fileio import atomic_write_text, dumps_json

CSV_NAME = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
# metrics.csv's columns: the trainer's numeric row keys; an eval-only one is empty on other rows. The sample
# (free text) stays in metrics.jsonl.
CSV_COLUMNS = ("step", "tokens", "flops", "train_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "val_loss",
               "val_ppl")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # logger -> the module it needs (and the extra)


def parse_names(values: list[str] | None) -> tuple[str, ...] | None:
    """`--logger` values (repeatable, each a comma list) as logger names in order, duplicates dropped; None
    when the flag was not given; () for `none`. An unknown name is a one-line error."""
    if values is None:
        return None
    names: list[str] = []
    for value in values:
        for name in (n.strip() for n in value.split(",")):
            if name not in (*LOGGERS, "none"):
                raise UserError(f"--logger: {name!r} is not a logger; choose from {', '.join(LOGGERS)} "
                                "(or none), repeated or as a comma list")
            if name != "none" and name not in names:
                names.append(name)
    return tuple(names)


def check_available(names) -> None:
    """A one-line error, before anything trains, for a logger whose package is not installed."""
    for name in names:
        module = PACKAGES.get(name)
        if module and importlib.util.find_spec(module) is None:
            raise UserError(f"--logger {name}: the {module} package is not installed; "
                            f"pip install 'scaling[{name}]'")


def _scalars(row: dict) -> dict[str, float]:
    """The row's finite numbers but its step (the x axis)."""
    return {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


class CsvLogger:
    def __init__(self, run_dir: Path, metrics_jsonl: Path):
        """metrics.csv rebuilt from metrics.jsonl (already cut back to the checkpointed step), then appended."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        if metrics_jsonl.exists():
            for line in metrics_jsonl.read_text().splitlines():
                writer.writerow(json.loads(line))
        path = run_dir / CSV_NAME
        atomic_write_text(path, buf.getvalue())
        self.file = open(path, "a", newline="")  # noqa: SIM115 (closed by close())
        self.writer = csv.DictWriter(self.file, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")

    def log(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger:
    def __init__(self, run_dir: Path, step: int):
        from torch.utils.tensorboard import SummaryWriter

        # A resume at `step` hides what a killed run logged after it: those steps are logged again.
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=step + 1 if step else None)

    def log(self, row: dict) -> None:
        for key, value in _scalars(row).items():
            self.writer.add_scalar(key, value, global_step=row["step"])
        if "sample" in row:
            self.writer.add_text("sample", row["sample"], global_step=row["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, run_dir: Path, config: dict, config_hash: str):
        os.environ.setdefault("WANDB_MODE", "offline")  # never online unless the user says so
        import wandb

        run_id = hashlib.sha256(f"{run_dir.resolve()}:{config_hash}".encode()).hexdigest()[:16]
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "scaling"), name=run_dir.name, id=run_id,
                              dir=str(run_dir), config=config, resume="allow")

    def log(self, row: dict) -> None:
        self.run.log(_scalars(row), step=row["step"])

    def close(self) -> None:
        self.run.finish()


class MetricsLog:
    """metrics.jsonl and the chosen loggers, fed one metrics row at a time."""

    def __init__(self, metrics_jsonl: Path, loggers: list):
        self.file = open(metrics_jsonl, "a")  # noqa: SIM115 (closed by close())
        self.loggers = loggers

    def log(self, row: dict) -> None:
        # Strict JSON (non-finite numbers as null): a diverging step's gradient norm can be NaN while its loss
        # is still finite (seen on a Zen 4 CPU), and a NaN token breaks every strict JSON reader of the file.
        self.file.write(dumps_json(row) + "\n")
        self.file.flush()
        for logger in self.loggers:
            logger.log(row)

    def close(self) -> None:
        self.file.close()
        for logger in self.loggers:
            logger.close()


def open_log(run_dir: Path, metrics_jsonl: Path, names, step: int, config: dict, config_hash: str) -> MetricsLog:
    """The run's MetricsLog, resuming at `step` (metrics.jsonl already cut back to it)."""
    made = {"csv": lambda: CsvLogger(run_dir, metrics_jsonl), "tensorboard": lambda: TensorBoardLogger(run_dir, step),
            "wandb": lambda: WandbLogger(run_dir, config, config_hash)}
    return MetricsLog(metrics_jsonl, [made[name]() for name in names])
