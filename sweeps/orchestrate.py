"""`scaling sweep`: turn a grid into runs, register them in the store, print the plan, run them."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json
from gptcore.loggers import check_available
from gptcore.preemption import EXIT_REQUEUE
from scaling.plan_render import duration
from scaling.units import format_size
from sweeps import grid as grids
from sweeps import keep
from sweeps.duration import estimate_seconds, makespan
from sweeps.hparams import LRLaw, load_lr_law
from sweeps.local import LocalExecutor, available_cores, worker_layout
from sweeps.progress import SweepProgress
from sweeps.provenance import data_hash
from sweeps.runner import SETTINGS_NAME, check_run_tree, recorded_loggers
from sweeps.slurm import SlurmExecutor, cluster_answers, cluster_slots
from sweeps.store import CSV_NAME, DB_NAME, FINAL, Store

if TYPE_CHECKING:  # opened lazily in plan_runs: gptcore.data is not needed to import this module
    from gptcore.data import Dataset

DEFAULT_LR_LAW = Path("runs/tune/lr_law.json")  # where `scaling tune` writes by default


@dataclass
class SweepOptions:
    out: Path
    data: Path | None = None
    executor: str = "auto"  # auto | local | slurm
    workers: int | None = None
    partition: str | None = None
    timeout_min: float | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    lr_law: Path | None = None
    estimate: bool = True
    dry_run: bool = False
    progress: bool = True
    keep_checkpoints: str | None = None  # sweeps.keep.POLICIES; None: the one sweep.json records, else the default
    loggers: tuple[str, ...] | None = None  # gptcore.loggers; None: the ones sweep.json records, else none


def prepared_data(data: Path | None, out: Path) -> Path:
    """The data dir to train on: the given one, or the bundled corpus prepared once into OUT/data."""
    from gptcore.data import BUNDLED_CORPUS, prepare

    if data is not None:
        return Path(data).resolve()
    target = (out / "data" / "gutenberg-mini").resolve()
    prepare(BUNDLED_CORPUS, target, tokenizer="gpt2-compact", progress=False)
    return target


def choose_executor(name: str) -> str:
    if name == "auto":
        return "slurm" if cluster_answers() else "local"
    if name == "slurm" and not cluster_answers():
        raise UserError("--executor slurm: no SLURM cluster answers `sinfo` here (start one, or use --executor local)")
    return name


def lr_law_for(path: Path | None) -> LRLaw | None:
    if path is not None:
        return load_lr_law(path)
    return load_lr_law(DEFAULT_LR_LAW) if DEFAULT_LR_LAW.is_file() else None


def read_recorded(path: Path, hint: str) -> dict:
    """A sweep directory's sweep.json; a one-line error ending in `hint` when it is torn or not a JSON object."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # torn JSON, or not UTF-8 text
        recorded = None
    if not isinstance(recorded, dict):
        raise UserError(f"{path} is not a sweep's settings file (torn, or not a JSON object); {hint}")
    return recorded


def _recorded(table_path: str | Path, key: str):
    """sweep.json's `key` for the sweep table at `table_path`; None for a table that is not a sweep's
    sweep.csv, or a sweep that recorded none (written before it did)."""
    table_path = Path(table_path)
    settings = table_path.parent / SETTINGS_NAME
    if table_path.name != CSV_NAME or not settings.is_file():
        return None
    return read_recorded(settings, "delete it, or fit a copy of sweep.csv elsewhere").get(key)


def recorded_training(table_path: str | Path) -> dict | None:
    """How a sweep's runs were trained (sweep.json's "training"), for the sweep table at `table_path`."""
    training = _recorded(table_path, "training")
    return training if isinstance(training, dict) else None


def recorded_unigram_nats(table_path: str | Path) -> float | None:
    """The sweep's validation split's unigram cross-entropy (gptcore.data.unigram_nats), as sweep.json
    recorded it; None where it did not (a sweep from before 2026-12-03) or the value is not a positive number."""
    value = _recorded(table_path, "data_unigram_nats")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else None


