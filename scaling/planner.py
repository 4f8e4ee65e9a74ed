"""`scaling plan`'s engine: from a target run (N, D or C) and hardware to FLOPs, time, cost, energy, CO2,
memory, and the compute-optimal alternative under a scaling law.

`plan(PlanRequest(...))` returns a `Plan` (`Plan.to_json()` is what `scaling plan --json` prints);
`scaling.plan_render` draws it as a table. The formulas live in scaling.formulas and scaling.memory, the
law maths in scaling.law, the sizing rule in gptcore.config.shape_for_params. numpy is the heaviest
import here (through scaling.law); never torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, is_dataclass

from gptcore.config import GPTConfig, count_non_embedding_params, count_params, flops_per_token_with_attention
from gptcore.errors import UserError
from gptcore.hardware import PRECISIONS, Device, get_device
from scaling import formulas
from scaling.carbon import grid_intensity
from scaling.law import KAPLAN, PUBLISHED, ChinchillaLaw, FittedLaw, file_sha256
from scaling.memory import (
    ATTENTION_KERNELS,
    RECOMPUTE,
    ZERO_STAGES,
    ActivationBytes,
    MemoryGB,
    activation_memory,
    min_gpus,
    training_memory,
)
from scaling.planner_inference import InferencePlan, plan_inference
from scaling.planner_shape import ShapeFlags, check_shape_flags, derived_shape, fixed_shape, law_params
from scaling.planner_time import (
    GOODPUT_HINT,
    Budget,
    Measured,
    Schedule,
    TimePlan,
    compute_for_budget,
    read_measured,
    run_time,
)

DEFAULT_GPU = "H100-SXM"
DEFAULT_GPUS = 8  # one node
DEFAULT_LAW = "chinchilla"
MAX_PARAMS = 1e15  # ~500x the largest published models (~2T): beyond it a plan and the sizing rule mean nothing
LAW_SOURCES = {
    "chinchilla": "Hoffmann et al. 2022 eq. (10) as printed; frontier eq. (4)",
    "epoch": "Besiroglu et al. 2024 (Epoch AI replication of Chinchilla Approach 3); frontier eq. (4)",
    "kaplan": "Kaplan et al. 2020: N_opt = 1.3e9 * C^0.73 (C in PF-days), loss eq. (1.5)",
}


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for. None means "use the default", which the plan then names with its source."""

    params: float | None = None
    tokens: float | None = None
    compute: float | None = None
    gpu: str | None = None
    peak_tflops: float | None = None
    memory_gb: float | None = None
    device_name: str | None = None  # the name of a device given by --peak-tflops (e.g. "cpu (measured peak)")
    gpus: int = DEFAULT_GPUS
    mfu: float | None = None
    precision: str = "bf16"
    price_per_gpu_hour: float | None = None
    power_w: float | None = None
    pue: float | None = None
    carbon_intensity: float | None = None
    region: str | None = None
    law: str | None = None  # None: DEFAULT_LAW, named as the default in the plan
    shape: ShapeFlags = ShapeFlags()
    micro_batch: int = 1
    grad_accum: int = 1
    attention: str = "flash"
    recompute: str = "none"
    budget: Budget = Budget()
    eval_every: int | None = None
    eval_batches: int = 10
    final_eval_batches: int | None = None
    checkpoint_every: int | None = None
    checkpoint_gb_per_s: float | None = None
    goodput: float | None = None
    measured_from: str | None = None
    mfu_source: str | None = None  # where a given mfu comes from (launch: measured here), else "--mfu"
    inference_tokens: float | None = None
    target_loss: float | None = None


# ----------------------------------------------------------------------------- inputs


