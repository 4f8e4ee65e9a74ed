"""Device peaks: the hardware table for accelerators, and a measured (cached) matmul peak for CPUs.

The table (hardware.toml beside this file) gives dense peak FLOP/s per precision, memory, TDP and a dated
price for each accelerator; it serves the trainer's MFU and the planner's estimates. CPUs are not in it:
their peak depends on cores, threads and vector units, so it is measured, once per CPU model, thread count
and torch version, and cached in ~/.cache/scaling. Torch is imported only by the functions that measure,
so the planner reads the table without it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json, cache_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TABLE_PATH = Path(__file__).with_name("hardware.toml")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class Device:
    name: str
    peak_tflops: dict[str, float]  # dense, no sparsity, per precision
    memory_gb: float
    price_usd_per_gpu_hour: float
    price_date: str
    price_source: str
    peak_source: str
    tdp_w: float | None = None  # None where the vendor publishes no figure
    tdp_source: str = ""
    aliases: tuple[str, ...] = ()

    def peak_flops_per_s(self, precision: str) -> float:
        if precision not in self.peak_tflops:
            raise UserError(
                f"{self.name} has no {precision} peak in the hardware table; "
                f"it lists {', '.join(self.peak_tflops)}"
            )
        return self.peak_tflops[precision] * 1e12


@cache
def devices() -> dict[str, Device]:
    """All devices in the table, keyed by lower-case name."""
    raw = tomllib.loads(TABLE_PATH.read_text())
    out = {}
    for name, row in raw["device"].items():
        out[name.lower()] = Device(name=name, aliases=tuple(row.pop("aliases", ())), **row)
    return out


def get_device(name: str) -> Device:
    """Look a device up by name or alias, case-insensitively."""
    key = name.lower()
    table = devices()
    if key in table:
        return table[key]
    for dev in table.values():
        if key in (a.lower() for a in dev.aliases):
            return dev
    raise UserError(f"unknown GPU {name!r}; choose one of: {', '.join(d.name for d in table.values())}")


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z0-9]+", text.lower()))


def _contains(words: tuple[str, ...], part: tuple[str, ...]) -> bool:
    return any(words[i : i + len(part)] == part for i in range(len(words) - len(part) + 1))


def match_torch_device_name(torch_name: str) -> Device | None:
    """The table row for a name such as torch.cuda.get_device_name() returns, or None.

    Matches whole words, so "NVIDIA L40S" is not taken for an L4 nor "A100" for an A10G; the longest
    matching name or alias wins ("NVIDIA H100 PCIe" is the PCIe card, "NVIDIA H100 80GB HBM3" the SXM).
    """
    words = _words(torch_name)
    best = None
    for dev in devices().values():
        for cand in (dev.name, *dev.aliases):
            part = _words(cand)
            if part and _contains(words, part) and (best is None or len(part) > best[0]):
                best = (len(part), dev)
    return best[1] if best else None


# ----------------------------------------------------------------------------- peaks of this machine


def measure_matmul_peaks(n: int = 1024, seconds: float = 1.0) -> dict[str, float]:
    """This CPU's matmul throughput in FLOP/s, fp32 and bf16: the best n x n torch.mm of each over about
    `seconds`, the two alternating so that both see the same load on a shared machine."""
    import torch

    gen = torch.Generator().manual_seed(0)  # never the global RNG: a training run's stream must not move
    a = {"fp32": torch.randn(n, n, generator=gen), "bf16": torch.randn(n, n, generator=gen).bfloat16()}
    best = dict.fromkeys(a, 0.0)
    for m in a.values():  # warm the kernels up
        torch.mm(m, m)
    deadline = time.perf_counter() + seconds
    while not all(best.values()) or time.perf_counter() < deadline:
        for precision, m in a.items():
            t0 = time.perf_counter()
            torch.mm(m, m)
            best[precision] = max(best[precision], 2 * n**3 / (time.perf_counter() - t0))
    return best


def cpu_model_name() -> str:
    """This CPU's model, e.g. "AMD EPYC" or "Intel(R) Xeon(R) ...": the peak cache's key, because one home
    directory (a cluster's NFS home) serves nodes of different CPUs, and platform.processor() is "" on Linux."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_matmul_peak(precision: str, at_least: float = 0.0) -> float:
    """The measured CPU matmul peak (FLOP/s) for fp32 or bf16, measured once per CPU/threads/torch and cached.

    A measurement taken while other jobs load the machine comes out low; `at_least`, a rate a run has
    achieved, exposes that: the peak is measured again, and the cache keeps the best of its measurements
    and that rate, so an MFU above 1 is never reported.
    """
    import torch

    key = f"{cpu_model_name()}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}"
    path = cache_dir() / "cpu_matmul_peak.json"
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    old = cache.get(key) if isinstance(cache.get(key), dict) else {}
    if old.get(precision, 0.0) <= 0 or old[precision] < at_least:
        fresh = measure_matmul_peaks()
        cache[key] = {p: max(v, old.get(p, 0.0)) for p, v in fresh.items()}
        cache[key][precision] = max(cache[key][precision], at_least)
        try:
            atomic_write_json(path, cache)
        except OSError:
            pass  # a read-only home only costs a re-measurement next time
    return float(cache[key][precision])


def peak_flops_per_s(device, precision: str) -> float | None:
    """Dense peak FLOP/s of the torch.device `device` at `precision`: the table for GPUs, a measurement
    for CPUs, None for anything else (or a GPU the table does not know)."""
    if device.type == "cuda":
        import torch

        dev = match_torch_device_name(torch.cuda.get_device_name(device))
        if dev is None or precision not in dev.peak_tflops:
            return None
        return dev.peak_flops_per_s(precision)
    if device.type == "cpu":
        return cpu_matmul_peak(precision)
    return None
