"""The trainer: `train(TrainConfig) -> TrainSummary`, resumable from its output directory.

An output directory holds config.json (the run's configs and their hash), ckpt.pt (the latest checkpoint,
a TrainState), metrics.jsonl (one row per step, eval rows with val loss and a sample) and, once finished,
summary.json (a TrainSummary). Re-running the same config on the same directory resumes or, if finished,
returns the stored summary; a different config there is an error. Batches derive from (seed, step), so a
resume needs only the step. Under torchrun every process trains on its slice of each step's batch, with
DDP or FSDP (gptcore.parallel); rank 0 writes the files, and under FSDP every rank writes its shards of the
checkpoint (dcp-step-N/, then ckpt.pt holds the consolidated weights once the run finishes).

Read top to bottom: set-up helpers, batches, the run directory, the state and the summary, evaluation, then
the Trainer (set-up and resume, one step, evaluate and log, finish) and `train`, which drives it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from gptcore import checkpoint, parallel
from gptcore.config import (
    GPTConfig,
    TrainConfig,
    count_non_embedding_params,
    count_params,
    flops_per_token_with_attention,
)
from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json, atomic_write_text, remove_stale_temps
from gptcore.hardware import cpu_matmul_peak, peak_flops_per_s
from gptcore.loggers import check_available, open_log
from gptcore.model import GPT, estimate_mfu
from gptcore.preemption import Preemption
from gptcore.pretrained import starting_weights
from gptcore.progress import progress_bar
from gptcore.schedule import lr_at

RESUMABLE = ("stopped", "preempted")  # statuses that write no summary.json: re-running resumes the run
OnEval = Callable[[int, float], object]  # (step, val loss) -> truthy to stop; may raise to stop too


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
    if device_type == "cuda":  # NCCL and FSDP's device mesh take the current device as this rank's
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    _JOINED.append(True)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


_JOINED: list[bool] = []  # set once this process has joined a process group


def close_distributed() -> None:
    """Leave the process group, if this process joined one: called by whoever started the job (the CLI, a
    torchrun rank, a SLURM task) once training is over."""
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> None:
    """End the process with `code`. One that joined a gloo group skips the interpreter's teardown (after
    flushing): gloo's worker threads may still be freeing a finished FSDP all-gather's tensors, which needs
    the GIL, and a thread that asks for it during finalization aborts the process (SIGABRT, "terminate
    called without an active exception") after the run has finished; seen in about 1 FSDP run in 8 here.
    The CLI's entry point calls it through scaling.cli.exit_process, which imports no torch."""
    if _JOINED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


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
    beats fp32 by 1.2x (the cached measurement of gptcore.hardware.cpu_matmul_peak). Measured on 2 vCPUs:
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


# ----------------------------------------------------------------------------- the state and the summary


@dataclass
class Throughput:
    """Steady-state tokens/s: every process's steps after its first 3 (warm-up, compilation)."""

    tokens: int = 0
    seconds: float = 0.0
    first_steps: list = field(default_factory=list)  # (tokens, seconds) of the first 3, a fallback
    steps_this_process: int = 0  # not saved: each process warms up afresh

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


@dataclass
class TrainState:
    """A run's progress and the checkpoint (ckpt.pt) that holds it: all a bitwise-exact resume needs.

    The file has one key per field, under the names this trainer has always written (older checkpoints
    resume), except `throughput`, kept as steady_tokens, steady_seconds and first_steps. `model` and
    `optimizer` are state dicts, filled from the live objects at each save; `rng` is every rank's RNG
    states in rank order; `vocab` lets `scaling generate` decode with nothing but the file.
    """

    config_hash: str
    train_config: dict
    model_config: dict
    vocab: torch.Tensor | None = None
    step: int = 0
    tokens: int = 0
    train_loss: float | None = None
    val_loss: float | None = None
    throughput: Throughput = field(default_factory=Throughput)
    model: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    rng: list = field(default_factory=list)
    parallel: str = "ddp"  # how the run trained: fsdp's ckpt.pt is its consolidated final weights

    def save(self, path: Path) -> None:
        payload = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "throughput"}
        thr = self.throughput
        checkpoint.save(path, payload | {"steady_tokens": thr.tokens, "steady_seconds": thr.seconds,
                                         "first_steps": thr.first_steps})

    @classmethod
    def load(cls, path: Path, map_location: torch.device) -> TrainState:
        ck = checkpoint.load(path, map_location=map_location)
        names = {f.name for f in fields(cls)} - {"throughput", "parallel"}
        try:
            thr = Throughput(ck["steady_tokens"], ck["steady_seconds"],
                             [tuple(x) for x in ck.get("first_steps", [])])  # older checkpoints lack it
            return cls(**{k: ck[k] for k in names}, throughput=thr, parallel=ck.get("parallel", "ddp"))
        except KeyError as e:
            raise UserError(f"{path} is not a training checkpoint (no {e.args[0]!r})") from None