def resolve_law(name_or_path: str) -> tuple[FittedLaw, str]:
    """A published law by name (chinchilla, epoch, kaplan) or a `scaling fit` law file, and its source.
    Kaplan et al. count non-embedding parameters (their §2.1); Chinchilla and its replication count all."""
    key = name_or_path.lower()
    if key in PUBLISHED:
        return FittedLaw.of(PUBLISHED[key]), LAW_SOURCES[key]
    if key == "kaplan":
        return FittedLaw.of(KAPLAN, param_convention="non_embedding"), LAW_SOURCES[key]
    try:
        law_file = FittedLaw.load(name_or_path)
    except UserError as e:
        raise UserError(f"--law: {e}; use chinchilla, epoch, kaplan or a `scaling fit` law file") from None
    if not law_file.has_frontier:
        raise UserError(f"--law: {name_or_path} ({law_file.form} fit) has no compute-optimal frontier to plan on")
    return law_file, f"law file {name_or_path} (sha256 {file_sha256(name_or_path)[:12]})"


def _check_size(req: PlanRequest) -> None:
    """Exactly one source of the run's size: --params (with or without --tokens), --compute, a budget, or a
    shape that names the model (--preset, --n-layer/--d-model; with --params, N is counted as given)."""
    fixed, budget = req.shape.fixed, req.budget.given
    if budget and req.params is not None and req.tokens is not None:
        raise UserError("--budget-usd/--gpu-hours/--days: a budget sets the run's size; give it with --params "
                        "or alone, not with both --params and --tokens")
    if budget and req.compute is not None:
        raise UserError("--compute: give --compute or a budget (--budget-usd, --gpu-hours, --days), not both")
    if req.compute is not None and (req.params is not None or req.tokens is not None):
        raise UserError("--compute: give --compute alone, or --params (with or without --tokens), not both")
    if (budget or req.compute is not None) and fixed and req.tokens is not None:
        raise UserError("--tokens: a budget or --compute with a fixed shape sets the tokens; drop --tokens")
    if not (fixed or budget or req.compute is not None or req.params is not None):
        raise UserError("--params: give --params N (and optionally --tokens D), --compute C, a budget "
                        "(--budget-usd, --gpu-hours, --days) or a shape (--preset, --n-layer/--d-model)")
    if req.tokens is not None and req.params is None and not fixed:
        raise UserError("--tokens: goes with --params or a shape (--preset, --n-layer/--d-model)")


def _check(req: PlanRequest) -> None:
    """One clear line for each input out of range, naming the flag and what it accepts."""
    _check_size(req)
    check_shape_flags(req.shape)
    req.budget.check()
    if req.mfu is not None and not 0.0 < req.mfu <= 1.0:
        raise UserError(f"--mfu: must be a fraction in (0, 1], such as 0.4; got {req.mfu}")
    if req.mfu is not None and req.measured_from is not None:
        raise UserError("--measured-from: gives the MFU; drop --mfu (or drop --measured-from)")
    if req.goodput is not None and not 0.0 < req.goodput <= 1.0:
        raise UserError(f"--goodput: must be a fraction in (0, 1], such as 0.9; got {req.goodput}")
    if req.precision not in PRECISIONS:
        raise UserError(f"--precision: must be one of {', '.join(PRECISIONS)}; got {req.precision!r}")
    if req.attention not in ATTENTION_KERNELS or req.recompute not in RECOMPUTE:
        raise UserError(f"--attention/--recompute: one of {', '.join(ATTENTION_KERNELS)} and one of "
                        f"{', '.join(RECOMPUTE)}; got {req.attention!r}, {req.recompute!r}")
    positive = {"--gpus": req.gpus, "--micro-batch": req.micro_batch, "--grad-accum": req.grad_accum,
                "--peak-tflops": req.peak_tflops, "--power-w": req.power_w, "--memory-gb": req.memory_gb,
                "--eval-every": req.eval_every, "--eval-batches": req.eval_batches,
                "--final-eval-batches": req.final_eval_batches, "--checkpoint-every": req.checkpoint_every,
                "--checkpoint-gb-per-s": req.checkpoint_gb_per_s,
                "--inference-tokens": req.inference_tokens, "--target-loss": req.target_loss}
    for flag, value in positive.items():
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"{flag}: must be a positive number; got {value}")
    for flag, value in {"--price-per-gpu-hour": req.price_per_gpu_hour,
                        "--carbon-intensity": req.carbon_intensity}.items():
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise UserError(f"{flag}: must be a number >= 0; got {value}")
    if req.pue is not None and not (req.pue >= 1 and math.isfinite(req.pue)):
        raise UserError(f"--pue: must be a number >= 1 (total facility power / IT power); got {req.pue}")
    for flag, name in {"--gpu": req.gpu, "--region": req.region, "--law": req.law}.items():
        if name is not None and not name.strip():
            raise UserError(f"{flag}: must not be empty")
    if req.carbon_intensity is not None and req.region is not None:
        raise UserError("--region: give --region or --carbon-intensity, not both")
    if req.target_loss is not None and req.inference_tokens is None:
        raise UserError("--target-loss: goes with --inference-tokens")


