"""The final, extrapolated run: size it from a fitted law, pre-register its predicted loss, train it.

`launch(LaunchRequest)` picks (N, D) (compute-optimal for a budget, or given), builds the run exactly as a
sweep run is built (shape, learning rate, batch and warmup from `sweeps.grid.resolve`), prints the
planner's figures and the predicted loss with its bootstrap interval, asks before an expensive run,
writes OUT/prediction.json once and for all, then trains. The launch directory is a one-run sweep
directory (store, sweep.csv, runs/RUN_ID), so the sweep executors run it: local worker, SLURM with
requeue, or torchrun with DDP. Re-running the same command resumes the run from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from gptcore.config import GPTConfig, count_non_embedding_params, count_params, shape_for_params
from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json
from scaling.law import LawFile, file_sha256, load_law
from scaling.planner import MAX_PARAMS
from scaling.units import format_size
from sweeps import grid as grids
from sweeps.hparams import LRLaw
from sweeps.runner import SETTINGS_NAME, run_dir

PREDICTION_NAME = "prediction.json"
PREDICTION_SCHEMA = "scaling-prediction/1"
EXECUTORS = ("local", "slurm", "torchrun")
DEFAULT_CONFIRM_ABOVE_USD = 100.0
DEFAULT_CONFIRM_ABOVE_HOURS = 24.0  # a day of wall clock: asked for even when the price is unknown (a CPU)


@dataclass(frozen=True)
class LaunchRequest:
    """What `scaling launch` was asked. Sizes are in the law's parameter convention."""

    law: Path
    out: Path
    compute: float | None = None
    params: float | None = None
    tokens: float | None = None
    executor: str = "local"
    gpus: int = 1  # torchrun: processes (GPUs, or CPU processes with gloo); slurm: GPUs for the job
    data: Path | None = None
    grid: str | None = None  # the sweep grid whose ctx, seed and [train] settings the run shares
    lr_law: Path | None = None
    gpu: str | None = None  # the planner's device (default: what this machine trains on)
    price_per_gpu_hour: float | None = None
    confirm_above_usd: float = DEFAULT_CONFIRM_ABOVE_USD
    confirm_above_hours: float = DEFAULT_CONFIRM_ABOVE_HOURS
    yes: bool = False
    partition: str | None = None
    timeout_min: float | None = None
    progress: bool = True


# ----------------------------------------------------------------------------- choosing the run


def choose_size(law: LawFile, compute: float | None, params: float | None,
                tokens: float | None) -> tuple[float, float]:
    """(N, D): compute-optimal under the law for a budget, or N given and D given or the law's optimum for N."""
    if (compute is None) == (params is None):
        raise UserError("--compute: give --compute C alone, or --params N (optionally with --tokens D)")
    if compute is not None and tokens is not None:
        raise UserError("--tokens: goes with --params, not with --compute")
    if compute is not None:
        n, d = law.law.compute_optimal(compute)
        return float(n), float(d)
    return params, float(tokens if tokens is not None else law.law.optimal_tokens(params))


def sweep_grid(law: LawFile, grid: str | None) -> grids.Grid:
    """The grid whose settings the final run shares: --grid, else the grid the law's sweep recorded."""
    from sweeps.sweep import read_recorded

    if grid is not None:
        return grids.load_grid(grid)
    source = Path(law.rows.get("source", "")) if law.rows.get("source") else None
    settings = source.parent / SETTINGS_NAME if source else None
    if settings is None or not settings.is_file():
        raise UserError("--grid: the law file does not point at a sweep directory; name the sweep's grid "
                        "(e.g. --grid tiny) so the final run is trained as its runs were")
    recorded = read_recorded(settings, "name the sweep's grid with --grid")
    if isinstance(recorded.get("grid_spec"), dict):
        return grids.grid_from_dict(recorded["grid_spec"], where=str(settings))
    name = recorded.get("grid")  # a sweep directory written before grids were recorded whole
    if name not in grids.preset_names():
        raise UserError(f"--grid: the law's sweep ran grid {name!r}, not a preset; give its grid file with --grid")
    return grids.load_grid(name)


def shape_for(law: LawFile, params: float, vocab_size: int, ctx: int) -> GPTConfig:
    """The trainer's sizing rule, reading N in the law's convention (total or non-embedding)."""
    return shape_for_params(params, vocab_size=vocab_size, ctx=ctx, convention=law.param_convention)


