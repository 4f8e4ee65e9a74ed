"""The trainer: `train(TrainConfig) -> summary dict`, resumable from its output directory.

An output directory holds config.json (the run's configs and their hash), ckpt.pt (the latest checkpoint),
metrics.jsonl (one row per step, eval rows with val loss and a sample) and, once finished, summary.json.
Re-running the same config on the same directory resumes or, if finished, returns the stored summary; a
different config there is an error. Batches derive from (seed, step), so a resume needs only the step.
Under torchrun every process trains on its slice of each step's batch (DDP); rank 0 writes the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from gptcore import checkpoint
from gptcore.config import GPTConfig, count_non_embedding_params, count_params
from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json, atomic_write_text
from gptcore.model import GPT, cpu_matmul_peak, estimate_mfu, flops_per_token, peak_flops_per_s
from gptcore.schedule import SCHEDULES, lr_at

# Fields that do not change what is computed: they may differ between a run and its resume.
NOT_HASHED = ("out", "device", "threads", "compile", "checkpoint_every", "progress")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. `batch_size` is sequences per process per micro-step; a step is
    batch_size x grad_accum x world_size sequences of model.ctx tokens."""

    model: GPTConfig
    data: str
    out: str
    batch_size: int = 16
    grad_accum: int = 1
    tokens: int | None = None  # budget in tokens (rounded up to whole steps), or ...
    max_steps: int | None = None  # ... in steps; exactly one of the two
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100  # steps
    schedule: str = "cosine"
    wsd_decay_fraction: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables
    eval_every: int = 100  # steps; the last step always evaluates
    eval_batches: int = 10
    sample_tokens: int = 32  # generated at each eval; 0 disables
    checkpoint_every: int | None = None  # steps; None: at every eval
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"  # auto | fp32 | bf16
    compile: bool = False
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.tokens is None) == (self.max_steps is None):
            raise UserError("give exactly one budget: tokens or max_steps")
        for name in ("tokens", "max_steps", "batch_size", "grad_accum", "eval_every", "eval_batches",
                     "checkpoint_every", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"{name} must be positive, got {value}")
        for name in ("warmup", "sample_tokens"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must not be negative, got {getattr(self, name)}")
        ranges = {  # written so that NaN fails every one
            "lr": (0 < self.lr < math.inf, "a finite number > 0"),
            "min_lr_ratio": (0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            "wsd_decay_fraction": (0 <= self.wsd_decay_fraction <= 1, "in [0, 1]"),
            "weight_decay": (0 <= self.weight_decay < math.inf, "a finite number >= 0"),
            "grad_clip": (0 <= self.grad_clip < math.inf, "a finite number >= 0 (0: no clipping)"),
            "beta1": (0 <= self.beta1 < 1, "in [0, 1)"),
            "beta2": (0 <= self.beta2 < 1, "in [0, 1)"),
        }
        for name, (ok, allowed) in ranges.items():
            if not ok:
                raise UserError(f"{name} must be {allowed}, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.dtype not in ("auto", "fp32", "bf16"):
            raise UserError(f"unknown dtype {self.dtype!r}; choose auto, fp32 or bf16")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise UserError(f"unknown device {self.device!r}; choose auto, cpu, cuda or mps")

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        """Hash of everything that changes the computation (not NOT_HASHED), data path resolved."""
        d = {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}
        d["data"] = str(Path(self.data).resolve())
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- set-up helpers


@dataclass
class Dist:
    """Where this process sits in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """Join the torchrun process group if torchrun started us (NCCL on CUDA, gloo otherwise)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but torch sees no CUDA GPU")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps asked for, but torch sees no MPS device")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> str:
    """auto: bf16 autocast on CUDA GPUs that support it; on a CPU only if its measured bf16 matmul peak
    beats fp32 by 1.2x (the cached measurement of gptcore.model.cpu_matmul_peak). Measured on 2 vCPUs:
    a Zen 4 EPYC's bf16 matmul runs at 2.7x its fp32 (auto takes bf16); a Xeon whose hypervisor hides AMX
    ran bf16 at 0.6-0.8x fp32 (auto keeps fp32)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_matmul_peak("bf16") > 1.2 * cpu_matmul_peak("fp32") else "fp32"
    return "fp32"


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (nanoGPT's rule: every parameter of dim >= 2, the
    embeddings included; biases and LayerNorm gains are not decayed). Fused where torch has a kernel."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def total_steps_for(cfg: TrainConfig, world: int) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    tokens_per_step = cfg.batch_size * cfg.grad_accum * world * cfg.model.ctx
    return max(1, math.ceil(cfg.tokens / tokens_per_step))


# ----------------------------------------------------------------------------- batches


def batch_starts(seed: int, step: int, n_rows: int, batch_size: int, n_tokens: int, ctx: int) -> np.ndarray:
    """Start offsets (n_rows, batch_size) of step `step`'s sequences: a pure function of (seed, step),

    so a resumed run draws exactly the batches the uninterrupted one would have.
    """
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - ctx, size=(n_rows, batch_size))


def eval_starts(n_tokens: int, ctx: int, n_sequences: int) -> np.ndarray:
    """Fixed, evenly spaced validation sequences: the same for every run on this data and ctx."""
    return np.linspace(0, n_tokens - ctx - 1, n_sequences).astype(np.int64)


def get_batch(tokens: np.ndarray, starts: np.ndarray, ctx: int, device: torch.device):
    idx = starts.reshape(-1, 1) + np.arange(ctx + 1)
    block = torch.from_numpy(tokens[idx].astype(np.int64))
    if device.type == "cuda":
        block = block.pin_memory().to(device, non_blocking=True)
    else:
        block = block.to(device)
    return block[:, :-1], block[:, 1:]


# ----------------------------------------------------------------------------- the run directory


def _read_json_object(path: Path, key: str) -> dict | None:
    """The JSON object in `path` if it has `key`; None if the file is torn, empty, foreign or a directory."""
    try:
        obj = json.loads(path.read_text())
    except (IsADirectoryError, ValueError):
        return None
    return obj if isinstance(obj, dict) and key in obj else None


class RunDir:
    """The files of one run: config.json, ckpt.pt, metrics.jsonl, summary.json."""

    def __init__(self, out: str | Path):
        self.path = Path(out)
        self.config = self.path / "config.json"
        self.ckpt = self.path / checkpoint.FILENAME
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"

    def claim(self, cfg: TrainConfig) -> None:
        """Record this run's config, or check that it is the one already recorded here."""
        h = cfg.config_hash()
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path} is a file, not a run directory; choose another --out")
        if self.config.exists():
            recorded = _read_json_object(self.config, "config_hash")
            if recorded is None:
                raise UserError(
                    f"{self.config} is not a config this trainer wrote; is --out a scaling run directory?")
            old = recorded["config_hash"]
            if old != h:
                raise UserError(
                    f"{self.path} holds a run with a different config (hash {old}, this one {h}); "
                    "use another --out or the same settings"
                )
            return
        if self.path.exists() and any(self.path.iterdir()):
            raise UserError(f"{self.path} exists and is not a scaling run directory; choose another --out")
        atomic_write_json(self.config, {"config_hash": h, "train": cfg.to_dict()})

    def truncate_metrics(self, step: int) -> None:
        """Drop rows after `step`, and torn ones (written by a run killed after its last checkpoint)."""
        if not self.metrics.exists():
            return
        keep = []
        for line in self.metrics.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                pass  # a line torn by a kill in mid-write
        atomic_write_text(self.metrics, "".join(line + "\n" for line in keep))


# ----------------------------------------------------------------------------- training


@dataclass
class Throughput:
    """Steady-state tokens/s: every process's steps after its first 3 (warm-up, compilation)."""

    tokens: int = 0
    seconds: float = 0.0
    steps_this_process: int = 0
    first_steps: list = field(default_factory=list)  # (tokens, seconds) of the first 3, a fallback

    def add(self, tokens: int, seconds: float) -> None:
        self.steps_this_process += 1
        if self.steps_this_process <= 3:
            self.first_steps.append((tokens, seconds))
        else:
            self.tokens += tokens
            self.seconds += seconds

    def tokens_per_s(self) -> float | None:
        if self.seconds > 0:
            return self.tokens / self.seconds
        secs = sum(s for _, s in self.first_steps)
        return sum(t for t, _ in self.first_steps) / secs if secs > 0 else None


def _all_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x = x / d.world
    return x


@torch.no_grad()
def evaluate(model, val: np.ndarray, cfg: TrainConfig, device, autocast, d: Dist) -> float:
    """Mean validation loss over the fixed eval sequences, split across ranks."""
    ctx = cfg.model.ctx
    starts = eval_starts(len(val), ctx, cfg.eval_batches * cfg.batch_size).reshape(-1, cfg.batch_size)
    acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    total = torch.zeros(2, dtype=acc, device=device)
    model.eval()
    for rows in starts[d.rank :: d.world]:
        x, y = get_batch(val, rows, ctx, device)
        with autocast():
            total[0] += model(x, y).to(acc) * len(rows)
        total[1] += len(rows)
    model.train()
    if d.world > 1:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return (total[0] / total[1]).item()


def sample_text(model: GPT, tokenizer, cfg: TrainConfig, step: int, device, autocast) -> str:
    """A short sample from end-of-text, as the seed lecture prints at evaluation (its own RNG stream)."""
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
    start = torch.full((1, 1), tokenizer.eot_id, dtype=torch.long, device=device)
    model.eval()
    with autocast():
        out = model.generate(start, cfg.sample_tokens, temperature=0.8, top_k=50, generator=gen)
    model.train()
    return tokenizer.decode(out[0, 1:].tolist())


def _vocab_tensor(tokenizer) -> torch.Tensor | None:
    compact = getattr(tokenizer, "compact", None)
    return None if compact is None else torch.from_numpy(compact.gpt2_ids[2:].copy())


def train(cfg: TrainConfig, log=None) -> dict:
    """Train (or resume, or return the finished summary of) the run `cfg` describes. Returns the summary."""
    from gptcore.data import open_dataset

    dataset = open_dataset(cfg.data)
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    d = init_distributed(device.type)
    log = log or (lambda msg: print(msg, flush=True))
    say = log if d.main else (lambda msg: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    ctx, mcfg = cfg.model.ctx, cfg.model
    for split, arr in (("train", dataset.train), ("val", dataset.val)):
        if len(arr) < ctx + 2:
            raise UserError(f"ctx {ctx} is longer than the data's {split} split ({len(arr)} tokens)")
    if mcfg.vocab_size < dataset.vocab_size:
        raise UserError(f"model vocab_size {mcfg.vocab_size} is smaller than the data's {dataset.vocab_size}")

    # The dtype a run trains in is part of its computation: hash the resolved one, so a run started in fp32
    # is never resumed in bf16 on a machine where "auto" resolves otherwise.
    cfg = replace(cfg, dtype=resolve_dtype(cfg.dtype, device))
    run = RunDir(cfg.out)
    refusal = None
    if d.main:
        try:
            run.claim(cfg)
        except UserError as e:
            refusal = str(e)
    if d.world > 1:  # every rank must stop, not wait for rank 0 forever
        box = [refusal]
        dist.broadcast_object_list(box, src=0)
        refusal = box[0]
    if refusal:
        raise UserError(refusal)
    if run.summary.exists():
        summary = _read_json_object(run.summary, "status")
        if summary is None:
            raise UserError(f"{run.summary} is unreadable (torn or foreign); delete it and re-run: the run "
                            "resumes from its last checkpoint and writes it again")
        say(f"{run.path}: already finished ({summary['status']}); nothing to do")
        return summary

    dtype = cfg.dtype
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if dtype == "bf16" \
        else contextlib.nullcontext
    torch.manual_seed(cfg.seed)
    raw_model = GPT(mcfg).to(device)
    optimizer = make_optimizer(raw_model, cfg, device)
    total_steps = total_steps_for(cfg, d.world)
    tokens_per_step = cfg.batch_size * cfg.grad_accum * d.world * ctx
    step, thr = 0, Throughput()
    status, diverged_step, train_loss, val_loss = "completed", None, None, None
    if run.ckpt.exists():
        ck = checkpoint.load(run.ckpt, map_location=device)
        if ck.get("config_hash") != cfg.config_hash():
            raise UserError(f"{run.ckpt} belongs to a different config; use another --out")
        raw_model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        step, train_loss, val_loss = ck["step"], ck["train_loss"], ck["val_loss"]
        thr.tokens, thr.seconds = ck["steady_tokens"], ck["steady_seconds"]
        thr.first_steps = [tuple(x) for x in ck.get("first_steps", [])]  # older checkpoints lack it
        rngs = ck["rng"]
        checkpoint.set_rng_state(rngs[d.rank] if len(rngs) == d.world else rngs[0])
        say(f"resuming {run.path} at step {step}/{total_steps}")
    if d.main:  # rows a killed run logged after its last checkpoint (or before its first) go
        run.truncate_metrics(step)
    model = torch.compile(raw_model) if cfg.compile else raw_model
    if d.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    fpt = flops_per_token(mcfg)  # PaLM convention: 6N (head included) + attention
    peak = peak_flops_per_s(device, dtype)

    def mfu(tokens_per_s: float) -> float | None:
        """MFU of one device at the whole run's `tokens_per_s`. A CPU run that beats its cached peak shows
        the peak was measured under load: it is measured again (once), so no MFU comes out above 1."""
        nonlocal peak
        per_device = tokens_per_s / d.world
        if device.type == "cpu" and per_device * fpt > peak:
            peak = cpu_matmul_peak(dtype, at_least=per_device * fpt)
        return estimate_mfu(mcfg, per_device, peak)

    n_rows = d.world * cfg.grad_accum
    metrics = open(run.metrics, "a") if d.main else None  # noqa: SIM115 (closed in finally)
    bar = None
    if d.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, file=sys.stderr, unit="step", dynamic_ncols=True)

    def save_checkpoint() -> None:
        rngs = [checkpoint.rng_state()]
        if d.world > 1:
            gathered = [None] * d.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if d.main:
            checkpoint.save(run.ckpt, {
                "config_hash": cfg.config_hash(), "train_config": cfg.to_dict(),
                "model_config": mcfg.to_dict(),
                "step": step, "tokens": step * tokens_per_step, "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(), "rng": rngs, "vocab": _vocab_tensor(dataset.tokenizer),
                "steady_tokens": thr.tokens, "steady_seconds": thr.seconds, "first_steps": thr.first_steps,
                "train_loss": train_loss, "val_loss": val_loss,
            })

    try:
        while step < total_steps:
            t0 = time.perf_counter()
            lr = lr_at(step, total_steps, cfg.lr, cfg.warmup, cfg.schedule, cfg.min_lr_ratio,
                       cfg.wsd_decay_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = batch_starts(cfg.seed, step, n_rows, cfg.batch_size, len(dataset.train), ctx)
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                x, y = get_batch(dataset.train, rows[d.rank * cfg.grad_accum + micro], ctx, device)
                last = micro == cfg.grad_accum - 1
                sync = contextlib.nullcontext() if (d.world == 1 or last) else model.no_sync()
                with sync:
                    with autocast():
                        loss = model(x, y)
                    (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach()
            train_loss = _all_mean(loss_sum / cfg.grad_accum, d).item()
            if not math.isfinite(train_loss):
                status, diverged_step = "diverged", step + 1
                optimizer.zero_grad(set_to_none=True)
                say(f"step {step + 1}: loss is {train_loss}; run diverged")
                break
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip or float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            thr.add(tokens_per_step, seconds)
            step += 1
            row = {"step": step, "tokens": step * tokens_per_step, "flops": step * tokens_per_step * fpt,
                   "train_loss": train_loss, "lr": lr, "grad_norm": float(grad_norm),
                   "tokens_per_s": tokens_per_step / seconds,
                   "mfu": mfu(tokens_per_step / seconds)}
            if step % cfg.eval_every == 0 or step == total_steps:
                val_loss = evaluate(raw_model, dataset.val, cfg, device, autocast, d)
                row.update(val_loss=val_loss, val_ppl=math.exp(min(val_loss, 700.0)))
                if d.main and cfg.sample_tokens:
                    row["sample"] = sample_text(raw_model, dataset.tokenizer, cfg, step, device, autocast)
                msg = f"step {step}/{total_steps}: train loss {train_loss:.4f}, val loss {val_loss:.4f}"
                say(msg + (f"\n  sample: {row['sample']!r}" if "sample" in row else ""))
            if metrics is not None:
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{train_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(1)
            every = cfg.checkpoint_every or cfg.eval_every
            if step % every == 0 or step == total_steps:
                save_checkpoint()
    finally:
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.close()

    tokens_per_s = thr.tokens_per_s()
    summary = {
        "status": status,
        "diverged_step": diverged_step,
        "steps": step,
        "params": count_params(mcfg),
        "non_embedding_params": count_non_embedding_params(mcfg),
        "tokens": step * tokens_per_step,
        "flops": step * tokens_per_step * fpt,
        "flops_per_token": fpt,
        "final_train_loss": train_loss,
        "final_val_loss": val_loss,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu(tokens_per_s) if tokens_per_s else None,
        "device": str(device),
        "dtype": dtype,
        "world_size": d.world,
        "vocab_size": mcfg.vocab_size,
        "config_hash": cfg.config_hash(),
        "model": mcfg.to_dict(),
        "out": str(run.path),
    }
    if d.main:
        atomic_write_json(run.summary, summary)
    if d.world > 1:
        dist.barrier()
    return summary