def _device(req: PlanRequest) -> Device | None:
    """The table's device, or None for a custom one described only by --peak-tflops."""
    if req.gpu is None and req.peak_tflops is not None:
        return None
    try:
        return get_device(req.gpu or DEFAULT_GPU)
    except UserError as e:
        raise UserError(f"--gpu: {e}") from None


# ----------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class PlanShape:
    """The model shape behind the memory, attention and time terms, and where it came from."""

    n_layer: int
    n_head: int
    d_model: int
    head_dim: int
    ctx: int
    vocab_size: int
    tie_weights: bool
    qkv_bias: bool
    params_total: int
    params_non_embedding: int
    derived_from_params: bool  # False when --preset or --n-layer/--d-model gave it
    how: str  # "preset gpt2-124m", "as given", or the sizing rule


@dataclass(frozen=True)
class MemoryPlan:
    """GB per GPU: unsharded, under each ZeRO stage over the run's GPUs, and with activations recomputed.

    Activations are at the step's peak (saved for backward plus the head's transient logits); the
    breakdown (bytes of one micro-batch) says where they are kept."""

    unsharded: MemoryGB
    zero: dict[int, MemoryGB]  # ZeRO stage -> memory per GPU
    activations_recomputed: float
    device_memory_gb: float | None
    attention: str
    recompute: str
    state_layout: str
    activation_bytes: ActivationBytes

    def to_json(self) -> dict:
        act = self.activation_bytes
        return {**self.unsharded.to_dict(), **{f"zero{s}": m.to_dict() for s, m in self.zero.items()},
                "activations_recomputed": self.activations_recomputed, "device_memory_gb": self.device_memory_gb,
                "attention": self.attention, "recompute": self.recompute, "state_layout": self.state_layout,
                "activation_bytes": {**asdict(act), "saved": act.saved, "peak": act.peak}}


@dataclass(frozen=True)
class PlanLaw:
    name: str
    source: str
    param_convention: str


@dataclass(frozen=True)
class PlanPrediction:
    """Where the planned run's actual loss should fall, and how far it lies beyond the law's fitted runs, from
    the law file's backtest calibration (scaling.fit.predictive.prediction_record): the interval the
    parameter interval is not. interval None: unbounded or uncalibrated (`reason` says which)."""

    interval: list[float] | None
    level: float | None
    extrapolation: dict | None  # params_multiple, tokens_multiple, flops_multiple, distance_dex
    warnings: list[str]
    reason: str = ""

    @classmethod
    def of(cls, law_file: FittedLaw, params: float, tokens: float) -> PlanPrediction:
        from scaling.fit.predictive import prediction_record

        record = prediction_record(law_file, params, tokens)
        details = record["prediction"]
        return cls(record["prediction_interval"], details.get("level"), record["extrapolation"],
                   record["warnings"], details.get("reason", ""))


@dataclass(frozen=True)
class ComputeOptimal:
    """The compute-optimal run for the same FLOPs under the law, and its predicted loss."""

    params: float
    tokens: float
    tokens_per_param: float
    predicted_loss: float | None
    predicted_loss_interval: list[float] | None


