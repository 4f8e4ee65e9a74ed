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

from gptcore.config import GPT2_VOCAB, GPTConfig, count_params, shape_for_params
from gptcore.errors import UserError
from gptcore.hardware import PRECISIONS, Device, get_device
from scaling import formulas
from scaling.carbon import grid_intensity
from scaling.law import KAPLAN, PUBLISHED, FittedLaw, file_sha256
from scaling.memory import ZERO_STAGES, MemoryGB, min_gpus, training_memory

DEFAULT_GPU = "H100-SXM"
DEFAULT_GPUS = 8  # one node
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
    gpus: int = DEFAULT_GPUS
    mfu: float | None = None
    precision: str = "bf16"
    price_per_gpu_hour: float | None = None
    power_w: float | None = None
    pue: float | None = None
    carbon_intensity: float | None = None
    region: str | None = None
    law: str = "chinchilla"
    ctx: int = 1024
    micro_batch: int = 1
    n_layer: int | None = None
    d_model: int | None = None


# ----------------------------------------------------------------------------- inputs


def resolve_law(name_or_path: str) -> tuple[FittedLaw, str]:
    """A published law by name (chinchilla, epoch, kaplan) or a `scaling fit` law file, and its source."""
    key = name_or_path.lower()
    if key in PUBLISHED:
        return FittedLaw.of(PUBLISHED[key]), LAW_SOURCES[key]
    if key == "kaplan":
        return FittedLaw.of(KAPLAN), LAW_SOURCES[key]
    try:
        law_file = FittedLaw.load(name_or_path)
    except UserError as e:
        raise UserError(f"--law: {e}; use chinchilla, epoch, kaplan or a `scaling fit` law file") from None
    return law_file, f"law file {name_or_path} (sha256 {file_sha256(name_or_path)[:12]})"


def _check(req: PlanRequest) -> None:
    """One clear line for each input out of range, naming the flag and what it accepts."""
    if req.compute is not None and (req.params is not None or req.tokens is not None):
        raise UserError("--compute: give --compute alone, or --params (with or without --tokens), not both")
    if req.compute is None and req.params is None:
        raise UserError("--params: give --params N (and optionally --tokens D), or --compute C alone")
    if req.mfu is not None and not 0.0 < req.mfu <= 1.0:
        raise UserError(f"--mfu: must be a fraction in (0, 1], such as 0.4; got {req.mfu}")
    if req.precision not in PRECISIONS:
        raise UserError(f"--precision: must be one of {', '.join(PRECISIONS)}; got {req.precision!r}")
    if (req.n_layer is None) != (req.d_model is None):
        raise UserError("--n-layer/--d-model: give both, or neither to derive the shape from --params")
    positive = {"--gpus": req.gpus, "--ctx": req.ctx, "--micro-batch": req.micro_batch,
                "--peak-tflops": req.peak_tflops, "--power-w": req.power_w, "--memory-gb": req.memory_gb,
                "--n-layer": req.n_layer, "--d-model": req.d_model}
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


def _device(req: PlanRequest) -> Device | None:
    """The table's device, or None for a custom one described only by --peak-tflops."""
    if req.gpu is None and req.peak_tflops is not None:
        return None
    try:
        return get_device(req.gpu or DEFAULT_GPU)
    except UserError as e:
        raise UserError(f"--gpu: {e}") from None


