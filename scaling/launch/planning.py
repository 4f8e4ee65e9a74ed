"""The launch's plan: the planner's figures (FLOPs, GPU-hours, cost, CO2) for the final run on the device
it trains on, and the lines `scaling launch` prints before it asks or trains."""

from __future__ import annotations

from dataclasses import dataclass, fields

from analysis.prediction import Prediction
from gptcore.config import GPTConfig
from gptcore.errors import UserError
from scaling.launch.executors import run_threads
from scaling.launch.request import LaunchRequest
from scaling.planner import Plan
from scaling.units import format_duration, format_interval, format_mfu, format_size
from sweeps.grid import RunSpec

# The planner's figures the prediction keeps beside FLOPs and the device: what the report compares with.
RECORDED = ("gpu", "gpus", "precision", "peak_flops_per_s", "mfu", "gpu_hours", "wall_clock_hours",
            "cost_usd", "energy_kwh", "co2_kg")


@dataclass(frozen=True)
class LaunchPlan:
    """The planner's plan for the final run, and the device it is planned on as the launch names it."""

    plan: Plan
    device: str  # the table's name, or e.g. "cpu (measured peak)" for a device planned by its measured peak

    def to_json(self) -> dict:
        """The figures prediction.json keeps under "plan"."""
        figures = self.plan.to_json()
        return {"flops": figures["flops"], "device": self.device, **{k: figures[k] for k in RECORDED},
                "mfu_source": self.plan.assumptions.mfu}


def cpu_device(precision: str | None = None) -> tuple[str, float]:
    """(precision, peak FLOP/s) of this machine's CPU at torch's current thread count: the trainer's dtype
    choice unless given, and its measured matmul peak (cached per CPU, threads and torch)."""
    import torch

    from gptcore.hardware import peak_flops_per_s
    from gptcore.train import resolve_dtype

    cpu = torch.device("cpu")
    precision = precision or resolve_dtype("auto", cpu)
    return precision, peak_flops_per_s(cpu, precision)


def training_device(threads: int, dtype: str = "auto") -> tuple[str, str, float | None]:
    """(device name, precision, peak FLOP/s) of what this machine trains on, as the trainer resolves them:
    `dtype` is the run's own setting (a grid's [train] dtype), "auto" the trainer's choice for the device.

    A CPU's peak is measured (and cached) per thread count, so it is taken at the run's `threads`, the
    number each training process will use: the trainer's MFU is then against the same peak. A run that
    trains in fp32 on a CPU whose auto choice is bf16 is planned against the fp32 peak, not the bf16 one.
    """
    import torch

    from gptcore.hardware import match_torch_device_name, peak_flops_per_s
    from gptcore.train import resolve_device, resolve_dtype

    device = resolve_device("auto")
    if device.type == "cuda":
        precision = resolve_dtype(dtype, device)
        dev = match_torch_device_name(torch.cuda.get_device_name(device))
        return (dev.name if dev else torch.cuda.get_device_name(device)), precision, peak_flops_per_s(device,
                                                                                                      precision)
    if device.type != "cpu":
        precision = resolve_dtype(dtype, device)
        return device.type, precision, peak_flops_per_s(device, precision)
    torch.set_num_threads(threads)
    return ("cpu", *cpu_device(None if dtype == "auto" else dtype))


def schedule_of(spec: RunSpec) -> dict:
    """The run's evaluation and checkpoint schedule, as the trainer will follow it (its defaults unless the
    grid's [train] settings say otherwise), in the planner's terms."""
    from gptcore.train import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    train = {**defaults, **spec.train}
    return {"eval_every": train["eval_every"], "eval_batches": train["eval_batches"],
            "final_eval_batches": train["final_eval_batches"],
            "checkpoint_every": train["checkpoint_every"], "grad_accum": train["grad_accum"]}