@dataclass(frozen=True)
class BudgetPlan:
    """What a budget buys: GPU-hours on the device, and the training FLOPs that fit in them."""

    given: str  # "$10,000 at $2.99/GPU-hour", "2000 GPU-hours", "3 days on 64 GPUs"
    gpu_hours: float
    flops: float


@dataclass(frozen=True)
class Assumptions:
    """Where each default-able figure came from: a flag, or the table or paper it was read from."""

    peak: str
    mfu: str
    price: str
    power: str
    pue: str
    carbon_intensity: str
    goodput: str


@dataclass(frozen=True)
class Plan:
    """Every figure of a plan, with the assumptions behind it. None: unknown (no price, no power)."""

    mode: str  # how the size was asked for: params, params+tokens, compute, budget, shape, ...
    params: float  # N in the law's convention
    tokens: float
    flops: float
    flops_with_attention: float
    tokens_per_param: float
    gpu: str  # the table's name, or the custom device's ("custom" for a bare --peak-tflops)
    precision: str
    gpus: int
    peak_flops_per_s: float
    mfu: float
    achieved_flops_per_s: float
    gpu_hours: float  # training compute alone: flops / (peak * MFU * 3600)
    wall_clock_hours: float  # training, evaluation and checkpoints, over the goodput
    time: TimePlan
    price_usd_per_gpu_hour: float | None
    price_date: str | None
    cost_usd: float | None  # billed GPU-hours (wall clock x GPUs) x price
    power_w: float | None
    pue: float
    carbon_intensity_kg_per_kwh: float
    energy_kwh: float | None
    co2_kg: float | None
    shape: PlanShape
    micro_batch: int
    memory_gb_per_gpu: MemoryPlan
    min_gpus: int | None
    min_gpus_how: str
    law: PlanLaw
    predicted_loss: float | None
    predicted_loss_interval: list[float] | None
    compute_optimal: ComputeOptimal
    budget: BudgetPlan | None
    inference: InferencePlan | None
    assumptions: Assumptions
    prediction: PlanPrediction | None = None  # with --law and a law that predicts loss

    def to_json(self) -> dict:
        """The JSON object `scaling plan --json` prints: the fields by name, nested as they are here."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if hasattr(value, "to_json") else \
                asdict(value) if is_dataclass(value) else value
        return out


# ----------------------------------------------------------------------------- sizing


@dataclass(frozen=True)
class _Run:
    """A sized run: N (law convention), D, and the model."""

    mode: str
    params: float
    tokens: float
    cfg: GPTConfig


def _optimal_tokens(law_file: FittedLaw, params: float) -> float:
    """D on the law's frontier for N: the law's own inverse, or N_opt = k_N C^a inverted with C = 6ND."""
    frontier = law_file.frontier
    if hasattr(frontier, "optimal_tokens"):
        return float(frontier.optimal_tokens(params))
    flops = (params / frontier.k_N) ** (1.0 / frontier.a)
    return flops / (6.0 * params)


def _run_for(req: PlanRequest, law_file: FittedLaw, compute: float | None, tag: str) -> _Run:
    """The run for the request: the shape's own N, or --params, or the law's optimum for `compute`."""
    convention = law_file.param_convention
    if req.shape.fixed:
        cfg = fixed_shape(req.shape)  # N is the shape's own count unless --params says how the user counts it
        n = req.params if req.params is not None else float(law_params(cfg, convention))
        if compute is not None:
            d, mode = compute / (6.0 * n), f"{tag}+shape"
        else:
            d = req.tokens if req.tokens is not None else _optimal_tokens(law_file, n)
            mode = "shape+tokens" if req.tokens is not None else "shape"
        _check_run(req, n, d, tag)
        return _Run(mode, n, d, cfg)
    if req.params is not None:
        n = req.params
        if compute is not None:
            d, mode = compute / (6.0 * n), f"{tag}+params"
        else:
            d = req.tokens if req.tokens is not None else _optimal_tokens(law_file, n)
            mode = "params+tokens" if req.tokens is not None else "params"
    else:
        n, d = (float(x) for x in law_file.compute_optimal(compute))
        mode = tag
    _check_run(req, n, d, tag)
    return _Run(mode, n, d, derived_shape(req.shape, n, convention))


def _check_run(req: PlanRequest, params: float, tokens: float, tag: str) -> None:
    if not (1 <= params <= MAX_PARAMS and tokens >= 1):
        flag = {"compute": "--compute", "budget": "--budget-usd/--gpu-hours/--days"}.get(tag, "--params")
        flag = "--tokens" if req.tokens is not None and tokens < 1 else flag
        raise UserError(f"{flag}: a run of {params:.3g} parameters on {tokens:.3g} tokens is outside what the "
                        f"planner takes: 1 to {MAX_PARAMS:.0e} parameters, at least 1 token")


def _shape_record(req: PlanRequest, cfg: GPTConfig) -> PlanShape:
    how = f"preset {req.shape.preset}" if req.shape.preset else "as given" if req.shape.fixed else \
        "derived from N by the trainer's rule"
    return PlanShape(cfg.n_layer, cfg.n_head, cfg.d_model, cfg.head_dim, cfg.ctx, cfg.vocab_size, cfg.tie_weights,
                     cfg.qkv_bias, count_params(cfg), count_non_embedding_params(cfg), not req.shape.fixed, how)


# ----------------------------------------------------------------------------- memory, peak, time


def _memory_plan(req: PlanRequest, cfg: GPTConfig,
                 device_memory: float | None) -> tuple[MemoryPlan, int | None, str]:
    """Memory per GPU unsharded and under ZeRO-1/2/3 over the run's GPUs, and the fewest GPUs it fits on.

    Weights count the model the trainer would build from `cfg` (embeddings and head included). If the
    activations alone overflow the device, the fit is retried with full activation recomputation.
    """
    n_weights = count_params(cfg)
    memory = training_memory(n_weights, cfg, req.micro_batch, req.precision, req.attention, req.recompute)
    recomputed = training_memory(n_weights, cfg, req.micro_batch, req.precision, req.attention, "full")
    act = activation_memory(cfg, req.micro_batch, req.precision, req.attention, req.recompute)
    table = MemoryPlan(memory, {s: memory.sharded(s, req.gpus) for s in ZERO_STAGES}, recomputed.activations,
                       device_memory, req.attention, req.recompute, "autocast", act)
    if device_memory is None:
        return table, None, "unknown device memory: pass --memory-gb"
    fewest = min_gpus(memory, device_memory)
    if fewest is not None:
        return table, fewest, f"ZeRO-3, recomputation {req.recompute}"
    fewest = min_gpus(recomputed, device_memory)
    if fewest is not None:
        return table, fewest, "ZeRO-3 with full activation recomputation"
    return table, None, f"does not fit at micro-batch {req.micro_batch} without tensor/pipeline parallelism"


def _peak(req: PlanRequest, device: Device | None) -> tuple[float, str]:
    """The dense peak FLOP/s per device, and where it comes from."""
    if req.peak_tflops is not None:
        return req.peak_tflops * 1e12, "--peak-tflops" if req.device_name is None else \
            f"{req.device_name}: this machine's matmul peak, measured and cached as the trainer measures it"
    try:
        peak = device.peak_flops_per_s(req.precision)
    except UserError as e:
        raise UserError(f"--precision: {e}") from None
    return peak, f"{device.name} {req.precision} dense peak: {device.peak_source}"


def _or_default(given, flag: str, default, default_source: str):
    """(value, source): the flag's value when given, else the default and where it comes from."""
    return (given, flag) if given is not None else (default, default_source)


