"""Pretrained weights: load a Hugging Face GPT-2 directory or one of this project's checkpoints into GPT.

`load(path)` gives the model (eval mode); `open_checkpoint(path)` gives it with its tokenizer and the
sha256 of the weights file. `path` is any of
- a Hugging Face GPT-2 directory: config.json plus model.safetensors, a sharded model.safetensors.index.json,
  or pytorch_model.bin (read with weights_only=True: a pickle of anything but tensors is refused unexecuted);
- a weights file inside such a directory;
- this project's ckpt.pt, or the run directory that holds one;
- a bare NAME such as `gpt2`: the directory `$XDG_CACHE_HOME/scaling/models/NAME` (default ~/.cache), where
  `huggingface-cli download gpt2 --local-dir ~/.cache/scaling/models/gpt2` puts it. Nothing here downloads.

The reference layout (transformers' GPT2LMHeadModel) maps onto gptcore.model.GPT exactly: its Conv1D
weights are stored (in, out) and are transposed; c_attn is the fused Q/K/V in the same [q | k | v] order
with heads inside each; every Linear and LayerNorm has a bias; the head is tied to the token embedding
unless tie_word_embeddings is false. What GPT cannot represent (another model type, cross-attention,
another activation or epsilon, a different attention scaling) is refused in one line.
`save_hf(model, dir)` writes the reverse: a directory transformers loads.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gptcore import checkpoint
from gptcore.config import GPTConfig, TrainConfig
from gptcore.errors import UserError
from gptcore.fileio import atomic_write_bytes, atomic_write_json, cache_dir
from gptcore.model import GPT
from gptcore.tokenizer import CompactVocab, Tokenizer

HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
              "pytorch_model.bin.index.json")
# What GPT computes, as transformers' GPT2Config spells it: anything else there is refused.
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")
LN_EPS = 1e-5  # torch.nn.LayerNorm's, which GPT uses
FETCH_HINT = "huggingface-cli download {name} --local-dir {dir}"
# Buffers old transformers versions saved beside the weights (the causal mask): not weights, ignored.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


@dataclass(frozen=True)
class Pretrained:
    """A loaded checkpoint: the model (eval mode, CPU), the tokenizer of its ids, and where it came from."""

    model: GPT
    tokenizer: Tokenizer
    kind: str  # "huggingface" or "scaling"
    path: Path  # the file or directory read
    weights_sha256: str  # of the weights file's bytes (sharded: of the shards', in index order)
    tokens_trained: int | None = None  # what a scaling checkpoint has seen; unknown for Hugging Face weights


def models_dir() -> Path:
    """Where pretrained models live: $XDG_CACHE_HOME/scaling/models (default ~/.cache/scaling/models)."""
    return cache_dir() / "models"


def load(path: str | Path) -> GPT:
    """The model at `path` (see the module doc), in eval mode on the CPU."""
    return open_checkpoint(path).model


def open_checkpoint(path: str | Path) -> Pretrained:
    """The model at `path` with its tokenizer and weights hash; anything unreadable is a UserError."""
    p = resolve(path)
    if p.is_dir() and not (p / checkpoint.FILENAME).is_file() and (p / "runs").is_dir():
        p = run_in(p)  # a launch or sweep directory: its one run with a checkpoint
    if (dropped := checkpoint.not_kept(p)) is not None:  # --keep-checkpoints deleted it when the run finished
        raise UserError(dropped)
    if p.is_dir() and (p / checkpoint.FILENAME).is_file():  # a run directory (its config.json is the run's)
        return _load_scaling(p)
    if p.is_dir() and (p / HF_CONFIG).is_file():
        return _load_hf(p, _hf_weights_in(p))
    if p.is_file() and p.name in HF_WEIGHTS and (p.parent / HF_CONFIG).is_file():
        return _load_hf(p.parent, p)
    if p.is_dir():
        raise UserError(f"{p} has no {HF_CONFIG} (a Hugging Face model directory) and no "
                        f"{checkpoint.FILENAME} (a scaling run directory)")
    return _load_scaling(p)


def run_in(folder: Path) -> Path:
    """The run directory a launch or sweep directory (FOLDER/runs/RUN_ID/ckpt.pt) points to: its only run
    with a checkpoint; with several, a UserError listing them, so that the user can name one."""
    runs = sorted(d for d in (folder / "runs").iterdir() if (d / checkpoint.FILENAME).is_file())
    if len(runs) == 1:
        return runs[0]
    if not runs:
        dropped = [d for d in (folder / "runs").iterdir() if checkpoint.not_kept(d)]
        if len(dropped) == 1:
            return dropped[0]  # open_checkpoint says that its checkpoint was not kept, and how to keep one
        why = (f"the checkpoints of its {len(dropped)} finished runs were not kept (--keep-checkpoints); sweep or "
               "launch with --keep-checkpoints all or best into a new --out to keep them" if dropped
               else "finished runs may have dropped theirs")
        raise UserError(f"{folder} holds runs but none with a {checkpoint.FILENAME} ({why}); pass a run "
                        "directory that has one")
    shown = ", ".join(str(r) for r in runs[:6]) + (f" and {len(runs) - 6} more" if len(runs) > 6 else "")
    raise UserError(f"{folder} holds {len(runs)} runs with a checkpoint; name one: {shown}")


def resolve(path: str | Path) -> Path:
    """`path` itself if it exists; a bare name found in models_dir(); else a UserError saying how to fetch."""
    p = Path(path).expanduser()
    if p.exists():
        return p
    name = str(path)
    if "/" not in name and name not in (".", ".."):
        cached = models_dir() / name
        if cached.exists():
            return cached
        hint = FETCH_HINT.format(name=name, dir=cached)
        raise UserError(f"no checkpoint {name!r}: not a path, and not in {models_dir()} "
                        f"(on a connected machine: {hint})")
    raise UserError(checkpoint.not_kept(p) or f"no checkpoint at {p}")


def sha256_of(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- this project's checkpoints


def _load_scaling(p: Path) -> Pretrained:
    ckpt = checkpoint.load(p)
    file = p / checkpoint.FILENAME if p.is_dir() else p
    vocab = ckpt.get("vocab")
    tokenizer = Tokenizer(None if vocab is None else CompactVocab(vocab.numpy().astype(np.int64)))
    try:
        model = GPT(GPTConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{file}: the checkpoint's model does not load ({str(e).splitlines()[0]})") from None
    return Pretrained(model.eval(), tokenizer, "scaling", file, sha256_of([file]), ckpt.get("tokens"))


# ----------------------------------------------------------------------------- Hugging Face directories


def _hf_weights_in(d: Path) -> Path:
    for name in HF_WEIGHTS:
        if (d / name).is_file():
            return d / name
    raise UserError(f"{d} has a {HF_CONFIG} but no weights ({', '.join(HF_WEIGHTS)})")


def hf_config_to_gpt(hf: dict, where: Path) -> GPTConfig:
    """The GPTConfig of a transformers GPT2Config dict; a UserError naming what GPT cannot represent."""
    def refuse(what: str):
        raise UserError(f"{where}: {what}; gptcore's GPT cannot represent it")

    if hf.get("model_type") != "gpt2":
        refuse(f"model_type is {hf.get('model_type')!r}, not 'gpt2'")
    checks = [  # (holds, what is refused)
        (hf.get("activation_function", "gelu_new") in TANH_GELUS,
         f"activation_function {hf.get('activation_function')!r} (GPT uses the tanh GELU, gelu_new)"),
        (not hf.get("add_cross_attention", False), "add_cross_attention is true"),
        (hf.get("scale_attn_weights", True), "scale_attn_weights is false"),
        (not hf.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx is true"),
        (not hf.get("reorder_and_upcast_attn", False), "reorder_and_upcast_attn is true"),
        (math.isclose(hf.get("layer_norm_epsilon", LN_EPS), LN_EPS), f"layer_norm_epsilon "
         f"{hf.get('layer_norm_epsilon')} (GPT's LayerNorm uses {LN_EPS})"),
        (hf.get("n_inner") in (None, 4 * hf.get("n_embd", 768)),
         f"n_inner {hf.get('n_inner')} (GPT's MLP is 4 x n_embd)"),
    ]
    for holds, what in checks:
        if not holds:
            refuse(what)
    try:
        return GPTConfig(vocab_size=int(hf.get("vocab_size", 50257)), ctx=int(hf.get("n_positions", 1024)),
                         n_layer=int(hf.get("n_layer", 12)), n_head=int(hf.get("n_head", 12)),
                         d_model=int(hf.get("n_embd", 768)), dropout=0.0, bias=True, qkv_bias=True,
                         tie_weights=bool(hf.get("tie_word_embeddings", True)))
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: {e}") from None


def _read_hf_config(d: Path) -> dict:
    try:
        hf = json.loads((d / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{d / HF_CONFIG} is unreadable ({e})") from None
    if not isinstance(hf, dict):
        raise UserError(f"{d / HF_CONFIG} is not a JSON object")
    return hf


def _weight_files(weights: Path) -> list[Path]:
    """The files holding the weights: the file itself, or the shards an index names (in name order)."""
    if not weights.name.endswith(".index.json"):
        return [weights]
    try:
        weight_map = json.loads(weights.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{weights} is not a shard index (a JSON object with a weight_map)") from None
    for s in shards:  # a shard is a file beside the index, never a path elsewhere
        if not isinstance(s, str) or Path(s).name != s or not (weights.parent / s).is_file():
            raise UserError(f"{weights} names a shard {s!r} that is not a file in {weights.parent}")
    return [weights.parent / s for s in shards]


def _read_tensors(f: Path) -> dict[str, torch.Tensor]:
    """The tensors of one weights file; a file that is not one (or a pickle of other things) is refused."""
    if f.name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(f, device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"{f} is not a readable safetensors file ({e})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(f, map_location="cpu", weights_only=True)  # never executes the pickle's code
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError):
        raise UserError(f"{f} is not a state dict of tensors (refused unexecuted, or corrupt)") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise UserError(f"{f} holds a {type(obj).__name__}, not a state dict of tensors")
    return obj


def _hf_to_gpt_names(cfg: GPTConfig) -> dict[str, tuple[str, bool]]:
    """GPT's parameter name -> (the reference's name without prefix, transposed?)."""
    names = {"wte.weight": ("wte.weight", False), "wpe.weight": ("wpe.weight", False),
             "ln_f.weight": ("ln_f.weight", False), "ln_f.bias": ("ln_f.bias", False)}
    for i in range(cfg.n_layer):
        for ours, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2"), ("attn.qkv", "attn.c_attn"),
                             ("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            conv = not ours.startswith("ln")  # Conv1D stores (in, out): transposed against nn.Linear
            names[f"blocks.{i}.{ours}.weight"] = (f"h.{i}.{theirs}.weight", conv)
            names[f"blocks.{i}.{ours}.bias"] = (f"h.{i}.{theirs}.bias", False)
    if not cfg.tie_weights:
        names["lm_head.weight"] = ("lm_head.weight", False)
    return names


def _load_hf(d: Path, weights: Path) -> Pretrained:
    cfg = hf_config_to_gpt(_read_hf_config(d), d / HF_CONFIG)
    files = _weight_files(weights)
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        for k, v in _read_tensors(f).items():  # GPT2LMHeadModel prefixes "transformer.", GPT2Model does not
            tensors[k.removeprefix("transformer.")] = v
    model = GPT(cfg)
    wanted = _hf_to_gpt_names(cfg)
    state = model.state_dict()
    for ours, (theirs, transpose) in wanted.items():
        if theirs not in tensors:
            raise UserError(f"{weights} lacks the tensor {theirs!r} (n_layer {cfg.n_layer} in {HF_CONFIG})")
        t = tensors[theirs].t() if transpose else tensors[theirs]
        if t.shape != state[ours].shape:
            raise UserError(f"{weights}: tensor {theirs!r} has shape {tuple(tensors[theirs].shape)}, "
                            f"{HF_CONFIG} implies {tuple(state[ours].shape)}{' (transposed)' if transpose else ''}")
        state[ours] = t.to(torch.float32)
    known = {theirs for theirs, _ in wanted.values()} | ({"lm_head.weight"} if cfg.tie_weights else set())
    extra = sorted(k for k in tensors if k not in known and not k.endswith(IGNORED_SUFFIXES))
    if extra:
        raise UserError(f"{weights} has tensors GPT has no place for ({', '.join(extra[:3])}"
                        f"{', ...' if len(extra) > 3 else ''}): not a GPT-2 of this config")
    model.load_state_dict(state)
    return Pretrained(model.eval(), Tokenizer(None), "huggingface", weights, sha256_of(files))


def save_hf(model: GPT, out: str | Path) -> Path:
    """Write `model` as a Hugging Face GPT-2 directory (config.json, model.safetensors) that transformers
    and `load` read. A bias GPT leaves out is written as zeros, which computes the same."""
    from safetensors.torch import save

    cfg = model.cfg
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; save_hf writes a directory")
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    tensors = {}
    for ours, (theirs, transpose) in _hf_to_gpt_names(cfg).items():
        t = state.get(ours)
        if t is None:  # a bias the config turns off
            rows = state[ours.removesuffix(".bias") + ".weight"].shape[0]
            t = torch.zeros(rows)
        tensors[f"transformer.{theirs}" if theirs != "lm_head.weight" else theirs] = \
            (t.t() if transpose else t).contiguous()
    hf = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.vocab_size,
          "n_positions": cfg.ctx, "n_embd": cfg.d_model, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
          "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": LN_EPS,
          "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
          "tie_word_embeddings": cfg.tie_weights, "bos_token_id": 50256, "eos_token_id": 50256,
          "scale_attn_weights": True}
    atomic_write_bytes(out / "model.safetensors", save(tensors, metadata={"format": "pt"}))
    atomic_write_json(out / HF_CONFIG, hf)  # last: a directory with a config is complete
    return out


# ----------------------------------------------------------------------------- continued training

# The fields that fix the weights' shapes: a run started from a checkpoint must have all of them equal.
SHAPE_FIELDS = ("vocab_size", "ctx", "n_layer", "n_head", "d_model", "bias", "qkv_bias", "tie_weights")


def shape_conflicts(have: GPTConfig, asked: dict) -> list[str]:
    """'n_layer 3 (the checkpoint's is 2)' for each shape field in `asked` that differs from `have`'s."""
    return [f"{k} {v} (the checkpoint's is {getattr(have, k)})" for k, v in asked.items()
            if k in SHAPE_FIELDS and v != getattr(have, k)]


def starting_weights(cfg: TrainConfig, dataset) -> tuple[TrainConfig, dict | None]:
    """For a run with init_from: the config with the weights' sha256 filled in, and their state dict.

    Refused in one line: a shape that differs from the checkpoint's, a vocabulary other than the data's
    (ids would mean other tokens), and weights whose sha256 is not the one the run recorded (they changed
    under a run that resumes). A run without init_from is returned as it is, with no weights.
    """
    if cfg.init_from is None:
        return cfg, None
    from gptcore.evaluate import check_vocabulary

    loaded = open_checkpoint(cfg.init_from)
    conflicts = shape_conflicts(loaded.model.cfg, {k: getattr(cfg.model, k) for k in SHAPE_FIELDS})
    if conflicts:
        raise UserError(f"--init-from {cfg.init_from}: the run's model has {', '.join(conflicts)}; "
                        "the shape must be the checkpoint's (leave the shape flags out to take it)")
    check_vocabulary(loaded.tokenizer, loaded.model.cfg.vocab_size, dataset.tokenizer, cfg.init_from, cfg.data)
    sha = loaded.weights_sha256
    if cfg.init_from_sha256 not in (None, sha):
        raise UserError(f"--init-from {cfg.init_from}: its weights (sha256 {sha[:16]}...) are not the ones "
                        f"this run started from ({cfg.init_from_sha256[:16]}...)")
    return replace(cfg, init_from_sha256=sha), loaded.model.state_dict()
