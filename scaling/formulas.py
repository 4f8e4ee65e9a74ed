"""The planner's arithmetic: training FLOPs, GPU-hours, wall clock, cost, energy and CO2, one formula each.

Each function is the one place its formula lives; the default assumptions sit beside them with sources.
Pure Python, no numpy: these run on every `scaling plan` call.
"""

from __future__ import annotations

from dataclasses import dataclass

from gptcore.config import GPTConfig, attention_flops_per_token, flops_per_token_6n

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Assumption:
    """A default value the planner uses unless told otherwise, with where it comes from."""

    value: float
    source: str


# Llama 3 (Dubey et al. 2024, "The Llama 3 Herd of Models", Table 4): 38-43% BF16 MFU training 405B on
# 8K-16K H100s. PaLM (Chowdhery et al. 2022, Table 3) reports 46.2%. 0.40 is the round figure between.
DEFAULT_MFU = Assumption(0.40, "Llama 3 paper (Dubey et al. 2024) Table 4: 38-43% BF16 MFU on 16K H100s")
# Google's fleet-wide trailing-twelve-month PUE, 2023 (Google 2024 Environmental Report). An average
# enterprise data centre is nearer 1.58 (Uptime Institute Global Data Center Survey 2023).
DEFAULT_PUE = Assumption(1.10, "Google 2024 Environmental Report: fleet-wide PUE 1.10 (2023)")


def training_flops(params: float, tokens: float) -> float:
    """C = 6ND (Kaplan et al. 2020 §2.1): 2 FLOPs per parameter per token forward, 4 backward."""
    return flops_per_token_6n(params) * tokens


def training_flops_with_attention(params: float, tokens: float, cfg: GPTConfig, ctx: int) -> float:
    """6ND plus the attention-score FLOPs 12*L*H*Q*T per token (PaLM, Chowdhery et al. 2022, appendix B)."""
    return training_flops(params, tokens) + attention_flops_per_token(cfg, ctx) * tokens


def gpu_hours(flops: float, peak_flops_per_s: float, mfu: float) -> float:
    """gpu_hours = flops / (peak * mfu * 3600): MFU as defined in PaLM appendix B (achieved / peak)."""
    return flops / (peak_flops_per_s * mfu * SECONDS_PER_HOUR)


def wall_clock_hours(gpu_hours_total: float, gpus: int) -> float:
    """wall_clock_hours = gpu_hours / gpus: perfect data-parallel scaling, which MFU already discounts."""
    return gpu_hours_total / gpus


def cost_usd(gpu_hours_total: float, price_usd_per_gpu_hour: float) -> float:
    """cost = gpu_hours * $/GPU-hour (on-demand list price; no egress, storage or failed runs)."""
    return gpu_hours_total * price_usd_per_gpu_hour


def energy_kwh(gpu_hours_total: float, power_w: float, pue: float) -> float:
    """energy_kwh = gpu_hours * power_kw * PUE (Patterson et al. 2021, "Carbon Emissions and Large Neural
    Network Training", eq. 1, with the accelerator's power standing for the server's)."""
    return gpu_hours_total * (power_w / 1000.0) * pue


def co2_kg(energy_kwh_total: float, carbon_intensity_kg_per_kwh: float) -> float:
    """co2_kg = energy_kwh * grid carbon intensity (Patterson et al. 2021, eq. 2: tCO2e = MWh * tCO2e/MWh)."""
    return energy_kwh_total * carbon_intensity_kg_per_kwh