def _mfu_for(req: PlanRequest, measured: Measured | None, run: _Run) -> tuple[float, str]:
    """The MFU in the planner's 6ND terms: --mfu, the default, or an earlier run's measured trainer MFU
    converted (the trainer counts matmul parameters + attention per token; the plan 6N with the law's N),
    so that the planned time is tokens x trainer FLOPs per token / the measured achieved rate."""
    if measured is None:
        return _or_default(req.mfu, req.mfu_source or "--mfu", formulas.DEFAULT_MFU.value,
                           formulas.DEFAULT_MFU.source)
    return plan_mfu(measured.trainer_mfu, run.params, run.cfg), measured.source + " (in 6ND terms for this shape)"


def plan_mfu(trainer_mfu: float, params: float, cfg) -> float:
    """A trainer's MFU (matmul parameters + attention per token, gptcore) in the planner's 6N terms for the
    law's N, so that planned time = tokens x the trainer's FLOPs per token / the achieved rate."""
    return min(1.0, trainer_mfu * 6.0 * params / flops_per_token_with_attention(cfg))


def _time(req: PlanRequest, run: _Run, rate_per_gpu: float) -> TimePlan:
    schedule = Schedule(tokens_per_step=req.micro_batch * req.grad_accum * req.gpus * run.cfg.ctx,
                        eval_every=req.eval_every, eval_batches=req.eval_batches,
                        final_eval_batches=req.final_eval_batches, eval_sequences_per_batch=req.micro_batch,
                        ctx=run.cfg.ctx,
                        checkpoint_every=req.checkpoint_every, checkpoint_gb_per_s=req.checkpoint_gb_per_s,
                        goodput=req.goodput)
    return run_time(run.tokens, formulas.training_flops(run.params, run.tokens), run.params,
                    count_params(run.cfg), rate_per_gpu * req.gpus, req.gpus, schedule)


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Costs:
    price: float | None
    price_source: str
    power: float | None
    power_source: str
    pue: float
    pue_source: str
    intensity: float
    intensity_source: str