def check_same_grid(grid: grids.Grid, out: Path) -> bool:
    """Refuse to sweep into a directory that recorded another grid; the same grid again resumes it.

    Name and description do not count (the same grid as a file or as flags is the same sweep). A directory
    written before sweeps recorded their whole grid has nothing to compare with: True for such a directory,
    whose store may hold the runs of earlier grids.
    """
    settings = out / SETTINGS_NAME
    if not settings.is_file():
        return False
    recorded = read_recorded(settings, "delete it to sweep into this directory again, or use another --out")
    if not isinstance(recorded.get("grid_spec"), dict):
        return True

    def comparable(d: dict) -> dict:
        return {k: v for k, v in json.loads(json.dumps(d)).items() if k not in ("name", "description")}

    mine, theirs = comparable(grids.grid_to_dict(grid)), comparable(recorded["grid_spec"])
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        raise UserError(f"{out} holds a sweep of another grid ({recorded.get('grid')!r}; this one differs in "
                        f"{', '.join(differ)}); use another --out, or that grid to resume it")
    return False


def plan_runs(grid: grids.Grid, opts: SweepOptions) -> tuple[list[grids.RunSpec], Path, dict, Dataset]:
    """The runs, the data dir, the training record sweep.json keeps (grids.training_record), and the opened
    dataset."""
    from gptcore.data import open_dataset

    data = prepared_data(opts.data, opts.out)
    ds = open_dataset(data)
    lr_law = lr_law_for(opts.lr_law)
    specs = grids.resolve(grid, ds.vocab_size, data_hash(ds.meta), lr_law)
    return specs, data, grids.training_record(grid, ds.vocab_size, data_hash(ds.meta), lr_law), ds


def print_plan(grid: grids.Grid, specs, counts: dict, executor: str, layout: str, estimate_line: str) -> None:
    total_flops = sum(s.flops for s in specs)
    print(
        f"sweep {grid.name}: {len(specs)} runs ({counts['new']} new, {counts['finished']} finished, "
        f"{counts['pending']} interrupted or not yet started (resumed), "
        f"{counts['retried']} failed before and queued again), {total_flops:.3g} FLOPs in all, "
        f"executor {executor} ({layout})"
    )
    print(
        f"{'run':<22}{'params':>9}{'non-emb':>9}{'tokens':>9}{'FLOPs':>10}{'lr':>10}{'batch':>7}{'warmup':>8}  lr from"
    )
    for s in specs:
        print(
            f"{s.run_id:<22}{format_size(s.params):>9}{format_size(s.non_embedding_params):>9}"
            f"{format_size(s.tokens):>9}{s.flops:>10.3g}{s.lr:>10.2e}{s.batch_size:>7}{s.warmup:>8}"
            f"  {s.lr_source}"
        )
    print(estimate_line, flush=True)