def law_params(law: LawFile, cfg: GPTConfig) -> int:
    """The model's N as the law counts it."""
    return count_params(cfg) if law.param_convention == "total" else count_non_embedding_params(cfg)


def tokens_for_budget(law: LawFile, compute: float, params: float, vocab_size: int, ctx: int) -> float:
    """D = C / 6N for the shape the sizing rule gives N: it rounds N to a real shape (far up, for tiny

    embedding-heavy models), and the budget is spent on that shape, not on the N the law asked for.
    """
    return compute / (6 * law_params(law, shape_for(law, params, vocab_size, ctx)))


def final_spec(law: LawFile, params: float, tokens: float, grid: grids.Grid, vocab_size: int, data_hash: str,
               lr_law: LRLaw | None) -> grids.RunSpec:
    """The run, built by the sweep's own rules (`sweeps.grid.resolve`) as a one-run grid of the chosen shape."""
    cfg = shape_for(law, params, vocab_size, grid.ctx)
    one = grids.make_grid("final", params=[str(count_non_embedding_params(cfg))], tokens=[str(round(tokens))],
                          ctx=grid.ctx, seed=grid.seed, train=grid.train, where="launch")
    (spec,) = grids.resolve(one, vocab_size, data_hash, lr_law)
    if spec.model != cfg.to_dict():  # resolve re-derives the shape from its non-embedding count
        raise AssertionError(f"sizing rule disagrees: {spec.model} vs {cfg.to_dict()}")
    return spec


def trained_tokens(spec: grids.RunSpec) -> int:
    """Tokens the trainer will actually see: the budget rounded up to whole steps of batch x ctx."""
    per_step = spec.batch_size * spec.model["ctx"]
    return math.ceil(spec.tokens / per_step) * per_step


# ----------------------------------------------------------------------------- the plan


def training_device(threads: int) -> tuple[str, str, float | None]:
    """(device name, precision, peak FLOP/s) of what this machine trains on, as the trainer resolves them.

    A CPU's peak is measured (and cached) per thread count, so it is taken at the run's `threads`, the
    number each training process will use: the trainer's MFU is then against the same peak.
    """
    import torch

    from gptcore.hardware import match_torch_device_name
    from gptcore.model import peak_flops_per_s
    from gptcore.train import resolve_device, resolve_dtype

    device = resolve_device("auto")
    precision = resolve_dtype("auto", device)
    if device.type == "cuda":
        dev = match_torch_device_name(torch.cuda.get_device_name(device))
        return (dev.name if dev else torch.cuda.get_device_name(device)), precision, peak_flops_per_s(device,
                                                                                                      precision)
    torch.set_num_threads(threads)
    return device.type, precision, peak_flops_per_s(device, precision)