def _shape(req: PlanRequest, params: float) -> tuple[GPTConfig, bool]:
    """The model shape for the memory and attention terms: given, or the trainer's rule for N."""
    if req.n_layer is None:
        return shape_for_params(params, ctx=req.ctx, convention="total"), True
    head_dim = 64 if req.d_model % 64 == 0 else 32 if req.d_model % 32 == 0 else req.d_model
    return GPTConfig(vocab_size=GPT2_VOCAB, ctx=req.ctx, n_layer=req.n_layer,
                     n_head=req.d_model // head_dim, d_model=req.d_model), False


# ----------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class PlanShape:
    """The model shape behind the memory and attention terms."""

    n_layer: int
    n_head: int
    d_model: int
    ctx: int
    vocab_size: int
    params_total: int
    derived_from_params: bool  # False when --n-layer/--d-model gave it


@dataclass(frozen=True)
class MemoryPlan:
    """GB per GPU: unsharded, under each ZeRO stage over the run's GPUs, and with activations recomputed."""

    unsharded: MemoryGB
    zero: dict[int, MemoryGB]  # ZeRO stage -> memory per GPU
    activations_recomputed: float
    device_memory_gb: float | None

    def to_json(self) -> dict:
        return {**self.unsharded.to_dict(), **{f"zero{s}": m.to_dict() for s, m in self.zero.items()},
                "activations_recomputed": self.activations_recomputed, "device_memory_gb": self.device_memory_gb}


@dataclass(frozen=True)
class PlanLaw:
    name: str
    source: str
    param_convention: str


@dataclass(frozen=True)
class ComputeOptimal:
    """The compute-optimal run for the same FLOPs under the law, and its predicted loss."""

    params: float
    tokens: float
    tokens_per_param: float
    predicted_loss: float
    predicted_loss_interval: list[float] | None


@dataclass(frozen=True)
class Assumptions:
    """Where each default-able figure came from: a flag, or the table or paper it was read from."""

    peak: str
    mfu: str
    price: str
    power: str
    pue: str
    carbon_intensity: str


@dataclass(frozen=True)
class Plan:
    """Every figure of a plan, with the assumptions behind it. None: unknown (no price, no power)."""

    mode: str  # compute | params | params+tokens: how the run was asked for
    params: float
    tokens: float
    flops: float
    flops_with_attention: float
    tokens_per_param: float
    gpu: str  # the table's name, or "custom" for a device given by --peak-tflops
    precision: str
    gpus: int
    peak_flops_per_s: float
    mfu: float
    achieved_flops_per_s: float
    gpu_hours: float
    wall_clock_hours: float
    price_usd_per_gpu_hour: float | None
    price_date: str | None
    cost_usd: float | None
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
    predicted_loss: float
    predicted_loss_interval: list[float] | None
    compute_optimal: ComputeOptimal
    assumptions: Assumptions

    def to_json(self) -> dict:
        """The JSON object `scaling plan --json` prints: the fields by name, nested as they are here."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, MemoryPlan) else \
                asdict(value) if is_dataclass(value) else value
        return out


# ----------------------------------------------------------------------------- the plan


def _memory_plan(req: PlanRequest, cfg: GPTConfig,
                 device_memory: float | None) -> tuple[MemoryPlan, int | None, str]:
    """Memory per GPU unsharded and under ZeRO-1/2/3 over the run's GPUs, and the fewest GPUs it fits on.

    Weights count the model the trainer would build from `cfg` (embeddings and head included). If the
    activations alone overflow the device, the fit is retried with full activation recomputation.
    """
    n_weights = count_params(cfg)
    memory = training_memory(n_weights, cfg, req.micro_batch, req.precision)
    recomputed = training_memory(n_weights, cfg, req.micro_batch, req.precision, recompute="full")
    table = MemoryPlan(memory, {s: memory.sharded(s, req.gpus) for s in ZERO_STAGES}, recomputed.activations,
                       device_memory)
    if device_memory is None:
        return table, None, "unknown device memory: pass --memory-gb"
    fewest = min_gpus(memory, device_memory)
    if fewest is not None:
        return table, fewest, "ZeRO-3, activations kept"
    fewest = min_gpus(recomputed, device_memory)
    if fewest is not None:
        return table, fewest, "ZeRO-3 with full activation recomputation"
    return table, None, f"does not fit at micro-batch {req.micro_batch} without tensor/pipeline parallelism"


def _size(req: PlanRequest, law) -> tuple[str, float, float]:
    """(mode, N, D): compute-optimal for --compute, or --params with --tokens or the law's optimum for N."""
    if req.compute is not None:
        n_opt, d_opt = law.compute_optimal(req.compute)
        mode, params, tokens = "compute", float(n_opt), float(d_opt)
    else:
        params = req.params
        mode = "params+tokens" if req.tokens is not None else "params"
        tokens = req.tokens if req.tokens is not None else float(law.optimal_tokens(params))
    if not (1 <= params <= MAX_PARAMS and tokens >= 1):
        flag = "--compute" if req.compute is not None else "--tokens" if req.tokens is not None and tokens < 1 \
            else "--params"
        raise UserError(f"{flag}: a run of {params:.3g} parameters on {tokens:.3g} tokens is outside what the "
                        f"planner takes: 1 to {MAX_PARAMS:.0e} parameters, at least 1 token")
    return mode, params, tokens


def _peak(req: PlanRequest, device: Device | None) -> tuple[float, str]:
    """The dense peak FLOP/s per device, and where it comes from."""
    if req.peak_tflops is not None:
        return req.peak_tflops * 1e12, "--peak-tflops"
    try:
        peak = device.peak_flops_per_s(req.precision)
    except UserError as e:
        raise UserError(f"--precision: {e}") from None
    return peak, f"{device.name} {req.precision} dense peak: {device.peak_source}"


def _or_default(given, flag: str, default, default_source: str):
    """(value, source): the flag's value when given, else the default and where it comes from."""
    return (given, flag) if given is not None else (default, default_source)


def plan(req: PlanRequest) -> Plan:
    """Every figure of the plan, with the assumptions behind it."""
    _check(req)
    law_file, law_source = resolve_law(req.law)
    law = law_file.law
    mode, params, tokens = _size(req, law)
    flops = formulas.training_flops(params, tokens)
    device = _device(req)
    cfg, derived = _shape(req, params)
    peak, peak_source = _peak(req, device)
    mfu, mfu_source = _or_default(req.mfu, "--mfu", formulas.DEFAULT_MFU.value, formulas.DEFAULT_MFU.source)
    gpu_hours = formulas.gpu_hours(flops, peak, mfu)

    price, price_source = _or_default(
        req.price_per_gpu_hour, "--price-per-gpu-hour", device.price_usd_per_gpu_hour if device else None,
        f"as of {device.price_date}: {device.price_source}" if device else "none: pass --price-per-gpu-hour")
    power, power_source = _or_default(req.power_w, "--power-w", device.tdp_w if device else None,
                                      f"{device.name} TDP: {device.tdp_source}" if device else "none: pass --power-w")
    pue, pue_source = _or_default(req.pue, "--pue", formulas.DEFAULT_PUE.value, formulas.DEFAULT_PUE.source)
    if req.carbon_intensity is not None:
        intensity, intensity_source = req.carbon_intensity, "--carbon-intensity"
    else:
        grid = grid_intensity(req.region)
        intensity, intensity_source = grid.kg_per_kwh, grid.source
    energy = formulas.energy_kwh(gpu_hours, power, pue) if power is not None else None

    device_memory = req.memory_gb if req.memory_gb is not None else (device.memory_gb if device else None)
    memory, fewest, fewest_how = _memory_plan(req, cfg, device_memory)

    loss, interval = law_file.predict_loss(params, tokens)
    opt_n, opt_d = (float(x) for x in law.compute_optimal(flops))
    opt_loss, opt_interval = law_file.predict_loss(opt_n, opt_d)
    return Plan(
        mode=mode, params=params, tokens=tokens, flops=flops,
        flops_with_attention=formulas.training_flops_with_attention(params, tokens, cfg, req.ctx),
        tokens_per_param=tokens / params, gpu=device.name if device else "custom", precision=req.precision,
        gpus=req.gpus, peak_flops_per_s=peak, mfu=mfu, achieved_flops_per_s=peak * mfu, gpu_hours=gpu_hours,
        wall_clock_hours=formulas.wall_clock_hours(gpu_hours, req.gpus), price_usd_per_gpu_hour=price,
        price_date=device.price_date if device and req.price_per_gpu_hour is None else None,
        cost_usd=formulas.cost_usd(gpu_hours, price) if price is not None else None,
        power_w=power, pue=pue, carbon_intensity_kg_per_kwh=intensity, energy_kwh=energy,
        co2_kg=formulas.co2_kg(energy, intensity) if energy is not None else None,
        shape=PlanShape(cfg.n_layer, cfg.n_head, cfg.d_model, cfg.ctx, cfg.vocab_size, count_params(cfg), derived),
        micro_batch=req.micro_batch, memory_gb_per_gpu=memory, min_gpus=fewest, min_gpus_how=fewest_how,
        law=PlanLaw(req.law, law_source, law_file.param_convention),
        predicted_loss=loss, predicted_loss_interval=interval,
        compute_optimal=ComputeOptimal(opt_n, opt_d, opt_d / opt_n, opt_loss, opt_interval),
        assumptions=Assumptions(peak=peak_source, mfu=mfu_source, price=price_source, power=power_source,
                                pue=pue_source, carbon_intensity=intensity_source),
    )