def run_sweep(grid: grids.Grid, opts: SweepOptions) -> int:
    """Run a grid into opts.out; returns 0 when every run completed or diverged, 1 when some failed."""
    from gptcore.data import unigram_nats

    out = opts.out.resolve()
    unrecorded = check_same_grid(grid, out)
    specs, data, training, ds = plan_runs(grid, opts)
    executor = choose_executor(opts.executor)
    if opts.dry_run and not (out / DB_NAME).exists():  # a plan for a new sweep writes no store
        store, statuses = None, {}
        counts = {"new": len(specs), "finished": 0, "retried": 0, "pending": 0}
    else:
        store = Store(out)
        counts = store.register(specs, dry_run=opts.dry_run, earlier_grids=unrecorded)
        statuses = {r["run_id"]: r["status"] for r in store.rows()}
    policy, change = keep.choose(opts.keep_checkpoints, keep.recorded_policy(out))
    loggers = recorded_loggers(out) if opts.loggers is None else opts.loggers  # a re-run logs as before
    check_available(loggers)
    settings = {"grid": grid.name, "grid_spec": grids.grid_to_dict(grid), "data": str(data),
                "data_hash": specs[0].data_hash if specs else None, "training": training,
                "keep_checkpoints": policy, "loggers": list(loggers)}
    if not opts.dry_run:  # the unigram loss, the fit's baseline (scaling.fit.baseline), counted only to be kept
        atomic_write_json(out / SETTINGS_NAME, {**settings, "data_unigram_nats": unigram_nats(ds)})
    todo = [s for s in specs if statuses.get(s.run_id) not in ("completed", "diverged")]
    check_run_tree(out, [s.run_id for s in todo])

    gpus = _gpu_count()
    if executor == "local":
        workers, threads = worker_layout(opts.workers, gpus, available_cores())
        workers = min(workers, max(1, len(todo)))
        layout = f"{workers} worker(s) x {threads} thread(s)" + (f", {gpus} GPU(s)" if gpus else "")
    else:
        workers, threads = (opts.workers or len(todo) or 1), opts.cpus_per_run
        # The estimate's slots: no more runs at once than the partition holds (a 2-CPU node runs 2 of 1 CPU,
        # not a whole array of 20 side by side, which the estimate assumed before 2026-12-02). Only the
        # estimate reads them, so --no-estimate asks sinfo nothing.
        if todo and opts.estimate:
            workers = min(workers, cluster_slots(opts.partition, threads, opts.gpus_per_run or 0) or workers)
        layout = (
            f"partition {opts.partition or 'default'}, {threads} CPU(s)"
            + (f", {opts.gpus_per_run} GPU(s)" if opts.gpus_per_run else "")
            + " per run"
        )
    estimates: dict[str, float] = {}
    line = "estimate: nothing to run" if not todo else "estimate: skipped (--no-estimate)"
    if todo and opts.estimate:
        estimates, measured = estimate_seconds(todo, str(data), threads)
        wall = makespan([estimates[s.run_id] for s in todo], workers)
        line = f"estimate: ~{duration(wall / 3600)} for {len(todo)} run(s) on {workers} slot(s); {measured}"
    print_plan(grid, specs, counts, executor, layout, line)
    if change:
        print(change)
    if opts.dry_run:
        return 0

    progress = SweepProgress([s.run_id for s in specs], enabled=opts.progress, sweep_dir=out)
    preempted = False
    try:
        if todo:
            run_ids = [s.run_id for s in todo]
            if executor == "local":
                preempted = LocalExecutor(out, workers, threads, gpus, opts.timeout_min).run(run_ids, progress)
            else:
                SlurmExecutor(
                    out,
                    opts.partition,
                    opts.timeout_min,
                    opts.gpus_per_run,
                    opts.cpus_per_run,
                    parallelism=opts.workers,
                    # K GPUs a run: one job of K tasks, a rank a GPU (DDP, or FSDP if the grid sets parallel)
                    tasks_per_node=max(1, opts.gpus_per_run),
                ).run(run_ids, progress, estimates)
        else:
            progress.update(store.rows())
    finally:
        progress.close()
    rows = store.rows()
    keep.apply(out, rows, settings)  # the workers applied it as each run finished; a changed policy too
    print(keep.summary_line(out, rows, policy))
    if preempted:
        print(f"sweep: preempted; the runs in flight checkpointed: run the same command to resume "
              f"(exit {EXIT_REQUEUE}: requeue me)", file=sys.stderr)
        return EXIT_REQUEUE
    return report(store, [s.run_id for s in specs])


def report(store: Store, run_ids: list[str]) -> int:
    rows = [r for r in store.rows() if r["run_id"] in set(run_ids)]
    by = {}
    for r in rows:
        by.setdefault(r["status"], []).append(r)
    print("sweep: " + ", ".join(f"{len(v)} {k}" for k, v in sorted(by.items())) + f"; table: {store.csv_path}")
    for r in rows:
        if r["status"] in ("failed", "timeout", "diverged"):
            print(f"  {r['run_id']}: {r['status']}: {r['reason']}", file=sys.stderr)
    unfinished = [r for r in rows if r["status"] not in FINAL]
    if unfinished:
        print(
            f"sweep: {len(unfinished)} run(s) still running elsewhere: "
            + ", ".join(f"{r['run_id']} ({r['owner']})" for r in unfinished),
            file=sys.stderr,
        )
    return 1 if any(r["status"] in ("failed", "timeout") for r in rows) or unfinished else 0


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
