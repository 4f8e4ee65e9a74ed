"""Data parallelism for the trainer, applied from outside the model (torchtitan's style): DDP, or FSDP2.

- "ddp": every rank holds the whole model, its gradients and Adam's state; gradients are all-reduced
  (torch.nn.parallel.DistributedDataParallel). Checkpoints are one file, ckpt.pt, written by rank 0.
- "fsdp": `torch.distributed.fsdp.fully_shard` on each block and on the embeddings, then on the whole
  model (whose own group is the final LayerNorm and the head). Weights, gradients and Adam's state are
  sharded over the ranks (ZeRO-3, Rajbhandari et al. 2020) and each group is all-gathered just before it
  runs. A tied token table is also the head's weight, so it stays in the root group with the head.
  Under bf16 the gathered weights are bf16 (MixedPrecisionPolicy) and gradients are reduced in fp32; the
  trainer's autocast stays on, so LayerNorm and the softmax run in fp32 as they do under DDP.
  Checkpoints are sharded with torch.distributed.checkpoint (DCP): every rank writes its shards.

A sharded checkpoint is a directory DIR/dcp-step-NNNNNNNN: DCP's files (.metadata and one file a rank)
and state.pt, the trainer's TrainState without weights (step, losses, every rank's RNG, configs). It is
written as DIR/.dcp-step-NNNNNNNN.tmp and renamed once complete, so a kill leaves the previous checkpoint
or this one, never a torn one; the newest complete directory is the one a resume loads, and older ones are
deleted once a newer one is in place. `consolidate` turns one into the single-file ckpt.pt that
`scaling generate` and --init-from read (the trainer does it itself when an FSDP run finishes).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from gptcore.errors import UserError

PARALLEL = ("auto", "ddp", "fsdp")  # what --parallel takes; "auto" is resolved before the trainer runs
DCP_PREFIX = "dcp-step-"
STATE_FILE = "state.pt"  # inside a sharded checkpoint: the TrainState without weights
_COMPLETE = re.compile(rf"^{DCP_PREFIX}(\d+)$")


def describe(parallel: str, world: int) -> str:
    """What a run records as its parallelism: "none" for one process, else ddp or fsdp."""
    return "none" if world == 1 and parallel != "fsdp" else parallel


def check(parallel: str, world: int) -> None:
    """Refuse FSDP in a single process: there is nothing to shard over."""
    if parallel not in ("ddp", "fsdp"):
        raise UserError(f"--parallel: choose auto, ddp or fsdp, got {parallel!r}")
    if parallel == "fsdp" and world < 2:
        raise UserError("--parallel fsdp needs a distributed launch of 2 or more processes "
                        "(torchrun --nproc-per-node N -m scaling train ..., or scaling launch --executor "
                        "torchrun|slurm); a single process trains unsharded")


# ----------------------------------------------------------------------------- wrapping the model


def shard(model: torch.nn.Module, device: torch.device, bf16: bool) -> None:
    """FSDP2 on gptcore.model.GPT in place: each block, the embeddings, then the root (head, ln_f)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    embeddings = [model.wpe] if model.cfg.tie_weights else [model.wte, model.wpe]
    fully_shard(embeddings, mesh=mesh, mp_policy=mp)
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        # The last block's weights are needed again at once by the backward pass: keep them gathered.
        fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=i < last)
    fully_shard(model, mesh=mesh, mp_policy=mp)


def wrap(model: torch.nn.Module, parallel: str, device: torch.device, bf16: bool, world: int,
         compiled: torch.nn.Module | None = None) -> torch.nn.Module:
    """The module the training step calls: `model` sharded in place (fsdp), or DDP around it (or around
    its compiled form), or the model itself in a single process."""
    if parallel == "fsdp":
        shard(model, device, bf16)
        return torch.compile(model) if compiled is not None else model
    inner = compiled if compiled is not None else model
    if world == 1:
        return inner
    return torch.nn.parallel.DistributedDataParallel(
        inner, device_ids=[device.index] if device.type == "cuda" else None)


def no_sync(model: torch.nn.Module, parallel: str, world: int, last: bool):
    """A context for one micro-step: gradients are synchronised only on the last of a step's micro-steps."""
    import contextlib

    if world == 1 or last:
        return contextlib.nullcontext()
    if parallel == "fsdp":
        return _fsdp_no_sync(model)
    return model.no_sync()


class _fsdp_no_sync:  # noqa: N801 (used as a context manager, like DDP's no_sync)
    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.model.set_requires_gradient_sync(False)

    def __exit__(self, *exc):
        self.model.set_requires_gradient_sync(True)


def local_value(x) -> torch.Tensor:
    """A plain tensor of `x`, which is a DTensor under FSDP (the gradient norm is one)."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x


# ----------------------------------------------------------------------------- sharded checkpoints


def sharded_checkpoints(run_path: Path) -> list[tuple[int, Path]]:
    """The complete sharded checkpoints in a run directory, oldest first, as (step, path)."""
    if not run_path.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_path.iterdir() if (m := _COMPLETE.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest_sharded(run_path: Path) -> Path | None:
    found = sharded_checkpoints(run_path)
    return found[-1][1] if found else None


def save_sharded(run_path: Path, step: int, model, optimizer, write_state, main: bool) -> Path:
    """Write this step's sharded checkpoint (every rank takes part) and make it the latest, atomically.

    `write_state(path)` is called on rank 0 to write the weightless TrainState into the new directory.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = run_path / f"{DCP_PREFIX}{step:08d}"
    tmp = run_path / f".{final.name}.tmp"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while it saved
        tmp.mkdir(parents=True)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=tmp)
    if main:
        write_state(tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)  # only if this very step was saved before (a resumed stop)
        tmp.rename(final)
        for _, older in sharded_checkpoints(run_path):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)
    dist.barrier()
    return final


def load_sharded(path: Path, model, optimizer) -> None:
    """Load a sharded checkpoint into the live (already sharded) model and optimizer, on every rank."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optimizer": optim_sd}
    try:
        dcp.load(state, checkpoint_id=path)
    except Exception as e:  # DCP raises its own CheckpointException on a torn or foreign directory
        raise UserError(f"{path} is not a complete sharded checkpoint of this model ({type(e).__name__})") \
            from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_model_state(model) -> dict:
    """The whole model's weights gathered onto rank 0's CPU (every rank takes part; others get {})."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def consolidate(sharded: Path, model_config: dict) -> dict:
    """The weights of a sharded checkpoint, read in this one process (no process group needed)."""
    import torch.distributed.checkpoint as dcp

    from gptcore.config import GPTConfig
    from gptcore.model import GPT

    with torch.device("meta"):
        skeleton = GPT(GPTConfig.from_dict(model_config))
    weights = {k: torch.empty_like(v, device="cpu") for k, v in skeleton.state_dict().items()}
    if skeleton.cfg.tie_weights:
        weights.pop("lm_head.weight", None)  # one tensor under two names: saved once, as wte.weight
    try:
        dcp.load({"model": weights}, checkpoint_id=sharded, no_dist=True)
    except Exception as e:  # noqa: BLE001 (DCP's CheckpointException wraps the reason)
        raise UserError(f"{sharded} is not a complete sharded checkpoint ({type(e).__name__})") from None
    if skeleton.cfg.tie_weights:
        weights["lm_head.weight"] = weights["wte.weight"]
    return weights