def measured_mfu(spec: RunSpec, data: str, threads: int, peak: float, params: float,
                 cfg: GPTConfig) -> tuple[float, str]:
    """(MFU in the planner's terms, its source) of the run's own shape, from a few real training steps on
    this machine (sweeps.duration, as `sweep --dry-run` measures): a CPU's MFU depends on the matrix sizes
    (here 0.05 to 0.17 between the tiny grid's smallest model and its final run), so no default holds."""
    from scaling.planner import plan_mfu
    from sweeps.duration import MEASURE_STEPS, measure_flops_per_s

    rate, _ = measure_flops_per_s(spec, data, threads)
    return plan_mfu(rate / peak, params, cfg), f"measured here: {MEASURE_STEPS} training steps of this shape"


def make_plan(req: LaunchRequest, law_params_n: float, tokens: float, cfg: GPTConfig,
              mfu: float | None = None, spec: RunSpec | None = None, data: str | None = None,
              mfu_source: str | None = None) -> LaunchPlan:
    """The planner's figures for the run (FLOPs, GPU-hours, cost, CO2) on the planned device: the model
    exactly as it will be built, and, given its spec, its batch and evaluation and checkpoint schedule.

    On a CPU (or MPS) without a given `mfu`, the MFU is measured on the run's shape when `data` is given."""
    from scaling.planner import PlanRequest, plan
    from scaling.planner_shape import ShapeFlags

    gpus = req.gpus if req.executor != "local" else 1
    if req.gpu is not None:
        name, device_args = req.gpu, {"gpu": req.gpu}
    else:
        threads = run_threads(req.executor, req.tasks_per_node)
        name, precision, peak = training_device(threads, (spec.train if spec else {}).get("dtype", "auto"))
        device_args = {"precision": precision}
        if name in ("cpu", "mps") or peak is None:
            if peak is None:
                raise UserError(f"--gpu: the peak of {name} is unknown here; name the device with --gpu")
            device_args |= {"peak_tflops": peak / 1e12, "device_name": f"{name} (measured peak)"}
            if mfu is None and spec is not None and data is not None:
                mfu, mfu_source = measured_mfu(spec, data, threads, peak, law_params_n, cfg)
        else:
            device_args["gpu"] = name
    shape = ShapeFlags(n_layer=cfg.n_layer, d_model=cfg.d_model, n_head=cfg.n_head, vocab_size=cfg.vocab_size,
                       ctx=cfg.ctx, tie_weights=cfg.tie_weights, qkv_bias=cfg.qkv_bias)
    schedule = {}
    if spec is not None:  # the spec's batch is split over the processes (torchrun) or run whole (local)
        schedule = {"micro_batch": max(1, spec.batch_size // gpus), **schedule_of(spec)}
    request = PlanRequest(params=None, tokens=tokens, law=str(req.law), gpus=gpus, mfu=mfu, mfu_source=mfu_source,
                          price_per_gpu_hour=req.price_per_gpu_hour, shape=shape, **schedule, **device_args)
    result = plan(request)
    if abs(result.params - law_params_n) > 0.5:  # the shape is the run's: its N is the law's N for it
        raise AssertionError(f"planned N {result.params} is not the run's {law_params_n}")
    return LaunchPlan(result, result.gpu)


def parallel_choice(req: LaunchRequest, planned: LaunchPlan):
    """DDP or FSDP for the run's processes, from the planner's memory per GPU on the planned device
    (scaling.parallelism.choose; a CPU, whose memory the planner does not model, takes DDP unless told).
    A choice that will not fit is refused in one line, before anything is written."""
    from scaling.parallelism import choose, refusal

    memory = planned.plan.memory_gb_per_gpu
    choice = choose(req.parallel, memory.unsharded, memory.device_memory_gb, req.gpus)
    if choice.parallel == "fsdp" and req.gpus < 2:
        raise UserError("--parallel fsdp shards over 2 or more processes; this run has 1 (see --nodes, "
                        "--tasks-per-node)")
    why = refusal(choice)
    if why is not None:
        raise UserError(f"--parallel {req.parallel}: {why}")
    return choice


def parallel_lines(choice) -> list[str]:
    """What the launch will use and why: the memory per GPU of that choice and the fewest GPUs."""
    dev = "unknown" if choice.device_memory_gb is None else f"{choice.device_memory_gb:.3g} GB"
    fewest = "unknown (device memory unknown)" if choice.device_memory_gb is None else \
        ("none fit" if choice.fewest_gpus is None else str(choice.fewest_gpus))
    shown = "one process (unsharded)" if choice.gpus == 1 else f"{choice.parallel} over {choice.gpus} processes"
    return [f"  parallel           {shown}: {choice.reason}",
            f"  memory per GPU     {choice.memory_per_gpu_gb:.3g} GB of {dev}; fewest GPUs for "
            f"{choice.parallel}: {fewest}"]


def _head_lines(spec: RunSpec, prediction: Prediction) -> list[str]:
    """The run, its learning rate, batch and warmup, and whether it is trained like the law's runs."""
    from sweeps.grid import describe_difference
    from sweeps.hparams import describe_lr_rule

    m = spec.model
    training = prediction.training  # None in a prediction registered before launches recorded it
    rule = "" if not training else f", by {describe_lr_rule(training['final_run']['lr_rule'])}"
    lines = [f"final run {spec.run_id}: L{m['n_layer']} H{m['n_head']} d{m['d_model']} ctx {m['ctx']}, "
             f"{format_size(spec.params)} params ({format_size(spec.non_embedding_params)} non-embedding), "
             f"{format_size(prediction.run['tokens'])} tokens",
             f"  learning rate {spec.lr:.3g} ({spec.lr_source}{rule}), batch {spec.batch_size} x {m['ctx']} "
             f"tokens, warmup {spec.warmup} steps"]
    if training and training["trained_like_sweep"]:
        lines.append("  trained like the law's runs (the same LR, batch and warmup rules, ctx, data and settings)")
    for d in (training or {}).get("differences", []):
        lines.append(f"  warning: not as the law's runs were trained: {describe_difference(d)}")
    lines.extend(f"  warning: {n}" for n in (training or {}).get("notes", []))
    return lines


def plan_lines(planned: LaunchPlan, spec: RunSpec, prediction: Prediction) -> list[str]:
    """The launch's printed plan: the run, the planner's figures and the registered prediction."""
    result = planned.plan
    cost = "unknown (no price for this device: pass --price-per-gpu-hour)" if result.cost_usd is None \
        else f"${result.cost_usd:,.2f}"
    co2 = "unknown" if result.co2_kg is None else f"{result.co2_kg:.4g} kg"
    lo_hi = prediction.predicted_interval
    interval = "no interval (the law has no bootstrap fits)" if lo_hi is None else \
        f"{100 * prediction.ci_level:.0f}% interval {format_interval(*lo_hi, '.4f')}"
    return [
        *_head_lines(spec, prediction),
        f"  FLOPs (6ND)        {result.flops:.3e}",
        f"  device             {result.gpus} x {planned.device} ({result.precision}, "
        f"peak {result.peak_flops_per_s / 1e12:.3g} TFLOP/s, MFU {format_mfu(result.mfu)} {_mfu_how(result)})",
        f"  GPU-hours          {result.gpu_hours:.4g} (wall clock {format_duration(result.wall_clock_hours * 3600)})",
        f"  cost               {cost}",
        f"  CO2e               {co2}",
        f"  predicted loss     {prediction.predicted_loss:.4f}, {interval} (parameters)",
        *_prediction_lines(prediction),
    ]


def _mfu_how(result: Plan) -> str:
    source = result.assumptions.mfu
    return source if source.startswith("measured") else f"assumed: {source}"


def _prediction_lines(prediction: Prediction) -> list[str]:
    """The registered prediction interval, the multiples beyond the fitted runs and the warnings (none for a
    prediction registered before launches recorded them)."""
    from scaling.fit.predictive import prediction_lines

    d = prediction.details
    if "prediction" not in d:
        return []
    return prediction_lines(d.get("prediction_interval"), d["prediction"].get("level"),
                            d["prediction"].get("reason", ""), d.get("extrapolation"), d.get("warnings", []))