def _costs(req: PlanRequest, device: Device | None) -> _Costs:
    name = device.name if device else (req.device_name or "this device")
    price, price_source = _or_default(
        req.price_per_gpu_hour, "--price-per-gpu-hour", device.price_usd_per_gpu_hour if device else None,
        f"as of {device.price_date}: {device.price_source}" if device else f"none for {name}: pass "
        "--price-per-gpu-hour")
    power, power_source = _or_default(req.power_w, "--power-w", device.tdp_w if device else None,
                                      f"{device.name} TDP: {device.tdp_source}" if device else "none: pass --power-w")
    pue, pue_source = _or_default(req.pue, "--pue", formulas.DEFAULT_PUE.value, formulas.DEFAULT_PUE.source)
    if req.carbon_intensity is not None:
        intensity, intensity_source = req.carbon_intensity, "--carbon-intensity"
    else:
        grid = grid_intensity(req.region)
        intensity, intensity_source = grid.kg_per_kwh, grid.source
    return _Costs(price, price_source, power, power_source, pue, pue_source, intensity, intensity_source)


def _sized(req: PlanRequest, law_file: FittedLaw, costs: _Costs, device_label: str, peak: float,
           measured: Measured | None) -> tuple[_Run, BudgetPlan | None]:
    """The run, and for a budget what it buys: the most compute whose billed GPU-hours fit it."""
    if not req.budget.given:
        tag = "compute" if req.compute is not None else "params"
        return _run_for(req, law_file, req.compute, tag), None
    hours, given = req.budget.billed_gpu_hours(costs.price, req.gpus, device_label)

    def billed(compute: float) -> float:
        run = _run_for(req, law_file, compute, "budget")
        return _time(req, run, peak * _mfu_for(req, measured, run)[0]).billed_gpu_hours

    guess = hours * formulas.SECONDS_PER_HOUR * peak * (req.mfu or formulas.DEFAULT_MFU.value)
    flops = compute_for_budget(hours, guess, billed)
    return _run_for(req, law_file, flops, "budget"), BudgetPlan(given, hours, flops)