def run_threads(executor: str, gpus: int) -> int:
    """CPU threads of each training process: every core for one local process, a share for each rank."""
    from sweeps.local import available_cores

    return max(1, available_cores() // (gpus if executor == "torchrun" else 1))


def make_plan(req: LaunchRequest, law_params_n: float, tokens: float, cfg: GPTConfig,
              mfu: float | None = None) -> dict:
    """The planner's figures for the run (FLOPs, GPU-hours, cost, CO2) on the planned device."""
    from scaling.planner import PlanRequest, plan

    gpus = req.gpus if req.executor != "local" else 1
    if req.gpu is not None:
        name, device_args = req.gpu, {"gpu": req.gpu}
    else:
        name, precision, peak = training_device(run_threads(req.executor, req.gpus))
        device_args = {"precision": precision}
        if name in ("cpu", "mps") or peak is None:
            if peak is None:
                raise UserError(f"--gpu: the peak of {name} is unknown here; name the device with --gpu")
            device_args["peak_tflops"] = peak / 1e12
        else:
            device_args["gpu"] = name
    request = PlanRequest(params=law_params_n, tokens=tokens, law=str(req.law), gpus=gpus, mfu=mfu,
                          price_per_gpu_hour=req.price_per_gpu_hour, ctx=cfg.ctx, n_layer=cfg.n_layer,
                          d_model=cfg.d_model, **device_args)
    result = plan(request)
    result["device"] = result["gpu"] if result["gpu"] != "custom" else f"{name} (measured peak)"
    return result


def plan_lines(result: dict, spec: grids.RunSpec, prediction: dict) -> list[str]:
    """The launch's printed plan: the run, the planner's figures and the registered prediction."""
    m = spec.model
    cost = "unknown (no price for this device: pass --price-per-gpu-hour)" if result["cost_usd"] is None \
        else f"${result['cost_usd']:,.2f}"
    co2 = "unknown" if result["co2_kg"] is None else f"{result['co2_kg']:.4g} kg"
    lo_hi = prediction["predicted_interval"]
    interval = "no interval (the law has no bootstrap fits)" if lo_hi is None else \
        f"{100 * prediction['ci_level']:.0f}% interval [{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]"
    return [
        f"final run {spec.run_id}: L{m['n_layer']} H{m['n_head']} d{m['d_model']} ctx {m['ctx']}, "
        f"{format_size(spec.params)} params ({format_size(spec.non_embedding_params)} non-embedding), "
        f"{format_size(prediction['run']['tokens'])} tokens",
        f"  learning rate {spec.lr:.3g} ({spec.lr_source}), batch {spec.batch_size} x {m['ctx']} tokens, "
        f"warmup {spec.warmup} steps",
        f"  FLOPs (6ND)        {result['flops']:.3e}",
        f"  device             {result['gpus']} x {result['device']} ({result['precision']}, "
        f"peak {result['peak_flops_per_s'] / 1e12:.3g} TFLOP/s, MFU {result['mfu']:.2f} assumed)",
        f"  GPU-hours          {result['gpu_hours']:.4g} (wall clock {result['wall_clock_hours'] * 60:.3g} min)",
        f"  cost               {cost}",
        f"  CO2e               {co2}",
        f"  predicted loss     {prediction['predicted_loss']:.4f}, {interval}",
    ]


# ----------------------------------------------------------------------------- the pre-registered prediction


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


def read_prediction(out: Path) -> dict | None:
    path = Path(out) / PREDICTION_NAME
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is unreadable; it is kept as is: use another --out") from None
    if raw.get("schema") != PREDICTION_SCHEMA:
        raise UserError(f"{path} is not a launch prediction (schema {PREDICTION_SCHEMA!r}); use another --out")
    return raw


def request_record(req: LaunchRequest, law_sha256: str, data: Path) -> dict:
    """The arguments that decide the run and its prediction: a re-run must repeat them."""
    return {"law_sha256": law_sha256, "compute": req.compute, "params": req.params, "tokens": req.tokens,
            "executor": req.executor, "gpus": req.gpus, "data": str(data), "grid": req.grid,
            "lr_law_sha256": file_sha256(req.lr_law) if req.lr_law else None}


def check_same_request(stored: dict, record: dict, out: Path) -> None:
    differ = [k for k in record if stored["request"].get(k) != record[k]]
    if differ:
        raise UserError(f"{out / PREDICTION_NAME} was registered with other arguments ({', '.join(differ)} "
                        "differ); re-run with the same ones to resume, or use another --out")


# ----------------------------------------------------------------------------- executors


def _progress(run_id: str, enabled: bool):
    from sweeps.progress import SweepProgress

    return SweepProgress([run_id], enabled=enabled)


def run_local(out: Path, spec: grids.RunSpec, progress: bool) -> None:
    """One sweep worker process with every core (one GPU if there is one): it resumes a claimed run."""
    import torch

    from sweeps.local import LocalExecutor

    gpus = 1 if torch.cuda.is_available() else 0
    bar = _progress(spec.run_id, progress)
    try:
        LocalExecutor(out, workers=1, threads=run_threads("local", 1), gpus=gpus).run([spec.run_id], bar)
    finally:
        bar.close()


def run_slurm(out: Path, spec: grids.RunSpec, req: LaunchRequest) -> None:
    """A one-task SLURM array of a Checkpointable job: a timeout or preemption requeues and resumes it."""
    from sweeps.slurm import SlurmExecutor

    bar = _progress(spec.run_id, req.progress)
    try:
        SlurmExecutor(out, req.partition, req.timeout_min, gpus_per_run=req.gpus if _has_gpu() else 0,
                      cpus_per_run=max(1, os.cpu_count() or 1)).run([spec.run_id], bar, {})
    finally:
        bar.close()


def run_torchrun(out: Path, spec: grids.RunSpec, gpus: int) -> None:
    """torchrun with `gpus` processes (DDP; gloo on CPU), each running `python -m sweeps.launch_rank OUT`.

    This process holds the run's claim in the store and records the outcome from the trainer's summary.
    torchrun dies with this process (PR_SET_PDEATHSIG), and each rank with torchrun, so a killed launch
    leaves nothing training behind.
    """
    from sweeps.store import Store, local_owner
    from sweeps.worker import die_with_parent

    threads = run_threads("torchrun", gpus) if not _has_gpu() else None
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    store = Store(out)
    owner = local_owner()
    try:
        claimed = store.claim(owner, spec.run_id)
        if claimed is None:
            return  # finished already (or another live launch holds it)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
               "-m", "sweeps.launch_rank", str(out), "--threads", str(threads or 0)]
        parent = os.getpid()
        log = out / "torchrun.log"  # not in the run folder: the trainer wants it empty until it starts
        with open(log, "ab") as f:
            code = subprocess.call(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=lambda: die_with_parent(parent))
        summary_path = run_dir(out, spec.run_id) / "summary.json"
        if code == 0 and summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            reason = f"loss not finite at step {summary.get('diverged_step')}" \
                if summary["status"] == "diverged" else None
            store.finish(spec.run_id, owner, summary["status"], reason, summary)
        else:
            store.finish(spec.run_id, owner, "failed", f"torchrun exited with code {code}; see {log}")
    finally:
        store.close()


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