@dataclass(frozen=True)
class TrainSummary:
    """What a run did: train()'s result and, as `to_json()`, summary.json (the same keys).

    status: completed, diverged (the loss went non-finite at `diverged_step`; `steps` stops before it) or
    stopped (an on_eval callback asked) or preempted (a preemption signal came: gptcore.preemption); the last
    two are not written to summary.json, so re-running resumes. tokens and
    flops are the whole job's; tokens_per_s is steady-state and mfu per device (gptcore.model.estimate_mfu).
    """

    status: str
    diverged_step: int | None
    steps: int
    params: int
    non_embedding_params: int
    tokens: int
    flops: float
    flops_per_token: float
    final_train_loss: float | None
    final_val_loss: float | None
    tokens_per_s: float | None
    mfu: float | None
    device: str
    dtype: str
    world_size: int
    vocab_size: int
    config_hash: str
    model: dict  # GPTConfig.to_dict()
    out: str
    init_from: str | None = None  # the checkpoint whose weights started the run, and their sha256
    init_from_sha256: str | None = None
    parallel: str = "none"  # none (one process), ddp or fsdp; summaries written before it have none
    final_val_sequences: int | None = None  # the ctx-token sequences final_val_loss averages (older: unknown)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TrainSummary:
        """The summary in a JSON object such as summary.json; KeyError if a key without a default is missing."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d or f.default is MISSING})


def read_summary(path: Path) -> TrainSummary:
    """summary.json, or a one-line error if it is torn, empty or foreign."""
    try:
        return TrainSummary.from_json(_read_json_object(path, "status") or {})
    except KeyError:
        raise UserError(f"{path} is unreadable (torn or foreign); delete it and re-run: the run resumes "
                        "from its last checkpoint and writes it again") from None


@dataclass
class MFUMeter:
    """MFU of one device at the whole job's tokens/s. A CPU run that beats its cached peak shows the peak
    was measured under load: it is measured again (once), so no MFU comes out above 1."""

    model: GPTConfig
    device: torch.device
    dtype: str
    world: int
    peak: float | None

    def __call__(self, tokens_per_s: float) -> float | None:
        per_device = tokens_per_s / self.world
        flops_per_s = per_device * flops_per_token_with_attention(self.model)
        if self.device.type == "cpu" and flops_per_s > self.peak:
            self.peak = cpu_matmul_peak(self.dtype, at_least=flops_per_s)
        return estimate_mfu(self.model, per_device, self.peak)


# ----------------------------------------------------------------------------- evaluation


def _all_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x = x / d.world
    return x


@torch.no_grad()
def evaluate(model, val: np.ndarray, cfg: TrainConfig, device, autocast, d: Dist, lockstep: bool = False,
             batches: int | None = None) -> float:
    """Mean validation loss over the fixed eval sequences (`batches` of them, default eval_batches), split
    across ranks.

    lockstep (FSDP): every rank runs the same number of forward passes, since each one all-gathers weights
    with the others; a rank with no batch left runs its first one again, weighted 0.
    """
    ctx = cfg.model.ctx
    starts = eval_starts(len(val), ctx, (batches or cfg.eval_batches) * cfg.batch_size).reshape(-1, cfg.batch_size)
    acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    total = torch.zeros(2, dtype=acc, device=device)
    mine = list(starts[d.rank :: d.world])
    passes = -(-len(starts) // d.world) if lockstep else len(mine)
    model.eval()
    for i in range(passes):
        rows = mine[i] if i < len(mine) else starts[0]
        weight = len(rows) if i < len(mine) else 0
        x, y = get_batch(val, rows, ctx, device)
        with autocast():
            total[0] += model(x, y).to(acc) * weight
        total[1] += weight
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


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """One run in this process: the live model and optimizer, and the TrainState they are saved into."""

    def __init__(self, cfg: TrainConfig, dataset, device: torch.device, d: Dist, run: RunDir, say,
                 init: dict | None = None):
        """Build the model and optimizer (seeded), start from the `init` weights if given (init_from), and
        resume from the run's checkpoint if it has one."""
        self.cfg, self.dataset, self.device, self.d, self.run, self.say = cfg, dataset, device, d, run, say
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.dtype == "bf16" \
            else contextlib.nullcontext
        self.fsdp = cfg.parallel == "fsdp"
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank, sharded or replicated
        self.raw_model = GPT(cfg.model).to(device)
        if init is not None:
            self.raw_model.load_state_dict(init)
        if self.fsdp:  # sharded in place before the optimizer is built, so that Adam's state is sharded too
            parallel.shard(self.raw_model, device, bf16=cfg.dtype == "bf16")
        self.optimizer = make_optimizer(self.raw_model, cfg, device)
        self.total_steps = total_steps_for(cfg, d.world)
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * d.world * cfg.model.ctx
        self.flops_per_token = flops_per_token_with_attention(cfg.model)  # PaLM: 6N (head included) + attention
        self.state = TrainState(cfg.config_hash(), cfg.to_dict(), cfg.model.to_dict(),
                                vocab=_vocab_tensor(dataset.tokenizer))
        self._resume()
        if d.main:  # rows a killed run logged after its last checkpoint (or before its first) go
            run.truncate_metrics(self.state.step)
        model = torch.compile(self.raw_model) if cfg.compile else self.raw_model
        if d.world > 1 and not self.fsdp:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.model = model
        self.mfu = MFUMeter(cfg.model, device, cfg.dtype, d.world, peak_flops_per_s(device, cfg.dtype))
        self.diverged_step: int | None = None
        self.preemption: Preemption | None = None  # set by train() while its signal handlers are in place

    def _resume(self) -> None:
        """Load the run's latest checkpoint, if it has one: ckpt.pt (one process, DDP) or dcp-step-N/ (FSDP)."""
        sharded = parallel.latest_sharded(self.run.path)
        where = sharded / parallel.STATE_FILE if sharded is not None else self.run.ckpt
        if not where.exists():
            return
        state = TrainState.load(where, self.device)
        kind = "fsdp" if sharded is not None else state.parallel  # a ckpt.pt of fsdp: its final weights only
        if kind != self.cfg.parallel and (self.d.world > 1 or kind == "fsdp"):
            raise UserError(f"{self.run.path} was checkpointed with --parallel {kind}; resume it with "
                            f"--parallel {kind} and {'2 or more processes' if kind == 'fsdp' else 'DDP'}")
        if kind == "fsdp" and sharded is None:
            raise UserError(f"{where} holds an FSDP run's consolidated weights, not its sharded checkpoint "
                            f"(dcp-step-N/); the run cannot resume from it: use another --out")
        if state.config_hash != self.cfg.config_hash():
            raise UserError(f"{where} belongs to a different config; use another --out")
        if sharded is not None:
            parallel.load_sharded(sharded, self.raw_model, self.optimizer)
        else:
            self.raw_model.load_state_dict(state.model)
            self.optimizer.load_state_dict(state.optimizer)
        rngs = state.rng
        checkpoint.set_rng_state(rngs[self.d.rank] if len(rngs) == self.d.world else rngs[0])
        # The progress resumes; the configs and vocabulary saved from now on are this process's own (the
        # fields that are not hashed, such as out or threads, may differ), the weights are the live ones.
        self.state = replace(self.state, step=state.step, tokens=state.step * self.tokens_per_step,
                             train_loss=state.train_loss, val_loss=state.val_loss, throughput=state.throughput)
        self.say(f"resuming {self.run.path} at step {state.step}/{self.total_steps}")

    def save(self) -> None:
        """Checkpoint the state (every rank's RNG gathered; rank 0 writes, and under FSDP every rank its shards)."""
        rngs = [checkpoint.rng_state()]
        if self.d.world > 1:
            gathered = [None] * self.d.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        self.state.rng, self.state.parallel = rngs, self.cfg.parallel
        if self.fsdp:
            self.state.model, self.state.optimizer = {}, {}  # the weights are the DCP shards beside it
            parallel.save_sharded(self.run.path, self.state.step, self.raw_model, self.optimizer,
                                  self.state.save, self.d.main)
        elif self.d.main:
            self.state.model, self.state.optimizer = self.raw_model.state_dict(), self.optimizer.state_dict()
            self.state.save(self.run.ckpt)

    def save_consolidated(self) -> None:
        """An FSDP run's final weights as one ckpt.pt (what `scaling generate` and --init-from read); the
        optimizer's state stays in the sharded checkpoint. Every rank takes part in the gather."""
        weights = parallel.full_model_state(self.raw_model)
        if self.d.main:
            if self.cfg.model.tie_weights:
                weights.setdefault("lm_head.weight", weights["wte.weight"])
            replace(self.state, model=weights, optimizer={}, parallel="fsdp").save(self.run.ckpt)

    def step(self) -> dict | None:
        """One optimizer step; its metrics row, or None if the loss went non-finite (the run diverged)."""
        cfg, d, st, device = self.cfg, self.d, self.state, self.device
        t0 = time.perf_counter()
        lr = lr_at(st.step, self.total_steps, cfg.lr, cfg.warmup, cfg.schedule, cfg.min_lr_ratio,
                   cfg.wsd_decay_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        train, ctx = self.dataset.train, cfg.model.ctx
        rows = batch_starts(cfg.seed, st.step, d.world * cfg.grad_accum, cfg.batch_size, len(train), ctx)
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            x, y = get_batch(train, rows[d.rank * cfg.grad_accum + micro], ctx, device)
            last = micro == cfg.grad_accum - 1
            with parallel.no_sync(self.model, cfg.parallel, d.world, last):
                with self.autocast():
                    loss = self.model(x, y)
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
        st.train_loss = _all_mean(loss_sum / cfg.grad_accum, d).item()
        if not math.isfinite(st.train_loss):
            self.diverged_step = st.step + 1
            self.optimizer.zero_grad(set_to_none=True)
            self.say(f"step {st.step + 1}: loss is {st.train_loss}; run diverged")
            return None
        grad_norm = parallel.local_value(
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), cfg.grad_clip or float("inf")))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        st.throughput.add(self.tokens_per_step, seconds)
        st.step += 1
        st.tokens = st.step * self.tokens_per_step
        return {"step": st.step, "tokens": st.tokens, "flops": st.tokens * self.flops_per_token,
                "train_loss": st.train_loss,
                "lr": lr, "grad_norm": float(grad_norm), "tokens_per_s": self.tokens_per_step / seconds,
                "mfu": self.mfu(self.tokens_per_step / seconds)}

    def evaluate_into(self, row: dict) -> bool:
        """At an eval step (every eval_every, and the last): the val loss (and rank 0's sample) into `row`."""
        cfg, st = self.cfg, self.state
        last = st.step == self.total_steps
        if st.step % cfg.eval_every and not last:
            return False
        batches = cfg.final_eval_batches if last and cfg.final_eval_batches else cfg.eval_batches
        st.val_loss = evaluate(self.raw_model, self.dataset.val, cfg, self.device, self.autocast, self.d,
                               lockstep=self.fsdp, batches=batches)
        row.update(val_loss=st.val_loss, val_ppl=math.exp(min(st.val_loss, 700.0)),
                   val_sequences=batches * cfg.batch_size)
        if (self.d.main or self.fsdp) and cfg.sample_tokens:  # FSDP: every rank runs the forward passes
            sample = sample_text(self.raw_model, self.dataset.tokenizer, cfg, st.step, self.device, self.autocast)
            if self.d.main:
                row["sample"] = sample
        train = "n/a" if st.train_loss is None else f"{st.train_loss:.4f}"  # none before a step (init_from)
        msg = f"step {st.step}/{self.total_steps}: train loss {train}, val loss {st.val_loss:.4f}"
        self.say(msg + (f"\n  sample: {row['sample']!r}" if "sample" in row else ""))
        return True

    def final_sequences(self) -> int | None:
        """The sequences final_val_loss averages: the last step's evaluation's, if the run got there with a loss
        (derived from the config, as a resume at the last step evaluates nothing in this process)."""
        cfg, st = self.cfg, self.state
        done = st.step == self.total_steps and st.val_loss is not None
        return (cfg.final_eval_batches or cfg.eval_batches) * cfg.batch_size if done else None

    def checkpoint_due(self) -> bool:
        every = self.cfg.checkpoint_every or self.cfg.eval_every
        return self.state.step % every == 0 or self.state.step == self.total_steps

    def stop_asked(self, on_eval: OnEval | None) -> bool:
        """Rank 0's on_eval(step, val loss): truthy stops every rank. If it raises, every rank stops: rank 0
        re-raises its exception, the others a RuntimeError (no rank is left waiting in a collective)."""
        verdict, error = 0, None  # 0: go on, 1: stop, 2: on_eval raised
        if self.d.main and on_eval is not None:
            try:
                verdict = 1 if on_eval(self.state.step, self.state.val_loss) else 0
            except BaseException as e:  # noqa: BLE001 (re-raised below, once the other ranks know)
                verdict, error = 2, e
        if self.d.world > 1:
            box = [verdict]
            dist.broadcast_object_list(box, src=0)
            verdict = box[0]
        if error is not None:
            raise error
        if verdict == 2:
            raise RuntimeError(f"rank 0's on_eval stopped the run at step {self.state.step}")
        return verdict == 1

    def preempt_agreed(self) -> bool:
        """Whether any rank was sent a preemption signal: every rank then stops after this same step (the
        signal reaches ranks at different steps, or only one of them)."""
        asked = self.preemption is not None and self.preemption.asked
        if self.d.world > 1:
            flag = torch.tensor([float(asked)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            asked = bool(flag.item())
        return asked

    def run_steps(self, on_eval: OnEval | None) -> str:
        """Step until the budget is spent, the loss diverges, on_eval stops or a preemption signal came (the
        step in flight is finished and checkpointed first); returns the status."""
        # metrics.jsonl and the --logger ones (gptcore.loggers), closed in finally
        metrics = open_log(self.run.path, self.run.metrics, self.cfg.loggers, self.state.step, self.cfg.to_dict(),
                           self.cfg.config_hash()) if self.d.main else None
        # A tqdm bar on a terminal, a plain line now and then without one (gptcore.progress).
        bar = progress_bar(self.total_steps, unit="step", initial=self.state.step) \
            if self.d.main and self.cfg.progress else None
        try:
            if self.total_steps == 0 and not self.run.ckpt.exists():  # 0 steps from init_from: keep its weights
                row = {"step": 0, "tokens": 0, "flops": 0.0}
                self.evaluate_into(row)
                if metrics is not None:
                    metrics.log(row)
                self.save()
            while self.state.step < self.total_steps:
                row = self.step()
                if row is None:
                    return "diverged"
                evaluated = self.evaluate_into(row)
                if metrics is not None:
                    metrics.log(row)
                if bar is not None:
                    bar.set_postfix(loss=f"{row['train_loss']:.4f}", lr=f"{row['lr']:.2e}", refresh=False)
                    bar.update(1)
                saved = self.checkpoint_due()
                if saved:
                    self.save()
                if evaluated and self.stop_asked(on_eval):
                    if not saved:  # so that re-running resumes exactly here
                        self.save()
                    return "stopped"
                if self.preempt_agreed():
                    if not saved:
                        self.save()
                    signum = self.preemption.signum if self.preemption else None
                    by = signal.Signals(signum).name if signum else "a signal to another rank"
                    self.say(f"step {self.state.step}: preempted by {by}; checkpointed, re-run to resume")
                    return "preempted"
        finally:
            if bar is not None:
                bar.close()
            if metrics is not None:
                metrics.close()
        return "completed"

    def finish(self, status: str) -> TrainSummary:
        """The run's summary, written to summary.json unless the run was stopped (rank 0 writes)."""
        cfg, st, mcfg = self.cfg, self.state, self.cfg.model
        tokens_per_s = st.throughput.tokens_per_s()
        fpt = self.flops_per_token
        summary = TrainSummary(
            status=status, diverged_step=self.diverged_step, steps=st.step, params=count_params(mcfg),
            non_embedding_params=count_non_embedding_params(mcfg), tokens=st.step * self.tokens_per_step,
            flops=st.step * self.tokens_per_step * fpt, flops_per_token=fpt, final_train_loss=st.train_loss,
            final_val_loss=st.val_loss, tokens_per_s=tokens_per_s,
            mfu=self.mfu(tokens_per_s) if tokens_per_s else None, device=str(self.device), dtype=cfg.dtype,
            world_size=self.d.world, vocab_size=mcfg.vocab_size, config_hash=cfg.config_hash(),
            model=mcfg.to_dict(), out=str(self.run.path), init_from=cfg.init_from,
            init_from_sha256=cfg.init_from_sha256, parallel=parallel.describe(cfg.parallel, self.d.world),
            final_val_sequences=self.final_sequences(),
        )
        if self.fsdp and status not in RESUMABLE:
            self.save_consolidated()
        if self.d.main and status not in RESUMABLE:
            atomic_write_json(self.run.summary, summary.to_json())
        if self.d.world > 1:
            dist.barrier()
        return summary


def _claim(run: RunDir, cfg: TrainConfig, d: Dist) -> None:
    """Rank 0 claims the run directory; a refusal stops every rank, not only rank 0."""
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


def train(cfg: TrainConfig, log=None, on_eval: OnEval | None = None) -> TrainSummary:
    """Train (or resume, or return the finished summary of) the run `cfg` describes.

    `log(message)` gets rank 0's progress lines (default: print). `on_eval(step, val_loss)` is called on
    rank 0 after each evaluation: a truthy return stops the run (status "stopped", checkpointed, resumable),
    and an exception it raises (such as optuna.TrialPruned) stops it and propagates.
    """
    from gptcore.data import open_dataset

    dataset = open_dataset(cfg.data)
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    d = init_distributed(device.type)
    parallel.check(cfg.parallel, d.world)  # before the run directory is claimed: nothing is written
    log = log or (lambda msg: print(msg, flush=True))
    say = log if d.main else (lambda msg: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    check_available(cfg.loggers)  # a missing logger package: one line, before anything is written
    cfg, init = starting_weights(cfg, dataset)  # before the claim: the weights' sha256 is in the config hash
    ctx = cfg.model.ctx
    for split, arr in (("train", dataset.train), ("val", dataset.val)):
        if len(arr) < ctx + 2:
            raise UserError(f"ctx {ctx} is longer than the data's {split} split ({len(arr)} tokens)")
    if cfg.model.vocab_size < dataset.vocab_size:
        raise UserError(f"model vocab_size {cfg.model.vocab_size} is smaller than the data's {dataset.vocab_size}")

    # The dtype a run trains in is part of its computation: hash the resolved one, so a run started in fp32
    # is never resumed in bf16 on a machine where "auto" resolves otherwise.
    cfg = replace(cfg, dtype=resolve_dtype(cfg.dtype, device))
    run = RunDir(cfg.out)
    _claim(run, cfg, d)
    if run.summary.exists():
        summary = read_summary(run.summary)
        say(f"{run.path}: already finished ({summary.status}); nothing to do")
        return summary
    if d.main and (stale := remove_stale_temps(run.ckpt)):  # a write killed mid-way (SIGKILL, OOM)
        say(f"removed {len(stale)} temporary checkpoint file(s) a killed write left: "
            f"{', '.join(p.name for p in stale)}")
    with Preemption() as preemption:
        trainer = Trainer(cfg, dataset, device, d, run, say, init)
        trainer.preemption = preemption
        return trainer.finish(trainer.run_steps(on_eval))
