"""Run one claimed sweep run with gptcore's trainer and record its outcome: the code every executor shares.

A run's folder (DIR/runs/RUN_ID) is the trainer's output directory (config.json, ckpt.pt, metrics.jsonl,
summary.json) plus provenance.json and train.log. Training the same folder again resumes from its last
checkpoint, and a finished run returns its summary, so running a run twice is safe.
"""

from __future__ import annotations

import json
import os
import threading
import traceback
from pathlib import Path

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json
from sweeps import keep
from sweeps.grid import RunSpec
from sweeps.provenance import provenance
from sweeps.store import Store, check_run_id

SETTINGS_NAME = "sweep.json"
HEARTBEAT_S = 5.0


def run_dir(sweep_dir: str | os.PathLike, run_id: str) -> Path:
    """DIR/runs/RUN_ID, for a run id that is one plain name and a path that stays inside DIR/runs.

    Run ids come from sweep.db and prediction.json, files anyone can edit: `../../x` or a symlinked
    `runs/` would have a run train (and its loss enter the fit) outside the sweep. Both are refused.
    """
    check_run_id(run_id, sweep_dir)
    runs = Path(sweep_dir) / "runs"
    path = runs / run_id
    for p in (runs, path):
        if p.is_symlink():
            raise UserError(f"{p} is a symlink; a sweep's run tree must be plain directories: refused")
    if not path.resolve().is_relative_to(Path(sweep_dir).resolve() / "runs"):
        raise UserError(f"{path} resolves outside {runs}: refused")
    return path


def check_run_tree(sweep_dir: str | os.PathLike, run_ids: list[str]) -> None:
    """Refuse a symlinked DIR/runs, or a run folder (of `run_ids`) holding a symlink: the trainer would read
    or write through it."""
    runs = Path(sweep_dir) / "runs"
    if runs.is_symlink():
        raise UserError(f"{runs} is a symlink; a sweep's run tree must be plain directories: refused")
    for run_id in run_ids:
        path = run_dir(sweep_dir, run_id)
        if not path.is_dir():
            continue
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                if (Path(root) / name).is_symlink():
                    raise UserError(f"{Path(root) / name} is a symlink inside a run folder: refused "
                                    "(replace it with the file itself, or delete it)")


def read_settings(sweep_dir: str | os.PathLike) -> dict:
    """The sweep-wide settings `scaling sweep` wrote: data path and data hash."""
    return json.loads((Path(sweep_dir) / SETTINGS_NAME).read_text())


def recorded_setting(sweep_dir: str | os.PathLike, key: str):
    """One setting of a directory's existing sweep.json; None without one (no file, a torn one, or one written
    before that setting was)."""
    try:
        settings = read_settings(sweep_dir)
    except (OSError, ValueError):
        return None
    return settings.get(key) if isinstance(settings, dict) else None


def recorded_loggers(sweep_dir: str | os.PathLike) -> tuple[str, ...]:
    """The --logger choice a sweep.json records (gptcore.loggers), () for none."""
    from gptcore.config import LOGGERS

    names = recorded_setting(sweep_dir, "loggers")
    return tuple(n for n in names if n in LOGGERS) if isinstance(names, list) else ()


def latest_loss(metrics_path: Path) -> float | None:
    """The last loss in a metrics JSONL file: the last row's val loss if it has one, else its train loss."""
    row = latest_row(metrics_path)
    return None if row is None else row.get("val_loss", row.get("train_loss"))


def latest_row(metrics_path: Path) -> dict | None:
    """The last whole row of a metrics JSONL file (read from its tail), or None."""
    try:
        with open(metrics_path, "rb") as f:
            start = max(0, f.seek(0, os.SEEK_END) - 4096)
            f.seek(start)
            lines = f.read().decode("utf-8", errors="replace").splitlines()
        if start > 0:
            lines = lines[1:]  # the first line of a tail window may be cut
    except OSError:
        return None
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            return row
    return None