def _inference(req: PlanRequest, law_file: FittedLaw, run: _Run, loss: float | None) -> InferencePlan | None:
    if req.inference_tokens is None:
        return None
    if req.law is None:
        raise UserError("--inference-tokens: the N and D that reach a loss most cheaply depend entirely on the "
                        "law; name it with --law (chinchilla, epoch, kaplan or a `scaling fit` law file)")
    if law_file.law is None:
        raise UserError(f"--inference-tokens: needs a law that predicts the loss L(N, D) to hold quality fixed; "
                        f"--law {req.law} ({law_file.form} fit) has none: use chinchilla, epoch, kaplan or a "
                        "chinchilla-form fit")
    return plan_inference(law_file.law.loss, run.params, run.tokens, req.inference_tokens, req.target_loss, loss)


def plan(req: PlanRequest) -> Plan:
    """Every figure of the plan, with the assumptions behind it."""
    _check(req)
    law_name = req.law or DEFAULT_LAW
    law_file, law_source = resolve_law(law_name)
    device = _device(req)
    label = device.name if device else (req.device_name or "custom")
    peak, peak_source = _peak(req, device)
    costs = _costs(req, device)
    measured = read_measured(req.measured_from) if req.measured_from is not None else None
    run, budget = _sized(req, law_file, costs, label, peak, measured)
    params, tokens, cfg = run.params, run.tokens, run.cfg
    flops = formulas.training_flops(params, tokens)
    mfu, mfu_source = _mfu_for(req, measured, run)
    time = _time(req, run, peak * mfu)
    billed = time.billed_gpu_hours
    energy = formulas.energy_kwh(billed, costs.power, costs.pue) if costs.power is not None else None

    device_memory = req.memory_gb if req.memory_gb is not None else (device.memory_gb if device else None)
    memory, fewest, fewest_how = _memory_plan(req, cfg, device_memory)

    loss, interval = law_file.predict_loss(params, tokens) if law_file.law is not None else (None, None)
    opt_n, opt_d = (float(x) for x in law_file.compute_optimal(flops))
    opt_loss, opt_interval = law_file.predict_loss(opt_n, opt_d) if law_file.law is not None else (None, None)
    return Plan(
        mode=run.mode, params=params, tokens=tokens, flops=flops,
        flops_with_attention=formulas.training_flops_with_attention(params, tokens, cfg, cfg.ctx),
        tokens_per_param=tokens / params, gpu=label, precision=req.precision,
        gpus=req.gpus, peak_flops_per_s=peak, mfu=mfu, achieved_flops_per_s=peak * mfu,
        gpu_hours=formulas.gpu_hours(flops, peak, mfu), wall_clock_hours=time.wall_clock_hours, time=time,
        price_usd_per_gpu_hour=costs.price,
        price_date=device.price_date if device and req.price_per_gpu_hour is None else None,
        cost_usd=formulas.cost_usd(billed, costs.price) if costs.price is not None else None,
        power_w=costs.power, pue=costs.pue, carbon_intensity_kg_per_kwh=costs.intensity, energy_kwh=energy,
        co2_kg=formulas.co2_kg(energy, costs.intensity) if energy is not None else None,
        shape=_shape_record(req, cfg), micro_batch=req.micro_batch, memory_gb_per_gpu=memory,
        min_gpus=fewest, min_gpus_how=fewest_how, law=PlanLaw(law_name, law_source, law_file.param_convention),
        predicted_loss=loss, predicted_loss_interval=interval,
        compute_optimal=ComputeOptimal(opt_n, opt_d, opt_d / opt_n, opt_loss, opt_interval),
        budget=budget, inference=_inference(req, law_file, run, loss),
        assumptions=Assumptions(peak=peak_source, mfu=mfu_source, price=costs.price_source,
                                power=costs.power_source, pue=costs.pue_source,
                                carbon_intensity=costs.intensity_source,
                                goodput=f"--goodput {req.goodput}" if req.goodput else f"none (1.0); {GOODPUT_HINT}"),
        prediction=PlanPrediction.of(law_file, params, tokens)
        if req.law is not None and isinstance(law_file.law, ChinchillaLaw) else None,
    )
