"""Which data parallelism a run takes, from the planner's memory model: DDP when the replicated states fit
the device, FSDP (ZeRO-3: weights, gradients and Adam's state sharded over the ranks) when they do not.

`scaling train --parallel auto` and `scaling launch` both decide here, so the plan and the run agree. No
torch here: the caller measures the device (its memory in GB, None for a CPU, whose memory the planner
does not model) and passes the unsharded memory per GPU (scaling.memory.training_memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from gptcore.errors import UserError
from scaling.memory import MemoryGB, min_gpus

CHOICES = ("auto", "ddp", "fsdp")


@dataclass(frozen=True)
class ParallelChoice:
    """The parallelism, why, and what it needs: GB per GPU at `gpus` ranks and the fewest GPUs it fits on
    (None: unknown device memory, or it fits on no number of GPUs)."""

    parallel: str  # ddp | fsdp
    reason: str
    gpus: int
    memory_per_gpu_gb: float
    device_memory_gb: float | None
    fewest_gpus: int | None
    fsdp_fewest_gpus: int | None  # the fewest GPUs FSDP fits on, whichever was chosen

    @property
    def fits(self) -> bool:
        return self.device_memory_gb is None or self.memory_per_gpu_gb <= self.device_memory_gb

    def to_json(self) -> dict:
        return {"parallel": self.parallel, "reason": self.reason, "gpus": self.gpus,
                "memory_per_gpu_gb": self.memory_per_gpu_gb, "device_memory_gb": self.device_memory_gb,
                "fewest_gpus": self.fewest_gpus, "fsdp_fewest_gpus": self.fsdp_fewest_gpus,
                "fits": self.fits}


def choose(requested: str, unsharded: MemoryGB, device_memory_gb: float | None, gpus: int) -> ParallelChoice:
    """auto: FSDP when the replicated (unsharded) memory exceeds the device and there are 2+ GPUs to shard
    over, else DDP; on a device of unknown memory (a CPU) DDP. ddp and fsdp are taken as asked."""
    if requested not in CHOICES:
        raise UserError(f"--parallel: choose one of {', '.join(CHOICES)}, got {requested!r}")
    if gpus < 1:
        raise UserError(f"the run needs at least 1 process, got {gpus}")
    replicated = unsharded.total
    fits_replicated = device_memory_gb is None or replicated <= device_memory_gb
    ddp_fewest = (1 if fits_replicated else None) if device_memory_gb is not None else None
    fsdp_fewest = min_gpus(unsharded, device_memory_gb) if device_memory_gb is not None else None
    fsdp_gb = unsharded.sharded(3, gpus).total
    dev = "unknown (a CPU: DDP unless --parallel fsdp)" if device_memory_gb is None \
        else f"{device_memory_gb:.3g} GB"
    if requested == "auto":
        if fits_replicated or gpus < 2:
            why = (f"replicated states and activations need {replicated:.3g} GB per GPU, device memory {dev}"
                   + ("" if fits_replicated else "; one process cannot shard"))
            return ParallelChoice("ddp", "auto: " + why, gpus, replicated, device_memory_gb, ddp_fewest, fsdp_fewest)
        why = (f"replicated states need {replicated:.3g} GB per GPU, more than the {dev} device; "
               f"sharded over {gpus}: {fsdp_gb:.3g} GB")
        return ParallelChoice("fsdp", "auto: " + why, gpus, fsdp_gb, device_memory_gb, fsdp_fewest, fsdp_fewest)
    if requested == "ddp":
        return ParallelChoice("ddp", f"asked for: replicated, {replicated:.3g} GB per GPU", gpus, replicated,
                              device_memory_gb, ddp_fewest, fsdp_fewest)
    return ParallelChoice("fsdp", f"asked for: sharded over {gpus}, {fsdp_gb:.3g} GB per GPU", gpus, fsdp_gb,
                          device_memory_gb, fsdp_fewest, fsdp_fewest)


def refusal(choice: ParallelChoice) -> str | None:
    """The one-line reason a choice cannot run, or None when it fits."""
    if choice.fits:
        return None
    fewest = choice.fsdp_fewest_gpus
    fsdp = (f"FSDP fits on {fewest} GPUs or more" if fewest is not None
            else "not even FSDP fits: it needs activation recomputation or model parallelism")
    if choice.parallel == "ddp":
        return (f"ddp needs {choice.memory_per_gpu_gb:.3g} GB per GPU, more than the device's "
                f"{choice.device_memory_gb:.3g} GB; {fsdp}")
    return (f"fsdp over {choice.gpus} GPUs needs {choice.memory_per_gpu_gb:.3g} GB per GPU, more than the "
            f"device's {choice.device_memory_gb:.3g} GB; {fsdp}")