def train_config(spec: RunSpec, data: str, out: Path, threads: int | None, device: str = "auto",
                 loggers: tuple[str, ...] = (), world: int = 1, parallel: str = "ddp"):
    """The trainer's TrainConfig for a run: the schedule spans exactly the run's tokens (Hoffmann app. B).

    Over `world` processes (torchrun, or a SLURM job's tasks) each takes its share of the run's batch, so
    a step is the run's batch whatever the world size; `parallel` (ddp or fsdp) is how they share it."""
    from gptcore.config import GPTConfig
    from gptcore.train import TrainConfig

    return TrainConfig(
        model=GPTConfig.from_dict(spec.model),
        data=str(data),
        out=str(out),
        batch_size=spec.batch_size // world,
        tokens=spec.tokens,
        lr=spec.lr,
        warmup=spec.warmup,
        seed=spec.seed,
        sample_tokens=0,
        threads=threads,
        progress=False,
        loggers=tuple(loggers),
        **({"device": device, "parallel": parallel} | spec.train),
    )


def _append(path: Path, text: str) -> None:
    """Append to the run's train.log, opened per message: the trainer wants its folder empty at start."""
    with open(path, "a") as f:
        print(text, file=f)


class _Heartbeat(threading.Thread):
    """Refreshes the run's claim and latest loss in the store every few seconds, on its own connection."""

    def __init__(self, sweep_dir: Path, spec: RunSpec, owner: str):
        super().__init__(daemon=True, name=f"heartbeat-{spec.run_id}")
        self.sweep_dir, self.spec, self.owner = sweep_dir, spec, owner
        self.stop = threading.Event()

    def run(self) -> None:
        store = Store(self.sweep_dir)
        metrics = run_dir(self.sweep_dir, self.spec.run_id) / "metrics.jsonl"
        try:
            while not self.stop.wait(HEARTBEAT_S):
                if not store.heartbeat(self.spec.run_id, self.owner, latest_loss(metrics)):
                    # Another process took the run over (this one was frozen past STALE_AFTER_S): two
                    # trainers must never write one folder, so this one leaves at once.
                    os._exit(3)
        finally:
            store.close()


def run_claimed(
    store: Store,
    spec: RunSpec,
    owner: str,
    threads: int | None = None,
    passthrough: tuple[type[BaseException], ...] = (),
) -> str:
    """Train a run this owner has claimed, record completed/diverged/failed, and return that status.

    "preempted" (a preemption signal: the trainer checkpointed after its step) records nothing: the run stays
    claimed, and is taken over at once once this process is gone, or by the same SLURM job requeued.

    Exceptions of the `passthrough` types are left to the caller (the SLURM job's own timeout handling).
    """
    sweep_dir = store.dir
    settings = read_settings(sweep_dir)
    try:
        out = run_dir(sweep_dir, spec.run_id)
        check_run_tree(sweep_dir, [spec.run_id])
    except UserError as e:  # the driver checked before it started this worker: the tree changed since
        store.finish(spec.run_id, owner, "failed", str(e))
        return "failed"
    out.mkdir(parents=True, exist_ok=True)
    beat = _Heartbeat(sweep_dir, spec, owner)
    beat.start()
    summary, reason = None, None
    try:
        from gptcore.train import train

        cfg = train_config(spec, settings["data"], out, threads, settings.get("device", "auto"),
                           recorded_loggers(sweep_dir), int(os.environ.get("WORLD_SIZE", "1")),
                           settings.get("parallel", "ddp"))
        result = train(cfg, log=lambda msg: _append(out / "train.log", msg))
        status = result.status
        if status == "preempted":  # checkpointed; the claim stays, so the next attempt resumes the run
            return status
        if status == "diverged":
            reason = f"loss not finite at step {result.diverged_step}"
        prov = provenance(spec.config_hash, settings["data"], settings["data_hash"], result.device)
        atomic_write_json(out / "provenance.json", prov)
        summary = result.to_json() | {"provenance": prov}
    except passthrough:
        raise
    except Exception as e:  # a bad run must not stop the sweep: record why and go on
        status, reason = "failed", f"{type(e).__name__}: {e}".splitlines()[0][:500]
        _append(out / "train.log", traceback.format_exc())
    finally:
        beat.stop.set()
        beat.join()
    store.finish(spec.run_id, owner, status, reason, summary)
    if status in keep.FINISHED:  # after the result is committed, so the last run to finish sees every one
        try:
            applied = keep.apply(sweep_dir, store.rows(), settings)
            if applied.dropped:
                _append(out / "train.log", f"checkpoints dropped ({settings.get('keep_checkpoints')}): "
                        f"{', '.join(applied.dropped)}")
        except OSError as e:  # a checkpoint left on disk costs space, not the run
            _append(out / "train.log", f"could not drop checkpoints: {e}")
    return status