# ----------------------------------------------------------------------------- the launch


def confirm(cost_usd: float | None, wall_clock_hours: float, req: LaunchRequest) -> None:
    """Ask before a run above --confirm-above dollars or --confirm-above-hours; without a terminal, --yes must say so.

    The wall-clock rule holds when no price is known too (a CPU, a device the table has no price for).
    """
    reasons = []
    if cost_usd is not None and cost_usd > req.confirm_above_usd:
        reasons.append(f"costs about ${cost_usd:,.2f}, above --confirm-above ${req.confirm_above_usd:,.2f}")
    if not wall_clock_hours <= req.confirm_above_hours:  # NaN asks too
        reasons.append(f"takes about {wall_clock_hours:.3g} h of wall clock, above --confirm-above-hours "
                       f"{req.confirm_above_hours:g}")
    if req.yes or not reasons:
        return
    question = f"this run {' and '.join(reasons)}"
    if not sys.stdin.isatty():
        raise UserError(f"{question}; pass --yes to launch without a terminal to confirm on")
    answer = input(f"{question}. Launch it? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("not launched (answered no)")


def prepare_launch(req: LaunchRequest) -> tuple[dict, grids.RunSpec, Path, bool]:
    """Resolve and print the plan, confirm, register the prediction. Returns (prediction, spec, data, new)."""
    from gptcore.data import open_dataset
    from sweeps.provenance import data_hash
    from sweeps.sweep import choose_executor, lr_law_for, prepared_data

    if req.executor not in EXECUTORS:
        raise UserError(f"--executor: choose one of {', '.join(EXECUTORS)}, got {req.executor!r}")
    if req.gpus < 1:
        raise UserError(f"--gpus: must be 1 or more, got {req.gpus}")
    choose_executor(req.executor)  # --executor slurm with no cluster: refused before anything is written
    out = req.out.resolve()
    law = load_law(req.law)
    law_sha = file_sha256(req.law)
    n_req, d_req = choose_size(law, req.compute, req.params, req.tokens)
    if n_req > MAX_PARAMS:  # found here, before a model nothing can build is sized and planned
        raise UserError(f"{'--compute' if req.compute is not None else '--params'}: the run would have "
                        f"{n_req:.3g} parameters, more than the planner takes (at most {MAX_PARAMS:.0e})")
    grid = sweep_grid(law, req.grid)
    stored = read_prediction(out)
    data = prepared_data(req.data, out)  # the bundled corpus is prepared into OUT/data once the arguments hold
    record = request_record(req, law_sha, data)
    if stored is not None:
        check_same_request(stored, record, out)
    ds = open_dataset(data)
    if req.compute is not None:
        d_req = tokens_for_budget(law, req.compute, n_req, ds.vocab_size, grid.ctx)
    spec = final_spec(law, n_req, d_req, grid, ds.vocab_size, data_hash(ds.meta), lr_law_for(req.lr_law))
    if stored is not None and stored["run"]["config_hash"] != spec.config_hash:
        raise UserError(f"{out / PREDICTION_NAME} registered run {stored['run']['config_hash']}, but these "
                        f"arguments now give {spec.config_hash} (a new LR law?); use another --out")
    if req.executor == "torchrun" and spec.batch_size % req.gpus:
        raise UserError(f"--gpus: the run's batch of {spec.batch_size} sequences does not split over {req.gpus} "
                        "processes; use a power of two")
    cfg = GPTConfig.from_dict(spec.model)
    n, d = law_params(law, cfg), trained_tokens(spec)
    planned = make_plan(req, n, d, cfg)
    point, interval = law.predict_loss(n, d)
    prediction = stored or {
        "schema": PREDICTION_SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "predicted_loss": point,
        "predicted_interval": interval,
        "ci_level": law.ci_level,
        "law": {"path": str(Path(req.law).resolve()), "sha256": law_sha, "form": law.form,
                "param_convention": law.param_convention, "params": law.law.to_dict(),
                "n_bootstrap": len(law.bootstrap_params), "sweep_table": law.rows.get("source")},
        "request": record,
        "run": {**spec.to_dict(), "law_params": n, "tokens": d, "requested_params": n_req,
                "requested_tokens": d_req},
        "data": {"path": str(data), "hash": spec.data_hash},
        "plan": {k: planned[k] for k in ("flops", "device", "gpu", "gpus", "precision", "peak_flops_per_s", "mfu",
                                           "gpu_hours", "wall_clock_hours", "cost_usd", "energy_kwh", "co2_kg")},
    }
    for line in plan_lines(planned, spec, prediction):
        print(line)
    if stored is not None:
        print(f"prediction registered {stored['created_utc']} in {out / PREDICTION_NAME} (kept as is); resuming")
        return stored, spec, data, False
    confirm(planned["cost_usd"], planned["wall_clock_hours"], req)
    out.mkdir(parents=True, exist_ok=True)
    if not write_once_json(out / PREDICTION_NAME, prediction):
        raise UserError(f"{out / PREDICTION_NAME} appeared while planning (another launch?); re-run to resume")
    print(f"prediction registered in {out / PREDICTION_NAME} before training", flush=True)
    return prediction, spec, data, True


def launch(req: LaunchRequest) -> dict:
    """Plan, register, train (or resume) and return the trainer's summary of the final run."""
    from sweeps.store import Store

    prediction, spec, data, _ = prepare_launch(req)
    out = req.out.resolve()
    store = Store(out)
    try:
        store.register([spec])
    finally:
        store.close()
    atomic_write_json(out / SETTINGS_NAME, {"grid": "launch", "data": str(data), "data_hash": spec.data_hash})
    if req.executor == "local":
        run_local(out, spec, req.progress)
    elif req.executor == "slurm":
        run_slurm(out, spec, req)
    else:
        run_torchrun(out, spec, req.gpus)
    summary_path = run_dir(out, spec.run_id) / "summary.json"
    if not summary_path.is_file():
        store = Store(out)
        row = next(r for r in store.rows() if r["run_id"] == spec.run_id)
        store.close()
        raise UserError(f"the final run did not finish ({row['status']}: {row['reason']}); "
                        f"see {run_dir(out, spec.run_id)}; re-run the same command to resume")
    return json.loads(summary_path.read_text())


def rank_train_config(out: Path, threads: int | None):
    """The TrainConfig one torchrun rank trains: the registered run, its batch split over the processes."""
    from sweeps.runner import read_settings, train_config

    prediction = read_prediction(out)
    spec = grids.RunSpec.from_dict({k: v for k, v in prediction["run"].items()
                                    if k in {f.name for f in dataclasses.fields(grids.RunSpec)}})
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = train_config(spec, read_settings(out)["data"], run_dir(out, spec.run_id), threads)
    return dataclasses.replace(cfg, batch_size=spec.batch_size // world)
